//! An issuer's JSON Web Key Set (RFC 7517), parsed once into ready verifying keys.
//!
//! Only public signing keys of the algorithms [`Algorithm`] names are kept. A key's `alg`,
//! when present, pins the one algorithm it may verify, so a token cannot choose how its key is
//! read. A set that holds private or symmetric key material is refused outright: someone
//! pasted the wrong half, and that secret must not be distributed to every proxy.

use super::token_error::TokenError;
use super::parse_object_without_duplicates;
use crate::encoding::base64url_decode;
use rsa::signature::Verifier as _;
use serde_json::{Map, Value};
use sha2::Sha256;
use std::fmt;

/// Largest JWKS document accepted: real issuers publish a few keys in a few KiB; 64 KiB leaves
/// room for rotation while bounding what a bad configuration can make the parser do.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// Most keys accepted in one set: every token without a `kid` may be tried against each.
pub const MAX_JWKS_KEYS: usize = 32;

/// RSA moduli below 2048 bits are breakable (NIST SP 800-131A); above 8192 bits verification
/// gets slow enough to be a denial of service. CA keys that sign CRLs are held to the same.
pub(crate) const MIN_RSA_MODULUS_BITS: usize = 2048;
pub(crate) const MAX_RSA_MODULUS_BITS: usize = 8192;

/// Members that only a private or symmetric JWK carries (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The JWS algorithms certbind verifies. Everything else — `none`, the HMAC family, and any
/// algorithm not listed — is refused before a key is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Es256,
    Es384,
    Rs256,
    Ps256,
    EdDsa,
}

impl Algorithm {
    /// The algorithm a JOSE `alg` value names, if it is one certbind verifies.
    pub fn from_jose(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Algorithm::Es256),
            "ES384" => Some(Algorithm::Es384),
            "RS256" => Some(Algorithm::Rs256),
            "PS256" => Some(Algorithm::Ps256),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    pub fn as_jose(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Rs256 => "RS256",
            Algorithm::Ps256 => "PS256",
            Algorithm::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_jose())
    }
}

#[derive(Debug, Clone)]
enum PublicKey {
    P256(super::es256::Es256Key),
    P384(p384::ecdsa::VerifyingKey),
    Rsa { pkcs1v15: rsa::pkcs1v15::VerifyingKey<Sha256>, pss: rsa::pss::VerifyingKey<Sha256> },
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// Whether this kind of key can verify `alg` at all.
    fn fits(&self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (PublicKey::P256(_), Algorithm::Es256)
                | (PublicKey::P384(_), Algorithm::Es384)
                | (PublicKey::Rsa { .. }, Algorithm::Rs256 | Algorithm::Ps256)
                | (PublicKey::Ed25519(_), Algorithm::EdDsa)
        )
    }

    /// `signature` is the JWS encoding: raw `r || s` for ECDSA (not DER), the modulus-sized
    /// integer for RSA, 64 bytes for Ed25519.
    ///
    /// ECDSA signatures verify with either S (`s` or `n - s`). JWS does not ask for low S
    /// (RFC 7518 §3.4), and the signers issuers use (OpenSSL, Go's crypto/ecdsa, Java, cloud
    /// KMSs, HSMs) emit high S in about half their signatures, so refusing it would refuse
    /// half of a standard issuer's tokens. Both are accepted: a token's twin carries the same
    /// signed claims, and the filter keys nothing on a token's bytes that a twin could evade
    /// (a twin is verified afresh and resolves to the same identity). Upstreams that detect
    /// replay must key on `jti`, not on the token's bytes (docs/filter.md).
    fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        match (self, alg) {
            (PublicKey::P256(key), Algorithm::Es256) => key.verifies(message, signature),
            (PublicKey::P384(key), Algorithm::Es384) => {
                p384::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            (PublicKey::Rsa { pkcs1v15, .. }, Algorithm::Rs256) => {
                rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|sig| pkcs1v15.verify(message, &sig).is_ok())
            }
            (PublicKey::Rsa { pss, .. }, Algorithm::Ps256) => {
                rsa::pss::Signature::try_from(signature).is_ok_and(|sig| pss.verify(message, &sig).is_ok())
            }
            // Strict: refuses small-order keys and non-canonical signatures (RFC 8032 §5.1.7).
            (PublicKey::Ed25519(key), Algorithm::EdDsa) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok()),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct JsonWebKey {
    kid: Option<String>,
    /// The JWK's own `alg`: when present, the only algorithm this key verifies.
    pinned: Option<Algorithm>,
    key: PublicKey,
}

impl JsonWebKey {
    fn may_verify(&self, alg: Algorithm) -> bool {
        self.key.fits(alg) && self.pinned.is_none_or(|pinned| pinned == alg)
    }
}

/// An issuer's verifying keys, ready to use.
#[derive(Debug, Clone)]
pub struct Jwks {
    keys: Vec<JsonWebKey>,
}

fn jwks_error(index: usize, problem: impl fmt::Display) -> TokenError {
    TokenError::Jwks(format!("keys[{index}]: {problem}"))
}

/// A string member, if present; anything else under that name is an error.
fn optional_string<'a>(jwk: &'a Map<String, Value>, member: &str, index: usize) -> Result<Option<&'a str>, TokenError> {
    match jwk.get(member) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(jwks_error(index, format_args!("\"{member}\" is not a string"))),
    }
}

/// A required base64url member, decoded.
fn required_bytes(jwk: &Map<String, Value>, member: &str, index: usize) -> Result<Vec<u8>, TokenError> {
    let text = optional_string(jwk, member, index)?
        .ok_or_else(|| jwks_error(index, format_args!("\"{member}\" is missing")))?;
    base64url_decode(text).ok_or_else(|| jwks_error(index, format_args!("\"{member}\" is not unpadded base64url")))
}

/// An elliptic-curve point from its JWK coordinates, as SEC1 uncompressed bytes.
fn ec_point(jwk: &Map<String, Value>, coordinate_len: usize, index: usize) -> Result<Vec<u8>, TokenError> {
    let x = required_bytes(jwk, "x", index)?;
    let y = required_bytes(jwk, "y", index)?;
    if x.len() != coordinate_len || y.len() != coordinate_len {
        return Err(jwks_error(index, format_args!("coordinates must be {coordinate_len} bytes each")));
    }
    let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

fn rsa_key(jwk: &Map<String, Value>, index: usize) -> Result<PublicKey, TokenError> {
    let modulus = required_bytes(jwk, "n", index)?;
    let exponent = required_bytes(jwk, "e", index)?;
    // Cheap bounds before any big-integer work; the exact bit length is checked below.
    if modulus.len() > MAX_RSA_MODULUS_BITS / 8 + 1 || exponent.len() > 8 {
        return Err(jwks_error(index, "RSA modulus or exponent too long"));
    }
    let n = rsa::BigUint::from_bytes_be(&modulus);
    if n.bits() < MIN_RSA_MODULUS_BITS {
        return Err(jwks_error(index, format_args!("RSA modulus shorter than {MIN_RSA_MODULUS_BITS} bits")));
    }
    let e = rsa::BigUint::from_bytes_be(&exponent);
    let public = rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_MODULUS_BITS)
        .map_err(|e| jwks_error(index, format_args!("unusable RSA key: {e}")))?;
    Ok(PublicKey::Rsa {
        pkcs1v15: rsa::pkcs1v15::VerifyingKey::new(public.clone()),
        pss: rsa::pss::VerifyingKey::new(public),
    })
}

/// One JWK: `Ok(None)` for a key that is not for us (another use, curve or algorithm),
/// an error for one that is broken or private.
fn parse_key(value: &Value, index: usize) -> Result<Option<JsonWebKey>, TokenError> {
    let Value::Object(jwk) = value else {
        return Err(jwks_error(index, "not a JSON object"));
    };
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(jwks_error(
            index,
            format_args!("holds private or secret key material (\"{member}\"); publish the public key only"),
        ));
    }
    if optional_string(jwk, "use", index)?.is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    match jwk.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if ops.iter().any(|op| op.as_str() == Some("verify")) => {}
        Some(Value::Array(_)) => return Ok(None),
        Some(_) => return Err(jwks_error(index, "\"key_ops\" is not an array")),
    }
    let kid = optional_string(jwk, "kid", index)?.map(str::to_owned);
    let pinned = match optional_string(jwk, "alg", index)? {
        None => None,
        // An algorithm we do not verify (RS512, RSA-OAEP, …): the key is not for us.
        Some(name) => match Algorithm::from_jose(name) {
            Some(alg) => Some(alg),
            None => return Ok(None),
        },
    };
    let kty = optional_string(jwk, "kty", index)?.ok_or_else(|| jwks_error(index, "\"kty\" is missing"))?;
    let crv = optional_string(jwk, "crv", index)?;
    let key = match (kty, crv) {
        ("EC", Some("P-256")) => p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(jwk, 32, index)?)
            .map(|key| PublicKey::P256(super::es256::Es256Key::new(key)))
            .map_err(|_| jwks_error(index, "not a point on P-256"))?,
        ("EC", Some("P-384")) => p384::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(jwk, 48, index)?)
            .map(PublicKey::P384)
            .map_err(|_| jwks_error(index, "not a point on P-384"))?,
        ("RSA", _) => rsa_key(jwk, index)?,
        ("OKP", Some("Ed25519")) => {
            let x = required_bytes(jwk, "x", index)?;
            let bytes =
                <[u8; 32]>::try_from(x.as_slice()).map_err(|_| jwks_error(index, "Ed25519 key must be 32 bytes"))?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(PublicKey::Ed25519)
                .map_err(|_| jwks_error(index, "not an Ed25519 public key"))?
        }
        ("EC", None) | ("OKP", None) => return Err(jwks_error(index, "\"crv\" is missing")),
        // Other curves (P-521, secp256k1, Ed448, X25519) and key types we do not verify with.
        _ => return Ok(None),
    };
    if let Some(alg) = pinned {
        if !key.fits(alg) {
            return Err(jwks_error(index, format_args!("\"alg\" {alg} does not fit this {kty} key")));
        }
    }
    Ok(Some(JsonWebKey { kid, pinned, key }))
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`). Keys for other uses, curves or algorithms
    /// are skipped; a set with no usable signing key left is refused.
    pub fn parse(json: &[u8]) -> Result<Jwks, TokenError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(TokenError::Jwks(format!("longer than {MAX_JWKS_BYTES} bytes")));
        }
        let document =
            parse_object_without_duplicates(json).map_err(|e| TokenError::Jwks(format!("not a JSON object: {e}")))?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err(TokenError::Jwks("\"keys\" must be an array".into()));
        };
        if entries.len() > MAX_JWKS_KEYS {
            return Err(TokenError::Jwks(format!("more than {MAX_JWKS_KEYS} keys")));
        }
        let mut keys = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            if let Some(key) = parse_key(entry, index)? {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(TokenError::Jwks("no usable signing key (ES256, ES384, RS256, PS256 or EdDSA)".into()));
        }
        Ok(Jwks { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a JWS signature with the key the header names, or, without a `kid`, with the
    /// keys allowed to verify `alg` — at most [`MAX_KEYS_WITHOUT_KID`] of them, so that one
    /// forged token costs a bounded number of signature checks.
    ///
    /// `UnknownKey` when no key may verify `alg` under that `kid` (including a `kid` whose key
    /// is of another type or pinned to another algorithm, and a token without `kid` for an
    /// issuer with more candidate keys than the bound); `BadSignature` when keys fit but none
    /// verifies.
    pub(crate) fn verify_signature(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), TokenError> {
        let candidates = || {
            self.keys
                .iter()
                .filter(move |jwk| kid.is_none_or(|kid| jwk.kid.as_deref() == Some(kid)))
                .filter(move |jwk| jwk.may_verify(alg))
        };
        let count = candidates().count();
        if count == 0 || (kid.is_none() && count > MAX_KEYS_WITHOUT_KID) {
            return Err(TokenError::UnknownKey);
        }
        if candidates().any(|jwk| jwk.key.verifies(alg, signing_input, signature)) {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }
}

/// Most keys a token without `kid` is tried against: a current key, its successor and its
/// predecessor during a rotation. An issuer publishing more must name the key in each token.
pub const MAX_KEYS_WITHOUT_KID: usize = 3;

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    fn parse_value(value: Value) -> Result<Jwks, TokenError> {
        Jwks::parse(value.to_string().as_bytes())
    }

    fn issuer_keys() -> Vec<Value> {
        let document: Value = serde_json::from_str(ISSUER_JWKS).unwrap();
        document["keys"].as_array().unwrap().clone()
    }

    #[test]
    fn the_committed_issuer_set_yields_all_four_keys() {
        let jwks = Jwks::parse(ISSUER_JWKS.as_bytes()).unwrap();
        assert_eq!(jwks.len(), 4);
        assert!(!jwks.is_empty());
        let kinds: Vec<(Option<&str>, Option<Algorithm>)> =
            jwks.keys.iter().map(|k| (k.kid.as_deref(), k.pinned)).collect();
        assert_eq!(
            kinds,
            vec![
                (Some("p256-key"), Some(Algorithm::Es256)),
                (Some("p384-key"), Some(Algorithm::Es384)),
                (Some("rsa-key"), None),
                (Some("ed25519-key"), Some(Algorithm::EdDsa)),
            ]
        );
    }

    #[test]
    fn an_unpinned_rsa_key_verifies_both_rsa_algorithms_and_a_pinned_one_only_its_own() {
        let unpinned = Jwks::parse(ISSUER_JWKS.as_bytes()).unwrap();
        let rsa = unpinned.keys.iter().find(|k| k.kid.as_deref() == Some("rsa-key")).unwrap();
        assert!(rsa.may_verify(Algorithm::Rs256));
        assert!(rsa.may_verify(Algorithm::Ps256));
        assert!(!rsa.may_verify(Algorithm::Es256));
        let pinned = Jwks::parse(RSA_PINNED_RS256_JWKS.as_bytes()).unwrap();
        assert!(pinned.keys[0].may_verify(Algorithm::Rs256));
        assert!(!pinned.keys[0].may_verify(Algorithm::Ps256));
    }

    #[test]
    fn refused_sets_name_the_problem() {
        let p256 = issuer_keys()[0].clone();
        let with = |member: &str, value: Value| {
            let mut key = p256.clone();
            key[member] = value;
            json!({ "keys": [key] })
        };
        let mut missing_x = p256.clone();
        missing_x.as_object_mut().unwrap().remove("x");
        let cases: Vec<(&str, Result<Jwks, TokenError>, &str)> = vec![
            (
                "private d",
                Jwks::parse(EC_P256_WITH_PRIVATE_D_JWKS.as_bytes()),
                "keys[0]: holds private or secret key material (\"d\"); publish the public key only",
            ),
            (
                "1024-bit RSA",
                Jwks::parse(RSA_1024_TOO_SHORT_JWKS.as_bytes()),
                "keys[0]: RSA modulus shorter than 2048 bits",
            ),
            (
                "symmetric key",
                parse_value(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
                "keys[0]: holds private or secret key material (\"k\"); publish the public key only",
            ),
            (
                "alg of another key type",
                parse_value(with("alg", json!("RS256"))),
                "keys[0]: \"alg\" RS256 does not fit this EC key",
            ),
            (
                "point off the curve",
                parse_value(with("y", json!(issuer_keys()[0]["x"].clone()))),
                "keys[0]: not a point on P-256",
            ),
            ("short coordinate", parse_value(with("x", json!("AAAA"))), "keys[0]: coordinates must be 32 bytes each"),
            (
                "padded coordinate",
                parse_value(with("x", json!(format!("{}=", p256["x"].as_str().unwrap())))),
                "keys[0]: \"x\" is not unpadded base64url",
            ),
            ("kid not a string", parse_value(with("kid", json!(7))), "keys[0]: \"kid\" is not a string"),
            ("missing coordinate", parse_value(json!({ "keys": [missing_x] })), "keys[0]: \"x\" is missing"),
            ("no keys member", parse_value(json!({"jwks": []})), "\"keys\" must be an array"),
            (
                "only encryption keys",
                parse_value(with("use", json!("enc"))),
                "no usable signing key (ES256, ES384, RS256, PS256 or EdDSA)",
            ),
            (
                "too many keys",
                parse_value(json!({ "keys": vec![p256.clone(); MAX_JWKS_KEYS + 1] })),
                "more than 32 keys",
            ),
        ];
        for (name, result, expected) in cases {
            assert_eq!(result.unwrap_err(), TokenError::Jwks(expected.into()), "{name}");
        }
    }

    #[test]
    fn duplicate_members_and_oversized_documents_are_refused() {
        let refused = |json: &[u8]| match Jwks::parse(json) {
            Err(TokenError::Jwks(message)) => message,
            other => panic!("expected a JWKS error, got {other:?}"),
        };
        assert_eq!(refused(br#"{"keys":[],"keys":[]}"#), "not a JSON object: duplicate object member at line 1 column 17");
        assert_eq!(refused(&vec![b' '; MAX_JWKS_BYTES + 1]), "longer than 65536 bytes");
        assert_eq!(refused(br#"{"keys":[]} trailing"#), "not a JSON object: trailing characters at line 1 column 13");
    }

    #[test]
    fn keys_for_other_uses_curves_and_algorithms_are_skipped() {
        let mut keys = issuer_keys();
        keys.push(json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}));
        keys.push(json!({"kty": "RSA", "alg": "RSA-OAEP", "n": "AA", "e": "AQAB"}));
        keys.push(json!({"kty": "OKP", "crv": "X25519", "x": "AA"}));
        let mut enc = keys[0].clone();
        enc["use"] = json!("enc");
        keys.push(enc);
        let mut encrypt_only = keys[0].clone();
        encrypt_only["key_ops"] = json!(["encrypt"]);
        keys.push(encrypt_only);
        let jwks = parse_value(json!({ "keys": keys })).unwrap();
        assert_eq!(jwks.len(), 4);
    }
}
