//! What a super-admin does to other orgs and what the platform sees of failed logins:
//! revoking another org's admin tokens, disabling and deleting orgs, and failed
//! authentications counted in `/metrics`. What disabling does to the filter's decisions is
//! in tenancy_decision.rs.
//! Every scenario runs on SQLite and PostgreSQL, through `oneshot` and over a real socket.

mod common;

use common::TestApp;
use serde_json::json;

on_every_store_and_transport!(
    a_super_admin_revokes_another_orgs_token,
    failed_authentications_are_counted_by_credential_and_reason,
    a_disabled_org_can_neither_act_nor_be_changed_until_enabled,
);

/// The value of one `/metrics` sample line.
async fn metric(app: &TestApp, sample: &str) -> u64 {
    let text = app.send("GET", "/metrics", &[], Vec::new()).await.text();
    let prefix = format!("{sample} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {sample:?} in\n{text}"))
        .parse()
        .unwrap()
}

async fn a_super_admin_revokes_another_orgs_token(app: &TestApp) {
    let globex = &app.b.org.id;
    let tokens = format!("/api/v1/admin/orgs/{globex}/tokens");
    // A second globex token, made by globex's own admin: the one that leaked.
    let leaked = app.post("/api/v1/admin/tokens", &app.b.token, &json!({ "label": "leaked" })).await;
    assert_eq!(leaked.status, 201, "{}", leaked.text());
    let (leaked_id, leaked_secret) =
        (leaked.json()["id"].as_str().unwrap().to_string(), leaked.json()["token"].as_str().unwrap().to_string());

    // The super-admin (acme) lists globex's tokens, never their secrets.
    let listed = app.get(&tokens, &app.a.token).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(!listed.text().contains(&leaked_secret));
    let ids: Vec<String> = listed.json()["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&leaked_id));

    // An ordinary admin may do neither, not even for its own org by this route; nor may it
    // reach another org's token through its own route.
    app.get(&tokens, &app.b.token).await.problem(403);
    app.delete(&format!("{tokens}/{leaked_id}"), &app.b.token).await.problem(403);
    let acme_tokens = app.get("/api/v1/admin/tokens", &app.a.token).await.json();
    let acme_token_id = acme_tokens["items"][0]["id"].as_str().unwrap().to_string();
    app.delete(&format!("/api/v1/admin/tokens/{acme_token_id}"), &app.b.token).await.problem(404);
    // The org in the path must be the token's: acme's token is not in globex.
    app.delete(&format!("{tokens}/{acme_token_id}"), &app.a.token).await.problem(404);
    app.get("/api/v1/admin/orgs/NOPE/tokens", &app.a.token).await.problem(404);

    assert_eq!(app.get("/api/v1/admin/users", &leaked_secret).await.status, 200);
    let revoked = app.delete(&format!("{tokens}/{leaked_id}"), &app.a.token).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_eq!(revoked.json()["id"], leaked_id.as_str());
    app.get("/api/v1/admin/users", &leaked_secret).await.problem(401);
    // globex's other token still works; the revocation is in both orgs' audit logs.
    assert_eq!(app.get("/api/v1/admin/users", &app.b.token).await.status, 200);
    for token in [&app.a.token, &app.b.token] {
        let audit = app.get("/api/v1/admin/audit?action=token.delete", token).await.json();
        assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
        assert_eq!(audit["items"][0]["target"], leaked_id.as_str());
    }
    app.delete(&format!("{tokens}/{leaked_id}"), &app.a.token).await.problem(404);
}

async fn failed_authentications_are_counted_by_credential_and_reason(app: &TestApp) {
    let admin_invalid = r#"certbind_auth_failures_total{credential="admin",reason="invalid"}"#;
    let admin_missing = r#"certbind_auth_failures_total{credential="admin",reason="missing"}"#;
    let proxy_invalid = r#"certbind_auth_failures_total{credential="proxy",reason="invalid"}"#;
    let proxy_missing = r#"certbind_auth_failures_total{credential="proxy",reason="missing"}"#;
    for sample in [admin_invalid, admin_missing, proxy_invalid, proxy_missing] {
        assert_eq!(metric(app, sample).await, 0, "{sample}");
    }
    // Guessed tokens, a malformed header, none at all.
    for guess in ["cbt_guess", "cbt_", "not-a-token", &format!("{}x", app.a.token)] {
        app.get("/api/v1/admin/users", guess).await.problem(401);
    }
    app.send("GET", "/api/v1/admin/orgs", &[("authorization", "Bearer")], Vec::new()).await.problem(401);
    app.send("GET", "/api/v1/admin/users", &[], Vec::new()).await.problem(401);
    app.send("GET", "/api/v1/admin/users", &[("authorization", "Basic dTpw")], Vec::new()).await.problem(401);
    app.send("GET", "/api/v1/snapshot", &[("authorization", "Bearer cbp_guess")], Vec::new()).await.problem(401);
    app.send("GET", "/api/v1/snapshot", &[], Vec::new()).await.problem(401);
    app.send("GET", "/api/v1/snapshot", &[], Vec::new()).await.problem(401);
    assert_eq!(metric(app, admin_invalid).await, 5);
    assert_eq!(metric(app, admin_missing).await, 2);
    assert_eq!(metric(app, proxy_invalid).await, 1);
    assert_eq!(metric(app, proxy_missing).await, 2);

    // A valid credential on the wrong kind of route is refused (403) but is no failed
    // authentication; neither is a success.
    app.get("/api/v1/admin/users", &app.proxy).await.problem(403);
    app.get("/api/v1/snapshot", &app.a.token).await.problem(403);
    assert_eq!(app.get("/api/v1/admin/users", &app.b.token).await.status, 200);
    assert_eq!(metric(app, admin_invalid).await, 5);
    assert_eq!(metric(app, proxy_invalid).await, 1);
}

async fn a_disabled_org_can_neither_act_nor_be_changed_until_enabled(app: &TestApp) {
    let globex = format!("/api/v1/admin/orgs/{}", app.b.org.id);
    let acme = format!("/api/v1/admin/orgs/{}", app.a.org.id);
    // Only a super-admin, and not against its own org; the body is exact.
    app.patch(&globex, &app.b.token, &json!({ "enabled": false })).await.problem(403);
    app.patch(&acme, &app.a.token, &json!({ "enabled": false })).await.problem(403);
    assert_eq!(app.patch(&globex, &app.a.token, &json!({ "enabled": "no" })).await.problem(422)["field"], "enabled");
    app.patch("/api/v1/admin/orgs/NOPE", &app.a.token, &json!({ "enabled": false })).await.problem(404);
    app.delete(&globex, &app.a.token).await.problem(409);
    assert_eq!(app.get(&globex, &app.a.token).await.json()["enabled"], true);

    let r = app.patch(&globex, &app.a.token, &json!({ "enabled": false })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["enabled"], false);
    assert!(r.json()["disabled_at"].is_string());
    assert!(r.header("certbind-snapshot-version").is_some(), "disabling changes what the filter sees");
    // Again: nothing to do, nothing committed.
    let again = app.patch(&globex, &app.a.token, &json!({ "enabled": false })).await;
    assert_eq!((again.status.as_u16(), again.header("certbind-snapshot-version")), (200, None));

    // Its token is refused, as refused (403), not as a failed authentication.
    let failures = r#"certbind_auth_failures_total{credential="admin",reason="invalid"}"#;
    let before = metric(app, failures).await;
    let p = app.get("/api/v1/admin/users", &app.b.token).await.problem(403);
    assert_eq!(p["detail"], "this token's org is disabled");
    assert_eq!(metric(app, failures).await, before);
    // Nobody changes what it holds: a super-admin's token or domain for it is refused, and so
    // is the command line's bind (storage refuses, whoever asks).
    app.post(&format!("{globex}/tokens"), &app.a.token, &json!({})).await.problem(403);
    app.post(&format!("{globex}/domains"), &app.a.token, &json!({ "domain": "globex.example" })).await.problem(403);
    let actor = certbind_control_plane::db::Actor::cli(app.b.org.id.clone());
    let user = certbind_control_plane::db::users::create(&app.db, &actor, "carol", None).await;
    assert!(matches!(user, Err(certbind_control_plane::db::DbError::Forbidden(_))), "{user:?}");
    // The other org goes on.
    assert_eq!(app.get("/api/v1/admin/users", &app.a.token).await.status, 200);
    let listed = app.get("/api/v1/admin/orgs", &app.a.token).await.json();
    let states: Vec<(String, bool)> = listed["items"].as_array().unwrap().iter()
        .map(|o| (o["name"].as_str().unwrap().to_string(), o["enabled"].as_bool().unwrap())).collect();
    assert_eq!(states, vec![("acme".to_string(), true), ("globex".to_string(), false)]);

    // Enabled again, everything works as before.
    assert_eq!(app.patch(&globex, &app.a.token, &json!({ "enabled": true })).await.status, 200);
    assert_eq!(app.get("/api/v1/admin/users", &app.b.token).await.status, 200);
    let audit = app.get("/api/v1/admin/audit", &app.a.token).await.json();
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(&actions[..2], ["org.enable", "org.disable"], "{actions:?}");

    // Deleted once disabled: gone, its name free again, its audit rows kept.
    assert_eq!(app.patch(&globex, &app.a.token, &json!({ "enabled": false })).await.status, 200);
    let r = app.delete(&globex, &app.a.token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], app.b.org.id.as_str());
    app.get(&globex, &app.a.token).await.problem(404);
    app.delete(&globex, &app.a.token).await.problem(404);
    app.get("/api/v1/admin/users", &app.b.token).await.problem(401);
    let kept = certbind_control_plane::db::audit::list(&app.db, &app.b.org.id, None, None, 100).await.unwrap();
    let kept: Vec<&str> = kept.items.iter().map(|e| e.action.as_str()).collect();
    assert!(kept.contains(&"org.delete") && kept.contains(&"org.create"), "{kept:?}");
    assert_eq!(app.post("/api/v1/admin/orgs", &app.a.token, &json!({ "name": "globex" })).await.status, 201);
}
