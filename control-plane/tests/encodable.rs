//! Nothing the API accepts can stop publication: every change is checked against what the
//! snapshot can encode inside its transaction (422, nothing stored), each org's rules are
//! bounded by quotas, and a row that got into the database some other way is quarantined by
//! the full build instead of failing it. On SQLite and PostgreSQL.

mod common;

use certbind_control_plane::state::Limits;
use certbind_control_plane::db::{Db, DbOptions, Quotas};
use certbind_control_plane::snapshot::{NoSnapshots, StoreService, StoreSettings};
use certbind_shared::snapshot::ConstraintKind;
use common::{fingerprint, Store, TestApp, TestDb, Transport};
use serde_json::json;
use std::sync::Arc;

on_every_store!(
    strings_past_the_snapshot_limits_are_refused_before_commit,
    each_org_is_held_to_its_quotas,
    a_stored_row_that_cannot_be_encoded_is_quarantined,
);

use common::{ec_jwks as jwks, DOD_CA as CA};


/// A DN of `len` bytes in canonical form.
fn dn_of(len: usize) -> String {
    format!("CN={}", "a".repeat(len - 3))
}

fn count(r: &common::Resp) -> usize {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"].as_array().unwrap().len()
}

async fn strings_past_the_snapshot_limits_are_refused_before_commit(store: Store, test: &str) {
    let app = TestApp::start(store, Transport::Oneshot, test).await.expect("test app");
    let token = &app.b.token;
    let before = app.db.snapshot_version().await.unwrap();

    // An allowed issuer: 256 bytes is one past the snapshot's string limit, 255 fits.
    let long = app.post("/api/v1/admin/constraints", token, &json!({ "kind": "allowed_issuer_dn", "value": dn_of(256) })).await;
    let problem = long.problem(422);
    assert_eq!(problem["field"], "value");
    assert!(problem["detail"].as_str().unwrap().contains("at most 255 bytes"), "{problem}");
    let fits = app.post("/api/v1/admin/constraints", token, &json!({ "kind": "allowed_issuer_dn", "value": dn_of(255) })).await;
    assert_eq!(fits.status, 201, "{}", fits.text());

    // A SAN rule's issuer.
    let rule = json!({ "san": "upn", "domain": "example.mil", "issuer_dn": dn_of(300) });
    let problem = app.post("/api/v1/admin/mapping-rules", token, &rule).await.problem(422);
    assert_eq!(problem["field"], "issuer_dn");

    // Audiences each within limits but too many bytes together for the format: refused in
    // the transaction by the encoder's own check.
    let audiences: Vec<String> = (0..32).map(|i| format!("https://{i:02}.{}", "a".repeat(200))).collect();
    let issuer = json!({ "issuer": "https://idp.example", "jwks": jwks(), "audiences": audiences });
    let problem = app.post("/api/v1/admin/issuers", token, &issuer).await.problem(422);
    assert_eq!(problem["field"], "audiences");
    assert!(problem["detail"].as_str().unwrap().contains("cannot go into the snapshot"), "{problem}");

    // Nothing refused was stored or took a version.
    assert_eq!(count(&app.get("/api/v1/admin/constraints", token).await), 1);
    assert_eq!(count(&app.get("/api/v1/admin/mapping-rules", token).await), 0);
    assert_eq!(count(&app.get("/api/v1/admin/issuers", token).await), 0);
    assert_eq!(app.db.snapshot_version().await.unwrap(), before + 1);
    app.finish().await;
}

async fn each_org_is_held_to_its_quotas(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let document_len = serde_json::to_vec(&jwks()).unwrap().len() as u64;
    let mut options = DbOptions::new(test_db.url.clone());
    options.quotas = Quotas {
        issuers: 2,
        jwks_bytes: document_len + document_len / 2,
        blocklist_entries: 2,
        mapping_rules: 1,
        thumbprint_mappings: 1,
        constraints: 2,
    };
    let db = Db::open(&options).await.unwrap();
    let app = TestApp::start_on(test_db, db, Transport::Oneshot, Arc::new(NoSnapshots::default()), Limits::default()).await;
    let (org, super_admin) = (&app.b.token, &app.a.token);
    app.assign_domain(&app.b.org.id, "example").await;

    let policy = |n: u32| json!({ "kind": "required_policy_oid", "value": format!("1.2.3.{n}") });
    for n in 0..2 {
        assert_eq!(app.post("/api/v1/admin/constraints", org, &policy(n)).await.status, 201);
    }
    let refused = app.post("/api/v1/admin/constraints", org, &policy(2)).await;
    let problem = refused.problem(422);
    assert_eq!(problem["type"], "urn:certbind:problem:quota-exceeded");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("at most 2 identity constraints") && detail.contains("CERTBIND_QUOTA_CONSTRAINTS"), "{detail}");
    // Another org's count is its own, and the platform's rules are not counted.
    assert_eq!(app.post("/api/v1/admin/constraints", super_admin, &policy(2)).await.status, 201);
    let platform = json!({ "kind": "required_policy_oid", "value": "1.2.3.9", "scope": "platform" });
    assert_eq!(app.post("/api/v1/admin/constraints", super_admin, &platform).await.status, 201);
    // Room again after a removal.
    let first = app.get("/api/v1/admin/constraints", org).await.json()["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.delete(&format!("/api/v1/admin/constraints/{first}"), org).await.status, 200);
    assert_eq!(app.post("/api/v1/admin/constraints", org, &policy(2)).await.status, 201);

    // Blocklist entries: fingerprints and revoked serials together.
    assert_eq!(app.post("/api/v1/admin/blocklist", org, &json!({ "fingerprint": fingerprint(1) })).await.status, 201);
    let serial = json!({ "issuer_dn": CA, "serial": "0a1b" });
    assert_eq!(app.post("/api/v1/admin/blocklist", org, &serial).await.status, 201);
    let third = app.post("/api/v1/admin/blocklist", org, &json!({ "fingerprint": fingerprint(2) })).await;
    assert_eq!(third.problem(422)["type"], "urn:certbind:problem:quota-exceeded");

    // Mapping rules and thumbprint mappings.
    let rule = |domain: &str| json!({ "san": "upn", "domain": domain, "issuer_dn": CA });
    assert_eq!(app.post("/api/v1/admin/mapping-rules", org, &rule("one.example")).await.status, 201);
    assert_eq!(app.post("/api/v1/admin/mapping-rules", org, &rule("two.example")).await.problem(422)["type"], "urn:certbind:problem:quota-exceeded");
    let mapping = |n: u64| json!({ "fingerprint": fingerprint(10 + n), "principal": format!("svc-{n}") });
    assert_eq!(app.post("/api/v1/admin/thumbprint-mappings", org, &mapping(1)).await.status, 201);
    assert_eq!(app.post("/api/v1/admin/thumbprint-mappings", org, &mapping(2)).await.problem(422)["type"], "urn:certbind:problem:quota-exceeded");

    // Issuers: the second registration is within the count, but not within the JWKS bytes.
    let issuer = |n: u32| json!({ "issuer": format!("https://idp-{n}.example"), "jwks": jwks() });
    assert_eq!(app.post("/api/v1/admin/issuers", org, &issuer(1)).await.status, 201);
    let problem = app.post("/api/v1/admin/issuers", org, &issuer(2)).await.problem(422);
    assert!(problem["detail"].as_str().unwrap().contains("bytes of JWKS documents"), "{problem}");
    assert_eq!(count(&app.get("/api/v1/admin/issuers", org).await), 1);
    app.finish().await;
}

async fn a_stored_row_that_cannot_be_encoded_is_quarantined(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let db = test_db.open().await;
    let app = TestApp::start_on(test_db, db.clone(), Transport::Oneshot, Arc::new(NoSnapshots::default()), Limits::default()).await;
    let good = json!({ "kind": "allowed_issuer_dn", "value": CA });
    assert_eq!(app.post("/api/v1/admin/constraints", &app.b.token, &good).await.status, 201);
    // Written around the API (an older release, a hand edit): 300 bytes cannot be encoded.
    sqlx::query("INSERT INTO identity_constraints (id, org_id, kind, value, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind("01HZZZZZZZZZZZZZZZZZZZZZZZ")
        .bind(&app.b.org.id)
        .bind("allowed_issuer_dn")
        .bind(dn_of(300))
        .bind("2026-01-01T00:00:00Z")
        .execute(db.writer())
        .await
        .unwrap();

    // The service still starts and serves everything else.
    let service = StoreService::start(db.clone(), common::signer(0x5a), StoreSettings::default()).await.expect("a snapshot despite the row");
    let latest = service.store().latest().expect("a snapshot");
    let org = app.b.org.id.as_str();
    let constraints: Vec<(Option<String>, ConstraintKind, String)> = latest
        .view()
        .all_constraints()
        .map(|(owner, kind, value)| (owner.org_id().map(str::to_owned), kind, value.to_owned()))
        .collect();
    assert_eq!(constraints, vec![(Some(org.to_owned()), ConstraintKind::AllowedIssuerDn, CA.to_owned())]);
    assert_eq!(service.store().quarantined_rows(), 1);

    // And says so on /metrics.
    let metrics = common::oneshot(
        &certbind_control_plane::app::app(certbind_control_plane::state::AppState::new(db.clone(), service.clone(), Limits::default())),
        "GET",
        "/metrics",
        &[],
        Vec::new(),
    )
    .await;
    assert!(metrics.text().contains("\ncertbind_snapshot_quarantined_rows 1\n"), "{}", metrics.text());
    assert!(metrics.text().contains("\ncertbind_snapshot_rejected_changes_total 0\n"), "{}", metrics.text());
    // The quarantined row can be deleted through the API (taking it out needs no encoding).
    let bad = "/api/v1/admin/constraints/01HZZZZZZZZZZZZZZZZZZZZZZZ";
    assert_eq!(app.delete(bad, &app.b.token).await.status, 200);
    assert_eq!(app.get(bad, &app.b.token).await.status, 404);
    drop(service);
    app.finish().await;
}
