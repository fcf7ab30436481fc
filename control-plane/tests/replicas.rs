//! Replicas on one database, as proxies behind a balancer meet them: a version is one byte
//! string whichever replica serves it (the ETag names it), a delta from either rebuilds those
//! bytes, and a proxy alternating between replicas never sees a version go down (on SQLite
//! and PostgreSQL). On PostgreSQL a commit through one replica wakes the long-polls held by
//! another by notification, not at its next periodic check.

mod common;

use certbind_control_plane::app::app;
use certbind_control_plane::db::{Db, DbOptions};
use certbind_control_plane::snapshot::{StoreService, StoreSettings};
use certbind_control_plane::state::{AppState, Limits};
use certbind_shared::snapshot::{PinnedKey, SnapshotVerifier, SnapshotView};
use common::{bind_body, fingerprint, oneshot, Resp, Store, TestApp, TestDb, Transport};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

on_every_store!(a_proxy_alternating_replicas_never_sees_a_version_go_down);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_change_through_one_replica_wakes_long_polls_on_another_by_notification() {
    let test = "postgres::a_change_through_one_replica_wakes_long_polls_on_another_by_notification";
    if common::postgres_url(test).is_none() {
        return;
    }
    a_change_through_one_replica_wakes_long_polls_on_another_by_notification(test).await;
}

const SNAPSHOT: &str = "application/vnd.certbind.snapshot";
const DELTA: &str = "application/vnd.certbind.snapshot-delta";
const BOTH: &str = "application/vnd.certbind.snapshot-delta, application/vnd.certbind.snapshot";


fn now() -> i64 {
    certbind_shared::clock::now_seconds()
}

/// Two replicas: `a` behind the test app, `b` a router of its own on its own pools.
struct Replicas {
    a: Arc<TestApp>,
    b: axum::Router,
    db_b: Db,
    services: [Arc<StoreService>; 2],
}

impl Replicas {
    async fn start(store: Store, test: &str) -> Replicas {
        Replicas::start_with(store, test, StoreSettings::default()).await
    }

    /// Replica `b` with `settings_b`.
    async fn start_with(store: Store, test: &str, settings_b: StoreSettings) -> Replicas {
        let test_db = TestDb::new(store, test).await.expect("test database");
        let db_a = test_db.open().await;
        let db_b = Db::open(&DbOptions::new(test_db.url.clone())).await.unwrap();
        let service_a = StoreService::start(db_a.clone(), common::signer(0x5a), StoreSettings::default()).await.unwrap();
        let service_b = StoreService::start(db_b.clone(), common::signer(0x5a), settings_b).await.unwrap();
        let a = Arc::new(TestApp::start_on(test_db, db_a, Transport::Oneshot, service_a.clone(), Limits::default()).await);
        let b = app(AppState::new(db_b.clone(), service_b.clone(), Limits::default()));
        Replicas { a, b, db_b, services: [service_a, service_b] }
    }

    /// `GET path` on replica `which` (0: a, 1: b) with the proxy credential.
    async fn snapshot(&self, which: usize, path: &str) -> Resp {
        let auth = format!("Bearer {}", self.a.proxy);
        let headers = [("authorization", auth.as_str()), ("accept", BOTH)];
        match which {
            0 => self.a.send("GET", path, &headers, Vec::new()).await,
            _ => oneshot(&self.b, "GET", path, &headers, Vec::new()).await,
        }
    }

    /// A change through replica `which`, by the org admin's token.
    async fn change(&self, which: usize, method: &str, path: &str, body: Vec<u8>) -> Resp {
        let auth = format!("Bearer {}", self.a.a.token);
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        match which {
            0 => self.a.send(method, path, &headers, body).await,
            _ => oneshot(&self.b, method, path, &headers, body).await,
        }
    }

    async fn finish(self) {
        drop(self.services);
        self.db_b.close().await;
        Arc::into_inner(self.a).expect("no task holds the app").finish().await;
    }
}

/// A proxy as the filter fetches: from the version it holds, applying deltas, refusing
/// rollback; every version it takes is recorded with its bytes.
struct Proxy {
    verifier: SnapshotVerifier,
    held: Option<SnapshotView>,
    taken: Vec<u64>,
}

impl Proxy {
    fn new() -> Proxy {
        let verifier = SnapshotVerifier::new([PinnedKey::from_spki_der(&common::signer(0x5a).public_key_der()).unwrap()]).unwrap();
        Proxy { verifier, held: None, taken: Vec::new() }
    }

    fn path(&self, wait: u64) -> String {
        match &self.held {
            Some(view) => format!("/api/v1/snapshot?after_version={}&wait={wait}", view.version()),
            None => "/api/v1/snapshot".to_string(),
        }
    }

    /// Takes a 200 answer: a version above the one held, named by its ETag.
    fn take(&mut self, r: &Resp, bytes_of: &mut BTreeMap<u64, Vec<u8>>, from: usize) {
        let held = self.held.as_ref().map(SnapshotView::version);
        let version: u64 = r.header("x-certbind-snapshot-version").expect("version header").parse().unwrap();
        assert!(held.is_none_or(|h| version > h), "replica {from} served version {version} to a proxy holding {held:?}");
        let view = match r.header("content-type") {
            Some(DELTA) => self.verifier.apply_delta(self.held.as_ref().expect("a delta needs a held snapshot"), &r.body, now()),
            Some(SNAPSHOT) => self.verifier.verify(r.body.clone(), now(), held),
            other => panic!("unexpected content type {other:?}"),
        }
        .expect("the answer verifies");
        assert_eq!(view.version(), version);
        assert_eq!(r.header("etag"), Some(format!("\"{version}\"").as_str()));
        let bytes = view.as_bytes().to_vec();
        assert!(
            bytes_of.entry(version).or_insert_with(|| bytes.clone()) == &bytes,
            "replica {from} served version {version} as other bytes than before"
        );
        self.taken.push(version);
        self.held = Some(view);
    }
}

fn bindings_of(view: &SnapshotView) -> BTreeSet<String> {
    view.bindings().map(|(fp, _)| fp.to_hex()).collect()
}

async fn a_proxy_alternating_replicas_never_sees_a_version_go_down(store: Store, test: &str) {
    let replicas = Arc::new(Replicas::start(store, test).await);
    // Binds through both replicas, every fourth revoked again, while the proxy fetches.
    let writer = {
        let replicas = Arc::clone(&replicas);
        tokio::spawn(async move {
            for n in 0..24u64 {
                let body = serde_json::to_vec(&bind_body(&replicas.a.a.user.id, &fingerprint(n))).unwrap();
                let r = replicas.change((n % 2) as usize, "POST", "/api/v1/admin/smartcards", body).await;
                assert_eq!(r.status, 201, "{}", r.text());
                if n % 4 == 0 {
                    let path = format!("/api/v1/admin/smartcards/{}", fingerprint(n));
                    let r = replicas.change(((n + 1) % 2) as usize, "DELETE", &path, Vec::new()).await;
                    assert_eq!(r.status, 200, "{}", r.text());
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
    };
    let expected: BTreeSet<String> = (0..24u64).filter(|n| n % 4 != 0).map(fingerprint).collect();
    let mut proxy = Proxy::new();
    let mut bytes_of = BTreeMap::new();
    let mut fetches = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut turn = 0usize;
    loop {
        let from = turn % 2;
        turn += 1;
        let r = replicas.snapshot(from, &proxy.path(1)).await;
        match r.status.as_u16() {
            200 => {
                fetches[from] += 1;
                proxy.take(&r, &mut bytes_of, from);
            }
            304 => {}
            other => panic!("replica {from} answered {other}: {}", r.text()),
        }
        let done = writer.is_finished()
            && proxy.held.as_ref().is_some_and(|v| bindings_of(v) == expected)
            && replicas.services.iter().all(|s| s.store().latest().map(|l| l.version()) == proxy.held.as_ref().map(SnapshotView::version));
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the proxy did not converge: took {:?}", proxy.taken);
    }
    writer.await.unwrap();
    assert!(fetches.iter().all(|n| *n > 0), "the proxy took snapshots from both replicas: {fetches:?}");
    assert!(proxy.taken.len() >= 4, "too few versions taken: {:?}", proxy.taken);

    // Both serve the final version as one byte string, to a proxy holding nothing too.
    let final_version = proxy.held.as_ref().map(SnapshotView::version).unwrap();
    for which in 0..2 {
        let r = replicas.snapshot(which, "/api/v1/snapshot").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("etag"), Some(format!("\"{final_version}\"").as_str()));
        assert_eq!(Some(&r.body), bytes_of.get(&final_version), "replica {which}'s full snapshot");
    }
    Arc::into_inner(replicas).expect("writer done").finish().await;
}

/// Replica b looks at the database only once an hour by itself: a revoke through replica a
/// that answers the long-poll held on b, in seconds, came by notification.
async fn a_change_through_one_replica_wakes_long_polls_on_another_by_notification(test: &str) {
    let settings_b = StoreSettings { check_every: Duration::from_secs(3600), ..StoreSettings::default() };
    let replicas = Arc::new(Replicas::start_with(Store::Postgres, test, settings_b).await);
    let service_b = Arc::clone(&replicas.services[1]);
    let body = serde_json::to_vec(&bind_body(&replicas.a.a.user.id, &fingerprint(1))).unwrap();
    let r = replicas.change(0, "POST", "/api/v1/admin/smartcards", body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // b serves a's snapshot with the card: the bind woke it (a's commit, then a's bytes).
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = loop {
        let latest = service_b.store().latest().unwrap();
        if latest.view().bindings().count() == 1 {
            break latest.version();
        }
        assert!(Instant::now() < deadline, "replica b never heard of the bind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let woken_before = service_b.notifications();
    assert!(woken_before > 0);

    // A long-poll held on b, then a revoke through a.
    let poll = {
        let replicas = Arc::clone(&replicas);
        tokio::spawn(async move { replicas.snapshot(1, &format!("/api/v1/snapshot?after_version={held}&wait=30")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!poll.is_finished(), "the long-poll is held");
    let r = replicas.change(0, "DELETE", &format!("/api/v1/admin/smartcards/{}", fingerprint(1)), Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answered = poll.await.unwrap();
    assert_eq!(answered.status, 200, "{}", answered.text());
    let mut proxy = Proxy::new();
    proxy.take(&answered, &mut BTreeMap::new(), 1);
    let view = proxy.held.as_ref().unwrap();
    assert!(view.version() > held);
    assert_eq!(view.bindings().count(), 0, "the revoke reached the long-poll on b");
    assert_eq!(view.as_bytes(), replicas.services[0].store().latest().unwrap().bytes(), "a's signed bytes");
    assert!(service_b.notifications() > woken_before, "woken by notification");
    drop(service_b);
    Arc::into_inner(replicas).expect("the poll is done").finish().await;
}
