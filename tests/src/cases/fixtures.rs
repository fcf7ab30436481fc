//! Test material: the committed test PKI (tests/pki), header encodings of its certificates,
//! and bearer tokens minted with a test-only ES256 key.

use certbind_shared::pop::testing::{mint, signing_input, TestKey, ISSUER_JWKS};
use certbind_shared::source::testing::percent_encode;
use certbind_shared::certificate::pem::decode_certificate_pem;
use certbind_shared::encoding::base64url_encode;
use certbind_shared::Fingerprint;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The instant every case runs at: 2027-01-15, inside the test PKI's validity window
/// (2025–2045) and after the expired certificate's end.
pub const NOW: i64 = 1_800_000_000;

pub const ISSUER: &str = "https://idp.certbind.test";
pub const AUDIENCE: &str = "https://api.certbind.test";
pub const KEY_ID: &str = "test-es256";

pub fn pki_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pki")
}

/// A certificate of the test PKI.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub name: &'static str,
    pub pem: String,
    pub der: Vec<u8>,
    pub fingerprint: Fingerprint,
}

impl TestCert {
    pub fn load(name: &'static str) -> TestCert {
        let path = pki_dir().join(format!("{name}.pem"));
        let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let der = decode_certificate_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let fingerprint = Fingerprint::of_der(&der);
        TestCert { name, pem, der, fingerprint }
    }

    pub fn hex(&self) -> String {
        self.fingerprint.to_hex()
    }

    pub fn x5t(&self) -> String {
        self.fingerprint.to_x5t_s256()
    }

    /// Envoy's XFCC element for this certificate, as `SANITIZE_SET` writes it.
    pub fn xfcc(&self) -> String {
        format!(
            "By=spiffe://certbind.test/envoy;Hash={};Cert=\"{}\";Subject=\"\";URI=",
            self.hex(),
            percent_encode(self.pem.as_bytes())
        )
    }

    /// nginx `$ssl_client_escaped_cert`.
    pub fn nginx_escaped(&self) -> String {
        percent_encode(self.pem.as_bytes())
    }

    /// Traefik `X-Forwarded-Tls-Client-Cert`: bare base64 DER, URL-escaped.
    pub fn traefik(&self) -> String {
        percent_encode(certbind_shared::encoding::base64_encode(&self.der).as_bytes())
    }

    /// nginx's older `$ssl_client_cert`: PEM whose line breaks arrive folded into tabs once
    /// the header is unfolded on its way through.
    pub fn nginx_legacy(&self) -> String {
        self.pem.trim_end().lines().collect::<Vec<_>>().join("\t")
    }

    /// RFC 9440 `Client-Cert`.
    pub fn rfc9440(&self) -> String {
        format!(":{}:", certbind_shared::encoding::base64_encode(&self.der))
    }
}


/// The issuer's signing key: fixed so that runs are reproducible. Test-only.
pub fn issuer_key() -> SigningKey {
    SigningKey::from_bytes(&[0x42; 32].into()).unwrap_or_else(|e| panic!("test key: {e}"))
}

/// A second key under the same `kid`, for "signed by the wrong key".
pub fn impostor_key() -> SigningKey {
    SigningKey::from_bytes(&[0x24; 32].into()).unwrap_or_else(|e| panic!("test key: {e}"))
}

pub fn issuer_jwks() -> Value {
    es256_jwks(&issuer_key(), KEY_ID)
}

/// An org's registration of [`ISSUER`]: the impostor key, under its own key id.
pub fn org_issuer_jwks() -> Value {
    es256_jwks(&impostor_key(), ORG_KEY_ID)
}

/// A JWKS holding `key`'s public half as `kid`.
fn es256_jwks(key: &SigningKey, kid: &str) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    let (x, y) = (point.x().map(|c| c.to_vec()), point.y().map(|c| c.to_vec()));
    json!({"keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": base64url_encode(&x.unwrap_or_default()),
        "y": base64url_encode(&y.unwrap_or_default()),
    }]})
}

/// The key id of [`org_issuer_jwks`].
pub const ORG_KEY_ID: &str = "org-es256";

/// `claims` signed with the org's key ([`org_issuer_jwks`]).
pub fn org_token(claims: &Value) -> String {
    sign_es256(&impostor_key(), &json!({"alg": "ES256", "typ": "JWT", "kid": ORG_KEY_ID}), claims)
}

/// Claims of a valid token, bound to `cert` when given.
pub fn claims(bound_to: Option<&TestCert>) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "jane.doe",
        "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 600,
    });
    if let Some(cert) = bound_to {
        claims["cnf"] = json!({"x5t#S256": cert.x5t()});
    }
    claims
}

pub fn es256_header() -> Value {
    json!({"alg": "ES256", "typ": "JWT", "kid": KEY_ID})
}

pub fn sign_es256(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let signature: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", base64url_encode(&signature.to_bytes()))
}

pub fn token(claims: &Value) -> String {
    sign_es256(&issuer_key(), &es256_header(), claims)
}

/// A second issuer that signs RS256 (RSA-2048, key id `rsa-key`), with the shared crate's
/// committed JWT vectors.
pub const RSA_ISSUER: &str = "https://rsa-idp.certbind.test";

pub fn rsa_issuer_jwks() -> Value {
    serde_json::from_str(ISSUER_JWKS).unwrap_or_else(|e| panic!("issuer-jwks.json: {e}"))
}

/// `claims` issued by [`RSA_ISSUER`], signed RS256.
pub fn rs256_token(claims: &Value) -> String {
    let mut claims = claims.clone();
    claims["iss"] = json!(RSA_ISSUER);
    mint(TestKey::Rsa2048Pkcs1, &json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-key"}), &claims)
}

/// HS256 "signed" with the issuer's public key as the HMAC secret: the algorithm-confusion
/// attack on verifiers that let the token choose how its key is used.
pub fn hs256_with_public_key(claims: &Value) -> String {
    use hmac::{Hmac, Mac};
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": KEY_ID});
    let input = signing_input(&header, claims);
    let public = issuer_key().verifying_key().to_encoded_point(false);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(public.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    mac.update(input.as_bytes());
    format!("{input}.{}", base64url_encode(&mac.finalize().into_bytes()))
}

pub fn unsigned_token(claims: &Value) -> String {
    format!("{}.", signing_input(&json!({"alg": "none", "typ": "JWT"}), claims))
}

/// Every certificate of the test PKI that cases present.
pub const ALL_CERTS: &[&str] =
    &["piv-auth", "piv-auth-2", "piv-auth-test-arc", "piv-card-auth", "cac", "service", "expired", "untrusted-user"];

/// A certificate of the test PKI, loaded once per process.
pub fn cert(name: &str) -> &'static TestCert {
    static CERTS: OnceLock<Vec<TestCert>> = OnceLock::new();
    let certs = CERTS.get_or_init(|| ALL_CERTS.iter().map(|n| TestCert::load(n)).collect());
    certs.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no test certificate {name}"))
}

/// `count` distinct certificates made from `piv-auth.pem` by rewriting its serial number: each
/// has its own fingerprint and serial, and the same subject, SANs and policies. Their
/// signatures no longer verify, which the filter never checks (the proxy verified the chain);
/// they exist to fill caches with many cards, as a gateway in front of a base sees.
pub fn distinct_cards(count: usize) -> Vec<TestCert> {
    let base = cert("piv-auth");
    // piv-auth's serial 9f3a5c7e21d04b68: INTEGER, 9 bytes, a sign byte then the magnitude.
    let serial = [0x02, 0x09, 0x00, 0x9f, 0x3a, 0x5c, 0x7e, 0x21, 0xd0, 0x4b, 0x68];
    let at = base
        .der
        .windows(serial.len())
        .position(|w| w == serial)
        .unwrap_or_else(|| panic!("piv-auth's serial is not where it was"))
        + 3;
    (0..count)
        .map(|i| {
            let mut der = base.der.clone();
            let mut magnitude = (i as u64 + 1).to_be_bytes();
            // The top bit stays set, so the sign byte stays necessary (DER stays minimal).
            magnitude[0] |= 0x80;
            der[at..at + 8].copy_from_slice(&magnitude);
            let pem = certbind_shared::certificate::pem::encode_certificate_pem(&der);
            TestCert { name: "piv-auth", fingerprint: Fingerprint::of_der(&der), pem, der }
        })
        .collect()
}
