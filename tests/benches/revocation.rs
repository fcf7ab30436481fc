//! A revocation's path from the control plane's `200` to the filter's refusal, headless: the
//! compiled `.wasm` in the wasmtime host, its callouts carried over TCP to a real control plane
//! (SoftHSM2 key, SQLite) started by the project's own scripts. One card is bound and revoked
//! again and again; each revoke's time is from the `DELETE`'s `200` to the first request the
//! filter refuses, probing every millisecond. The proxy's clock follows the wall clock and it
//! ticks every 200 ms, as Envoy would.
//!
//! Needs the venv (`scripts/dev-setup.sh`) and the optimised `certbind` binary (`cargo build
//! --release -p certbind-control-plane`); `make bench` provides both. Prints a Markdown report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use certbind_tests::bridge::{send, CalloutBridge, Response};
use certbind_tests::cases::fixtures::TestCert;
use certbind_tests::host::{FilterHost, HttpRequest, SharedData};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REVOKES: usize = 100;
/// Cards bound besides the one revoked, so the snapshot has a deployment's size and a revoke
/// travels as a delta (`CERTBIND_BENCH_BINDINGS`, default 100 000).
const DEFAULT_BINDINGS: usize = 100_000;
const TARGET_P99: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(200);
const CLUSTER: &str = "certbind_control_plane";

struct ControlPlane {
    child: Child,
    address: SocketAddr,
    description: Value,
}

impl ControlPlane {
    fn start(bindings: usize) -> ControlPlane {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let run = root.join("target/bench-revocation");
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).unwrap();
        // The control plane as deployed: the optimised build (`cargo build --release`).
        let binary = root.join("target/release/certbind");
        assert!(binary.exists(), "{} missing: cargo build --release -p certbind-control-plane", binary.display());
        let mut child = Command::new(root.join(".venv/bin/python"))
            .env("CERTBIND_BIN", &binary)
            .args(["-m", "devstack.demo_control_plane"])
            .arg(run.join("state"))
            .arg(run.join("logs"))
            .arg(bindings.to_string())
            .current_dir(root.join("scripts"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python in .venv (scripts/dev-setup.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let description: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let url = description["url"].as_str().unwrap();
        let address: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
        ControlPlane { child, address, description }
    }

    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let token = format!("Bearer {}", self.description["admin_token"].as_str().unwrap());
        let mut headers = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            ("authorization".to_string(), token),
        ];
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("content-type".to_string(), "application/json".to_string()));
        }
        send(self.address, &headers, &body, Duration::from_secs(30)).unwrap()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn wall_nanos() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

/// The proxy: one VM, its callouts bridged, its clock the wall clock.
struct Proxy {
    host: FilterHost,
    bridge: CalloutBridge,
    last_tick: Instant,
}

impl Proxy {
    fn run_once(&mut self) {
        self.host.set_time_nanos(wall_nanos());
        if self.last_tick.elapsed() >= TICK {
            self.last_tick = Instant::now();
            self.host.tick().unwrap();
        }
        self.bridge.dispatch(&mut self.host);
        self.bridge.deliver(&mut self.host).unwrap();
        self.bridge.dispatch(&mut self.host);
    }

    /// Runs the proxy until `done` holds for the filter's answer to `request`, probing every
    /// millisecond; the time it took.
    fn until(&mut self, request: &HttpRequest, done: impl Fn(u32) -> bool, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            self.run_once();
            let status = self.host.request(request).unwrap().status().unwrap_or(200);
            if done(status) {
                return start.elapsed();
            }
            assert!(start.elapsed() < limit, "no change within {limit:?} (status {status})");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

fn main() {
    let bindings = std::env::var("CERTBIND_BENCH_BINDINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_BINDINGS);
    let cp = ControlPlane::start(bindings);
    let card = TestCert::load("piv-auth");
    let config = json!({
        "policy": {
            "certificate_source": {"kind": "xfcc", "trust": "this_proxy"},
            "default_mode": "mtls",
            "require_enrolled_card": true
        },
        "snapshot": {
            "pinned_keys": [cp.description["public_key_pem"]],
            "control_plane": {
                "cluster": CLUSTER,
                "authority": cp.address.to_string(),
                "credential": cp.description["proxy_credential"],
                "long_poll_seconds": 30
            }
        }
    });
    let mut host = FilterHost::with_shared_data(std::path::Path::new(certbind_tests::FILTER_WASM), SharedData::new())
        .unwrap();
    host.set_time_nanos(wall_nanos());
    assert!(host.configure(config.to_string().as_bytes()).unwrap(), "{:?}", host.take_logs());
    let mut proxy = Proxy { host, bridge: CalloutBridge::new(&[(CLUSTER, cp.address)]), last_tick: Instant::now() };
    let request = HttpRequest::get("/api/x")
        .header("x-forwarded-client-cert", &card.xfcc())
        .property_str("connection.sha256_peer_certificate_digest", &card.hex());

    let user = cp.description["user_id"].as_str().unwrap();
    let bind = json!({"user_id": user, "certificate_pem": card.pem});
    let mut revokes = Vec::with_capacity(REVOKES);
    let mut binds = Vec::with_capacity(REVOKES);
    for _ in 0..REVOKES {
        let bound = cp.admin("POST", "/api/v1/admin/smartcards", Some(&bind));
        assert_eq!(bound.status, 201, "{}", String::from_utf8_lossy(&bound.body));
        binds.push(proxy.until(&request, |s| s == 200, Duration::from_secs(30)));
        let revoked = cp.admin("DELETE", &format!("/api/v1/admin/smartcards/{}", card.hex()), None);
        assert_eq!(revoked.status, 200, "{}", String::from_utf8_lossy(&revoked.body));
        revokes.push(proxy.until(&request, |s| s == 403, Duration::from_secs(30)));
    }
    revokes.sort();
    binds.sort();
    let fetches = proxy.host.metric("certbind.snapshot.fetches").unwrap_or(0);
    let deltas = proxy.host.metric("certbind.snapshot.deltas_applied").unwrap_or(0);
    let fulls = proxy.host.metric("certbind.snapshot.full_loads").unwrap_or(0);
    let p99 = percentile(&revokes, 0.99);
    println!("## Revocation reaching the filter (headless, real control plane)\n");
    println!(
        "{REVOKES} revokes of one bound card among {bindings} others, each timed from the control plane's `200` to the filter's first refusal (probing every ms); the proxy ticks every 200 ms on the wall clock. The filter fetched {fetches} times: {fulls} whole snapshots, {deltas} deltas.\n"
    );
    println!("| | p50 ms | p99 ms | max ms | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| revoke → refused | {} | {} | {} | p99 ≤ {} ms: {} |",
        ms(percentile(&revokes, 0.5)),
        ms(p99),
        ms(*revokes.last().unwrap()),
        TARGET_P99.as_millis(),
        if p99 <= TARGET_P99 { "met" } else { "not met" }
    );
    println!(
        "| bind → allowed | {} | {} | {} | |",
        ms(percentile(&binds, 0.5)),
        ms(percentile(&binds, 0.99)),
        ms(*binds.last().unwrap())
    );
}
