//! CAs as a resource and CRL ingestion at the API: registration is a platform action and a CA
//! is known by its key; CRLs are verified with the registered CA's key and folded (complete,
//! delta), and every refusal answers an exact status and names its cause; two CAs of one DN
//! stay apart; the poller fetches over real HTTP with conditional GETs and backs off. CRLs are
//! made by the shared crate's DER writer and signed with the CA's P-256 key. On SQLite and
//! PostgreSQL.

mod common;

use certbind_control_plane::db::crls;
use certbind_control_plane::revocation::poller::{self, CrlCounters, PollerSettings};
use certbind_control_plane::revocation::CrlSource;
use certbind_control_plane::snapshot::NoSnapshots;
use certbind_shared::crl::testing::{
    authority_key_identifier_extension, crl_number_extension, delta_indicator_extension, entry, extension, integer,
    reason_extension, tlv, SyntheticCa,
};
use common::{cac_doe, Resp, Store, TestApp, Transport};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

on_every_store!(
    registering_a_ca_is_a_platform_action,
    crls_are_verified_folded_and_refused_exactly,
    two_cas_of_one_dn_are_two_cas,
    the_poller_fetches_conditionally_and_backs_off,
    a_crl_update_travels_as_a_delta_of_its_difference,
    crls_stored_elsewhere_reach_the_snapshot_through_the_log,
    a_ca_without_distribution_points_takes_those_its_crl_names,
    hostile_distribution_points_cost_a_bounded_fetch,
);

const DAY: i64 = 86_400;

fn now() -> i64 {
    certbind_shared::clock::now_seconds()
}

fn ca_pem(ca: &SyntheticCa) -> String {
    common::synthetic_ca::ca_certificate_pem(ca, ca.name_der(), now())
}

/// A complete CRL of `ca` numbered `number` revoking `serials`, valid a week from `this_update`.
fn crl(ca: &SyntheticCa, number: u64, this_update: i64, serials: &[u64]) -> Vec<u8> {
    let entries: Vec<u8> =
        serials.iter().map(|s| entry(&s.to_be_bytes(), this_update - DAY, &[reason_extension(1)])).collect::<Vec<_>>().concat();
    ca.sign(&ca.tbs_parts(number, this_update, Some(this_update + 7 * DAY), entries).encode())
}

/// A delta CRL on `base`: `added` revoked, `released` removed (removeFromCRL).
fn delta(ca: &SyntheticCa, number: u64, base: u64, added: &[u64], released: &[u64]) -> Vec<u8> {
    let at = now() - 60;
    let mut entries = Vec::new();
    for s in added {
        entries.extend(entry(&s.to_be_bytes(), at, &[]));
    }
    for s in released {
        entries.extend(entry(&s.to_be_bytes(), at, &[reason_extension(8)]));
    }
    let mut parts = ca.tbs_parts(number, at, Some(at + DAY), entries);
    parts.extensions.push(delta_indicator_extension(base));
    ca.sign(&parts.encode())
}

async fn upload(app: &TestApp, token: &str, body: Vec<u8>, content_type: &str) -> Resp {
    let auth = format!("Bearer {token}");
    app.send("POST", "/api/v1/admin/crls", &[("authorization", &auth), ("content-type", content_type)], body).await
}

async fn register(app: &TestApp, ca: &SyntheticCa, extra: serde_json::Value) -> String {
    let mut body = json!({ "certificate_pem": ca_pem(ca) });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let r = app.post("/api/v1/admin/cas", &app.a.token, &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["key_id"].as_str().unwrap().to_string()
}

async fn start(store: Store, test: &str) -> TestApp {
    TestApp::start(store, Transport::Oneshot, test).await.expect("test app")
}

async fn registering_a_ca_is_a_platform_action(store: Store, test: &str) {
    let app = start(store, test).await;
    let ca = SyntheticCa::new("issuing-1", "Test Card Signing CA").unwrap();
    let body = json!({ "certificate_pem": ca_pem(&ca) });

    // An org admin may neither register nor change nor remove a CA.
    let r = app.post("/api/v1/admin/cas", &app.b.token, &body).await;
    assert_eq!(r.problem(403)["type"], "urn:certbind:problem:forbidden");
    let key_id = register(&app, &ca, json!({ "crl_urls": ["http://crl.example/issuing-1.crl"] })).await;
    assert_eq!(key_id, ca.certificate().key_identifier.to_hex());
    let path = format!("/api/v1/admin/cas/{key_id}");
    let r = app.patch(&path, &app.b.token, &json!({ "require_fresh_crl": false })).await;
    r.problem(403);
    assert_eq!(app.delete(&path, &app.b.token).await.status, 403);

    // Any admin reads it: key, DN, default policy (fail closed), no CRL yet.
    let r = app.get(&path, &app.b.token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let shown = r.json();
    assert_eq!(shown["subject_dn"], "CN=Test Card Signing CA,O=certbind,C=US");
    assert_eq!(shown["key_source"], "spki_sha256");
    assert_eq!(shown["policy"], json!({ "require_fresh_crl": true, "grace_period_seconds": 86400, "fail_open": false, "crl_urls": ["http://crl.example/issuing-1.crl"] }));
    assert_eq!(shown["crl"], serde_json::Value::Null);
    assert_eq!(shown["fetches"][0]["url"], "http://crl.example/issuing-1.crl");

    // The same key twice is a conflict; a card's certificate is not a CA.
    app.post("/api/v1/admin/cas", &app.a.token, &body).await.problem(409);
    let r = app.post("/api/v1/admin/cas", &app.a.token, &json!({ "certificate_pem": cac_doe().pem })).await;
    let p = r.problem(422);
    assert_eq!(p["field"], "certificate_pem");
    assert!(p["detail"].as_str().unwrap().contains("not a CA certificate"), "{p}");

    // LDAP and https distribution points are refused, saying what to do instead.
    let other = SyntheticCa::new("issuing-2", "Other CA").unwrap();
    let ldap = json!({ "certificate_pem": ca_pem(&other), "crl_urls": ["ldap://crl.example/cn=Other%20CA?certificateRevocationList"] });
    let p = app.post("/api/v1/admin/cas", &app.a.token, &ldap).await.problem(422);
    assert_eq!(p["field"], "crl_urls");
    assert!(p["detail"].as_str().unwrap().contains("LDAP distribution point"), "{p}");
    let grace = json!({ "certificate_pem": ca_pem(&other), "grace_period_seconds": 31 * DAY });
    assert_eq!(app.post("/api/v1/admin/cas", &app.a.token, &grace).await.problem(422)["field"], "grace_period_seconds");

    // The super-admin changes the policy; the fetch list follows the URLs.
    let r = app.patch(&path, &app.a.token, &json!({ "grace_period_seconds": 60, "fail_open": true, "crl_urls": [] })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["policy"]["grace_period_seconds"], 60);
    assert_eq!(r.json()["policy"]["fail_open"], true);
    assert_eq!(r.json()["fetches"], json!([]));
    assert_eq!(app.patch(&path, &app.a.token, &json!({})).await.problem(422)["field"], "body");
    // A registration names its certificate; a policy change cannot replace it, not even for a
    // CA that is not registered.
    let unnamed = app.post("/api/v1/admin/cas", &app.a.token, &json!({ "fail_open": true })).await.problem(422);
    assert_eq!((unnamed["field"].as_str(), unnamed["detail"].as_str()), (Some("certificate_pem"), Some("certificate_pem: missing field `certificate_pem`")));
    let replaced = json!({ "certificate_pem": ca_pem(&other), "fail_open": true });
    assert_eq!(app.patch(&path, &app.a.token, &replaced).await.problem(422)["field"], "certificate_pem");
    let unknown = format!("/api/v1/admin/cas/{}", "ab".repeat(20));
    assert_eq!(app.patch(&unknown, &app.a.token, &replaced).await.problem(422)["field"], "certificate_pem");

    // Audited on the platform's log.
    let audit = app.get("/api/v1/admin/audit?scope=platform", &app.a.token).await.json();
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"ca.register") && actions.contains(&"ca.update"), "{actions:?}");

    let r = app.delete(&path, &app.a.token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.get(&path, &app.a.token).await.status, 404);
    app.finish().await;
}

async fn crls_are_verified_folded_and_refused_exactly(store: Store, test: &str) {
    let app = start(store, test).await;
    let ca = SyntheticCa::new("issuing-1", "Test Card Signing CA").unwrap();
    let key_id = register(&app, &ca, json!({})).await;
    let plain = app.b.token.clone();
    let t = now() - 3600;

    // An org admin uploads a complete CRL: taken, it applies to the CA for everyone.
    let r = upload(&app, &plain, crl(&ca, 5, t, &[0x1001, 0x1002, 0x1003]), "application/pkix-crl").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!((body["ca"].as_str(), body["crl_number"].as_str(), body["changed"].as_bool()), (Some(key_id.as_str()), Some("5"), Some(true)));
    assert_eq!((body["added"].as_u64(), body["removed"].as_u64()), (Some(3), Some(0)));
    assert_eq!(body["crl"]["entries"], 3);
    assert_eq!(body["crl"]["status"], "fresh");
    assert!(r.header("certbind-snapshot-version").is_some());
    let held = crls::held(&app.db, &key_id).await.unwrap().unwrap();
    let serials: Vec<Vec<u8>> = held.serials.iter().map(<[u8]>::to_vec).collect();
    assert_eq!(serials, vec![vec![0x10, 0x01], vec![0x10, 0x02], vec![0x10, 0x03]]);

    // The same CRL again (PEM this time) changes nothing.
    let pem = certbind_shared::crl::encode_crl_pem(&crl(&ca, 5, t, &[0x1001, 0x1002, 0x1003]));
    let r = upload(&app, &plain, pem.into_bytes(), "application/x-pem-file").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["changed"], false);
    assert_eq!(r.header("certbind-snapshot-version"), None);

    // An older one is a replay: 409, counted.
    let p = upload(&app, &plain, crl(&ca, 4, t - DAY, &[]), "application/pkix-crl").await.problem(409);
    assert!(p["detail"].as_str().unwrap().contains("CRL number 4 is below the one held (5)"), "{p}");
    let metrics = app.send("GET", "/metrics", &[], Vec::new()).await.text();
    assert!(metrics.contains("certbind_crl_replays_refused_total 1\n"), "{metrics}");
    assert!(metrics.contains(&format!("certbind_ca_crl_number{{ca=\"{key_id}\",subject=\"CN=Test Card Signing CA,O=certbind,C=US\"}} 5\n")), "{metrics}");
    assert!(metrics.contains(&format!("certbind_ca_crl_fresh{{ca=\"{key_id}\",subject=\"CN=Test Card Signing CA,O=certbind,C=US\"}} 1\n")), "{metrics}");

    // A delta on base 5: one revoked, one released.
    let r = upload(&app, &plain, delta(&ca, 6, 5, &[0x2001], &[0x1002]), "application/pkix-crl").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((r.json()["added"].as_u64(), r.json()["removed"].as_u64(), r.json()["delta"].as_bool()), (Some(1), Some(1), Some(true)));
    assert_eq!(r.json()["crl"]["crl_number"], "6");
    assert_eq!(r.json()["crl"]["base_number"], "5");
    assert_eq!(r.json()["crl"]["entries"], 3);
    // A delta whose base is not held.
    let p = upload(&app, &plain, delta(&ca, 10, 9, &[0x3001], &[]), "application/pkix-crl").await.problem(409);
    assert!(p["detail"].as_str().unwrap().contains("base CRL number 9, but CRL number 6 is held"), "{p}");

    // Signed by another key while naming this CA (its AKI and DN): does not verify.
    let impostor = SyntheticCa::new("impostor", "Test Card Signing CA").unwrap();
    let mut parts = impostor.tbs_parts(50, t, Some(t + DAY), Vec::new());
    parts.extensions = vec![authority_key_identifier_extension(&ca.certificate().key_identifier), crl_number_extension(50)];
    let p = upload(&app, &plain, impostor.sign(&parts.encode()), "application/pkix-crl").await.problem(422);
    assert_eq!(p["field"], "crl");
    assert!(p["detail"].as_str().unwrap().contains(&format!("does not verify against CA {key_id}")), "{p}");
    // A CA nobody registered.
    let p = upload(&app, &plain, crl(&impostor, 1, t, &[]), "application/pkix-crl").await.problem(422);
    assert!(p["detail"].as_str().unwrap().contains("no registered CA has key identifier"), "{p}");

    // thisUpdate tomorrow.
    let p = upload(&app, &plain, crl(&ca, 60, now() + DAY, &[]), "application/pkix-crl").await.problem(422);
    assert!(p["detail"].as_str().unwrap().contains("ahead of this server's clock"), "{p}");

    // An unknown critical extension is named.
    let mut parts = ca.tbs_parts(61, t, Some(t + DAY), Vec::new());
    parts.extensions.push(extension(&[0x2a, 0x03, 0x04], true, &tlv(0x05, &[])));
    let p = upload(&app, &plain, ca.sign(&parts.encode()), "application/pkix-crl").await.problem(422);
    assert!(p["detail"].as_str().unwrap().contains("1.2.3.4"), "{p}");

    // Garbage and a truncated CRL; a body that is neither DER nor PEM.
    let good = crl(&ca, 62, t, &[0x1001]);
    let p = upload(&app, &plain, good[..good.len() - 7].to_vec(), "application/pkix-crl").await.problem(422);
    assert!(p["detail"].as_str().unwrap().starts_with("crl: the CRL cannot be read"), "{p}");
    upload(&app, &plain, vec![0x30, 0x82, 0xff, 0xff, 0x00], "application/pkix-crl").await.problem(422);
    let p = upload(&app, &plain, b"hello".to_vec(), "application/pkix-crl").await.problem(422);
    assert!(p["detail"].as_str().unwrap().contains("BEGIN X509 CRL"), "{p}");
    let p = upload(&app, &plain, good.clone(), "application/json").await.problem(415);
    assert!(p["detail"].as_str().unwrap().contains("application/pkix-crl"), "{p}");

    // Nothing refused changed what is held.
    let still = crls::held(&app.db, &key_id).await.unwrap().unwrap();
    assert_eq!(still.crl_number, "6");

    // An expired CRL newer than the one held is taken (its revocations count), and shown stale.
    let old = now() - 30 * DAY;
    let r = upload(&app, &plain, crl(&ca, 70, old, &[0x1001]), "application/pkix-crl").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["crl"]["status"], "stale");
    assert_eq!((r.json()["added"].as_u64(), r.json()["removed"].as_u64()), (Some(0), Some(2)));

    // Audited, in the uploader's org too.
    let audit = app.get("/api/v1/admin/audit?action=crl.ingest", &plain).await.json();
    assert_eq!(audit["items"].as_array().unwrap().len(), 3, "{audit}");
    app.finish().await;
}

async fn two_cas_of_one_dn_are_two_cas(store: Store, test: &str) {
    let app = start(store, test).await;
    // Two issuing CAs of one test PKI share their DN; only their keys differ.
    let first = SyntheticCa::new("icam-1", "ICAM Test Card Signing CA").unwrap();
    let second = SyntheticCa::new("icam-2", "ICAM Test Card Signing CA").unwrap();
    let (a, b) = (register(&app, &first, json!({})).await, register(&app, &second, json!({})).await);
    assert_ne!(a, b);
    let list = app.get("/api/v1/admin/cas", &app.b.token).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    // A CRL of the second CA without an AKI: the signature tells which CA it is.
    let t = now() - 60;
    let mut parts = second.tbs_parts(3, t, Some(t + DAY), entry(&[0x42], t, &[]));
    parts.extensions = vec![crl_number_extension(3)];
    let r = upload(&app, &app.b.token, second.sign(&parts.encode()), "application/pkix-crl").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ca"], b.as_str());
    assert_eq!(crls::held(&app.db, &a).await.unwrap(), None);
    let held = crls::held(&app.db, &b).await.unwrap().unwrap();
    assert_eq!(held.serials.iter().collect::<Vec<_>>(), vec![&[0x42u8][..]]);
    app.finish().await;
}

/// A CRL distribution point: serves whatever CRL it holds with an ETag, answers 304 to a
/// matching If-None-Match, and counts requests.
#[derive(Clone, Default)]
struct Point {
    crl: Arc<Mutex<Vec<u8>>>,
    requests: Arc<AtomicUsize>,
    conditional: Arc<AtomicUsize>,
}

async fn serve_point(point: Point) -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{header, HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let handler = move |headers: HeaderMap| {
        let point = point.clone();
        async move {
            point.requests.fetch_add(1, Ordering::SeqCst);
            let body = point.crl.lock().unwrap().clone();
            let digest = <sha2::Sha256 as sha2::Digest>::digest(&body);
            let etag = format!("\"{}\"", certbind_shared::encoding::hex_lower(&digest[..8]));
            if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
                point.conditional.fetch_add(1, Ordering::SeqCst);
                return StatusCode::NOT_MODIFIED.into_response();
            }
            ([(header::CONTENT_TYPE, "application/pkix-crl".to_string()), (header::ETAG, etag)], body).into_response()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/issuing.crl", axum::routing::get(handler));
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/issuing.crl"), handle)
}

async fn the_poller_fetches_conditionally_and_backs_off(store: Store, test: &str) {
    let app = start(store, test).await;
    let ca = SyntheticCa::new("issuing-1", "Test Card Signing CA").unwrap();
    let point = Point::default();
    *point.crl.lock().unwrap() = crl(&ca, 7, now() - 60, &[0x1001, 0x1002]);
    let (url, server) = serve_point(point.clone()).await;
    let key_id = register(&app, &ca, json!({ "crl_urls": [url] })).await;
    let settings = PollerSettings::default();
    let counters = CrlCounters::default();
    let snapshots = NoSnapshots::default();
    let due = || async { crls::due_fetches(&app.db, i64::MAX, 10).await.unwrap().remove(0) };

    // A new point is due at once; its CRL is fetched and stored.
    assert_eq!(poller::poll_due(&app.db, &snapshots, &counters, &settings).await, 1);
    let held = crls::held(&app.db, &key_id).await.unwrap().unwrap();
    assert_eq!((held.crl_number.as_str(), held.serials.len()), ("7", 2));
    let shown = app.get(&format!("/api/v1/admin/cas/{key_id}"), &app.b.token).await.json();
    assert_eq!(shown["crl"]["source"], "fetch");
    assert_eq!(shown["fetches"][0]["last_result"], "updated");
    assert_eq!(shown["fetches"][0]["failures"], 0);
    // Next: half-way to nextUpdate, capped at an hour, less at most a fifth of it.
    let next = certbind_control_plane::time::parse_rfc3339(shown["fetches"][0]["next_attempt_at"].as_str().unwrap()).unwrap();
    assert!((now() + 2880 - 5..=now() + 3600).contains(&next), "{next}");
    assert_eq!(poller::poll_due(&app.db, &snapshots, &counters, &settings).await, 0, "not due again yet");

    // Fetched again: a conditional GET, answered 304.
    let outcome = poller::poll_one(&app.db, &snapshots, &counters, &settings, &due().await).await;
    assert_eq!(outcome.result, "unchanged");
    assert_eq!((point.requests.load(Ordering::SeqCst), point.conditional.load(Ordering::SeqCst)), (2, 1));

    // The CA publishes CRL 8: fetched and folded.
    *point.crl.lock().unwrap() = crl(&ca, 8, now() - 30, &[0x1001, 0x1002, 0x1003]);
    assert_eq!(poller::poll_one(&app.db, &snapshots, &counters, &settings, &due().await).await.result, "updated");
    assert_eq!(crls::held(&app.db, &key_id).await.unwrap().unwrap().serials.len(), 3);

    // A replayed CRL 7 is refused and counted.
    *point.crl.lock().unwrap() = crl(&ca, 7, now() - 60, &[0x1001]);
    let outcome = poller::poll_one(&app.db, &snapshots, &counters, &settings, &due().await).await;
    assert_eq!(outcome.result, "refused");
    assert!(outcome.error.as_deref().unwrap().contains("below the one held (8)"), "{outcome:?}");
    assert_eq!(counters.replays_refused.load(Ordering::SeqCst), 1);

    // The server goes away: failures in a row push the next attempt out.
    server.abort();
    let _ = server.await;
    let first = poller::poll_one(&app.db, &snapshots, &counters, &settings, &due().await).await;
    assert_eq!(first.result, "failed");
    assert!(first.error.as_deref().unwrap().contains("cannot connect"), "{first:?}");
    let second = poller::poll_one(&app.db, &snapshots, &counters, &settings, &due().await).await;
    assert!(second.next_attempt_at - now() >= 4 * 60 * 4 / 5, "{second:?}");
    let shown = app.get(&format!("/api/v1/admin/cas/{key_id}"), &app.b.token).await.json();
    assert_eq!(shown["fetches"][0]["failures"], 3, "{shown}");
    assert_eq!(shown["fetches"][0]["last_result"], "failed");
    assert_eq!(shown["crl"]["crl_number"], "8", "what was held stays");
    let metrics = app.send("GET", "/metrics", &[], Vec::new()).await.text();
    assert!(metrics.contains(&format!("certbind_ca_crl_fetch_failures{{ca=\"{key_id}\",url=\"{url}\"}} 3\n")), "{metrics}");
    assert!(metrics.contains(&format!("certbind_ca_crl_fetch_ok{{ca=\"{key_id}\",url=\"{url}\"}} 0\n")), "{metrics}");
    app.finish().await;
}

/// The snapshot service signing, a proxy holding what it fetched: CA, revocations and their
/// updates reach it as deltas about the size of the CRL's difference.
async fn a_crl_update_travels_as_a_delta_of_its_difference(store: Store, test: &str) {
    use certbind_control_plane::snapshot::{StoreService, StoreSettings};
    use certbind_shared::crl::testing::synthetic_serial;
    use certbind_shared::identity::{CaKey, IdentityData};
    use certbind_shared::snapshot::{PinnedKey, SnapshotVerifier};
    const DELTA: &str = "application/vnd.certbind.snapshot-delta";
    const BOTH: &str = "application/vnd.certbind.snapshot-delta, application/vnd.certbind.snapshot";

    let Some(test_db) = common::TestDb::new(store, test).await else { return };
    let db = test_db.open().await;
    let signer = common::signer(0x45);
    let verifier = SnapshotVerifier::new([PinnedKey::from_spki_der(&signer.public_key_der()).unwrap()]).unwrap();
    let service = StoreService::start(db.clone(), signer, StoreSettings::default()).await.unwrap();
    let app = TestApp::start_on(test_db, db, Transport::Oneshot, service, certbind_control_plane::state::Limits::default()).await;

    let ca = SyntheticCa::new("dod-like", "DOD ID CA-70").unwrap();
    let key_id = register(&app, &ca, json!({ "grace_period_seconds": 3600 })).await;
    let ca_key = CaKey::of(&ca.certificate().key_identifier);
    let serial_hex = |i: u64| certbind_shared::crl::Serial::from_der_content(&integer(&synthetic_serial(i))[2..]).to_hex();
    let this_update = now() - 600;

    // A 100,000-entry CRL: the proxy takes the whole snapshot with it.
    let r = upload(&app, &app.b.token, ca.synthetic_crl(1, 100_000, this_update), "application/pkix-crl").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = app.snapshot(&format!("/api/v1/snapshot?after_version={}&wait=10", r.version() - 1), &[("accept", BOTH)]).await;
    let held = verifier.verify(first.body.clone(), now(), None).unwrap();
    assert_eq!(held.crl_revoked_count(), 100_000);
    let authority = held.certificate_authority(&ca_key).expect("the CA is in the snapshot");
    assert_eq!(authority.crl_valid_until, Some(this_update + 7 * DAY + 3600));
    assert!(authority.require_fresh_crl && !authority.fail_open);
    assert!(held.is_crl_revoked(&ca_key, &serial_hex(99_999)));
    assert!(!held.is_crl_revoked(&ca_key, &serial_hex(100_000)));

    // The next CRL adds 1,000 entries: the proxy catches up by a delta under 32 KB.
    let r = upload(&app, &app.b.token, ca.synthetic_crl(2, 101_000, this_update + 60), "application/pkix-crl").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((r.json()["added"].as_u64(), r.json()["removed"].as_u64()), (Some(1_000), Some(0)));
    let path = format!("/api/v1/snapshot?after_version={}&wait=10", held.version());
    let mut next = app.snapshot(&path, &[("accept", BOTH)]).await;
    while next.status == 200 && next.header("x-certbind-snapshot-version").and_then(|v| v.parse::<i64>().ok()) < Some(r.version()) {
        // A re-signature in between: fetch again from the same version.
        next = app.snapshot(&path, &[("accept", BOTH)]).await;
    }
    assert_eq!(next.header("content-type"), Some(DELTA), "{}", next.status);
    assert!(next.body.len() < 32 * 1024, "a 1,000-entry CRL update took {} bytes", next.body.len());
    common::shout(&format!("crl delta: 1,000 entries added to 100,000 in {} bytes (full snapshot {} bytes)", next.body.len(), first.body.len()));
    let caught_up = verifier.apply_delta(&held, &next.body, now()).unwrap();
    assert_eq!(caught_up.crl_revoked_count(), 101_000);
    assert!(caught_up.is_crl_revoked(&ca_key, &serial_hex(100_999)));
    assert_eq!(caught_up.certificate_authority(&ca_key).unwrap().crl_valid_until, Some(this_update + 60 + 7 * DAY + 3600));

    // The CA removed: its CA record and every revocation it brought leave the snapshot.
    let r = app.delete(&format!("/api/v1/admin/cas/{key_id}"), &app.a.token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let gone = app.snapshot(&format!("/api/v1/snapshot?after_version={}&wait=10", r.version() - 1), &[("accept", BOTH)]).await;
    let gone = verifier.verify(gone.body, now(), None).unwrap();
    assert_eq!(gone.crl_revoked_count(), 0);
    assert!(gone.certificate_authority(&ca_key).is_none());
    app.finish().await;
}

/// A CRL stored by another process (the command line, another replica) reaches the running
/// service through the snapshot log: a small difference as the changes logged, a large one
/// (past `LOGGED_SERIALS_MAX`) by a rebuild from the tables.
async fn crls_stored_elsewhere_reach_the_snapshot_through_the_log(store: Store, test: &str) {
    
    use certbind_control_plane::domain::change::LOGGED_SERIALS_MAX;
    use certbind_control_plane::snapshot::{StoreService, StoreSettings};
    use certbind_shared::identity::{CaKey, IdentityData};

    let Some(test_db) = common::TestDb::new(store, test).await else { return };
    let db = test_db.open().await;
    let signer = common::signer(0x47);
    let service = StoreService::start(db.clone(), signer, StoreSettings::default()).await.unwrap();
    let app = TestApp::start_on(test_db, db, Transport::Oneshot, service.clone(), certbind_control_plane::state::Limits::default()).await;
    let ca = SyntheticCa::new("elsewhere", "Elsewhere CA").unwrap();
    register(&app, &ca, json!({})).await;
    let ca_key = CaKey::of(&ca.certificate().key_identifier);
    let actor = certbind_control_plane::db::Actor::service("cli");
    let limits = certbind_shared::crl::CrlLimits::default();
    let large = LOGGED_SERIALS_MAX as u64 + 500;

    for (number, entries) in [(1u64, 300u64), (2, large)] {
        // Stored without handing the changes to the service, as another process would.
        let der = ca.synthetic_crl(number, entries, now() - 60);
        let committed = certbind_control_plane::revocation::ingest(&app.db, &actor, der, CrlSource::Upload, limits, now())
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let latest = service.store().latest().unwrap();
            if latest.version() > committed.version as u64 && latest.view().crl_revoked_count() == entries as usize {
                assert!(latest.view().certificate_authority(&ca_key).unwrap().crl_valid_until.is_some());
                break;
            }
            assert!(std::time::Instant::now() < deadline, "CRL {number} never reached the snapshot");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    app.finish().await;
}

/// A CRL's Issuing Distribution Point says where the CA publishes it: a CA registered without
/// distribution points is fetched from there; one given its own keeps them.
async fn a_ca_without_distribution_points_takes_those_its_crl_names(store: Store, test: &str) {
    let app = start(store, test).await;
    let idp = |uris: &[&str]| {
        let names: Vec<u8> = uris.iter().map(|u| tlv(0x86, u.as_bytes())).collect::<Vec<_>>().concat();
        extension(&[0x55, 0x1d, 0x1c], true, &tlv(0x30, &tlv(0xa0, &tlv(0xa0, &names))))
    };
    let signed = |ca: &SyntheticCa, uris: &[&str]| {
        let t = now() - 60;
        let mut parts = ca.tbs_parts(1, t, Some(t + DAY), Vec::new());
        parts.extensions.push(idp(uris));
        ca.sign(&parts.encode())
    };
    let bare = SyntheticCa::new("bare", "Bare CA").unwrap();
    let bare_id = register(&app, &bare, json!({})).await;
    let r = upload(&app, &app.b.token, signed(&bare, &["ldap://crl.example/cn=Bare", "http://crl.example/bare.crl"]), "application/pkix-crl").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let shown = app.get(&format!("/api/v1/admin/cas/{bare_id}"), &app.b.token).await.json();
    assert_eq!(shown["policy"]["crl_urls"], json!(["http://crl.example/bare.crl"]), "the LDAP name is not taken");
    assert_eq!(shown["fetches"][0]["url"], "http://crl.example/bare.crl");

    let given = SyntheticCa::new("given", "Given CA").unwrap();
    let given_id = register(&app, &given, json!({ "crl_urls": ["http://mirror.example/given.crl"] })).await;
    let r = upload(&app, &app.b.token, signed(&given, &["http://crl.example/given.crl"]), "application/pkix-crl").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let shown = app.get(&format!("/api/v1/admin/cas/{given_id}"), &app.b.token).await.json();
    assert_eq!(shown["policy"]["crl_urls"], json!(["http://mirror.example/given.crl"]));
    app.finish().await;
}

/// A distribution point that never answers costs the timeout; one that sends more than the
/// CRL cap is cut off at the cap; one that answers garbage is refused by the reader; none of
/// them changes what is held.
async fn hostile_distribution_points_cost_a_bounded_fetch(store: Store, test: &str) {
    let app = start(store, test).await;
    let ca = SyntheticCa::new("hostile", "Hostile Point CA").unwrap();
    // Accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/never.crl", silent.local_addr().unwrap());
    let held_open = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    // Sends far more than the cap allows, then garbage of an acceptable size.
    let point = Point::default();
    *point.crl.lock().unwrap() = vec![b'A'; 4 * 1024 * 1024];
    let (big_url, server) = serve_point(point.clone()).await;
    let key_id = register(&app, &ca, json!({ "crl_urls": [silent_url, big_url] })).await;
    let settings = PollerSettings {
        timeout: std::time::Duration::from_secs(1),
        limits: certbind_shared::crl::CrlLimits { max_der_bytes: 1024, max_entries: 10 },
        ..PollerSettings::default()
    };
    let (counters, snapshots) = (CrlCounters::default(), NoSnapshots::default());
    let due = crls::due_fetches(&app.db, i64::MAX, 10).await.unwrap();
    let point_of = |end: &str| due.iter().find(|d| d.url.ends_with(end)).unwrap().clone();

    let started = std::time::Instant::now();
    let outcome = poller::poll_one(&app.db, &snapshots, &counters, &settings, &point_of("never.crl")).await;
    assert_eq!(outcome.result, "failed");
    assert!(outcome.error.as_deref().unwrap().contains("no complete answer within 1 seconds"), "{outcome:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    let big = point_of("issuing.crl");
    let outcome = poller::poll_one(&app.db, &snapshots, &counters, &settings, &big).await;
    assert_eq!(outcome.result, "failed");
    assert!(outcome.error.as_deref().unwrap().contains("larger than the"), "{outcome:?}");

    *point.crl.lock().unwrap() = vec![0x30, 0x03, 0x02, 0x01];
    let outcome = poller::poll_one(&app.db, &snapshots, &counters, &settings, &big).await;
    assert_eq!(outcome.result, "refused");
    assert!(outcome.error.as_deref().unwrap().starts_with("the CRL cannot be read"), "{outcome:?}");
    assert_eq!(crls::held(&app.db, &key_id).await.unwrap(), None);
    assert_eq!(counters.fetches_failed.load(Ordering::SeqCst), 3);
    held_open.abort();
    server.abort();
    app.finish().await;
}
