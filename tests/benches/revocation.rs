//! A revocation's path from the control plane's `200` to the filter's refusal, headless: the
//! compiled `.wasm` in the wasmtime host, its callouts carried over TCP to a real control plane
//! (SoftHSM2 key, SQLite) started by the project's own scripts. The proxy's clock follows the
//! wall clock and it ticks every 200 ms, as Envoy would; every time is from the control plane's
//! `2xx` to the first request the filter answers the new way, probing every millisecond.
//!
//! 1. An admin's revoke (the baseline): one card is bound and revoked (`DELETE` of its binding)
//!    again and again.
//! 2. The CA's own CRL: the card's issuing CA (the test PKI's) is registered, then CRLs it
//!    signs are uploaded with increasing CRL Numbers, each adding 1,000 entries to the last
//!    and alternately listing and unlisting the card's serial: refused `certificate_revoked`,
//!    then allowed again. The snapshot deltas the filter fetched for each update are counted.
//!
//! Needs the venv (`scripts/dev-setup.sh`) and the optimised `certbind` binary (`cargo build
//! --release -p certbind-control-plane`); `make bench` provides both. Prints a Markdown report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use certbind_shared::certificate::{CaCertificate, CertificateFacts};
use certbind_shared::crl::testing::{entry, synthetic_entries, SyntheticCa};
use certbind_tests::bridge::{send, Answered, CalloutBridge, Response};
use certbind_tests::cases::fixtures::{pki_dir, TestCert};
use certbind_tests::host::{FilterHost, HttpRequest, HttpResult, SharedData};
use p256::pkcs8::DecodePrivateKey as _;
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
/// CRL uploads after the first; half list the card, half unlist it.
const CRL_UPDATES: u64 = 100;
/// Entries each CRL adds to the one before.
const CRL_STEP: u64 = 1_000;
const CRL_TARGET_P99: Duration = Duration::from_secs(2);
const CRL_TARGET_DELTA_BYTES: usize = 32 * 1024;
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
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.admin_bytes(method, path, "application/json", &body)
    }

    /// `body` sent as `content_type` (when not empty).
    fn admin_bytes(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Response {
        let token = format!("Bearer {}", self.description["admin_token"].as_str().unwrap());
        let mut headers = vec![
            (":method".to_string(), method.to_string()),
            (":path".to_string(), path.to_string()),
            ("authorization".to_string(), token),
        ];
        if !body.is_empty() {
            headers.push(("content-type".to_string(), content_type.to_string()));
        }
        send(self.address, &headers, body, Duration::from_secs(30)).unwrap()
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

    /// Runs the proxy until the filter answers `request` as `expected`, probing every
    /// millisecond; the time it took.
    fn until(&mut self, request: &HttpRequest, expected: Answer, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            self.run_once();
            let answer = Answer::of(&self.host.request(request).unwrap());
            if answer == expected {
                return start.elapsed();
            }
            assert!(start.elapsed() < limit, "no change within {limit:?}: {answer:?}, waiting for {expected:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The snapshot bytes the filter received since the last call: (bodies' total, whether
    /// every one was a delta).
    fn snapshot_bytes(&mut self) -> (usize, bool) {
        let fetched: Vec<Answered> =
            self.bridge.take_answered().into_iter().filter(|a| a.path.starts_with("/api/v1/snapshot") && a.status == 200).collect();
        let all_deltas =
            fetched.iter().all(|a| a.content_type.as_deref() == Some("application/vnd.certbind.snapshot-delta"));
        (fetched.iter().map(|a| a.body_bytes).sum(), all_deltas)
    }
}

/// What the filter did with a request: forwarded it, or answered with a status and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Forwarded,
    Refused(u32, String),
}

impl Answer {
    fn of(result: &HttpResult) -> Answer {
        match &result.local_response {
            None => Answer::Forwarded,
            Some(response) => {
                let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
                Answer::Refused(response.status, body["reason"].as_str().unwrap_or_default().to_string())
            }
        }
    }

    fn refused(status: u32, reason: &str) -> Answer {
        Answer::Refused(status, reason.to_string())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

/// A Markdown row: `label`, then p50, p99 and max of `sorted` in ms, then `more` cells.
fn timing_row(label: &str, sorted: &[Duration], more: &[String]) {
    let times = [percentile(sorted, 0.5), percentile(sorted, 0.99), *sorted.last().unwrap()].map(ms);
    println!("| {label} | {} | {} |", times.join(" | "), more.join(" | "));
}

fn target(p99: Duration, target: Duration) -> String {
    format!("p99 ≤ {} ms: {}", target.as_millis(), if p99 <= target { "met" } else { "not met" })
}


/// The big-endian magnitude of a lowercase hex serial.
fn serial_bytes(hex: &str) -> Vec<u8> {
    let padded = if hex.len() % 2 == 1 { format!("0{hex}") } else { hex.to_string() };
    (0..padded.len()).step_by(2).map(|i| u8::from_str_radix(&padded[i..i + 2], 16).unwrap()).collect()
}

/// The test PKI's issuing CA, signing with its own key: the CA of the bound card.
fn issuing_ca() -> (SyntheticCa, String) {
    let pem = std::fs::read_to_string(pki_dir().join("piv-issuing-ca.pem")).unwrap();
    let key = std::fs::read_to_string(pki_dir().join("piv-issuing-ca.key")).unwrap();
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&key).unwrap();
    let certificate = CaCertificate::from_pem(pem.as_bytes()).unwrap();
    (SyntheticCa::with_key(key, certificate).expect("piv-issuing-ca.key is the CA's key"), pem)
}

/// CRL `number` of `ca`: `entries` synthetic entries, then `card` when given.
fn crl(ca: &SyntheticCa, number: u64, entries: u64, card: Option<&[u8]>) -> Vec<u8> {
    let this_update = certbind_shared::clock::now_seconds() - 60;
    let mut listed = synthetic_entries(entries, this_update - 86_400);
    if let Some(serial) = card {
        listed.extend_from_slice(&entry(serial, this_update - 3600, &[]));
    }
    ca.sign(&ca.tbs_parts(number, this_update, Some(this_update + 7 * 86_400), listed).encode())
}

/// Uploads `der`; the control plane's counts of entries added and removed.
fn upload(cp: &ControlPlane, der: &[u8]) -> (u64, u64) {
    let answer = cp.admin_bytes("POST", "/api/v1/admin/crls", "application/pkix-crl", der);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    (body["added"].as_u64().unwrap(), body["removed"].as_u64().unwrap())
}

fn kb(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
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
    let wait = Duration::from_secs(30);
    let unbound = Answer::refused(403, "card_not_enrolled");

    // 1. The baseline: an admin's revoke.
    let user = cp.description["user_id"].as_str().unwrap();
    let bind = json!({"user_id": user, "certificate_pem": card.pem});
    let mut revokes = Vec::with_capacity(REVOKES);
    let mut binds = Vec::with_capacity(REVOKES);
    let mut revoke_bytes = Vec::with_capacity(REVOKES);
    for _ in 0..REVOKES {
        let bound = cp.admin("POST", "/api/v1/admin/smartcards", Some(&bind));
        assert_eq!(bound.status, 201, "{}", String::from_utf8_lossy(&bound.body));
        binds.push(proxy.until(&request, Answer::Forwarded, wait));
        proxy.snapshot_bytes();
        let revoked = cp.admin("DELETE", &format!("/api/v1/admin/smartcards/{}", card.hex()), None);
        assert_eq!(revoked.status, 200, "{}", String::from_utf8_lossy(&revoked.body));
        revokes.push(proxy.until(&request, unbound.clone(), wait));
        revoke_bytes.push(proxy.snapshot_bytes().0);
    }
    revokes.sort();
    binds.sort();
    revoke_bytes.sort();
    let fetches = proxy.host.metric("certbind.snapshot.fetches").unwrap_or(0);
    let deltas = proxy.host.metric("certbind.snapshot.deltas_applied").unwrap_or(0);
    let fulls = proxy.host.metric("certbind.snapshot.full_loads").unwrap_or(0);

    // 2. The CA's CRL: registered, a first CRL without the card, then the updates.
    let (ca, ca_pem) = issuing_ca();
    let serial = serial_bytes(&CertificateFacts::from_der(&card.der).unwrap().serial_hex);
    let bound = cp.admin("POST", "/api/v1/admin/smartcards", Some(&bind));
    assert_eq!(bound.status, 201, "{}", String::from_utf8_lossy(&bound.body));
    proxy.until(&request, Answer::Forwarded, wait);
    let registered = cp.admin("POST", "/api/v1/admin/cas", Some(&json!({"certificate_pem": ca_pem})));
    assert_eq!(registered.status, 201, "{}", String::from_utf8_lossy(&registered.body));
    // Registered with the default policy, it needs a fresh CRL before the card passes again.
    proxy.until(&request, Answer::refused(401, "revocation_unknown"), wait);
    assert_eq!(upload(&cp, &crl(&ca, 1, CRL_STEP, None)), (CRL_STEP, 0));
    proxy.until(&request, Answer::Forwarded, wait);
    proxy.snapshot_bytes();
    let (mut listings, mut unlistings, mut update_bytes) = (Vec::new(), Vec::new(), Vec::new());
    let mut only_deltas = true;
    let mut largest_crl = 0;
    for update in 0..CRL_UPDATES {
        let entries = CRL_STEP * (update + 2);
        let listed = update % 2 == 0;
        let der = crl(&ca, update + 2, entries, listed.then_some(serial.as_slice()));
        largest_crl = largest_crl.max(der.len());
        let counts = upload(&cp, &der);
        if listed {
            assert_eq!(counts, (CRL_STEP + 1, 0));
            listings.push(proxy.until(&request, Answer::refused(401, "certificate_revoked"), wait));
        } else {
            assert_eq!(counts, (CRL_STEP, 1));
            unlistings.push(proxy.until(&request, Answer::Forwarded, wait));
        }
        let (bytes, deltas) = proxy.snapshot_bytes();
        update_bytes.push(bytes);
        only_deltas &= deltas;
    }
    listings.sort();
    unlistings.sort();
    update_bytes.sort();

    let p99 = percentile(&revokes, 0.99);
    println!("## Revocation reaching the filter (headless, real control plane)\n");
    println!(
        "{REVOKES} revokes of one bound card among {bindings} others, each timed from the control plane's `200` to the filter's first refusal (probing every ms); the proxy ticks every 200 ms on the wall clock. The filter fetched {fetches} times: {fulls} whole snapshots, {deltas} deltas.\n"
    );
    println!("| | p50 ms | p99 ms | max ms | target |");
    println!("|---|---:|---:|---:|---|");
    timing_row("revoke → refused", &revokes, &[target(p99, TARGET_P99)]);
    timing_row("bind → allowed", &binds, &[String::new()]);

    let ratio = |d: Duration| format!("{:.2}×", d.as_secs_f64() / p99.as_secs_f64());
    let crl_p99 = percentile(&listings, 0.99);
    let largest_delta = *update_bytes.last().unwrap();
    println!("\n## A CRL update reaching the filter (headless, real control plane)\n");
    println!(
        "The bound card's issuing CA registered, then {CRL_UPDATES} CRLs it signed uploaded as DER, CRL Numbers 2 to {}: each adds {CRL_STEP} entries to the one before (to {} entries, {} KB of DER), and they alternately list and unlist the card's serial ({} times each: their p99 is their maximum). Each is timed from the upload's `200` to the filter's first `401 certificate_revoked` (listed) or first forwarded request (unlisted); the baseline is the admin revoke above (its p99). Delta bytes are the snapshot bodies the filter fetched for one update ({}).\n",
        CRL_UPDATES + 1,
        CRL_STEP * (CRL_UPDATES + 1) + 1,
        kb(largest_crl),
        CRL_UPDATES / 2,
        if only_deltas { "every one a delta" } else { "not all deltas: a whole snapshot was fetched" }
    );
    println!("| | p50 ms | p99 ms | max ms | p99 / revoke p99 | target |");
    println!("|---|---:|---:|---:|---:|---|");
    timing_row("CRL lists the card → refused", &listings, &[ratio(crl_p99), target(crl_p99, CRL_TARGET_P99)]);
    timing_row("CRL unlists the card → allowed", &unlistings, &[ratio(percentile(&unlistings, 0.99)), String::new()]);
    println!("\n| snapshot bytes per change | p50 KB | max KB | max / revoke max | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| CRL update (+{CRL_STEP} entries) | {} | {} | {:.1}× | ≤ {} KB: {} |",
        kb(update_bytes[update_bytes.len() / 2]),
        kb(largest_delta),
        largest_delta as f64 / (*revoke_bytes.last().unwrap()).max(1) as f64,
        CRL_TARGET_DELTA_BYTES / 1024,
        if only_deltas && largest_delta <= CRL_TARGET_DELTA_BYTES { "met" } else { "not met" }
    );
    println!(
        "| admin revoke (baseline) | {} | {} | 1.0× | |",
        kb(revoke_bytes[revoke_bytes.len() / 2]),
        kb(*revoke_bytes.last().unwrap())
    );
}
