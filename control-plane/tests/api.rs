//! The admin API end to end: the binding routes, binding by PEM, the other resources, and the
//! problem+json error contract. Every scenario runs on SQLite and PostgreSQL, through
//! `oneshot` and over a real socket.

mod common;

use common::{bind_body, cac_doe, cac_roe, fingerprint, TestApp};
use serde_json::{json, Value};

on_every_store_and_transport!(
    seed_routes_bind_list_revoke,
    fingerprints_are_accepted_in_every_spelling_and_returned_canonical,
    bind_by_pem_derives_every_field,
    pem_and_disagreeing_fields_are_refused,
    duplicate_fingerprint_is_a_conflict,
    the_user_must_be_in_the_callers_org,
    enable_disable_and_relabel,
    list_pages_and_filters,
    error_contract,
    bad_input_is_refused_and_nothing_is_stored,
    sql_metacharacters_are_data,
    users_tokens_and_orgs,
    blocklist_issuers_rules_mappings_constraints,
    audit_log_records_who_what_when,
    health_metrics_and_openapi,
);

const CARDS: &str = "/api/v1/admin/smartcards";

fn colon_hex(hex: &str) -> String {
    hex.as_bytes().chunks(2).map(|p| std::str::from_utf8(p).unwrap().to_string()).collect::<Vec<_>>().join(":")
}

async fn seed_routes_bind_list_revoke(app: &TestApp) {
    let fp = fingerprint(1);
    let body = bind_body(&app.a.user.id, &colon_hex(&fp));
    let created = app.post(CARDS, &app.a.token, &body).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let v1 = created.version();
    assert_eq!(created.header("location"), Some(format!("{CARDS}/{fp}").as_str()));
    let link = created.json();
    assert_eq!(link["fingerprint"], fp);
    assert_eq!(link["user_id"], app.a.user.id);
    assert_eq!(link["org_id"], app.a.org.id);
    assert_eq!(link["subject_dn"], body["subject_dn"]);
    assert_eq!(link["issuer_dn"], body["issuer_dn"]);
    assert_eq!(link["serial"], "12abcdef");
    assert_eq!(link["not_before"], "2025-01-15T00:00:00Z");
    assert_eq!(link["not_after"], "2028-01-15T00:00:00Z");
    assert_eq!(link["label"], "Primary CAC");
    assert_eq!(link["enabled"], true);
    assert_eq!(link["last_used_at"], Value::Null);

    let listed = app.get(CARDS, &app.a.token).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["items"], json!([link]));
    assert_eq!(listed.json()["next_cursor"], Value::Null);

    let revoked = app.delete(&format!("{CARDS}/{}", colon_hex(&fp)), &app.a.token).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert!(revoked.version() > v1);
    assert_eq!(revoked.json(), link);
    assert_eq!(app.get(CARDS, &app.a.token).await.json()["items"], json!([]));
    app.delete(&format!("{CARDS}/{fp}"), &app.a.token).await.problem(404);
    app.get(&format!("{CARDS}/{fp}"), &app.a.token).await.problem(404);
}

async fn fingerprints_are_accepted_in_every_spelling_and_returned_canonical(app: &TestApp) {
    let fp = fingerprint(2);
    let bytes: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&fp[i * 2..i * 2 + 2], 16).unwrap()).collect();
    let x5t = certbind_shared::encoding::base64url_encode(&bytes);
    let created = app.post(CARDS, &app.a.token, &bind_body(&app.a.user.id, &fp.to_uppercase())).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["fingerprint"], fp);
    for spelling in [fp.clone(), fp.to_uppercase(), colon_hex(&fp), colon_hex(&fp.to_uppercase()), x5t.clone()] {
        let got = app.get(&format!("{CARDS}/{spelling}"), &app.a.token).await;
        assert_eq!(got.status, 200, "{spelling}: {}", got.text());
        assert_eq!(got.json()["fingerprint"], fp);
    }
    let revoked = app.delete(&format!("{CARDS}/{x5t}"), &app.a.token).await;
    assert_eq!(revoked.status, 200);
}

async fn bind_by_pem_derives_every_field(app: &TestApp) {
    let doe = cac_doe();
    let created = app
        .post(CARDS, &app.a.token, &json!({ "user_id": app.a.user.id, "certificate_pem": doe.pem, "label": "Primary CAC" }))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let link = created.json();
    for field in ["fingerprint", "subject_dn", "issuer_dn", "serial", "not_before", "not_after"] {
        assert_eq!(link[field], doe.facts[field], "{field}");
    }
    assert_eq!(link["label"], "Primary CAC");

    // Fields that agree with the certificate are accepted beside it, in any spelling.
    let roe = cac_roe();
    let mut body = json!({ "user_id": app.a.user.id, "certificate_pem": roe.pem });
    for field in ["subject_dn", "issuer_dn", "not_before", "not_after"] {
        body[field] = roe.facts[field].clone();
    }
    body["fingerprint"] = json!(colon_hex(roe.facts["fingerprint"].as_str().unwrap()).to_uppercase());
    body["serial"] = json!(format!("0x{}", roe.facts["serial"].as_str().unwrap().to_uppercase()));
    let created = app.post(CARDS, &app.a.token, &body).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["fingerprint"], roe.facts["fingerprint"]);
}

async fn pem_and_disagreeing_fields_are_refused(app: &TestApp) {
    let doe = cac_doe();
    let before = app.dump().await;
    let cases = [
        ("fingerprint", json!(fingerprint(3))),
        ("subject_dn", json!("CN=SOMEONE.ELSE,O=U.S. Government,C=US")),
        ("issuer_dn", json!("CN=DOD ID CA-60,OU=PKI,OU=DoD,O=U.S. Government,C=US")),
        ("serial", json!("0x01")),
        ("not_before", json!("2020-01-01T00:00:00Z")),
        ("not_after", json!("2099-01-01T00:00:00Z")),
    ];
    for (field, value) in cases {
        let mut body = json!({ "user_id": app.a.user.id, "certificate_pem": doe.pem });
        body[field] = value;
        let p = app.post(CARDS, &app.a.token, &body).await.problem(422);
        assert_eq!(p["field"], field, "{p}");
        assert!(p["detail"].as_str().unwrap().contains("disagrees with the certificate"), "{p}");
    }
    for (pem, what) in [
        ("not a certificate", "no BEGIN line"),
        ("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "bad base64"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not DER"),
    ] {
        let p = app.post(CARDS, &app.a.token, &json!({ "user_id": app.a.user.id, "certificate_pem": pem })).await.problem(422);
        assert_eq!(p["field"], "certificate_pem", "{what}: {p}");
    }
    // Text around the block is read past, as OpenSSL does; a private key beside it is not.
    let with_key = format!("{}-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n", doe.pem);
    let p = app.post(CARDS, &app.a.token, &json!({ "user_id": app.a.user.id, "certificate_pem": with_key })).await.problem(422);
    assert_eq!(p["field"], "certificate_pem");
    assert!(p["detail"].as_str().unwrap().contains("other than CERTIFICATE"), "{p}");
    assert_eq!(app.dump().await, before, "a refused bind stored something");
}

async fn duplicate_fingerprint_is_a_conflict(app: &TestApp) {
    let fp = fingerprint(4);
    assert_eq!(app.post(CARDS, &app.a.token, &bind_body(&app.a.user.id, &fp)).await.status, 201);
    let before = app.dump().await;
    let own = app.post(CARDS, &app.a.token, &bind_body(&app.a.user.id, &colon_hex(&fp.to_uppercase()))).await.problem(409);
    assert!(own["detail"].as_str().unwrap().starts_with("the certificate cannot be bound"), "{own}");
    // Another org binding the same certificate is refused too (a fingerprint names one
    // user), in the same words: the answer does not tell where it is bound.
    let other = app.post(CARDS, &app.b.token, &bind_body(&app.b.user.id, &fp)).await.problem(409);
    assert_eq!(other, own);
    assert_eq!(app.dump().await, before);
}

async fn the_user_must_be_in_the_callers_org(app: &TestApp) {
    let before = app.dump().await;
    for user in [app.b.user.id.as_str(), "01HV4ABCDEFGHJKMNPQRSTVWXY", ""] {
        let p = app.post(CARDS, &app.a.token, &bind_body(user, &fingerprint(5))).await.problem(422);
        assert_eq!(p["field"], "user_id", "{p}");
    }
    assert_eq!(app.dump().await, before);
}

async fn enable_disable_and_relabel(app: &TestApp) {
    let fp = fingerprint(6);
    let v0 = app.post(CARDS, &app.a.token, &bind_body(&app.a.user.id, &fp)).await.version();
    let path = format!("{CARDS}/{fp}");
    let disabled = app.patch(&path, &app.a.token, &json!({ "enabled": false })).await;
    assert_eq!(disabled.status, 200, "{}", disabled.text());
    assert_eq!(disabled.json()["enabled"], false);
    assert_eq!(disabled.json()["label"], "Primary CAC");
    let v1 = disabled.version();
    assert!(v1 > v0);
    let listed = app.get(&format!("{CARDS}?enabled=false"), &app.a.token).await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.get(&format!("{CARDS}?enabled=true"), &app.a.token).await.json()["items"], json!([]));

    let relabelled = app.patch(&path, &app.a.token, &json!({ "label": "Backup CAC", "enabled": true })).await;
    assert_eq!(relabelled.json()["label"], "Backup CAC");
    assert_eq!(relabelled.json()["enabled"], true);
    assert!(relabelled.version() > v1);
    let cleared = app.patch(&path, &app.a.token, &json!({ "label": null })).await;
    assert_eq!(cleared.json()["label"], Value::Null);
    assert_eq!(cleared.json()["enabled"], true);

    let p = app.patch(&path, &app.a.token, &json!({})).await.problem(422);
    assert_eq!(p["field"], "body");
    let p = app.patch(&path, &app.a.token, &json!({ "enabled": "no" })).await.problem(422);
    assert_eq!(p["field"], "enabled");
    let p = app.patch(&path, &app.a.token, &json!({ "user_id": app.a.user.id })).await.problem(422);
    assert_eq!(p["field"], "user_id");
    app.patch(&format!("{CARDS}/{}", fingerprint(7)), &app.a.token, &json!({ "enabled": false })).await.problem(404);
}

async fn list_pages_and_filters(app: &TestApp) {
    let second_user = app.post("/api/v1/admin/users", &app.a.token, &json!({ "name": "carol" })).await.json();
    let second_user = second_user["id"].as_str().unwrap().to_string();
    let mut expected: Vec<String> = Vec::new();
    for n in 10..17u64 {
        let user = if n % 2 == 0 { &app.a.user.id } else { &second_user };
        let mut body = bind_body(user, &fingerprint(n));
        if n == 16 {
            body["issuer_dn"] = json!("CN=DOD EMAIL CA-62,OU=PKI,OU=DoD,O=U.S. Government,C=US");
        }
        assert_eq!(app.post(CARDS, &app.a.token, &body).await.status, 201);
        expected.push(fingerprint(n));
    }
    // Org B's binding never shows up in A's lists.
    assert_eq!(app.post(CARDS, &app.b.token, &bind_body(&app.b.user.id, &fingerprint(99))).await.status, 201);
    expected.sort();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{CARDS}?limit=3&cursor={c}"),
            None => format!("{CARDS}?limit=3"),
        };
        let page = app.get(&path, &app.a.token).await.json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|i| i["fingerprint"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    let by_user = app.get(&format!("{CARDS}?user_id={second_user}"), &app.a.token).await.json();
    let by_user: Vec<&str> = by_user["items"].as_array().unwrap().iter().map(|i| i["fingerprint"].as_str().unwrap()).collect();
    let mut odd: Vec<String> = (10..17u64).filter(|n| n % 2 == 1).map(fingerprint).collect();
    odd.sort();
    assert_eq!(by_user, odd);

    let issuer = "CN%3DDOD%20EMAIL%20CA-62%2COU%3DPKI%2COU%3DDoD%2CO%3DU.S.%20Government%2CC%3DUS";
    let by_issuer = app.get(&format!("{CARDS}?issuer={issuer}"), &app.a.token).await.json();
    assert_eq!(by_issuer["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_issuer["items"][0]["fingerprint"], fingerprint(16));

    for (query, field) in [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"), ("enabled=maybe", "enabled"), ("cursor=zz", "cursor"), ("colour=red", "colour")] {
        let p = app.get(&format!("{CARDS}?{query}"), &app.a.token).await.problem(422);
        assert_eq!(p["field"], field, "{query}: {p}");
    }
}

async fn error_contract(app: &TestApp) {
    // 401 without a token, and with a wrong one: a challenge, and nothing about the org.
    let r = app.send("GET", CARDS, &[], Vec::new()).await;
    r.problem(401);
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer realm="certbind""#));
    for auth in ["Bearer cbt_not-a-real-token", "Bearer ", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Bearer"] {
        let r = app.send("GET", CARDS, &[("authorization", auth)], Vec::new()).await;
        r.problem(401);
        assert!(r.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")), "{auth}");
    }
    // 403: an org token on org management.
    app.get("/api/v1/admin/orgs", &app.b.token).await.problem(403);
    // 404: no such route, and no such row.
    let p = app.get("/api/v1/admin/nothing-here", &app.a.token).await.problem(404);
    assert_eq!(p["type"], "urn:certbind:problem:no-route");
    let p = app.get(&format!("{CARDS}/{}", fingerprint(8)), &app.a.token).await.problem(404);
    assert_eq!(p["type"], "urn:certbind:problem:not-found");
    // 405.
    let auth = format!("Bearer {}", app.a.token);
    app.send("PUT", CARDS, &[("authorization", &auth)], Vec::new()).await.problem(405);
    // 415: a body that is not declared JSON.
    let body = serde_json::to_vec(&bind_body(&app.a.user.id, &fingerprint(9))).unwrap();
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/jsonp")] {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        app.send("POST", CARDS, &headers, body.clone()).await.problem(415);
    }
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json; charset=utf-8")];
    assert_eq!(app.send("POST", CARDS, &headers, body).await.status, 201);
    // 400: not JSON.
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    for bad in [&b"{"[..], b"not json", b"{\"user_id\": \"x\"} trailing", b""] {
        let p = app.send("POST", CARDS, &headers, bad.to_vec()).await.problem(400);
        assert!(p["detail"].as_str().unwrap().contains("not valid JSON"), "{p}");
    }
    // 413: a body over the cap, refused whatever it holds.
    let huge = format!("{{\"user_id\": \"{}\"}}", "x".repeat(app.state.limits.max_body_bytes));
    let p = app.send("POST", CARDS, &headers, huge.into_bytes()).await.problem(413);
    assert!(p["detail"].as_str().unwrap().contains(&app.state.limits.max_body_bytes.to_string()), "{p}");
    // 422: unknown field, named.
    let mut body = bind_body(&app.a.user.id, &fingerprint(10));
    body["colour"] = json!("red");
    let p = app.post(CARDS, &app.a.token, &body).await.problem(422);
    assert_eq!(p["field"], "colour");
    assert!(p["detail"].as_str().unwrap().contains("unknown field"), "{p}");
    // Problems are never cached.
    assert_eq!(app.get(CARDS, "nope").await.header("cache-control"), Some("no-store"));
}

async fn bad_input_is_refused_and_nothing_is_stored(app: &TestApp) {
    let before = app.dump().await;
    let good = bind_body(&app.a.user.id, &fingerprint(20));
    let long_dn = format!("CN={},O=U.S. Government,C=US", "A".repeat(2000));
    let cases: Vec<(&str, Value)> = vec![
        ("fingerprint", json!("5f:9c:e3:7a:2b")),
        ("fingerprint", json!("zz".repeat(32))),
        ("fingerprint", json!(format!("{}00", fingerprint(20)))),
        ("fingerprint", json!(format!("{}'--", &fingerprint(20)[..61]))),
        ("fingerprint", json!(12345)),
        ("fingerprint", json!("")),
        ("subject_dn", json!(long_dn)),
        ("issuer_dn", json!(long_dn)),
        ("subject_dn", json!("")),
        ("subject_dn", json!("CN=A\u{0}B")),
        ("serial", json!("0xZZ")),
        ("serial", json!("1".repeat(100))),
        ("not_before", json!("yesterday")),
        ("not_after", json!("2025-13-01T00:00:00Z")),
        ("not_after", json!("2024-01-01T00:00:00Z")),
        ("label", json!("L".repeat(201))),
        ("user_id", json!("u".repeat(300))),
        ("user_id", json!(null)),
    ];
    for (field, value) in cases {
        let mut body = good.clone();
        body[field] = value.clone();
        let p = app.post(CARDS, &app.a.token, &body).await.problem(422);
        assert_eq!(p["field"], field, "{field}={value}: {p}");
    }
    for field in ["fingerprint", "subject_dn", "issuer_dn", "serial", "not_before", "not_after"] {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        let p = app.post(CARDS, &app.a.token, &body).await.problem(422);
        assert_eq!(p["field"], field, "{p}");
    }
    // Malformed fingerprints in the path.
    for bad in ["5f:9c:e3", "not-a-fingerprint", "%27%20OR%20%271%27%3D%271", &"a".repeat(200)] {
        let p = app.delete(&format!("{CARDS}/{bad}"), &app.a.token).await.problem(422);
        assert_eq!(p["field"], "fingerprint", "{bad}");
    }
    // Wrong content type, oversized body, not JSON, unknown field: refused before any write.
    let auth = format!("Bearer {}", app.a.token);
    let body = serde_json::to_vec(&good).unwrap();
    app.send("POST", CARDS, &[("authorization", &auth), ("content-type", "text/plain")], body.clone()).await.problem(415);
    let json = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let mut padded = good.clone();
    padded["label"] = json!("x".repeat(app.state.limits.max_body_bytes));
    app.send("POST", CARDS, &json, serde_json::to_vec(&padded).unwrap()).await.problem(413);
    app.send("POST", CARDS, &json, body[..body.len() - 1].to_vec()).await.problem(400);
    let mut unknown = good.clone();
    unknown["org_id"] = json!(app.b.org.id);
    assert_eq!(app.post(CARDS, &app.a.token, &unknown).await.problem(422)["field"], "org_id");
    assert_eq!(app.dump().await, before, "refused requests stored something");
}

async fn sql_metacharacters_are_data(app: &TestApp) {
    let label = "'); DROP TABLE smart_card_links; --";
    // As stored: RFC 4514 escapes the quote and the semicolon.
    let dn = "CN=O'Brien \\\"Bobby\\\"\\; DELETE FROM users,O=U.S. Government,C=US";
    let mut body = bind_body(&app.a.user.id, &fingerprint(30));
    body["label"] = json!(label);
    body["subject_dn"] = json!(dn);
    let created = app.post(CARDS, &app.a.token, &body).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let got = app.get(&format!("{CARDS}/{}", fingerprint(30)), &app.a.token).await.json();
    assert_eq!(got["label"], label);
    assert_eq!(got["subject_dn"], dn);
    // Injection through filters finds nothing rather than everything.
    for filter in ["user_id=%27%20OR%20%271%27%3D%271", "issuer=CN%3D%27%20OR%201%3D1%20--"] {
        let listed = app.get(&format!("{CARDS}?{filter}"), &app.a.token).await;
        assert_eq!(listed.status, 200);
        assert_eq!(listed.json()["items"], json!([]), "{filter}");
    }
    // An issuer filter is a DN, in any spelling; anything else is refused.
    assert_eq!(app.get(&format!("{CARDS}?issuer=%27%20OR%201%3D1%20--"), &app.a.token).await.problem(422)["field"], "issuer");
    let spelled = "issuer=cn%20%3D%20DOD%20ID%20CA-59%2C%20ou%3DPKI%2Cou%3DDoD%2Co%3DU.S.%20Government%2Cc%3DUS";
    assert_eq!(app.get(&format!("{CARDS}?{spelled}"), &app.a.token).await.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.get(CARDS, &app.a.token).await.json()["items"].as_array().unwrap().len(), 1);
    let p = app.post("/api/v1/admin/users", &app.a.token, &json!({ "name": "x'; DROP TABLE users; --", "email": "a@b" })).await;
    assert_eq!(p.status, 201);
    assert_eq!(app.get("/api/v1/admin/users", &app.a.token).await.json()["items"].as_array().unwrap().len(), 2);
}

async fn users_tokens_and_orgs(app: &TestApp) {
    // Users.
    let created = app.post("/api/v1/admin/users", &app.a.token, &json!({ "name": "dave", "email": "dave@example.mil" })).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let dave = created.json();
    assert_eq!(dave["org_id"], app.a.org.id);
    app.post("/api/v1/admin/users", &app.a.token, &json!({ "name": "dave" })).await.problem(409);
    let p = app.post("/api/v1/admin/users", &app.a.token, &json!({ "name": "eve", "email": "not-an-email" })).await.problem(422);
    assert_eq!(p["field"], "email");
    let dave_path = format!("/api/v1/admin/users/{}", dave["id"].as_str().unwrap());
    assert_eq!(app.get(&dave_path, &app.a.token).await.json(), dave);
    // A user with a binding cannot be deleted until it is revoked.
    let fp = fingerprint(40);
    assert_eq!(app.post(CARDS, &app.a.token, &bind_body(dave["id"].as_str().unwrap(), &fp)).await.status, 201);
    app.delete(&dave_path, &app.a.token).await.problem(409);
    assert_eq!(app.delete(&format!("{CARDS}/{fp}"), &app.a.token).await.status, 200);
    assert_eq!(app.delete(&dave_path, &app.a.token).await.status, 200);
    app.get(&dave_path, &app.a.token).await.problem(404);

    // Tokens: created once, listed without secrets, usable, deletable.
    let created = app.post("/api/v1/admin/tokens", &app.b.token, &json!({ "label": "ci" })).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let token = created.json();
    let secret = token["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("cbt_"));
    assert_eq!(token["super_admin"], false);
    let listed = app.get("/api/v1/admin/tokens", &app.b.token).await;
    assert!(!listed.text().contains(&secret));
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 2);
    assert_eq!(app.get("/api/v1/admin/users", &secret).await.status, 200);
    app.post("/api/v1/admin/tokens", &app.b.token, &json!({ "super_admin": true })).await.problem(403);
    let token_path = format!("/api/v1/admin/tokens/{}", token["id"].as_str().unwrap());
    assert_eq!(app.delete(&token_path, &app.b.token).await.status, 200);
    app.get("/api/v1/admin/users", &secret).await.problem(401);

    // Orgs: super-admin only; a new org gets its first token from a super-admin.
    let created = app.post("/api/v1/admin/orgs", &app.a.token, &json!({ "name": "initech" })).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let org = created.json();
    app.post("/api/v1/admin/orgs", &app.a.token, &json!({ "name": "initech" })).await.problem(409);
    app.post("/api/v1/admin/orgs", &app.b.token, &json!({ "name": "hooli" })).await.problem(403);
    let org_path = format!("/api/v1/admin/orgs/{}", org["id"].as_str().unwrap());
    assert_eq!(app.get(&org_path, &app.a.token).await.json(), org);
    let orgs = app.get("/api/v1/admin/orgs", &app.a.token).await.json();
    assert_eq!(orgs["items"].as_array().unwrap().len(), 3);
    let first = app.post(&format!("{org_path}/tokens"), &app.a.token, &json!({})).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let initech_token = first.json()["token"].as_str().unwrap().to_string();
    let users = app.get("/api/v1/admin/users", &initech_token).await.json();
    assert_eq!(users["items"], json!([]));
    app.post("/api/v1/admin/orgs/NOPE/tokens", &app.a.token, &json!({})).await.problem(404);
}

async fn blocklist_issuers_rules_mappings_constraints(app: &TestApp) {
    let t = &app.a.token;
    // Blocklist, by fingerprint and by issuer + serial.
    let by_fp = app.post("/api/v1/admin/blocklist", t, &json!({ "fingerprint": colon_hex(&fingerprint(50)), "reason": "lost" })).await;
    assert_eq!(by_fp.status, 201, "{}", by_fp.text());
    assert_eq!(by_fp.json()["fingerprint"], fingerprint(50));
    let v = by_fp.version();
    let by_serial = app
        .post("/api/v1/admin/blocklist", t, &json!({ "issuer_dn": "CN=DOD ID CA-59,O=U.S. Government,C=US", "serial": "0x00:1A" }))
        .await;
    assert_eq!(by_serial.status, 201, "{}", by_serial.text());
    assert_eq!(by_serial.json()["serial"], "1a");
    assert!(by_serial.version() > v);
    app.post("/api/v1/admin/blocklist", t, &json!({ "fingerprint": fingerprint(50) })).await.problem(409);
    for (body, field) in [
        (json!({}), "fingerprint"),
        (json!({ "issuer_dn": "CN=X" }), "serial"),
        (json!({ "fingerprint": fingerprint(51), "serial": "01" }), "fingerprint"),
        (json!({ "fingerprint": "nope" }), "fingerprint"),
    ] {
        assert_eq!(app.post("/api/v1/admin/blocklist", t, &body).await.problem(422)["field"], field, "{body}");
    }
    let listed = app.get("/api/v1/admin/blocklist", t).await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let entry_path = format!("/api/v1/admin/blocklist/{}", by_fp.json()["id"].as_str().unwrap());
    assert_eq!(app.get(&entry_path, t).await.json(), by_fp.json());
    assert_eq!(app.delete(&entry_path, t).await.status, 200);
    app.get(&entry_path, t).await.problem(404);

    // Issuers: the JWKS is checked by the filter's own parser.
    let jwks: Value = json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
    }]});
    let created = app
        .post("/api/v1/admin/issuers", t, &json!({ "issuer": "https://idp.example.mil", "audiences": ["api"], "jwks": jwks }))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["jwks"], jwks);
    app.post("/api/v1/admin/issuers", t, &json!({ "issuer": "https://idp.example.mil", "jwks": jwks })).await.problem(409);
    for bad in [json!({}), json!({ "keys": "nope" }), json!({ "keys": [{ "kty": "EC" }] })] {
        let p = app.post("/api/v1/admin/issuers", t, &json!({ "issuer": "https://other.example.mil", "jwks": bad })).await.problem(422);
        assert_eq!(p["field"], "jwks", "{p}");
    }
    let issuer_path = format!("/api/v1/admin/issuers/{}", created.json()["id"].as_str().unwrap());
    let updated = app.patch(&issuer_path, t, &json!({ "audiences": null })).await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    assert_eq!(updated.json()["audiences"], Value::Null);
    assert_eq!(updated.json()["jwks"], jwks);
    app.patch(&issuer_path, t, &json!({ "jwks": { "keys": 1 } })).await.problem(422);
    assert_eq!(app.get("/api/v1/admin/issuers", t).await.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.delete(&issuer_path, t).await.status, 200);

    // Mapping rules.
    let ca = "CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US";
    let rule = app
        .post("/api/v1/admin/mapping-rules", t, &json!({ "san": "email", "domain": "Mail.MIL", "issuer_dn": "cn = DOD ID CA-59, ou = PKI, ou = DoD, o = U.S. Government, c = US" }))
        .await;
    assert_eq!(rule.status, 201, "{}", rule.text());
    assert_eq!(rule.json()["domain"], "mail.mil");
    assert_eq!(rule.json()["san_kind"], "email");
    assert_eq!(rule.json()["issuer_dn"], ca);
    app.post("/api/v1/admin/mapping-rules", t, &json!({ "san": "email", "domain": "mail.mil", "issuer_dn": ca })).await.problem(409);
    assert_eq!(app.post("/api/v1/admin/mapping-rules", t, &json!({ "san": "dns", "domain": "mail.mil", "issuer_dn": ca })).await.problem(422)["field"], "san");
    assert_eq!(app.post("/api/v1/admin/mapping-rules", t, &json!({ "san": "upn", "domain": "a b", "issuer_dn": ca })).await.problem(422)["field"], "domain");
    assert_eq!(app.post("/api/v1/admin/mapping-rules", t, &json!({ "san": "upn", "domain": "mil", "issuer_dn": "x" })).await.problem(422)["field"], "issuer_dn");
    assert_eq!(app.post("/api/v1/admin/mapping-rules", t, &json!({ "san": "upn", "domain": "mil" })).await.problem(422)["field"], "issuer_dn");
    let rule_path = format!("/api/v1/admin/mapping-rules/{}", rule.json()["id"].as_str().unwrap());
    assert_eq!(app.get(&rule_path, t).await.json(), rule.json());
    assert_eq!(app.delete(&rule_path, t).await.status, 200);

    // Thumbprint mappings.
    let mapping = app
        .post("/api/v1/admin/thumbprint-mappings", t, &json!({ "fingerprint": fingerprint(60).to_uppercase(), "principal": "svc:billing" }))
        .await;
    assert_eq!(mapping.status, 201, "{}", mapping.text());
    assert_eq!(mapping.json()["fingerprint"], fingerprint(60));
    app.post("/api/v1/admin/thumbprint-mappings", t, &json!({ "fingerprint": fingerprint(60), "principal": "x" })).await.problem(409);
    assert_eq!(
        app.post("/api/v1/admin/thumbprint-mappings", t, &json!({ "fingerprint": fingerprint(61), "principal": "p".repeat(300) })).await.problem(422)["field"],
        "principal"
    );
    let mapping_path = format!("/api/v1/admin/thumbprint-mappings/{}", fingerprint(60));
    assert_eq!(app.get(&mapping_path, t).await.json(), mapping.json());
    assert_eq!(app.get("/api/v1/admin/thumbprint-mappings", t).await.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.delete(&mapping_path, t).await.status, 200);

    // Constraints.
    let constraint = app.post("/api/v1/admin/constraints", t, &json!({ "kind": "required_policy_oid", "value": "2.16.840.1.101.3.2.1.3.13" })).await;
    assert_eq!(constraint.status, 201, "{}", constraint.text());
    app.post("/api/v1/admin/constraints", t, &json!({ "kind": "required_policy_oid", "value": "2.16.840.1.101.3.2.1.3.13" })).await.problem(409);
    assert_eq!(app.post("/api/v1/admin/constraints", t, &json!({ "kind": "colour", "value": "red" })).await.problem(422)["field"], "kind");
    let constraint_path = format!("/api/v1/admin/constraints/{}", constraint.json()["id"].as_str().unwrap());
    assert_eq!(app.get(&constraint_path, t).await.json(), constraint.json());
    assert_eq!(app.get("/api/v1/admin/constraints", t).await.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.delete(&constraint_path, t).await.status, 200);
}

async fn audit_log_records_who_what_when(app: &TestApp) {
    let fp = fingerprint(70);
    let bound = app.post(CARDS, &app.a.token, &bind_body(&app.a.user.id, &fp)).await;
    let revoked = app.delete(&format!("{CARDS}/{fp}"), &app.a.token).await;
    let audit = app.get("/api/v1/admin/audit?limit=2", &app.a.token).await.json();
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "smartcard.revoke");
    assert_eq!(items[0]["target"], fp);
    assert_eq!(items[0]["snapshot_version"], revoked.version());
    assert_eq!(items[1]["action"], "smartcard.bind");
    assert_eq!(items[1]["snapshot_version"], bound.version());
    assert_eq!(items[1]["detail"]["user_id"], app.a.user.id);
    assert!(items[0]["actor"].as_str().unwrap().starts_with("token:"));
    assert!(certbind_control_plane::time::parse_rfc3339(items[0]["at"].as_str().unwrap()).is_some());
    assert!(audit["next_cursor"].is_string());
    // Paging goes on to the fixture's own entries; filtering by action.
    let next = app.get(&format!("/api/v1/admin/audit?cursor={}", audit["next_cursor"].as_str().unwrap()), &app.a.token).await.json();
    assert!(next["items"].as_array().unwrap().iter().all(|e| e["id"].as_i64() < items[1]["id"].as_i64()));
    let binds = app.get("/api/v1/admin/audit?action=smartcard.bind", &app.a.token).await.json();
    assert_eq!(binds["items"].as_array().unwrap().len(), 1);
    // Org B sees none of it.
    let b_audit = app.get("/api/v1/admin/audit", &app.b.token).await.json();
    assert!(b_audit["items"].as_array().unwrap().iter().all(|e| e["org_id"] == app.b.org.id));
    assert!(!b_audit.to_string().contains(&fp));
    app.get("/api/v1/admin/audit?cursor=abc", &app.a.token).await.problem(422);
}

async fn health_metrics_and_openapi(app: &TestApp) {
    let health = app.send("GET", "/healthz", &[], Vec::new()).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    // Without a signer there is no snapshot: not ready, and the snapshot routes say why.
    app.send("GET", "/readyz", &[], Vec::new()).await.problem(503);
    app.send("GET", "/api/v1/snapshot", &[], Vec::new()).await.problem(401);
    app.snapshot("/api/v1/snapshot", &[]).await.problem(503);
    assert_eq!(app.send("GET", "/api/v1/snapshot/keys", &[], Vec::new()).await.json(), json!({ "keys": [] }));

    assert_eq!(app.post(CARDS, &app.a.token, &bind_body(&app.a.user.id, &fingerprint(80))).await.status, 201);
    assert_eq!(app.delete(&format!("{CARDS}/{}", fingerprint(80)), &app.a.token).await.status, 200);
    let metrics = app.send("GET", "/metrics", &[], Vec::new()).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    for line in [
        "certbind_http_requests_total{method=\"POST\",route=\"/api/v1/admin/smartcards\",status=\"201\"} 1",
        "certbind_http_requests_total{method=\"DELETE\",route=\"/api/v1/admin/smartcards/{fingerprint}\",status=\"200\"} 1",
        "certbind_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"503\"} 1",
        "certbind_binds_total 1",
        "certbind_revokes_total 1",
        "certbind_identity_version 2",
        "certbind_snapshot_version 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }

    let doc = app.send("GET", "/api/v1/openapi.json", &[], Vec::new()).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/admin/smartcards"]["post"]["requestBody"].is_object());
}
