//! What a card's certificate says, shown by the bind answer, `GET …/smartcards/{fingerprint}`,
//! the list and the command line, with the test PKI's PIV cards; and Card Authentication
//! certificates refused at binding unless the org allows them. On SQLite and PostgreSQL.

mod common;

use common::process::{run, run_ok};
use certbind_control_plane::db::{self, Actor};
use common::{bind_body, fingerprint, Store, TestApp, Transport};
use serde_json::{json, Value};
use sqlx::Row;

on_every_store_and_transport!(
    piv_authentication_facts_are_shown_wherever_the_binding_is,
    a_binding_by_fields_says_its_facts_are_unknown,
    card_authentication_is_refused_unless_the_org_allows_it,
    a_pem_exported_by_openssl_pkcs12_binds_as_it_is,
    answers_name_what_the_stored_dn_writes_as_an_oid,
);

const CARDS: &str = "/api/v1/admin/smartcards";
const PIV_AUTH: &str = include_str!("../../tests/pki/piv-auth.pem");
const PIV_CARD_AUTH: &str = include_str!("../../tests/pki/piv-card-auth.pem");
/// John R. Roe, whose subject carries an emailAddress.
const PIV_AUTH_2: &str = include_str!("../../tests/pki/piv-auth-2.pem");
/// `openssl x509 -fingerprint -sha256` of the two.
const PIV_AUTH_FINGERPRINT: &str = "88385f9ffede1a99ec5317726375bb6ff317a5c3061d92a0695a24753a46d049";
const PIV_CARD_AUTH_FINGERPRINT: &str = "9a8af3c663524732dcc031c03775c6121e6461ca9a27fcba55041efaea803504";

/// tests/pki/README.md's Jane Q. Doe, fact by fact.
fn jane_facts() -> Value {
    json!({
        "certificate_type": "piv_authentication",
        "upns": ["1234567890@mil"],
        "emails": ["jane.doe@example.mil"],
        "uris": ["urn:uuid:3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81"],
        "card_uuid": "3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81",
        "fascn": {
            "digits": "99999999999999111234567890112232",
            "agency_code": "9999",
            "system_code": "9999",
            "credential_number": "999999",
            "credential_series": "1",
            "individual_credential_issue": "1",
            "person_identifier": "1234567890",
            "organizational_category": "1",
            "organizational_identifier": "1223",
            "association_category": "2"
        },
        "policy_oids": ["2.16.840.1.101.3.2.1.3.13"],
        "extended_key_usages": ["1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.20.2.2"],
        "public_key": { "algorithm": "RSA", "curve": null, "bits": 2048 }
    })
}

async fn piv_authentication_facts_are_shown_wherever_the_binding_is(app: &TestApp) {
    let created = app.post(CARDS, &app.a.token, &json!({ "user_id": app.a.user.id, "certificate_pem": PIV_AUTH })).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let link = created.json();
    assert_eq!(link["fingerprint"], PIV_AUTH_FINGERPRINT);
    assert_eq!(link["facts"], jane_facts());

    let got = app.get(&format!("{CARDS}/{PIV_AUTH_FINGERPRINT}"), &app.a.token).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json(), link, "the facts are read back from the certificate kept");
    assert_eq!(app.get(CARDS, &app.a.token).await.json()["items"], json!([link]));

    // Relabelled, disabled and revoked, the answer still carries them.
    let patched = app.patch(&format!("{CARDS}/{PIV_AUTH_FINGERPRINT}"), &app.a.token, &json!({ "enabled": false })).await;
    assert_eq!(patched.json()["facts"], jane_facts());
    let revoked = app.delete(&format!("{CARDS}/{PIV_AUTH_FINGERPRINT}"), &app.a.token).await;
    assert_eq!(revoked.json()["facts"], jane_facts());
}

async fn a_binding_by_fields_says_its_facts_are_unknown(app: &TestApp) {
    let fp = fingerprint(7);
    let created = app.post(CARDS, &app.a.token, &bind_body(&app.a.user.id, &fp)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["facts"], Value::Null);
    let got = app.get(&format!("{CARDS}/{fp}"), &app.a.token).await.json();
    assert!(got.as_object().unwrap().contains_key("facts"), "{got}");
    assert_eq!(got["facts"], Value::Null);
}

async fn card_authentication_is_refused_unless_the_org_allows_it(app: &TestApp) {
    let body = json!({ "user_id": app.b.user.id, "certificate_pem": PIV_CARD_AUTH });
    let before = app.dump().await;
    let p = app.post(CARDS, &app.b.token, &body).await.problem(422);
    assert_eq!(p["type"], "urn:certbind:problem:validation");
    assert_eq!(p["field"], "certificate_pem");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.starts_with("certificate_pem: is a PIV Card Authentication certificate"), "{p}");
    assert!(detail.contains("without the PIN"), "{p}");
    assert_eq!(app.dump().await, before, "a refused bind stored something");

    // Only a super-admin changes what an org allows.
    let org = format!("/api/v1/admin/orgs/{}", app.b.org.id);
    app.patch(&org, &app.b.token, &json!({ "allow_card_authentication": true })).await.problem(403);
    let allowed = app.patch(&org, &app.a.token, &json!({ "allow_card_authentication": true })).await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!((allowed.json()["allow_card_authentication"].clone(), allowed.json()["enabled"].clone()), (json!(true), json!(true)));
    assert_eq!(app.get(&org, &app.a.token).await.json()["allow_card_authentication"], true);
    app.patch(&org, &app.a.token, &json!({})).await.problem(422);

    let created = app.post(CARDS, &app.b.token, &body).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let facts = &created.json()["facts"];
    assert_eq!(created.json()["fingerprint"], PIV_CARD_AUTH_FINGERPRINT);
    assert_eq!(facts["certificate_type"], "card_authentication");
    assert_eq!(facts["extended_key_usages"], json!(["2.16.840.1.101.3.6.8"]));
    assert_eq!(facts["policy_oids"], json!(["2.16.840.1.101.3.2.1.3.17"]));
    assert_eq!(facts["public_key"], json!({ "algorithm": "EC", "curve": "P-256", "bits": 256 }));
    assert_eq!(facts["upns"], json!([]));

    // Another org still refuses it: the allowance is the org's own.
    app.delete(&format!("{CARDS}/{PIV_CARD_AUTH_FINGERPRINT}"), &app.b.token).await;
    let p = app.post(CARDS, &app.a.token, &json!({ "user_id": app.a.user.id, "certificate_pem": PIV_CARD_AUTH })).await.problem(422);
    assert_eq!(p["field"], "certificate_pem");
}

/// The stored DN keeps the matching form (dotted OID, `#hex`); answers name the attribute, and
/// the displayed text reads back to what is stored, so it can be sent back as a filter.
async fn answers_name_what_the_stored_dn_writes_as_an_oid(app: &TestApp) {
    const SHOWN: &str = "emailAddress=john.roe@example.mil,CN=John R. Roe+UID=jroe,OU=People,O=Example\\, Inc.,C=US";
    let created = app.post(CARDS, &app.a.token, &json!({ "user_id": app.a.user.id, "certificate_pem": PIV_AUTH_2 })).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let link = created.json();
    assert_eq!(link["subject_dn"], SHOWN);
    let fp = link["fingerprint"].as_str().unwrap().to_string();

    let fingerprint = certbind_shared::Fingerprint::from_canonical_hex(&fp).unwrap();
    let stored = db::smartcards::get(&app.db, &app.a.org.id, &fingerprint).await.unwrap().expect("the binding");
    assert!(stored.subject_dn.starts_with("1.2.840.113549.1.9.1=#16146a6f686e"), "{}", stored.subject_dn);
    assert_eq!(certbind_shared::certificate::dn::canonical_dn(SHOWN).unwrap(), stored.subject_dn);
    assert_eq!(app.get(&format!("{CARDS}/{fp}"), &app.a.token).await.json()["subject_dn"], SHOWN);
    let listed = app.get(&format!("{CARDS}?issuer={}", urlencode(link["issuer_dn"].as_str().unwrap())), &app.a.token).await.json();
    assert!(listed["items"].as_array().unwrap().iter().any(|item| item["subject_dn"] == SHOWN), "{listed}");
}

fn urlencode(text: &str) -> String {
    text.bytes().map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
}

/// What `openssl pkcs12 -nokeys` writes for Jane's card exported with its key (and, with
/// `chain`, the issuing CA): each certificate behind its `Bag Attributes` and OpenSSL's
/// `subject=`/`issuer=` lines.
fn pkcs12_nokeys(chain: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pki = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/pki");
    let p12 = dir.path().join("jane.p12");
    let mut export = std::process::Command::new("openssl");
    export.args(["pkcs12", "-export", "-name", "Jane PIV", "-passout", "pass:test"]);
    export.args(["-in", &format!("{pki}/piv-auth.pem"), "-inkey", &format!("{pki}/piv-auth.key"), "-out"]).arg(&p12);
    if chain {
        export.args(["-certfile", &format!("{pki}/piv-issuing-ca.pem")]);
    }
    let status = export.status().expect("running openssl");
    assert!(status.success(), "openssl pkcs12 -export failed");
    let out = std::process::Command::new("openssl")
        .args(["pkcs12", "-nokeys", "-passin", "pass:test", "-in"])
        .arg(&p12)
        .output()
        .expect("running openssl");
    assert!(out.status.success(), "openssl pkcs12 -nokeys: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

async fn a_pem_exported_by_openssl_pkcs12_binds_as_it_is(app: &TestApp) {
    let exported = pkcs12_nokeys(false);
    assert!(exported.starts_with("Bag Attributes"), "{exported}");
    let created = app.post(CARDS, &app.a.token, &json!({ "user_id": app.a.user.id, "certificate_pem": exported })).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["fingerprint"], PIV_AUTH_FINGERPRINT);
    assert_eq!(created.json()["facts"], jane_facts());

    // With the CA certificate beside it, still exactly one certificate is wanted.
    let with_chain = pkcs12_nokeys(true);
    let p = app.post(CARDS, &app.b.token, &json!({ "user_id": app.b.user.id, "certificate_pem": with_chain })).await.problem(422);
    assert_eq!(p["field"], "certificate_pem");
    assert!(p["detail"].as_str().unwrap().contains("holds 2 certificates"), "{p}");
}

/// The command line applies the same rule and prints what it read from the card, on stderr
/// beside the fingerprint on stdout.
#[tokio::test]
async fn the_command_line_shows_the_facts_and_refuses_card_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let env: [(&str, &str); 0] = [];
    run_ok(dir.path(), &env, &["org", "create", "acme"]);
    run_ok(dir.path(), &env, &["user", "create", "--org", "acme", "jane"]);
    std::fs::write(dir.path().join("piv-auth.pem"), PIV_AUTH).unwrap();
    std::fs::write(dir.path().join("card-auth.pem"), PIV_CARD_AUTH).unwrap();

    let bound = run(dir.path(), &env, &["card", "bind", "--org", "acme", "--user", "jane", "--pem", "piv-auth.pem"]);
    assert!(bound.status.success(), "{}", String::from_utf8_lossy(&bound.stderr));
    assert_eq!(String::from_utf8_lossy(&bound.stdout).trim(), PIV_AUTH_FINGERPRINT);
    assert_eq!(
        String::from_utf8_lossy(&bound.stderr),
        "certificate type: piv_authentication\n\
         UPN: 1234567890@mil\n\
         email: jane.doe@example.mil\n\
         URI: urn:uuid:3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81\n\
         card UUID: 3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81\n\
         FASC-N: 99999999999999111234567890112232 (agency 9999, system 9999, credential 999999, series 1, issue 1, \
         PI 1234567890, OC 1, OI 1223, POA 2)\n\
         policies: 2.16.840.1.101.3.2.1.3.13\n\
         EKUs: 1.3.6.1.5.5.7.3.2, 1.3.6.1.4.1.311.20.2.2\n\
         key: RSA 2048 bits\n"
    );

    let args = ["card", "bind", "--org", "acme", "--user", "jane", "--pem", "card-auth.pem"];
    let refused = run(dir.path(), &env, &args);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("certificate_pem") && stderr.contains("PIV Card Authentication certificate"), "{stderr}");

    assert_eq!(
        run_ok(dir.path(), &env, &["org", "card-authentication", "--org", "acme", "allow"]),
        format!("org {} (acme) allows Card Authentication certificates", run_ok(dir.path(), &env, &["org", "list"]).split('\t').next().unwrap())
    );
    assert_eq!(run_ok(dir.path(), &env, &args), PIV_CARD_AUTH_FINGERPRINT);
}

/// Taking the allowance back waits for a bind in flight on PostgreSQL: the bind reads the
/// allowance under the change lock, and the revocation takes that lock too, so it cannot commit
/// between the bind's check and the bind's own commit (SQLite's single writer orders them anyway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_card_authentication_waits_for_a_bind_in_flight() {
    let test = "postgres::revoking_card_authentication_waits_for_a_bind_in_flight";
    let Some(app) = TestApp::start(Store::Postgres, Transport::Oneshot, test).await else { return };
    let org_id = app.b.org.id.clone();
    let actor = Actor::cli(org_id.clone());
    db::orgs::set_allow_card_authentication(&app.db, &actor, &org_id, true).await.unwrap();

    // A bind that has checked the allowance and not yet committed.
    let mut bind = app.db.begin_change().await.unwrap();
    let row = sqlx::query("SELECT allow_card_authentication FROM orgs WHERE id = $1").bind(&org_id).fetch_one(&mut *bind).await.unwrap();
    assert_eq!(row.try_get::<i64, _>(0).unwrap(), 1);

    let revoke = {
        let (db, actor, org_id) = (app.db.clone(), actor.clone(), org_id.clone());
        tokio::spawn(async move { db::orgs::set_allow_card_authentication(&db, &actor, &org_id, false).await })
    };
    // The revocation either commits (the race is open) or is seen waiting for the lock.
    let mut seen_waiting = false;
    for _ in 0..3000 {
        assert!(!revoke.is_finished(), "the revocation committed while a bind held the change lock");
        let waiting = sqlx::query(
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(app.db.reader())
        .await
        .unwrap();
        if waiting.try_get::<i64, _>("n").unwrap() > 0 {
            seen_waiting = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(seen_waiting, "the revocation neither committed nor waited for the change lock");
    assert!(!revoke.is_finished());

    bind.commit().await.unwrap();
    let org = revoke.await.unwrap().expect("the revocation commits once the bind has");
    assert!(!org.allow_card_authentication);
    assert!(!db::orgs::get(&app.db, &org_id).await.unwrap().unwrap().allow_card_authentication);
    app.finish().await;
}
