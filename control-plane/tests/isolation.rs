//! Org isolation: every route of the router, called with another org's token against this
//! org's resources → nothing of this org is read, nothing of it changes. The table must name
//! every route (the test fails when a route is added without an entry).

mod common;

use certbind_control_plane::app::{route_docs, Access};
use common::{bind_body, fingerprint, Store, TestApp, Transport};
use serde_json::{json, Value};
use std::collections::BTreeSet;

on_every_store!(another_orgs_token_reads_and_changes_nothing);

/// Org A's resources, created through the API.
struct Victim {
    fingerprint: String,
    spare_user: String,
    token_id: String,
    blocklist_id: String,
    issuer_id: String,
    issuer: String,
    rule_id: String,
    mapping_fingerprint: String,
    principal: String,
    constraint_id: String,
}

fn id_of(response: &common::Resp) -> String {
    assert!(response.status.is_success(), "{}", response.text());
    response.json()["id"].as_str().expect("id").to_string()
}

async fn seed_victim(app: &TestApp) -> Victim {
    let t = &app.a.token;
    let fp = fingerprint(1);
    assert_eq!(app.post("/api/v1/admin/smartcards", t, &bind_body(&app.a.user.id, &fp)).await.status, 201);
    let spare_user = id_of(&app.post("/api/v1/admin/users", t, &json!({ "name": "spare", "email": "spare@acme.example" })).await);
    let token_id = id_of(&app.post("/api/v1/admin/tokens", t, &json!({ "label": "second" })).await);
    let blocklist_id = id_of(&app.post("/api/v1/admin/blocklist", t, &json!({ "fingerprint": fingerprint(2), "reason": "acme-lost" })).await);
    // An issuer URL is public and may be trusted by several orgs (B registers it too below).
    let issuer = "https://login.shared-idp.example".to_string();
    let jwks = json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "acme-k1", "alg": "ES256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
    }]});
    let issuer_id = id_of(&app.post("/api/v1/admin/issuers", t, &json!({ "issuer": issuer, "jwks": jwks })).await);
    let rule = json!({ "san": "upn", "domain": "acme.example", "issuer_dn": "CN=ACME CA" });
    let rule_id = id_of(&app.post("/api/v1/admin/mapping-rules", t, &rule).await);
    let mapping_fingerprint = fingerprint(3);
    let principal = "svc:acme-billing".to_string();
    let mapped = app
        .post("/api/v1/admin/thumbprint-mappings", t, &json!({ "fingerprint": mapping_fingerprint, "principal": principal }))
        .await;
    assert_eq!(mapped.status, 201);
    let constraint_id =
        id_of(&app.post("/api/v1/admin/constraints", t, &json!({ "kind": "allowed_issuer_dn", "value": "CN=ACME CA" })).await);
    Victim { fingerprint: fp, spare_user, token_id, blocklist_id, issuer_id, issuer, rule_id, mapping_fingerprint, principal, constraint_id }
}

/// Identifiers and values of org A that org B must never see.
fn secrets(app: &TestApp, v: &Victim) -> Vec<String> {
    vec![
        app.a.org.id.clone(),
        app.a.org.name.clone(),
        app.a.user.id.clone(),
        app.a.user.name.clone(),
        v.fingerprint.clone(),
        v.spare_user.clone(),
        "spare@acme.example".into(),
        v.token_id.clone(),
        v.blocklist_id.clone(),
        fingerprint(2),
        "acme-lost".into(),
        v.issuer_id.clone(),
        "acme-k1".into(),
        v.rule_id.clone(),
        "acme.example".into(),
        v.mapping_fingerprint.clone(),
        v.principal.clone(),
        v.constraint_id.clone(),
        "CN=ACME CA".into(),
    ]
}

/// How org B attacks each route: the path (with A's ids), the body, and the statuses that
/// count as refusing (an empty list: the route may succeed, on B's own data).
fn attack(method: &str, path: &str, app: &TestApp, v: &Victim) -> Option<(String, Option<Value>, &'static [u16])> {
    const NOT_FOUND: &[u16] = &[404];
    const FORBIDDEN: &[u16] = &[403];
    const OWN_DATA: &[u16] = &[];
    let (a, b) = (&app.a, &app.b);
    Some(match (method, path) {
        ("GET", "/api/v1/admin/smartcards") => (path.into(), None, OWN_DATA),
        ("POST", "/api/v1/admin/smartcards") => (path.into(), Some(bind_body(&a.user.id, &fingerprint(10))), &[422]),
        ("GET" | "PATCH" | "DELETE", "/api/v1/admin/smartcards/{fingerprint}") => (
            format!("/api/v1/admin/smartcards/{}", v.fingerprint),
            (method == "PATCH").then(|| json!({ "enabled": false, "label": "pwned" })),
            NOT_FOUND,
        ),
        ("POST", "/api/v1/admin/orgs") => (path.into(), Some(json!({ "name": "hostile" })), FORBIDDEN),
        ("GET", "/api/v1/admin/orgs") => (path.into(), None, FORBIDDEN),
        ("GET", "/api/v1/admin/orgs/{org_id}") => (format!("/api/v1/admin/orgs/{}", a.org.id), None, FORBIDDEN),
        ("PATCH", "/api/v1/admin/orgs/{org_id}") => {
            (format!("/api/v1/admin/orgs/{}", a.org.id), Some(json!({ "enabled": false })), FORBIDDEN)
        }
        ("DELETE", "/api/v1/admin/orgs/{org_id}") => (format!("/api/v1/admin/orgs/{}", a.org.id), None, FORBIDDEN),
        ("GET", "/api/v1/admin/orgs/{org_id}/tokens") => (format!("/api/v1/admin/orgs/{}/tokens", a.org.id), None, FORBIDDEN),
        ("DELETE", "/api/v1/admin/orgs/{org_id}/tokens/{token_id}") => {
            (format!("/api/v1/admin/orgs/{}/tokens/{}", a.org.id, v.token_id), None, FORBIDDEN)
        }
        ("POST", "/api/v1/admin/orgs/{org_id}/domains") => {
            (format!("/api/v1/admin/orgs/{}/domains", b.org.id), Some(json!({ "domain": "a.example" })), FORBIDDEN)
        }
        ("GET", "/api/v1/admin/orgs/{org_id}/domains") => (format!("/api/v1/admin/orgs/{}/domains", a.org.id), None, FORBIDDEN),
        ("DELETE", "/api/v1/admin/orgs/{org_id}/domains/{domain}") => {
            (format!("/api/v1/admin/orgs/{}/domains/b.example", b.org.id), None, FORBIDDEN)
        }
        ("POST", "/api/v1/admin/orgs/{org_id}/tokens") => {
            (format!("/api/v1/admin/orgs/{}/tokens", a.org.id), Some(json!({ "super_admin": true })), FORBIDDEN)
        }
        ("POST", "/api/v1/admin/tokens") => (path.into(), Some(json!({ "label": "b-own" })), OWN_DATA),
        ("GET", "/api/v1/admin/tokens") => (path.into(), None, OWN_DATA),
        ("DELETE", "/api/v1/admin/tokens/{token_id}") => (format!("/api/v1/admin/tokens/{}", v.token_id), None, NOT_FOUND),
        ("POST", "/api/v1/admin/users") => (path.into(), Some(json!({ "name": "b-own" })), OWN_DATA),
        ("GET", "/api/v1/admin/users") => (path.into(), None, OWN_DATA),
        ("GET" | "DELETE", "/api/v1/admin/users/{user_id}") => (format!("/api/v1/admin/users/{}", v.spare_user), None, NOT_FOUND),
        ("POST", "/api/v1/admin/blocklist") => (path.into(), Some(json!({ "fingerprint": fingerprint(11) })), OWN_DATA),
        ("GET", "/api/v1/admin/blocklist") => (path.into(), None, OWN_DATA),
        ("GET" | "DELETE", "/api/v1/admin/blocklist/{entry_id}") => {
            (format!("/api/v1/admin/blocklist/{}", v.blocklist_id), None, NOT_FOUND)
        }
        // Another org may trust the same issuer URL: a registration of its own, with its keys.
        ("POST", "/api/v1/admin/issuers") => (
            path.into(),
            Some(json!({ "issuer": v.issuer, "jwks": { "keys": [{
                "kty": "EC", "crv": "P-256", "kid": "b-k1", "alg": "ES256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
            }] } })),
            OWN_DATA,
        ),
        ("GET", "/api/v1/admin/issuers") => (path.into(), None, OWN_DATA),
        ("GET" | "PATCH" | "DELETE", "/api/v1/admin/issuers/{issuer_id}") => (
            format!("/api/v1/admin/issuers/{}", v.issuer_id),
            (method == "PATCH").then(|| json!({ "audiences": ["hostile"] })),
            NOT_FOUND,
        ),
        ("POST", "/api/v1/admin/mapping-rules") => {
            (path.into(), Some(json!({ "san": "email", "domain": "b.example", "issuer_dn": "CN=B CA" })), OWN_DATA)
        }
        ("POST", "/api/v1/admin/proxy-credentials") => (path.into(), Some(json!({ "label": "hostile" })), FORBIDDEN),
        ("GET", "/api/v1/admin/proxy-credentials") => (path.into(), None, FORBIDDEN),
        ("DELETE", "/api/v1/admin/proxy-credentials/{credential_id}") => {
            (format!("/api/v1/admin/proxy-credentials/{}", v.token_id), None, FORBIDDEN)
        }
        ("GET", "/api/v1/admin/mapping-rules") => (path.into(), None, OWN_DATA),
        ("GET" | "DELETE", "/api/v1/admin/mapping-rules/{rule_id}") => {
            (format!("/api/v1/admin/mapping-rules/{}", v.rule_id), None, NOT_FOUND)
        }
        ("POST", "/api/v1/admin/thumbprint-mappings") => (
            path.into(),
            Some(json!({ "fingerprint": v.mapping_fingerprint, "principal": "svc:hostile" })),
            &[409],
        ),
        ("GET", "/api/v1/admin/thumbprint-mappings") => (path.into(), None, OWN_DATA),
        ("GET" | "DELETE", "/api/v1/admin/thumbprint-mappings/{fingerprint}") => {
            (format!("/api/v1/admin/thumbprint-mappings/{}", v.mapping_fingerprint), None, NOT_FOUND)
        }
        ("POST", "/api/v1/admin/constraints") => {
            (path.into(), Some(json!({ "kind": "san_email_domain", "value": "b.example" })), OWN_DATA)
        }
        ("GET", "/api/v1/admin/constraints") => (path.into(), None, OWN_DATA),
        ("GET" | "DELETE", "/api/v1/admin/constraints/{constraint_id}") => {
            (format!("/api/v1/admin/constraints/{}", v.constraint_id), None, NOT_FOUND)
        }
        ("GET", "/api/v1/admin/audit") => (path.into(), None, OWN_DATA),
        // CAs are the platform's: any admin reads them, only a super-admin changes them.
        ("POST", "/api/v1/admin/cas") => (path.into(), Some(json!({ "certificate_pem": "-----BEGIN CERTIFICATE-----" })), FORBIDDEN),
        ("GET", "/api/v1/admin/cas") => (path.into(), None, OWN_DATA),
        ("GET", "/api/v1/admin/cas/{key_id}") => (format!("/api/v1/admin/cas/{}", "ab".repeat(20)), None, NOT_FOUND),
        ("PATCH" | "DELETE", "/api/v1/admin/cas/{key_id}") => (
            format!("/api/v1/admin/cas/{}", "ab".repeat(20)),
            (method == "PATCH").then(|| json!({ "require_fresh_crl": false })),
            FORBIDDEN,
        ),
        // A CRL is taken only when it verifies with a registered CA's key (tests/revocation.rs);
        // a JSON body is no CRL.
        ("POST", "/api/v1/admin/crls") => (path.into(), Some(json!({ "crl": "x" })), &[415]),
        _ => return None,
    })
}

/// Every row that belongs to org A, as text.
async fn rows_of_org_a(app: &TestApp) -> Vec<String> {
    let org = &app.a.org.id;
    app.dump()
        .await
        .into_iter()
        .filter(|row| row.contains(&format!(" org_id={org}")) || row.starts_with(&format!("orgs: id={org}")))
        .collect()
}

async fn another_orgs_token_reads_and_changes_nothing(store: Store, test: &str) {
    let app = TestApp::start(store, Transport::Oneshot, test).await.expect("test app");
    app.assign_domain(&app.b.org.id, "b.example").await;
    let victim = seed_victim(&app).await;
    let secrets = secrets(&app, &victim);
    let before = rows_of_org_a(&app).await;
    assert!(before.len() >= 12, "fixture too small: {before:#?}");

    let mut covered = BTreeSet::new();
    for route in route_docs() {
        let method = route.method.as_str();
        if matches!(route.access, Access::Public | Access::Proxy) {
            // Public routes hold no org's rows; the snapshot, which every filter needs whole,
            // is served to proxy credentials only (tests/snapshot_routes.rs: an admin token
            // is refused there).
            continue;
        }
        let (path, body, refusals) =
            attack(method, route.path, &app, &victim).unwrap_or_else(|| panic!("no isolation case for {method} {}", route.path));
        covered.insert(format!("{method} {}", route.path));
        let response = match &body {
            Some(body) => app.json_request(method, &path, &app.b.token, body).await,
            None => app.send(method, &path, &[("authorization", &format!("Bearer {}", app.b.token))], Vec::new()).await,
        };
        let sent = body.as_ref().map(Value::to_string).unwrap_or_default() + &path;
        if refusals.is_empty() {
            assert!(response.status.is_success(), "{method} {path}: {} {}", response.status, response.text());
        } else {
            assert!(
                refusals.contains(&response.status.as_u16()),
                "{method} {path}: expected one of {refusals:?}, got {} {}",
                response.status,
                response.text()
            );
        }
        let text = response.text();
        for secret in &secrets {
            if !sent.contains(secret.as_str()) {
                assert!(!text.contains(secret.as_str()), "{method} {path} revealed {secret:?}: {text}");
            }
        }
        assert_eq!(rows_of_org_a(&app).await, before, "{method} {path} changed org A's rows");
    }
    let admin_routes: BTreeSet<String> = route_docs()
        .into_iter()
        .filter(|r| !matches!(r.access, Access::Public | Access::Proxy))
        .map(|r| format!("{} {}", r.method.as_str(), r.path))
        .collect();
    assert_eq!(covered, admin_routes);
    // And org A still sees all of its own data.
    let listed = app.get("/api/v1/admin/smartcards", &app.a.token).await.json();
    assert_eq!(listed["items"][0]["fingerprint"], victim.fingerprint);
    assert_eq!(listed["items"][0]["label"], "Primary CAC");
    app.finish().await;
}
