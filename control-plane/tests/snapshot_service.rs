//! The real snapshot service behind the API, on SQLite and PostgreSQL: a bind, a revoke and a
//! blocklist entry each reach a new signed snapshot that the `shared` verifier accepts, in
//! version order, and the last snapshot holds exactly the database's bindings.

mod common;

use certbind_control_plane::state::Limits;
use certbind_control_plane::db::snapshot_data;
use certbind_control_plane::snapshot::{StoreService, StoreSettings};
use certbind_shared::identity::{IdentityData, UserId};
use certbind_shared::snapshot::{PinnedKey, SnapshotVerifier, SnapshotView};
use certbind_shared::Fingerprint;
use common::{bind_body, fingerprint, Store, TestApp, TestDb, Transport};
use std::time::{Duration, Instant};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

struct Fixture {
    app: TestApp,
    verifier: SnapshotVerifier,
    held: Option<u64>,
}

impl Fixture {
    async fn start(store: Store, test: &str) -> Option<Fixture> {
        let test_db = TestDb::new(store, test).await?;
        let db = test_db.open().await;
        let signer = common::signer(0x5e);
        let verifier = SnapshotVerifier::new([PinnedKey::from_spki_der(&signer.public_key_der()).unwrap()]).unwrap();
        let service =
            StoreService::start(db.clone(), signer, StoreSettings::default()).await.expect("snapshot service");
        let app = TestApp::start_on(test_db, db, Transport::Oneshot, service, Limits::default()).await;
        Some(Fixture { app, verifier, held: None })
    }

    /// Long-polls for a snapshot newer than the one held, as a filter does, and verifies it.
    async fn next_snapshot(&mut self) -> SnapshotView {
        let path = match self.held {
            Some(v) => format!("/api/v1/snapshot?wait=10&after_version={v}"),
            None => "/api/v1/snapshot".to_string(),
        };
        let r = self.app.snapshot(&path, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let view = self.verifier.verify(r.body, now(), self.held).expect("the shared verifier accepts it");
        self.held = Some(view.version());
        view
    }
}

async fn changes_reach_signed_snapshots(store: Store) {
    let Some(mut f) = Fixture::start(store, "changes_reach_signed_snapshots").await else { return };
    let first = f.next_snapshot().await;
    assert_eq!(first.binding_count(), 0);

    let fp = fingerprint(1);
    let bound = f.app.post("/api/v1/admin/smartcards", &f.app.a.token.clone(), &bind_body(&f.app.a.user.id, &fp)).await;
    assert_eq!(bound.status, 201, "{}", bound.text());
    let key = Fingerprint::from_canonical_hex(&fp).unwrap();
    let view = f.next_snapshot().await;
    // Signed under a version of its own, after the change's.
    assert!(view.version() > bound.version() as u64);
    let binding = view.card_binding(&key).expect("bound card in the snapshot");
    assert_eq!(
        (binding.user_id.as_str(), binding.org_id, binding.enabled),
        (f.app.a.user.id.as_str(), f.app.a.org.id.as_str(), true)
    );
    // The control plane's user ids are ULIDs: the snapshot carries their 16 bytes.
    assert!(matches!(binding.user_id, UserId::Ulid(_)), "{:?}", binding.user_id);

    let started = Instant::now();
    let revoked = f.app.delete(&format!("/api/v1/admin/smartcards/{fp}"), &f.app.a.token.clone()).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    let view = f.next_snapshot().await;
    assert!(started.elapsed() < Duration::from_secs(1), "revoke took {:?} to reach a snapshot", started.elapsed());
    assert_eq!(view.card_binding(&key), None);

    // Blocklisting, by fingerprint or by issuer and serial, is patched in like a revoke, in
    // the blocking org's scope only.
    let token = f.app.a.token.clone();
    let org_a = f.app.a.org.id.clone();
    let org_a = Some(org_a.as_str());
    let started = Instant::now();
    let blocked = f.app.post("/api/v1/admin/blocklist", &token, &serde_json::json!({ "fingerprint": fp })).await;
    assert_eq!(blocked.status, 201, "{}", blocked.text());
    let view = f.next_snapshot().await;
    assert!(started.elapsed() < Duration::from_secs(1), "blocklisting took {:?}", started.elapsed());
    assert!(view.version() > blocked.version() as u64);
    assert!(view.is_blocklisted(&key, org_a));
    assert!(!view.is_blocklisted(&key, Some("another-org")));
    let issuer = "CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US";
    let by_serial =
        f.app.post("/api/v1/admin/blocklist", &token, &serde_json::json!({ "issuer_dn": issuer, "serial": "0A:1B" })).await;
    assert_eq!(by_serial.status, 201, "{}", by_serial.text());
    let view = f.next_snapshot().await;
    assert!(view.version() > by_serial.version() as u64);
    assert!(view.is_revoked(issuer, "a1b", org_a));
    assert!(!view.is_revoked(issuer, "a1b", None));
    assert!(!view.is_revoked(issuer, "a1c", org_a));

    // Taking an entry off.
    let id = blocked.json()["id"].as_str().expect("entry id").to_owned();
    let unblocked = f.app.delete(&format!("/api/v1/admin/blocklist/{id}"), &token).await;
    assert_eq!(unblocked.status, 200, "{}", unblocked.text());
    let view = f.next_snapshot().await;
    assert!(view.version() > unblocked.version() as u64);
    assert!(!view.is_blocklisted(&key, org_a));
    assert!(view.is_revoked(issuer, "a1b", org_a));

    for n in 2..40u64 {
        let r = f
            .app
            .post("/api/v1/admin/smartcards", &f.app.a.token.clone(), &bind_body(&f.app.a.user.id, &fingerprint(n)))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let rows = snapshot_data::load(&f.app.db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let last = loop {
        let view = f.next_snapshot().await;
        if view.version() > rows.version as u64 || Instant::now() > deadline {
            break view;
        }
    };
    assert!(last.version() > rows.version as u64);
    let in_snapshot: Vec<(String, String, String, bool)> =
        last.bindings().map(|(fp, b)| (fp.to_hex(), b.user_id.as_str().to_owned(), b.org_id.to_owned(), b.enabled)).collect();
    let in_database: Vec<(String, String, String, bool)> =
        rows.bindings.iter().map(|b| (b.fingerprint.to_hex(), b.user_id.clone(), b.org_id.clone(), b.enabled)).collect();
    assert_eq!(in_snapshot, in_database);
    f.app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_changes_reach_signed_snapshots() {
    changes_reach_signed_snapshots(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_reach_signed_snapshots() {
    changes_reach_signed_snapshots(Store::Postgres).await;
}
