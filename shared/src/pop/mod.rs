//! RFC 8705 proof of possession: a bearer JWT whose `cnf.x5t#S256` names the client
//! certificate the connection presented.
//!
//! [`jwks`] turns an issuer's published key set into ready verifying keys once;
//! [`jwt::verify`] checks a compact JWS against them and the route's requirements;
//! [`jwt::cnf_matches`] compares the confirmation claim with the certificate's thumbprint;
//! [`cache::TokenCache`] remembers tokens that verified, so a signature is checked once per
//! token rather than once per request; [`TokenError`] says why a token or a key set was
//! refused. Which issuers apply to a request (an org's, the platform's) is the decision's
//! business (`crate::decision::scope`): this module verifies against any [`IssuerKeys`] and
//! depends on no identity data.

pub mod cache;
pub mod es256;
pub mod jwks;
pub mod jwt;
pub mod token_error;

pub use cache::TokenCache;
pub use jwks::{Algorithm, Jwks};
pub use jwt::{bearer_token, cnf_matches, verify, IssuerKeys, TokenRequirements, VerifiedToken};
pub use token_error::TokenError;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Parses one JSON object and refuses any object, at any depth, that names a member twice.
///
/// serde_json keeps the last of duplicate members silently; in a token that lets two parsers
/// disagree on which `aud` or `cnf` was signed, so a duplicate is an error here. Nesting is
/// bounded by serde_json's own recursion limit; trailing bytes other than whitespace are refused.
pub(crate) fn parse_object_without_duplicates(json: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    match serde_json::from_slice::<DuplicateFreeValue>(json)?.0 {
        Value::Object(members) => Ok(members),
        _ => Err(de::Error::custom("expected a JSON object")),
    }
}

struct DuplicateFreeValue(Value);

impl<'de> Deserialize<'de> for DuplicateFreeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DuplicateFreeVisitor).map(DuplicateFreeValue)
    }
}

struct DuplicateFreeVisitor;

impl<'de> Visitor<'de> for DuplicateFreeVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without duplicate object members")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(DuplicateFreeValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                return Err(de::Error::custom("duplicate object member"));
            }
            let DuplicateFreeValue(value) = map.next_value()?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

/// The committed test keys (`tests/vectors/jwt`) and tokens minted with them, for the unit
/// tests, the benchmarks and other crates' tests. Never enabled by a build that ships.
#[cfg(any(test, feature = "testing"))]
// The keys are committed constants: one that does not load is a broken checkout, not input.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod testing {
    use crate::encoding::base64url_encode;
    use p256::pkcs8::DecodePrivateKey as _;
    use rsa::rand_core;
    use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
    use serde_json::Value;

    pub const ISSUER_JWKS: &str = include_str!("../../tests/vectors/jwt/issuer-jwks.json");
    pub const RSA_PINNED_RS256_JWKS: &str = include_str!("../../tests/vectors/jwt/rsa-pinned-rs256-jwks.json");
    pub const RSA_1024_TOO_SHORT_JWKS: &str = include_str!("../../tests/vectors/jwt/rsa-1024-too-short-jwks.json");
    pub const EC_P256_WITH_PRIVATE_D_JWKS: &str =
        include_str!("../../tests/vectors/jwt/ec-p256-with-private-d-jwks.json");
    const EC_P256_PEM: &str = include_str!("../../tests/vectors/jwt/ec-p256.pem");
    const EC_P256_NOT_IN_JWKS_PEM: &str = include_str!("../../tests/vectors/jwt/ec-p256-not-in-jwks.pem");
    const EC_P384_PEM: &str = include_str!("../../tests/vectors/jwt/ec-p384.pem");
    const RSA_2048_PEM: &str = include_str!("../../tests/vectors/jwt/rsa-2048.pem");
    const ED25519_PEM: &str = include_str!("../../tests/vectors/jwt/ed25519.pem");

    /// Which private key signs a test token.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TestKey {
        P256,
        P256NotInJwks,
        P384,
        Rsa2048Pkcs1,
        Rsa2048Pss,
        Ed25519,
    }

    /// PSS needs a random salt; tests need no real randomness, only a repeatable source.
    struct CountingRng(u8);

    impl rand_core::RngCore for CountingRng {
        fn next_u32(&mut self) -> u32 {
            rand_core::impls::next_u32_via_fill(self)
        }
        fn next_u64(&mut self) -> u64 {
            rand_core::impls::next_u64_via_fill(self)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for byte in dest {
                self.0 = self.0.wrapping_add(1);
                *byte = self.0;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl rand_core::CryptoRng for CountingRng {}

    pub fn sign(key: TestKey, signing_input: &[u8]) -> Vec<u8> {
        match key {
            TestKey::P256 | TestKey::P256NotInJwks => {
                let pem = if key == TestKey::P256 { EC_P256_PEM } else { EC_P256_NOT_IN_JWKS_PEM };
                let signer = p256::ecdsa::SigningKey::from_pkcs8_pem(pem).unwrap();
                let signature: p256::ecdsa::Signature = signer.sign(signing_input);
                signature.to_bytes().to_vec()
            }
            TestKey::P384 => {
                let signer = p384::ecdsa::SigningKey::from_pkcs8_pem(EC_P384_PEM).unwrap();
                let signature: p384::ecdsa::Signature = signer.sign(signing_input);
                signature.to_bytes().to_vec()
            }
            TestKey::Rsa2048Pkcs1 => {
                let private = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_2048_PEM).unwrap();
                rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private).sign(signing_input).to_vec()
            }
            TestKey::Rsa2048Pss => {
                let private = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_2048_PEM).unwrap();
                rsa::pss::SigningKey::<sha2::Sha256>::new(private)
                    .sign_with_rng(&mut CountingRng(0), signing_input)
                    .to_vec()
            }
            TestKey::Ed25519 => {
                let signer = ed25519_dalek::SigningKey::from_pkcs8_pem(ED25519_PEM).unwrap();
                signer.sign(signing_input).to_bytes().to_vec()
            }
        }
    }

    /// `base64url(header).base64url(claims)`, the bytes a JWS signs.
    pub fn signing_input(header: &Value, claims: &Value) -> String {
        format!(
            "{}.{}",
            base64url_encode(header.to_string().as_bytes()),
            base64url_encode(claims.to_string().as_bytes())
        )
    }

    /// A compact JWS of `header` and `claims`, signed by `key`.
    pub fn mint(key: TestKey, header: &Value, claims: &Value) -> String {
        mint_raw(key, header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// Like [`mint`], for header or claims JSON that `serde_json::Value` cannot hold
    /// (duplicate members).
    pub fn mint_raw(key: TestKey, header_json: &[u8], claims_json: &[u8]) -> String {
        let input = format!("{}.{}", base64url_encode(header_json), base64url_encode(claims_json));
        let signature = sign(key, input.as_bytes());
        format!("{input}.{}", base64url_encode(&signature))
    }
}
