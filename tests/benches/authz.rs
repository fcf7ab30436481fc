//! Per-check cost of the authorization service as a library, for each protocol, against a
//! trivial authorizer in the same run: the check a gateway sends for a bound card (warm: the
//! card was checked before), decided by the service, and the same check answered "allowed"
//! with nothing decided. For gRPC both sides also decode the check request from its wire bytes
//! and encode the answer, as tonic does around every call; for the HTTP protocols both start
//! from the request hyper delivered. `service − trivial` is the service's own work per check.
//!
//! Then the same over a real gRPC connection on loopback: tonic's server (one worker thread,
//! as the gateway bench runs it) answering a tonic client, with the server thread's own CPU
//! time per call read from the kernel (`/proc/self/task/*/schedstat`), certbind-authz's
//! service against the trivial one in alternating rounds. That is the target's figure: the
//! service's own CPU per warm check, transport and all, without a gateway sharing the core.
//! The check carries what Envoy's shipped gRPC configuration adds to the client's headers,
//! the XFCC with the whole certificate among them (captured from a real Envoy 1.40).
//!
//! Prints a Markdown report; `make bench` collects it into target/bench-report.md.
//! `CERTBIND_BENCH_CALLS=N` instead runs N gRPC checks untimed and exits (for callgrind); with
//! `CERTBIND_BENCH_SERVER=service|trivial`, N calls over loopback to that server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use certbind_authz::check::Verdict;
use certbind_authz::protocol::{envoy_grpc, HttpAnswer, Protocol};
use certbind_authz::server::{bind, serve_grpc_with, Service};
use certbind_tests::cases::fixtures::NOW;
use certbind_tests::cases::{authz, table, Case};
use certbind_tests::snapshots::{signed_snapshot, SnapshotContent, Stamp, TestSnapshotKey};
use certbind_tests::timing::time_interleaved;
use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use prost::Message;
use std::hint::black_box;
use tonic::transport::Channel;

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
        match std::env::var("CERTBIND_BENCH_SERVER").ok().as_deref() {
            Some(server) => Loopback::start().profile(server, calls),
            None => profile(calls),
        }
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
    let smoke_rounds = if smoke { 1 } else { LOOPBACK_ROUNDS };
    Loopback::start().report(smoke_rounds);
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

/// Alternating rounds over loopback, and calls per round: ~0.2 s of server time each.
const LOOPBACK_ROUNDS: usize = 11;
const LOOPBACK_CALLS: usize = 5_000;
/// Checks in flight on the one connection, as the gateway bench's wrk -c8 keeps them.
const IN_FLIGHT: usize = 8;

/// The trivial authorizer over the same tonic server: the answer every check gets.
struct AllowAll(CheckResponse);

#[tonic::async_trait]
impl Authorization for AllowAll {
    async fn check(&self, _: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.0.clone()))
    }
}

/// A gRPC server on its own runtime: one worker thread, every thread of it named `thread`
/// (at most 15 bytes, the kernel's limit) so that its CPU time can be told apart.
struct Server {
    thread: &'static str,
    client: AuthorizationClient<Channel>,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start<A: Authorization>(thread: &'static str, authorization: A, client_runtime: &tokio::runtime::Runtime) -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name(thread).enable_all().build().unwrap();
        let listener = runtime.block_on(bind("127.0.0.1:0".parse().unwrap())).unwrap();
        let address = listener.local_addr().unwrap();
        runtime.spawn(serve_grpc_with(authorization, listener));
        let client = client_runtime.block_on(AuthorizationClient::connect(format!("http://{address}"))).unwrap();
        Server { thread, client, _runtime: runtime }
    }

    /// CPU time the kernel has given this server's threads, in nanoseconds (the first field
    /// of each thread's schedstat).
    fn cpu_ns(&self) -> u64 {
        let mut total = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == self.thread {
                let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap();
                total += schedstat.split_whitespace().next().unwrap().parse::<u64>().unwrap();
            }
        }
        total
    }
}

/// certbind-authz's service and the trivial one, each behind tonic on loopback, driven by one
/// client runtime on this thread.
struct Loopback {
    request: CheckRequest,
    /// The case's inline identity, the same card bound in a signed snapshot, the trivial one.
    servers: [Server; 3],
    client_runtime: tokio::runtime::Runtime,
}

impl Loopback {
    fn start() -> Self {
        let case = bound_card(Protocol::EnvoyGrpc);
        let converted = authz::convert(&case, Protocol::EnvoyGrpc).unwrap();
        let service = Service::from_config(converted.config.to_string().as_bytes()).unwrap().with_clock(|| NOW);
        assert_eq!(NOW, case.request.now, "the clock the case decides at");
        let trivial = AllowAll(envoy_grpc::answer(&Verdict::Allow { set: Vec::new(), remove: Vec::new(), notice: None }));
        let from_snapshot = Service::from_config(snapshot_config(&case, &converted.config).as_bytes()).unwrap();
        let client_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let servers = [
            Server::start("bench-certbind", service, &client_runtime),
            Server::start("bench-snapshot", from_snapshot, &client_runtime),
            Server::start("bench-trivial", trivial, &client_runtime),
        ];
        let mut request = converted.grpc.unwrap();
        as_envoy_sends(&mut request, &case);
        let loopback = Loopback { request, servers, client_runtime };
        for server in &loopback.servers[..2] {
            let answer = loopback.client_runtime.block_on(server.client.clone().check(loopback.request.clone()));
            let answer = answer.unwrap().into_inner();
            assert!(matches!(answer.http_response, Some(HttpResponse::OkResponse(_))), "{}: not allowed: {answer:?}", server.thread);
        }
        loopback
    }

    /// `calls` checks to `server`, `IN_FLIGHT` at a time, every one answered.
    fn run(&self, server: &Server, calls: usize) {
        self.client_runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..IN_FLIGHT {
                let mut client = server.client.clone();
                let request = self.request.clone();
                tasks.spawn(async move {
                    for _ in 0..calls.div_ceil(IN_FLIGHT) {
                        black_box(client.check(request.clone()).await.unwrap());
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        });
    }

    fn profile(&self, server: &str, calls: u64) {
        let server = self.servers.iter().find(|s| s.thread.ends_with(server)).unwrap_or_else(|| panic!("no server {server}"));
        self.run(server, usize::try_from(calls).unwrap());
    }

    /// Medians over alternating rounds of each server thread's CPU per call, in µs.
    fn measure(&self, rounds: usize) -> Vec<f64> {
        for server in &self.servers {
            self.run(server, LOOPBACK_CALLS / 2);
        }
        let mut per_call: Vec<Vec<f64>> = vec![Vec::new(); self.servers.len()];
        for _ in 0..rounds {
            for (server, times) in self.servers.iter().zip(per_call.iter_mut()) {
                let before = server.cpu_ns();
                self.run(server, LOOPBACK_CALLS);
                let calls = LOOPBACK_CALLS.div_ceil(IN_FLIGHT) * IN_FLIGHT;
                times.push((server.cpu_ns() - before) as f64 / calls as f64 / 1000.0);
            }
        }
        per_call.into_iter().map(median).collect()
    }

    fn report(&self, rounds: usize) {
        let us = self.measure(rounds);
        let (service, from_snapshot, trivial) = (us[0], us[1], us[2]);
        let own = from_snapshot.max(service) - trivial;
        println!("## Authorization service over gRPC on loopback: the server thread's CPU per check\n");
        println!(
            "tonic's server with one worker thread, as deployed, answering a tonic client ({IN_FLIGHT} checks in flight \
             on one connection); CPU is the server threads' own, from the kernel's schedstat; medians of {rounds} \
             alternating rounds of {LOOPBACK_CALLS} checks. The trivial authorizer answers OK over the same server: \
             its figure is the transport's floor (HTTP/2, gRPC framing, decoding the check).\n"
        );
        println!("| server | CPU µs per check |\n|---|---:|");
        println!("| trivial authorizer (floor) | {trivial:.2} |\n| certbind-authz, warm bound card, inline identity | {service:.2} |");
        println!("| certbind-authz, warm bound card, signed snapshot of {SNAPSHOT_BINDINGS} bindings | {from_snapshot:.2} |");
        println!(
            "\nThe service's own CPU per warm check, transport included beyond the floor: {own:.2} µs (target ≤ \
             {WARM_TARGET_US} µs: {}).\n",
            if own <= WARM_TARGET_US { "met" } else { "**missed**" }
        );
    }
}

/// Bindings in the signed snapshot the second server decides from: a large deployment's, as
/// many as a configuration document (4 MiB) can carry inline.
const SNAPSHOT_BINDINGS: usize = 50_000;

/// The case's configuration with its card bound in a signed snapshot (among
/// [`SNAPSHOT_BINDINGS`]) in place of its inline identity, as a deployment decides.
fn snapshot_config(case: &Case, config: &serde_json::Value) -> String {
    let (_, fingerprint) = connection_certificate(case);
    let key = TestSnapshotKey::new("authz-bench");
    let content = SnapshotContent::synthetic(SNAPSHOT_BINDINGS - 1).bind(
        fingerprint,
        "01JBUSER00000000000000000A",
        "01JBZRG0000000000000000000",
    );
    // Verified when the service starts, by the system clock, which it then decides by.
    let now = certbind_shared::clock::now_seconds();
    let signed = signed_snapshot(&key, &content, Stamp { version: 1, issued_at: now - 60, expires_at: now + 86_400 });
    serde_json::json!({
        "policy": config["policy"],
        "snapshot": {"pinned_keys": [key.pinned_pem()], "signed_base64": certbind_shared::encoding::base64_encode(&signed)}
    })
    .to_string()
}

/// The headers Envoy's shipped gRPC configuration (envoy/ext-authz/grpc.yaml) adds to every
/// check beside the client's: its own request id and forwarding headers, and the XFCC it sets
/// for the application (`SANITIZE_SET`, the whole certificate), which the check carries too.
fn as_envoy_sends(request: &mut CheckRequest, case: &Case) {
    let (pem, fingerprint) = connection_certificate(case);
    let xfcc = certbind_shared::source::testing::xfcc_element(&fingerprint.to_hex(), pem);
    let http = request.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()).unwrap();
    let headers = &mut http.header_map.as_mut().unwrap().headers;
    for (key, value) in [
        (":scheme", "https"),
        ("accept-encoding", "gzip"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-envoy-external-address", "127.0.0.1"),
        ("x-request-id", "0c6f3b8e-5a1d-4f7e-9c2b-8d4e6a1f3b5c"),
        ("x-forwarded-client-cert", xfcc.as_str()),
    ] {
        headers.push(envoy_types::pb::envoy::config::core::v3::HeaderValue {
            key: key.into(),
            value: String::new(),
            raw_value: value.as_bytes().to_vec(),
        });
    }
}

/// The case's connection certificate, as its PEM and its SHA-256.
fn connection_certificate(case: &Case) -> (&str, certbind_shared::Fingerprint) {
    let pem = case.request.connection_certificate.as_deref().expect("the case's connection certificate");
    let der = certbind_shared::certificate::pem::decode_certificate_pem(pem.as_bytes()).unwrap();
    (pem, certbind_shared::Fingerprint::of_der(&der))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
