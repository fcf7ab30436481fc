//! An optional HMAC-SHA256 over the forwarded client-certificate header, set by a front tier
//! (nginx, Traefik) that shares a secret with certbind. It proves the header was written by
//! that tier and not by anything between it and the proxy.
//!
//! The signature header is `t=<unix seconds>,sha256=<MAC>`: the MAC is HMAC-SHA256 over the
//! decimal timestamp, a `.`, and the certificate header value exactly as received (before any
//! percent-decoding), in base64 (standard or url-safe alphabet, padded or not). The timestamp
//! is signed so that a captured pair of headers is refused once it is older (or newer) than the
//! configured window: a replay is possible only inside it.

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

/// Longest signature header accepted: `t=` and a 20-digit timestamp, `,sha256=` and padded
/// base64 of 32 bytes is 74 characters; the rest is room for surrounding whitespace.
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
    /// Not `t=<digits>,sha256=<base64 of a 32-byte MAC>`.
    Malformed,
    /// The timestamp is outside the window around the proxy's clock.
    Stale,
    /// A well-formed MAC that does not match the header value.
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => "forwarded certificate signature is missing",
            SignatureError::Malformed => "forwarded certificate signature is not t=<seconds>,sha256=<base64 HMAC-SHA256>",
            SignatureError::Stale => "forwarded certificate signature's timestamp is outside the allowed window",
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

    /// Checks `signature_header` (the signature header's value) against `header_value` (the
    /// forwarded certificate header's value, as received) and the clock: the timestamp must
    /// be within `max_age_seconds` of `now`, either way. Constant time in the MAC.
    pub fn verify(&self, header_value: &[u8], signature_header: &str, now: i64, max_age_seconds: u32) -> Result<(), SignatureError> {
        if signature_header.len() > MAX_SIGNATURE_HEADER_BYTES {
            return Err(SignatureError::Malformed);
        }
        let text = signature_header.trim();
        if text.is_empty() {
            return Err(SignatureError::Missing);
        }
        let (timestamp, encoded) = text
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(','))
            .and_then(|(t, mac)| Some((t, strip_prefix_ignore_case(mac.trim_start(), "sha256=")?)))
            .ok_or(SignatureError::Malformed)?;
        let seconds = parse_timestamp(timestamp).ok_or(SignatureError::Malformed)?;
        let tag = STANDARD_ANY_PADDING
            .decode(encoded)
            .or_else(|_| URL_SAFE_ANY_PADDING.decode(encoded))
            .map_err(|_| SignatureError::Malformed)?;
        if tag.len() != MAC_BYTES {
            return Err(SignatureError::Malformed);
        }
        let mut mac = self.mac.clone();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(header_value);
        mac.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)?;
        // Judged after the MAC, so that an unsigned timestamp tells nothing about the window.
        if now.abs_diff(seconds) > u64::from(max_age_seconds) {
            return Err(SignatureError::Stale);
        }
        Ok(())
    }

    /// The signature header value for `value` at `timestamp`: what a front tier sends.
    pub fn sign(&self, value: &[u8], timestamp: i64) -> String {
        let mut mac = self.mac.clone();
        let t = timestamp.to_string();
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(value);
        format!("t={t},sha256={}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).and_then(|_| text.get(prefix.len()..))
}

/// Seconds since the epoch: 1 to 19 decimal digits, no sign, no leading zero.
fn parse_timestamp(text: &str) -> Option<i64> {
    let plain = !text.is_empty() && text.len() <= 19 && !text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit());
    if plain {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    const HEADER: &[u8] = b"-----BEGIN%20CERTIFICATE-----%0AMIIB...%0A-----END%20CERTIFICATE-----%0A";
    const NOW: i64 = 1_800_000_000;

    fn key() -> ForwardedSignatureKey {
        ForwardedSignatureKey::new(SECRET).unwrap()
    }

    fn mac_of(signature: &str) -> &str {
        signature.split_once(",sha256=").unwrap().1
    }

    #[test]
    fn the_mac_covers_timestamp_dot_value() {
        // RFC 4231 test case 6's key over "<t>.<value>" computed independently with HMAC.
        let key = ForwardedSignatureKey::new(&[0xaa; 131]).unwrap();
        let signature = key.sign(b"value", 1_700_000_000);
        let mut mac = Hmac::<Sha256>::new_from_slice(&[0xaa; 131]).unwrap();
        mac.update(b"1700000000.value");
        assert_eq!(signature, format!("t=1700000000,sha256={}", STANDARD.encode(mac.finalize().into_bytes())));
    }

    #[test]
    fn every_accepted_spelling_of_a_good_signature_verifies() {
        let key = key();
        let signature = key.sign(HEADER, NOW);
        let raw = STANDARD.decode(mac_of(&signature)).unwrap();
        let url_safe_unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        let spellings = [
            signature.clone(),
            signature.trim_end_matches('=').to_string(),
            format!("t={NOW},SHA256={url_safe_unpadded}"),
            format!("t={NOW}, sha256={}", mac_of(&signature)),
            format!("  {signature} "),
        ];
        for spelling in spellings {
            assert_eq!(key.verify(HEADER, &spelling, NOW, 60), Ok(()), "{spelling}");
        }
        // Inside the window on either side.
        assert_eq!(key.verify(HEADER, &signature, NOW + 60, 60), Ok(()));
        assert_eq!(key.verify(HEADER, &signature, NOW - 60, 60), Ok(()));
    }

    #[test]
    fn refusals_name_the_reason() {
        let key = key();
        let signature = key.sign(HEADER, NOW);
        let other_key = ForwardedSignatureKey::new(&[7u8; 40]).unwrap();
        let mut tampered = HEADER.to_vec();
        tampered[0] = b'+';
        let mac = mac_of(&signature).to_string();
        let cases: Vec<(&str, &[u8], String, i64, SignatureError)> = vec![
            ("no signature", HEADER, String::new(), NOW, SignatureError::Missing),
            ("blank signature", HEADER, "   ".into(), NOW, SignatureError::Missing),
            ("no timestamp", HEADER, format!("sha256={mac}"), NOW, SignatureError::Malformed),
            ("bare MAC", HEADER, mac.clone(), NOW, SignatureError::Malformed),
            ("timestamp not digits", HEADER, format!("t=soon,sha256={mac}"), NOW, SignatureError::Malformed),
            ("signed timestamp", HEADER, format!("t=+{NOW},sha256={mac}"), NOW, SignatureError::Malformed),
            ("leading zero", HEADER, format!("t=0{NOW},sha256={mac}"), NOW, SignatureError::Malformed),
            ("not base64", HEADER, format!("t={NOW},sha256=not*base64"), NOW, SignatureError::Malformed),
            ("MAC truncated", HEADER, format!("t={NOW},sha256={}", &mac[..20]), NOW, SignatureError::Malformed),
            ("oversized", HEADER, "A".repeat(200), NOW, SignatureError::Malformed),
            ("header value changed", &tampered, signature.clone(), NOW, SignatureError::Mismatch),
            ("timestamp changed", HEADER, format!("t={},sha256={mac}", NOW + 1), NOW, SignatureError::Mismatch),
            ("signed with another secret", HEADER, other_key.sign(HEADER, NOW), NOW, SignatureError::Mismatch),
            ("replayed after the window", HEADER, signature.clone(), NOW + 61, SignatureError::Stale),
            ("from the future", HEADER, signature.clone(), NOW - 61, SignatureError::Stale),
        ];
        for (name, value, signature, now, error) in cases {
            assert_eq!(key.verify(value, &signature, now, 60), Err(error), "{name}");
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
