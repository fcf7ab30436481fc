//! What a snapshot carries, as plain rows keyed by their owner ([`Owner`]): the full
//! build's input ([`SnapshotContent`]), read from the database or folded from changes.

use certbind_shared::identity::{CaKey, CertificateAuthority, Claim, SanKind, CA_KEY_LEN};
use certbind_shared::snapshot::ConstraintKind;
use certbind_shared::Fingerprint;
use crate::domain::change::{BindingRecord, CaRecord};
use crate::domain::Owner;

/// Everything a snapshot carries, as plain rows. Order does not matter; the builder sorts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotContent {
    pub bindings: Vec<BindingRecord>,
    pub blocklist: Vec<(Fingerprint, Owner)>,
    pub revoked: Vec<RevokedSerial>,
    pub principals: Vec<PrincipalEntry>,
    pub san_rules: Vec<SanRuleEntry>,
    pub constraints: Vec<ConstraintEntry>,
    pub issuers: Vec<IssuerEntry>,
    pub cas: Vec<CaEntry>,
    /// CRL revocation keys ([`CaKey::revocation_key`]), any order.
    pub crl_revoked: Vec<[u8; CA_KEY_LEN]>,
}

/// A registered CA as the snapshot keys it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaEntry {
    pub key: CaKey,
    pub value: CaValue,
}

/// What the snapshot says of a CA besides its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaValue {
    pub subject_dn: String,
    pub require_fresh_crl: bool,
    pub fail_open: bool,
    pub crl_valid_until: Option<i64>,
}

impl CaValue {
    pub(super) fn of(record: &CaRecord) -> Self {
        CaValue {
            subject_dn: record.subject_dn.clone(),
            require_fresh_crl: record.require_fresh_crl,
            fail_open: record.fail_open,
            crl_valid_until: record.crl_valid_until,
        }
    }

    pub(super) fn authority(&self, key: CaKey) -> CertificateAuthority<'_> {
        CertificateAuthority {
            key,
            subject_dn: &self.subject_dn,
            require_fresh_crl: self.require_fresh_crl,
            fail_open: self.fail_open,
            crl_valid_until: self.crl_valid_until,
        }
    }
}

/// The snapshot key of a CRL revocation of `ca`'s serial `serial_hex`.
pub fn crl_revocation_key(ca: &certbind_shared::certificate::KeyIdentifier, serial_hex: &str) -> [u8; CA_KEY_LEN] {
    CaKey::of(ca).revocation_key(serial_hex)
}

/// A revoked certificate by issuer DN and serial (any spelling `normalize_serial` accepts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    pub issuer_dn: String,
    pub serial: String,
    pub owner: Owner,
}

/// A thumbprint mapping: `principal` is the name as its owner wrote it (the filter composes
/// an org's into the org's namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalEntry {
    pub fingerprint: Fingerprint,
    pub owner: Owner,
    pub principal: String,
    /// Whether it was mapped from the certificate itself (see [`Claim`]).
    pub claim: Claim,
}

/// A SAN mapping rule: a SAN of `kind` in `domain`, asserted by `issuer_dn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanRuleEntry {
    pub kind: SanKind,
    pub domain: String,
    pub issuer_dn: String,
    pub owner: Owner,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintEntry {
    pub owner: Owner,
    pub kind: ConstraintKind,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerEntry {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    pub owner: Owner,
    /// Audiences its tokens must name one of; empty: no restriction beyond the filter's.
    pub audiences: Vec<String>,
    /// The JWKS JSON document.
    pub jwks_json: Vec<u8>,
}
