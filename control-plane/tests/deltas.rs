//! Deltas as a proxy fetches them: a proxy holding version N that accepts
//! `application/vnd.certbind.snapshot-delta` gets the chain N → latest, which the shared
//! verifier applies to exactly the latest snapshot's bytes; one that does not accept deltas,
//! holds nothing, or holds a version the ring no longer has gets the full snapshot (a chain not
//! worth serving is tested with the ring, in `src/snapshot/tests.rs`). On SQLite and
//! PostgreSQL.

mod common;

use certbind_control_plane::state::Limits;
use certbind_control_plane::snapshot::{DeltaLimits, StoreService, StoreSettings};
use certbind_shared::snapshot::{PinnedKey, SnapshotVerifier, SnapshotView};
use common::{bind_body, fingerprint, Resp, Store, TestApp, TestDb, Transport};
use std::sync::Arc;

on_every_store!(a_proxy_catches_up_by_delta, proxies_that_cannot_use_a_delta_get_the_whole_snapshot);

const SNAPSHOT: &str = "application/vnd.certbind.snapshot";
const DELTA: &str = "application/vnd.certbind.snapshot-delta";
const BOTH: &str = "application/vnd.certbind.snapshot-delta, application/vnd.certbind.snapshot";

fn now() -> i64 {
    certbind_shared::clock::now_seconds()
}

struct Proxy {
    app: Arc<TestApp>,
    verifier: SnapshotVerifier,
    held: Option<SnapshotView>,
}

impl Proxy {
    async fn start(store: Store, test: &str, deltas: DeltaLimits) -> Option<Proxy> {
        let test_db = TestDb::new(store, test).await?;
        let db = test_db.open().await;
        let signer = common::signer(0x44);
        let verifier = SnapshotVerifier::new([PinnedKey::from_spki_der(&signer.public_key_der()).unwrap()]).unwrap();
        let settings = StoreSettings { deltas, ..StoreSettings::default() };
        let service = StoreService::start(db.clone(), signer, settings).await.unwrap();
        let app = Arc::new(TestApp::start_on(test_db, db, Transport::Oneshot, service, Limits::default()).await);
        Some(Proxy { app, verifier, held: None })
    }

    /// One fetch as the filter makes it: from the version held, long-polling, with `accept`.
    async fn fetch(&self, accept: &str) -> Resp {
        let path = match &self.held {
            Some(view) => format!("/api/v1/snapshot?after_version={}&wait=10", view.version()),
            None => "/api/v1/snapshot".to_string(),
        };
        let r = self.app.snapshot(&path, &[("accept", accept)]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r
    }

    /// Applies an answer as the filter does and holds the result.
    fn take(&mut self, r: &Resp) -> SnapshotView {
        let view = match r.header("content-type") {
            Some(DELTA) => self.verifier.apply_delta(self.held.as_ref().expect("a delta needs a held snapshot"), &r.body, now()),
            Some(SNAPSHOT) => self.verifier.verify(r.body.clone(), now(), self.held.as_ref().map(SnapshotView::version)),
            other => panic!("unexpected content type {other:?}"),
        }
        .expect("the answer verifies");
        assert_eq!(r.header("etag"), Some(format!("\"{}\"", view.version()).as_str()));
        assert_eq!(r.header("x-certbind-snapshot-version"), Some(view.version().to_string().as_str()));
        self.held = Some(view.clone());
        view
    }

    /// The full snapshot at the latest version, fetched by a proxy holding nothing.
    async fn full_now(&self) -> Vec<u8> {
        let r = self.app.snapshot("/api/v1/snapshot", &[("accept", BOTH)]).await;
        assert_eq!(r.header("content-type"), Some(SNAPSHOT));
        r.body
    }
}

/// Binds `count` cards and waits until a snapshot holding them all is signed.
async fn bind_many(app: &TestApp, from: u64, count: u64) {
    let mut last = 0;
    for n in from..from + count {
        let r = app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(n))).await;
        assert_eq!(r.status, 201, "{}", r.text());
        last = r.version();
    }
    signed_after(app, last).await;
}

/// Waits until a snapshot newer than `version` (a change's) is signed.
async fn signed_after(app: &TestApp, version: i64) {
    let r = app.snapshot(&format!("/api/v1/snapshot?after_version={version}&wait=10"), &[]).await;
    assert_eq!(r.status, 200, "no snapshot after version {version}");
}

/// Revokes card `n` and waits for a snapshot without it.
async fn revoke(app: &TestApp, n: u64) {
    let r = app.delete(&format!("/api/v1/admin/smartcards/{}", fingerprint(n)), &app.a.token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    signed_after(app, r.version()).await;
}

async fn a_proxy_catches_up_by_delta(store: Store, test: &str) {
    let Some(mut proxy) = Proxy::start(store, test, DeltaLimits::default()).await else { return };
    let app = proxy.app.clone();
    bind_many(&app, 0, 200).await;
    // The first fetch is whole, whatever the proxy accepts.
    let first = proxy.fetch(BOTH).await;
    assert_eq!(first.header("content-type"), Some(SNAPSHOT));
    let first = proxy.take(&first);
    let full_len = first.as_bytes().len();

    // A revoke: a delta of a few hundred bytes, applied byte for byte to the latest snapshot.
    revoke(&app, 7).await;
    let answer = proxy.fetch(BOTH).await;
    assert_eq!(answer.header("content-type"), Some(DELTA));
    assert!(answer.body.len() < 2048, "a revoke's delta is {} bytes (full: {full_len})", answer.body.len());
    let view = proxy.take(&answer);
    assert_eq!(view.as_bytes(), proxy.full_now().await.as_slice());
    assert_eq!(view.binding_count(), 199);

    // Several versions behind: one chain covers them all.
    let behind = proxy.held.clone();
    for n in [8u64, 9, 10] {
        // Each change signed before the next, so the chain has a step per change.
        revoke(&app, n).await;
    }
    proxy.held = behind;
    let answer = proxy.fetch(BOTH).await;
    assert_eq!(answer.header("content-type"), Some(DELTA));
    let view = proxy.take(&answer);
    assert_eq!(view.binding_count(), 196);
    assert_eq!(view.as_bytes(), proxy.full_now().await.as_slice());

    // A blocklist entry and an issuer arrive the same way.
    let entry = app.post("/api/v1/admin/blocklist", &app.a.token, &serde_json::json!({ "fingerprint": fingerprint(11) })).await;
    assert_eq!(entry.status, 201);
    signed_after(&app, entry.version()).await;
    let answer = proxy.fetch(BOTH).await;
    assert_eq!(answer.header("content-type"), Some(DELTA));
    let view = proxy.take(&answer);
    let key = certbind_shared::Fingerprint::from_canonical_hex(&fingerprint(11)).unwrap();
    assert!(certbind_shared::identity::IdentityData::is_blocklisted(&view, &key, Some(&app.a.org.id)));

    let metrics = app.send("GET", "/metrics", &[], Vec::new()).await.text();
    assert!(metrics.contains("certbind_snapshot_answers_total{kind=\"delta\"} 3"), "{metrics}");
    drop(app);
    Arc::into_inner(proxy.app).expect("no request in flight").finish().await;
}

async fn proxies_that_cannot_use_a_delta_get_the_whole_snapshot(store: Store, test: &str) {
    let limits = DeltaLimits { max_steps: 2, ..DeltaLimits::default() };
    let Some(mut proxy) = Proxy::start(store, test, limits).await else { return };
    let app = proxy.app.clone();
    bind_many(&app, 0, 40).await;
    let first = proxy.fetch(BOTH).await;
    proxy.take(&first);
    let held = proxy.held.clone();

    // Without the delta type in Accept: the full snapshot.
    revoke(&app, 1).await;
    let answer = proxy.fetch(SNAPSHOT).await;
    assert_eq!(answer.header("content-type"), Some(SNAPSHOT));
    proxy.take(&answer);

    // A version the ring no longer reaches (it keeps two steps): the full snapshot.
    for n in 2..6u64 {
        revoke(&app, n).await;
        let r = proxy.fetch(BOTH).await;
        proxy.take(&r);
    }
    proxy.held = held;
    let answer = proxy.fetch(BOTH).await;
    assert_eq!(answer.header("content-type"), Some(SNAPSHOT), "the oldest steps are gone");
    proxy.take(&answer);
    drop(app);
    Arc::into_inner(proxy.app).expect("no request in flight").finish().await;
}
