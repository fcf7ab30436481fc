//! Durability: the real `certbind serve` is killed with SIGKILL while writes are in flight and
//! restarted; every write it acknowledged is there (and every acknowledged revoke stays
//! revoked). On SQLite and PostgreSQL.

mod common;

use common::process::{run_ok, Server};
use common::{bind_body, fingerprint, http1, Store, TestDb};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

on_every_store!(acknowledged_writes_survive_sigkill);

const WRITERS: u64 = 8;
/// How long the load runs before the kill: long enough for hundreds of writes.
const LOAD: Duration = Duration::from_millis(1500);
/// The kill waits for this many acknowledged binds (a loaded machine is slower), up to
/// `LOAD_LIMIT`: fewer would prove too little.
const MIN_BINDS: usize = 80;
const LOAD_LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Ledger {
    /// Binds acknowledged with 201 and not since sent for revocation.
    bound: BTreeSet<String>,
    /// Revokes acknowledged with 200.
    revoked: BTreeSet<String>,
}

async fn acknowledged_writes_survive_sigkill(store: Store, test: &str) {
    let db = TestDb::new(store, test).await.expect("test database");
    let work = tempfile::tempdir().unwrap();
    let env = [("CERTBIND_DATABASE_URL", db.url.as_str()), ("RUST_LOG", "warn")];
    run_ok(work.path(), &env, &["org", "create", "acme"]);
    let user = run_ok(work.path(), &env, &["user", "create", "--org", "acme", "alice"]);
    let token = run_ok(work.path(), &env, &["token", "create", "--org", "acme"]);

    let mut server = Server::start(work.path(), &env);
    let addr = server.addr;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (ledger, stop, token, user) = (ledger.clone(), stop.clone(), token.clone(), user.clone());
        writers.push(tokio::spawn(async move {
            let auth = format!("Bearer {token}");
            let json_headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
            let mut mine: Vec<String> = Vec::new();
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if i % 5 == 4 {
                    // Revoke an earlier acknowledged bind. Until its answer comes, its outcome
                    // is unknown, so it leaves the ledger first.
                    let Some(fp) = mine.pop() else { continue };
                    ledger.lock().unwrap().bound.remove(&fp);
                    let path = format!("/api/v1/admin/smartcards/{fp}");
                    match http1(addr, "DELETE", &path, &[("authorization", auth.as_str())], &[]).await {
                        Ok(r) if r.status == 200 => {
                            ledger.lock().unwrap().revoked.insert(fp);
                        }
                        Ok(r) => panic!("revoke answered {}: {}", r.status, r.text()),
                        Err(_) => break,
                    }
                } else {
                    let fp = fingerprint(w * 1_000_000 + i);
                    let body = serde_json::to_vec(&bind_body(&user, &fp)).unwrap();
                    match http1(addr, "POST", "/api/v1/admin/smartcards", &json_headers, &body).await {
                        Ok(r) if r.status == 201 => {
                            ledger.lock().unwrap().bound.insert(fp.clone());
                            mine.push(fp);
                        }
                        Ok(r) => panic!("bind answered {}: {}", r.status, r.text()),
                        Err(_) => break,
                    }
                }
            }
        }));
    }
    let started = std::time::Instant::now();
    tokio::time::sleep(LOAD).await;
    while ledger.lock().unwrap().bound.len() < MIN_BINDS && started.elapsed() < LOAD_LIMIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(ledger.bound.len() > 50, "too little load to mean anything: {} binds", ledger.bound.len());
    assert!(!ledger.revoked.is_empty(), "no revoke was acknowledged");

    let server = Server::start(work.path(), &env);
    let mut stored = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/admin/smartcards?limit=1000{cursor}");
        let r = http1(server.addr, "GET", &path, &[("authorization", &format!("Bearer {token}"))], &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        for item in page["items"].as_array().unwrap() {
            stored.insert(item["fingerprint"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let lost: Vec<_> = ledger.bound.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged binds lost, e.g. {:?}", lost.len(), lost.first());
    let resurrected: Vec<_> = ledger.revoked.intersection(&stored).collect();
    assert!(resurrected.is_empty(), "{} acknowledged revokes undone", resurrected.len());
    drop(server);
    db.drop_database().await;
}
