//! An optional HMAC-SHA256 over the forwarded client-certificate header, set by a front tier
//! (nginx, Traefik) that shares a secret with certbind. It proves the header was written by
//! that tier and not by anything between it and the proxy.
//!
//! The MAC covers the header value exactly as received, before any percent-decoding. The
//! signature header carries base64 (standard or url-safe alphabet, padded or not) of the
//! 32-byte MAC, optionally prefixed `sha256=`.

use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use std::fmt;

/// Shortest secret accepted: HMAC-SHA256's security rests on the key, and 32 random bytes
/// match the digest size (RFC 2104 §3).
pub const MIN_SECRET_BYTES: usize = 32;

/// Longest signature header accepted: `sha256=` and padded base64 of 32 bytes is 51
/// characters; the rest is room for surrounding whitespace.
const MAX_SIGNATURE_HEADER_BYTES: usize = 128;

const MAC_BYTES: usize = 32;

const ANY_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, ANY_PADDING);
const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, ANY_PADDING);

/// Why a forwarded header's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No signature header, or an empty one.
    Missing,
    /// Not base64 of a 32-byte MAC.
    Malformed,
    /// A well-formed MAC that does not match the header value.
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => "forwarded certificate signature is missing",
            SignatureError::Malformed => "forwarded certificate signature is not base64 of an HMAC-SHA256",
            SignatureError::Mismatch => "forwarded certificate signature does not match",
        })
    }
}

impl std::error::Error for SignatureError {}

/// Why a shared secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretError {
    TooShort { minimum: usize, actual: usize },
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::TooShort { minimum, actual } => {
                write!(f, "forwarded header HMAC secret is {actual} bytes; at least {minimum} are required")
            }
        }
    }
}

impl std::error::Error for SecretError {}

/// The secret shared with the front tier, ready to verify.
#[derive(Clone)]
pub struct ForwardedSignatureKey {
    /// Keyed once; cloned per use so the key schedule is not redone per request.
    mac: Hmac<Sha256>,
}

impl fmt::Debug for ForwardedSignatureKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForwardedSignatureKey { .. }")
    }
}

impl ForwardedSignatureKey {
    pub fn new(secret: &[u8]) -> Result<Self, SecretError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort { minimum: MIN_SECRET_BYTES, actual: secret.len() });
        }
        // HMAC accepts a key of any length, so this cannot fail; map it anyway rather than unwrap.
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| SecretError::TooShort { minimum: MIN_SECRET_BYTES, actual: secret.len() })?;
        Ok(ForwardedSignatureKey { mac })
    }

    /// Checks `signature_header` (the signature header's value) against `header_value`
    /// (the forwarded certificate header's value, as received). Constant time in the MAC.
    pub fn verify(&self, header_value: &[u8], signature_header: &str) -> Result<(), SignatureError> {
        if signature_header.len() > MAX_SIGNATURE_HEADER_BYTES {
            return Err(SignatureError::Malformed);
        }
        let text = signature_header.trim();
        if text.is_empty() {
            return Err(SignatureError::Missing);
        }
        let encoded = text
            .get(..7)
            .filter(|prefix| prefix.eq_ignore_ascii_case("sha256="))
            .and_then(|_| text.get(7..))
            .unwrap_or(text);
        let tag = STANDARD_ANY_PADDING
            .decode(encoded)
            .or_else(|_| URL_SAFE_ANY_PADDING.decode(encoded))
            .map_err(|_| SignatureError::Malformed)?;
        if tag.len() != MAC_BYTES {
            return Err(SignatureError::Malformed);
        }
        let mut mac = self.mac.clone();
        mac.update(header_value);
        mac.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
    }

    /// The signature header value for `value`: padded standard base64 of the MAC, what a front
    /// tier sends.
    pub fn sign(&self, value: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(value);
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    const HEADER: &[u8] = b"-----BEGIN%20CERTIFICATE-----%0AMIIB...%0A-----END%20CERTIFICATE-----%0A";

    fn key() -> ForwardedSignatureKey {
        ForwardedSignatureKey::new(SECRET).unwrap()
    }

    #[test]
    fn sign_matches_rfc4231_test_case_6() {
        let key = ForwardedSignatureKey::new(&[0xaa; 131]).unwrap();
        let signature = key.sign(b"Test Using Larger Than Block-Size Key - Hash Key First");
        let expected = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
        assert_eq!(crate::encoding::hex_lower(&STANDARD.decode(signature).unwrap()), expected);
    }

    #[test]
    fn every_accepted_spelling_of_a_good_signature_verifies() {
        let key = key();
        let signature = key.sign(HEADER);
        let raw = STANDARD.decode(&signature).unwrap();
        let url_safe_unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        let spellings = [
            signature.clone(),
            signature.trim_end_matches('=').to_string(),
            url_safe_unpadded.clone(),
            format!("sha256={signature}"),
            format!("SHA256={url_safe_unpadded}"),
            format!("  {signature} "),
        ];
        for spelling in spellings {
            assert_eq!(key.verify(HEADER, &spelling), Ok(()), "{spelling}");
        }
    }

    #[test]
    fn refusals_name_the_reason() {
        let key = key();
        let signature = key.sign(HEADER);
        let other_key = ForwardedSignatureKey::new(&[7u8; 40]).unwrap();
        let mut tampered = HEADER.to_vec();
        tampered[0] = b'+';
        let cases: Vec<(&str, &[u8], String, SignatureError)> = vec![
            ("no signature", HEADER, String::new(), SignatureError::Missing),
            ("blank signature", HEADER, "   ".into(), SignatureError::Missing),
            ("not base64", HEADER, "not*base64".into(), SignatureError::Malformed),
            ("MAC truncated", HEADER, signature[..20].to_string(), SignatureError::Malformed),
            ("hex instead of base64", HEADER, "ab".repeat(32), SignatureError::Malformed),
            ("oversized", HEADER, "A".repeat(200), SignatureError::Malformed),
            ("header value changed", &tampered, signature.clone(), SignatureError::Mismatch),
            ("signed with another secret", HEADER, other_key.sign(HEADER), SignatureError::Mismatch),
        ];
        for (name, value, signature, error) in cases {
            assert_eq!(key.verify(value, &signature), Err(error), "{name}");
        }
    }

    #[test]
    fn short_secrets_are_refused_and_debug_hides_the_secret() {
        assert_eq!(
            ForwardedSignatureKey::new(&SECRET[..31]).unwrap_err(),
            SecretError::TooShort { minimum: 32, actual: 31 }
        );
        assert_eq!(format!("{:?}", key()), "ForwardedSignatureKey { .. }");
    }
}
