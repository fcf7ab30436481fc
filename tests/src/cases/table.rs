//! The case table: the acceptance matrix (every mode × every certificate and token case), spoofing and malformed headers, every reason
//! of the error contract, the JWT refusals, and each certificate source.

use certbind_shared::source::testing::percent_encode;
use super::fixtures::{self, cert, claims, token, TestCert, AUDIENCE, ISSUER, NOW};
use certbind_shared::decision::testing::ClaimStep;
use super::{Case, CaseRequest, Expect};
use certbind_shared::certificate::CertificateFacts;
use certbind_shared::forwarded_signature::ForwardedSignatureKey;
use serde_json::{json, Value};

const TRUSTED_PROXY: &str = "10.1.2.3:40000";
const UNTRUSTED_PEER: &str = "203.0.113.9:40000";

pub const FPKI_PIV_AUTH: &str = "2.16.840.1.101.3.2.1.3.13";
pub const FPKI_TEST_ARC: &str = "2.16.840.1.101.3.2.1.48.11";

/// The policy most cases run under: XFCC set by this Envoy, one route per behaviour.
pub fn standard_policy() -> Value {
    json!({
        "certificate_source": {"kind": "xfcc", "trust": "this_proxy"},
        "default_mode": "bearer",
        "token": {"audiences": [AUDIENCE]},
        "routes": [
            {"path": "/mtls/*", "mode": "mtls"},
            {"path": "/required/*", "mode": "bearer_plus_mtls_required"},
            {"path": "/optional/*", "mode": "bearer_plus_mtls_optional", "sender_binding_required_paths": ["/optional/bound/*"]},
            {"path": "/enrolled/*", "mode": "mtls", "require_enrolled_card": true},
            {"path": "/card-auth/*", "mode": "mtls", "constraints": {"allow_card_authentication": true}},
            {"path": "/fpki/*", "mode": "mtls", "constraints": {"required_policy_oids": [FPKI_PIV_AUTH]}},
            {"path": "/fpki-or-test/*", "mode": "mtls", "constraints": {"required_policy_oids": [FPKI_PIV_AUTH, FPKI_TEST_ARC]}},
            {"path": "/other-issuer/*", "mode": "mtls", "constraints": {"allowed_issuers": ["CN=Other CA,O=certbind,C=US"]}},
            {"path": "/army-mail/*", "mode": "mtls", "constraints": {"allowed_email_domains": ["army.mil"]}}
        ]
    })
}

/// Identity data most cases run with.
pub fn standard_identity() -> Value {
    json!({
        "bindings": [
            {"fingerprint": cert("piv-auth").hex(), "user_id": "u-jane", "org_id": "o-army"},
            {"fingerprint": cert("piv-auth-2").hex(), "user_id": "u-john", "org_id": "o-army", "enabled": false}
        ],
        "blocklist": [cert("untrusted-user").x5t()],
        "thumbprint_map": {cert("service").hex(): "auth:account:service:api"},
        // A SAN mapping names the issuer allowed to assert it (the test PKI's PIV issuing CA).
        "san_mappings": [{"san": "upn", "domain": "mil", "issuer_dn": facts("cac").issuer_dn}],
        "issuers": [
            {"issuer": ISSUER, "jwks": fixtures::issuer_jwks()},
            {"issuer": fixtures::RSA_ISSUER, "jwks": fixtures::rsa_issuer_jwks()}
        ]
    })
}

pub fn standard_config() -> Value {
    json!({"policy": standard_policy(), "development_identity": standard_identity()})
}

fn facts(name: &str) -> CertificateFacts {
    CertificateFacts::from_der(&cert(name).der).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A request over a connection that presented `cert` (or none), through this Envoy.
fn request(path: &str, cert: Option<&TestCert>, bearer: Option<String>) -> CaseRequest {
    let mut headers = Vec::new();
    if let Some(c) = cert {
        headers.push(("x-forwarded-client-cert".to_string(), c.xfcc()));
    }
    if let Some(t) = bearer {
        headers.push(("authorization".to_string(), format!("Bearer {t}")));
    }
    CaseRequest {
        path: path.into(),
        headers,
        peer: UNTRUSTED_PEER.into(),
        connection_digest: cert.map(TestCert::hex),
        now: NOW,
        ..Default::default()
    }
}

fn deny(status: u16, reason: &'static str) -> Expect {
    Expect::Deny { status, reason, detail: certbind_shared::decision::outcome::NO_DETAIL }
}

/// 403 `certificate_not_allowed`, for the operator's `detail`.
fn not_allowed(detail: &'static str) -> Expect {
    Expect::Deny { status: 403, reason: "certificate_not_allowed", detail }
}

/// The identity headers expected for `name` resolved as `principal`, with user and org when bound.
fn identity_of(name: &str, user_org: Option<(&str, &str)>, principal: String) -> Expect {
    let f = facts(name);
    Expect::Allow(vec![
        ("x-dm-smartcard-fingerprint", Some(f.fingerprint.to_hex())),
        ("x-dm-smartcard-subject", Some(f.subject_dn.clone())),
        ("x-dm-smartcard-issuer", Some(f.issuer_dn.clone())),
        ("x-dm-smartcard-serial", Some(f.serial_hex.clone())),
        ("x-dm-user-id", user_org.map(|(u, _)| u.to_string())),
        ("x-dm-org-id", user_org.map(|(_, o)| o.to_string())),
        ("x-dm-principal", Some(principal)),
        ("x-forwarded-client-cert", None),
    ])
}

fn jane_identity() -> Expect {
    identity_of("piv-auth", Some(("u-jane", "o-army")), "auth:account:user:u-jane".into())
}

fn token_only() -> Expect {
    Expect::Allow(vec![
        ("x-dm-token-owner", Some("platform".into())),
        ("x-dm-token-issuer", Some(ISSUER.into())),
        ("x-dm-token-subject", Some("jane.doe".into())),
        ("x-dm-smartcard-fingerprint", None),
        ("x-dm-principal", None),
    ])
}

fn case(name: &str, config: Value, request: CaseRequest, expect: Expect) -> Case {
    Case { name: name.into(), config, request, expect, strip_expected: Vec::new() }
}

fn std_case(name: &str, request: CaseRequest, expect: Expect) -> Case {
    case(name, standard_config(), request, expect)
}

fn with_header(mut r: CaseRequest, name: &str, value: String) -> CaseRequest {
    r.headers.push((name.into(), value));
    r
}

/// The acceptance matrix: every auth mode against every certificate and token case.
pub fn acceptance_matrix() -> Vec<Case> {
    let jane = cert("piv-auth");
    let other = cert("cac");
    let bound = || Some(token(&claims(Some(jane))));
    let bound_elsewhere = || Some(token(&claims(Some(other))));
    vec![
        std_case("optional, listed, jwt, cert, pop match → 200", request("/optional/bound/x", Some(jane), bound()), jane_identity()),
        std_case(
            "optional, listed, jwt, cert, pop mismatch → 401",
            request("/optional/bound/x", Some(jane), bound_elsewhere()),
            deny(401, "sender_binding_mismatch"),
        ),
        std_case("optional, not listed, jwt, no cert → 200", request("/optional/open", None, Some(token(&claims(None)))), token_only()),
        std_case(
            "optional, listed, jwt, no cert → 401",
            request("/optional/bound/x", None, bound()),
            deny(401, "certificate_missing"),
        ),
        std_case("required, jwt, no cert → 401", request("/required/x", None, bound()), deny(401, "certificate_missing")),
        std_case(
            "required, jwt, cert, pop mismatch → 401",
            request("/required/x", Some(jane), bound_elsewhere()),
            deny(401, "sender_binding_mismatch"),
        ),
        std_case("required, jwt, cert, pop match → 200", request("/required/x", Some(jane), bound()), jane_identity()),
        std_case("required, no jwt, cert → 401", request("/required/x", Some(jane), None), deny(401, "token_missing")),
        std_case(
            "required, RS256 jwt, cert, pop match → 200",
            request("/required/x", Some(jane), Some(fixtures::rs256_token(&claims(Some(jane))))),
            jane_identity(),
        ),
        std_case("mtls, no jwt, cert → 200", request("/mtls/x", Some(jane), None), jane_identity()),
        std_case("mtls, no cert → 401", request("/mtls/x", None, None), deny(401, "certificate_missing")),
        std_case("bearer, jwt → 200", request("/anything", None, Some(token(&claims(None)))), token_only()),
        std_case("bearer, no jwt → 401", request("/anything", None, None), deny(401, "token_missing")),
    ]
}

/// Identity headers and certificate headers a client sends itself.
pub fn spoofing() -> Vec<Case> {
    let jane = cert("piv-auth");
    let forwarded_policy = |source: Value| {
        let mut policy = standard_policy();
        policy["certificate_source"] = source;
        policy["trusted_proxies"] = json!(["10.0.0.0/8"]);
        json!({"policy": policy, "development_identity": standard_identity()})
    };
    let xfcc_forwarded = forwarded_policy(json!({"kind": "xfcc", "trust": "trusted_proxies"}));
    let mut from_untrusted = request("/mtls/x", Some(jane), None);
    from_untrusted.connection_digest = None;
    let mut from_trusted = from_untrusted.clone();
    from_trusted.peer = TRUSTED_PROXY.into();
    let mut no_tls = request("/mtls/x", Some(jane), None);
    no_tls.connection_digest = None;
    let mut digest_mismatch = request("/mtls/x", Some(jane), None);
    digest_mismatch.connection_digest = Some(cert("cac").hex());
    let spoofed_dm = with_header(request("/mtls/x", Some(jane), None), "x-dm-user-id", "u-admin".into());
    let spoofed_on_bearer = with_header(
        with_header(request("/open", None, Some(token(&claims(None)))), "x-dm-principal", "auth:account:user:root".into()),
        "x-forwarded-client-cert",
        jane.xfcc(),
    );
    vec![
        case("forwarded XFCC from an untrusted peer is not believed", xfcc_forwarded.clone(), from_untrusted, deny(401, "certificate_missing")),
        case("forwarded XFCC from a trusted proxy is believed", xfcc_forwarded, from_trusted, jane_identity()),
        std_case("client's own XFCC without TLS is not believed", no_tls, deny(401, "certificate_missing")),
        std_case("XFCC disagreeing with the connection's certificate → 400", digest_mismatch, deny(400, "malformed_client_cert")),
        std_case("client-sent X-DM-User-Id is replaced", spoofed_dm, jane_identity()),
        std_case(
            "identity headers on a bearer route are removed",
            spoofed_on_bearer,
            Expect::Allow(vec![
                ("x-dm-principal", None),
                ("x-forwarded-client-cert", None),
                ("x-dm-token-subject", Some("jane.doe".into())),
            ]),
        ),
    ]
}

/// Headers that must be refused with 400.
pub fn malformed_headers() -> Vec<Case> {
    let jane = cert("piv-auth");
    let duplicate = with_header(request("/mtls/x", Some(jane), None), "x-forwarded-client-cert", jane.xfcc());
    let mut oversized = request("/mtls/x", Some(jane), None);
    oversized.headers[0].1 = format!("{};DNS={}", jane.xfcc(), "a".repeat(33 * 1024));
    let mut garbage = request("/mtls/x", Some(jane), None);
    garbage.headers[0].1 = format!("Hash={};Cert=\"%ZZnot-pem\"", jane.hex());
    let mut unterminated = request("/mtls/x", Some(jane), None);
    unterminated.headers[0].1 = format!("Hash={};Cert=\"{}", jane.hex(), percent_encode(jane.pem.as_bytes()));
    // Hash names Jane's certificate (and the connection agrees) but Cert carries another one.
    let mut hash_mismatch = request("/mtls/x", Some(jane), None);
    hash_mismatch.headers[0].1 =
        format!("Hash={};Cert=\"{}\"", jane.hex(), percent_encode(cert("cac").pem.as_bytes()));
    let mut trailing = request("/mtls/x", Some(jane), None);
    trailing.headers[0].1 = format!(
        "Hash={};Cert=\"{}\"",
        jane.hex(),
        percent_encode(format!("{}garbage", jane.pem).as_bytes())
    );
    // A cap above the default is honoured by the parser too.
    let mut large = request("/mtls/x", Some(jane), None);
    large.headers[0].1 = format!("{};DNS={}", jane.xfcc(), "a".repeat(40 * 1024));
    let mut large_cap = standard_policy();
    large_cap["max_header_bytes"] = json!(64 * 1024);
    let large_cap = json!({"policy": large_cap, "development_identity": standard_identity()});
    vec![
        std_case("duplicate XFCC → 400", duplicate, deny(400, "malformed_client_cert")),
        std_case("oversized XFCC → 400", oversized, deny(400, "malformed_client_cert")),
        std_case("a 43 KiB XFCC over the default cap → 400", large.clone(), deny(400, "malformed_client_cert")),
        case("a 43 KiB XFCC under a 64 KiB cap → 200", large_cap, large, jane_identity()),
        std_case("undecodable Cert → 400", garbage, deny(400, "malformed_client_cert")),
        std_case("unterminated quoted value → 400", unterminated, deny(400, "malformed_client_cert")),
        std_case("Hash disagreeing with Cert → 400", hash_mismatch, deny(400, "malformed_client_cert")),
        std_case("bytes after the PEM block → 400", trailing, deny(400, "malformed_client_cert")),
    ]
}

/// A snapshot signing key pinned where no snapshot ever arrives.
const UNUSED_SNAPSHOT_KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEh4a7xDWS80NmdIiGFnWRnj1Td/Ki\nZA5SjvIMnQWactXFeLdGo5uJ3LVBjzWQGFH34r5pVEnaUTx2/urgFHVUBw==\n-----END PUBLIC KEY-----\n";

/// Each remaining reason of the error contract, and the identity precedence.
pub fn reasons_and_identity() -> Vec<Case> {
    let revoked_cac = {
        let mut identity = standard_identity();
        identity["revoked"] = json!([{"issuer_dn": facts("cac").issuer_dn, "serial": "0x3001"}]);
        json!({"policy": standard_policy(), "development_identity": identity})
    };
    let john_enabled = {
        let mut identity = standard_identity();
        identity["bindings"][1]["enabled"] = json!(true);
        json!({"policy": standard_policy(), "development_identity": identity})
    };
    // John's subject carries an emailAddress, matched as `1.2.840.113549.1.9.1=#16…` but
    // forwarded by name.
    let john_identity = {
        let f = facts("piv-auth-2");
        assert!(f.subject_dn.starts_with("1.2.840.113549.1.9.1=#16"), "{}", f.subject_dn);
        Expect::Allow(vec![
            ("x-dm-smartcard-subject", Some("emailAddress=john.roe@example.mil,CN=John R. Roe+UID=jroe,OU=People,O=Example\\, Inc.,C=US".into())),
            ("x-dm-smartcard-issuer", Some(f.issuer_dn.clone())),
            ("x-dm-user-id", Some("u-john".into())),
            ("x-dm-principal", Some("auth:account:user:u-john".into())),
        ])
    };
    // A snapshot source configured, but no snapshot verified yet.
    let no_identity = json!({"policy": standard_policy(), "snapshot": {
        "pinned_keys": [UNUSED_SNAPSHOT_KEY],
        "control_plane": {"cluster": "certbind_control_plane", "authority": "127.0.0.1:8080", "credential": "unused"}
    }});
    vec![
        std_case("expired certificate → 401", request("/mtls/x", Some(cert("expired")), None), deny(401, "certificate_expired")),
        std_case("blocklisted certificate → 401", request("/mtls/x", Some(cert("untrusted-user")), None), deny(401, "certificate_blocklisted")),
        case("revoked serial → 401", revoked_cac, request("/mtls/x", Some(cert("cac")), None), deny(401, "certificate_revoked")),
        std_case("card authentication certificate → 403", request("/mtls/x", Some(cert("piv-card-auth")), None), not_allowed("card_authentication")),
        std_case(
            "card authentication certificate where allowed → 200",
            request("/card-auth/x", Some(cert("piv-card-auth")), None),
            identity_of("piv-card-auth", None, format!("auth:account:x509:sha256:{}", cert("piv-card-auth").x5t())),
        ),
        std_case("issuer not allowed → 403", request("/other-issuer/x", Some(cert("piv-auth")), None), not_allowed("issuer_not_allowed")),
        std_case("test-arc policy on a production route → 403", request("/fpki/x", Some(cert("piv-auth-test-arc")), None), not_allowed("policy_oid_missing")),
        std_case(
            "test-arc policy where the test arc is accepted → 200",
            request("/fpki-or-test/x", Some(cert("piv-auth-test-arc")), None),
            identity_of("piv-auth-test-arc", None, "auth:account:x509:upn:5555555555@mil".into()),
        ),
        std_case("email SAN outside allowed domains → 403", request("/army-mail/x", Some(cert("piv-auth")), None), not_allowed("san_domain")),
        std_case("unenrolled card where enrolment is required → 403", request("/enrolled/x", Some(cert("cac")), None), deny(403, "card_not_enrolled")),
        std_case("enrolled card where enrolment is required → 200", request("/enrolled/x", Some(cert("piv-auth")), None), jane_identity()),
        std_case("disabled binding → 403", request("/mtls/x", Some(cert("piv-auth-2")), None), deny(403, "binding_disabled")),
        case("subject named for people in the header", john_enabled, request("/mtls/x", Some(cert("piv-auth-2")), None), john_identity),
        std_case("path with an encoded slash → 400", request("/mtls%2Fx", Some(cert("piv-auth")), None), deny(400, "invalid_path")),
        case("no identity data → 503", no_identity, request("/mtls/x", Some(cert("piv-auth")), None), deny(503, "identity_unavailable")),
        std_case(
            "thumbprint mapping names the principal",
            request("/mtls/x", Some(cert("service")), None),
            identity_of("service", None, "auth:account:service:api".into()),
        ),
        std_case(
            "UPN mapping where allowed",
            request("/mtls/x", Some(cert("cac")), None),
            identity_of("cac", None, "auth:account:x509:upn:1234567890@mil".into()),
        ),
    ]
}

/// Bearer tokens that must each be refused.
pub fn token_refusals() -> Vec<Case> {
    let jane = cert("piv-auth");
    let bound = claims(Some(jane));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = bound.clone();
        f(&mut c);
        token(&c)
    };
    let mut bad_signature = token(&bound).into_bytes();
    let last = bad_signature.len() - 2;
    bad_signature[last] = if bad_signature[last] == b'A' { b'B' } else { b'A' };
    let bad_signature = String::from_utf8(bad_signature).unwrap_or_default();
    let cases: Vec<(&str, String, &'static str)> = vec![
        ("bad signature", bad_signature, "invalid_token"),
        ("signed by another key under the same kid", fixtures::sign_es256(&fixtures::impostor_key(), &fixtures::es256_header(), &bound), "invalid_token"),
        ("alg none", fixtures::unsigned_token(&bound), "invalid_token"),
        ("HS256 keyed with the issuer's public key", fixtures::hs256_with_public_key(&bound), "invalid_token"),
        ("expired", with(&|c| c["exp"] = json!(NOW - 3600)), "invalid_token"),
        ("not yet valid", with(&|c| c["nbf"] = json!(NOW + 3600)), "invalid_token"),
        ("wrong audience", with(&|c| c["aud"] = json!("https://elsewhere.test")), "invalid_token"),
        ("unknown issuer", with(&|c| c["iss"] = json!("https://evil.test")), "invalid_token"),
        ("no cnf claim", with(&|c| { c.as_object_mut().map(|o| o.remove("cnf")); }), "sender_binding_mismatch"),
        ("cnf naming another certificate", with(&|c| c["cnf"] = json!({"x5t#S256": cert("cac").x5t()})), "sender_binding_mismatch"),
        ("not a JWT", "not-a-token".into(), "invalid_token"),
    ];
    cases
        .into_iter()
        .map(|(name, t, reason)| std_case(&format!("token: {name} → 401"), request("/required/x", Some(jane), Some(t)), deny(401, reason)))
        .collect()
}

/// Each certificate source, from a trusted proxy.
pub fn sources() -> Vec<Case> {
    let jane = cert("piv-auth");
    let via = |source: Value, header: &str, value: String| {
        let mut policy = standard_policy();
        policy["certificate_source"] = source;
        policy["trusted_proxies"] = json!(["10.0.0.0/8"]);
        let request = CaseRequest {
            path: "/mtls/x".into(),
            headers: vec![(header.into(), value)],
            peer: TRUSTED_PROXY.into(),
            connection_digest: None,
            now: NOW,
            ..Default::default()
        };
        (json!({"policy": policy, "development_identity": standard_identity()}), request)
    };
    let mut out = Vec::new();
    for (label, source, header, value) in [
        ("nginx escaped", json!({"kind": "nginx_escaped", "header": "ssl-client-cert"}), "ssl-client-cert", jane.nginx_escaped()),
        ("nginx legacy", json!({"kind": "nginx_legacy", "header": "ssl-client-cert"}), "ssl-client-cert", jane.nginx_legacy()),
        ("traefik", json!({"kind": "traefik", "header": "X-Forwarded-Tls-Client-Cert"}), "x-forwarded-tls-client-cert", jane.traefik()),
        ("rfc 9440", json!({"kind": "rfc9440", "header": "client-cert"}), "client-cert", jane.rfc9440()),
    ] {
        let (config, req) = via(source.clone(), header, value.clone());
        out.push(case(&format!("{label} from a trusted proxy → 200"), config, req, jane_identity()));
        let (config, mut req) = via(source.clone(), header, value.clone());
        req.peer = UNTRUSTED_PEER.into();
        out.push(case(&format!("{label} from an untrusted peer is removed → 401"), config, req, deny(401, "certificate_missing")));
        let (config, mut req) = via(source, header, "garbage".into());
        req.headers[0].1 = ":::%%%".into();
        out.push(case(&format!("{label} malformed → 400"), config, req, deny(400, "malformed_client_cert")));
    }
    // The connection source: the digest names the certificate, peer_certificate gives its facts.
    let mut connection_policy = standard_policy();
    connection_policy["certificate_source"] = json!({"kind": "connection"});
    let connection = json!({"policy": connection_policy, "development_identity": standard_identity()});
    let on_connection = |c: &TestCert, pem: bool| CaseRequest {
        path: "/mtls/x".into(),
        peer: UNTRUSTED_PEER.into(),
        connection_digest: Some(c.hex()),
        connection_certificate: pem.then(|| c.pem.clone()),
        now: NOW,
        ..Default::default()
    };
    out.push(case("connection source with the peer certificate → 200", connection.clone(), on_connection(jane, true), jane_identity()));
    out.push(case(
        "connection source, CAC by UPN mapping → 200",
        connection.clone(),
        on_connection(cert("cac"), true),
        identity_of("cac", None, "auth:account:x509:upn:1234567890@mil".into()),
    ));
    // A certificate no earlier case showed whole: a warm cache would know its facts by digest.
    out.push(case(
        "connection source without the peer certificate, where the Card Authentication check needs it → 403",
        connection.clone(),
        on_connection(cert("piv-auth-test-arc"), false),
        not_allowed("facts_unavailable"),
    ));
    let mut card_auth_allowed = standard_policy();
    card_auth_allowed["certificate_source"] = json!({"kind": "connection"});
    card_auth_allowed["constraints"] = json!({"allow_card_authentication": true});
    let card_auth_allowed = json!({"policy": card_auth_allowed, "development_identity": standard_identity()});
    out.push(case(
        "connection source without the peer certificate, where nothing needs more → 200",
        card_auth_allowed,
        on_connection(jane, false),
        Expect::Allow(vec![
            ("x-dm-smartcard-fingerprint", Some(jane.hex())),
            ("x-dm-user-id", Some("u-jane".into())),
            ("x-dm-smartcard-issuer", None),
        ]),
    ));
    out.extend(signed_forwarding());
    out
}

/// The front tier's HMAC over the forwarded certificate header (two-tier deployments).
fn signed_forwarding() -> Vec<Case> {
    let jane = cert("piv-auth");
    let secret = [7u8; 32];
    let key = ForwardedSignatureKey::new(&secret).unwrap_or_else(|e| panic!("{e}"));
    let mut policy = standard_policy();
    policy["certificate_source"] = json!({"kind": "nginx_escaped", "header": "ssl-client-cert"});
    policy["trusted_proxies"] = json!(["10.0.0.0/8"]);
    policy["forwarded_signature"] =
        json!({"header": "ssl-client-cert-signature", "secret_base64": certbind_shared::encoding::base64_encode(&secret)});
    let config = json!({"policy": policy, "development_identity": standard_identity()});
    let value = jane.nginx_escaped();
    let signed = |signature: Option<String>| CaseRequest {
        path: "/mtls/x".into(),
        headers: std::iter::once(("ssl-client-cert".to_string(), value.clone()))
            .chain(signature.map(|s| ("ssl-client-cert-signature".to_string(), s)))
            .collect(),
        peer: TRUSTED_PROXY.into(),
        connection_digest: None,
        now: NOW,
        ..Default::default()
    };
    let wrong = ForwardedSignatureKey::new(&[8u8; 32]).unwrap_or_else(|e| panic!("{e}"));
    vec![
        case("signed forwarded header → 200", config.clone(), signed(Some(key.sign(value.as_bytes(), NOW))), jane_identity()),
        case(
            "forwarded header signed with another secret → 400",
            config.clone(),
            signed(Some(wrong.sign(value.as_bytes(), NOW))),
            deny(400, "malformed_client_cert"),
        ),
        case(
            "forwarded header signed too long ago → 400",
            config.clone(),
            signed(Some(key.sign(value.as_bytes(), NOW - 61))),
            deny(400, "malformed_client_cert"),
        ),
        case("forwarded header without its signature → 400", config.clone(), signed(None), deny(400, "malformed_client_cert")),
        case("forwarded signature that is not base64 → 400", config, signed(Some("%%%".into())), deny(400, "malformed_client_cert")),
    ]
}

/// Token identities in the namespace of the registration that verified them: the card's org
/// registers the platform's `iss` with a key of its own, and its tokens can never pass for the
/// platform's.
pub fn token_owners() -> Vec<Case> {
    let jane = cert("piv-auth");
    let mut identity = standard_identity();
    if let Some(issuers) = identity["issuers"].as_array_mut() {
        issuers.push(json!({"issuer": ISSUER, "jwks": fixtures::org_issuer_jwks(), "org_id": "o-army"}));
    }
    let config = json!({"policy": standard_policy(), "development_identity": identity});
    let by_org = |bound_to: Option<&TestCert>| Some(fixtures::org_token(&claims(bound_to)));
    let token_identity = |owner: &str, issuer: String| {
        Expect::Allow(vec![
            ("x-dm-token-owner", Some(owner.into())),
            ("x-dm-token-issuer", Some(issuer)),
            ("x-dm-token-subject", Some("jane.doe".into())),
            ("x-dm-org-id", Some("o-army".into())),
        ])
    };
    let org_identity = token_identity("org:o-army", format!("org:o-army:{ISSUER}"));
    // A client naming the platform's identity itself gets it replaced.
    let spoofed = [("x-dm-token-owner", "platform"), ("x-dm-token-issuer", ISSUER), ("X_DM_Token_Owner", "platform")]
        .into_iter()
        .fold(request("/required/x", Some(jane), by_org(Some(jane))), |r, (name, value)| with_header(r, name, value.into()));
    let mut spoofed_case = case("token owner and issuer sent by the client are replaced", config.clone(), spoofed, org_identity.clone());
    spoofed_case.strip_expected = vec!["X_DM_Token_Owner".into()];
    vec![
        case(
            "the org's own key, with the org's card → the org's namespace",
            config.clone(),
            request("/required/x", Some(jane), by_org(Some(jane))),
            org_identity,
        ),
        case(
            "the platform's key, with the org's card → the platform's identity",
            config.clone(),
            request("/required/x", Some(jane), Some(token(&claims(Some(jane))))),
            token_identity("platform", ISSUER.into()),
        ),
        case("the org's own key without a card → 401", config.clone(), request("/anything", None, by_org(None)), deny(401, "invalid_token")),
        case(
            "the org's own key with a card of no org → 401",
            config.clone(),
            request("/optional/x", Some(cert("cac")), by_org(None)),
            deny(401, "invalid_token"),
        ),
        spoofed_case,
    ]
}

/// The claim of `org` on the CAC at `step`, added to the identity's rules.
fn claim_cac(identity: &mut Value, step: ClaimStep, org: &str) {
    let cac = cert("cac");
    match step {
        ClaimStep::Binding => identity["bindings"]
            .as_array_mut()
            .unwrap()
            .push(json!({"fingerprint": cac.hex(), "user_id": format!("u-{org}"), "org_id": org})),
        ClaimStep::Mapping => identity["thumbprint_map"][cac.hex()] = json!({"principal": "svc:claim", "org_id": org}),
        ClaimStep::SanRule => identity["san_mappings"]
            .as_array_mut()
            .unwrap()
            .push(json!({"san": "upn", "domain": "mil", "issuer_dn": facts("cac").issuer_dn, "org_id": org})),
    }
}

/// A certificate two orgs claim at different steps (binding, thumbprint mapping, SAN rule) is
/// refused, never given to the higher-precedence org — every pair of steps, each org at
/// either; a block by either is still a block.
pub fn tenancy_conflicts() -> Vec<Case> {
    let mut cases: Vec<Case> = ClaimStep::pairs()
        .map(|(first, second)| {
            let mut identity = standard_identity();
            claim_cac(&mut identity, first, "o-army");
            claim_cac(&mut identity, second, "o-navy");
            case(
                &format!("{} of o-army and {} of o-navy, one card → 403", first.name(), second.name()),
                json!({"policy": standard_policy(), "development_identity": identity}),
                request("/mtls/x", Some(cert("cac")), None),
                not_allowed("claimed_by_two_orgs"),
            )
        })
        .collect();
    cases.extend(tenancy_conflict_exceptions());
    cases
}

/// What the conflict matrix does not cover: a block beside a conflict, the platform's rule
/// beside an org's, and claims on an org's word alone.
fn tenancy_conflict_exceptions() -> Vec<Case> {
    let cac = facts("cac");
    let navy_san = json!({"san": "upn", "domain": "mil", "issuer_dn": cac.issuer_dn, "org_id": "o-navy"});
    let army_binds = |fingerprint: String| json!({"fingerprint": fingerprint, "user_id": "u-capture", "org_id": "o-army"});
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut identity = standard_identity();
        edit(&mut identity);
        json!({"policy": standard_policy(), "development_identity": identity})
    };
    let navy_resolves_cac = with(&|i| i["san_mappings"] = json!([navy_san]));
    let army_captures_blocked_cac = with(&|i| {
        i["san_mappings"] = json!([navy_san]);
        i["bindings"] = json!([army_binds(cert("cac").hex())]);
        i["blocklist"] = json!([{"fingerprint": cert("cac").hex(), "org_id": "o-navy"}]);
    });
    let army_binds_under_platform_rule = with(&|i| i["bindings"] = json!([army_binds(cert("cac").hex())]));
    // Claims on the org's word alone (bound by fields, mapped by fingerprint): they lose to
    // another org's SAN rule, which is checked against the certificate itself.
    let stated = |claim: Value| {
        let mut claim = claim;
        claim["verified"] = json!(false);
        claim
    };
    let army_states_cac = |enabled: bool, blocked: bool| {
        with(&|i| {
            i["san_mappings"] = json!([navy_san]);
            let mut binding = stated(army_binds(cert("cac").hex()));
            binding["enabled"] = json!(enabled);
            i["bindings"] = json!([binding]);
            if blocked {
                i["blocklist"] = json!([{"fingerprint": cert("cac").hex(), "org_id": "o-army"}]);
            }
        })
    };
    let army_states_mapping = with(&|i| {
        i["san_mappings"] = json!([navy_san]);
        i["thumbprint_map"] = json!({cert("cac").hex(): stated(json!({"principal": "svc:capture", "org_id": "o-army"}))});
        i["revoked"] = json!([{"issuer_dn": cac.issuer_dn, "serial": cac.serial_hex, "org_id": "o-army"}]);
    });
    let army_states_alone = with(&|i| i["bindings"] = json!([stated(army_binds(cert("cac").hex()))]));
    let navy_identity = Expect::Allow(vec![
        ("x-dm-org-id", Some("o-navy".into())),
        ("x-dm-user-id", None),
        ("x-dm-principal", Some("auth:account:org:o-navy:upn:1234567890@mil".into())),
    ]);
    let on_mtls = |name: &str| request("/mtls/x", Some(cert(name)), None);
    vec![
        case("binding by fields of a card another org resolves by SAN rule → that org", army_states_cac(true, false), on_mtls("cac"), navy_identity.clone()),
        case("binding by fields, disabled, of a card another org resolves → that org", army_states_cac(false, false), on_mtls("cac"), navy_identity.clone()),
        case("binding by fields and a block of its org's → that org, unblocked", army_states_cac(true, true), on_mtls("cac"), navy_identity.clone()),
        case("mapping by fingerprint and a revocation of its org's → that org", army_states_mapping, on_mtls("cac"), navy_identity),
        case(
            "binding by fields where no other org claims the card → the binding",
            army_states_alone,
            on_mtls("cac"),
            identity_of("cac", Some(("u-capture", "o-army")), "auth:account:user:u-capture".into()),
        ),
        case(
            "CAC by another org's SAN rule alone → that org",
            navy_resolves_cac,
            on_mtls("cac"),
            Expect::Allow(vec![
                ("x-dm-org-id", Some("o-navy".into())),
                ("x-dm-user-id", None),
                ("x-dm-principal", Some("auth:account:org:o-navy:upn:1234567890@mil".into())),
            ]),
        ),
        case(
            "binding of a card another org resolves and blocked → 401",
            army_captures_blocked_cac,
            on_mtls("cac"),
            deny(401, "certificate_blocklisted"),
        ),
        case(
            "binding of a card the platform's SAN rule names → the binding",
            army_binds_under_platform_rule,
            on_mtls("cac"),
            identity_of("cac", Some(("u-capture", "o-army")), "auth:account:user:u-capture".into()),
        ),
    ]
}

/// On an mtls route tokens are not verified, but one bound to another card is refused (RFC
/// 8705 §3: a bound token only ever with its certificate); one bound to this card, an unbound
/// one, or an opaque one passes to the upstream as sent.
pub fn tokens_on_mtls_routes() -> Vec<Case> {
    let jane = cert("piv-auth");
    let other = cert("cac");
    vec![
        std_case(
            "mtls, jwt bound to another card → 401",
            request("/mtls/x", Some(jane), Some(token(&claims(Some(other))))),
            deny(401, "sender_binding_mismatch"),
        ),
        std_case("mtls, jwt bound to this card → 200", request("/mtls/x", Some(jane), Some(token(&claims(Some(jane))))), jane_identity()),
        std_case("mtls, unbound jwt → 200", request("/mtls/x", Some(jane), Some(token(&claims(None)))), jane_identity()),
        std_case("mtls, opaque bearer → 200", request("/mtls/x", Some(jane), Some("opaque-token-value".into())), jane_identity()),
    ]
}

/// The CA that issued `name`, registered as the snapshot carries it: by its key.
fn issuing_ca(name: &str, revoked: &[&str], crl_valid_until: Option<i64>) -> Value {
    let f = facts(name);
    let key = f.authority_key_identifier.as_ref().unwrap_or_else(|| panic!("{name} names its CA's key"));
    json!({"key_identifier": key.to_hex(), "subject_dn": f.issuer_dn, "crl_valid_until": crl_valid_until,
           "revoked_serials": revoked})
}

fn with_cas(cas: Vec<Value>, constraints: Option<Value>, policy: Option<Value>) -> Value {
    let mut identity = standard_identity();
    identity["certificate_authorities"] = Value::Array(cas);
    if let Some(constraints) = constraints {
        identity["constraints"] = constraints;
    }
    let mut config_policy = standard_policy();
    if let Some(policy) = policy {
        config_policy["revocation"] = policy;
    }
    json!({"policy": config_policy, "development_identity": identity})
}

/// Revocation by the issuing CA's CRL: by the CA's key, never its DN; fresh CRLs required,
/// failing open where a CA says so; an org tightening for its own users.
pub fn crl_revocation() -> Vec<Case> {
    let jane = cert("piv-auth");
    let serial = facts("piv-auth").serial_hex;
    let fresh = Some(NOW + 3_600);
    let stale = Some(NOW - 1);
    let mut fail_open = issuing_ca("piv-auth", &[], stale);
    fail_open["fail_open"] = json!(true);
    let mut not_required = issuing_ca("piv-auth", &[], None);
    not_required["require_fresh_crl"] = json!(false);
    // Another CA of the same DN, whose CRL lists Jane's serial.
    let namesake = json!({"key_identifier": "0102030405060708", "subject_dn": facts("piv-auth").issuer_dn,
                          "crl_valid_until": fresh, "revoked_serials": [serial]});
    let army_requires_fresh = json!([{"kind": "require_fresh_crl", "value": "true", "org_id": "o-army"}]);
    let cac_allowed = Expect::Allow(vec![("x-dm-smartcard-fingerprint", Some(facts("cac").fingerprint.to_hex()))]);
    let mtls = |c| request("/mtls/x", Some(c), None);
    vec![
        case("serial on its CA's CRL → 401", with_cas(vec![issuing_ca("piv-auth", &[&serial], fresh)], None, None), mtls(jane), deny(401, "certificate_revoked")),
        case("serial not on its CA's fresh CRL → 200", with_cas(vec![issuing_ca("piv-auth", &["1"], fresh)], None, None), mtls(jane), jane_identity()),
        case(
            "serial on the CRL of another CA of the same DN → 200",
            with_cas(vec![issuing_ca("piv-auth", &[], fresh), namesake], None, None),
            mtls(jane),
            jane_identity(),
        ),
        case("CA requires a fresh CRL, none held → 401", with_cas(vec![issuing_ca("piv-auth", &[], None)], None, None), mtls(jane), deny(401, "revocation_unknown")),
        case("CA's CRL past its deadline → 401", with_cas(vec![issuing_ca("piv-auth", &[], stale)], None, None), mtls(jane), deny(401, "revocation_unknown")),
        case("stale CRL of a CA that fails open → 200", with_cas(vec![fail_open], None, None), mtls(jane), jane_identity()),
        case(
            "unregistered CA where the policy requires one → 401",
            with_cas(Vec::new(), None, Some(json!({"require_registered_ca": true}))),
            mtls(jane),
            deny(401, "revocation_unknown"),
        ),
        case("unregistered CA by default → 200", with_cas(Vec::new(), None, None), mtls(jane), jane_identity()),
        case(
            "org requiring a fresh CRL refuses its own user → 401",
            with_cas(vec![not_required.clone()], Some(army_requires_fresh.clone()), None),
            mtls(jane),
            deny(401, "revocation_unknown"),
        ),
        case(
            "org requiring a fresh CRL leaves other certificates be → 200",
            with_cas(vec![not_required], Some(army_requires_fresh), None),
            mtls(cert("cac")),
            cac_allowed,
        ),
    ]
}

/// Folded spellings reach their route; a route that opts into exact matching takes paths as
/// spelled, so another case of it is another path.
pub fn path_matching() -> Vec<Case> {
    let jane = cert("piv-auth");
    let exact = {
        let mut policy = standard_policy();
        policy["routes"][0]["path_matching"] = json!("exact");
        json!({"policy": policy, "development_identity": standard_identity()})
    };
    vec![
        std_case("folded: /MTLS/x with the card → the mtls route's identity", request("/MTLS/x", Some(jane), Some(token(&claims(Some(jane))))), jane_identity()),
        std_case("folded: /mtls/x.json with the card → 200", request("/mtls/x.json", Some(jane), None), jane_identity()),
        std_case("folded: /public.json with a token → bearer", request("/public.json", None, Some(token(&claims(None)))), token_only()),
        case("exact: /MTLS/x is not the mtls route → bearer", exact.clone(), request("/MTLS/x", None, Some(token(&claims(None)))), token_only()),
        case("exact: /mtls/x still needs the card → 401", exact, request("/mtls/x", None, Some(token(&claims(None)))), deny(401, "certificate_missing")),
    ]
}

/// Facts of the card a policy forwards upstream (`forward_card_facts`), each in its own
/// `x-dm-smartcard-…` header: set from the certificate, absent where it carries none, and a
/// client's own copy never reaching the upstream in any spelling.
pub fn forwarded_card_facts() -> Vec<Case> {
    let jane = cert("piv-auth");
    let mut policy = standard_policy();
    policy["forward_card_facts"] = json!(["upn", "uuid", "fascn_pi"]);
    if let Some(routes) = policy["routes"].as_array_mut() {
        routes.push(json!({"path": "/plain/*", "mode": "mtls", "forward_card_facts": []}));
        routes.push(json!({"path": "/fascn/*", "mode": "mtls", "forward_card_facts": ["fascn", "fascn_agency", "fascn_oc", "fascn_poa", "certificate_type"]}));
    }
    let config = json!({"policy": policy, "development_identity": standard_identity()});
    let with_facts = |base: Expect, facts: Vec<(&'static str, Option<String>)>| match base {
        Expect::Allow(mut headers) => {
            headers.extend(facts);
            Expect::Allow(headers)
        }
        other => other,
    };
    let jane_facts = || {
        with_facts(
            jane_identity(),
            vec![
                ("x-dm-smartcard-upn", Some("1234567890@mil".into())),
                ("x-dm-smartcard-uuid", Some("3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81".into())),
                ("x-dm-smartcard-fascn-pi", Some("1234567890".into())),
            ],
        )
    };
    let spoofed = [
        ("X-DM-SmartCard-UPN", "admin@mil"),
        ("x_dm_smartcard_fascn_pi", "0000000001"),
        ("X-DM-SmartCard-FASCN-OI", "0001"),
    ]
    .into_iter()
    .fold(request("/mtls/x", Some(jane), None), |r, (name, value)| with_header(r, name, value.into()));
    let mut spoofed_case = case("forwarded facts a client sends are replaced or removed", config.clone(), spoofed, {
        with_facts(jane_facts(), vec![("x-dm-smartcard-fascn-oi", None)])
    });
    spoofed_case.strip_expected = vec!["X-DM-SmartCard-UPN".into(), "x_dm_smartcard_fascn_pi".into(), "X-DM-SmartCard-FASCN-OI".into()];
    let spoofed_plain = with_header(request("/plain/x", Some(jane), None), "X-DM-Smartcard-Uuid", "00000000-0000-0000-0000-000000000000".into());
    let mut spoofed_plain_case = case(
        "a route forwarding no facts removes a client's copy",
        config.clone(),
        spoofed_plain,
        with_facts(jane_identity(), vec![("x-dm-smartcard-uuid", None), ("x-dm-smartcard-upn", None), ("x-dm-smartcard-fascn-pi", None)]),
    );
    spoofed_plain_case.strip_expected = vec!["X-DM-Smartcard-Uuid".into()];
    vec![
        case("policy-wide facts forwarded for the PIV card: UPN, UUID, FASC-N PI", config.clone(), request("/mtls/x", Some(jane), None), jane_facts()),
        case(
            "a CAC without FASC-N or UUID: only its UPN is forwarded",
            config.clone(),
            request("/mtls/x", Some(cert("cac")), None),
            with_facts(
                identity_of("cac", None, "auth:account:x509:upn:1234567890@mil".into()),
                vec![
                    ("x-dm-smartcard-upn", Some("1234567890@mil".into())),
                    ("x-dm-smartcard-uuid", None),
                    ("x-dm-smartcard-fascn-pi", None),
                ],
            ),
        ),
        case(
            "a route's own list replaces the policy's: FASC-N fields and the certificate type",
            config.clone(),
            request("/fascn/x", Some(jane), None),
            with_facts(
                jane_identity(),
                vec![
                    ("x-dm-smartcard-fascn", Some("99999999999999111234567890112232".into())),
                    ("x-dm-smartcard-fascn-agency", Some("9999".into())),
                    ("x-dm-smartcard-fascn-oc", Some("1".into())),
                    ("x-dm-smartcard-fascn-poa", Some("2".into())),
                    ("x-dm-smartcard-certificate-type", Some("piv_authentication".into())),
                    ("x-dm-smartcard-upn", None),
                ],
            ),
        ),
        case("no facts are forwarded for a refused card", config.clone(), request("/mtls/x", Some(cert("piv-card-auth")), None), not_allowed("card_authentication")),
        spoofed_case,
        spoofed_plain_case,
    ]
}

pub fn all() -> Vec<Case> {
    [
        acceptance_matrix(),
        spoofing(),
        malformed_headers(),
        reasons_and_identity(),
        crl_revocation(),
        token_refusals(),
        sources(),
        token_owners(),
        tenancy_conflicts(),
        tokens_on_mtls_routes(),
        path_matching(),
        forwarded_card_facts(),
    ]
    .concat()
}
