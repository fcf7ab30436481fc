//! PostgreSQL going away under a running control plane — a real server of the test's own,
//! stopped and started again on its port: writes fail with 503 and the problem contract,
//! every acknowledged write survives, long-polls go on serving the last snapshot, and the
//! service (its pools and its listening connection) reconnects by itself.

mod common;

use certbind_control_plane::db::{Db, DbOptions};
use certbind_control_plane::snapshot::{StoreService, StoreSettings};
use certbind_control_plane::state::Limits;
use common::{bind_body, fingerprint, Resp, TestApp, TestDb, Transport};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A PostgreSQL server of this test's own (`scripts/postgres-test.sh` in a directory of its
/// own): the shared test server is never stopped under other tests.
struct OwnServer {
    dir: PathBuf,
    admin_url: String,
}

impl OwnServer {
    fn script(dir: &PathBuf, command: &str) -> String {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres-test.sh");
        let out = Command::new(script).arg(command).env("CERTBIND_PG_DIR", dir).output().expect("running postgres-test.sh");
        assert!(out.status.success(), "postgres-test.sh {command}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start() -> OwnServer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../.run/postgres-outage-{}", std::process::id()));
        let out = OwnServer::script(&dir, "start");
        let admin_url = out
            .lines()
            .find_map(|l| l.strip_prefix("export CERTBIND_TEST_POSTGRES_URL="))
            .expect("the server's URL")
            .to_string();
        OwnServer { dir, admin_url }
    }

    fn halt(&self) {
        OwnServer::script(&self.dir, "halt");
    }

    fn resume(&self) {
        OwnServer::script(&self.dir, "start");
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres-test.sh"))
            .arg("clean")
            .env("CERTBIND_PG_DIR", &self.dir)
            .output();
    }
}


async fn bind(app: &TestApp, n: u64) -> Resp {
    app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(n))).await
}

fn version_of(r: &Resp) -> u64 {
    r.header("x-certbind-snapshot-version").expect("a version").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_fails_writes_with_503_and_loses_nothing_acknowledged() {
    if common::postgres_url("postgres_going_away").is_none() {
        return;
    }
    let server = OwnServer::start();
    let test_db = TestDb::postgres_on(&server.admin_url).await;
    // Writes give up on an unreachable database after two seconds (the default is ten).
    let options = DbOptions { acquire_timeout: Duration::from_secs(2), ..DbOptions::new(test_db.url.clone()) };
    let db = Db::open(&options).await.unwrap();
    let db_b = Db::open(&options).await.unwrap();
    let service = StoreService::start(db.clone(), common::signer(0x3c), StoreSettings::default()).await.unwrap();
    // Another replica, which looks at the database by itself only once an hour.
    let settings_b = StoreSettings { check_every: Duration::from_secs(3600), ..StoreSettings::default() };
    let replica_b = StoreService::start(db_b.clone(), common::signer(0x3c), settings_b).await.unwrap();
    let app = Arc::new(TestApp::start_on(test_db, db.clone(), Transport::Socket, service.clone(), Limits::default()).await);

    let first = bind(&app, 1).await;
    assert_eq!(first.status, 201, "{}", first.text());
    let held = app.snapshot(&format!("/api/v1/snapshot?after_version={}&wait=10", first.version()), &[]).await;
    assert_eq!(held.status, 200);
    let held_version = version_of(&held);

    // A long-poll held across the outage.
    let poll = {
        let app = Arc::clone(&app);
        tokio::spawn(async move { app.snapshot(&format!("/api/v1/snapshot?after_version={held_version}&wait=50"), &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.halt();
    let refused = bind(&app, 2).await;
    let problem = refused.problem(503);
    assert_eq!(problem["type"], "urn:certbind:problem:unavailable", "{problem}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // The last snapshot is still served, to a proxy holding nothing as to one long-polling.
    let fresh = app.snapshot("/api/v1/snapshot", &[]).await;
    assert_eq!(fresh.status, 200, "{}", fresh.text());
    assert_eq!(version_of(&fresh), held_version);
    assert_eq!(fresh.body, held.body);
    let not_modified = app.snapshot(&format!("/api/v1/snapshot?after_version={held_version}"), &[]).await;
    assert_eq!(not_modified.status, 304);
    assert!(!poll.is_finished(), "the long-poll is still held");
    let readiness = app.send("GET", "/readyz", &[], Vec::new()).await;
    assert_eq!(readiness.status, 503, "not ready without the database");

    server.resume();
    // The service reconnects by itself: writes succeed again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let third = loop {
        let r = bind(&app, 3).await;
        if r.status == 201 {
            break r;
        }
        r.problem(503);
        assert!(Instant::now() < deadline, "writes never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The long-poll held through the outage is answered with the change.
    let answered = poll.await.unwrap();
    assert_eq!(answered.status, 200, "{}", answered.text());
    assert!(version_of(&answered) > third.version() as u64);

    // Every acknowledged write is in the database and in the snapshot; the refused one in neither.
    let stored: Vec<String> = sqlx::query_scalar("SELECT fingerprint FROM smart_card_links ORDER BY fingerprint")
        .fetch_all(db.reader())
        .await
        .unwrap();
    let mut expected = vec![fingerprint(1), fingerprint(3)];
    expected.sort();
    assert_eq!(stored, expected);
    let latest = service.store().latest().unwrap();
    let bound: Vec<String> = latest.view().bindings().map(|(fp, _)| fp.to_hex()).collect();
    assert_eq!(bound.len(), 2);
    assert!(expected.iter().all(|fp| bound.contains(fp)), "{bound:?}");

    // The other replica's listening connection came back too: the change reached it by
    // notification (it would otherwise look in an hour).
    let deadline = Instant::now() + Duration::from_secs(20);
    while replica_b.store().latest().map(|s| s.view().bindings().count()) != Some(2) {
        assert!(Instant::now() < deadline, "replica b never heard of the change after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replica_b.store().latest().unwrap().bytes(), service.store().latest().unwrap().bytes());
    drop((service, replica_b));
    db_b.close().await;
    Arc::into_inner(app).expect("the poll is done").finish().await;
}
