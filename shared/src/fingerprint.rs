//! The certificate fingerprint: SHA-256 of the DER encoding. It is the key of
//! `smart_card_links`, the blocklist and the snapshot, and (as `x5t#S256`) what a bound
//! token's `cnf` claim names.

use crate::encoding::{base64url_decode, base64url_encode, hex_decode, hex_lower};
use sha2::{Digest, Sha256};
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

/// Why a fingerprint text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FingerprintError {
    /// Not 64 hex digits, 32 colon-separated pairs, or 43 base64url characters.
    Format,
}

impl fmt::Display for FingerprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fingerprint must be 64 hex digits (colons allowed between pairs) or an unpadded base64url x5t#S256")
    }
}

impl std::error::Error for FingerprintError {}

impl Fingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// The `n`th fingerprint of a family `label` of made-up certificates, for tests and
    /// benchmarks: SHA-256 of the label and `n` (little-endian), so spread like real ones. The
    /// committed snapshot vectors hold such fingerprints: the scheme does not change.
    #[cfg(any(test, feature = "testing"))]
    pub fn synthetic(label: &str, n: u64) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(label.as_bytes());
        hasher.update(n.to_le_bytes());
        Fingerprint(hasher.finalize().into())
    }

    /// Canonical text form: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex_lower(&self.0)
    }

    /// The same digest as RFC 8705's `x5t#S256`: unpadded base64url.
    pub fn to_x5t_s256(&self) -> String {
        base64url_encode(&self.0)
    }

    /// [`Self::to_x5t_s256`]'s characters, without allocating.
    pub fn x5t_s256_bytes(&self) -> [u8; 43] {
        crate::encoding::base64url_digest(&self.0)
    }

    /// Accepts every spelling users paste: plain hex in any case, colon-separated hex pairs
    /// (`5f:9c:…`, as certificate viewers print it) and base64url `x5t#S256`.
    pub fn parse(text: &str) -> Result<Self, FingerprintError> {
        let text = text.trim();
        let bytes = match text.len() {
            64 => hex_decode(text),
            95 if is_colon_hex(text) => hex_decode(&text.replace(':', "")),
            43 => base64url_decode(text),
            _ => None,
        };
        bytes
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .map(Fingerprint)
            .ok_or(FingerprintError::Format)
    }

    /// Only the canonical hex form, for places where exactly one spelling is allowed
    /// (the snapshot, headers set by this project).
    pub fn from_canonical_hex(text: &str) -> Result<Self, FingerprintError> {
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(FingerprintError::Format);
        }
        Self::parse(text)
    }
}

fn is_colon_hex(text: &str) -> bool {
    text.bytes()
        .enumerate()
        .all(|(i, b)| if i % 3 == 2 { b == b':' } else { b.is_ascii_hexdigit() })
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Serialized in its canonical text form ([`Fingerprint::to_hex`]), as the control plane's API
/// shows it.
impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SHA-256("abc"), a published test vector.
    const ABC_HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn digest_and_all_spellings_agree() {
        let fp = Fingerprint::of_der(b"abc");
        assert_eq!(fp.to_hex(), ABC_HEX);
        assert_eq!(Fingerprint::parse(&ABC_HEX.to_uppercase()).unwrap(), fp);
        let colons: Vec<String> = fp.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(Fingerprint::parse(&colons.join(":")).unwrap(), fp);
        assert_eq!(Fingerprint::parse(&fp.to_x5t_s256()).unwrap(), fp);
        assert_eq!(fp.to_x5t_s256(), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert_eq!(&fp.x5t_s256_bytes()[..], b"ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }

    #[test]
    fn malformed_spellings_are_refused() {
        for bad in ["", "zz", &ABC_HEX[..63], &format!("{ABC_HEX}0"), "ba:78", &ABC_HEX.replace('b', "g")] {
            assert_eq!(Fingerprint::parse(bad), Err(FingerprintError::Format), "{bad}");
        }
        let misplaced: String = ABC_HEX.chars().take(62).collect::<String>() + "::::::::::::::::::::::::::::::::x";
        assert_eq!(Fingerprint::parse(&misplaced), Err(FingerprintError::Format));
        assert_eq!(Fingerprint::from_canonical_hex(&ABC_HEX.to_uppercase()), Err(FingerprintError::Format));
    }
}
