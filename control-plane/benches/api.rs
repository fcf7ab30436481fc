//! The admin API's speed, through the real router (`oneshot`, no socket) on SQLite — and on
//! PostgreSQL when `CERTBIND_TEST_POSTGRES_URL` names a server:
//!
//! - binds/s and revokes/s with 32 requests in flight (each one transaction: the row, the
//!   audit entry, the version bump, an fsync'd commit);
//! - list latency (p50/p99) with `CERTBIND_BENCH_ROWS` bindings (default 1 000 000) in one
//!   org, bulk-inserted in SQL first: the first page, a page from a cursor deep in the table,
//!   and each filter;
//! - with those rows, the snapshot service `serve` runs: its first build and signature from
//!   the database, then, for revokes spread over the table, the time from a revoke's 200 to
//!   the long-poll a filter holds returning the delta to the new signed snapshot, the bytes
//!   of that delta, and the time the shared crate takes to apply and check it.
//!
//! `cargo bench -p certbind-control-plane --bench api` prints a Markdown table.

use axum::body::Body;
use axum::http::Request;
use certbind_control_plane::app::app;
use certbind_control_plane::state::{AppState, Limits};
use certbind_control_plane::snapshot::NoSnapshots;
use certbind_control_plane::db::{self, Actor, Backend, Db, DbOptions};
use certbind_control_plane::signer::{Signer, SoftwareSigner};
use certbind_control_plane::snapshot::{StoreService, StoreSettings};
use certbind_shared::identity::IdentityData;
use certbind_shared::snapshot::{PinnedKey, SnapshotVerifier};
use certbind_shared::Fingerprint;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/memory.rs"]
mod memory;
use memory::{mib, reset_peak, status_kib};
use tower::ServiceExt;

const WRITES: usize = 2000;
const IN_FLIGHT: usize = 32;
const LIST_SAMPLES: usize = 200;
const REVOKE_SAMPLES: u64 = 20;

struct Bench {
    router: axum::Router,
    db: Db,
    token: String,
    /// A proxy credential, for the snapshot route.
    proxy: String,
    user: String,
}

async fn call(router: &axum::Router, method: &str, path: &str, token: &str, body: Option<String>) -> u16 {
    call_with_body(router, method, path, token, body).await.0
}

async fn call_with_body(
    router: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<String>,
) -> (u16, Vec<u8>) {
    let (status, _, bytes) = call_accepting(router, method, path, token, body, None).await;
    (status, bytes)
}

/// A request with an `Accept` header; the answer's status, content type and body.
async fn call_accepting(
    router: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<String>,
    accept: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {token}"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(body.map(Body::from).unwrap_or_default()).expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let bytes = response.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    (status, content_type, bytes)
}

fn fingerprint(n: u64) -> String {
    format!("{:064x}", u64::MAX - n)
}

async fn setup(url: &str) -> Bench {
    let db = Db::open(&DbOptions::new(url)).await.expect("database");
    let org = db::orgs::create(&db, None, "bench").await.expect("org");
    let actor = Actor::cli(org.id.clone());
    let (_, token) = db::tokens::create(&db, &actor, &org.id, false, None).await.expect("token");
    let user = db::users::create(&db, &actor, "bench-user", None).await.expect("user").id;
    let (_, proxy) = db::proxies::create(&db, &Actor::service("bench"), Some("bench")).await.expect("proxy credential");
    let state = AppState::new(db.clone(), Arc::new(NoSnapshots::default()), Limits::default());
    Bench { router: app(state), db, token, proxy, user }
}

/// Runs `count` requests with `IN_FLIGHT` at a time; returns requests per second.
async fn throughput(bench: &Arc<Bench>, count: usize, make: fn(&Bench, usize) -> (&'static str, String, Option<String>), expect: u16) -> f64 {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (bench, next) = (bench.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let (method, path, body) = make(&bench, i);
                let status = call(&bench.router, method, &path, &bench.token, body).await;
                assert_eq!(status, expect, "{method} {path}");
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn bind_request(bench: &Bench, i: usize) -> (&'static str, String, Option<String>) {
    let body = serde_json::json!({
        "user_id": bench.user,
        "fingerprint": fingerprint(i as u64),
        "subject_dn": format!("CN=BENCH.USER.{i},OU=PKI,OU=DoD,O=U.S. Government,C=US"),
        "issuer_dn": "CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US",
        "serial": format!("{:x}", i + 1),
        "not_before": "2025-01-15T00:00:00Z",
        "not_after": "2028-01-15T00:00:00Z",
    });
    ("POST", "/api/v1/admin/smartcards".into(), Some(body.to_string()))
}

fn revoke_request(_bench: &Bench, i: usize) -> (&'static str, String, Option<String>) {
    ("DELETE", format!("/api/v1/admin/smartcards/{}", fingerprint(i as u64)), None)
}

/// Inserts `rows` bindings for the bench user in SQL (every 10th disabled, every 100th from
/// another issuer), in chunks so neither backend holds one huge transaction.
async fn bulk_insert(bench: &Bench, rows: u64) {
    let org: String = sqlx::query_scalar("SELECT org_id FROM users WHERE id = $1")
        .bind(&bench.user)
        .fetch_one(bench.db.reader())
        .await
        .expect("org of the bench user");
    const CHUNK: u64 = 100_000;
    let mut start = 0;
    while start < rows {
        let end = (start + CHUNK).min(rows);
        let sql = match bench.db.backend() {
            Backend::Sqlite => {
                "WITH RECURSIVE seq(n) AS (SELECT $3 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < $4) \
                 INSERT INTO smart_card_links (fingerprint, user_id, org_id, subject_dn, issuer_dn, serial, \
                   not_before, not_after, label, enabled, created_at) \
                 SELECT printf('%064x', n), $1, $2, 'CN=BULK.' || n || ',O=U.S. Government,C=US', \
                   CASE WHEN n % 100 = 0 THEN 'CN=DOD EMAIL CA-62,O=U.S. Government,C=US' ELSE 'CN=DOD ID CA-59,O=U.S. Government,C=US' END, \
                   printf('%x', n + 1), '2025-01-15T00:00:00Z', '2028-01-15T00:00:00Z', NULL, \
                   CASE WHEN n % 10 = 0 THEN 0 ELSE 1 END, '2025-01-15T00:00:00Z' FROM seq"
            }
            Backend::Postgres => {
                "INSERT INTO smart_card_links (fingerprint, user_id, org_id, subject_dn, issuer_dn, serial, \
                   not_before, not_after, label, enabled, created_at) \
                 SELECT lpad(to_hex(n), 64, '0'), $1, $2, 'CN=BULK.' || n || ',O=U.S. Government,C=US', \
                   CASE WHEN n % 100 = 0 THEN 'CN=DOD EMAIL CA-62,O=U.S. Government,C=US' ELSE 'CN=DOD ID CA-59,O=U.S. Government,C=US' END, \
                   to_hex(n + 1), '2025-01-15T00:00:00Z', '2028-01-15T00:00:00Z', NULL, \
                   CASE WHEN n % 10 = 0 THEN 0 ELSE 1 END, '2025-01-15T00:00:00Z' \
                 FROM generate_series($3::bigint, $4::bigint - 1) AS n"
            }
        };
        let mut tx = bench.db.begin().await.expect("transaction");
        sqlx::query(sql)
            .bind(&bench.user)
            .bind(&org)
            .bind(start as i64)
            .bind(end as i64)
            .execute(&mut *tx)
            .await
            .expect("bulk insert");
        tx.commit().await.expect("commit");
        start = end;
    }
    if bench.db.backend() == Backend::Postgres {
        sqlx::query("ANALYZE smart_card_links").execute(bench.db.reader()).await.expect("analyze");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn list_latency(bench: &Bench, path: &str) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(LIST_SAMPLES);
    for _ in 0..LIST_SAMPLES {
        let started = Instant::now();
        let status = call(&bench.router, "GET", path, &bench.token, None).await;
        samples.push(started.elapsed());
        assert_eq!(status, 200, "{path}");
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn run(name: &str, url: &str, rows: u64) {
    let bench = Arc::new(setup(url).await);
    let binds = throughput(&bench, WRITES, bind_request, 201).await;
    let revokes = throughput(&bench, WRITES, revoke_request, 200).await;
    println!("| {name} | binds/s ({IN_FLIGHT} in flight) | {binds:.0} |");
    println!("| {name} | revokes/s ({IN_FLIGHT} in flight) | {revokes:.0} |");

    let started = Instant::now();
    bulk_insert(&bench, rows).await;
    println!("| {name} | bulk insert of {rows} rows | {:.1} s |", started.elapsed().as_secs_f64());
    let deep = format!("{:064x}", rows / 2);
    let cases = [
        ("first page (limit=100)", "/api/v1/admin/smartcards?limit=100".to_string()),
        ("page from a cursor mid-table", format!("/api/v1/admin/smartcards?limit=100&cursor={deep}")),
        ("filter user_id", format!("/api/v1/admin/smartcards?limit=100&user_id={}", bench.user)),
        ("filter enabled=false (1 in 10)", "/api/v1/admin/smartcards?limit=100&enabled=false".to_string()),
        (
            "filter issuer (1 in 100)",
            "/api/v1/admin/smartcards?limit=100&issuer=CN%3DDOD%20EMAIL%20CA-62%2CO%3DU.S.%20Government%2CC%3DUS".to_string(),
        ),
    ];
    for (what, path) in cases {
        let (p50, p99) = list_latency(&bench, &path).await;
        println!("| {name} | list at {rows} rows, {what}: p50 / p99 | {} / {} |", ms(p50), ms(p99));
    }
    revoke_to_served(name, &bench, rows).await;
    bench.db.close().await;
}

/// The snapshot service over the bulk rows, as `serve` runs it (software key: the token's
/// signature, timed by the snapshot bench, is a fraction of a millisecond).
async fn revoke_to_served(name: &str, bench: &Bench, rows: u64) {
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::from_secret(&[0x42; 32]).expect("valid scalar"));
    let verifier = SnapshotVerifier::new([PinnedKey::from_spki_der(&signer.public_key_der()).expect("key")]).expect("verifier");
    let measuring = reset_peak();
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let service = StoreService::start(bench.db.clone(), signer, StoreSettings::default()).await.expect("snapshot service");
    let first_build = started.elapsed();
    let peak_above = status_kib("VmHWM:").saturating_sub(before);
    let router = app(AppState::new(bench.db.clone(), service.clone(), Limits::default()));
    let (status, body) = call_with_body(&router, "GET", "/api/v1/snapshot", &bench.proxy, None).await;
    assert_eq!(status, 200);
    let now = certbind_shared::clock::now_seconds();
    let mut held = verifier.verify(body, now, None).expect("first snapshot");
    let full_len = held.as_bytes().len();
    println!(
        "| {name} | first snapshot from the database at {rows} rows ({} bindings): read + build + sign | {:.2} s |",
        held.binding_count(),
        first_build.as_secs_f64()
    );
    if measuring {
        println!(
            "| {name} | first snapshot at {rows} rows: peak resident memory above the process before it (rows streamed into the snapshot's buffer) | {:.1} MiB; snapshot {:.1} MiB |",
            mib(peak_above),
            full_len as f64 / 1048576.0
        );
    }
    let (mut served, mut bytes, mut applied) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..REVOKE_SAMPLES.min(rows) {
        // Bulk rows are named printf('%064x', n); spread the revokes over the table.
        let fingerprint = format!("{:064x}", i * (rows / REVOKE_SAMPLES.min(rows)));
        let status = call(&router, "DELETE", &format!("/api/v1/admin/smartcards/{fingerprint}"), &bench.token, None).await;
        assert_eq!(status, 200, "revoke {fingerprint}");
        let acknowledged = Instant::now();
        // As a filter asks: from the version it holds, accepting a delta.
        let path = format!("/api/v1/snapshot?wait=10&after_version={}", held.version());
        let (status, content_type, body) =
            call_accepting(&router, "GET", &path, &bench.proxy, None, Some(DELTA_AND_FULL)).await;
        served.push(acknowledged.elapsed());
        assert_eq!(status, 200, "long-poll after the revoke");
        assert_eq!(content_type, "application/vnd.certbind.snapshot-delta", "a revoke is served as a delta");
        bytes.push(body.len());
        let applying = Instant::now();
        let view = verifier.apply_delta(&held, &body, certbind_shared::clock::now_seconds()).expect("the delta applies");
        applied.push(applying.elapsed());
        let key = Fingerprint::from_canonical_hex(&fingerprint).expect("canonical fingerprint");
        assert!(view.card_binding(&key).is_none(), "the revoked card is still in the served snapshot");
        held = view;
    }
    served.sort();
    applied.sort();
    bytes.sort_unstable();
    let n = served.len();
    println!(
        "| {name} | revoke's 200 → delta served, at {rows} rows: p50 / max of {n} | {} / {} |",
        ms(percentile(&served, 0.5)),
        ms(*served.last().expect("samples")),
    );
    println!(
        "| {name} | bytes served per proxy for one revoke at {rows} rows (full snapshot {full_len} B): p50 / max | {} B / {} B |",
        bytes[n / 2],
        bytes[n - 1],
    );
    println!(
        "| {name} | delta applied and checked natively (the filter's code), at {rows} rows: p50 / max | {} / {} |",
        ms(percentile(&applied, 0.5)),
        ms(*applied.last().expect("samples")),
    );
}

const DELTA_AND_FULL: &str = "application/vnd.certbind.snapshot-delta, application/vnd.certbind.snapshot";

fn main() {
    let rows: u64 = std::env::var("CERTBIND_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("| store | measure | result |");
        println!("|---|---|---|");
        let dir = tempfile::tempdir().expect("temporary directory");
        run("sqlite", &format!("sqlite://{}", dir.path().join("bench.db").display()), rows).await;
        match std::env::var("CERTBIND_TEST_POSTGRES_URL") {
            Ok(admin) if !admin.is_empty() => {
                sqlx::any::install_default_drivers();
                let name = format!("cbbench_{}", db::new_id().to_ascii_lowercase());
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.expect("PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
                let url = match admin.rsplit_once('/') {
                    Some((server, _)) => format!("{server}/{name}"),
                    None => admin.clone(),
                };
                run("postgres", &url, rows).await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
            }
            _ => eprintln!("api bench: CERTBIND_TEST_POSTGRES_URL not set, PostgreSQL skipped"),
        }
    });
}
