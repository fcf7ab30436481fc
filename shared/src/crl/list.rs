//! The walk over a CertificateList (RFC 5280 §5.1), in the order of the layout in
//! [`super`]'s documentation.

use super::walk::{self, malformed, Der, Tlv};
use super::entries::{read_entry, RevokedEntries};
use super::extensions::{crl_extensions, CrlExtensions};
use super::limits::{CrlLimits, MAX_CRL_EXTENSIONS, MAX_NAME_DER};
use super::number::CrlNumber;
use super::scope::CrlScope;
use super::signature::{signature_algorithm, CrlSignatureAlgorithm};
use super::CrlError;
use crate::certificate::ca::name_text;
use crate::certificate::KeyIdentifier;

/// A CRL read from borrowed DER and checked throughout (every entry included), not yet
/// verified: [`Crl::verify`] ties it to a CA.
#[derive(Debug, Clone)]
pub struct Crl<'a> {
    pub(super) tbs: &'a [u8],
    pub(super) signature_algorithm: CrlSignatureAlgorithm,
    pub(super) signature: &'a [u8],
    issuer_der: &'a [u8],
    issuer_dn: String,
    this_update: i64,
    next_update: Option<i64>,
    number: CrlNumber,
    extensions: CrlExtensions<'a>,
    entries: Der<'a>,
    entry_count: usize,
}

/// Whether a CRL is in force at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// `thisUpdate` lies ahead: a CRL from the future is refused.
    NotYetValid,
    /// Between `thisUpdate` and `nextUpdate` plus the grace period.
    Current,
    /// Past `nextUpdate` plus the grace period: newer information should exist.
    Expired,
    /// The CRL has no `nextUpdate` (RFC 5280 requires one): it never says when it is stale,
    /// so the caller decides what that means.
    NoNextUpdate,
}

impl<'a> Crl<'a> {
    /// Reads one DER CertificateList; `der` must hold nothing else. Refuses what breaks DER or
    /// RFC 5280's syntax, CRLs other than v2, indirect and partial CRLs, critical extensions
    /// the reader does not understand, and anything over `limits`.
    pub fn from_der(der: &'a [u8], limits: &CrlLimits) -> Result<Crl<'a>, CrlError> {
        if der.len() > limits.max_der_bytes {
            return Err(CrlError::TooLarge { len: der.len(), limit: limits.max_der_bytes });
        }
        let mut outer = Der::new(der);
        let list = outer.expect(walk::SEQUENCE, "CertificateList")?;
        outer.finish("CertificateList")?;
        let mut parts = list.contents();
        let tbs = parts.expect(walk::SEQUENCE, "tbsCertList")?;
        let outer_algorithm = parts.expect(walk::SEQUENCE, "signatureAlgorithm")?;
        let signature = parts.expect(walk::BIT_STRING, "signatureValue")?;
        parts.finish("CertificateList")?;
        let signature_algorithm = signature_algorithm(outer_algorithm)?;
        let signature = signature.octet_bits("signatureValue")?;

        let mut fields = tbs.contents();
        let version = fields.next("tbsCertList.version")?;
        if version.tag != walk::INTEGER {
            return Err(malformed(version.at, "tbsCertList.version", "absent: a v1 CRL carries no CRL Number"));
        }
        if version.integer("tbsCertList.version")? != [1] {
            return Err(malformed(version.at, "tbsCertList.version", "not v2"));
        }
        let inner_algorithm = fields.expect(walk::SEQUENCE, "tbsCertList.signature")?;
        if inner_algorithm.encoded != outer_algorithm.encoded {
            return Err(CrlError::SignatureAlgorithmMismatch { at: outer_algorithm.at });
        }
        let issuer = fields.expect(walk::SEQUENCE, "tbsCertList.issuer")?;
        let issuer_dn = issuer_name(issuer)?;
        let this_update = fields.next("tbsCertList.thisUpdate")?.time("tbsCertList.thisUpdate")?;
        let next_update = match fields.peek_tag() {
            Some(walk::UTC_TIME | walk::GENERALIZED_TIME) => {
                Some(fields.next("tbsCertList.nextUpdate")?.time("tbsCertList.nextUpdate")?)
            }
            _ => None,
        };
        let revoked = fields.optional(walk::SEQUENCE, "tbsCertList.revokedCertificates")?;
        let extensions = match fields.optional(walk::context(0, true), "tbsCertList.crlExtensions")? {
            Some(tagged) => {
                let mut inner = tagged.contents();
                let list = inner.expect(walk::SEQUENCE, "crlExtensions")?;
                inner.finish("crlExtensions")?;
                Some((list, crl_extensions(list, MAX_CRL_EXTENSIONS)?))
            }
            None => None,
        };
        fields.finish("tbsCertList")?;

        let (list_at, extensions) = match extensions {
            Some((list, extensions)) => (list.at, extensions),
            None => return Err(CrlError::MissingCrlNumber),
        };
        let number = extensions.number.ok_or(CrlError::MissingCrlNumber)?;
        if extensions.base_number.is_some_and(|base| base >= number) {
            return Err(malformed(list_at, "deltaCRLIndicator", "the base CRL number is not below the CRL's own"));
        }
        let entries = revoked.map_or(Der::new(&[]), |list| list.contents());
        let entry_count = check_entries(entries, extensions.base_number.is_some(), limits)?;
        Ok(Crl {
            tbs: tbs.encoded,
            signature_algorithm,
            signature,
            issuer_der: issuer.encoded,
            issuer_dn,
            this_update,
            next_update,
            number,
            extensions,
            entries,
            entry_count,
        })
    }

    /// The issuer Name, whole (its SEQUENCE), and as the crate renders DNs.
    pub fn issuer_der(&self) -> &'a [u8] {
        self.issuer_der
    }

    pub fn issuer_dn(&self) -> &str {
        &self.issuer_dn
    }

    /// Seconds since the Unix epoch.
    pub fn this_update(&self) -> i64 {
        self.this_update
    }

    pub fn next_update(&self) -> Option<i64> {
        self.next_update
    }

    pub fn number(&self) -> CrlNumber {
        self.number
    }

    /// A delta CRL's base CRL number (its Delta CRL Indicator); `None` for a complete CRL.
    pub fn base_number(&self) -> Option<CrlNumber> {
        self.extensions.base_number
    }

    pub fn is_delta(&self) -> bool {
        self.extensions.base_number.is_some()
    }

    pub fn authority_key_identifier(&self) -> Option<&KeyIdentifier> {
        self.extensions.authority_key_identifier.as_ref()
    }

    /// Which certificates the CRL covers (its Issuing Distribution Point).
    pub fn scope(&self) -> CrlScope {
        self.extensions.scope
    }

    /// The URIs of the Issuing Distribution Point's fullName, in order.
    pub fn distribution_point_uris(&self) -> &[&'a str] {
        &self.extensions.distribution_point_uris
    }

    pub fn signature_algorithm(&self) -> CrlSignatureAlgorithm {
        self.signature_algorithm
    }

    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// The revoked entries in CRL order, read off the borrowed bytes one by one.
    pub fn entries(&self) -> RevokedEntries<'a> {
        RevokedEntries { reader: self.entries, next_index: 0, count: self.entry_count, delta: self.is_delta() }
    }

    /// Where the CRL stands at `now`, allowing `grace_secs` past `nextUpdate`.
    pub fn freshness(&self, now: i64, grace_secs: i64) -> Freshness {
        if self.this_update > now {
            return Freshness::NotYetValid;
        }
        match self.next_update {
            None => Freshness::NoNextUpdate,
            Some(next) if now <= next.saturating_add(grace_secs) => Freshness::Current,
            Some(_) => Freshness::Expired,
        }
    }
}

/// The issuer Name, bounded and rendered.
fn issuer_name(issuer: Tlv<'_>) -> Result<String, CrlError> {
    if issuer.encoded.len() > MAX_NAME_DER {
        return Err(CrlError::IssuerName { at: issuer.at, problem: format!("larger than {MAX_NAME_DER} bytes") });
    }
    name_text(issuer.value).map_err(|e| CrlError::IssuerName { at: issuer.at, problem: e.to_string() })
}

/// Reads every entry once, so that iterating them later cannot fail; returns how many.
fn check_entries(mut entries: Der<'_>, delta: bool, limits: &CrlLimits) -> Result<usize, CrlError> {
    let mut count = 0usize;
    while !entries.is_empty() {
        if count == limits.max_entries {
            return Err(CrlError::TooManyEntries { at: entries.offset(), limit: limits.max_entries });
        }
        read_entry(&mut entries, count, delta)?;
        count += 1;
    }
    Ok(count)
}
