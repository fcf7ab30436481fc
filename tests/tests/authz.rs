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

/// The fingerprint header a gRPC answer sets, or the refusal's reason.
fn grpc_outcome(response: &envoy_types::ext_authz::v3::pb::CheckResponse) -> Result<String, String> {
    use envoy_types::ext_authz::v3::pb::HttpResponse;
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => Ok(ok
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == "x-dm-smartcard-fingerprint")
            .map(|h| h.value.clone())
            .unwrap_or_default()),
        Some(HttpResponse::DeniedResponse(denied)) => {
            let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
            Err(body["reason"].as_str().unwrap_or_default().to_string())
        }
        other => panic!("no OK or denied response: {other:?}"),
    }
}

/// The table's bound card on the connection source, converted to Envoy's gRPC check.
fn grpc_connection_case() -> (Case, authz::Converted) {
    let case = table::all().into_iter().find(|c| c.name == "connection source with the peer certificate → 200").unwrap();
    let converted = authz::convert(&case, Protocol::EnvoyGrpc).unwrap();
    (case, converted)
}

/// `request` with `text` as the connection's certificate (`source.certificate`).
fn with_peer_certificate(request: &envoy_types::ext_authz::v3::pb::CheckRequest, text: String) -> envoy_types::ext_authz::v3::pb::CheckRequest {
    let mut request = request.clone();
    request.attributes.as_mut().unwrap().source.as_mut().unwrap().certificate = text;
    request
}

/// Warm gRPC checks find the connection certificate's digest by its exact text: the same
/// service, asked in turn with two cards, with the same card's certificate in another
/// spelling and with its text damaged, answers each as a cold service would.
#[test]
fn grpc_warm_checks_answer_by_the_exact_certificate_text() {
    use certbind_shared::source::testing::percent_encode;
    use certbind_tests::cases::fixtures::cert;
    let (case, converted) = grpc_connection_case();
    let service = certbind_authz::server::Service::from_config(converted.config.to_string().as_bytes()).unwrap();
    let jane_request = converted.grpc.unwrap();
    let with_certificate = |text: String| with_peer_certificate(&jane_request, text);
    let (jane, cac) = (cert("piv-auth"), cert("cac"));
    let encoded = percent_encode(jane.pem.as_bytes());
    assert_eq!(jane_request.attributes.as_ref().unwrap().source.as_ref().unwrap().certificate, encoded);
    // The PEM cut short of its end line, and with one base64 character of the body changed.
    let cut = percent_encode(jane.pem.trim_end().rsplit_once('\n').unwrap().0.as_bytes());
    let body_at = jane.pem.find('\n').unwrap() + 20;
    let mut altered = jane.pem.clone().into_bytes();
    altered[body_at] = if altered[body_at] == b'A' { b'B' } else { b'A' };
    let altered = percent_encode(&altered);
    let now = case.request.now;
    let ask = |text: &str| grpc_outcome(&service.grpc_check(&with_certificate(text.to_string()), now));
    for round in 0..3 {
        assert_eq!(ask(&encoded), Ok(jane.hex()), "round {round}: the bound card");
        assert_eq!(ask(&percent_encode(cac.pem.as_bytes())), Ok(cac.hex()), "round {round}: another card");
        assert_eq!(ask(&jane.pem), Ok(jane.hex()), "round {round}: plain PEM, as Envoy 1.40 sends it");
        assert_eq!(ask(&cut), Err("malformed_client_cert".to_string()), "round {round}: a cut certificate");
        let damaged = ask(&altered);
        assert!(damaged != Ok(jane.hex()) && damaged.is_err(), "round {round}: a damaged certificate answered {damaged:?}");
    }
}

/// The certificates a gRPC service keeps by their exact text are bounded like the engine's
/// facts: by the policy's `facts_cache_bytes`, per worker. With room for one card, a second
/// card takes the first one's place, and both are still answered.
#[test]
fn grpc_connection_certificates_are_bounded_by_the_policy() {
    use certbind_shared::source::testing::percent_encode;
    use certbind_tests::cases::fixtures::cert;
    let (case, converted) = grpc_connection_case();
    let jane_request = converted.grpc.clone().unwrap();
    let (jane, cac) = (cert("piv-auth"), cert("cac"));
    let ask = |service: &certbind_authz::server::Service, pem: &str| {
        let request = with_peer_certificate(&jane_request, percent_encode(pem.as_bytes()));
        grpc_outcome(&service.grpc_check(&request, case.request.now))
    };
    let unbounded = certbind_authz::server::Service::from_config(converted.config.to_string().as_bytes()).unwrap();
    assert_eq!(ask(&unbounded, &jane.pem), Ok(jane.hex()));
    let one = unbounded.authorizer().cache_bytes();
    assert_eq!((one.workers, one.connection_entries), (1, 1));
    // The card's text and its facts: more than the PEM, less than a few kilobytes.
    assert!(one.connection_certificates > percent_encode(jane.pem.as_bytes()).len(), "{one:?}");
    assert!(one.connection_certificates < 8 * 1024, "{one:?}");
    assert_eq!(ask(&unbounded, &cac.pem), Ok(cac.hex()));
    assert_eq!(unbounded.authorizer().cache_bytes().connection_entries, 2);

    let mut config = converted.config.clone();
    let room = one.connection_certificates.max(one.facts) + 512;
    config["policy"]["facts_cache_bytes"] = serde_json::json!(room);
    let bounded = certbind_authz::server::Service::from_config(config.to_string().as_bytes()).unwrap();
    for _ in 0..2 {
        assert_eq!(ask(&bounded, &jane.pem), Ok(jane.hex()));
        assert_eq!(ask(&bounded, &cac.pem), Ok(cac.hex()));
        let held = bounded.authorizer().cache_bytes();
        assert_eq!(held.connection_entries, 1, "{held:?}");
        assert!(held.connection_certificates <= room && held.facts <= room, "{held:?} over {room}");
    }
}
