//! Versions only go up: every signature takes a new version from the database, so a restart
//! signs a higher version than the one before it, an idle service signs again before expiry,
//! and two services on one database never sign the same version — each reads the other's
//! changes from the snapshot log, and serves the other's signed bytes for its versions.

mod common;

use certbind_control_plane::app::app;
use certbind_control_plane::state::{AppState, Limits};
use certbind_control_plane::db::Db;
use certbind_control_plane::snapshot::{SignedSnapshot, StoreService, StoreSettings};
use certbind_shared::identity::IdentityData;
use certbind_shared::Fingerprint;
use common::{bind_body, fingerprint, oneshot, Store, TestApp, TestDb, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

on_every_store!(
    a_restart_signs_a_higher_version,
    an_idle_service_signs_again_before_expiry,
    two_services_on_one_database_never_sign_one_version_twice,
    a_database_version_gone_back_still_signs_above_everything_signed,
);

#[tokio::test]
async fn sqlite_a_restored_backup_still_signs_above_everything_signed() {
    a_restored_backup_still_signs_above_everything_signed().await;
}


async fn wait_for(service: &StoreService, what: &str, done: impl Fn(&SignedSnapshot) -> bool) -> Arc<SignedSnapshot> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(latest) = service.store().latest().filter(|s| done(s)) {
            return latest;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bindings_of(snapshot: &SignedSnapshot) -> BTreeSet<String> {
    snapshot.view().bindings().map(|(fp, _)| fp.to_hex()).collect()
}

async fn a_restart_signs_a_higher_version(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let db = test_db.open().await;
    let first = StoreService::start(db.clone(), common::signer(0x77), StoreSettings::default()).await.unwrap();
    let app = TestApp::start_on(test_db, db.clone(), Transport::Oneshot, first.clone(), Limits::default()).await;
    let bound = app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(1))).await;
    assert_eq!(bound.status, 201);
    let before = wait_for(&first, "the bind", |s| s.version() > bound.version() as u64).await;
    drop(first);

    for restart in 0..3 {
        let again = StoreService::start(db.clone(), common::signer(0x77), StoreSettings::default()).await.unwrap();
        let latest = again.store().latest().expect("a snapshot at start");
        assert!(latest.version() > before.version(), "restart {restart}: {} after {}", latest.version(), before.version());
        assert_eq!(bindings_of(&latest), bindings_of(&before), "restart {restart}: the same content");
        assert_ne!(latest.bytes(), before.bytes());
        drop(again);
    }
    app.finish().await;
}

async fn an_idle_service_signs_again_before_expiry(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let db = test_db.open().await;
    let settings = StoreSettings { resign_after: Some(Duration::from_secs(1)), ..StoreSettings::with_validity(Duration::from_secs(60)) };
    let service = StoreService::start(db.clone(), common::signer(0x77), settings).await.unwrap();
    let first = service.store().latest().expect("first snapshot");
    // Nothing changes; within a few seconds a newer version is signed, issued later, with the
    // same content, so a proxy holding the first replaces it long before it expires.
    let second = wait_for(&service, "a re-signature", |s| s.version() > first.version()).await;
    assert!(second.issued_at() > first.issued_at());
    assert!(second.expires_at() > first.expires_at());
    assert_eq!(bindings_of(&second), bindings_of(&first));
    let logged = sqlx::query("SELECT COUNT(*) FROM snapshot_log WHERE kind = 'signature' AND version = $1")
        .bind(second.version() as i64)
        .fetch_one(db.reader())
        .await
        .unwrap();
    assert_eq!(sqlx::Row::get::<i64, _>(&logged, 0), 1, "the re-signature's version is committed as a signature");
    drop(service);
    db.close().await;
    test_db.drop_database().await;
}

/// Puts the database back to an older state: the version and the log as they were at
/// `version` (what restoring a backup taken then does to them).
async fn set_version_back(db: &Db, version: i64) {
    sqlx::query("DELETE FROM snapshot_log WHERE version > $1").bind(version).execute(db.writer()).await.unwrap();
    sqlx::query("UPDATE snapshot_state SET version = $1 WHERE id = 1").bind(version).execute(db.writer()).await.unwrap();
}

async fn a_database_version_gone_back_still_signs_above_everything_signed(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let db = test_db.open().await;
    let service = StoreService::start(db.clone(), common::signer(0x77), StoreSettings::default()).await.unwrap();
    let app = TestApp::start_on(test_db, db.clone(), Transport::Oneshot, service.clone(), Limits::default()).await;
    let bound = app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(1))).await;
    assert_eq!(bound.status, 201);
    let highest = wait_for(&service, "the bind", |s| s.version() > bound.version() as u64).await;

    // Under the running service: the next change commits at a version far below what proxies
    // hold; the service notices and signs above it.
    set_version_back(&db, 3).await;
    let bound = app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(2))).await;
    assert_eq!(bound.status, 201);
    assert!((bound.version() as u64) < highest.version());
    let after = wait_for(&service, "a snapshot with the second card", |s| bindings_of(s).contains(&fingerprint(2))).await;
    assert!(after.version() > highest.version(), "{} after {}", after.version(), highest.version());
    // A proxy holding the version before gets the step from it.
    assert!(service.store().delta(highest.version(), after.version(), usize::MAX).is_some());
    drop(service);

    // And at a restart.
    set_version_back(&db, 3).await;
    let again = StoreService::start(db.clone(), common::signer(0x77), StoreSettings::default()).await.unwrap();
    let latest = again.store().latest().expect("a snapshot at start");
    assert!(latest.version() > after.version(), "{} after {}", latest.version(), after.version());
    assert_eq!(bindings_of(&latest), bindings_of(&after));
    // Changes and re-signatures carry on from the new version, through the log.
    let bound = app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(3))).await;
    assert_eq!(bound.status, 201);
    assert!(bound.version() as u64 > latest.version());
    let next = wait_for(&again, "the third card", |s| bindings_of(s).contains(&fingerprint(3))).await;
    assert!(next.version() > bound.version() as u64);
    assert!(again.store().delta(latest.version(), next.version(), usize::MAX).is_some());
    drop(again);
    app.finish().await;
}

/// An SQLite file restored from a backup taken before later changes were signed: the service
/// started on it signs above every version signed before, with the backup's content.
async fn a_restored_backup_still_signs_above_everything_signed() {
    let test_db = TestDb::new(Store::Sqlite, "a_restored_backup_still_signs_above_everything_signed").await.unwrap();
    let dir = test_db.dir().unwrap().to_path_buf();
    let db = test_db.open().await;
    let service = StoreService::start(db.clone(), common::signer(0x77), StoreSettings::default()).await.unwrap();
    let app = TestApp::start_on(test_db, db.clone(), Transport::Oneshot, service.clone(), Limits::default()).await;
    let bound = app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(1))).await;
    assert_eq!(bound.status, 201);
    let backed_up = wait_for(&service, "the first bind", |s| s.version() > bound.version() as u64).await;
    let backup = dir.join("backup.db");
    sqlx::query(&format!("VACUUM INTO '{}'", backup.display())).execute(db.writer()).await.unwrap();

    // Changes after the backup, signed and served.
    for n in 2..5 {
        let r = app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(n))).await;
        assert_eq!(r.status, 201);
    }
    let highest = wait_for(&service, "the later binds", |s| bindings_of(s).len() == 4).await;
    drop(service);
    db.close().await;

    // The database file is replaced by the backup, and the service started on it.
    let live = dir.join("certbind.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("certbind.db{suffix}")));
    }
    std::fs::copy(&backup, &live).unwrap();
    let restored = Db::open(&certbind_control_plane::db::DbOptions::new(format!("sqlite://{}", live.display()))).await.unwrap();
    assert!(restored.snapshot_version().await.unwrap() < highest.version() as i64, "the backup holds an older version");
    let again = StoreService::start(restored.clone(), common::signer(0x77), StoreSettings::default()).await.unwrap();
    let latest = again.store().latest().expect("a snapshot at start");
    assert!(latest.version() > highest.version(), "{} after {}", latest.version(), highest.version());
    assert_eq!(bindings_of(&latest), bindings_of(&backed_up), "the backup's content");
    drop(again);
    restored.close().await;
    app.finish().await;
}

/// The snapshots services publish: (version, which service, bindings, bytes), in arrival order.
type Seen = Arc<Mutex<Vec<(u64, &'static str, BTreeSet<String>, Vec<u8>)>>>;

/// Records every snapshot `service` publishes (a watch: one it replaces at once may be missed).
fn record(service: &Arc<StoreService>, into: Seen, who: &'static str) {
    let mut published = service.store().subscribe();
    tokio::spawn(async move {
        while published.changed().await.is_ok() {
            let latest = published.borrow_and_update().clone();
            if let Some(s) = latest {
                into.lock().unwrap().push((s.version(), who, bindings_of(&s), s.bytes().to_vec()));
            }
        }
    });
}

async fn two_services_on_one_database_never_sign_one_version_twice(store: Store, test: &str) {
    let test_db = TestDb::new(store, test).await.expect("test database");
    let db_a = test_db.open().await;
    let db_b = Db::open(&certbind_control_plane::db::DbOptions::new(test_db.url.clone())).await.unwrap();
    let service_a = StoreService::start(db_a.clone(), common::signer(0x77), StoreSettings::default()).await.unwrap();
    let service_b = StoreService::start(db_b.clone(), common::signer(0x77), StoreSettings::default()).await.unwrap();
    let seen: Seen = Arc::default();
    record(&service_a, seen.clone(), "a");
    record(&service_b, seen.clone(), "b");
    let app_a = TestApp::start_on(test_db, db_a.clone(), Transport::Oneshot, service_a.clone(), Limits::default()).await;
    let router_b = app(AppState::new(db_b.clone(), service_b.clone(), Limits::default()));

    // Changes through both replicas, interleaved and in parallel.
    let app_a = Arc::new(app_a);
    let mut tasks = Vec::new();
    for n in 0..60u64 {
        let app_a = app_a.clone();
        let router_b = router_b.clone();
        tasks.push(tokio::spawn(async move {
            let body = serde_json::to_vec(&bind_body(&app_a.a.user.id, &fingerprint(n))).unwrap();
            let auth = format!("Bearer {}", app_a.a.token);
            let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
            let r = if n % 2 == 0 {
                oneshot(&router_b, "POST", "/api/v1/admin/smartcards", &headers, body).await
            } else {
                app_a.send("POST", "/api/v1/admin/smartcards", &headers, body).await
            };
            assert_eq!(r.status, 201, "{}", r.text());
            if n % 5 == 0 {
                let path = format!("/api/v1/admin/smartcards/{}", fingerprint(n));
                let r = oneshot(&router_b, "DELETE", &path, &[("authorization", &auth)], Vec::new()).await;
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let committed = u64::try_from(db_a.snapshot_version().await.unwrap()).unwrap();
    let expected: BTreeSet<String> = (0..60u64).filter(|n| n % 5 != 0).map(fingerprint).collect();
    // Each replica catches up with the other's changes (from the log) and serves them.
    let a = wait_for(&service_a, "replica a to catch up", |s| s.version() > committed).await;
    let b = wait_for(&service_b, "replica b to catch up", |s| s.version() > committed).await;
    assert_eq!(bindings_of(&a), expected);
    assert_eq!(bindings_of(&b), expected);
    // Then both serve the newest signature, whichever signed it: the same bytes.
    let newest = a.version().max(b.version());
    let a = wait_for(&service_a, "replica a to serve the newest", |s| s.version() >= newest).await;
    let b = wait_for(&service_b, "replica b to serve the newest", |s| s.version() >= newest).await;
    assert_eq!((a.version(), a.bytes()), (b.version(), b.bytes()));

    // Every signed version was claimed by exactly one signature.
    let claims = sqlx::query("SELECT version FROM snapshot_log WHERE kind = 'signature'").fetch_all(db_a.reader()).await.unwrap();
    let claims: BTreeSet<u64> = claims.iter().map(|r| sqlx::Row::get::<i64, _>(r, 0) as u64).collect();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 4, "too few snapshots seen: {seen:?}");
    let mut bytes_of = BTreeMap::new();
    for (version, who, _, bytes) in &seen {
        assert!(claims.contains(version), "version {version} was signed without a claim");
        assert!(bytes_of.entry(*version).or_insert(bytes) == &bytes, "{who} served version {version} with other bytes");
    }
    // A snapshot of version v holds the content committed before v: replay the log.
    let log = certbind_control_plane::db::snapshot_log::read(&db_a, 0, i64::MAX).await.unwrap();
    let mut content = BTreeSet::new();
    let mut at_version = BTreeMap::new();
    for (version, _, entry) in log {
        at_version.insert(version as u64, content.clone());
        if let certbind_control_plane::db::snapshot_log::LogEntry::Changes(changes) = entry {
            for change in changes {
                match change {
                    certbind_control_plane::domain::Change::UpsertBinding(certbind_control_plane::domain::BindingRecord { fingerprint, .. }) => {
                        content.insert(fingerprint.to_hex());
                    }
                    certbind_control_plane::domain::Change::RemoveBinding { fingerprint } => {
                        content.remove(&fingerprint.to_hex());
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
    for (version, who, bindings, _) in &seen {
        assert_eq!(Some(bindings), at_version.get(version), "{who}'s snapshot {version}");
    }
    let key = Fingerprint::from_canonical_hex(&fingerprint(1)).unwrap();
    assert!(a.view().card_binding(&key).is_some());
    drop((service_a, service_b));
    db_b.close().await;
    Arc::into_inner(app_a).expect("tasks done").finish().await;
}
