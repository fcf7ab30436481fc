//! What a super-admin does to other orgs and what the platform sees of failed logins:
//! revoking another org's admin tokens, and failed authentications counted in `/metrics`.
//! Every scenario runs on SQLite and PostgreSQL, through `oneshot` and over a real socket.

mod common;

use common::TestApp;
use serde_json::json;

on_every_store_and_transport!(
    a_super_admin_revokes_another_orgs_token,
    failed_authentications_are_counted_by_credential_and_reason,
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
