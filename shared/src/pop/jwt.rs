//! Verification of a bearer JWT (compact JWS, RFC 7515/7519) against the trusted issuers'
//! keys, and its RFC 8705 sender binding to a certificate.
//!
//! The order of checks is fixed so that nothing the token says is believed before its
//! signature is: shape and algorithm first, then the issuer (only to pick its key set), then
//! the time and audience claims — checked before the signature only so that a token refused
//! for them costs no signature check; refusing early believes nothing — and last the
//! signature.

use super::jwks::{Algorithm, Jwks};
use super::parse_object_without_duplicates;
pub use super::token_error::TokenError;
use crate::encoding::base64url_decode;
use crate::fingerprint::Fingerprint;
use crate::identity::Owner;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

/// Largest token accepted. Access tokens are a few hundred bytes to a few KiB; 16 KiB is far
/// beyond any real one and bounds the base64 and JSON work an attacker can ask for.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Where the verifier finds the signing keys of a trusted issuer.
pub trait IssuerKeys {
    /// The keys of the issuer whose `iss` is exactly `issuer`, if it is trusted.
    fn issuer_keys(&self, issuer: &str) -> Option<&Jwks>;
}

/// What the route demands of a token, and the clock to judge it by.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequirements<'a> {
    /// The token's `aud` must name at least one of these. Empty refuses every token.
    pub audiences: &'a [String],
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// The claims of a token whose signature, issuer, lifetime and audience were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub issuer: String,
    pub subject: Option<String>,
    pub audience: Vec<String>,
    pub expires_at: i64,
    pub not_before: Option<i64>,
    /// RFC 8705 `cnf.x5t#S256`; `None` for a token bound to no certificate.
    pub cnf_x5t_s256: Option<String>,
    /// Whose issuer registration accepted the token: the platform's or one org's.
    pub registration: Owner,
    /// The identity forwarded for the token, set with `registration` by whoever knows the
    /// registration ([`crate::decision::scope::verify_in_scope`]): made once, so a token
    /// taken from the cache is forwarded without formatting anything again.
    pub forwarded: Option<ForwardedToken>,
}

/// A verified token's identity as forwarded: owner, issuer and subject in the namespace of the
/// registration that accepted it, each already fit for a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedToken {
    pub owner: String,
    pub issuer: String,
    pub subject: Option<String>,
}

impl VerifiedToken {
    /// Whether `aud` names one of `audiences` (for a token taken from a cache that may have
    /// been filled under other requirements).
    pub fn has_audience(&self, audiences: &[String]) -> bool {
        self.audience.iter().any(|aud| audiences.contains(aud))
    }

    /// Whether the registration that accepted the token applies to a request whose
    /// certificate resolved into `org`: the platform's apply to all, an org's to its own.
    pub fn registration_applies(&self, org: Option<&str>) -> bool {
        self.registration.borrowed().applies_to(org)
    }

    /// Whether the lifetime claims allow the token at `now`, with `leeway_seconds` of skew.
    pub fn is_current(&self, now: i64, leeway_seconds: u64) -> bool {
        let leeway = i64::try_from(leeway_seconds).unwrap_or(i64::MAX);
        now <= self.expires_at.saturating_add(leeway)
            && self.not_before.is_none_or(|nbf| now.saturating_add(leeway) >= nbf)
    }
}

fn decode_segment(segment: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    base64url_decode(segment).ok_or(TokenError::Malformed(what))
}

/// The three segments of a compact JWS, within the size cap.
fn compact_segments(token: &str) -> Result<[&str; 3], TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("token longer than 16 KiB"));
    }
    let mut segments = token.split('.');
    match (segments.next(), segments.next(), segments.next(), segments.next()) {
        (Some(header), Some(payload), Some(signature), None) => Ok([header, payload, signature]),
        _ => Err(TokenError::Malformed("a JWS has exactly three dot-separated segments")),
    }
}

/// A JWS payload segment as a JSON object with unique members.
fn payload_object(payload_b64: &str) -> Result<Map<String, Value>, TokenError> {
    parse_object_without_duplicates(&decode_segment(payload_b64, "payload is not unpadded base64url")?)
        .map_err(|_| TokenError::Malformed("payload is not a JSON object with unique members"))
}

/// An optional string member; another type under that name is malformed.
fn optional_string<'a>(
    members: &'a Map<String, Value>,
    name: &'static str,
    wrong_type: &'static str,
) -> Result<Option<&'a str>, TokenError> {
    match members.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(TokenError::Malformed(wrong_type)),
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional (floored).
fn numeric_date(value: &Value, wrong_type: &'static str) -> Result<i64, TokenError> {
    // Beyond ±2^53 a double no longer counts whole seconds; no real date is near it.
    const LARGEST_EXACT_SECONDS: f64 = 9_007_199_254_740_992.0;
    if let Some(seconds) = value.as_i64() {
        return Ok(seconds);
    }
    match value.as_f64() {
        #[allow(clippy::cast_possible_truncation)] // floor of a value within ±2^53 fits i64
        Some(seconds) if seconds.is_finite() && seconds.abs() <= LARGEST_EXACT_SECONDS => Ok(seconds.floor() as i64),
        _ => Err(TokenError::Malformed(wrong_type)),
    }
}

fn audience_claim(payload: &Map<String, Value>) -> Result<Vec<String>, TokenError> {
    const WRONG_TYPE: &str = "aud is not a string or an array of strings";
    match payload.get("aud") {
        None => Err(TokenError::MissingClaim("aud")),
        Some(Value::String(aud)) => Ok(vec![aud.clone()]),
        Some(Value::Array(items)) => {
            items.iter().map(|item| item.as_str().map(str::to_owned).ok_or(TokenError::Malformed(WRONG_TYPE))).collect()
        }
        Some(_) => Err(TokenError::Malformed(WRONG_TYPE)),
    }
}

fn confirmation_claim(payload: &Map<String, Value>) -> Result<Option<String>, TokenError> {
    match payload.get("cnf") {
        None => Ok(None),
        Some(Value::Object(cnf)) => {
            Ok(optional_string(cnf, "x5t#S256", "cnf.x5t#S256 is not a string")?.map(str::to_owned))
        }
        Some(_) => Err(TokenError::Malformed("cnf is not an object")),
    }
}

/// Verifies a compact JWS bearer token: algorithm, issuer, signature, `exp`, `nbf`, `aud`.
///
/// Sender binding to the certificate is a separate step ([`cnf_matches`]) so that a route which
/// does not require it can still accept a valid token.
pub fn verify<K: IssuerKeys + ?Sized>(
    token: &str,
    keys: &K,
    requirements: &TokenRequirements<'_>,
) -> Result<VerifiedToken, TokenError> {
    let [header_b64, payload_b64, signature_b64] = compact_segments(token)?;

    let header = parse_object_without_duplicates(&decode_segment(header_b64, "header is not unpadded base64url")?)
        .map_err(|_| TokenError::Malformed("header is not a JSON object with unique members"))?;
    let alg = optional_string(&header, "alg", "alg is not a string")?.ok_or(TokenError::MissingClaim("alg"))?;
    let alg = Algorithm::from_jose(alg).ok_or(TokenError::UnsupportedAlgorithm)?;
    // A critical extension we do not implement (RFC 7515 §4.1.11) must not be ignored.
    if header.contains_key("crit") {
        return Err(TokenError::Malformed("crit header parameter is not supported"));
    }
    let kid = optional_string(&header, "kid", "kid is not a string")?;

    let payload = payload_object(payload_b64)?;
    let issuer = optional_string(&payload, "iss", "iss is not a string")?.ok_or(TokenError::MissingClaim("iss"))?;
    let jwks = keys.issuer_keys(issuer).ok_or(TokenError::UnknownIssuer)?;

    let expires_at =
        numeric_date(payload.get("exp").ok_or(TokenError::MissingClaim("exp"))?, "exp is not a NumericDate")?;
    let not_before = payload.get("nbf").map(|nbf| numeric_date(nbf, "nbf is not a NumericDate")).transpose()?;
    let leeway = i64::try_from(requirements.leeway_seconds).unwrap_or(i64::MAX);
    if requirements.now > expires_at.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if not_before.is_some_and(|nbf| requirements.now.saturating_add(leeway) < nbf) {
        return Err(TokenError::NotYetValid);
    }
    let audience = audience_claim(&payload)?;
    if !audience.iter().any(|aud| requirements.audiences.contains(aud)) {
        return Err(TokenError::WrongAudience);
    }
    let subject = optional_string(&payload, "sub", "sub is not a string")?.map(str::to_owned);
    let cnf_x5t_s256 = confirmation_claim(&payload)?;

    let signature = decode_segment(signature_b64, "signature is not unpadded base64url")?;
    // The signed bytes are the first two segments exactly as received, with their dot.
    let signing_input_len = header_b64.len().saturating_add(1).saturating_add(payload_b64.len());
    let signing_input = token.get(..signing_input_len).ok_or(TokenError::Malformed("segments"))?;
    jwks.verify_signature(alg, kid, signing_input.as_bytes(), &signature)?;

    Ok(VerifiedToken {
        issuer: issuer.to_owned(),
        subject,
        audience,
        expires_at,
        not_before,
        cnf_x5t_s256,
        registration: Owner::Platform,
        forwarded: None,
    })
}

/// The `cnf.x5t#S256` a compact JWS claims, read **without** verifying it: for routes that do
/// not verify bearer tokens but must still refuse one bound to another certificate (RFC 8705
/// §3). `None` when the token is not a JWS with a JSON payload, or claims no confirmation; a
/// forged claim can only cause a refusal, never an acceptance.
pub fn unverified_confirmation(token: &str) -> Option<String> {
    let [_, payload_b64, _] = compact_segments(token).ok()?;
    confirmation_claim(&payload_object(payload_b64).ok()?).ok().flatten()
}

/// Whether a claimed `cnf.x5t#S256` names the certificate with this fingerprint, in
/// constant time.
pub fn confirmation_names(claimed: &str, fingerprint: &Fingerprint) -> bool {
    let expected = fingerprint.x5t_s256_bytes();
    claimed.len() == expected.len() && bool::from(claimed.as_bytes().ct_eq(&expected[..]))
}

/// Whether the token is bound (RFC 8705 `cnf.x5t#S256`) to the certificate with this
/// fingerprint. Compared in constant time; a token bound to nothing matches nothing.
pub fn cnf_matches(token: &VerifiedToken, fingerprint: &Fingerprint) -> bool {
    token.cnf_x5t_s256.as_deref().is_some_and(|claimed| confirmation_names(claimed, fingerprint))
}

/// The token of an `Authorization: Bearer <token>` value (RFC 6750 §2.1): the scheme in any
/// case, exactly one space, then token68 characters only.
pub fn bearer_token(authorization_header: &str) -> Option<&str> {
    bearer_credentials(authorization_header).filter(|token| is_token68(token))
}

/// The credentials after `Bearer `, not yet checked to be a token68: a caller that finds them
/// in its cache of verified tokens needs no further check.
pub fn bearer_credentials(authorization_header: &str) -> Option<&str> {
    let token = bearer_credential_bytes(authorization_header.as_bytes())?;
    // The token follows an ASCII space, so it starts at a character boundary.
    authorization_header.get(authorization_header.len() - token.len()..)
}

/// [`bearer_credentials`] of the header's bytes, not yet checked to be text: a token found in
/// the cache of verified tokens needs neither check, and a token68 is ASCII.
pub fn bearer_credential_bytes(authorization_header: &[u8]) -> Option<&[u8]> {
    let space = authorization_header.iter().position(|&b| b == b' ')?;
    let (scheme, token) = (authorization_header.get(..space)?, authorization_header.get(space + 1..)?);
    scheme.eq_ignore_ascii_case(b"Bearer").then_some(token)
}

/// RFC 6750's `b64token` (token68): base64 and base64url characters, `.` between JWT
/// segments, `~`, and trailing `=` padding.
pub fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    // Every byte looked up, no early exit: a token is hundreds of bytes on every request.
    !body.is_empty() && body.bytes().fold(true, |ok, b| ok & TOKEN68[usize::from(b)])
}

/// The bytes of [`is_token68`]'s body.
const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::encoding::base64url_encode;
    use hmac::{Hmac, Mac as _};
    use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
    use serde_json::json;

    #[test]
    fn token68_takes_base64_and_base64url_bytes_and_trailing_padding_only() {
        for b in 0u8..=127 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            let token = format!("ab{}cd", char::from(b));
            assert_eq!(is_token68(&token), expected, "byte {b:#x}");
        }
        assert!(!is_token68("ab\u{e9}cd"));
        assert!(is_token68("eyJ.x-y_z~+/=="));
        assert!(!is_token68("=="));
        assert!(!is_token68("a=b"));
        assert!(!is_token68(""));
    }

    const ISSUER: &str = "https://issuer.example";
    const AUDIENCE: &str = "certbind-api";
    const NOW: i64 = 1_700_000_000;
    const LEEWAY: u64 = 30;

    fn certificate() -> Fingerprint {
        Fingerprint::of_der(b"the client certificate")
    }

    /// One trusted issuer with these keys.
    struct Trusted(Jwks);

    impl IssuerKeys for Trusted {
        fn issuer_keys(&self, issuer: &str) -> Option<&Jwks> {
            (issuer == ISSUER).then_some(&self.0)
        }
    }

    fn trusted(jwks: &str) -> Trusted {
        Trusted(Jwks::parse(jwks.as_bytes()).unwrap())
    }

    fn audiences() -> Vec<String> {
        vec!["other-api".into(), AUDIENCE.into()]
    }

    fn check(token: &str) -> Result<VerifiedToken, TokenError> {
        check_with(ISSUER_JWKS, token, &audiences())
    }

    fn check_with(jwks: &str, token: &str, audiences: &[String]) -> Result<VerifiedToken, TokenError> {
        let requirements = TokenRequirements { audiences, leeway_seconds: LEEWAY, now: NOW };
        verify(token, &trusted(jwks), &requirements)
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER,
            "sub": "user-1",
            "aud": AUDIENCE,
            "exp": NOW + 300,
            "nbf": NOW - 10,
            "cnf": { "x5t#S256": certificate().to_x5t_s256() },
        })
    }

    fn claims_with(name: &str, value: Value) -> Value {
        let mut claims = claims();
        claims[name] = value;
        claims
    }

    fn claims_without(name: &str) -> Value {
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove(name);
        claims
    }

    fn header(alg: &str, kid: &str) -> Value {
        json!({ "alg": alg, "kid": kid, "typ": "JWT" })
    }

    fn es256(claims: &Value) -> String {
        mint(TestKey::P256, &header("ES256", "p256-key"), claims)
    }

    fn expected(claims: &Value) -> VerifiedToken {
        VerifiedToken {
            issuer: ISSUER.into(),
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            audience: vec![AUDIENCE.into()],
            expires_at: claims["exp"].as_i64().unwrap(),
            not_before: claims.get("nbf").and_then(Value::as_i64),
            cnf_x5t_s256: Some(certificate().to_x5t_s256()),
            registration: Owner::Platform,
            forwarded: None,
        }
    }

    fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", base64url_encode(&mac.finalize().into_bytes()))
    }

    fn flip_signature_byte(token: &str) -> String {
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = base64url_decode(signature).unwrap();
        bytes[10] ^= 0x01;
        format!("{input}.{}", base64url_encode(&bytes))
    }

    fn unsigned(header: &Value, claims: &Value) -> String {
        format!("{}.", signing_input(header, claims))
    }

    #[test]
    fn every_supported_algorithm_verifies() {
        let cases = [
            (TestKey::P256, "ES256", "p256-key"),
            (TestKey::P384, "ES384", "p384-key"),
            (TestKey::Rsa2048Pkcs1, "RS256", "rsa-key"),
            (TestKey::Rsa2048Pss, "PS256", "rsa-key"),
            (TestKey::Ed25519, "EdDSA", "ed25519-key"),
        ];
        for (key, alg, kid) in cases {
            let token = mint(key, &header(alg, kid), &claims());
            assert_eq!(check(&token), Ok(expected(&claims())), "{alg}");
            // Without a kid, every key allowed to verify the algorithm is tried.
            let token = mint(key, &json!({ "alg": alg }), &claims());
            assert_eq!(check(&token), Ok(expected(&claims())), "{alg} without kid");
        }
    }

    #[test]
    fn optional_claims_and_leeway_are_honoured() {
        let audience_list = claims_with("aud", json!(["someone-else", AUDIENCE]));
        let verified = check(&es256(&audience_list)).unwrap();
        assert_eq!(verified.audience, vec!["someone-else".to_string(), AUDIENCE.to_string()]);

        let minimal = json!({ "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 1 });
        let verified = check(&es256(&minimal)).unwrap();
        assert_eq!(
            verified,
            VerifiedToken {
                issuer: ISSUER.into(),
                subject: None,
                audience: vec![AUDIENCE.into()],
                expires_at: NOW + 1,
                not_before: None,
                cnf_x5t_s256: None,
                registration: Owner::Platform,
                forwarded: None,
            }
        );

        let just_expired_within_leeway = claims_with("exp", json!(NOW - 30));
        assert_eq!(check(&es256(&just_expired_within_leeway)).unwrap().expires_at, NOW - 30);
        let almost_valid_within_leeway = claims_with("nbf", json!(NOW + 30));
        assert_eq!(check(&es256(&almost_valid_within_leeway)).unwrap().not_before, Some(NOW + 30));
        let fractional = claims_with("exp", json!(NOW as f64 + 0.5));
        assert_eq!(check(&es256(&fractional)).unwrap().expires_at, NOW);
    }

    #[test]
    fn refusals_name_the_exact_reason() {
        let rsa_n = {
            let jwks: Value = serde_json::from_str(ISSUER_JWKS).unwrap();
            base64url_decode(jwks["keys"][2]["n"].as_str().unwrap()).unwrap()
        };
        let rsa_public_pem = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../../tests/vectors/jwt/rsa-2048.pem"))
            .unwrap()
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let valid = es256(&claims());
        let (valid_header, valid_rest) = valid.split_once('.').unwrap();
        let p256_signed_as_rsa_kid = mint(TestKey::P256, &header("ES256", "rsa-key"), &claims());
        let der_signature = {
            let input = signing_input(&header("ES256", "p256-key"), &claims());
            let raw = sign(TestKey::P256, input.as_bytes());
            let der = p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der();
            format!("{input}.{}", base64url_encode(der.as_bytes()))
        };
        let oversized = es256(&claims_with("pad", json!("x".repeat(MAX_TOKEN_BYTES))));

        let cases: Vec<(&str, String, TokenError)> = vec![
            ("one signature byte flipped", flip_signature_byte(&valid), TokenError::BadSignature),
            (
                "signed by another key under the same kid",
                mint(TestKey::P256NotInJwks, &header("ES256", "p256-key"), &claims()),
                TokenError::BadSignature,
            ),
            ("ES256 signature in DER instead of r||s", der_signature, TokenError::BadSignature),
            (
                "RS256 signature claimed as PS256",
                {
                    let token = mint(TestKey::Rsa2048Pkcs1, &header("RS256", "rsa-key"), &claims());
                    let (_, rest) = token.split_once('.').unwrap();
                    format!("{}.{rest}", base64url_encode(header("PS256", "rsa-key").to_string().as_bytes()))
                },
                TokenError::BadSignature,
            ),
            (
                "alg none with a signature",
                format!("{}{}", unsigned(&json!({"alg": "none"}), &claims()), valid.rsplit_once('.').unwrap().1),
                TokenError::UnsupportedAlgorithm,
            ),
            (
                "alg none without a signature",
                unsigned(&json!({"alg": "none"}), &claims()),
                TokenError::UnsupportedAlgorithm,
            ),
            (
                "alg None spelled otherwise",
                unsigned(&json!({"alg": "None"}), &claims()),
                TokenError::UnsupportedAlgorithm,
            ),
            (
                "HS256 keyed with the RSA public key PEM",
                hs256(rsa_public_pem.as_bytes(), &header("HS256", "rsa-key"), &claims()),
                TokenError::UnsupportedAlgorithm,
            ),
            (
                "HS256 keyed with the RSA modulus bytes",
                hs256(&rsa_n, &header("HS256", "rsa-key"), &claims()),
                TokenError::UnsupportedAlgorithm,
            ),
            ("ES256 header naming the RSA key", p256_signed_as_rsa_kid, TokenError::UnknownKey),
            (
                "kid the issuer never published",
                mint(TestKey::P256, &header("ES256", "rotated-away"), &claims()),
                TokenError::UnknownKey,
            ),
            ("expired beyond leeway", es256(&claims_with("exp", json!(NOW - 31))), TokenError::Expired),
            ("not yet valid beyond leeway", es256(&claims_with("nbf", json!(NOW + 31))), TokenError::NotYetValid),
            (
                "audience not accepted here",
                es256(&claims_with("aud", json!(["someone-else"]))),
                TokenError::WrongAudience,
            ),
            (
                "issuer not trusted",
                es256(&claims_with("iss", json!("https://evil.example"))),
                TokenError::UnknownIssuer,
            ),
            (
                "issuer differs by a trailing slash",
                es256(&claims_with("iss", json!(format!("{ISSUER}/")))),
                TokenError::UnknownIssuer,
            ),
            ("issuer missing", es256(&claims_without("iss")), TokenError::MissingClaim("iss")),
            ("exp missing", es256(&claims_without("exp")), TokenError::MissingClaim("exp")),
            ("aud missing", es256(&claims_without("aud")), TokenError::MissingClaim("aud")),
            ("alg missing", unsigned(&json!({"kid": "p256-key"}), &claims()), TokenError::MissingClaim("alg")),
            (
                "exp as a string",
                es256(&claims_with("exp", json!("1700000300"))),
                TokenError::Malformed("exp is not a NumericDate"),
            ),
            (
                "aud as a number",
                es256(&claims_with("aud", json!(7))),
                TokenError::Malformed("aud is not a string or an array of strings"),
            ),
            (
                "cnf as a string",
                es256(&claims_with("cnf", json!("abc"))),
                TokenError::Malformed("cnf is not an object"),
            ),
            (
                "crit header",
                mint(TestKey::P256, &json!({"alg": "ES256", "kid": "p256-key", "crit": ["exp"]}), &claims()),
                TokenError::Malformed("crit header parameter is not supported"),
            ),
            (
                "padding in the header segment",
                format!("{valid_header}=.{valid_rest}"),
                TokenError::Malformed("header is not unpadded base64url"),
            ),
            (
                "padding in the signature segment",
                format!("{valid}=="),
                TokenError::Malformed("signature is not unpadded base64url"),
            ),
            (
                "an extra segment",
                format!("{valid}.e30"),
                TokenError::Malformed("a JWS has exactly three dot-separated segments"),
            ),
            (
                "two segments",
                valid.rsplit_once('.').unwrap().0.to_string(),
                TokenError::Malformed("a JWS has exactly three dot-separated segments"),
            ),
            (
                "duplicate claim",
                mint_raw(
                    TestKey::P256,
                    header("ES256", "p256-key").to_string().as_bytes(),
                    format!(r#"{{"iss":"{ISSUER}","aud":"someone-else","aud":"{AUDIENCE}","exp":{}}}"#, NOW + 300)
                        .as_bytes(),
                ),
                TokenError::Malformed("payload is not a JSON object with unique members"),
            ),
            (
                "duplicate nested claim",
                mint_raw(
                    TestKey::P256,
                    header("ES256", "p256-key").to_string().as_bytes(),
                    format!(
                        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"cnf":{{"x5t#S256":"a","x5t#S256":"b"}}}}"#,
                        NOW + 300
                    )
                    .as_bytes(),
                ),
                TokenError::Malformed("payload is not a JSON object with unique members"),
            ),
            (
                "duplicate header member",
                mint_raw(
                    TestKey::P256,
                    br#"{"alg":"none","alg":"ES256","kid":"p256-key"}"#,
                    claims().to_string().as_bytes(),
                ),
                TokenError::Malformed("header is not a JSON object with unique members"),
            ),
            (
                "header is a JSON array",
                mint_raw(TestKey::P256, b"[]", claims().to_string().as_bytes()),
                TokenError::Malformed("header is not a JSON object with unique members"),
            ),
            ("oversized token", oversized, TokenError::Malformed("token longer than 16 KiB")),
            ("garbage base64", "%%%.@@@.!!!".to_string(), TokenError::Malformed("header is not unpadded base64url")),
            (
                "garbage payload base64",
                format!("{valid_header}.***.abc"),
                TokenError::Malformed("payload is not unpadded base64url"),
            ),
            ("empty", String::new(), TokenError::Malformed("a JWS has exactly three dot-separated segments")),
        ];
        for (name, token, error) in cases {
            assert_eq!(check(&token), Err(error), "{name}");
        }
    }

    #[test]
    fn a_key_pinned_to_one_algorithm_refuses_another() {
        let pss = mint(TestKey::Rsa2048Pss, &header("PS256", "rsa-key"), &claims());
        assert_eq!(check_with(RSA_PINNED_RS256_JWKS, &pss, &audiences()), Err(TokenError::UnknownKey));
        let pkcs1 = mint(TestKey::Rsa2048Pkcs1, &header("RS256", "rsa-key"), &claims());
        assert_eq!(check_with(RSA_PINNED_RS256_JWKS, &pkcs1, &audiences()), Ok(expected(&claims())));
    }

    #[test]
    fn an_empty_audience_list_refuses_every_token() {
        assert_eq!(check_with(ISSUER_JWKS, &es256(&claims()), &[]), Err(TokenError::WrongAudience));
    }

    #[test]
    fn sender_binding_matches_only_the_named_certificate() {
        let bound = check(&es256(&claims())).unwrap();
        assert!(cnf_matches(&bound, &certificate()));
        assert!(!cnf_matches(&bound, &Fingerprint::of_der(b"another certificate")));

        let unbound = check(&es256(&claims_without("cnf"))).unwrap();
        assert_eq!(unbound.cnf_x5t_s256, None);
        assert!(!cnf_matches(&unbound, &certificate()));

        let hex_instead = check(&es256(&claims_with("cnf", json!({ "x5t#S256": certificate().to_hex() })))).unwrap();
        assert!(!cnf_matches(&hex_instead, &certificate()));
        let padded =
            check(&es256(&claims_with("cnf", json!({ "x5t#S256": format!("{}=", certificate().to_x5t_s256()) }))))
                .unwrap();
        assert!(!cnf_matches(&padded, &certificate()));
    }

    #[test]
    fn bearer_scheme_is_parsed_strictly() {
        let cases: [(&str, Option<&str>); 10] = [
            ("Bearer abc.def.ghi", Some("abc.def.ghi")),
            ("bearer abc-_~+/==", Some("abc-_~+/==")),
            ("BEARER a", Some("a")),
            ("Bearer  abc", None),
            ("Bearer", None),
            ("Bearer ", None),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearer abc def", None),
            ("Bearer a=b", None),
            ("Bearer ===", None),
        ];
        for (header, token) in cases {
            assert_eq!(bearer_token(header), token, "{header:?}");
        }
    }

    #[test]
    fn current_and_audience_helpers_agree_with_verification() {
        let verified = check(&es256(&claims())).unwrap();
        assert!(verified.is_current(NOW, LEEWAY));
        assert!(verified.is_current(NOW + 300 + 30, LEEWAY));
        assert!(!verified.is_current(NOW + 300 + 31, LEEWAY));
        assert!(!verified.is_current(NOW - 10 - 31, LEEWAY));
        assert!(verified.has_audience(&audiences()));
        assert!(!verified.has_audience(&["someone-else".to_string()]));
    }
}
