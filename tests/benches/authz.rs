//! Per-check cost of the authorization service as a library, for each protocol, against a
//! trivial authorizer in the same run: the check a gateway sends for a bound card (warm: the
//! card was checked before), decided by the service, and the same check answered "allowed"
//! with nothing decided. For gRPC both sides also decode the check request from its wire bytes
//! and encode the answer, as tonic does around every call; for the HTTP protocols both start
//! from the request hyper delivered. `service − trivial` is the service's own work per check.
//!
//! Prints a Markdown report; `make bench` collects it into target/bench-report.md.
//! `CERTBIND_BENCH_CALLS=N` instead runs N gRPC checks untimed and exits (for callgrind).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use certbind_authz::check::Verdict;
use certbind_authz::protocol::{envoy_grpc, HttpAnswer, Protocol};
use certbind_authz::server::Service;
use certbind_tests::cases::{authz, table, Case};
use certbind_tests::timing::time_interleaved;
use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use prost::Message;
use std::hint::black_box;

/// The service's own time per warm check, target.
const WARM_TARGET_US: f64 = 15.0;

fn case(name: &str) -> Case {
    table::all().into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no table case {name}"))
}

/// The table case each protocol's gateway sends for a bound card, allowed.
fn bound_card(protocol: Protocol) -> Case {
    case(match protocol {
        // Envoy's check request carries the connection's own certificate.
        Protocol::EnvoyGrpc => "connection source with the peer certificate → 200",
        _ => "mtls, no jwt, cert → 200",
    })
}

struct Row {
    protocol: Protocol,
    service_ns: f64,
    trivial_ns: f64,
}

fn measure(protocol: Protocol) -> Row {
    let case = bound_card(protocol);
    let converted = authz::convert(&case, protocol).unwrap_or_else(|| panic!("{}: not run through {protocol:?}", case.name));
    let service = Service::from_config(converted.config.to_string().as_bytes()).unwrap();
    let now = case.request.now;
    let times = match (converted.grpc, converted.http) {
        (Some(grpc), _) => {
            let wire = grpc.encode_to_vec();
            let answered = service.grpc_check(&grpc, now);
            assert!(matches!(answered.http_response, Some(HttpResponse::OkResponse(_))), "{}: not allowed: {answered:?}", case.name);
            let trivial_answer = envoy_grpc::answer(&Verdict::Allow { set: Vec::new(), remove: Vec::new(), notice: None });
            let mut run_service = || {
                let request = CheckRequest::decode(black_box(wire.as_slice())).unwrap();
                black_box(service.grpc_check(&request, now).encode_to_vec());
            };
            let mut run_trivial = || {
                let request = CheckRequest::decode(black_box(wire.as_slice())).unwrap();
                black_box(&request);
                black_box(trivial_answer.clone().encode_to_vec());
            };
            time_interleaved(&mut [&mut run_service, &mut run_trivial])
        }
        (None, Some(http)) => {
            let answered = service.route(&http, now);
            assert_eq!(answered.status, 200, "{}: not allowed: {answered:?}", case.name);
            let mut run_service = || {
                black_box(service.route(black_box(&http), now));
            };
            let mut run_trivial = || {
                black_box(black_box(&http));
                black_box(HttpAnswer { status: 200, headers: Vec::new(), body: Vec::new() });
            };
            time_interleaved(&mut [&mut run_service, &mut run_trivial])
        }
        (None, None) => panic!("{}: no check for {protocol:?}", case.name),
    };
    Row { protocol, service_ns: times[0], trivial_ns: times[1] }
}

/// `calls` warm gRPC checks, untimed: a steady loop for a profiler.
fn profile(calls: u64) {
    let case = bound_card(Protocol::EnvoyGrpc);
    let converted = authz::convert(&case, Protocol::EnvoyGrpc).unwrap();
    let service = Service::from_config(converted.config.to_string().as_bytes()).unwrap();
    let wire = converted.grpc.unwrap().encode_to_vec();
    for _ in 0..calls {
        let request = CheckRequest::decode(black_box(wire.as_slice())).unwrap();
        black_box(service.grpc_check(&request, case.request.now).encode_to_vec());
    }
}

fn main() {
    if let Some(calls) = std::env::var("CERTBIND_BENCH_CALLS").ok().and_then(|c| c.parse().ok()) {
        profile(calls);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let protocols: &[Protocol] = if smoke { &[Protocol::EnvoyGrpc] } else { &Protocol::ALL };
    let rows: Vec<Row> = protocols.iter().map(|p| measure(*p)).collect();
    println!("## Authorization service: per-check cost as a library, against a trivial authorizer\n");
    println!(
        "A bound card's check, warm, decided by certbind-authz and answered \"allowed\" by a trivial authorizer in the \
         same interleaved rounds. gRPC includes decoding the check request and encoding the answer on both sides.\n"
    );
    println!("| protocol | service µs | trivial µs | service − trivial µs | trivial ÷ service | target (own work) |");
    println!("|---|---:|---:|---:|---:|---|");
    for row in &rows {
        let own_us = (row.service_ns - row.trivial_ns) / 1000.0;
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.3}× | ≤ {WARM_TARGET_US} µs: {} |",
            row.protocol.as_str(),
            row.service_ns / 1000.0,
            row.trivial_ns / 1000.0,
            own_us,
            row.trivial_ns / row.service_ns,
            if own_us <= WARM_TARGET_US { "met" } else { "**missed**" }
        );
    }
    println!();
    memory();
}

/// What a warm gRPC service keeps per card: the certificate by its exact text (Envoy's
/// `source.certificate`) beside the engine's facts, each bounded per worker thread.
fn memory() {
    let case = bound_card(Protocol::EnvoyGrpc);
    let converted = authz::convert(&case, Protocol::EnvoyGrpc).unwrap();
    let service = Service::from_config(converted.config.to_string().as_bytes()).unwrap();
    let answered = service.grpc_check(&converted.grpc.unwrap(), case.request.now);
    assert!(matches!(answered.http_response, Some(HttpResponse::OkResponse(_))), "{}: not allowed", case.name);
    let held = service.authorizer().cache_bytes();
    assert_eq!(held.connection_entries, 1, "{held:?}");
    let budget = certbind_shared::decision::config::DEFAULT_FACTS_CACHE_BYTES;
    println!(
        "Memory per card a gRPC worker has seen (the test PIV card, counted as the caches count it): {} bytes kept by \
         the certificate's exact text, {} bytes of facts in the engine's cache; each cache is bounded per worker \
         thread by `facts_cache_bytes` (default {} MiB: about {} cards each before CLOCK evicts, and an evicted \
         card's next check is a cold one).\n",
        held.connection_certificates,
        held.facts,
        budget / (1024 * 1024),
        budget / held.connection_certificates.max(1)
    );
}
