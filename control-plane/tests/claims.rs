//! One org per certificate, at the control plane: a binding or thumbprint mapping of a
//! certificate another org's SAN rule claims is refused, and so is a SAN rule that would
//! claim a certificate bound or mapped in another org — all in the same words, which say
//! nothing about where the certificate is held. The filter refuses a certificate two orgs
//! claim (`certificate_not_allowed`); these refusals keep an org from causing that to
//! another org's card holders. And an org admin's SAN rules name only domains a super-admin
//! assigned to the org, so no org claims another's addresses first. On SQLite and PostgreSQL.

mod common;

use certbind_shared::decision::testing::ClaimStep;
use common::{Store, Tenant, TestApp, Transport};
use serde_json::{json, Value};

on_every_store!(
    a_claim_at_any_step_refuses_another_orgs_claim_at_any_other,
    a_binding_another_orgs_san_rule_claims_is_refused,
    a_mapping_another_orgs_san_rule_claims_is_refused,
    a_san_rule_claiming_another_orgs_certificates_is_refused,
    platform_names_stay_out_of_org_namespaces,
    san_rules_need_a_domain_a_super_admin_assigned,
    claims_say_whether_the_certificate_was_seen,
);

/// UPN `1234567890@mil`, email `jane.doe@example.mil`.
const JANE: &str = include_str!("../../tests/pki/piv-auth.pem");
/// UPN `9876543210@mil`, email `john.roe@example.mil`.
const JOHN: &str = include_str!("../../tests/pki/piv-auth-2.pem");
/// No email or UPN SAN.
const SERVICE: &str = include_str!("../../tests/pki/service.pem");
const PIV_CA: &str = "CN=certbind Test PIV Issuing CA,OU=Test PKI,O=certbind,C=US";
const CARDS: &str = "/api/v1/admin/smartcards";
const RULES: &str = "/api/v1/admin/mapping-rules";
const MAPS: &str = "/api/v1/admin/thumbprint-mappings";

fn fingerprint_of(pem: &str) -> String {
    certbind_shared::certificate::CertificateFacts::from_pem(pem.as_bytes()).unwrap().fingerprint.to_hex()
}

fn by_pem(user_id: &str, pem: &str) -> Value {
    json!({ "user_id": user_id, "certificate_pem": pem })
}

/// A binding of `pem`'s certificate given by fields (its SANs unknown to the control plane).
fn by_fields(user_id: &str, pem: &str) -> Value {
    let facts = certbind_shared::certificate::CertificateFacts::from_pem(pem.as_bytes()).unwrap();
    json!({
        "user_id": user_id,
        "fingerprint": facts.fingerprint.to_hex(),
        "subject_dn": facts.subject_dn,
        "issuer_dn": facts.issuer_dn,
        "serial": facts.serial_hex,
        "not_before": "2025-01-01T00:00:00Z",
        "not_after": "2030-01-01T00:00:00Z",
    })
}

fn rule(san: &str, domain: &str) -> Value {
    json!({ "san": san, "domain": domain, "issuer_dn": PIV_CA })
}

/// Both orgs may map addresses in `mil` (and its subdomains): a super-admin assigned it to both.
async fn start(store: Store, test: &str) -> TestApp {
    let app = TestApp::start(store, Transport::Oneshot, test).await.expect("test app");
    for org in [&app.a.org.id, &app.b.org.id] {
        app.assign_domain(org, "mil").await;
    }
    app
}

/// `who`'s claim on Jane's certificate at `step`, through the API; the path that withdraws it.
async fn claim(app: &TestApp, who: &Tenant, step: ClaimStep) -> Result<String, Value> {
    let (path, body) = match step {
        ClaimStep::Binding => (CARDS, by_pem(&who.user.id, JANE)),
        ClaimStep::Mapping => (MAPS, json!({ "certificate_pem": JANE, "principal": "svc" })),
        ClaimStep::SanRule => (RULES, rule("upn", "mil")),
    };
    let answer = app.post(path, &who.token, &body).await;
    if answer.status != 201 {
        return Err(answer.problem(409));
    }
    Ok(match step {
        ClaimStep::Binding | ClaimStep::Mapping => format!("{path}/{}", fingerprint_of(JANE)),
        ClaimStep::SanRule => format!("{RULES}/{}", answer.json()["id"].as_str().unwrap()),
    })
}

/// The conflict matrix of the filter, kept from arising: whichever step one org claims a
/// certificate at (binding, thumbprint mapping, SAN rule), the other org's claim of it at any
/// other step is refused and stores nothing — in both directions — and is accepted once the
/// first claim is withdrawn.
async fn a_claim_at_any_step_refuses_another_orgs_claim_at_any_other(store: Store, test: &str) {
    let app = start(store, test).await;
    let mut checked = 0;
    for (holder, other) in [(&app.a, &app.b), (&app.b, &app.a)] {
        for (first, second) in ClaimStep::pairs() {
            let what = format!("{}'s {first:?}, then {}'s {second:?}", holder.org.id, other.org.id);
            let held = claim(&app, holder, first).await.unwrap_or_else(|e| panic!("{what}: the first claim: {e}"));
            let before = app.dump().await;
            let refused = claim(&app, other, second).await.expect_err(&what);
            assert!(!refused.to_string().contains(&holder.org.id), "{what}: {refused}");
            assert_eq!(app.dump().await, before, "{what}: a refused claim stored something");

            assert_eq!(app.delete(&held, &holder.token).await.status, 200, "{what}");
            let taken = claim(&app, other, second).await.unwrap_or_else(|e| panic!("{what}: once withdrawn: {e}"));
            assert_eq!(app.delete(&taken, &other.token).await.status, 200, "{what}");
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * 3 * 2);
    app.finish().await;
}

async fn a_binding_another_orgs_san_rule_claims_is_refused(store: Store, test: &str) {
    let app = start(store, test).await;
    let (a, b) = (&app.a, &app.b);
    assert_eq!(app.post(RULES, &b.token, &rule("upn", "mil")).await.status, 201);
    let before = app.dump().await;

    // Org A's binding would move org B's card holder into org A: refused, by PEM and by fields.
    let by_pem_answer = app.post(CARDS, &a.token, &by_pem(&a.user.id, JANE)).await.problem(409);
    assert!(by_pem_answer["detail"].as_str().unwrap().starts_with("the certificate cannot be bound"), "{by_pem_answer}");
    assert!(!by_pem_answer.to_string().contains(&b.org.id));
    let by_fields_answer = app.post(CARDS, &a.token, &by_fields(&a.user.id, JANE)).await.problem(409);
    assert_eq!(by_fields_answer, by_pem_answer);
    assert_eq!(app.dump().await, before, "a refused bind stored something");

    // A certificate of that CA the rule does not name binds; org B binds its own.
    assert_eq!(app.post(CARDS, &a.token, &by_pem(&a.user.id, SERVICE)).await.status, 201);
    assert_eq!(app.post(CARDS, &b.token, &by_pem(&b.user.id, JANE)).await.status, 201);
    // Bound there, the answer to org A is the same as before: nothing tells the cases apart.
    assert_eq!(app.post(CARDS, &a.token, &by_pem(&a.user.id, JANE)).await.problem(409), by_pem_answer);
    // And org B's own second binding of it reads the same too.
    assert_eq!(app.post(CARDS, &b.token, &by_pem(&b.user.id, JANE)).await.problem(409), by_pem_answer);
    app.finish().await;
}

async fn a_mapping_another_orgs_san_rule_claims_is_refused(store: Store, test: &str) {
    let app = start(store, test).await;
    let (a, b) = (&app.a, &app.b);
    // Org B binds John's card (so the control plane has seen it whole), then lets it go.
    assert_eq!(app.post(CARDS, &b.token, &by_pem(&b.user.id, JOHN)).await.status, 201);
    assert_eq!(app.delete(&format!("{CARDS}/{}", fingerprint_of(JOHN)), &b.token).await.status, 200);
    assert_eq!(app.post(RULES, &b.token, &rule("email", "example.mil")).await.status, 201);
    let before = app.dump().await;

    // Org A maps Jane's certificate, given whole: refused.
    let given = json!({ "certificate_pem": JANE, "principal": "svc" });
    let refused = app.post(MAPS, &a.token, &given).await.problem(409);
    assert!(refused["detail"].as_str().unwrap().starts_with("the certificate cannot be bound or mapped"), "{refused}");
    // John's by fingerprint alone: the control plane remembers his SANs from the binding.
    let known = json!({ "fingerprint": fingerprint_of(JOHN), "principal": "svc" });
    assert_eq!(app.post(MAPS, &a.token, &known).await.problem(409), refused);
    assert_eq!(app.dump().await, before, "a refused mapping stored something");

    // The fingerprint, when given with the certificate, must be the certificate's.
    let mismatch = json!({ "certificate_pem": SERVICE, "fingerprint": fingerprint_of(JANE), "principal": "svc" });
    assert_eq!(app.post(MAPS, &a.token, &mismatch).await.problem(422)["field"], "fingerprint");
    // A certificate no other org's rule claims maps; org B maps its own.
    assert_eq!(app.post(MAPS, &a.token, &json!({ "certificate_pem": SERVICE, "principal": "api" })).await.status, 201);
    assert_eq!(app.post(MAPS, &b.token, &given).await.status, 201);
    app.finish().await;
}

async fn a_san_rule_claiming_another_orgs_certificates_is_refused(store: Store, test: &str) {
    let app = start(store, test).await;
    let (a, b) = (&app.a, &app.b);
    // Org A maps John's certificate (given whole) and binds Jane's.
    assert_eq!(app.post(MAPS, &a.token, &json!({ "certificate_pem": JOHN, "principal": "svc" })).await.status, 201);
    assert_eq!(app.post(CARDS, &a.token, &by_pem(&a.user.id, JANE)).await.status, 201);
    let before = app.dump().await;

    // Org B's rules that would claim either are refused, in one set of words.
    let upn = app.post(RULES, &b.token, &rule("upn", "mil")).await.problem(409);
    assert!(upn["detail"].as_str().unwrap().contains("cannot be created here"), "{upn}");
    assert!(!upn.to_string().contains(&a.org.id));
    assert_eq!(app.post(RULES, &b.token, &rule("email", "example.mil")).await.problem(409), upn);
    assert_eq!(app.dump().await, before, "a refused rule stored something");
    // The same domain from another issuer names none of them.
    let other_issuer = json!({ "san": "upn", "domain": "mil", "issuer_dn": "CN=Other CA,O=Elsewhere" });
    assert_eq!(app.post(RULES, &b.token, &other_issuer).await.status, 201);
    // Org A's own rule over its own certificates is fine.
    assert_eq!(app.post(RULES, &a.token, &json!({ "san": "upn", "domain": "mil", "issuer_dn": PIV_CA, "scope": "org" })).await.status, 201);

    // Once org A lets them go, org B's rule is possible.
    assert_eq!(app.delete(&format!("{MAPS}/{}", fingerprint_of(JOHN)), &a.token).await.status, 200);
    assert_eq!(app.delete(&format!("{CARDS}/{}", fingerprint_of(JANE)), &a.token).await.status, 200);
    assert_eq!(app.post(RULES, &b.token, &rule("email", "example.mil")).await.status, 201);
    app.finish().await;
}

async fn platform_names_stay_out_of_org_namespaces(store: Store, test: &str) {
    let app = start(store, test).await;
    let sa = &app.a.token;
    // The filter forwards an org registration's token issuer as `org:{org_id}:{iss}`.
    let jwks: Value = serde_json::from_str(include_str!("../../shared/tests/vectors/jwt/issuer-jwks.json")).unwrap();
    let issuer = json!({ "issuer": format!("org:{}:https://idp.example", app.b.org.id), "jwks": jwks, "scope": "platform" });
    assert_eq!(app.post("/api/v1/admin/issuers", sa, &issuer).await.problem(422)["field"], "issuer");
    // An org may register such an `iss`: the filter prefixes it with the org's own id.
    let own = json!({ "issuer": "org:x:https://idp.example", "jwks": jwks });
    assert_eq!(app.post("/api/v1/admin/issuers", &app.b.token, &own).await.status, 201);
    let mapping = json!({ "fingerprint": fingerprint_of(SERVICE), "principal": format!("org:{}:svc", app.b.org.id), "scope": "platform" });
    assert_eq!(app.post(MAPS, sa, &mapping).await.problem(422)["field"], "principal");
    app.finish().await;
}

async fn san_rules_need_a_domain_a_super_admin_assigned(store: Store, test: &str) {
    let app = TestApp::start(store, Transport::Oneshot, test).await.expect("test app");
    let (sa, b) = (&app.a.token, &app.b);
    let domains = format!("/api/v1/admin/orgs/{}/domains", b.org.id);
    let other_ca = |domain: &str| json!({ "san": "upn", "domain": domain, "issuer_dn": "CN=Other CA,O=Elsewhere" });

    // Nothing assigned: an org admin's rule is refused, whatever the domain.
    let refused = app.post(RULES, &b.token, &rule("upn", "example.mil")).await.problem(403);
    assert!(refused["detail"].as_str().unwrap().contains("not one of this org's domains"), "{refused}");
    let before = app.dump().await;

    // Only a super-admin assigns (the org's own admin may not), and lists.
    app.post(&domains, &b.token, &json!({ "domain": "example.mil" })).await.problem(403);
    assert_eq!(app.dump().await, before);
    let assigned = app.post(&domains, sa, &json!({ "domain": "Example.MIL" })).await;
    assert_eq!(assigned.status, 201, "{}", assigned.text());
    assert_eq!(assigned.json()["domain"], "example.mil");
    app.post(&domains, sa, &json!({ "domain": "example.mil" })).await.problem(409);
    app.post(&domains, sa, &json!({ "domain": "not a domain" })).await.problem(422);
    app.post("/api/v1/admin/orgs/01HZZZZZZZZZZZZZZZZZZZZZZZ/domains", sa, &json!({ "domain": "x.mil" })).await.problem(404);
    let listed = app.get(&domains, sa).await.json();
    assert_eq!(listed["items"].as_array().unwrap().iter().map(|d| d["domain"].clone()).collect::<Vec<_>>(), vec![json!("example.mil")]);

    // The domain and its subdomains, nothing else.
    assert_eq!(app.post(RULES, &b.token, &rule("upn", "example.mil")).await.status, 201);
    assert_eq!(app.post(RULES, &b.token, &other_ca("hq.example.mil")).await.status, 201);
    for outside in ["mil", "badexample.mil", "example.mil.evil"] {
        app.post(RULES, &b.token, &other_ca(outside)).await.problem(403);
    }
    // A super-admin's own rules need no assignment.
    assert_eq!(app.post(RULES, sa, &other_ca("mil")).await.status, 201);
    assert_eq!(app.post(RULES, sa, &json!({ "san": "email", "domain": "mil", "issuer_dn": PIV_CA, "scope": "platform" })).await.status, 201);

    // Taken back: no new rules there; those made stay.
    assert_eq!(app.delete(&format!("{domains}/example.mil"), sa).await.status, 200);
    app.delete(&format!("{domains}/example.mil"), sa).await.problem(404);
    app.post(RULES, &b.token, &rule("email", "example.mil")).await.problem(403);
    let rules = app.get(RULES, &b.token).await.json();
    assert_eq!(rules["items"].as_array().unwrap().len(), 2);
    app.finish().await;
}

async fn claims_say_whether_the_certificate_was_seen(store: Store, test: &str) {
    let app = start(store, test).await;
    let (a, b) = (&app.a, &app.b);
    // By PEM: verified. By fields: the org's word, accepted where nothing conflicts.
    let whole = app.post(CARDS, &b.token, &by_pem(&b.user.id, JANE)).await;
    assert_eq!((whole.status.as_u16(), whole.json()["verified"].clone()), (201, json!(true)), "{}", whole.text());
    let fields = app.post(CARDS, &a.token, &by_fields(&a.user.id, JOHN)).await;
    assert_eq!((fields.status.as_u16(), fields.json()["verified"].clone()), (201, json!(false)), "{}", fields.text());
    let listed = app.get(CARDS, &a.token).await.json();
    assert_eq!(listed["items"][0]["verified"], false, "{listed}");
    // The audit log says what each binding rests on.
    let audit = app.get("/api/v1/admin/audit?action=smartcard.bind", &a.token).await.json();
    assert_eq!(audit["items"][0]["detail"]["verified"], false, "{audit}");
    let audit = app.get("/api/v1/admin/audit?action=smartcard.bind", &b.token).await.json();
    assert_eq!(audit["items"][0]["detail"]["verified"], true, "{audit}");
    // Disabling keeps what the binding rests on.
    let disabled = app.patch(&format!("{CARDS}/{}", fingerprint_of(JOHN)), &a.token, &json!({ "enabled": false })).await;
    assert_eq!(disabled.json()["verified"], false);

    // A mapping by fingerprint of a certificate never seen whole: unverified; of one seen
    // whole before (Jane's, bound by PEM, then let go): verified.
    let never_seen = json!({ "fingerprint": fingerprint_of(SERVICE), "principal": "svc" });
    let mapped = app.post(MAPS, &a.token, &never_seen).await;
    assert_eq!((mapped.status.as_u16(), mapped.json()["verified"].clone()), (201, json!(false)), "{}", mapped.text());
    assert_eq!(app.delete(&format!("{CARDS}/{}", fingerprint_of(JANE)), &b.token).await.status, 200);
    let seen = app.post(MAPS, &b.token, &json!({ "fingerprint": fingerprint_of(JANE), "principal": "svc" })).await;
    assert_eq!((seen.status.as_u16(), seen.json()["verified"].clone()), (201, json!(true)), "{}", seen.text());
    // The platform's mappings claim nothing: always verified.
    let platform = json!({ "fingerprint": "ab".repeat(32), "principal": "svc:platform", "scope": "platform" });
    let by_platform = app.post(MAPS, &a.token, &platform).await;
    assert_eq!((by_platform.status.as_u16(), by_platform.json()["verified"].clone()), (201, json!(true)), "{}", by_platform.text());
    app.finish().await;
}
