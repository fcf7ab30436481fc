//! Tenancy through the whole decision: the [`Engine`]'s outcome for requests carrying real
//! certificates of two orgs, under identity data from a snapshot and from the development
//! identity alike.
//!
//! The matrix: every rule kind, owned by org A, by the platform, by org B; the outcome for org
//! B's certificates changes only for the platform's rules and B's own (and mirrored for A) —
//! except that a rule of A that answers B's certificate (a thumbprint mapping or SAN rule)
//! claims it too, and a certificate two orgs claim is refused, never moved into either. The
//! cross-step cases (binding against mapping against SAN rule, in both directions) have a
//! matrix of their own.

use crate::source::testing::xfcc_element;
use crate::decision::outcome::{NotAllowed, Outcome, Reason};
use crate::decision::testing::{ClaimStep, RuleKind};
use crate::decision::{header_refs, ConnectionDigest, Engine, RequestInput};
use crate::certificate::CertificateFacts;
use crate::identity::{Claim as Basis, IdentityData, Owner, SanKind, StaticIdentity, StaticIdentityConfig};
use crate::pop::testing::{mint, TestKey, ISSUER_JWKS};
use crate::snapshot::{revoked_serial_key, ConstraintKind, SignatureAlgorithm, SnapshotEncoder, SnapshotHeader, SnapshotView};
use crate::Fingerprint;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const NOW: i64 = 1_750_000_000;
const AUDIENCE: &str = "certbind-api";
const ISSUER: &str = "https://issuer.example";
const ORG_A: &str = "org-a";
const ORG_B: &str = "org-b";

const JANE: &str = include_str!("../../../tests/pki/piv-auth.pem");
const JOHN: &str = include_str!("../../../tests/pki/piv-auth-2.pem");
const CAC: &str = include_str!("../../../tests/pki/cac.pem");
const UNTRUSTED_USER: &str = include_str!("../../../tests/pki/untrusted-user.pem");
const SERVICE: &str = include_str!("../../../tests/pki/service.pem");

fn facts(pem: &str) -> CertificateFacts {
    CertificateFacts::from_pem(pem.as_bytes()).unwrap()
}

fn policy() -> Value {
    json!({
        "certificate_source": {"kind": "xfcc", "trust": "this_proxy"},
        "default_mode": "bearer",
        "token": {"audiences": [AUDIENCE]},
        "routes": [
            {"path": "/mtls/*", "mode": "mtls"},
            {"path": "/token/*", "mode": "bearer_plus_mtls_required"},
            {"path": "/optional/*", "mode": "bearer_plus_mtls_optional"}
        ]
    })
}

fn engine_with(policy: Value) -> Engine {
    Engine::from_json(policy.to_string().as_bytes()).unwrap()
}

/// A request through this Envoy (XFCC) presenting `pem`, with `token` if given.
fn request(path: &str, pem: Option<&str>, token: Option<&str>) -> (Vec<(String, Vec<u8>)>, Option<String>) {
    let mut headers = vec![(":path".to_owned(), path.as_bytes().to_vec())];
    let mut digest = None;
    if let Some(pem) = pem {
        let hex = facts(pem).fingerprint.to_hex();
        let xfcc = xfcc_element(&hex, pem);
        headers.push(("x-forwarded-client-cert".to_owned(), xfcc.into_bytes()));
        digest = Some(hex);
    }
    if let Some(token) = token {
        headers.push(("authorization".to_owned(), format!("Bearer {token}").into_bytes()));
    }
    (headers, digest)
}

fn decide(engine: &mut Engine, identity: &dyn IdentityData, path: &str, pem: Option<&str>, token: Option<&str>) -> Outcome {
    let (headers, digest) = request(path, pem, token);
    let headers = header_refs(&headers);
    let input = RequestInput { headers: &headers, connection_digest: digest.as_deref().map(ConnectionDigest::Hex), now: NOW, ..Default::default() };
    engine.evaluate(&input, Some(identity))
}

fn token_for(pem: &str, audience: &str) -> String {
    let claims = json!({
        "iss": ISSUER, "sub": "someone", "aud": audience, "exp": NOW + 300,
        "cnf": {"x5t#S256": facts(pem).fingerprint.to_x5t_s256()}
    });
    mint(TestKey::P256, &json!({"alg": "ES256", "kid": "p256-key", "typ": "JWT"}), &claims)
}

/// The encoded snapshot, opened (its signature is not what these tests are about).
fn opened(encoder: SnapshotEncoder) -> SnapshotView {
    let header = SnapshotHeader {
        version: 1,
        issued_at: NOW - 60,
        expires_at: NOW + 3600,
        key_id: "0123456789abcdef".into(),
        algorithm: SignatureAlgorithm::Ed25519,
    };
    let bytes = encoder.finish(&header).unwrap().attach_signature(&[0; 64]).unwrap();
    SnapshotView::open_unauthenticated(bytes).unwrap()
}

/// The test JWKS, or only its key `kid`.
fn jwks(kid: Option<&str>) -> Value {
    let mut all: Value = serde_json::from_str(ISSUER_JWKS).unwrap();
    if let Some(kid) = kid {
        all["keys"].as_array_mut().unwrap().retain(|key| key["kid"] == kid);
        assert_eq!(all["keys"].as_array().map(Vec::len), Some(1), "no test key {kid}");
    }
    all
}

fn header<'a>(outcome: &'a Outcome, name: &str) -> Option<&'a str> {
    match outcome {
        Outcome::Allow { set, .. } => set.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()),
        Outcome::Deny(_) => None,
    }
}

/// Identity rules with owners (`None`: the platform), built both as a snapshot and as the
/// development identity, so every test runs against both.
#[derive(Clone, Default)]
struct Rules {
    bindings: Vec<(&'static str, &'static str, &'static str)>,
    blocked: Vec<(&'static str, Option<&'static str>)>,
    revoked: Vec<(&'static str, Option<&'static str>)>,
    mappings: Vec<(&'static str, Option<&'static str>, &'static str)>,
    san_rules: Vec<(SanKind, &'static str, String, Option<&'static str>)>,
    constraints: Vec<(ConstraintKind, &'static str, Option<&'static str>)>,
    /// Owner, audiences, and the one key of the test JWKS it trusts (`None`: all of them).
    issuers: Vec<(Option<&'static str>, Vec<&'static str>, Option<&'static str>)>,
    /// Certificates whose binding and org mappings are unverified (bound by fields, mapped by
    /// fingerprint alone); the others' are verified.
    unverified: Vec<&'static str>,
    /// Certificates whose binding is disabled.
    disabled: Vec<&'static str>,
}

fn two_orgs() -> Rules {
    Rules { bindings: vec![(JANE, "u-jane", ORG_B), (JOHN, "u-john", ORG_A)], ..Rules::default() }
}

impl Rules {
    /// What the binding and org mappings of `pem` rest on.
    fn basis(&self, pem: &str) -> Basis {
        Basis::from_verified(!self.unverified.contains(&pem))
    }

    fn snapshot(&self) -> SnapshotView {
        let mut encoder = SnapshotEncoder::new();
        let mut bindings: Vec<_> = self.bindings.iter().map(|(pem, u, o)| (facts(pem).fingerprint, *u, *o, *pem)).collect();
        bindings.sort();
        for (fp, user, org, pem) in bindings {
            encoder.push_binding_claim(&fp, user, org, !self.disabled.contains(&pem), self.basis(pem)).unwrap();
        }
        let owner = |o: &Option<&'static str>| Owner::from_org_id(*o);
        let blocked: BTreeSet<(Fingerprint, Option<&str>)> =
            self.blocked.iter().map(|(pem, o)| (facts(pem).fingerprint, *o)).collect();
        for (fp, o) in &blocked {
            encoder.push_blocked(fp, owner(o)).unwrap();
        }
        let revoked: BTreeSet<([u8; 32], Option<&str>)> = self
            .revoked
            .iter()
            .map(|(pem, o)| {
                let f = facts(pem);
                (revoked_serial_key(&f.issuer_dn, &f.serial_hex), *o)
            })
            .collect();
        for (key, o) in &revoked {
            encoder.push_revoked_key(key, owner(o)).unwrap();
        }
        let mappings: BTreeSet<(Fingerprint, Option<&str>, &str, &str)> =
            self.mappings.iter().map(|(pem, o, name)| (facts(pem).fingerprint, *o, *name, *pem)).collect();
        for (fp, o, name, pem) in &mappings {
            encoder.push_principal_claim(fp, owner(o), name, self.basis(pem)).unwrap();
        }
        for (kind, domain, issuer, o) in &self.san_rules {
            encoder.push_san_rule(*kind, domain, issuer, owner(o)).unwrap();
        }
        for (kind, value, o) in &self.constraints {
            encoder.push_constraint(owner(o), *kind, value).unwrap();
        }
        for (o, audiences, kid) in &self.issuers {
            encoder.push_issuer(ISSUER, owner(o), audiences, jwks(*kid).to_string().as_bytes()).unwrap();
        }
        opened(encoder)
    }

    fn development(&self) -> StaticIdentity {
        let with_owner = |mut v: Value, o: &Option<&str>| {
            if let Some(org) = o {
                v["org_id"] = json!(org);
            }
            v
        };
        let config = json!({
            "bindings": self.bindings.iter().map(|(pem, u, o)| json!({
                "fingerprint": facts(pem).fingerprint.to_hex(), "user_id": u, "org_id": o,
                "enabled": !self.disabled.contains(pem), "verified": self.basis(pem).is_verified()
            })).collect::<Vec<_>>(),
            "blocklist": self.blocked.iter().map(|(pem, o)| with_owner(json!({"fingerprint": facts(pem).fingerprint.to_hex()}), o)).collect::<Vec<_>>(),
            "revoked": self.revoked.iter().map(|(pem, o)| {
                let f = facts(pem);
                with_owner(json!({"issuer_dn": f.issuer_dn, "serial": f.serial_hex}), o)
            }).collect::<Vec<_>>(),
            "thumbprint_map": self.mappings.iter().map(|(pem, o, name)| {
                let basis = json!({"principal": name, "verified": self.basis(pem).is_verified()});
                (facts(pem).fingerprint.to_hex(), if o.is_some() { with_owner(basis, o) } else { json!(name) })
            }).collect::<serde_json::Map<String, Value>>(),
            "san_mappings": self.san_rules.iter().map(|(kind, domain, issuer, o)| {
                with_owner(json!({"san": kind.as_str(), "domain": domain, "issuer_dn": issuer}), o)
            }).collect::<Vec<_>>(),
            "constraints": self.constraints.iter().map(|(kind, value, o)| with_owner(json!({"kind": kind.name(), "value": value}), o)).collect::<Vec<_>>(),
            "issuers": self.issuers.iter().map(|(o, audiences, kid)| {
                with_owner(json!({"issuer": ISSUER, "jwks": jwks(*kid), "audiences": audiences}), o)
            }).collect::<Vec<_>>(),
        });
        let config: StaticIdentityConfig = serde_json::from_value(config).unwrap();
        StaticIdentity::from_config(config, 1).unwrap()
    }

    /// The outcome of one request under both forms of the rules; they must agree.
    fn decide(&self, path: &str, pem: Option<&str>, token: Option<&str>) -> Outcome {
        let snapshot = decide(&mut engine_with(policy()), &self.snapshot(), path, pem, token);
        let development = decide(&mut engine_with(policy()), &self.development(), path, pem, token);
        assert_eq!(snapshot, development, "snapshot and development identity disagree on {path}");
        snapshot
    }
}

fn with_rule(mut rules: Rules, kind: RuleKind, pem: &'static str, owner: Option<&'static str>) -> Rules {
    match kind {
        RuleKind::Block => rules.blocked.push((pem, owner)),
        RuleKind::Revoke => rules.revoked.push((pem, owner)),
        RuleKind::AllowedIssuer => rules.constraints.push((ConstraintKind::AllowedIssuerDn, "CN=Nobody", owner)),
        RuleKind::RequiredPolicy => rules.constraints.push((ConstraintKind::RequiredPolicyOid, "1.2.3.4", owner)),
        RuleKind::EmailDomain => rules.constraints.push((ConstraintKind::SanEmailDomain, "nowhere.example", owner)),
        RuleKind::Issuer => rules.issuers.push((owner, vec![], None)),
        RuleKind::Mapping => rules.mappings.push((pem, owner, "svc:claimed")),
        RuleKind::SanRule => rules.san_rules.push((SanKind::Upn, "mil", facts(pem).issuer_dn, owner)),
    }
    rules
}

/// Where a rule kind shows: mTLS for certificate rules, a bound token for issuer rules.
fn probe(rules: &Rules, kind: RuleKind, pem: &str) -> Outcome {
    match kind {
        RuleKind::Issuer => rules.decide("/token/x", Some(pem), Some(&token_for(pem, AUDIENCE))),
        _ => rules.decide("/mtls/x", Some(pem), None),
    }
}

#[test]
fn no_org_changes_the_decision_for_another_orgs_certificates() {
    for (certificate, own, other) in [(JANE, ORG_B, ORG_A), (JOHN, ORG_A, ORG_B)] {
        for kind in RuleKind::ALL {
            let baseline = probe(&two_orgs(), kind, certificate);
            let by_other = probe(&with_rule(two_orgs(), kind, certificate, Some(other)), kind, certificate);
            let by_platform = probe(&with_rule(two_orgs(), kind, certificate, None), kind, certificate);
            let by_own = probe(&with_rule(two_orgs(), kind, certificate, Some(own)), kind, certificate);
            if kind.claims() {
                // The other org's rule answers the bound certificate: two orgs claim it.
                assert_eq!(
                    by_other,
                    Outcome::deny(Reason::CertificateNotAllowed(NotAllowed::ClaimedByTwoOrgs)),
                    "{kind:?} of {other} on {own}'s certificate"
                );
            } else {
                assert_eq!(by_other, baseline, "{kind:?} of {other} changed the outcome for {own}'s certificate");
            }
            // Bindings come first: the platform's or the own org's mapping or SAN rule changes
            // nothing for a bound certificate. Every other rule applies in its owner's scope.
            let expected = kind.refusal();
            match kind {
                RuleKind::Issuer => {
                    assert_eq!(baseline.reason(), Some(Reason::InvalidToken), "no issuer registered");
                    assert_eq!(by_platform.reason(), None, "{kind:?} platform");
                    assert_eq!(by_own.reason(), None, "{kind:?} {own}");
                }
                RuleKind::Mapping | RuleKind::SanRule => {
                    assert_eq!(by_platform, baseline, "{kind:?} platform");
                    assert_eq!(by_own, baseline, "{kind:?} {own}");
                }
                _ => {
                    assert_eq!(by_platform.reason(), expected, "{kind:?} platform");
                    assert_eq!(by_own.reason(), expected, "{kind:?} {own}");
                }
            }
        }
    }
}

#[test]
fn only_platform_rules_apply_to_a_certificate_of_no_org() {
    // The service certificate is neither bound nor mapped.
    for kind in [RuleKind::Block, RuleKind::Revoke, RuleKind::AllowedIssuer, RuleKind::RequiredPolicy, RuleKind::EmailDomain] {
        let baseline = probe(&two_orgs(), kind, SERVICE);
        assert_eq!(baseline.reason(), None);
        assert_eq!(header(&baseline, "x-dm-org-id"), None);
        for org in [ORG_A, ORG_B] {
            assert_eq!(probe(&with_rule(two_orgs(), kind, SERVICE, Some(org)), kind, SERVICE), baseline, "{kind:?} {org}");
        }
        assert_ne!(probe(&with_rule(two_orgs(), kind, SERVICE, None), kind, SERVICE), baseline, "{kind:?} platform");
    }
    // A bearer route has no certificate: only the platform's issuers apply.
    let token = mint(
        TestKey::P256,
        &json!({"alg": "ES256", "kid": "p256-key"}),
        &json!({"iss": ISSUER, "sub": "s", "aud": AUDIENCE, "exp": NOW + 300}),
    );
    let mut rules = two_orgs();
    rules.issuers.push((Some(ORG_A), vec![], None));
    assert_eq!(rules.decide("/bearer", None, Some(&token)).reason(), Some(Reason::InvalidToken));
    rules.issuers.push((None, vec![], None));
    assert_eq!(rules.decide("/bearer", None, Some(&token)).reason(), None);
}

#[test]
fn the_org_resolves_by_binding_then_mapping_then_san_rule_and_names_the_principal() {
    let cac = facts(CAC);
    let mut rules = two_orgs();
    // Bound: user and org, whatever else of the platform's or the own org's matches.
    rules.mappings.push((JANE, None, "svc:claimed"));
    rules.san_rules.push((SanKind::Upn, "mil", facts(JANE).issuer_dn, Some(ORG_B)));
    let bound = rules.decide("/mtls/x", Some(JANE), None);
    assert_eq!(header(&bound, "x-dm-user-id"), Some("u-jane"));
    assert_eq!(header(&bound, "x-dm-org-id"), Some(ORG_B));
    assert_eq!(header(&bound, "x-dm-principal"), Some("auth:account:user:u-jane"));

    // The CAC, unbound: an org's SAN rule for its issuer puts it in that org's namespace.
    let mut san = two_orgs();
    san.san_rules.push((SanKind::Upn, "mil", cac.issuer_dn.clone(), Some(ORG_A)));
    let by_san = san.decide("/mtls/x", Some(CAC), None);
    assert_eq!(header(&by_san, "x-dm-org-id"), Some(ORG_A));
    assert_eq!(header(&by_san, "x-dm-user-id"), None);
    assert_eq!(header(&by_san, "x-dm-principal"), Some("auth:account:org:org-a:upn:1234567890@mil"));
    // The same rule for another issuer: the same UPN from another CA maps to nothing.
    let other_ca = facts(UNTRUSTED_USER);
    assert_ne!(other_ca.issuer_dn, cac.issuer_dn);
    let mut wrong_issuer = two_orgs();
    wrong_issuer.san_rules.push((SanKind::Upn, "mil", other_ca.issuer_dn.clone(), Some(ORG_A)));
    let unmapped = wrong_issuer.decide("/mtls/x", Some(CAC), None);
    assert_eq!(header(&unmapped, "x-dm-principal"), Some(format!("auth:account:x509:sha256:{}", cac.fingerprint.to_x5t_s256()).as_str()));
    assert_eq!(header(&unmapped, "x-dm-org-id"), None);
    // The platform's SAN rule: the platform namespace, no org.
    let mut platform = two_orgs();
    platform.san_rules.push((SanKind::Upn, "mil", cac.issuer_dn.clone(), None));
    let by_platform = platform.decide("/mtls/x", Some(CAC), None);
    assert_eq!(header(&by_platform, "x-dm-principal"), Some("auth:account:x509:upn:1234567890@mil"));
    assert_eq!(header(&by_platform, "x-dm-org-id"), None);

    // A thumbprint mapping comes before SAN rules: an org's is composed into its namespace,
    // the platform's is taken as given.
    let mut mapped = san.clone();
    mapped.mappings.push((CAC, Some(ORG_A), "svc:reports"));
    let by_mapping = mapped.decide("/mtls/x", Some(CAC), None);
    assert_eq!(header(&by_mapping, "x-dm-org-id"), Some(ORG_A));
    assert_eq!(header(&by_mapping, "x-dm-principal"), Some("auth:account:org:org-a:svc:reports"));
    let mut platform_mapped = san.clone();
    platform_mapped.mappings.push((CAC, None, "svc:reports"));
    let by_platform_mapping = platform_mapped.decide("/mtls/x", Some(CAC), None);
    assert_eq!(header(&by_platform_mapping, "x-dm-org-id"), None);
    assert_eq!(header(&by_platform_mapping, "x-dm-principal"), Some("svc:reports"));
}

#[test]
fn rules_of_two_orgs_at_one_step_refuse_the_certificate() {
    let cac = facts(CAC);
    let refused = Outcome::deny(Reason::CertificateNotAllowed(NotAllowed::ClaimedByTwoOrgs));
    // Two orgs' SAN rules for the same (kind, domain, issuer): neither is picked, and the
    // certificate does not fall through to no org (which would escape both orgs' rules).
    let mut san = two_orgs();
    san.san_rules.push((SanKind::Upn, "mil", cac.issuer_dn.clone(), Some(ORG_A)));
    san.san_rules.push((SanKind::Upn, "mil", cac.issuer_dn.clone(), Some(ORG_B)));
    assert_eq!(san.decide("/mtls/x", Some(CAC), None), refused);

    // Two SANs of one certificate matched by two orgs' rules: the same.
    let jane = facts(JANE);
    let mut two_values = Rules::default();
    two_values.san_rules.push((SanKind::Email, "example.mil", jane.issuer_dn.clone(), Some(ORG_A)));
    two_values.san_rules.push((SanKind::Upn, "mil", jane.issuer_dn.clone(), Some(ORG_B)));
    assert_eq!(two_values.decide("/mtls/x", Some(JANE), None), refused);
    // One org's rules matching both SANs resolve by the first (the email).
    let mut one_org = Rules::default();
    one_org.san_rules.push((SanKind::Email, "example.mil", jane.issuer_dn.clone(), Some(ORG_A)));
    one_org.san_rules.push((SanKind::Upn, "mil", jane.issuer_dn.clone(), Some(ORG_A)));
    let outcome = one_org.decide("/mtls/x", Some(JANE), None);
    assert_eq!(header(&outcome, "x-dm-org-id"), Some(ORG_A));
    assert!(header(&outcome, "x-dm-principal").is_some_and(|p| p.starts_with("auth:account:org:org-a:email:")), "{outcome:?}");

    // Two orgs' thumbprint mappings (the snapshot can carry both; the development identity's
    // map cannot).
    let mut mappings = two_orgs();
    mappings.mappings.push((CAC, Some(ORG_A), "svc:a"));
    mappings.mappings.push((CAC, Some(ORG_B), "svc:b"));
    assert_eq!(decide(&mut engine_with(policy()), &mappings.snapshot(), "/mtls/x", Some(CAC), None), refused);
}

#[test]
fn a_step_the_platform_and_one_org_answer_falls_through_and_the_org_still_blocks() {
    let cac = facts(CAC);
    let default = format!("auth:account:x509:sha256:{}", cac.fingerprint.to_x5t_s256());
    // The platform's and org A's mappings of one certificate (snapshot only): the mapping step
    // resolves nothing, and SAN rules are next — A's own resolves it into A.
    let mut mappings = two_orgs();
    mappings.mappings.push((CAC, Some(ORG_A), "svc:a"));
    mappings.mappings.push((CAC, None, "svc:platform"));
    let with_san = {
        let mut rules = mappings.clone();
        rules.san_rules.push((SanKind::Upn, "mil", cac.issuer_dn.clone(), Some(ORG_A)));
        rules
    };
    let outcome = decide(&mut engine_with(policy()), &with_san.snapshot(), "/mtls/x", Some(CAC), None);
    assert_eq!(header(&outcome, "x-dm-org-id"), Some(ORG_A));
    assert_eq!(header(&outcome, "x-dm-principal"), Some("auth:account:org:org-a:upn:1234567890@mil"));
    // Without a SAN rule: no org, the certificate's own ARN — but A claimed the certificate,
    // and its blocklist still applies; B's does not.
    let outcome = decide(&mut engine_with(policy()), &mappings.snapshot(), "/mtls/x", Some(CAC), None);
    assert_eq!(header(&outcome, "x-dm-org-id"), None);
    assert_eq!(header(&outcome, "x-dm-principal"), Some(default.as_str()));
    for (blocker, expected) in [(ORG_A, Some(Reason::CertificateBlocklisted)), (ORG_B, None)] {
        let mut blocked = mappings.clone();
        blocked.blocked.push((CAC, Some(blocker)));
        let outcome = decide(&mut engine_with(policy()), &blocked.snapshot(), "/mtls/x", Some(CAC), None);
        assert_eq!(outcome.reason(), expected, "blocked by {blocker}");
    }

    // The platform's and org A's SAN rules matching two SANs of one certificate: the same,
    // under both forms of the rules.
    let jane = facts(JANE);
    let mut san = Rules::default();
    san.san_rules.push((SanKind::Email, "example.mil", jane.issuer_dn.clone(), None));
    san.san_rules.push((SanKind::Upn, "mil", jane.issuer_dn.clone(), Some(ORG_A)));
    let outcome = san.decide("/mtls/x", Some(JANE), None);
    assert_eq!(header(&outcome, "x-dm-org-id"), None);
    assert_eq!(header(&outcome, "x-dm-principal"), Some(format!("auth:account:x509:sha256:{}", jane.fingerprint.to_x5t_s256()).as_str()));
    san.revoked.push((JANE, Some(ORG_A)));
    assert_eq!(san.decide("/mtls/x", Some(JANE), None).reason(), Some(Reason::CertificateRevoked));
}

#[test]
fn a_source_without_issuer_or_serial_refuses_where_a_rule_needs_them() {
    let mut policy = policy();
    policy["certificate_source"] = json!({"kind": "connection"});
    // Without the certificate's EKUs and policies, the route must admit Card Authentication
    // certificates explicitly, or it refuses every one.
    policy["routes"][0]["constraints"] = json!({"allow_card_authentication": true});
    let jane = facts(JANE);
    let over_connection = |rules: &Rules| {
        let headers = vec![(":path".to_owned(), b"/mtls/x".to_vec())];
        let hex = jane.fingerprint.to_hex();
        let headers = header_refs(&headers);
        let input = RequestInput { headers: &headers, connection_digest: Some(ConnectionDigest::Hex(&hex)), now: NOW, ..Default::default() };
        let snapshot = engine_with(policy.clone()).evaluate(&input, Some(&rules.snapshot()));
        let development = engine_with(policy.clone()).evaluate(&input, Some(&rules.development()));
        assert_eq!(snapshot, development);
        snapshot
    };
    let base = over_connection(&two_orgs());
    assert_eq!(base.reason(), None);
    assert_eq!(header(&base, "x-dm-org-id"), Some(ORG_B));
    // Any revocation by serial that applies: the serial cannot be checked.
    let unavailable = Some(Reason::CertificateNotAllowed(NotAllowed::FactsUnavailable));
    for (owner, expected) in [(None, unavailable), (Some(ORG_B), unavailable), (Some(ORG_A), None)] {
        let mut rules = two_orgs();
        rules.revoked.push((JOHN, owner));
        assert_eq!(over_connection(&rules).reason(), expected, "revocation of {owner:?}");
    }
    // Any constraint that applies: issuer, policies and emails are unknown.
    for kind in [ConstraintKind::AllowedIssuerDn, ConstraintKind::RequiredPolicyOid, ConstraintKind::SanEmailDomain] {
        let unavailable = Some(Reason::CertificateNotAllowed(NotAllowed::FactsUnavailable));
    for (owner, expected) in [(None, unavailable), (Some(ORG_B), unavailable), (Some(ORG_A), None)] {
            let mut rules = two_orgs();
            rules.constraints.push((kind, "anything", owner));
            assert_eq!(over_connection(&rules).reason(), expected, "{kind:?} of {owner:?}");
        }
    }
    // A blocklist entry needs only the fingerprint.
    let mut rules = two_orgs();
    rules.blocked.push((JANE, Some(ORG_B)));
    assert_eq!(over_connection(&rules).reason(), Some(Reason::CertificateBlocklisted));
}

#[test]
fn a_cached_token_counts_only_where_its_registration_applies() {
    // Org A registered the issuer; org B did not. The same token, accepted with A's
    // certificate, must not be taken from the cache for B's.
    let mut rules = two_orgs();
    rules.issuers.push((Some(ORG_A), vec![], None));
    for identity in [&rules.snapshot() as &dyn IdentityData, &rules.development()] {
        let mut engine = engine_with(policy());
        let claims = json!({"iss": ISSUER, "sub": "s", "aud": AUDIENCE, "exp": NOW + 300});
        let unbound = mint(TestKey::P256, &json!({"alg": "ES256", "kid": "p256-key"}), &claims);
        let with_a = decide(&mut engine, identity, "/optional/x", Some(JOHN), Some(&unbound));
        assert_eq!(with_a.reason(), None);
        assert_eq!(header(&with_a, "x-dm-org-id"), Some(ORG_A));
        let with_b = decide(&mut engine, identity, "/optional/x", Some(JANE), Some(&unbound));
        assert_eq!(with_b.reason(), Some(Reason::InvalidToken));
        let without_certificate = decide(&mut engine, identity, "/optional/x", None, Some(&unbound));
        assert_eq!(without_certificate.reason(), Some(Reason::InvalidToken));
        // Still accepted in A's scope afterwards.
        assert_eq!(decide(&mut engine, identity, "/optional/x", Some(JOHN), Some(&unbound)).reason(), None);
    }
}

#[test]
fn a_registration_listing_audiences_wants_one_of_them() {
    let mut rules = two_orgs();
    rules.issuers.push((Some(ORG_B), vec!["api://b"], None));
    assert_eq!(rules.decide("/token/x", Some(JANE), Some(&token_for(JANE, AUDIENCE))).reason(), Some(Reason::InvalidToken));
    // `aud` must name the deployment's audience and one of the registration's.
    let claims = json!({
        "iss": ISSUER, "sub": "s", "aud": [AUDIENCE, "api://b"], "exp": NOW + 300,
        "cnf": {"x5t#S256": facts(JANE).fingerprint.to_x5t_s256()}
    });
    let both = mint(TestKey::P256, &json!({"alg": "ES256", "kid": "p256-key"}), &claims);
    assert_eq!(rules.decide("/token/x", Some(JANE), Some(&both)).reason(), None);
}

/// A token of `claims`' issuer and subject, signed by `key` under its `kid` in the test JWKS.
fn signed_by(key: TestKey, claims: &Value) -> String {
    let header = match key {
        TestKey::P256 => json!({"alg": "ES256", "kid": "p256-key"}),
        TestKey::P384 => json!({"alg": "ES384", "kid": "p384-key"}),
        TestKey::Rsa2048Pkcs1 => json!({"alg": "RS256", "kid": "rsa-key"}),
        other => panic!("no test header for {other:?}"),
    };
    mint(key, &header, claims)
}

/// (owner, issuer, subject) as forwarded, or the refusal.
fn token_identity(outcome: &Outcome) -> Result<(String, String, String), Reason> {
    let get = |name| header(outcome, name).map(str::to_owned).unwrap_or_default();
    match outcome.reason() {
        Some(reason) => Err(reason),
        None => Ok((get("x-dm-token-owner"), get("x-dm-token-issuer"), get("x-dm-token-subject"))),
    }
}

#[test]
fn token_identities_are_forwarded_in_the_namespace_of_the_registration_that_verified_them() {
    // One `iss`, three registrations with three different keys: the platform's (P-384), org
    // A's (P-256, a key A holds) and org B's (RSA). Each mints a token for the same subject.
    let mut rules = two_orgs();
    rules.issuers.push((None, vec![], Some("p384-key")));
    rules.issuers.push((Some(ORG_A), vec![], Some("p256-key")));
    rules.issuers.push((Some(ORG_B), vec![], Some("rsa-key")));
    let claims = json!({"iss": ISSUER, "sub": "victim", "aud": AUDIENCE, "exp": NOW + 300});
    let genuine = signed_by(TestKey::P384, &claims);
    let by_a = signed_by(TestKey::P256, &claims);
    let by_b = signed_by(TestKey::Rsa2048Pkcs1, &claims);

    let platform = Ok(("platform".to_owned(), ISSUER.to_owned(), "victim".to_owned()));
    let org_a = Ok(("org:org-a".to_owned(), format!("org:org-a:{ISSUER}"), "victim".to_owned()));
    let org_b = Ok(("org:org-b".to_owned(), format!("org:org-b:{ISSUER}"), "victim".to_owned()));
    let refused = Err(Reason::InvalidToken);
    // (route, certificate, token) → forwarded identity. John's card is org A's, Jane's B's.
    let cases = [
        ("/bearer", None, &genuine, &platform),
        ("/optional/x", Some(JOHN), &genuine, &platform),
        ("/optional/x", Some(JANE), &genuine, &platform),
        ("/bearer", None, &by_a, &refused),
        ("/optional/x", Some(JOHN), &by_a, &org_a),
        ("/optional/x", Some(JANE), &by_a, &refused),
        ("/bearer", None, &by_b, &refused),
        ("/optional/x", Some(JANE), &by_b, &org_b),
        ("/optional/x", Some(JOHN), &by_b, &refused),
    ];
    for (path, pem, token, expected) in cases {
        let outcome = rules.decide(path, pem, Some(token));
        assert_eq!(&token_identity(&outcome), expected, "{path} with {:?}", pem.map(|p| facts(p).subject_dn));
        // The org's namespaced issuer can never be read as the bare one, nor as another org's.
        if let Ok((owner, issuer, _)) = token_identity(&outcome) {
            assert_eq!(owner == "platform", issuer == ISSUER, "{owner} {issuer}");
        }
    }

    // The same engine, its caches warm, in every order: the label never depends on history.
    for identity in [&rules.snapshot() as &dyn IdentityData, &rules.development()] {
        let mut engine = engine_with(policy());
        for (path, pem, token, expected) in cases.iter().chain(cases.iter().rev()) {
            let outcome = decide(&mut engine, identity, path, *pem, Some(token));
            assert_eq!(&token_identity(&outcome), *expected, "{path} (warm)");
        }
    }
}

#[test]
fn a_token_the_platform_accepts_is_the_platforms_in_any_scope() {
    // Org A registers the platform's `iss` with the platform's very keys (they are public).
    let mut rules = two_orgs();
    rules.issuers.push((None, vec![], None));
    rules.issuers.push((Some(ORG_A), vec![], None));
    let claims = json!({"iss": ISSUER, "sub": "someone", "aud": AUDIENCE, "exp": NOW + 300});
    let token = signed_by(TestKey::P256, &claims);
    let platform = Ok(("platform".to_owned(), ISSUER.to_owned(), "someone".to_owned()));
    for identity in [&rules.snapshot() as &dyn IdentityData, &rules.development()] {
        let mut engine = engine_with(policy());
        // With A's card first (nothing cached), then without a card, then with it again (cached).
        for (path, pem) in [("/optional/x", Some(JOHN)), ("/bearer", None), ("/optional/x", Some(JOHN))] {
            assert_eq!(token_identity(&decide(&mut engine, identity, path, pem, Some(&token))), platform, "{path}");
        }
    }
}

#[test]
fn a_platform_issuer_that_could_pass_for_an_orgs_is_never_honoured() {
    let reserved = format!("org:{ORG_A}:{ISSUER}");
    // The development identity refuses it outright.
    let config = json!({"issuers": [{"issuer": reserved, "jwks": jwks(None)}]});
    let error = StaticIdentity::from_config(serde_json::from_value(config).unwrap(), 1).unwrap_err();
    assert_eq!(error.field, "identity.issuers[0].issuer");
    // A snapshot carrying one: its tokens are refused, while org A's registration of the bare
    // `iss` forwards that very issuer text, under A's owner.
    let mut encoder = SnapshotEncoder::new();
    encoder.push_binding(&facts(JOHN).fingerprint, "u-john", ORG_A, true).unwrap();
    encoder.push_issuer(ISSUER, Owner::Org(ORG_A), &[] as &[&str], jwks(Some("p256-key")).to_string().as_bytes()).unwrap();
    encoder.push_issuer(&reserved, Owner::Platform, &[] as &[&str], jwks(Some("p384-key")).to_string().as_bytes()).unwrap();
    let snapshot = opened(encoder);
    let mut engine = engine_with(policy());
    let squatting = signed_by(TestKey::P384, &json!({"iss": reserved, "sub": "s", "aud": AUDIENCE, "exp": NOW + 300}));
    for (path, pem) in [("/bearer", None), ("/optional/x", Some(JOHN))] {
        assert_eq!(decide(&mut engine, &snapshot, path, pem, Some(&squatting)).reason(), Some(Reason::InvalidToken), "{path}");
    }
    let by_a = signed_by(TestKey::P256, &json!({"iss": ISSUER, "sub": "s", "aud": AUDIENCE, "exp": NOW + 300}));
    let outcome = decide(&mut engine, &snapshot, "/optional/x", Some(JOHN), Some(&by_a));
    assert_eq!(token_identity(&outcome), Ok(("org:org-a".to_owned(), reserved.clone(), "s".to_owned())));
}

fn claiming(mut rules: Rules, claim: ClaimStep, pem: &'static str, owner: Option<&'static str>) -> Rules {
    match claim {
        ClaimStep::Binding => rules.bindings.push((pem, "u-claim", owner.expect("a binding belongs to an org"))),
        ClaimStep::Mapping => rules.mappings.push((pem, owner, "svc:claim")),
        ClaimStep::SanRule => rules.san_rules.push((SanKind::Upn, "mil", facts(pem).issuer_dn, owner)),
    }
    rules
}

#[test]
fn rules_of_two_orgs_at_different_steps_refuse_the_certificate_in_both_directions() {
    let refused = Outcome::deny(Reason::CertificateNotAllowed(NotAllowed::ClaimedByTwoOrgs));
    let bound_token = token_for(CAC, AUDIENCE);
    let mut checked = 0;
    for (holder, other) in [(ORG_A, ORG_B), (ORG_B, ORG_A)] {
        for first in ClaimStep::ALL {
            // The holder's claim alone puts the CAC in the holder's org, on both routes (both
            // orgs trust the token issuer).
            let mut held = claiming(two_orgs(), first, CAC, Some(holder));
            held.issuers.push((Some(ORG_A), vec![], None));
            held.issuers.push((Some(ORG_B), vec![], None));
            let alone = held.decide("/mtls/x", Some(CAC), None);
            assert_eq!(header(&alone, "x-dm-org-id"), Some(holder), "{first:?} of {holder}");
            assert_eq!(held.decide("/token/x", Some(CAC), Some(&bound_token)).reason(), None, "{first:?} of {holder}");
            for second in ClaimStep::ALL.into_iter().filter(|c| *c != first) {
                // The other org answers at another step, before or after the holder: refused,
                // never the higher-precedence org's, on every route.
                let both = claiming(held.clone(), second, CAC, Some(other));
                let what = format!("{holder}'s {first:?} and {other}'s {second:?}");
                assert_eq!(both.decide("/mtls/x", Some(CAC), None), refused, "{what}");
                assert_eq!(both.decide("/token/x", Some(CAC), Some(&bound_token)), refused, "{what}, with a token");
                checked += 1;

                // The holder itself at the other step: no conflict, the earlier step decides.
                let own = claiming(held.clone(), second, CAC, Some(holder));
                let outcome = own.decide("/mtls/x", Some(CAC), None);
                assert_eq!(header(&outcome, "x-dm-org-id"), Some(holder), "{holder}'s {first:?} and {second:?}");
                assert_eq!(header(&outcome, "x-dm-user-id").is_some(), first.min(second) == ClaimStep::Binding);

                // The platform at the other step claims nothing: the earlier step decides,
                // the platform's rule included.
                if second.open_to_the_platform() {
                    let platform = claiming(held.clone(), second, CAC, None);
                    let outcome = platform.decide("/mtls/x", Some(CAC), None);
                    assert_eq!(outcome.reason(), None, "{holder}'s {first:?} and the platform's {second:?}");
                    let expected_org = if second < first { None } else { Some(holder) };
                    assert_eq!(header(&outcome, "x-dm-org-id"), expected_org, "{holder}'s {first:?} and the platform's {second:?}");
                }
            }
        }
    }
    assert_eq!(checked, 2 * 3 * 2);
}

#[test]
fn a_block_or_revocation_of_any_claiming_org_refuses_first_whatever_the_conflict() {
    // The capture the control plane must refuse: the holder resolves its user's CAC by SAN
    // rule and blocks it; another org binds (or maps) the public certificate to its own user.
    for (holder, capturer) in [(ORG_B, ORG_A), (ORG_A, ORG_B)] {
        for capture in [ClaimStep::Binding, ClaimStep::Mapping] {
            let held = claiming(two_orgs(), ClaimStep::SanRule, CAC, Some(holder));
            let captured = claiming(held.clone(), capture, CAC, Some(capturer));
            let what = format!("{holder}'s SAN rule, {capturer}'s {capture:?}");
            let conflict = Reason::CertificateNotAllowed(NotAllowed::ClaimedByTwoOrgs);
            assert_eq!(captured.decide("/mtls/x", Some(CAC), None), Outcome::deny(conflict), "{what}");
            let cases = [
                (RuleKind::Block, Some(holder), Reason::CertificateBlocklisted),
                (RuleKind::Block, Some(capturer), Reason::CertificateBlocklisted),
                (RuleKind::Block, None, Reason::CertificateBlocklisted),
                (RuleKind::Revoke, Some(holder), Reason::CertificateRevoked),
                (RuleKind::Revoke, Some(capturer), Reason::CertificateRevoked),
                (RuleKind::Revoke, None, Reason::CertificateRevoked),
                // A third org claims nothing here: its block does not apply (the conflict does).
                (RuleKind::Block, Some("org-c"), conflict),
                // The conflict is found before the holder's constraint is looked at.
                (RuleKind::AllowedIssuer, Some(holder), conflict),
            ];
            for (kind, owner, expected) in cases {
                // The holder's own rule takes effect before the capture, and still after it.
                if owner == Some(holder) {
                    let before = probe(&with_rule(held.clone(), kind, CAC, owner), kind, CAC);
                    let expected = match kind {
                        RuleKind::AllowedIssuer => Reason::CertificateNotAllowed(NotAllowed::IssuerNotAllowed),
                        _ => expected,
                    };
                    assert_eq!(before.reason(), Some(expected), "{kind:?} of {holder} before the capture");
                }
                let outcome = probe(&with_rule(captured.clone(), kind, CAC, owner), kind, CAC);
                assert_eq!(outcome, Outcome::deny(expected), "{what}, {kind:?} of {owner:?}");
            }
        }
    }
}

/// An org that knows only another org's card holder's public certificate (or its fingerprint)
/// binds it by fields or maps it by fingerprint: its claim is unverified, and loses to the
/// holder's SAN rule (which the filter checks against the certificate itself).
fn stated_capture(holder: &'static str, capturer: &'static str, capture: ClaimStep) -> (Rules, Rules) {
    let held = claiming(two_orgs(), ClaimStep::SanRule, CAC, Some(holder));
    let mut captured = claiming(held.clone(), capture, CAC, Some(capturer));
    captured.unverified.push(CAC);
    (held, captured)
}

#[test]
fn an_unverified_claim_never_changes_the_outcome_for_another_orgs_card_holder() {
    let bound_token = token_for(CAC, AUDIENCE);
    let mut checked = 0;
    for (holder, capturer) in [(ORG_A, ORG_B), (ORG_B, ORG_A)] {
        for capture in [ClaimStep::Binding, ClaimStep::Mapping] {
            let (mut held, mut captured) = stated_capture(holder, capturer, capture);
            for rules in [&mut held, &mut captured] {
                rules.issuers.push((Some(holder), vec![], None));
            }
            let what = format!("{holder}'s SAN rule, {capturer}'s unverified {capture:?}");
            let alone = held.decide("/mtls/x", Some(CAC), None);
            assert_eq!(header(&alone, "x-dm-org-id"), Some(holder), "{what}");
            assert_eq!(header(&alone, "x-dm-principal"), Some(format!("auth:account:org:{holder}:upn:1234567890@mil").as_str()));
            // Answered by the holder's rule, headers and all, on every route.
            assert_eq!(captured.decide("/mtls/x", Some(CAC), None), alone, "{what}");
            let with_token = held.decide("/token/x", Some(CAC), Some(&bound_token));
            assert_eq!(with_token.reason(), None, "{what}: the holder's issuer applies");
            assert_eq!(captured.decide("/token/x", Some(CAC), Some(&bound_token)), with_token, "{what}, with a token");
            // Nothing of the capturer's scope reaches the card holder: not its blocklist, its
            // revocations, its constraints, nor a binding it disables.
            for kind in RuleKind::ALL.into_iter().filter(|k| !k.claims()) {
                let baseline = probe(&with_rule(held.clone(), kind, CAC, Some(capturer)), kind, CAC);
                let outcome = probe(&with_rule(captured.clone(), kind, CAC, Some(capturer)), kind, CAC);
                assert_eq!(outcome, baseline, "{what}, {kind:?} of {capturer}");
                checked += 1;
            }
            if capture == ClaimStep::Binding {
                let mut disabled = captured.clone();
                disabled.disabled.push(CAC);
                assert_eq!(disabled.decide("/mtls/x", Some(CAC), None), alone, "{what}, disabled");
            }
            // The holder's own rules still apply to its card holder.
            let blocked = with_rule(captured.clone(), RuleKind::Block, CAC, Some(holder));
            assert_eq!(blocked.decide("/mtls/x", Some(CAC), None), Outcome::deny(Reason::CertificateBlocklisted), "{what}");
        }
    }
    assert_eq!(checked, 2 * 2 * 6);
}

#[test]
fn an_unverified_claim_stands_where_no_other_org_claims_the_certificate() {
    for capture in [ClaimStep::Binding, ClaimStep::Mapping] {
        // Alone, beside the platform's rule (which claims nothing), or beside its own org's
        // SAN rule: the binding or mapping resolves as any other, its org's rules apply.
        let alone = claiming(two_orgs(), capture, CAC, Some(ORG_B));
        let beside_platform = claiming(alone.clone(), ClaimStep::SanRule, CAC, None);
        let beside_own = claiming(alone.clone(), ClaimStep::SanRule, CAC, Some(ORG_B));
        for verified in [alone, beside_platform, beside_own] {
            let mut unverified = verified.clone();
            unverified.unverified.push(CAC);
            let outcome = unverified.decide("/mtls/x", Some(CAC), None);
            assert_eq!(outcome, verified.decide("/mtls/x", Some(CAC), None), "{capture:?}");
            assert_eq!(header(&outcome, "x-dm-org-id"), Some(ORG_B), "{capture:?}");
            assert_eq!(header(&outcome, "x-dm-user-id").is_some(), capture == ClaimStep::Binding);
            let blocked = with_rule(unverified.clone(), RuleKind::Block, CAC, Some(ORG_B));
            assert_eq!(blocked.decide("/mtls/x", Some(CAC), None), Outcome::deny(Reason::CertificateBlocklisted));
        }
        // A disabled binding by fields, alone: refused as disabled.
        if capture == ClaimStep::Binding {
            let mut disabled = claiming(two_orgs(), capture, CAC, Some(ORG_B));
            disabled.unverified.push(CAC);
            disabled.disabled.push(CAC);
            assert_eq!(disabled.decide("/mtls/x", Some(CAC), None), Outcome::deny(Reason::BindingDisabled));
        }
    }
}

#[test]
fn verified_claims_of_two_orgs_still_refuse_and_unverified_ones_lose_to_any_verified_one() {
    let refused = Outcome::deny(Reason::CertificateNotAllowed(NotAllowed::ClaimedByTwoOrgs));
    for capture in [ClaimStep::Binding, ClaimStep::Mapping] {
        // Made from the certificate, against another org's SAN rule (which the control plane
        // refuses to write): neither org gets the card.
        let (_, mut verified) = stated_capture(ORG_A, ORG_B, capture);
        verified.unverified.clear();
        assert_eq!(verified.decide("/mtls/x", Some(CAC), None), refused, "verified {capture:?}");
        // Against two orgs' SAN rules the unverified claim drops out, and the two rules still
        // refuse the card (the snapshot can carry both rules; the development identity too).
        let (_, mut three) = stated_capture(ORG_A, ORG_B, capture);
        three.san_rules.push((SanKind::Upn, "mil", facts(CAC).issuer_dn, Some("org-c")));
        assert_eq!(three.decide("/mtls/x", Some(CAC), None), refused, "{capture:?} against two SAN rules");
    }
    // An org's unverified binding against another org's verified mapping (the control plane
    // never writes both; a snapshot could carry them): the mapping answers.
    let service = facts(SERVICE).fingerprint;
    let mut encoder = SnapshotEncoder::new();
    encoder.push_binding_claim(&service, "u-claim", ORG_B, true, Basis::Unverified).unwrap();
    encoder.push_principal_claim(&service, Owner::Org(ORG_A), "svc:claim", Basis::Verified).unwrap();
    let outcome = decide(&mut engine_with(policy()), &opened(encoder), "/mtls/x", Some(SERVICE), None);
    assert_eq!(header(&outcome, "x-dm-org-id"), Some(ORG_A), "{outcome:?}");
    assert_eq!(header(&outcome, "x-dm-principal"), Some("auth:account:org:org-a:svc:claim"));
    assert_eq!(header(&outcome, "x-dm-user-id"), None);
    // Both unverified, or both verified: two orgs claim it, refused.
    for basis in [Basis::Unverified, Basis::Verified] {
        let mut encoder = SnapshotEncoder::new();
        encoder.push_binding_claim(&service, "u-claim", ORG_B, true, basis).unwrap();
        encoder.push_principal_claim(&service, Owner::Org(ORG_A), "svc:claim", basis).unwrap();
        assert_eq!(decide(&mut engine_with(policy()), &opened(encoder), "/mtls/x", Some(SERVICE), None), refused, "{basis:?}");
    }
}
