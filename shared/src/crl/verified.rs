//! A CRL tied to the CA that signed it, and the revoked serials it leaves, complete or
//! folded from a delta.

use super::entries::Serial;
use super::extensions::ReasonCode;
use super::limits::MAX_SERIAL_LEN;
use super::list::Crl;
use super::number::CrlNumber;
use super::scope::CrlScope;
use super::{signature, CrlError, CrlLimits};
use crate::certificate::{CaCertificate, KeyIdentifier};
use std::ops::Deref;

/// A CRL whose signature verifies with a CA's key and whose issuer is that CA. Everything
/// [`Crl`] tells is readable through it.
#[derive(Debug, Clone)]
pub struct VerifiedCrl<'a> {
    crl: Crl<'a>,
    ca_key: KeyIdentifier,
}

impl VerifiedCrl<'_> {
    /// The key identifier of the CA it was verified with: whose serials its entries are.
    pub fn ca_key_identifier(&self) -> &KeyIdentifier {
        &self.ca_key
    }
}

impl<'a> Deref for VerifiedCrl<'a> {
    type Target = Crl<'a>;

    fn deref(&self) -> &Crl<'a> {
        &self.crl
    }
}

/// Reads and verifies a DER CRL against the CA `ca` ([`Crl::from_der`], then [`Crl::verify`]).
pub fn verify_crl<'a>(der: &'a [u8], ca: &CaCertificate, limits: &CrlLimits) -> Result<VerifiedCrl<'a>, CrlError> {
    Crl::from_der(der, limits)?.verify(ca)
}

impl<'a> Crl<'a> {
    /// Ties the CRL to `ca`: the CA's certificate must allow it to sign CRLs (basicConstraints
    /// cA, keyUsage cRLSign when present); the CRL's AuthorityKeyIdentifier, when it has one,
    /// must name the CA's key identifier; its issuer must be the CA's subject, byte for byte
    /// or as DN text; and its signature must verify with the CA's key. The names are checked
    /// first only to say clearly what is wrong: two CAs may share a DN, and the signature is
    /// what ties the CRL to one of them.
    pub fn verify(self, ca: &CaCertificate) -> Result<VerifiedCrl<'a>, CrlError> {
        if !ca.is_ca {
            return Err(CrlError::CaCannotSignCrls { problem: "its certificate does not assert basicConstraints cA" });
        }
        if !ca.may_sign_crls {
            return Err(CrlError::CaCannotSignCrls { problem: "its keyUsage does not include cRLSign" });
        }
        if let Some(authority) = self.authority_key_identifier() {
            if *authority != ca.key_identifier {
                return Err(CrlError::AuthorityKeyMismatch { crl: authority.clone(), ca: ca.key_identifier.clone() });
            }
        }
        if self.issuer_der() != ca.subject_der.as_slice() && self.issuer_dn() != ca.subject_dn {
            return Err(CrlError::IssuerMismatch { crl: self.issuer_dn().to_owned(), ca: ca.subject_dn.clone() });
        }
        signature::verify(self.signature_algorithm, &ca.spki_der, self.tbs, self.signature)?;
        Ok(VerifiedCrl { crl: self, ca_key: ca.key_identifier.clone() })
    }
}

/// One serial, inline: its length, then its DER content, zero-padded. Ordered by length then
/// bytes, which is all a sorted set needs.
type SerialKey = [u8; MAX_SERIAL_LEN + 1];

fn serial_key(serial: Serial<'_>) -> SerialKey {
    let content = serial.der_content();
    let mut key = [0u8; MAX_SERIAL_LEN + 1];
    // The reader refuses longer serials, so the length fits and the copy is whole.
    let len = content.len().min(MAX_SERIAL_LEN);
    key[0] = len as u8;
    if let (Some(slot), Some(bytes)) = (key.get_mut(1..=len), content.get(..len)) {
        slot.copy_from_slice(bytes);
    }
    key
}

fn key_serial(key: &SerialKey) -> Serial<'_> {
    let len = usize::from(key[0]).min(MAX_SERIAL_LEN);
    Serial::from_der_content(key.get(1..=len).unwrap_or_default())
}

/// The serials a CA has revoked as of one CRL number: sorted, without repeats, 22 bytes each.
/// Built from a complete CRL and brought forward by delta CRLs and newer complete CRLs of the
/// same CA key and scope; an older CRL, another CA's, or one of another scope is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerials {
    ca_key: KeyIdentifier,
    scope: CrlScope,
    number: CrlNumber,
    keys: Vec<SerialKey>,
}

fn sorted_keys(serials: impl Iterator<Item = SerialKey>, capacity: usize) -> Vec<SerialKey> {
    let mut keys = Vec::with_capacity(capacity);
    keys.extend(serials);
    keys.sort_unstable();
    keys.dedup();
    keys
}

impl RevokedSerials {
    /// Every serial of a complete CRL (a certificateHold is revoked until a delta releases it).
    pub fn from_complete(crl: &VerifiedCrl<'_>) -> Result<Self, CrlError> {
        if crl.is_delta() {
            return Err(CrlError::WrongKind { expected: "a complete CRL, not a delta CRL" });
        }
        let keys = sorted_keys(crl.entries().map(|entry| serial_key(entry.serial)), crl.entry_count());
        Ok(RevokedSerials { ca_key: crl.ca_key.clone(), scope: crl.scope(), number: crl.number(), keys })
    }

    /// A set kept elsewhere (the serials of a complete CRL once folded, say), to bring forward;
    /// `None` when a serial is longer than a CRL may carry ([`MAX_SERIAL_LEN`]).
    pub fn from_serials<'s>(
        ca_key: KeyIdentifier,
        scope: CrlScope,
        number: CrlNumber,
        serials: impl IntoIterator<Item = Serial<'s>>,
    ) -> Option<Self> {
        let mut keys = Vec::new();
        for serial in serials {
            if serial.der_content().len() > MAX_SERIAL_LEN {
                return None;
            }
            keys.push(serial_key(serial));
        }
        keys.sort_unstable();
        keys.dedup();
        Some(RevokedSerials { ca_key, scope, number, keys })
    }

    /// The same CA key and scope, or the CRL speaks of other certificates than these.
    fn check_same_source(&self, crl: &VerifiedCrl<'_>) -> Result<(), CrlError> {
        if crl.ca_key != self.ca_key {
            return Err(CrlError::OtherCa { held: self.ca_key.clone(), offered: crl.ca_key.clone() });
        }
        if crl.scope() != self.scope {
            return Err(CrlError::ScopeMismatch { held: self.scope, offered: crl.scope() });
        }
        Ok(())
    }

    /// Replaces the set with a newer complete CRL's (or the same CRL fetched again). One of a
    /// lower number is refused: a replayed old CRL would bring back released holds and drop
    /// revocations made since.
    pub fn apply_complete(&mut self, crl: &VerifiedCrl<'_>) -> Result<(), CrlError> {
        if crl.is_delta() {
            return Err(CrlError::WrongKind { expected: "a complete CRL, not a delta CRL" });
        }
        self.check_same_source(crl)?;
        if crl.number() < self.number {
            return Err(CrlError::OlderCrl { held: self.number, offered: crl.number() });
        }
        *self = RevokedSerials::from_complete(crl)?;
        Ok(())
    }

    /// Folds a delta CRL in (RFC 5280 §5.2.4): it applies when the number held is at least the
    /// delta's base and below the delta's own number. Its removeFromCRL entries leave the set,
    /// the others join it; the set then stands at the delta's number.
    pub fn apply_delta(&mut self, delta: &VerifiedCrl<'_>) -> Result<(), CrlError> {
        let Some(base) = delta.base_number() else {
            return Err(CrlError::WrongKind { expected: "a delta CRL, not a complete CRL" });
        };
        self.check_same_source(delta)?;
        if self.number < base || self.number >= delta.number() {
            return Err(CrlError::DeltaDoesNotApply { held: self.number, base, delta: delta.number() });
        }
        let removed = sorted_keys(
            delta.entries().filter(|e| e.reason == Some(ReasonCode::RemoveFromCrl)).map(|e| serial_key(e.serial)),
            0,
        );
        let added = sorted_keys(
            delta.entries().filter(|e| e.reason != Some(ReasonCode::RemoveFromCrl)).map(|e| serial_key(e.serial)),
            delta.entry_count(),
        );
        if !removed.is_empty() {
            self.keys.retain(|key| removed.binary_search(key).is_err());
        }
        self.keys.extend(added.into_iter().filter(|key| removed.binary_search(key).is_err()));
        self.keys.sort_unstable();
        self.keys.dedup();
        self.number = delta.number();
        Ok(())
    }

    /// The key identifier of the CA whose serials these are.
    pub fn ca_key_identifier(&self) -> &KeyIdentifier {
        &self.ca_key
    }

    pub fn scope(&self) -> CrlScope {
        self.scope
    }

    /// The CRL number the set stands at.
    pub fn number(&self) -> CrlNumber {
        self.number
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, serial: Serial<'_>) -> bool {
        serial.der_content().len() <= MAX_SERIAL_LEN && self.keys.binary_search(&serial_key(serial)).is_ok()
    }

    /// The serials, shortest first, then by their bytes.
    pub fn iter(&self) -> impl Iterator<Item = Serial<'_>> + '_ {
        self.keys.iter().map(key_serial)
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * std::mem::size_of::<SerialKey>()
    }
}
