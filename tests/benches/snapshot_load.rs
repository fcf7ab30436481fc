//! Loading the identity snapshot in the filter, through the compiled `.wasm`: a fetched
//! snapshot verified and put in force at 10 k, 100 k and 1 M bindings; another worker adopting
//! it from shared data; the VM's memory against the snapshot's size; and the cost of a lookup at
//! 1 M bindings, as a warm request against the same request over a 10-binding snapshot.
//!
//! Baselines measured in the same run: one SHA-256 over the snapshot's bytes natively (the floor
//! any verification pays) and the native verification itself.
//!
//! Prints a Markdown report; `make bench` collects it into target/bench-report.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use certbind_shared::identity::IdentityData;
use certbind_shared::snapshot::SnapshotVerifier;
use certbind_shared::Fingerprint;
use certbind_tests::cases::fixtures::{TestCert, NOW};
use certbind_tests::host::{FilterHost, HttpRequest, SharedData};
use certbind_tests::snapshots::{delta_between, signed_snapshot, SnapshotContent, Stamp, TestSnapshotKey};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::{Duration, Instant};

const LOAD_TARGET: Duration = Duration::from_secs(1);
const LOOKUP_TARGET_US: f64 = 1.0;
const MEMORY_TARGET_RATIO: f64 = 1.2;
const SNAPSHOT_TYPE: &str = "application/vnd.certbind.snapshot";
const DELTA_TYPE: &str = "application/vnd.certbind.snapshot-delta";
const DELTA_BYTES_TARGET: usize = 1024;
const DELTA_APPLY_TARGET: Duration = Duration::from_millis(50);

fn config(key: &TestSnapshotKey) -> String {
    json!({
        "policy": {"certificate_source": {"kind": "xfcc", "trust": "this_proxy"}, "default_mode": "mtls"},
        "snapshot": {
            "pinned_keys": [key.pinned_pem()],
            "control_plane": {"cluster": "cp", "authority": "cp", "credential": "c", "long_poll_seconds": 30}
        }
    })
    .to_string()
}

fn worker(shared: &SharedData, seed: u64, config: &str) -> FilterHost {
    let mut host =
        FilterHost::with_shared_data(std::path::Path::new(certbind_tests::FILTER_WASM), shared.clone()).unwrap();
    host.set_random_seed(seed);
    host.set_time_nanos(u64::try_from(NOW).unwrap() * 1_000_000_000);
    host.set_call_deadline(Duration::from_secs(120));
    assert!(host.configure(config.as_bytes()).unwrap());
    host
}

fn stamp(version: u64) -> Stamp {
    Stamp { version, issued_at: NOW - 60, expires_at: NOW + 86_400 }
}

/// Delivers `bytes` as the answer to the worker's next fetch; returns how long the filter took.
fn deliver(host: &mut FilterHost, bytes: &[u8]) -> Duration {
    deliver_as(host, bytes, SNAPSHOT_TYPE)
}

fn deliver_as(host: &mut FilterHost, bytes: &[u8], content_type: &str) -> Duration {
    host.advance_time(Duration::from_secs(2));
    host.tick().unwrap();
    let call = host.take_http_calls().pop().expect("a fetch");
    let start = Instant::now();
    host.respond_http_call(call.token, &[(":status", "200"), ("content-type", content_type)], bytes).unwrap();
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn mib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

struct Loaded {
    bindings: usize,
    snapshot_bytes: usize,
    sha256: Duration,
    native_verify: Duration,
    wasm_load: Duration,
    wasm_adopt: Duration,
    memory_empty: usize,
    memory_after_load: usize,
    memory_after_update: usize,
    delta_bytes: usize,
    delta_apply: Duration,
    delta_follow: Duration,
    memory_after_delta: usize,
    follower_memory_after_delta: usize,
}

fn load(bindings: usize, runs: usize, key: &TestSnapshotKey, card: &TestCert) -> Loaded {
    let content =
        SnapshotContent::synthetic(bindings.saturating_sub(1)).bind(card.fingerprint, "01JBUSER00000000000000000A", "org-a");
    let first = signed_snapshot(key, &content, stamp(7));
    let second = signed_snapshot(key, &content.clone().block(card.fingerprint), stamp(8));
    // A revoke: the card's binding removed.
    let mut revoked = content.clone();
    revoked.bindings.retain(|(fingerprint, ..)| *fingerprint != card.fingerprint);
    let third = signed_snapshot(key, &revoked, stamp(9));
    let delta = delta_between(&second, &third);
    let verifier = SnapshotVerifier::from_key_texts(&[key.pinned_pem()]).unwrap();
    let sha256 = median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                black_box(Sha256::digest(black_box(&first)));
                start.elapsed()
            })
            .collect(),
    );
    let native_verify = median(
        (0..runs)
            .map(|_| {
                let bytes = first.clone();
                let start = Instant::now();
                black_box(verifier.verify(bytes, NOW, None).unwrap());
                start.elapsed()
            })
            .collect(),
    );
    let config = config(key);
    let mut loads = Vec::new();
    let mut adopts = Vec::new();
    let mut memory_empty = 0;
    let mut memory_after_load = 0;
    let mut memory_after_update = 0;
    let (mut delta_apply, mut delta_follow) = (Duration::ZERO, Duration::ZERO);
    let (mut memory_after_delta, mut follower_memory_after_delta) = (0, 0);
    for run in 0..runs {
        let shared = SharedData::new();
        let mut fetcher = worker(&shared, 1, &config);
        let mut follower = worker(&shared, 2, &config);
        if run == 0 {
            memory_empty = fetcher.memory_bytes();
        }
        loads.push(deliver(&mut fetcher, &first));
        assert_eq!(fetcher.metric("certbind.snapshot.version"), Some(7));
        follower.advance_time(Duration::from_secs(2));
        let start = Instant::now();
        follower.tick().unwrap();
        adopts.push(start.elapsed());
        assert_eq!(follower.metric("certbind.snapshot.version"), Some(7));
        if run == 0 {
            memory_after_load = fetcher.memory_bytes();
            deliver(&mut fetcher, &second);
            assert_eq!(fetcher.metric("certbind.snapshot.version"), Some(8));
            memory_after_update = fetcher.memory_bytes();
            follower.advance_time(Duration::from_secs(2));
            follower.tick().unwrap();
            assert_eq!(follower.metric("certbind.snapshot.version"), Some(8));
            delta_apply = deliver_as(&mut fetcher, &delta, DELTA_TYPE);
            assert_eq!(fetcher.metric("certbind.snapshot.version"), Some(9));
            assert_eq!(fetcher.metric("certbind.snapshot.deltas_applied"), Some(1));
            memory_after_delta = fetcher.memory_bytes();
            follower.advance_time(Duration::from_secs(2));
            let start = Instant::now();
            follower.tick().unwrap();
            delta_follow = start.elapsed();
            assert_eq!(follower.metric("certbind.snapshot.version"), Some(9));
            assert_eq!(follower.metric("certbind.snapshot.deltas_applied"), Some(1));
            follower_memory_after_delta = follower.memory_bytes();
        }
    }
    Loaded {
        bindings,
        snapshot_bytes: first.len(),
        sha256,
        native_verify,
        wasm_load: median(loads),
        wasm_adopt: median(adopts),
        memory_empty,
        memory_after_load,
        memory_after_update,
        delta_bytes: delta.len(),
        delta_apply,
        delta_follow,
        memory_after_delta,
        follower_memory_after_delta,
    }
}

/// Warm `mtls` requests per second over a snapshot of `bindings`, through wasm.
fn warm_request_us(bindings: usize, key: &TestSnapshotKey, card: &TestCert, requests: usize) -> f64 {
    let content =
        SnapshotContent::synthetic(bindings.saturating_sub(1)).bind(card.fingerprint, "01JBUSER00000000000000000A", "org-a");
    let bytes = signed_snapshot(key, &content, stamp(7));
    let mut host = worker(&SharedData::new(), 1, &config(key));
    deliver(&mut host, &bytes);
    let request = HttpRequest::get("/mtls/x")
        .header("x-forwarded-client-cert", &card.xfcc())
        .property_str("connection.sha256_peer_certificate_digest", &card.hex());
    for _ in 0..1_000 {
        host.request(&request).unwrap();
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..requests {
            black_box(host.request(&request).unwrap());
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / requests as f64);
    }
    best
}

/// Native lookups of random present and absent fingerprints at `bindings`.
fn native_lookup_ns(bindings: usize, key: &TestSnapshotKey) -> f64 {
    let content = SnapshotContent::synthetic(bindings);
    let bytes = signed_snapshot(key, &content, stamp(7));
    let view = SnapshotVerifier::from_key_texts(&[key.pinned_pem()]).unwrap().verify(bytes, NOW, None).unwrap();
    let probes: Vec<Fingerprint> = (0..10_000u64)
        .map(|i| {
            let n = if i % 2 == 0 { i * 97 % bindings as u64 } else { bindings as u64 + i };
            Fingerprint(Sha256::digest(n.to_le_bytes()).into())
        })
        .collect();
    let start = Instant::now();
    let mut found = 0usize;
    for _ in 0..20 {
        for probe in &probes {
            found += usize::from(view.card_binding(black_box(probe)).is_some());
        }
    }
    assert_eq!(found, 20 * 5_000);
    start.elapsed().as_secs_f64() * 1e9 / (20.0 * probes.len() as f64)
}

fn main() {
    let key = TestSnapshotKey::new("bench");
    let card = TestCert::load("piv-auth");
    let mut out = String::new();
    out.push_str("## Identity snapshot in the filter (through the .wasm)\n\n");
    out.push_str("A fetched snapshot verified (pinned key, signature, version, expiry, structure) and put in force by the fetching worker; another worker adopting it from shared data; median of the runs. Baselines from the same run: SHA-256 of the same bytes natively, and the native verification.\n\n");
    out.push_str("| bindings | snapshot MiB | SHA-256 native ms | verify native ms | wasm: fetch → in force ms | ÷ native verify | wasm: adopt from shared data ms | VM memory: empty MiB | after load MiB (× snapshot) | after one more version MiB (× snapshot) | target |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    let mut loaded = Vec::new();
    for (bindings, runs) in [(10_000, 7), (100_000, 5), (1_000_000, 3)] {
        let l = load(bindings, runs, &key, &card);
        let ratio = |m: usize| m as f64 / l.snapshot_bytes as f64;
        let above = |m: usize| m.saturating_sub(l.memory_empty) as f64 / l.snapshot_bytes as f64;
        let met = l.wasm_load <= LOAD_TARGET
            && above(l.memory_after_load) <= MEMORY_TARGET_RATIO
            && above(l.memory_after_update) <= MEMORY_TARGET_RATIO;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1}× | {} | {} | {} ({:.2}×) | {} ({:.2}×) | load ≤ 1 s, memory above the empty VM ≤ {MEMORY_TARGET_RATIO}×: {} |\n",
            l.bindings,
            mib(l.snapshot_bytes),
            ms(l.sha256),
            ms(l.native_verify),
            ms(l.wasm_load),
            l.wasm_load.as_secs_f64() / l.native_verify.as_secs_f64(),
            ms(l.wasm_adopt),
            mib(l.memory_empty),
            mib(l.memory_after_load),
            ratio(l.memory_after_load),
            mib(l.memory_after_update),
            ratio(l.memory_after_update),
            if met { "met" } else { "not met" },
        ));
        loaded.push(l);
    }
    out.push_str("\nA revoke as a delta (the card's binding removed), through wasm: the fetching worker applies it (and publishes it beside the new version's chunks for the others), another worker applies it from shared data; VM memory after it, against the snapshot's size.\n\n");
    out.push_str("| bindings | delta bytes (target ≤ 1 KB) | fetcher: apply + publish ms (target ≤ 50) | follower: apply from shared data ms | fetcher memory above empty VM (× snapshot) | follower memory above empty VM (× snapshot) |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|\n");
    for l in &loaded {
        let above = |m: usize| m.saturating_sub(l.memory_empty) as f64 / l.snapshot_bytes as f64;
        out.push_str(&format!(
            "| {} | {} ({}) | {} ({}) | {} | {:.2}× | {:.2}× |\n",
            l.bindings,
            l.delta_bytes,
            if l.delta_bytes <= DELTA_BYTES_TARGET { "met" } else { "not met" },
            ms(l.delta_apply),
            if l.delta_apply <= DELTA_APPLY_TARGET { "met" } else { "not met" },
            ms(l.delta_follow),
            above(l.memory_after_delta),
            above(l.follower_memory_after_delta),
        ));
    }
    let small = warm_request_us(10, &key, &card, 20_000);
    let large = warm_request_us(1_000_000, &key, &card, 20_000);
    let native = native_lookup_ns(1_000_000, &key);
    out.push_str(&format!(
        "\nLookup at 1 M bindings: a warm `mtls` request through wasm takes {large:.2} µs against {small:.2} µs over a 10-binding snapshot in the same run: the lookups of a request (binding, blocklist) add {:.2} µs (target ≤ {LOOKUP_TARGET_US} µs: {}). Natively one binding lookup at 1 M takes {native:.0} ns (half present, half absent).\n",
        large - small,
        if large - small <= LOOKUP_TARGET_US { "met" } else { "not met" },
    ));
    print!("{out}");
}
