//! Proof-of-possession cost per request: a token verified from scratch (ES256, RS256) and a
//! token found in the verified-token cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use certbind_shared::encoding::base64url_encode;
use certbind_shared::pop::{cnf_matches, verify, IssuerKeys, Jwks, TokenCache, TokenRequirements};
use certbind_shared::Fingerprint;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use p256::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde_json::{json, Value};

const ISSUER: &str = "https://issuer.example";
const NOW: i64 = 1_700_000_000;
const LEEWAY: u64 = 30;

fn mint(alg: &str, kid: &str, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let header = json!({ "alg": alg, "kid": kid, "typ": "JWT" });
    let input = format!(
        "{}.{}",
        base64url_encode(header.to_string().as_bytes()),
        base64url_encode(claims.to_string().as_bytes())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", base64url_encode(&signature))
}

/// The one trusted issuer.
struct Issuer(Jwks);

impl IssuerKeys for Issuer {
    fn issuer_keys(&self, issuer: &str) -> Option<&Jwks> {
        (issuer == ISSUER).then_some(&self.0)
    }
}

fn pop(c: &mut Criterion) {
    let certificate = Fingerprint::of_der(b"the client certificate");
    let claims = json!({
        "iss": ISSUER,
        "sub": "user-1",
        "aud": "certbind-api",
        "exp": NOW + 300,
        "cnf": { "x5t#S256": certificate.to_x5t_s256() },
    });
    let p256_key = p256::ecdsa::SigningKey::from_pkcs8_pem(include_str!("../tests/vectors/jwt/ec-p256.pem")).unwrap();
    let rsa_key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(
        rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../tests/vectors/jwt/rsa-2048.pem")).unwrap(),
    );
    let es256 = mint("ES256", "p256-key", &claims, |input| {
        let signature: p256::ecdsa::Signature = p256_key.sign(input);
        signature.to_bytes().to_vec()
    });
    let rs256 = mint("RS256", "rsa-key", &claims, |input| rsa_key.sign(input).to_vec());

    let identity = Issuer(Jwks::parse(include_bytes!("../tests/vectors/jwt/issuer-jwks.json")).unwrap());
    let audiences = vec!["certbind-api".to_string()];
    let requirements = TokenRequirements { audiences: &audiences, leeway_seconds: LEEWAY, now: NOW };

    c.bench_function("pop/verify_es256_cold", |b| {
        b.iter(|| verify(black_box(es256.as_str()), &identity, &requirements).unwrap())
    });
    c.bench_function("pop/verify_rs256_cold", |b| {
        b.iter(|| verify(black_box(rs256.as_str()), &identity, &requirements).unwrap())
    });

    // The signature check alone: this crate's tables against the p256 crate's own verifier.
    let key = certbind_shared::pop::es256::Es256Key::new(*p256_key.verifying_key());
    let message = b"header.payload of a typical access token, a few hundred bytes long in practice";
    let signature: p256::ecdsa::Signature = p256_key.sign(message);
    let signature = signature.to_bytes();
    assert!(key.verifies(message, &signature) && key.verifies_reference(message, &signature));
    c.bench_function("pop/es256_signature_tables", |b| b.iter(|| key.verifies(black_box(message), black_box(&signature))));
    c.bench_function("pop/es256_signature_p256_crate", |b| {
        b.iter(|| key.verifies_reference(black_box(message), black_box(&signature)))
    });

    let mut cache = TokenCache::new(4096);
    cache.insert(&es256, 1, verify(&es256, &identity, &requirements).unwrap());
    c.bench_function("pop/cache_hit", |b| {
        b.iter(|| {
            let token = cache.get(black_box(es256.as_str()), 1, NOW, LEEWAY).unwrap();
            cnf_matches(token, black_box(&certificate))
        })
    });
}

criterion_group!(benches, pop);
criterion_main!(benches);
