//! Proof-of-possession cost per request: a token verified from scratch (ES256, RS256) and a
//! token found in the verified-token cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use certbind_shared::pop::testing::{mint, sign, TestKey};
use p256::pkcs8::DecodePrivateKey as _;
use certbind_shared::pop::{cnf_matches, verify, IssuerKeys, Jwks, TokenCache, TokenRequirements};
use certbind_shared::Fingerprint;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::json;

const ISSUER: &str = "https://issuer.example";
const NOW: i64 = 1_700_000_000;
const LEEWAY: u64 = 30;

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
    let es256 = mint(TestKey::P256, &json!({ "alg": "ES256", "kid": "p256-key", "typ": "JWT" }), &claims);
    let rs256 = mint(TestKey::Rsa2048Pkcs1, &json!({ "alg": "RS256", "kid": "rsa-key", "typ": "JWT" }), &claims);

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
    let p256_key = p256::ecdsa::SigningKey::from_pkcs8_pem(include_str!("../tests/vectors/jwt/ec-p256.pem")).unwrap();
    let key = certbind_shared::pop::es256::Es256Key::new(*p256_key.verifying_key());
    let message = b"header.payload of a typical access token, a few hundred bytes long in practice";
    let signature = sign(TestKey::P256, message);
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
