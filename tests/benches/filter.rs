//! Per-request cost of the filter, natively (the filter's request path over a recording host)
//! and through the compiled `.wasm` under the wasmtime host, for the paths with speed targets:
//!
//! - `mtls` with a cold certificate: the facts cache is off, so every request decodes the PEM,
//!   hashes the DER and parses it;
//! - `mtls` warm: the certificate's facts are found by the trusted hop's `Hash`;
//! - `bearer_plus_mtls_required` with a warm token cache;
//! - the same route with the token cache off: one ES256, or one RS256, verification per request.
//!
//! Each figure is a ratio against baselines measured in the same run: the same request
//! natively (what the VM costs), a baseline guest making the same host calls with no logic
//! (what the harness and the host calls cost), and one SHA-256 of the certificate's DER
//! natively (the floor any cold certificate path pays). Host calls per request are counted, since each
//! is a VM-boundary crossing in a real proxy. The `.wasm` size is reported against its target.
//!
//! Prints a Markdown report; `make bench` collects it into target/bench-report.md.
//! `CERTBIND_BENCH_ONLY=warm` keeps the scenarios whose name contains `warm`;
//! `CERTBIND_BENCH_SIDE=native` (or `wasm`) times one side only, for a profiler.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use certbind_tests::cases::fixtures::{self, cert, claims, token};
use certbind_tests::cases::native::NativeFilter;
use certbind_tests::cases::table::{standard_config, standard_policy};
use certbind_tests::cases::wasm::http_request;
use certbind_tests::cases::CaseRequest;
use certbind_tests::host::FilterHost;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Speed targets through wasm, per request.
const WARM_TARGET_US: f64 = 5.0;
const COLD_CERTIFICATE_TARGET_US: f64 = 30.0;
const WASM_SIZE_TARGET_BYTES: u64 = 1_500_000;

struct Scenario {
    name: &'static str,
    config: Value,
    request: CaseRequest,
    target_us: Option<f64>,
    /// Whether every request hashes the certificate (no facts cache).
    hashes_certificate: bool,
}

fn request(path: &str, bearer: Option<String>) -> CaseRequest {
    let jane = cert("piv-auth");
    let mut headers = vec![("x-forwarded-client-cert".to_string(), jane.xfcc())];
    if let Some(t) = bearer {
        headers.push(("authorization".to_string(), format!("Bearer {t}")));
    }
    CaseRequest {
        path: path.into(),
        headers,
        peer: "203.0.113.9:40000".into(),
        connection_digest: Some(jane.hex()),
        now: fixtures::NOW,
        ..Default::default()
    }
}

fn config_with(policy_change: impl Fn(&mut Value)) -> Value {
    let mut config = standard_config();
    let mut policy = standard_policy();
    policy_change(&mut policy);
    config["policy"] = policy;
    config
}

fn scenarios() -> Vec<Scenario> {
    let jane = cert("piv-auth");
    let es256 = token(&claims(Some(jane)));
    let rs256 = fixtures::rs256_token(&claims(Some(jane)));
    let no_token_cache = config_with(|p| p["token"]["cache_capacity"] = json!(0));
    vec![
        Scenario {
            name: "mtls, cold certificate",
            config: config_with(|p| p["facts_cache_capacity"] = json!(0)),
            request: request("/mtls/x", None),
            target_us: Some(COLD_CERTIFICATE_TARGET_US),
            hashes_certificate: true,
        },
        Scenario {
            name: "mtls, warm",
            config: standard_config(),
            request: request("/mtls/x", None),
            target_us: Some(WARM_TARGET_US),
            hashes_certificate: false,
        },
        Scenario {
            name: "bearer_plus_mtls_required, warm token",
            config: standard_config(),
            request: request("/required/x", Some(es256.clone())),
            target_us: Some(WARM_TARGET_US),
            hashes_certificate: false,
        },
        Scenario {
            name: "bearer_plus_mtls_required, cold ES256",
            config: no_token_cache.clone(),
            request: request("/required/x", Some(es256)),
            target_us: None,
            hashes_certificate: false,
        },
        Scenario {
            name: "bearer_plus_mtls_required, cold RS256",
            config: no_token_cache,
            request: request("/required/x", Some(rs256)),
            target_us: None,
            hashes_certificate: false,
        },
    ]
}

/// Per-call times of `functions`, in nanoseconds: after a warm-up, 15 rounds in which every
/// function runs one batch of about 20 ms in turn, each keeping its fastest batch. Interleaved,
/// the functions of one scenario see the same machine, so their ratios hold even when a
/// neighbour slows the machine between rounds; the fastest batch (thousands of calls) measures
/// the code rather than the neighbours.
fn time_interleaved(functions: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let batches: Vec<u64> = functions
        .iter_mut()
        .map(|f| {
            let warm_until = Instant::now() + Duration::from_millis(200);
            let mut calls = 0u64;
            while Instant::now() < warm_until {
                f();
                calls += 1;
            }
            (calls / 10).max(1)
        })
        .collect();
    let mut best = vec![f64::INFINITY; functions.len()];
    for _ in 0..15 {
        for ((f, batch), best) in functions.iter_mut().zip(&batches).zip(best.iter_mut()) {
            let start = Instant::now();
            for _ in 0..*batch {
                f();
            }
            *best = best.min(start.elapsed().as_nanos() as f64 / *batch as f64);
        }
    }
    best
}

fn time_per_call(mut f: impl FnMut()) -> f64 {
    time_interleaved(&mut [&mut f])[0]
}

struct Row {
    name: &'static str,
    native_ns: f64,
    wasm_ns: f64,
    passthrough_ns: f64,
    /// The baseline guest also hashing the certificate's DER, for the cold certificate path.
    passthrough_hashing_ns: Option<f64>,
    passthrough_calls: u64,
    native_calls: u32,
    wasm_calls: u64,
    wasm_call_detail: String,
    target_us: Option<f64>,
}

fn measure(scenario: &Scenario) -> Row {
    let config = scenario.config.to_string();

    let mut native = NativeFilter::new(config.as_bytes()).unwrap();
    let (seen, host) = native.run(&scenario.request);
    assert!(seen.local_response.is_none(), "{}: natively refused: {:?}", scenario.name, seen.local_response);
    let native_calls = *host.calls.borrow();
    let mut wasm = FilterHost::load_filter().unwrap();
    assert!(wasm.configure(config.as_bytes()).unwrap(), "{}: configuration refused: {:?}", scenario.name, wasm.take_logs());
    wasm.set_time_nanos(u64::try_from(scenario.request.now).unwrap() * 1_000_000_000);
    let http = http_request(&scenario.request);
    let result = wasm.request(&http).unwrap();
    assert!(result.local_response.is_none(), "{}: the wasm refused: {:?}", scenario.name, result.local_response);

    // The baseline guest: the same request, the same host calls, no logic.
    let mut passthrough = FilterHost::load(std::path::Path::new(certbind_tests::PASSTHROUGH_WASM)).unwrap();
    assert!(passthrough.configure(b"{}").unwrap());
    let baseline = passthrough.request(&http).unwrap();
    // And the same guest hashing the certificate's DER on every request.
    let mut hashing = FilterHost::load(std::path::Path::new(certbind_tests::PASSTHROUGH_WASM)).unwrap();
    assert!(hashing.configure(&cert("piv-auth").der).unwrap());
    let hashed = hashing.request(&http).unwrap();
    let stamp = hashed.request_headers.iter().find(|(n, _)| n == "x-passthrough").map(|(_, v)| v.clone()).unwrap_or_default();
    assert!(stamp.ends_with(&cert("piv-auth").hex()), "the hashing guest did not hash the DER: {stamp}");

    let mut run_native = || {
        black_box(native.run(black_box(&scenario.request)));
    };
    let mut run_wasm = || {
        black_box(wasm.request(black_box(&http)).unwrap());
    };
    let mut run_passthrough = || {
        black_box(passthrough.request(black_box(&http)).unwrap());
    };
    let mut run_hashing = || {
        black_box(hashing.request(black_box(&http)).unwrap());
    };
    // `CERTBIND_BENCH_SIDE=native` or `=wasm` times one side only (for a profiler).
    let side = std::env::var("CERTBIND_BENCH_SIDE").unwrap_or_default();
    let mut functions: Vec<&mut dyn FnMut()> = Vec::new();
    if side != "wasm" {
        functions.push(&mut run_native);
    }
    if side != "native" {
        functions.push(&mut run_wasm);
        functions.push(&mut run_passthrough);
        if scenario.hashes_certificate {
            functions.push(&mut run_hashing);
        }
    }
    let mut times = time_interleaved(&mut functions).into_iter();
    let native_ns = if side != "wasm" { times.next().unwrap_or(f64::NAN) } else { f64::NAN };
    let (wasm_ns, passthrough_ns) =
        if side != "native" { (times.next().unwrap_or(f64::NAN), times.next().unwrap_or(f64::NAN)) } else { (f64::NAN, f64::NAN) };
    let passthrough_hashing_ns = times.next();
    Row {
        name: scenario.name,
        native_ns,
        wasm_ns,
        passthrough_ns,
        passthrough_hashing_ns,
        passthrough_calls: baseline.host_calls,
        native_calls,
        wasm_calls: result.host_calls,
        wasm_call_detail: result.host_call_counts.nonzero().iter().map(|(n, c)| format!("{n} ×{c}")).collect::<Vec<_>>().join(", "),
        target_us: scenario.target_us,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let jane = cert("piv-auth");
    let sha_ns = time_per_call(|| {
        black_box(Sha256::digest(black_box(&jane.der)));
    });
    let scenarios = scenarios();
    let scenarios = if smoke { &scenarios[..1] } else { &scenarios[..] };
    // `CERTBIND_BENCH_ONLY=warm` measures only the scenarios whose name contains "warm".
    let only = std::env::var("CERTBIND_BENCH_ONLY").unwrap_or_default();
    let rows: Vec<Row> = scenarios.iter().filter(|s| s.name.contains(only.as_str())).map(measure).collect();

    let wasm_size = std::fs::metadata(certbind_tests::FILTER_WASM).unwrap().len();
    println!("## Filter: per-request cost, natively and through the .wasm (wasmtime)\n");
    println!(
        "Baseline measured in this run: SHA-256 of the certificate's DER ({} bytes), natively: {:.2} µs.\n",
        jane.der.len(),
        sha_ns / 1000.0
    );
    println!("| scenario | native µs | wasm µs | wasm ÷ native | baseline guest µs | wasm − baseline µs | wasm ÷ baseline | wasm ÷ SHA-256 | target (wasm) | host calls: native / wasm / baseline |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for row in &rows {
        let own_us = (row.wasm_ns - row.passthrough_ns) / 1000.0;
        let target = match row.target_us {
            Some(t) => format!(
                "≤ {t} µs: total {}, own work {}",
                if row.wasm_ns / 1000.0 <= t { "met" } else { "**missed**" },
                if own_us <= t { "met" } else { "**missed**" }
            ),
            None => "—".into(),
        };
        println!(
            "| {} | {:.2} | {:.2} | {:.1}× | {:.2} | {:.2} | {:.1}× | {:.1}× | {} | {} / {} / {} |",
            row.name,
            row.native_ns / 1000.0,
            row.wasm_ns / 1000.0,
            row.wasm_ns / row.native_ns,
            row.passthrough_ns / 1000.0,
            own_us,
            row.wasm_ns / row.passthrough_ns,
            row.wasm_ns / sha_ns,
            target,
            row.native_calls,
            row.wasm_calls,
            row.passthrough_calls
        );
    }
    for row in &rows {
        if let Some(hashing) = row.passthrough_hashing_ns {
            let hash_us = (hashing - row.passthrough_ns) / 1000.0;
            println!(
                "\n{}: SHA-256 of the certificate's DER inside the VM (baseline guest hashing it, minus the baseline guest) {:.2} µs, {:.1}× the native hash; certbind's own work beside that hash {:.2} µs.",
                row.name,
                hash_us,
                hash_us * 1000.0 / sha_ns,
                (row.wasm_ns - hashing) / 1000.0
            );
        }
    }
    println!("\nHost calls through the wasm, by import:\n");
    for row in &rows {
        println!("- {}: {}", row.name, row.wasm_call_detail);
    }
    println!(
        "\n`.wasm` size: {} bytes ({:.2} MB; target ≤ 1.5 MB: {}).\n",
        wasm_size,
        wasm_size as f64 / 1e6,
        if wasm_size <= WASM_SIZE_TARGET_BYTES { "met" } else { "**missed**" }
    );
    println!(
        "The baseline guest (tests/guests/passthrough) makes the same host calls with no logic: it \
         prices this harness's per-request work (a fresh HTTP context, five host calls, header map \
         copies in and out), so `wasm − baseline` is certbind's own work inside the VM. A real \
         proxy's VM boundary has costs of its own."
    );
}
