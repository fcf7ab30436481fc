//! Tenancy proven where it matters: in the filter's decision. Two orgs' rules are made through
//! the API, the real snapshot service signs the database's content, the snapshot is verified
//! and opened with `certbind_shared` as a filter does, and `certbind_shared::decision::Engine`
//! decides requests carrying each org's certificates (tests/pki). For every rule kind, made by
//! either org against the other's certificates (or by the platform), the other org's outcomes
//! do not move; the acting org's own do, which shows each case can fail. On SQLite and
//! PostgreSQL.

mod common;

use certbind_control_plane::state::Limits;
use certbind_control_plane::snapshot::{StoreService, StoreSettings};
use certbind_shared::certificate::CertificateFacts;
use certbind_shared::decision::outcome::{header, Outcome};
use certbind_shared::decision::testing::RuleKind;
use certbind_shared::decision::{header_refs, ConnectionDigest, Engine, RequestInput};
use certbind_shared::pop::testing::{mint, TestKey, ISSUER_JWKS};
use certbind_shared::source::testing::xfcc_element;
use certbind_shared::snapshot::{PinnedKey, SnapshotVerifier, SnapshotView};
use common::{Resp, Store, TestApp, TestDb, Transport};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

on_every_store!(
    no_org_rule_changes_another_orgs_decision,
    disabling_an_org_refuses_its_certificates_and_no_others,
    stated_claims_never_lock_out_another_orgs_card_holder,
);

const JANE: &str = include_str!("../../tests/pki/piv-auth.pem");
const JOHN: &str = include_str!("../../tests/pki/piv-auth-2.pem");
/// From the PIV issuing CA like Jane's and John's cards, which no SAN rule names (a SAN rule
/// of one org for that CA would claim the other org's bound cards too): it resolves into no
/// org.
const CAC: &str = include_str!("../../tests/pki/cac.pem");
const SERVICE: &str = include_str!("../../tests/pki/service.pem");
/// Same UPN as the CAC, from another CA, whose UPN domain org A claims by SAN rule.
const STRAY: &str = include_str!("../../tests/pki/untrusted-user.pem");
const AUDIENCE: &str = "certbind-api";
const ISSUER: &str = "https://issuer.example";

fn facts(pem: &str) -> CertificateFacts {
    CertificateFacts::from_pem(pem.as_bytes()).unwrap()
}

fn now() -> i64 {
    certbind_shared::clock::now_seconds()
}

/// The JWKS of the committed test keys, reduced to one key.
fn jwks_with(kid: &str) -> Value {
    let all: Value = serde_json::from_str(ISSUER_JWKS).unwrap();
    let keys: Vec<Value> = all["keys"].as_array().unwrap().iter().filter(|k| k["kid"] == kid).cloned().collect();
    json!({ "keys": keys })
}

/// An ES256 token bound to `pem` (RFC 8705 `cnf.x5t#S256`), signed by the committed P-256 key.
fn token_for(pem: &str) -> String {
    let header = json!({ "alg": "ES256", "kid": "p256-key", "typ": "JWT" });
    let claims = json!({
        "iss": ISSUER, "sub": "someone", "aud": AUDIENCE, "exp": now() + 300,
        "cnf": { "x5t#S256": facts(pem).fingerprint.to_x5t_s256() }
    });
    mint(TestKey::P256, &header, &claims)
}

fn engine() -> Engine {
    let policy = json!({
        "certificate_source": { "kind": "xfcc", "trust": "this_proxy" },
        "default_mode": "bearer",
        "token": { "audiences": [AUDIENCE] },
        "routes": [
            { "path": "/mtls/*", "mode": "mtls" },
            { "path": "/token/*", "mode": "bearer_plus_mtls_required" }
        ]
    });
    Engine::from_json(policy.to_string().as_bytes()).unwrap()
}

/// What a request's outcome says about identity: status, reason, org and principal.
type Verdict = (u16, String, String, String);

fn decide(engine: &mut Engine, identity: &SnapshotView, path: &str, pem: &str, token: Option<&str>) -> Verdict {
    let hex = facts(pem).fingerprint.to_hex();
    let mut headers = vec![
        (":path".to_owned(), path.as_bytes().to_vec()),
        ("x-forwarded-client-cert".to_owned(), xfcc_element(&hex, pem).into_bytes()),
    ];
    if let Some(token) = token {
        headers.push(("authorization".to_owned(), format!("Bearer {token}").into_bytes()));
    }
    let headers = header_refs(&headers);
    let input = RequestInput { headers: &headers, connection_digest: Some(ConnectionDigest::Hex(&hex)), now: now(), ..Default::default() };
    let outcome = engine.evaluate(&input, Some(identity));
    let get = |name: &str| match &outcome {
        Outcome::Allow { set, .. } => set.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default(),
        Outcome::Deny(_) => String::new(),
    };
    (outcome.status(), outcome.reason().map(|r| r.as_str().to_owned()).unwrap_or_default(), get(header::ORG), get(header::PRINCIPAL))
}

/// The certificates of the matrix and whose each is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Who {
    A,
    B,
    Nobody,
}

const CERTS: [(&str, &str, Who); 5] =
    [("john", JOHN, Who::A), ("stray", STRAY, Who::A), ("jane", JANE, Who::B), ("service", SERVICE, Who::B), ("cac", CAC, Who::Nobody)];

struct Matrix {
    app: Arc<TestApp>,
    service: Arc<StoreService>,
    verifier: SnapshotVerifier,
}

impl Matrix {
    fn token(&self, who: Who) -> &str {
        match who {
            Who::A => &self.app.a.token,
            Who::B | Who::Nobody => &self.app.b.token,
        }
    }

    /// The snapshot the service signs once every committed change is in, verified and opened
    /// as a filter opens it.
    async fn snapshot(&self) -> SnapshotView {
        // The last change committed (later versions may be signatures already).
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM snapshot_log WHERE kind = 'change'")
            .fetch_one(self.app.db.reader())
            .await
            .unwrap();
        let committed = u64::try_from(sqlx::Row::get::<i64, _>(&row, 0)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(latest) = self.service.store().latest().filter(|s| s.version() > committed) {
                return self.verifier.verify(latest.bytes().to_vec(), now(), None).expect("the snapshot verifies");
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot after version {committed}: latest {:?}, applied {}, unpublished {}",
                self.service.store().latest().map(|s| s.version()),
                self.service.store().applied_version(),
                self.service.store().has_unpublished()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every certificate on an mTLS route and, with a token bound to it, on a proof-of-possession
    /// route.
    async fn outcomes(&self) -> BTreeMap<(Who, &'static str, &'static str), Verdict> {
        let view = self.snapshot().await;
        let mut engine = engine();
        let mut out = BTreeMap::new();
        for (name, pem, who) in CERTS {
            out.insert((who, name, "mtls"), decide(&mut engine, &view, "/mtls/x", pem, None));
            let token = token_for(pem);
            out.insert((who, name, "token"), decide(&mut engine, &view, "/token/x", pem, Some(&token)));
        }
        out
    }
}

fn created(r: Resp, what: &str) -> Value {
    assert_eq!(r.status, 201, "{what}: {}", r.text());
    r.json()
}

/// One rule of the matrix, as the API takes it: made by `by` against `target`'s certificate.
struct Rule {
    kind: RuleKind,
    path: &'static str,
    body: Value,
}

/// Every kind of the matrix's rows as an API request aimed at `target_pem`. A thumbprint
/// mapping names the certificate of no org: one of another org's bound card is refused as a
/// claim (see `claims`), and this shows a granted one leaves the other org alone.
fn rules_against(target_pem: &str) -> Vec<Rule> {
    let f = facts(target_pem);
    let rule = |kind: RuleKind| {
        let (path, body) = match kind {
            RuleKind::Block => ("/api/v1/admin/blocklist", json!({ "fingerprint": f.fingerprint.to_hex() })),
            RuleKind::Revoke => ("/api/v1/admin/blocklist", json!({ "issuer_dn": f.issuer_dn, "serial": f.serial_hex })),
            RuleKind::RequiredPolicy => ("/api/v1/admin/constraints", json!({ "kind": "required_policy_oid", "value": "1.2.3.4.5" })),
            RuleKind::AllowedIssuer => {
                ("/api/v1/admin/constraints", json!({ "kind": "allowed_issuer_dn", "value": "CN=Nobody's CA" }))
            }
            RuleKind::EmailDomain => {
                ("/api/v1/admin/constraints", json!({ "kind": "san_email_domain", "value": "nowhere.example" }))
            }
            RuleKind::SanRule => {
                ("/api/v1/admin/mapping-rules", json!({ "san": "email", "domain": "example.mil", "issuer_dn": f.issuer_dn }))
            }
            RuleKind::Issuer => ("/api/v1/admin/issuers", json!({ "issuer": ISSUER, "jwks": jwks_with("p256-key") })),
            RuleKind::Mapping => (
                "/api/v1/admin/thumbprint-mappings",
                json!({ "fingerprint": facts(CAC).fingerprint.to_hex(), "principal": "cac-svc" }),
            ),
        };
        Rule { kind, path, body }
    };
    RuleKind::ALL.into_iter().map(rule).collect()
}

/// Deletes what a rule created.
async fn undo(m: &Matrix, rule: &Rule, created: &Value, token: &str) {
    let id = created.get("id").and_then(Value::as_str).map(str::to_owned);
    let key = id.unwrap_or_else(|| created["fingerprint"].as_str().unwrap().to_owned());
    let r = m.app.delete(&format!("{}/{key}", rule.path), token).await;
    assert_eq!(r.status, 200, "undo {:?}: {}", rule.kind, r.text());
}

/// Two orgs' rules made through the API (see below), and every certificate's outcome with
/// them: the matrix's baseline.
async fn two_orgs(store: Store, test: &str) -> (Matrix, BTreeMap<(Who, &'static str, &'static str), Verdict>, Value) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let db = test_db.open().await;
    let signer = common::signer(0x3c);
    let verifier = SnapshotVerifier::new([PinnedKey::from_spki_der(&signer.public_key_der()).unwrap()]).unwrap();
    let service = StoreService::start(db.clone(), signer, StoreSettings::default()).await.unwrap();
    let app = Arc::new(TestApp::start_on(test_db, db, Transport::Oneshot, service.clone(), Limits::default()).await);
    for org in [&app.a.org.id, &app.b.org.id] {
        app.assign_domain(org, "mil").await;
    }
    let m = Matrix { app: app.clone(), service, verifier };
    let (a, b) = (&app.a, &app.b);

    // Org A: John's card bound, the stray card's UPN domain claimed for its CA, A's issuer
    // registration trusting the P-256 key. Org B: Jane's card bound, the service certificate
    // mapped, B's registration of the same issuer URL trusting only the P-384 key.
    let bind = |user: &str, pem: &str| json!({ "user_id": user, "certificate_pem": pem });
    created(app.post("/api/v1/admin/smartcards", &a.token, &bind(&a.user.id, JOHN)).await, "bind john");
    created(app.post("/api/v1/admin/smartcards", &b.token, &bind(&b.user.id, JANE)).await, "bind jane");
    let stray_ca = facts(STRAY).issuer_dn;
    created(app.post("/api/v1/admin/mapping-rules", &a.token, &json!({ "san": "upn", "domain": "mil", "issuer_dn": stray_ca })).await, "A's SAN rule");
    let service_fp = facts(SERVICE).fingerprint.to_hex();
    created(app.post("/api/v1/admin/thumbprint-mappings", &b.token, &json!({ "fingerprint": service_fp, "principal": "api" })).await, "B's mapping");
    let a_issuer = json!({ "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": jwks_with("p256-key") });
    created(app.post("/api/v1/admin/issuers", &a.token, &a_issuer).await, "A's issuer");
    let b_issuer = created(app.post("/api/v1/admin/issuers", &b.token, &json!({ "issuer": ISSUER, "jwks": jwks_with("p384-key") })).await, "B's issuer");

    // The baseline: each certificate in its org, with the principal composed in its namespace.
    let base = m.outcomes().await;
    (m, base, b_issuer)
}

async fn no_org_rule_changes_another_orgs_decision(store: Store, test: &str) {
    let (m, base, b_issuer) = two_orgs(store, test).await;
    let app = m.app.clone();
    let (a, b) = (&app.a, &app.b);
    let verdict = |who, name, route| base[&(who, name, route)].clone();
    assert_eq!(verdict(Who::A, "john", "mtls"), (200, String::new(), a.org.id.clone(), format!("auth:account:user:{}", a.user.id)));
    assert_eq!(verdict(Who::B, "jane", "mtls"), (200, String::new(), b.org.id.clone(), format!("auth:account:user:{}", b.user.id)));
    assert_eq!(verdict(Who::A, "stray", "mtls"), (200, String::new(), a.org.id.clone(), format!("auth:account:org:{}:upn:1234567890@mil", a.org.id)));
    assert_eq!(verdict(Who::B, "service", "mtls"), (200, String::new(), b.org.id.clone(), format!("auth:account:org:{}:api", b.org.id)));
    assert_eq!(verdict(Who::Nobody, "cac", "mtls").1, "", "an unmapped certificate passes mTLS with its thumbprint ARN");
    assert!(verdict(Who::Nobody, "cac", "mtls").3.starts_with("auth:account:x509:sha256:"));
    // Proof of possession: a token of A's issuer key counts only with A's certificates.
    assert_eq!(verdict(Who::A, "john", "token").0, 200);
    assert_eq!(verdict(Who::B, "jane", "token").1, "invalid_token");

    // The matrix: each org makes each kind of rule against the other org's certificate.
    let mut checked = 0;
    for (by, other, target, own_target) in [(Who::B, Who::A, JOHN, JANE), (Who::A, Who::B, JANE, JOHN)] {
        let token = m.token(by).to_owned();
        for rule in rules_against(target) {
            // A second registration of one issuer by one owner is a conflict: B's is replaced.
            if rule.kind == RuleKind::Issuer && by == Who::B {
                m.app.delete(&format!("/api/v1/admin/issuers/{}", b_issuer["id"].as_str().unwrap()), &token).await;
            }
            let r = m.app.post(rule.path, &token, &rule.body).await;
            if rule.kind == RuleKind::SanRule {
                // It names the other org's card, bound by PEM: the control plane refuses the
                // capture before the filter would have to refuse the card holder.
                assert_eq!(r.status.as_u16(), 409, "{by:?} {:?}: {}", rule.kind, r.text());
            }
            if rule.kind.claims() || r.status != 201 {
                // A claim another owner holds is refused (409); one nobody holds is granted.
                assert!(matches!(r.status.as_u16(), 201 | 409), "{by:?} {:?}: {}", rule.kind, r.text());
            }
            let made = (r.status == 201).then(|| r.json());
            let now_outcomes = m.outcomes().await;
            let target_name = if target == JOHN { "john" } else { "jane" };
            for ((who, name, route), verdict) in &now_outcomes {
                if *who == other {
                    // A SAN rule that names the other org's bound card claims it too: a card
                    // two orgs claim is refused, never moved into the acting org.
                    let claimed = rule.kind == RuleKind::SanRule && made.is_some() && *name == target_name;
                    let expected =
                        if claimed { (403, "certificate_not_allowed".to_owned(), String::new(), String::new()) } else { base[&(*who, *name, *route)].clone() };
                    assert_eq!(verdict, &expected, "{by:?}'s {:?} changed {name} ({who:?}) on {route}", rule.kind);
                    checked += 1;
                }
            }
            // The same kind of rule aimed at the acting org's own certificates does take effect.
            let own_effect = match rule.kind {
                RuleKind::Block | RuleKind::Revoke | RuleKind::RequiredPolicy | RuleKind::AllowedIssuer => {
                    let own = rules_against(own_target).into_iter().find(|r| r.kind == rule.kind).unwrap();
                    let mine = if matches!(rule.kind, RuleKind::Block | RuleKind::Revoke) {
                        Some(created(m.app.post(own.path, &token, &own.body).await, "own rule"))
                    } else {
                        None
                    };
                    let after = m.outcomes().await;
                    let own_name = if by == Who::A { "john" } else { "jane" };
                    let expected = rule.kind.refusal().map(|r| r.as_str()).unwrap_or_default();
                    assert_eq!(after[&(by, own_name, "mtls")].1, expected, "{by:?}'s {:?} on its own card", rule.kind);
                    if let Some(mine) = mine {
                        undo(&m, &own, &mine, &token).await;
                    }
                    true
                }
                _ => false,
            };
            let _ = own_effect;
            if let Some(made) = made {
                undo(&m, &rule, &made, &token).await;
            }
            if rule.kind == RuleKind::Issuer && by == Who::B {
                let again = m.app.post("/api/v1/admin/issuers", &token, &json!({ "issuer": ISSUER, "jwks": jwks_with("p384-key") })).await;
                assert_eq!(again.status, 201, "{}", again.text());
            }
        }
    }
    assert!(checked >= 2 * 8 * 4, "only {checked} verdicts compared");

    // The platform's rules apply to every org: a platform block of Jane's card refuses it.
    let jane_fp = facts(JANE).fingerprint.to_hex();
    created(app.post("/api/v1/admin/blocklist", &a.token, &json!({ "fingerprint": jane_fp, "scope": "platform" })).await, "platform block");
    let after = m.outcomes().await;
    assert_eq!(after[&(Who::B, "jane", "mtls")].1, "certificate_blocklisted");
    assert_eq!(after[&(Who::A, "john", "mtls")], base[&(Who::A, "john", "mtls")]);
    drop(m);
    Arc::into_inner(app).expect("no request in flight").finish().await;
}

/// The outcomes a control plane started afresh on the same database decides with: its first
/// snapshot is a full build, which must agree with the changes the running one applied.
async fn rebuilt_outcomes(m: &Matrix) -> BTreeMap<(Who, &'static str, &'static str), Verdict> {
    let signer = common::signer(0x3c);
    let service = StoreService::start(m.app.db.clone(), signer, StoreSettings::default()).await.unwrap();
    let fresh = Matrix { app: m.app.clone(), service, verifier: m.verifier.clone() };
    fresh.outcomes().await
}

async fn disabling_an_org_refuses_its_certificates_and_no_others(store: Store, test: &str) {
    let (m, base, _) = two_orgs(store, test).await;
    let app = m.app.clone();
    let (a, b) = (&app.a, &app.b);
    let refused = (403, "certificate_not_allowed".to_owned(), String::new(), String::new());
    // Every verdict of `base`, with `who`'s certificates refused.
    let with_refused = |who: Who| -> BTreeMap<_, _> {
        base.iter().map(|(k, v)| (*k, if k.0 == who { refused.clone() } else { v.clone() })).collect()
    };

    // Org B disabled (by A's super-admin): Jane (bound) and the service certificate (mapped by
    // thumbprint) are refused on both routes; A's certificates and the unclaimed one decide as
    // before — and so does a snapshot built afresh from the database.
    let org_b = format!("/api/v1/admin/orgs/{}", b.org.id);
    let r = app.patch(&org_b, &a.token, &json!({ "enabled": false })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["enabled"], false);
    assert_eq!(m.outcomes().await, with_refused(Who::B));
    assert_eq!(rebuilt_outcomes(&m).await, with_refused(Who::B));
    // Its constraints are held, not lost: one made before comes back with it.
    assert_eq!(app.patch(&org_b, &a.token, &json!({ "enabled": true })).await.status, 200);
    assert_eq!(m.outcomes().await, base);
    // The PIV authentication policy: Jane's card has it, the service certificate has none.
    let constraint = json!({ "kind": "required_policy_oid", "value": "2.16.840.1.101.3.2.1.3.13" });
    created(app.post("/api/v1/admin/constraints", &b.token, &constraint).await, "B's constraint");
    let constrained = m.outcomes().await;
    assert_eq!(constrained[&(Who::B, "jane", "mtls")], base[&(Who::B, "jane", "mtls")]);
    assert_eq!(constrained[&(Who::B, "service", "mtls")], refused, "B's constraint applies to its own certificates");
    assert_eq!(app.patch(&org_b, &a.token, &json!({ "enabled": false })).await.status, 200);
    assert_eq!(m.outcomes().await, with_refused(Who::B));
    assert_eq!(app.patch(&org_b, &a.token, &json!({ "enabled": true })).await.status, 200);
    assert_eq!(m.outcomes().await, constrained);
    assert_eq!(rebuilt_outcomes(&m).await, constrained);

    // Org A disabled (by a super-admin of B): John (bound) and the stray card (named by A's SAN
    // rule) are refused; B's outcomes stay those it had.
    let (_, b_super) = certbind_control_plane::db::tokens::create(
        &app.db,
        &certbind_control_plane::db::Actor::cli(b.org.id.clone()),
        &b.org.id,
        true,
        None,
    )
    .await
    .unwrap();
    let org_a = format!("/api/v1/admin/orgs/{}", a.org.id);
    app.delete(&org_a, &b_super).await.problem(409);
    assert_eq!(app.patch(&org_a, &b_super, &json!({ "enabled": false })).await.status, 200);
    let a_refused: BTreeMap<_, _> =
        constrained.iter().map(|(k, v)| (*k, if k.0 == Who::A { refused.clone() } else { v.clone() })).collect();
    assert_eq!(m.outcomes().await, a_refused);
    assert_eq!(rebuilt_outcomes(&m).await, a_refused);

    // Deleted: A's rows go, its audit log stays, and its cards are certificates no org claims
    // (accepted on the mTLS route under their thumbprint ARN); B's outcomes do not move.
    let r = app.delete(&org_a, &b_super).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = m.outcomes().await;
    for name in ["john", "stray"] {
        let (status, reason, org, principal) = &after[&(Who::A, name, "mtls")];
        assert_eq!((*status, reason.as_str(), org.as_str()), (200, "", ""), "{name}");
        assert!(principal.starts_with("auth:account:x509:sha256:"), "{name}: {principal}");
    }
    for (key, verdict) in &after {
        if key.0 != Who::A {
            assert_eq!(verdict, &constrained[key], "{key:?}");
        }
    }
    assert_eq!(rebuilt_outcomes(&m).await, after);
    for table in ["users", "smart_card_links", "admin_tokens", "mapping_rules", "token_issuers", "org_domains"] {
        let row = sqlx::query(&format!("SELECT COUNT(*) FROM {table} WHERE org_id = $1")).bind(&a.org.id).fetch_one(app.db.reader()).await.unwrap();
        assert_eq!(sqlx::Row::get::<i64, _>(&row, 0), 0, "{table}");
    }
    let row = sqlx::query("SELECT COUNT(*) FROM audit_log WHERE org_id = $1 AND action IN ('org.create', 'smartcard.bind', 'org.delete')")
        .bind(&a.org.id)
        .fetch_one(app.db.reader())
        .await
        .unwrap();
    assert!(sqlx::Row::get::<i64, _>(&row, 0) >= 2, "the deleted org's audit log is gone");
    drop(m);
    Arc::into_inner(app).expect("no request in flight").finish().await;
}

/// Org B's claims on the stray card, which org A's SAN rule answers, made by what an org can
/// know of another org's card holder without the card: its fingerprint (a mapping) or its
/// fields (a binding, here naming another issuer DN so no check on the issuer can catch it).
fn stated_claims(b_user: &str) -> Vec<(&'static str, &'static str, Value)> {
    let stray = facts(STRAY);
    let fingerprint = stray.fingerprint.to_hex();
    vec![
        ("/api/v1/admin/thumbprint-mappings", "mapping by fingerprint", json!({ "fingerprint": fingerprint, "principal": "stray" })),
        (
            "/api/v1/admin/smartcards",
            "binding by fields",
            json!({
                "user_id": b_user, "fingerprint": fingerprint, "subject_dn": stray.subject_dn,
                "issuer_dn": "CN=Somewhere Else,O=Elsewhere,C=US", "serial": stray.serial_hex,
                "not_before": "2025-01-01T00:00:00Z", "not_after": "2040-01-01T00:00:00Z",
            }),
        ),
    ]
}

async fn stated_claims_never_lock_out_another_orgs_card_holder(store: Store, test: &str) {
    let (m, base, _) = two_orgs(store, test).await;
    let app = m.app.clone();
    let (a, b) = (&app.a, &app.b);
    let stray = facts(STRAY);
    let fingerprint = stray.fingerprint.to_hex();
    let a_rule = json!({ "san": "upn", "domain": "mil", "issuer_dn": stray.issuer_dn });
    let a_rule_id = || async {
        let rules = app.get("/api/v1/admin/mapping-rules", &a.token).await.json();
        let items = rules["items"].as_array().unwrap().clone();
        let found = items.iter().find(|r| r["issuer_dn"] == json!(stray.issuer_dn) && r["org_id"] == json!(a.org.id));
        found.map(|r| r["id"].as_str().unwrap().to_owned())
    };
    // What B's scope could do to the card once claimed: block it, revoke it by serial.
    let scoped = [
        ("/api/v1/admin/blocklist", json!({ "fingerprint": fingerprint })),
        ("/api/v1/admin/blocklist", json!({ "issuer_dn": stray.issuer_dn, "serial": stray.serial_hex })),
    ];
    let mut checked = 0;
    for (path, what, body) in stated_claims(&b.user.id) {
        for rule_first in [true, false] {
            let order = if rule_first { "after A's SAN rule" } else { "before A's SAN rule" };
            if !rule_first {
                let id = a_rule_id().await.expect("A's SAN rule");
                assert_eq!(app.delete(&format!("/api/v1/admin/mapping-rules/{id}"), &a.token).await.status, 200);
            }
            // Accepted (a client binding by fields keeps working), and marked unverified.
            let claim = created(app.post(path, &b.token, &body).await, what);
            assert_eq!(claim["verified"], false, "{what} {order}: {claim}");
            if !rule_first {
                // A's rule may still be made: B's claim rests on B's word alone.
                created(app.post("/api/v1/admin/mapping-rules", &a.token, &a_rule).await, "A's SAN rule again");
            }
            assert_eq!(m.outcomes().await, base, "B's {what} {order} moved a verdict");
            // Nothing of B's scope reaches A's card holder through the claim.
            for (scoped_path, scoped_body) in &scoped {
                let made = created(app.post(scoped_path, &b.token, scoped_body).await, "B's scoped rule");
                assert_eq!(m.outcomes().await, base, "B's {what} {order} and {scoped_body}");
                let id = made["id"].as_str().unwrap();
                assert_eq!(app.delete(&format!("{scoped_path}/{id}"), &b.token).await.status, 200);
                checked += 1;
            }
            if path.ends_with("smartcards") {
                let disabled = app.patch(&format!("{path}/{fingerprint}"), &b.token, &json!({ "enabled": false })).await;
                assert_eq!(disabled.status, 200, "{}", disabled.text());
                assert_eq!(m.outcomes().await, base, "B's disabled {what} {order}");
            }
            // A snapshot built afresh from the tables (the `verified` column) agrees.
            assert_eq!(rebuilt_outcomes(&m).await, base, "rebuilt, B's {what} {order}");
            assert_eq!(app.delete(&format!("{path}/{fingerprint}"), &b.token).await.status, 200);
        }
    }
    assert_eq!(checked, 2 * 2 * 2);

    // The same claims from the certificate itself are checked against A's rule and refused,
    // and a claim B makes from the certificate first holds A's rule back (a super-admin
    // resolves that): verified facts are what claims a card.
    let by_pem = json!({ "user_id": b.user.id, "certificate_pem": STRAY });
    app.post("/api/v1/admin/smartcards", &b.token, &by_pem).await.problem(409);
    let mapped_whole = json!({ "certificate_pem": STRAY, "principal": "stray" });
    app.post("/api/v1/admin/thumbprint-mappings", &b.token, &mapped_whole).await.problem(409);
    let id = a_rule_id().await.expect("A's SAN rule");
    assert_eq!(app.delete(&format!("/api/v1/admin/mapping-rules/{id}"), &a.token).await.status, 200);
    let claim = created(app.post("/api/v1/admin/thumbprint-mappings", &b.token, &mapped_whole).await, "B's mapping by PEM");
    assert_eq!(claim["verified"], true);
    app.post("/api/v1/admin/mapping-rules", &a.token, &a_rule).await.problem(409);
    drop(m);
    Arc::into_inner(app).expect("no request in flight").finish().await;
}
