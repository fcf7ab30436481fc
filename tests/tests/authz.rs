//! The case table and the hostile suite through the authorization service, for each protocol
//! its gateways speak: as a library call and over the wire (HTTP/1.1, gRPC). Every case run
//! must meet its expectation as the filter does, and the wire must decide as the library call.

use certbind_authz::protocol::Protocol;
use certbind_tests::cases::{adversarial, authz, check, same_decision, table, Case};

fn all() -> Vec<(String, Case)> {
    let mut cases: Vec<(String, Case)> = table::all().into_iter().map(|c| ("table".to_string(), c)).collect();
    cases.extend(adversarial::all().into_iter().map(|h| ("hostile".to_string(), h.case)));
    cases
}

/// The least number of cases each protocol must run of the table and of the hostile suite:
/// a conversion that quietly stopped applying would otherwise pass by running nothing.
fn least(protocol: Protocol, suite: &str) -> usize {
    match (protocol, suite) {
        (Protocol::EnvoyGrpc, "table") => 60,
        (Protocol::EnvoyGrpc, _) => 250,
        (_, "table") => 40,
        _ => 100,
    }
}

fn through(protocol: Protocol) {
    let mut failures = Vec::new();
    let mut ran = std::collections::BTreeMap::<String, usize>::new();
    for (suite, case) in all() {
        match authz::run(&case, protocol).and_then(|seen| seen.map(|s| check(&case, &s)).transpose()) {
            Ok(Some(())) => *ran.entry(suite).or_default() += 1,
            Ok(None) => {}
            Err(e) => failures.push(format!("{suite} {}: {e}", case.name)),
        }
    }
    eprintln!("{}: ran {ran:?}", protocol.as_str());
    assert!(failures.is_empty(), "{} {} failures:\n{}", failures.len(), protocol.as_str(), failures.join("\n"));
    for suite in ["table", "hostile"] {
        let count = ran.get(suite).copied().unwrap_or(0);
        assert!(count >= least(protocol, suite), "{}: only {count} {suite} cases ran", protocol.as_str());
    }
}

#[test]
fn every_case_through_nginx_auth_request() {
    through(Protocol::Nginx);
}

#[test]
fn every_case_through_traefik_forward_auth() {
    through(Protocol::Traefik);
}

#[test]
fn every_case_through_envoy_ext_authz_http() {
    through(Protocol::EnvoyHttp);
}

#[test]
fn every_case_through_envoy_ext_authz_grpc() {
    through(Protocol::EnvoyGrpc);
}

/// Over the wire, each protocol decides exactly as the library call, and meets the case.
#[test]
fn every_case_over_the_wire_decides_as_the_library_call() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut failures = Vec::new();
    let mut ran = 0usize;
    for protocol in Protocol::ALL {
        for (suite, case) in all() {
            let library = match authz::run(&case, protocol) {
                Ok(Some(seen)) => seen,
                Ok(None) => continue,
                Err(e) => {
                    failures.push(format!("{} {suite} {}: {e}", protocol.as_str(), case.name));
                    continue;
                }
            };
            let outcome = runtime.block_on(authz::run_over_the_wire(&case, protocol)).and_then(|wire| {
                let wire = wire.ok_or("not run over the wire")?;
                check(&case, &wire)?;
                same_decision(("the wire", &wire), ("the library call", &library))
            });
            ran += 1;
            if let Err(e) = outcome {
                failures.push(format!("{} {suite} {}: {e}", protocol.as_str(), case.name));
            }
        }
    }
    eprintln!("over the wire: {ran} checks");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(ran >= 600, "only {ran} checks over the wire");
}
