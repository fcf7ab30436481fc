//! Writes that race answer 404 or 409, never 500, and leave a consistent state — on SQLite and
//! on PostgreSQL, where the foreign key of a card bound to a user being deleted used to
//! surface as a 500.

mod common;

use common::{bind_body, fingerprint, Store, TestApp, Transport};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

on_every_store!(
    binding_to_a_user_being_deleted,
    binding_and_mapping_one_fingerprint,
    two_orgs_claiming_one_san_rule,
    registering_one_issuer_twice,
);

async fn start(store: Store, test: &str) -> Arc<TestApp> {
    Arc::new(TestApp::start(store, Transport::Oneshot, test).await.expect("test app"))
}

async fn binding_to_a_user_being_deleted(store: Store, test: &str) {
    let app = start(store, test).await;
    let mut outcomes = BTreeMap::new();
    for round in 0..40u64 {
        let user = app.post("/api/v1/admin/users", &app.a.token, &json!({ "name": format!("temp-{round}") })).await.json();
        let user_id = user["id"].as_str().unwrap().to_string();
        let fp = fingerprint(1000 + round);
        let bind = {
            let (app, user_id, fp) = (app.clone(), user_id.clone(), fp.clone());
            tokio::spawn(async move { app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&user_id, &fp)).await })
        };
        let delete = {
            let (app, user_id) = (app.clone(), user_id.clone());
            tokio::spawn(async move { app.delete(&format!("/api/v1/admin/users/{user_id}"), &app.a.token).await })
        };
        let (bind, delete) = (bind.await.unwrap(), delete.await.unwrap());
        let (b, d) = (bind.status.as_u16(), delete.status.as_u16());
        *outcomes.entry((b, d)).or_insert(0) += 1;
        let user_left = app.get(&format!("/api/v1/admin/users/{user_id}"), &app.a.token).await.status.as_u16();
        let card_left = app.get(&format!("/api/v1/admin/smartcards/{fp}"), &app.a.token).await.status.as_u16();
        match (b, d) {
            // The bind won: the delete saw the binding.
            (201, 409) => assert_eq!((user_left, card_left), (200, 200), "round {round}"),
            // The delete won: the bind found no user (before or at its insert).
            (404 | 422, 200) => assert_eq!((user_left, card_left), (404, 404), "round {round}"),
            other => panic!("round {round}: bind {} / delete {}: {other:?}", bind.text(), delete.text()),
        }
        for r in [&bind, &delete] {
            if !r.status.is_success() {
                r.problem(r.status.as_u16());
            }
        }
    }
    common::shout(&format!("{test}: outcomes {outcomes:?}"));
    Arc::into_inner(app).expect("tasks done").finish().await;
}

async fn binding_and_mapping_one_fingerprint(store: Store, test: &str) {
    let app = start(store, test).await;
    for round in 0..20u64 {
        let fp = fingerprint(2000 + round);
        let bind = {
            let (app, fp) = (app.clone(), fp.clone());
            tokio::spawn(async move { app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fp)).await })
        };
        let map = {
            let (app, fp) = (app.clone(), fp.clone());
            tokio::spawn(async move {
                app.post("/api/v1/admin/thumbprint-mappings", &app.b.token, &json!({ "fingerprint": fp, "principal": "svc" })).await
            })
        };
        let (bind, map) = (bind.await.unwrap(), map.await.unwrap());
        let mut statuses = [bind.status.as_u16(), map.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: {} / {}", bind.text(), map.text());
    }
    Arc::into_inner(app).expect("tasks done").finish().await;
}

async fn two_orgs_claiming_one_san_rule(store: Store, test: &str) {
    let app = start(store, test).await;
    app.assign_domain(&app.b.org.id, "mil").await;
    for round in 0..20u64 {
        let rule = json!({ "san": "upn", "domain": format!("d{round}.mil"), "issuer_dn": "CN=DOD ID CA-59,O=U.S. Government,C=US" });
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (app, rule) = (app.clone(), rule.clone());
            tasks.push(tokio::spawn(async move {
                let token = if i % 2 == 0 { &app.a.token } else { &app.b.token };
                app.post("/api/v1/admin/mapping-rules", token, &rule).await.status.as_u16()
            }));
        }
        let mut statuses = BTreeMap::new();
        for t in tasks {
            *statuses.entry(t.await.unwrap()).or_insert(0) += 1;
        }
        assert_eq!(statuses, BTreeMap::from([(201, 1), (409, 5)]), "round {round}");
    }
    Arc::into_inner(app).expect("tasks done").finish().await;
}

async fn registering_one_issuer_twice(store: Store, test: &str) {
    let app = start(store, test).await;
    let jwks = json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
    }]});
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (app, jwks) = (app.clone(), jwks.clone());
        tasks.push(tokio::spawn(async move {
            let token = if i % 2 == 0 { &app.a.token } else { &app.b.token };
            (i % 2, app.post("/api/v1/admin/issuers", token, &json!({ "issuer": "https://idp.example", "jwks": jwks })).await.status.as_u16())
        }));
    }
    let mut statuses = BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    // One registration per org; the other attempts of each org are conflicts.
    assert_eq!(statuses, BTreeMap::from([((0, 201), 1), ((0, 409), 3), ((1, 201), 1), ((1, 409), 3)]));
    Arc::into_inner(app).expect("tasks done").finish().await;
}
