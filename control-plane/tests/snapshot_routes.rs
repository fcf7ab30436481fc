//! `GET /api/v1/snapshot` and `/keys` against a stand-in snapshot service: only a proxy
//! credential reads the snapshot (and nothing else), ETag, If-None-Match → 304, and the
//! long-poll that returns as soon as a newer version is signed and gives up (304) at the
//! server's cap. Through `oneshot` and over a socket.

mod common;

use axum::body::Bytes;
use certbind_control_plane::state::Limits;
use certbind_control_plane::domain::Change;
use certbind_control_plane::snapshot::{ServedSnapshot, SnapshotService};
use common::{Store, TestApp, Transport};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct FakeSnapshots {
    latest: Mutex<Option<Arc<ServedSnapshot>>>,
    version: watch::Sender<u64>,
}

impl FakeSnapshots {
    fn new() -> Arc<Self> {
        Arc::new(FakeSnapshots { latest: Mutex::new(None), version: watch::Sender::new(0) })
    }

    fn publish(&self, version: u64, bytes: &'static [u8]) {
        *self.latest.lock().unwrap() = Some(Arc::new(ServedSnapshot { version, bytes: Bytes::from_static(bytes) }));
        self.version.send_replace(version);
    }
}

impl SnapshotService for FakeSnapshots {
    fn latest(&self) -> Option<Arc<ServedSnapshot>> {
        self.latest.lock().unwrap().clone()
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
    fn public_keys(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [{ "key_id": "0123456789abcdef", "algorithm": "ES256" }] })
    }
    fn committed(&self, _version: i64, _changes: Vec<Change>) {}
}

async fn start(transport: Transport, test: &str) -> (TestApp, Arc<FakeSnapshots>) {
    let fake = FakeSnapshots::new();
    let limits = Limits { max_long_poll: Duration::from_secs(1), ..Limits::default() };
    let app = TestApp::start_with(Store::Sqlite, transport, test, fake.clone(), limits).await.expect("app");
    (app, fake)
}

async fn only_a_proxy_credential_reads_the_snapshot(transport: Transport) {
    let (app, fake) = start(transport, "only_a_proxy_credential_reads_the_snapshot").await;
    fake.publish(1, b"snapshot-v1");
    // No credential, a wrong one, another scheme: 401 with a challenge, never the bytes.
    let p = app.send("GET", "/api/v1/snapshot", &[], Vec::new()).await;
    assert_eq!(p.problem(401)["type"], "urn:certbind:problem:unauthorized");
    assert_eq!(p.header("www-authenticate"), Some("Bearer realm=\"certbind\""));
    for auth in ["Bearer cbp_not-a-credential", "Bearer nonsense", "Basic dXNlcjpwYXNz"] {
        let r = app.send("GET", "/api/v1/snapshot", &[("authorization", auth)], Vec::new()).await;
        assert_eq!(r.status, 401, "{auth}: {}", r.text());
        assert!(!r.body.windows(11).any(|w| w == b"snapshot-v1"), "{auth}");
    }
    // An admin token, even a super-admin's, is the wrong kind of credential.
    for token in [&app.a.token, &app.b.token] {
        let r = app.get("/api/v1/snapshot", token).await;
        assert!(r.problem(403)["detail"].as_str().unwrap().contains("proxy credential"), "{}", r.text());
    }
    // The proxy credential reads it ...
    assert_eq!(app.snapshot("/api/v1/snapshot", &[]).await.body, b"snapshot-v1");
    // ... and nothing else: every admin route refuses it.
    for route in certbind_control_plane::app::route_docs() {
        if !route.path.starts_with("/api/v1/admin") {
            continue;
        }
        let path = route.path.replace("{fingerprint}", &common::fingerprint(1)).replace(['{', '}'], "");
        let auth = format!("Bearer {}", app.proxy);
        let r = app
            .send(route.method.as_str(), &path, &[("authorization", &auth), ("content-type", "application/json")], b"{}".to_vec())
            .await;
        assert_eq!(r.status, 403, "{} {path}: {}", route.method, r.text());
        assert!(r.text().contains("proxy credential"), "{} {path}: {}", route.method, r.text());
    }
    // The keys stay public.
    assert_eq!(app.send("GET", "/api/v1/snapshot/keys", &[], Vec::new()).await.status, 200);
    app.finish().await;
}

async fn etag_and_conditional_requests(transport: Transport) {
    let (app, fake) = start(transport, "etag_and_conditional_requests").await;
    app.snapshot("/api/v1/snapshot", &[]).await.problem(503);
    fake.publish(1, b"snapshot-v1");
    let r = app.snapshot("/api/v1/snapshot", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"snapshot-v1");
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("certbind-snapshot-version"), Some("1"));
    assert_eq!(r.header("x-certbind-snapshot-version"), Some("1"));
    assert_eq!(r.header("content-type"), Some("application/vnd.certbind.snapshot"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));

    let r = app.snapshot("/api/v1/snapshot", &[("if-none-match", "\"1\"")]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some("\"1\""));
    let r = app.snapshot("/api/v1/snapshot", &[("if-none-match", "\"0\"")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.snapshot("/api/v1/snapshot?after_version=1", &[]).await.status, 304);
    assert_eq!(app.snapshot("/api/v1/snapshot?after_version=0", &[]).await.status, 200);
    let p = app.snapshot("/api/v1/snapshot?after_version=-1", &[]).await.problem(422);
    assert_eq!(p["field"], "after_version");
    app.snapshot("/api/v1/snapshot?wait=soon", &[]).await.problem(422);

    let ready = app.send("GET", "/readyz", &[], Vec::new()).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["snapshot_version"], 1);
    let keys = app.send("GET", "/api/v1/snapshot/keys", &[], Vec::new()).await.json();
    assert_eq!(keys["keys"][0]["key_id"], "0123456789abcdef");
    app.finish().await;
}

async fn long_poll_returns_when_a_newer_version_is_signed(transport: Transport) {
    let (app, fake) = start(transport, "long_poll_returns_when_a_newer_version_is_signed").await;
    fake.publish(1, b"snapshot-v1");
    let app = Arc::new(app);
    let started = Instant::now();
    let poll = {
        let app = app.clone();
        tokio::spawn(async move { app.snapshot("/api/v1/snapshot?wait=30&after_version=1", &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "the poll answered before anything changed");
    fake.publish(2, b"snapshot-v2");
    let r = poll.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"snapshot-v2");
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());

    // Nothing newer: held until the server's cap (1 s here, whatever `wait` asks), then 304.
    let started = Instant::now();
    let r = app.snapshot("/api/v1/snapshot?wait=30&after_version=2", &[]).await;
    assert_eq!(r.status, 304);
    let held = started.elapsed();
    assert!(held >= Duration::from_millis(900) && held < Duration::from_secs(5), "held {held:?}");
    Arc::into_inner(app).unwrap().finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneshot_only_a_proxy_credential_reads_the_snapshot() {
    only_a_proxy_credential_reads_the_snapshot(Transport::Oneshot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_only_a_proxy_credential_reads_the_snapshot() {
    only_a_proxy_credential_reads_the_snapshot(Transport::Socket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneshot_etag_and_conditional_requests() {
    etag_and_conditional_requests(Transport::Oneshot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_etag_and_conditional_requests() {
    etag_and_conditional_requests(Transport::Socket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneshot_long_poll() {
    long_poll_returns_when_a_newer_version_is_signed(Transport::Oneshot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_long_poll() {
    long_poll_returns_when_a_newer_version_is_signed(Transport::Socket).await;
}
