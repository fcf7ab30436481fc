//! A fleet's worth of long-polls on one replica: ten thousand proxy credentials each holding a
//! long-poll over loopback, all answered by one revoke; then each credential's last fetch
//! (when, and the version it holds) in the API, and how many proxies hold which version in
//! `/metrics`. The proxies are a child process (`scripts/devstack/long_polls.py`), so each
//! end's ten thousand sockets fit its own open-file limit.

mod common;

use certbind_control_plane::db::tokens::hash_token;
use certbind_control_plane::snapshot::{StoreService, StoreSettings};
use certbind_control_plane::state::Limits;
use common::{bind_body, fingerprint, Store, TestApp, TestDb, Transport};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROXIES: usize = 10_000;

/// This process's soft limit of open files.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ten_thousand_long_polls_are_all_answered_by_one_revoke() {
    assert!(open_files_limit() > PROXIES as u64 + 1_000, "the open-file limit holds the server's sockets");
    let test_db = TestDb::new(Store::Sqlite, "ten_thousand_long_polls").await.unwrap();
    let db = test_db.open().await;
    let signer = common::signer(0x2b);
    let service = StoreService::start(db.clone(), signer, StoreSettings::default()).await.unwrap();
    let app = TestApp::start_on(test_db, db.clone(), Transport::Socket, service.clone(), Limits::default()).await;
    let addr = app.addr().expect("a socket");

    let bound = app.post("/api/v1/admin/smartcards", &app.a.token, &bind_body(&app.a.user.id, &fingerprint(1))).await;
    assert_eq!(bound.status, 201, "{}", bound.text());
    let held = app.snapshot(&format!("/api/v1/snapshot?after_version={}&wait=10", bound.version()), &[]).await;
    let held: u64 = held.header("x-certbind-snapshot-version").unwrap().parse().unwrap();

    // Ten thousand credentials, as `certbind token create --proxy` stores them.
    let secrets: Vec<String> = (0..PROXIES).map(|i| format!("cbp_fleet_{i:05}_{}", "x".repeat(32))).collect();
    let mut tx = db.begin().await.unwrap();
    for (i, secret) in secrets.iter().enumerate() {
        sqlx::query("INSERT INTO proxy_credentials (id, token_hash, label, created_at) VALUES ($1, $2, $3, $4)")
            .bind(format!("fleet-{i:05}"))
            .bind(hash_token(secret))
            .bind(format!("edge-{i}"))
            .bind(certbind_control_plane::time::now_rfc3339())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let mut proxies = Command::new("python3")
        .args(["-m", "devstack.long_polls", &addr.to_string(), &held.to_string(), "55"])
        .current_dir(scripts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = proxies.stdin.take().unwrap();
    stdin.write_all((secrets.join("\n") + "\n").as_bytes()).unwrap();
    drop(stdin);
    let mut out = BufReader::new(proxies.stdout.take().unwrap());
    let (out, sent) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        (out, line)
    })
    .await
    .unwrap();
    assert_eq!(sent.trim(), format!("sent {PROXIES}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while app.state.fleet.waiting_now() < PROXIES as u64 {
        assert!(Instant::now() < deadline, "only {} long-polls waiting", app.state.fleet.waiting_now());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let revoked = app.delete(&format!("/api/v1/admin/smartcards/{}", fingerprint(1)), &app.a.token).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    let answers = tokio::task::spawn_blocking(move || {
        let mut out = out;
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(proxies.wait().unwrap().success());
    let answers: Vec<Value> = serde_json::from_str(&answers).expect("the proxies' answers");
    assert_eq!(answers.len(), PROXIES);
    let mut versions = std::collections::BTreeSet::new();
    for answer in &answers {
        assert_eq!(answer["status"], 200, "{answer}");
        versions.insert(answer["version"].as_u64().expect("a version"));
    }
    assert_eq!(versions.len(), 1, "every long-poll got the one version signed after the revoke: {versions:?}");
    let now_held = *versions.first().unwrap();
    assert!(now_held > revoked.version() as u64);
    assert_eq!(app.state.fleet.waiting_now(), 0);

    // Each credential's last fetch, once written (a second later, in one transaction).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM proxy_credentials WHERE last_fetch_version = $1")
            .bind(now_held as i64)
            .fetch_one(db.reader())
            .await
            .unwrap();
        if n == PROXIES as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} fetches recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = app.get("/api/v1/admin/proxy-credentials?limit=50", &app.a.token).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    let items = page["items"].as_array().unwrap();
    let fleet: Vec<_> = items.iter().filter(|c| c["id"].as_str().is_some_and(|id| id.starts_with("fleet-"))).collect();
    assert!(!fleet.is_empty(), "{page}");
    for credential in fleet {
        assert_eq!(credential["last_fetch_version"], now_held, "{credential}");
        assert!(credential["last_fetch_at"].is_string() && credential["last_used_at"].is_string(), "{credential}");
    }
    let metrics = app.send("GET", "/metrics", &[], Vec::new()).await.text();
    assert!(metrics.contains(&format!("certbind_proxies{{version=\"{now_held}\"}} {PROXIES}\n")), "{metrics}");
    assert!(metrics.contains("certbind_snapshot_long_polls 0\n"), "{metrics}");
    drop(service);
    app.finish().await;
}
