//! The public keys a filter pins to verify snapshots, and the key id that names them.
//!
//! A key id is the first 16 hex digits of SHA-256 over the key's SubjectPublicKeyInfo DER
//! (P-256 keys in their uncompressed form), so it follows from the key itself and both sides
//! compute the same id without being told it.

use super::format::SignatureAlgorithm;
use crate::encoding::{base64_decode, base64_encode, base64url_decode, hex_lower};
use p256::ecdsa::signature::Verifier as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// Largest pinned-key text accepted (PEM or JWK). The accepted keys are under 100 bytes of
/// DER; 4 KiB leaves room for comments and line breaks without parsing unbounded input.
pub const MAX_KEY_TEXT_BYTES: usize = 4 * 1024;

/// DER is canonical, so each accepted SubjectPublicKeyInfo shape has exactly one prefix:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) ... }.
const P256_SPKI_PREFIX_UNCOMPRESSED: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const P256_SPKI_PREFIX_COMPRESSED: [u8; 26] = [
    0x30, 0x39, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x22, 0x00,
];
/// SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING (0 unused bits) 32 bytes } (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The text is longer than [`MAX_KEY_TEXT_BYTES`].
    TooLong { len: usize },
    /// Not a `PUBLIC KEY` PEM block with a valid base64 body.
    NotPem,
    /// A SubjectPublicKeyInfo of neither P-256 nor Ed25519.
    UnsupportedKey,
    /// The key bytes are not a point on the curve.
    InvalidPoint,
    /// A JWK that breaks RFC 7517/7518; says which member.
    Jwk(&'static str),
    /// A JWK carries private key material (`d`): the wrong half was configured.
    PrivateKeyMaterial,
    /// A JWK's `kid` disagrees with the key id derived from the key.
    KeyIdMismatch { stated: String, derived: String },
    /// A verifier needs at least one pinned key.
    NoKeys,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::TooLong { len } => write!(f, "public key text is {len} bytes, more than {MAX_KEY_TEXT_BYTES}"),
            KeyError::NotPem => f.write_str("not a \"PUBLIC KEY\" PEM block"),
            KeyError::UnsupportedKey => f.write_str("public key is neither ECDSA P-256 nor Ed25519"),
            KeyError::InvalidPoint => f.write_str("public key is not a valid curve point"),
            KeyError::Jwk(member) => write!(f, "JWK member \"{member}\" is missing or invalid"),
            KeyError::PrivateKeyMaterial => f.write_str("JWK holds private key material; pin the public key only"),
            KeyError::KeyIdMismatch { stated, derived } => {
                write!(f, "JWK kid \"{stated}\" differs from the key's id \"{derived}\"")
            }
            KeyError::NoKeys => f.write_str("no snapshot signing key is pinned"),
        }
    }
}

impl std::error::Error for KeyError {}

#[derive(Clone)]
enum KeyVerifier {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A public key trusted to sign snapshots.
#[derive(Clone)]
pub struct PinnedKey {
    key_id: String,
    spki_der: Vec<u8>,
    verifier: KeyVerifier,
}

impl fmt::Debug for PinnedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedKey").field("key_id", &self.key_id).field("algorithm", &self.algorithm()).finish()
    }
}

impl PartialEq for PinnedKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki_der == other.spki_der
    }
}

impl Eq for PinnedKey {}

/// The key id of a SubjectPublicKeyInfo DER: the first 16 hex digits of its SHA-256.
pub fn key_id_of_spki(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    hex_lower(digest.get(..8).unwrap_or(&[]))
}

/// The uncompressed SubjectPublicKeyInfo DER of a P-256 point given in SEC1 form
/// (`04 ‖ x ‖ y` or compressed), as a PKCS#11 token's `CKA_EC_POINT` yields it.
pub fn p256_spki_der(sec1_point: &[u8]) -> Result<Vec<u8>, KeyError> {
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1_point).map_err(|_| KeyError::InvalidPoint)?;
    Ok(p256_spki_of(&key))
}

fn p256_spki_of(key: &p256::ecdsa::VerifyingKey) -> Vec<u8> {
    let point = key.to_encoded_point(false);
    let mut der = Vec::with_capacity(P256_SPKI_PREFIX_UNCOMPRESSED.len() + 65);
    der.extend_from_slice(&P256_SPKI_PREFIX_UNCOMPRESSED);
    der.extend_from_slice(point.as_bytes());
    der
}

/// The SubjectPublicKeyInfo DER of an Ed25519 public key.
pub fn ed25519_spki_der(public_key: &[u8; 32]) -> Vec<u8> {
    let mut der = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
    der.extend_from_slice(&ED25519_SPKI_PREFIX);
    der.extend_from_slice(public_key);
    der
}

/// PEM text (`-----BEGIN PUBLIC KEY-----`) of a SubjectPublicKeyInfo DER.
pub fn public_key_pem(spki_der: &[u8]) -> String {
    let body = base64_encode(spki_der);
    let mut pem = String::with_capacity(body.len() + 64);
    pem.push_str(PEM_BEGIN);
    pem.push('\n');
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    pem
}

impl PinnedKey {
    /// A SubjectPublicKeyInfo DER of an ECDSA P-256 or Ed25519 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Some(point) = der
            .strip_prefix(&P256_SPKI_PREFIX_UNCOMPRESSED[..])
            .or_else(|| der.strip_prefix(&P256_SPKI_PREFIX_COMPRESSED[..]))
        {
            let expected_len = if der.starts_with(&P256_SPKI_PREFIX_UNCOMPRESSED) { 65 } else { 33 };
            if point.len() != expected_len {
                return Err(KeyError::UnsupportedKey);
            }
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| KeyError::InvalidPoint)?;
            return Ok(Self::p256(key));
        }
        if let Some(raw) = der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            let raw: [u8; 32] = raw.try_into().map_err(|_| KeyError::UnsupportedKey)?;
            return Self::ed25519(&raw);
        }
        Err(KeyError::UnsupportedKey)
    }

    /// A `-----BEGIN PUBLIC KEY-----` PEM block (SubjectPublicKeyInfo), as `openssl pkey
    /// -pubout` and the control plane's `/api/v1/snapshot/keys` print it.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        if text.len() > MAX_KEY_TEXT_BYTES {
            return Err(KeyError::TooLong { len: text.len() });
        }
        let body =
            text.trim().strip_prefix(PEM_BEGIN).and_then(|rest| rest.strip_suffix(PEM_END)).ok_or(KeyError::NotPem)?;
        let base64: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let der = base64_decode(&base64).ok_or(KeyError::NotPem)?;
        Self::from_spki_der(&der)
    }

    /// A public JWK: `{"kty":"EC","crv":"P-256","x":…,"y":…}` or
    /// `{"kty":"OKP","crv":"Ed25519","x":…}`. A `kid`, if present, must be the derived key id.
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let object = jwk.as_object().ok_or(KeyError::Jwk("(object)"))?;
        if object.contains_key("d") {
            return Err(KeyError::PrivateKeyMaterial);
        }
        let member = |name: &'static str| object.get(name).and_then(Value::as_str).ok_or(KeyError::Jwk(name));
        let coordinate = |name: &'static str, len: usize| {
            member(name).ok().and_then(base64url_decode).filter(|bytes| bytes.len() == len).ok_or(KeyError::Jwk(name))
        };
        let key = match (member("kty")?, member("crv")?) {
            ("EC", "P-256") => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&coordinate("x", 32)?);
                point.extend_from_slice(&coordinate("y", 32)?);
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| KeyError::InvalidPoint)?;
                Self::p256(key)
            }
            ("OKP", "Ed25519") => {
                let raw: [u8; 32] = coordinate("x", 32)?.try_into().map_err(|_| KeyError::Jwk("x"))?;
                Self::ed25519(&raw)?
            }
            ("EC" | "OKP", _) => return Err(KeyError::Jwk("crv")),
            _ => return Err(KeyError::Jwk("kty")),
        };
        if let Some(kid) = object.get("kid") {
            let kid = kid.as_str().ok_or(KeyError::Jwk("kid"))?;
            if kid != key.key_id {
                return Err(KeyError::KeyIdMismatch { stated: kid.to_owned(), derived: key.key_id.clone() });
            }
        }
        Ok(key)
    }

    /// A pinned key as configuration text: a PEM block, or a JWK as JSON.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.len() > MAX_KEY_TEXT_BYTES {
            return Err(KeyError::TooLong { len: text.len() });
        }
        if text.trim_start().starts_with('{') {
            let value: Value = serde_json::from_str(text).map_err(|_| KeyError::Jwk("(json)"))?;
            return Self::from_jwk(&value);
        }
        Self::from_pem(text)
    }

    fn p256(key: p256::ecdsa::VerifyingKey) -> Self {
        let spki_der = p256_spki_of(&key);
        PinnedKey { key_id: key_id_of_spki(&spki_der), spki_der, verifier: KeyVerifier::P256(key) }
    }

    fn ed25519(raw: &[u8; 32]) -> Result<Self, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(raw).map_err(|_| KeyError::InvalidPoint)?;
        let spki_der = ed25519_spki_der(raw);
        Ok(PinnedKey { key_id: key_id_of_spki(&spki_der), spki_der, verifier: KeyVerifier::Ed25519(key) })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        match self.verifier {
            KeyVerifier::P256(_) => SignatureAlgorithm::EcdsaP256Sha256,
            KeyVerifier::Ed25519(_) => SignatureAlgorithm::Ed25519,
        }
    }

    /// The SubjectPublicKeyInfo DER (P-256 uncompressed) the key id is derived from.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Whether `signature` is this key's signature over `message`. A P-256 signature must be
    /// in low-S form: the control plane's signers normalise S (any ECDSA signature `(r, s)`
    /// has a twin `(r, n - s)` that verifies too), so a snapshot has exactly one valid
    /// signature and a high-S one was made by something else.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.verifier {
            KeyVerifier::P256(key) => p256::ecdsa::Signature::from_slice(signature)
                .map(|sig| sig.normalize_s().is_none() && key.verify(message, &sig).is_ok())
                .unwrap_or(false),
            KeyVerifier::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .map(|sig| key.verify_strict(message, &sig).is_ok())
                .unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;

    #[test]
    fn a_p256_signature_verifies_in_low_s_form_only() {
        for seed in 1..=16u8 {
            let signer = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
            let spki = p256_spki_der(signer.verifying_key().to_encoded_point(false).as_bytes()).unwrap();
            let pinned = PinnedKey::from_spki_der(&spki).unwrap();
            let message = format!("snapshot header {seed}");
            let signature: p256::ecdsa::Signature = signer.sign(message.as_bytes());
            let low = signature.normalize_s().unwrap_or(signature);
            let (r, s) = low.split_scalars();
            let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
            assert!(high.normalize_s().is_some(), "the twin of a low-S signature is high-S");
            assert!(pinned.verifies(message.as_bytes(), &low.to_bytes()), "seed {seed}: low S");
            assert!(!pinned.verifies(message.as_bytes(), &high.to_bytes()), "seed {seed}: high S");
            // The p256 crate itself accepts both: the refusal is ours.
            assert!(p256::ecdsa::signature::Verifier::verify(signer.verifying_key(), message.as_bytes(), &high).is_ok());
        }
    }
}
