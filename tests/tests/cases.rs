//! The case table, run twice: natively (the filter's request path over a recording host) and
//! through the compiled `.wasm` under the wasmtime host. Every case must meet its expectation
//! on both, and both must make the same decision.

use certbind_shared::decision::outcome::Reason;
use certbind_tests::cases::{check, native, table, uniquely_named, wasm::WasmRunner, Case, Expect};

fn all_cases() -> Vec<Case> {
    let cases = table::all();
    uniquely_named(&cases).unwrap();
    cases
}

#[test]
fn every_case_natively() {
    let failures = native::failures(&all_cases());
    assert!(failures.is_empty(), "{} native failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_case_through_the_wasm() {
    let failures = WasmRunner::default().failures(&all_cases());
    assert!(failures.is_empty(), "{} wasm failures:\n{}", failures.len(), failures.join("\n"));
}

/// The error contract (`Reason::ALL`, docs/filter.md's refusals): each reason, each of its
/// details, is produced by at least one case, with its status.
#[test]
fn every_reason_of_the_contract_has_a_case() {
    let cases = all_cases();
    for reason in Reason::ALL {
        let produced = cases.iter().any(|case| {
            matches!(case.expect, Expect::Deny { status, reason: r, detail }
                if r == reason.as_str() && detail == reason.detail() && status == reason.status())
        });
        assert!(produced, "no case produces {} (detail {}, {})", reason.as_str(), reason.detail(), reason.status());
    }
}

/// The table covers every cell of the acceptance matrix.
#[test]
fn acceptance_matrix_is_complete() {
    let matrix = table::acceptance_matrix();
    assert_eq!(matrix.len(), 13);
    let allowed = matrix.iter().filter(|c| matches!(c.expect, Expect::Allow(_))).count();
    assert_eq!(allowed, 6, "six rows of the matrix allow (one of them with an RS256 token)");
}

/// A warm request skips parsing, but never the check that this proxy's XFCC names the
/// connection's own certificate: the same header replayed on a connection that presented
/// another certificate is refused, natively and through the wasm.
#[test]
fn a_cached_certificate_header_is_still_bound_to_its_connection() {
    use certbind_tests::cases::fixtures::{cert, NOW};
    use certbind_tests::cases::CaseRequest;
    let jane = cert("piv-auth");
    let request = |digest: String| CaseRequest {
        path: "/mtls/x".into(),
        headers: vec![("x-forwarded-client-cert".into(), jane.xfcc())],
        peer: "203.0.113.9:40000".into(),
        connection_digest: Some(digest),
        now: NOW,
        ..Default::default()
    };
    let sequence = [(jane.hex(), None), (cert("cac").hex(), Some(400)), (jane.hex().to_uppercase(), None)];
    let config = table::standard_config();
    let mut native = native::NativeFilter::new(config.to_string().as_bytes()).unwrap();
    let mut wasm = WasmRunner::default();
    for (digest, refusal) in sequence {
        let case = Case {
            name: format!("digest {digest}"),
            config: config.clone(),
            request: request(digest),
            strip_expected: Vec::new(),
            expect: match refusal {
                None => Expect::Allow(vec![("x-dm-user-id", Some("u-jane".into()))]),
                Some(status) => Expect::Deny { status, reason: "malformed_client_cert", detail: "none" },
            },
        };
        let (seen, _) = native.run(&case.request);
        check(&case, &seen).unwrap_or_else(|e| panic!("natively, {}: {e}", case.name));
        let (seen, ..) = wasm.run(&case).unwrap();
        check(&case, &seen).unwrap_or_else(|e| panic!("wasm, {}: {e}", case.name));
    }
}
