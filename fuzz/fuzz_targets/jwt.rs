//! The bearer-token path on arbitrary bytes: `Authorization` parsing, then JWS verification
//! against a fixed issuer key set (shape, base64url, duplicate-free JSON, algorithm, key
//! selection, signature, claims). Also the JWKS parser, which reads configuration and snapshots.
#![no_main]

use certbind_shared::pop::{bearer_token, verify, IssuerKeys, Jwks, TokenRequirements};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ISSUER: &str = "https://issuer.example";

struct FixedIssuer(Jwks);

impl IssuerKeys for FixedIssuer {
    fn issuer_keys(&self, issuer: &str) -> Option<&Jwks> {
        (issuer == ISSUER).then_some(&self.0)
    }
}

fn issuer() -> &'static FixedIssuer {
    static ISSUER_KEYS: OnceLock<FixedIssuer> = OnceLock::new();
    ISSUER_KEYS.get_or_init(|| {
        let jwks = include_bytes!("../../shared/tests/vectors/jwt/issuer-jwks.json");
        FixedIssuer(Jwks::parse(jwks).unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = Jwks::parse(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let audiences = ["certbind-api".to_string()];
    let requirements = TokenRequirements { audiences: &audiences, leeway_seconds: 30, now: 1_700_000_000 };
    let _ = verify(bearer_token(text).unwrap_or(text), issuer(), &requirements);
});
