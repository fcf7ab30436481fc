//! Revocation by the CA's CRL where it matters: in the filter's decision. The test PKI's real
//! issuing CA (tests/pki) is registered through the API and its CRLs, signed with its key,
//! uploaded; the real snapshot service signs the result, and `certbind_shared::decision`
//! decides requests carrying the PKI's cards as a filter does. A serial on the CRL is refused
//! `certificate_revoked`; a twin CA of the same DN revoking another card's serial refuses
//! nothing of the real CA's; a stale CRL refuses `revocation_unknown` only where the CA's
//! policy or the card's own org requires a fresh one. On SQLite and PostgreSQL.

mod common;

use certbind_control_plane::snapshot::{StoreService, StoreSettings};
use certbind_shared::certificate::{CaCertificate, CertificateFacts};
use certbind_shared::crl::testing::{
    authority_key_identifier_extension, certificate_list, crl_number_extension, ecdsa_with_sha256, entry, integer,
    reason_extension, SyntheticCa, TbsParts,
};
use certbind_shared::decision::{header_refs, ConnectionDigest, Engine, RequestInput};
use certbind_shared::source::testing::xfcc_element;
use certbind_shared::snapshot::{PinnedKey, SnapshotVerifier, SnapshotView};
use common::{Store, TestApp, TestDb, Transport};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

on_every_store!(crls_refuse_in_the_decision_by_ca_key_and_org);

const CA_PEM: &str = include_str!("../../tests/pki/piv-issuing-ca.pem");
const CA_KEY: &str = include_str!("../../tests/pki/piv-issuing-ca.key");
/// Jane's card, bound in org B (globex); John's, bound in org A (acme). Both from the CA.
const JANE: &str = include_str!("../../tests/pki/piv-auth.pem");
const JOHN: &str = include_str!("../../tests/pki/piv-auth-2.pem");
const DAY: i64 = 86_400;

fn now() -> i64 {
    certbind_shared::clock::now_seconds()
}

fn facts(pem: &str) -> CertificateFacts {
    CertificateFacts::from_pem(pem.as_bytes()).unwrap()
}

fn magnitude(serial_hex: &str) -> Vec<u8> {
    let even = if serial_hex.len() % 2 == 1 { format!("0{serial_hex}") } else { serial_hex.to_string() };
    (0..even.len()).step_by(2).map(|i| u8::from_str_radix(&even[i..i + 2], 16).unwrap()).collect()
}

/// A CRL of `ca` (its subject and key identifier), signed by `sign`.
fn crl_of(ca: &CaCertificate, sign: &dyn Fn(&[u8]) -> Vec<u8>, number: u64, this_update: i64, next_update: i64, revoked: &[&str]) -> Vec<u8> {
    let entries: Vec<u8> = revoked.iter().map(|s| entry(&magnitude(s), this_update - DAY, &[reason_extension(1)])).collect::<Vec<_>>().concat();
    let tbs = TbsParts {
        version: integer(&[1]),
        algorithm: ecdsa_with_sha256(),
        issuer: ca.subject_der.clone(),
        this_update,
        next_update: Some(next_update),
        entries: Some(entries),
        extensions: vec![authority_key_identifier_extension(&ca.key_identifier), crl_number_extension(number)],
        trailing: Vec::new(),
    }
    .encode();
    sign(&tbs)
}

/// Signs with the test PKI's issuing CA key.
fn real_signer() -> impl Fn(&[u8]) -> Vec<u8> {
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(CA_KEY).unwrap();
    move |tbs: &[u8]| {
        let signature: p256::ecdsa::Signature = key.sign(tbs);
        certificate_list(tbs, &ecdsa_with_sha256(), signature.to_der().as_bytes())
    }
}

fn engine() -> Engine {
    let policy = json!({
        "certificate_source": { "kind": "xfcc", "trust": "this_proxy" },
        "default_mode": "mtls",
        "routes": [{ "path": "/mtls/*", "mode": "mtls" }]
    });
    Engine::from_json(policy.to_string().as_bytes()).unwrap()
}

/// Status and reason of an mTLS request with `pem`.
fn decide(view: &SnapshotView, pem: &str) -> (u16, String) {
    let hex = facts(pem).fingerprint.to_hex();
    let headers = vec![
        (":path".to_owned(), b"/mtls/x".to_vec()),
        ("x-forwarded-client-cert".to_owned(), xfcc_element(&hex, pem).into_bytes()),
    ];
    let headers = header_refs(&headers);
    let input = RequestInput { headers: &headers, connection_digest: Some(ConnectionDigest::Hex(&hex)), now: now(), ..Default::default() };
    let outcome = engine().evaluate(&input, Some(view));
    (outcome.status(), outcome.reason().map(|r| r.as_str().to_owned()).unwrap_or_default())
}

struct Plane {
    app: TestApp,
    service: Arc<StoreService>,
    verifier: SnapshotVerifier,
}

impl Plane {
    /// The snapshot signed once every committed change is in, opened as a filter opens it.
    async fn snapshot(&self) -> SnapshotView {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM snapshot_log WHERE kind = 'change'")
            .fetch_one(self.app.db.reader())
            .await
            .unwrap();
        let committed = u64::try_from(sqlx::Row::get::<i64, _>(&row, 0)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(latest) = self.service.store().latest().filter(|s| s.version() > committed) {
                return self.verifier.verify(latest.bytes().to_vec(), now(), None).expect("the snapshot verifies");
            }
            assert!(Instant::now() < deadline, "no snapshot after version {committed}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn decisions(&self) -> [(u16, String); 2] {
        let view = self.snapshot().await;
        [decide(&view, JANE), decide(&view, JOHN)]
    }

    async fn upload(&self, crl: Vec<u8>) {
        let auth = format!("Bearer {}", self.app.b.token);
        let r = self.app.send("POST", "/api/v1/admin/crls", &[("authorization", &auth), ("content-type", "application/pkix-crl")], crl).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

fn ok() -> (u16, String) {
    (200, String::new())
}

fn refused(reason: &str) -> (u16, String) {
    (401, reason.to_string())
}

async fn crls_refuse_in_the_decision_by_ca_key_and_org(store: Store, test: &str) {
    let Some(test_db) = TestDb::new(store, test).await else { return };
    let db = test_db.open().await;
    let signer = common::signer(0x46);
    let verifier = SnapshotVerifier::new([PinnedKey::from_spki_der(&signer.public_key_der()).unwrap()]).unwrap();
    let service = StoreService::start(db.clone(), signer, StoreSettings::default()).await.unwrap();
    let app = TestApp::start_on(test_db, db, Transport::Oneshot, service.clone(), certbind_control_plane::state::Limits::default()).await;
    for (token, user, pem) in [(&app.b.token, &app.b.user.id, JANE), (&app.a.token, &app.a.user.id, JOHN)] {
        let r = app.post("/api/v1/admin/smartcards", token, &json!({ "user_id": user, "certificate_pem": pem })).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let plane = Plane { app, service, verifier };
    let app = &plane.app;
    assert_eq!(plane.decisions().await, [ok(), ok()]);

    // The CA, not requiring a fresh CRL; its CRL lists Jane's serial.
    let ca = CaCertificate::from_pem(CA_PEM.as_bytes()).unwrap();
    let body = json!({ "certificate_pem": CA_PEM, "require_fresh_crl": false });
    let r = app.post("/api/v1/admin/cas", &app.a.token, &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let ca_path = format!("/api/v1/admin/cas/{}", ca.key_identifier.to_hex());
    let sign = real_signer();
    let (jane, john) = (facts(JANE).serial_hex, facts(JOHN).serial_hex);
    plane.upload(crl_of(&ca, &sign, 1, now() - 3600, now() + 7 * DAY, &[&jane])).await;
    assert_eq!(plane.decisions().await, [refused("certificate_revoked"), ok()]);

    // A twin CA of the same DN, another key, revoking John's serial: the real CA's John is
    // not its certificate.
    let twin = SyntheticCa::new("twin", "unused").unwrap();
    let twin_pem = common::synthetic_ca::ca_certificate_pem(&twin, &ca.subject_der, now());
    let r = app.post("/api/v1/admin/cas", &app.a.token, &json!({ "certificate_pem": twin_pem, "require_fresh_crl": false })).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let twin_ca = CaCertificate::from_pem(twin_pem.as_bytes()).unwrap();
    assert_eq!(twin_ca.subject_dn, ca.subject_dn);
    plane.upload(crl_of(&twin_ca, &|tbs| twin.sign(tbs), 1, now() - 3600, now() + 7 * DAY, &[&john])).await;
    assert_eq!(plane.decisions().await, [refused("certificate_revoked"), ok()]);

    // Org A requires a fresh CRL for its users: with the CRL fresh, nothing changes.
    let r = app.post("/api/v1/admin/constraints", &app.a.token, &json!({ "kind": "require_fresh_crl", "value": "true" })).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(plane.decisions().await, [refused("certificate_revoked"), ok()]);

    // A newer CRL that is stale (past nextUpdate and the day of grace), listing nobody: org
    // A's John is refused for want of a fresh CRL; org B's Jane, whose CA does not require one,
    // is accepted: org A's rule moves nothing of org B's.
    plane.upload(crl_of(&ca, &sign, 2, now() - 30 * DAY, now() - 20 * DAY, &[])).await;
    assert_eq!(plane.decisions().await, [ok(), refused("revocation_unknown")]);

    // The platform requires a fresh CRL of the CA: Jane too; a CA set to fail open accepts her
    // again (and the filter counts it).
    let r = app.patch(&ca_path, &app.a.token, &json!({ "require_fresh_crl": true })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(plane.decisions().await[0], refused("revocation_unknown"));
    let r = app.patch(&ca_path, &app.a.token, &json!({ "fail_open": true })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(plane.decisions().await[0], ok());

    // A fresh CRL again: both accepted.
    plane.upload(crl_of(&ca, &sign, 3, now() - 60, now() + DAY, &[])).await;
    assert_eq!(plane.decisions().await, [ok(), ok()]);
    plane.app.finish().await;
}
