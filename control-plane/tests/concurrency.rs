//! Thousands of parallel binds and revokes: no acknowledged write is lost, every change gets
//! its own version, versions follow commit order, and the final state is exactly what the
//! acknowledged requests add up to — in the database and in what the snapshot service was told.

mod common;

use certbind_control_plane::state::Limits;
use certbind_control_plane::domain::{BindingRecord, Change};
use certbind_control_plane::snapshot::{ServedSnapshot, SnapshotService};
use certbind_control_plane::db::snapshot_data;
use certbind_control_plane::signer::public_key_json;
use certbind_control_plane::snapshot::{StoreService, StoreSettings};
use certbind_shared::snapshot::{PinnedKey, SnapshotVerifier};
use common::{bind_body, fingerprint, Store, TestApp, TestDb, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

on_every_store!(
    parallel_binds_and_revokes_lose_nothing,
    racing_binds_of_one_fingerprint_admit_exactly_one,
    final_signed_snapshot_equals_the_database,
);

/// Records what the API hands to the snapshot service, in the order it arrives.
#[derive(Default)]
struct RecordingSnapshots {
    changes: Mutex<Vec<(i64, Vec<Change>)>>,
    version: Mutex<Option<watch::Sender<u64>>>,
}

impl SnapshotService for RecordingSnapshots {
    fn latest(&self) -> Option<Arc<ServedSnapshot>> {
        None
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        let mut guard = self.version.lock().unwrap();
        guard.get_or_insert_with(|| watch::Sender::new(0)).subscribe()
    }
    fn public_keys(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [] })
    }
    fn committed(&self, version: i64, changes: Vec<Change>) {
        self.changes.lock().unwrap().push((version, changes));
    }
}

const BINDS: u64 = 2000;
const REVOKES: u64 = 1000;
const LATE_BINDS: u64 = 1000;

async fn parallel_binds_and_revokes_lose_nothing(store: Store, test: &str) {
    let recorder = Arc::new(RecordingSnapshots::default());
    let app = TestApp::start_with(store, Transport::Oneshot, test, recorder.clone(), Limits::default())
        .await
        .expect("test app");
    let app = Arc::new(app);
    let v0 = app.db.snapshot_version().await.unwrap();

    // Phase 1: BINDS binds at once.
    let mut tasks = Vec::new();
    for n in 0..BINDS {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let r = app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(n))).await;
            ("bind", n, r)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    // Phase 2: revokes of the first REVOKES and binds of LATE_BINDS new ones, interleaved.
    let mut tasks = Vec::new();
    for n in 0..REVOKES.max(LATE_BINDS) {
        if n < REVOKES {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let r = app.delete(&format!("/api/v1/admin/smartcards/{}", fingerprint(n)), &app.a.token).await;
                ("revoke", n, r)
            }));
        }
        if n < LATE_BINDS {
            let app = app.clone();
            let id = BINDS + n;
            tasks.push(tokio::spawn(async move {
                let r = app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(id))).await;
                ("bind", id, r)
            }));
        }
    }
    for t in tasks {
        results.push(t.await.unwrap());
    }

    // Every request was acknowledged, each with a version of its own.
    let mut versions = BTreeMap::new();
    for (action, n, r) in &results {
        let expected = if *action == "bind" { 201 } else { 200 };
        assert_eq!(r.status.as_u16(), expected, "{action} {n}: {}", r.text());
        assert!(versions.insert(r.version(), (*action, *n)).is_none(), "version {} given twice", r.version());
    }
    let total = BINDS + REVOKES + LATE_BINDS;
    let expected_versions: Vec<i64> = (v0 + 1..=v0 + total as i64).collect();
    assert_eq!(versions.keys().copied().collect::<Vec<_>>(), expected_versions, "versions have gaps");
    assert_eq!(app.db.snapshot_version().await.unwrap(), v0 + total as i64);

    // Versions follow commit order: the audit log, in insertion order, has them ascending.
    let audit = sqlx::query("SELECT snapshot_version FROM audit_log WHERE snapshot_version IS NOT NULL ORDER BY id")
        .fetch_all(app.db.reader())
        .await
        .unwrap();
    let in_commit_order: Vec<i64> = audit.iter().map(|r| sqlx::Row::get::<i64, _>(r, 0)).collect();
    assert_eq!(in_commit_order, expected_versions);

    // The final state is exactly the acknowledged binds minus the acknowledged revokes.
    let expected: BTreeSet<String> = (REVOKES..BINDS + LATE_BINDS).map(fingerprint).collect();
    let rows = snapshot_data::load(&app.db).await.unwrap();
    assert_eq!(rows.version, v0 + total as i64);
    let stored: BTreeSet<String> = rows.bindings.iter().map(|b| b.fingerprint.to_hex()).collect();
    assert_eq!(stored, expected);

    // The snapshot service heard of every change, and replaying what it heard in version
    // order gives the database's state.
    let mut heard = recorder.changes.lock().unwrap().clone();
    assert_eq!(heard.len() as u64, total);
    heard.sort_by_key(|(v, _)| *v);
    assert_eq!(heard.iter().map(|(v, _)| *v).collect::<Vec<_>>(), expected_versions);
    let mut replayed = BTreeSet::new();
    for change in heard.into_iter().flat_map(|(_, changes)| changes) {
        match change {
            Change::UpsertBinding(BindingRecord { fingerprint, .. }) => {
                replayed.insert(fingerprint.to_hex());
            }
            Change::RemoveBinding { fingerprint } => {
                assert!(replayed.remove(&fingerprint.to_hex()), "revoke of {fingerprint:?} before its bind");
            }
            other => panic!("unexpected change {other:?}"),
        }
    }
    assert_eq!(replayed, expected);
    Arc::into_inner(app).expect("all tasks done").finish().await;
}

async fn racing_binds_of_one_fingerprint_admit_exactly_one(store: Store, test: &str) {
    let app = Arc::new(TestApp::start(store, Transport::Oneshot, test).await.expect("test app"));
    let fp = fingerprint(424242);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let app = app.clone();
        let fp = fp.clone();
        tasks.push(tokio::spawn(async move {
            let (token, user) = if i % 2 == 0 { (&app.a.token, &app.a.user.id) } else { (&app.b.token, &app.b.user.id) };
            app.post("/api/v1/admin/smartcards", token, &bind_body(user, &fp)).await.status.as_u16()
        }));
    }
    let mut statuses = BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(201, 1), (409, 99)]));
    let binds = sqlx::query("SELECT COUNT(*) FROM audit_log WHERE action = 'smartcard.bind'").fetch_one(app.db.reader()).await.unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&binds, 0), 1);
    Arc::into_inner(app).expect("all tasks done").finish().await;
}

/// With the real snapshot store (a software key: the HSM is tested elsewhere): after a burst
/// of parallel binds, revokes and disables, the signed snapshot that ends up served verifies
/// and holds exactly the database's bindings.
async fn final_signed_snapshot_equals_the_database(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let db = test_db.open().await;
    let signer = common::signer(0x42);
    let service = StoreService::start(db.clone(), signer.clone(), StoreSettings::default()).await.unwrap();
    let app = Arc::new(TestApp::start_on(test_db, db, Transport::Oneshot, service.clone(), Limits::default()).await);

    let mut tasks = Vec::new();
    for n in 0..1500u64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let fp = fingerprint(n);
            let (token, user) = if n % 3 == 0 { (&app.b.token, &app.b.user.id) } else { (&app.a.token, &app.a.user.id) };
            assert_eq!(app.post("/api/v1/admin/smartcards", token, &bind_body(user, &fp)).await.status, 201);
            let path = format!("/api/v1/admin/smartcards/{fp}");
            match n % 5 {
                0 => assert_eq!(app.delete(&path, token).await.status, 200),
                1 => assert_eq!(app.patch(&path, token, &serde_json::json!({ "enabled": false })).await.status, 200),
                _ => {}
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A blocklist change in the mix as well.
    assert_eq!(app.post("/api/v1/admin/blocklist", &app.a.token, &serde_json::json!({ "fingerprint": fingerprint(7) })).await.status, 201);

    // Every signature takes a version after the changes it holds.
    let committed = u64::try_from(app.db.snapshot_version().await.unwrap()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let served = loop {
        if let Some(s) = service.latest().filter(|s| s.version > committed) {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no snapshot after version {committed} served");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let key = PinnedKey::from_pem(public_key_json(signer.as_ref())["public_key_pem"].as_str().unwrap()).unwrap();
    let verifier = SnapshotVerifier::new([key]).unwrap();
    let now = certbind_shared::clock::now_seconds();
    let view = verifier.verify(served.bytes.to_vec(), now, None).expect("the served snapshot verifies");
    assert_eq!(view.version(), served.version);

    let in_snapshot: BTreeSet<(String, String, String, bool)> = view
        .bindings()
        .map(|(fp, b)| (fp.to_hex(), b.user_id.to_string(), b.org_id.to_string(), b.enabled))
        .collect();
    let rows = snapshot_data::load(&app.db).await.unwrap();
    let in_database: BTreeSet<(String, String, String, bool)> =
        rows.bindings.into_iter().map(|b| (b.fingerprint.to_hex(), b.user_id, b.org_id, b.enabled)).collect();
    assert_eq!(in_database.len(), 1200);
    assert_eq!(in_database.iter().filter(|b| !b.3).count(), 300);
    assert_eq!(in_snapshot, in_database);
    assert_eq!(view.blocklist().map(|(f, _)| f.to_hex()).collect::<Vec<_>>(), vec![fingerprint(7)]);
    drop(service);
    Arc::into_inner(app).expect("all tasks done").finish().await;
}
