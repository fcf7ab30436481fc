//! The subject's public key as an administrator reads it: its algorithm, curve and size.
//!
//! Read from the SubjectPublicKeyInfo the certificate walk has already checked; nothing here
//! refuses a certificate. A key whose inner encoding does not decode keeps its algorithm and
//! loses only its size.

use super::borrowed::TlvReader;
use der::asn1::ObjectIdentifier;
use der::{Decode, Tag};
use serde::Serialize;
use x509_cert::spki::SubjectPublicKeyInfoRef;

const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const ED25519: &str = "1.3.101.112";
const ED448: &str = "1.3.101.113";

/// Named curves PIV, PIV-I and CAC certificates use (SP 800-78), by OID: name and bits.
const CURVES: [(&str, &str, u32); 3] = [
    ("1.2.840.10045.3.1.7", "P-256", 256),
    ("1.3.132.0.34", "P-384", 384),
    ("1.3.132.0.35", "P-521", 521),
];

/// A certificate's public key: `{"algorithm": "RSA", "curve": null, "bits": 2048}`,
/// `{"algorithm": "EC", "curve": "P-256", "bits": 256}`, `Ed25519`, `Ed448`, or the dotted OID
/// of an algorithm not named here (then `bits` is null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicKeyFacts {
    pub algorithm: String,
    /// The named curve of an EC key (its dotted OID when it is not one of P-256/384/521,
    /// null for explicit parameters); null for other algorithms.
    pub curve: Option<String>,
    /// Modulus bits of an RSA key, the curve's size of an EC or EdDSA key; null when unknown.
    pub bits: Option<u32>,
}

impl PublicKeyFacts {
    /// The facts of a SubjectPublicKeyInfo's DER; `None` if it is not one.
    pub fn of_spki(spki_der: &[u8]) -> Option<PublicKeyFacts> {
        let spki = SubjectPublicKeyInfoRef::from_der(spki_der).ok()?;
        let algorithm = super::dotted_oid(&spki.algorithm.oid);
        let key = spki.subject_public_key.raw_bytes();
        let facts = |name: &str, curve: Option<String>, bits: Option<u32>| PublicKeyFacts { algorithm: name.to_owned(), curve, bits };
        Some(match algorithm.as_str() {
            RSA_ENCRYPTION | RSASSA_PSS => facts("RSA", None, rsa_modulus_bits(key)),
            EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                    .map(|oid| super::dotted_oid(&oid));
                match curve.as_deref().and_then(|c| CURVES.iter().find(|(oid, _, _)| *oid == c)) {
                    Some((_, name, bits)) => facts("EC", Some((*name).to_owned()), Some(*bits)),
                    None => facts("EC", curve, None),
                }
            }
            ED25519 => facts("Ed25519", None, Some(256)),
            ED448 => facts("Ed448", None, Some(456)),
            _ => PublicKeyFacts { algorithm, curve: None, bits: None },
        })
    }

    /// Approximate heap bytes, for caches bounded by memory.
    pub fn heap_bytes(&self) -> usize {
        self.algorithm.len() + self.curve.as_ref().map_or(0, String::len)
    }
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017): the
/// modulus's significant bits. `None` when the key does not decode so, or the modulus is
/// negative or zero.
fn rsa_modulus_bits(key: &[u8]) -> Option<u32> {
    let sequence = TlvReader::single(key, "RSAPublicKey").ok()?;
    if sequence.tag != Tag::Sequence {
        return None;
    }
    let mut fields = TlvReader::new(sequence.value, "RSAPublicKey");
    let modulus = fields.expect(Tag::Integer, "modulus").ok()?;
    fields.expect(Tag::Integer, "publicExponent").ok()?;
    if !fields.is_empty() || modulus.value.first().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    let significant = modulus.value.iter().position(|&b| b != 0)?;
    let rest = modulus.value.get(significant..)?;
    let first = rest.first()?;
    let bits = rest.len().checked_mul(8)? - first.leading_zeros() as usize;
    u32::try_from(bits).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spki(pem_text: &str) -> Vec<u8> {
        let der = crate::certificate::pem::decode_certificate_pem(pem_text.as_bytes()).unwrap();
        super::super::borrowed::CertificateRef::walk(&der).unwrap().spki_der.to_vec()
    }

    fn key(algorithm: &str, curve: Option<&str>, bits: Option<u32>) -> Option<PublicKeyFacts> {
        Some(PublicKeyFacts { algorithm: algorithm.into(), curve: curve.map(Into::into), bits })
    }

    /// The test PKI's keys, as `openssl x509 -noout -text` names them ("Public-Key: (2048 bit)",
    /// "ASN1 OID: prime256v1", "secp384r1").
    #[test]
    fn keys_of_the_test_pki() {
        let pki = |name: &str| std::fs::read_to_string(format!("{}/../tests/pki/{name}.pem", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(PublicKeyFacts::of_spki(&spki(&pki("piv-auth"))), key("RSA", None, Some(2048)));
        assert_eq!(PublicKeyFacts::of_spki(&spki(&pki("piv-card-auth"))), key("EC", Some("P-256"), Some(256)));
        assert_eq!(PublicKeyFacts::of_spki(&spki(&pki("service"))), key("EC", Some("P-384"), Some(384)));
        assert_eq!(PublicKeyFacts::of_spki(&spki(&pki("root-ca"))), key("EC", Some("P-384"), Some(384)));
    }

    #[test]
    fn rsa_modulus_bits_count_significant_bits_only() {
        // SEQUENCE { INTEGER 00 80 01, INTEGER 03 }: a 16-bit modulus behind its sign byte.
        assert_eq!(rsa_modulus_bits(&[0x30, 0x08, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x01, 0x03]), Some(16));
        assert_eq!(rsa_modulus_bits(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03]), Some(3));
        for broken in [
            &[][..],
            &[0x30, 0x03, 0x02, 0x01, 0x05][..],                         // no exponent
            &[0x30, 0x06, 0x02, 0x01, 0x85, 0x02, 0x01, 0x03][..],       // negative modulus
            &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x03][..],       // zero modulus
            &[0x30, 0x09, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03, 0x05, 0x00, 0x00][..], // extra field
            &[0x31, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03][..],       // a SET
            &[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03, 0x00][..], // trailing byte
        ] {
            assert_eq!(rsa_modulus_bits(broken), None, "{broken:02x?}");
        }
    }
}
