//! Owners at the API: platform rules are written by super-admins only and listed to them;
//! principals stay in their owner's namespace; one fingerprint, one SAN claim, one owner;
//! issuer DNs are parsed; binding refuses what could never authenticate anyone; a plain admin
//! cannot remove the super-admin; audit rows land where the change was made. On SQLite and
//! PostgreSQL.

mod common;

use common::{bind_body, cac_doe, cac_roe, fingerprint, Store, TestApp, Transport};
use serde_json::{json, Value};

on_every_store!(
    platform_rules_are_for_super_admins,
    principals_stay_in_their_namespace,
    one_fingerprint_one_owner,
    san_rules_are_claimed_once,
    issuer_dns_are_parsed_and_stored_canonical,
    binding_refuses_what_cannot_authenticate,
    a_plain_admin_cannot_remove_the_super_admin,
    audit_rows_land_where_the_change_was_made,
);

use common::{ec_jwks as jwks, DOD_CA as CA};

async fn start(store: Store, test: &str) -> TestApp {
    TestApp::start(store, Transport::Oneshot, test).await.expect("test app")
}

fn items(r: &common::Resp) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"].as_array().unwrap().clone()
}

async fn platform_rules_are_for_super_admins(store: Store, test: &str) {
    let app = start(store, test).await;
    let (sa, plain) = (&app.a.token, &app.b.token);
    let routes: [(&str, Value); 5] = [
        ("/api/v1/admin/blocklist", json!({ "fingerprint": fingerprint(1), "scope": "platform" })),
        ("/api/v1/admin/issuers", json!({ "issuer": "https://idp.example", "jwks": jwks(), "scope": "platform" })),
        ("/api/v1/admin/mapping-rules", json!({ "san": "upn", "domain": "mil", "issuer_dn": CA, "scope": "platform" })),
        ("/api/v1/admin/thumbprint-mappings", json!({ "fingerprint": fingerprint(2), "principal": "spiffe://x/api", "scope": "platform" })),
        ("/api/v1/admin/constraints", json!({ "kind": "required_policy_oid", "value": "1.2.3", "scope": "platform" })),
    ];
    for (path, body) in &routes {
        let before = app.dump().await;
        let p = app.post(path, plain, body).await.problem(403);
        assert!(p["detail"].as_str().unwrap().contains("super-admin"), "{path}: {p}");
        assert_eq!(app.dump().await, before, "{path}: a refused platform rule stored something");
        let created = app.post(path, sa, body).await;
        assert_eq!(created.status, 201, "{path}: {}", created.text());
        assert_eq!(created.json()["scope"], "platform", "{path}");
        assert_eq!(created.json()["org_id"], Value::Null, "{path}");
        // A super-admin lists the platform's rules beside its org's; `scope` narrows.
        assert_eq!(items(&app.get(path, sa).await).len(), 1, "{path}");
        assert_eq!(items(&app.get(&format!("{path}?scope=platform"), sa).await).len(), 1, "{path}");
        assert_eq!(items(&app.get(&format!("{path}?scope=org"), sa).await).len(), 0, "{path}");
        // A plain admin sees none of it, and cannot read or delete it by id.
        assert_eq!(items(&app.get(path, plain).await).len(), 0, "{path}");
        assert_eq!(items(&app.get(&format!("{path}?scope=platform"), plain).await).len(), 0, "{path}");
        let id = created.json().get("id").and_then(Value::as_str).map_or_else(|| fingerprint(2), str::to_string);
        app.get(&format!("{path}/{id}"), plain).await.problem(404);
        app.delete(&format!("{path}/{id}"), plain).await.problem(404);
        assert_eq!(app.get(&format!("{path}/{id}"), sa).await.json(), created.json(), "{path}");
    }
    // The platform's audit log is a super-admin's.
    let audit = items(&app.get("/api/v1/admin/audit?scope=platform", sa).await);
    // The five rules, beside the fixture's proxy credential.
    assert_eq!(audit.iter().filter(|e| e["action"] != "proxy_credential.create").count(), 5, "{audit:?}");
    app.get("/api/v1/admin/audit?scope=platform", plain).await.problem(403);
    // An org rule and a platform rule of the same issuer URL coexist.
    let own = app.post("/api/v1/admin/issuers", sa, &json!({ "issuer": "https://idp.example", "jwks": jwks() })).await;
    assert_eq!(own.status, 201, "{}", own.text());
    assert_eq!(own.json()["scope"], "org");
    app.finish().await;
}

async fn principals_stay_in_their_namespace(store: Store, test: &str) {
    let app = start(store, test).await;
    let path = "/api/v1/admin/thumbprint-mappings";
    for reserved in [format!("auth:account:user:{}", app.b.user.id), format!("auth:account:org:{}:svc", app.b.org.id)] {
        let body = json!({ "fingerprint": fingerprint(10), "principal": reserved, "scope": "platform" });
        assert_eq!(app.post(path, &app.a.token, &body).await.problem(422)["field"], "principal", "{reserved}");
    }
    // An org's name is composed under its own namespace by the filter, whatever it says.
    let body = json!({ "fingerprint": fingerprint(11), "principal": format!("auth:account:user:{}", app.a.user.id) });
    assert_eq!(app.post(path, &app.b.token, &body).await.status, 201);
    assert_eq!(app.post(path, &app.b.token, &json!({ "fingerprint": fingerprint(12), "principal": "a b" })).await.problem(422)["field"], "principal");
    app.finish().await;
}

async fn one_fingerprint_one_owner(store: Store, test: &str) {
    let app = start(store, test).await;
    let maps = "/api/v1/admin/thumbprint-mappings";
    // Mapped in org A: org B can neither map nor bind it.
    assert_eq!(app.post(maps, &app.a.token, &json!({ "fingerprint": fingerprint(20), "principal": "svc" })).await.status, 201);
    app.post(maps, &app.b.token, &json!({ "fingerprint": fingerprint(20), "principal": "svc" })).await.problem(409);
    app.post(maps, &app.a.token, &json!({ "fingerprint": fingerprint(20), "principal": "svc", "scope": "platform" })).await.problem(409);
    let p = app.post("/api/v1/admin/smartcards", &app.b.token, &bind_body(&app.b.user.id, &fingerprint(20))).await.problem(409);
    assert!(p["detail"].as_str().unwrap().starts_with("the certificate cannot be bound"), "{p}");
    // Bound in org B: nobody maps it.
    assert_eq!(app.post("/api/v1/admin/smartcards", &app.b.token, &bind_body(&app.b.user.id, &fingerprint(21))).await.status, 201);
    for (token, scope) in [(&app.a.token, "org"), (&app.a.token, "platform"), (&app.b.token, "org")] {
        let body = json!({ "fingerprint": fingerprint(21), "principal": "svc", "scope": scope });
        app.post(maps, token, &body).await.problem(409);
    }
    app.finish().await;
}

async fn san_rules_are_claimed_once(store: Store, test: &str) {
    let app = start(store, test).await;
    let rules = "/api/v1/admin/mapping-rules";
    app.assign_domain(&app.b.org.id, "mil").await;
    let rule = json!({ "san": "upn", "domain": "mil", "issuer_dn": CA });
    assert_eq!(app.post(rules, &app.b.token, &rule).await.status, 201);
    // Another org claiming the same (kind, domain, issuer): 409, without naming the holder.
    let p = app.post(rules, &app.a.token, &json!({ "san": "upn", "domain": "MIL", "issuer_dn": CA, "scope": "org" })).await.problem(409);
    // The super-admin's answer names the holder, so it can resolve the dispute.
    assert!(p["detail"].as_str().unwrap().contains(&app.b.org.id), "{p}");
    let own = app.post(rules, &app.b.token, &rule).await.problem(409);
    assert!(own["detail"].as_str().unwrap().contains("cannot be created here"), "{own}");
    // The platform cannot take it over either.
    app.post(rules, &app.a.token, &json!({ "san": "upn", "domain": "mil", "issuer_dn": CA, "scope": "platform" })).await.problem(409);
    // Another issuer, or another kind, is another claim.
    assert_eq!(app.post(rules, &app.a.token, &json!({ "san": "upn", "domain": "mil", "issuer_dn": "CN=Other CA" })).await.status, 201);
    assert_eq!(app.post(rules, &app.a.token, &json!({ "san": "email", "domain": "mil", "issuer_dn": CA })).await.status, 201);
    // A plain org admin's 409 does not say who holds a claim, nor whether it is its own.
    let p = app.post(rules, &app.b.token, &json!({ "san": "email", "domain": "mil", "issuer_dn": CA })).await.problem(409);
    assert_eq!(p, own);
    app.finish().await;
}

async fn issuer_dns_are_parsed_and_stored_canonical(store: Store, test: &str) {
    let app = start(store, test).await;
    let block = "/api/v1/admin/blocklist";
    for (n, spelling) in [
        CA,
        "CN=DOD ID CA-59, OU=PKI, OU=DoD, O=U.S. Government, C=US",
        "cn = DOD ID CA-59 ; ou=PKI ; ou=DoD ; o=U.S. Government ; c=US",
        "2.5.4.3=DOD ID CA-59,2.5.4.11=PKI,2.5.4.11=DoD,2.5.4.10=U.S. Government,2.5.4.6=US",
        "/C=US/O=U.S. Government/OU=DoD/OU=PKI/CN=DOD ID CA-59",
        "CN=DOD\\20ID\\20CA-59,OU=PKI,OU=DoD,O=U.S.\\ Government,C=US",
    ]
    .into_iter()
    .enumerate()
    {
        let r = app.post(block, &app.a.token, &json!({ "issuer_dn": spelling, "serial": format!("{:02x}", n + 1) })).await;
        assert_eq!(r.status, 201, "{spelling}: {}", r.text());
        assert_eq!(r.json()["issuer_dn"], CA, "{spelling}");
    }
    // Unparseable: 422 naming the field; nothing stored.
    for bad in ["x", "CN", "FOO=bar", "CN=a\\", "CN=#zz", "CN=a\u{0}b", ""] {
        let p = app.post(block, &app.a.token, &json!({ "issuer_dn": bad, "serial": "99" })).await.problem(422);
        assert_eq!(p["field"], "issuer_dn", "{bad:?}: {p}");
    }
    // OpenSSL's default (country-first) order would silently revoke nothing: refused with the
    // RFC 4514 order to use ...
    let oneline = "C = US, O = U.S. Government, OU = DoD, OU = PKI, CN = DOD ID CA-59";
    let p = app.post(block, &app.a.token, &json!({ "issuer_dn": oneline, "serial": "77" })).await.problem(422);
    assert!(p["detail"].as_str().unwrap().contains(CA), "{p}");
    // ... unless a bound certificate's issuer really is written so.
    let mut card = bind_body(&app.a.user.id, &fingerprint(30));
    card["issuer_dn"] = json!("/CN=Odd CA/O=Example/C=US");
    let bound = app.post("/api/v1/admin/smartcards", &app.a.token, &card).await;
    assert_eq!(bound.json()["issuer_dn"], "C=US,O=Example,CN=Odd CA");
    let r = app.post(block, &app.a.token, &json!({ "issuer_dn": "C=US, O=Example, CN=Odd CA", "serial": "78" })).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Only the caller's own bindings vouch for such a DN: another org's answer is the same as
    // if no card of that issuer were bound anywhere, so it learns nothing of org A's cards.
    let elsewhere = json!({ "issuer_dn": "C=US, O=Example, CN=Odd CA", "serial": "79" });
    let p = app.post(block, &app.b.token, &elsewhere).await.problem(422);
    let never = json!({ "issuer_dn": "C=US, O=Example, CN=Never Bound CA", "serial": "79" });
    let q = app.post(block, &app.b.token, &never).await.problem(422);
    assert_eq!(p["detail"].as_str().unwrap().replace("Odd CA", "Never Bound CA"), q["detail"].as_str().unwrap());
    // The slash form names it for anyone.
    let slash = json!({ "issuer_dn": "/CN=Odd CA/O=Example/C=US", "serial": "79" });
    assert_eq!(app.post(block, &app.b.token, &slash).await.status, 201);
    // Serials normalised.
    let r = app.post(block, &app.a.token, &json!({ "issuer_dn": CA, "serial": "0x00:00:AB:CD" })).await;
    assert_eq!(r.json()["serial"], "abcd");
    app.finish().await;
}

async fn binding_refuses_what_cannot_authenticate(store: Store, test: &str) {
    let app = start(store, test).await;
    let cards = "/api/v1/admin/smartcards";
    let pem = |name: &str| std::fs::read_to_string(format!("{}/../tests/pki/{name}.pem", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let before = app.dump().await;
    let cases = [
        ("expired", pem("expired"), "expired"),
        ("a CA certificate", pem("piv-issuing-ca"), "CA certificate"),
        ("a chain", format!("{}{}", pem("piv-auth"), pem("piv-issuing-ca")), "2 certificates"),
    ];
    for (what, text, says) in cases {
        let p = app.post(cards, &app.a.token, &json!({ "user_id": app.a.user.id, "certificate_pem": text })).await.problem(422);
        assert!(p["detail"].as_str().unwrap().contains(says), "{what}: {p}");
    }
    // Fields alone: an expired certificate too.
    let mut expired = bind_body(&app.a.user.id, &fingerprint(40));
    expired["not_before"] = json!("2019-01-01T00:00:00Z");
    expired["not_after"] = json!("2020-01-01T00:00:00Z");
    assert_eq!(app.post(cards, &app.a.token, &expired).await.problem(422)["field"], "not_after");
    assert_eq!(app.dump().await, before, "a refused bind stored something");

    // Blocklisted by an applicable rule: the org's own, or the platform's.
    let doe = cac_doe();
    let fp = doe.facts["fingerprint"].as_str().unwrap();
    let entry = app.post("/api/v1/admin/blocklist", &app.a.token, &json!({ "fingerprint": fp })).await;
    let body = json!({ "user_id": app.a.user.id, "certificate_pem": doe.pem });
    let p = app.post(cards, &app.a.token, &body).await.problem(422);
    assert!(p["detail"].as_str().unwrap().contains("blocklist"), "{p}");
    // Org A's entry does not stop org B binding the same certificate.
    let in_b = app.post(cards, &app.b.token, &json!({ "user_id": app.b.user.id, "certificate_pem": doe.pem })).await;
    assert_eq!(in_b.status, 201, "{}", in_b.text());
    app.delete(&format!("/api/v1/admin/blocklist/{}", entry.json()["id"].as_str().unwrap()), &app.a.token).await;
    // A platform revocation by issuer and serial stops everyone.
    let roe = cac_roe();
    let revoke = json!({ "issuer_dn": roe.facts["issuer_dn"], "serial": roe.facts["serial"], "scope": "platform" });
    assert_eq!(app.post("/api/v1/admin/blocklist", &app.a.token, &revoke).await.status, 201);
    for (token, user) in [(&app.a.token, &app.a.user.id), (&app.b.token, &app.b.user.id)] {
        let p = app.post(cards, token, &json!({ "user_id": user, "certificate_pem": roe.pem })).await.problem(422);
        assert!(p["detail"].as_str().unwrap().contains("platform's blocklist"), "{p}");
    }
    app.finish().await;
}

async fn a_plain_admin_cannot_remove_the_super_admin(store: Store, test: &str) {
    let app = start(store, test).await;
    // A super-admin mints a plain token into org A; that token cannot delete the super-admin.
    let plain = app.post("/api/v1/admin/tokens", &app.a.token, &json!({ "label": "plain" })).await.json();
    let plain_secret = plain["token"].as_str().unwrap();
    let tokens = items(&app.get("/api/v1/admin/tokens", &app.a.token).await);
    let sa_id = tokens.iter().find(|t| t["super_admin"] == true).unwrap()["id"].as_str().unwrap().to_string();
    let p = app.delete(&format!("/api/v1/admin/tokens/{sa_id}"), plain_secret).await.problem(403);
    assert!(p["detail"].as_str().unwrap().contains("super-admin"), "{p}");
    assert_eq!(items(&app.get("/api/v1/admin/tokens", &app.a.token).await).len(), 2);
    // A plain token may delete a plain one; the super-admin may delete anything in its org.
    let plain_id = plain["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/api/v1/admin/tokens/{plain_id}"), &app.a.token).await.status, 200);
    app.finish().await;
}

async fn audit_rows_land_where_the_change_was_made(store: Store, test: &str) {
    let app = start(store, test).await;
    // A super-admin of org A mints a token into org B: B's log shows it, and so does A's.
    let minted = app.post(&format!("/api/v1/admin/orgs/{}/tokens", app.b.org.id), &app.a.token, &json!({ "label": "for-b" })).await;
    assert_eq!(minted.status, 201, "{}", minted.text());
    let id = minted.json()["id"].as_str().unwrap().to_string();
    let in_b = items(&app.get("/api/v1/admin/audit?action=token.create", &app.b.token).await);
    assert!(in_b.iter().any(|e| e["target"] == id.as_str() && e["org_id"] == app.b.org.id.as_str()), "{in_b:?}");
    let in_a = items(&app.get("/api/v1/admin/audit?action=token.create", &app.a.token).await);
    assert!(in_a.iter().any(|e| e["target"] == id.as_str() && e["org_id"] == app.a.org.id.as_str()), "{in_a:?}");
    // A platform rule: the platform's log and the super-admin's org.
    let rule = app.post("/api/v1/admin/constraints", &app.a.token, &json!({ "kind": "required_policy_oid", "value": "1.2.3", "scope": "platform" })).await;
    let rule_id = rule.json()["id"].as_str().unwrap().to_string();
    let platform = items(&app.get("/api/v1/admin/audit?scope=platform", &app.a.token).await);
    assert!(platform.iter().any(|e| e["target"] == rule_id.as_str()), "{platform:?}");
    let own = items(&app.get("/api/v1/admin/audit?action=constraint.create", &app.a.token).await);
    assert!(own.iter().any(|e| e["target"] == rule_id.as_str()), "{own:?}");
    // An org's own change is filed once, in its own log.
    let before_b = items(&app.get("/api/v1/admin/audit", &app.b.token).await).len();
    app.post("/api/v1/admin/users", &app.b.token, &json!({ "name": "carol" })).await;
    assert_eq!(items(&app.get("/api/v1/admin/audit", &app.b.token).await).len(), before_b + 1);
    assert!(items(&app.get("/api/v1/admin/audit?action=user.create", &app.a.token).await).iter().all(|e| e["detail"]["name"] != "carol"));
    app.finish().await;
}
