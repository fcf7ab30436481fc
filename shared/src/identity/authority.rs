//! Issuing CAs as the identity data knows them: by key, with what their CRLs say.
//!
//! A CA is named by its key, never by its DN: two CAs may share one DN (test PKIs do), and a
//! certificate names its issuer's key in its AuthorityKeyIdentifier. The snapshot keeps a CA
//! as a [`CaKey`], 16 bytes derived from the key identifier, so every CA record and every
//! revoked entry has one width whatever the identifier's length.

use crate::identity::normalize_serial;
use sha2::{Digest, Sha256};

pub use crate::certificate::ca::{CaKey, CA_KEY_LEN};

// The revocation key is the identity data's: it spells the serial as the identity data
// compares serials ([`normalize_serial`]).
impl CaKey {
    /// The key of the revocation of serial `serial_hex` (any spelling [`normalize_serial`]
    /// accepts) by this CA's CRL: SHA-256 over a label, this key and the normalised serial,
    /// cut to 16 bytes. A CRL's entries and a certificate's serial meet in this one spelling.
    pub fn revocation_key(&self, serial_hex: &str) -> [u8; CA_KEY_LEN] {
        let serial = normalize_serial(serial_hex);
        let mut hasher = Sha256::new();
        hasher.update(b"certbind crl revocation v1\0");
        hasher.update(self.0);
        hasher.update(serial.as_bytes());
        let digest: [u8; 32] = hasher.finalize().into();
        let mut out = [0u8; CA_KEY_LEN];
        out.copy_from_slice(&digest[..CA_KEY_LEN]);
        out
    }
}

/// A registered issuing CA and the state of its revocation data, as the decision reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateAuthority<'a> {
    pub key: CaKey,
    /// The CA's subject (RFC 4514, as the filter spells an issuer DN): used only for
    /// certificates that carry no AuthorityKeyIdentifier.
    pub subject_dn: &'a str,
    /// Certificates of this CA are refused (`revocation_unknown`) without a fresh CRL.
    pub require_fresh_crl: bool,
    /// Where a fresh CRL is required and none is held, accept and count instead of refusing:
    /// a platform's explicit choice for one CA, which no org's policy can make for it.
    pub fail_open: bool,
    /// Until when the newest verified CRL counts as fresh (its nextUpdate plus the CA's grace
    /// period, Unix seconds); `None` when no CRL of this CA has been verified.
    pub crl_valid_until: Option<i64>,
}

impl CertificateAuthority<'_> {
    /// Whether a verified CRL of this CA is fresh at `now`.
    pub fn crl_fresh_at(&self, now: i64) -> bool {
        self.crl_valid_until.is_some_and(|until| now <= until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::ca::KeyIdentifier;

    #[test]
    fn revocation_keys_use_the_normalised_serial_and_the_ca() {
        let a = CaKey::of(&KeyIdentifier::new(&[1, 2, 3]).unwrap());
        let b = CaKey::of(&KeyIdentifier::new(&[1, 2, 4]).unwrap());
        assert_ne!(a, b);
        assert_eq!(a.revocation_key("0x00:0A"), a.revocation_key("a"));
        assert_ne!(a.revocation_key("0a"), b.revocation_key("0a"));
        assert_ne!(a.revocation_key("0a"), a.revocation_key("0b"));
    }

    #[test]
    fn freshness_ends_at_the_deadline() {
        let ca = |until| CertificateAuthority {
            key: CaKey([0; 16]),
            subject_dn: "CN=CA",
            require_fresh_crl: true,
            fail_open: false,
            crl_valid_until: until,
        };
        assert!(ca(Some(100)).crl_fresh_at(100));
        assert!(!ca(Some(100)).crl_fresh_at(101));
        assert!(!ca(None).crl_fresh_at(0));
    }
}
