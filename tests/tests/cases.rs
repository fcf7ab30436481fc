//! The case table, run twice: natively (the filter's request path over a recording host) and
//! through the compiled `.wasm` under the wasmtime host. Every case must meet its expectation
//! on both, and both must make the same decision.

use certbind_shared::decision::outcome::Reason;
use certbind_tests::cases::{check, native, table, wasm::WasmRunner, Case, Expect, Observed};
use std::collections::BTreeSet;

fn all_cases() -> Vec<Case> {
    let cases = table::all();
    let mut names = BTreeSet::new();
    for case in &cases {
        assert!(names.insert(case.name.clone()), "two cases are named {:?}", case.name);
    }
    cases
}

fn decision(seen: &Observed) -> Option<(u16, Vec<u8>)> {
    seen.local_response.as_ref().map(|(status, _, body)| (*status, body.clone()))
}

#[test]
fn every_case_natively() {
    let failures: Vec<String> = all_cases()
        .iter()
        .filter_map(|case| match native::run(case).and_then(|seen| check(case, &seen)) {
            Ok(()) => None,
            Err(e) => Some(format!("{}: {e}", case.name)),
        })
        .collect();
    assert!(failures.is_empty(), "{} native failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_case_through_the_wasm() {
    let mut runner = WasmRunner::default();
    let mut failures = Vec::new();
    for case in all_cases() {
        let outcome = runner.run(&case).and_then(|(seen, counter, before, after)| {
            check(&case, &seen)?;
            if after != before + 1 {
                return Err(format!("counter {counter} went from {before} to {after}"));
            }
            let native = native::run(&case)?;
            if decision(&native) != decision(&seen) {
                return Err(format!("native decided {:?}, wasm {:?}", decision(&native), decision(&seen)));
            }
            Ok(())
        });
        if let Err(e) = outcome {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} wasm failures:\n{}", failures.len(), failures.join("\n"));
}

/// DESIGN.md's error contract: each reason is produced by at least one case, with its status.
#[test]
fn every_reason_of_the_contract_has_a_case() {
    let cases = all_cases();
    for reason in Reason::ALL {
        let produced = cases.iter().any(|case| {
            matches!(case.expect, Expect::Deny { status, reason: r } if r == reason.as_str() && status == reason.status())
        });
        assert!(produced, "no case produces {} ({})", reason.as_str(), reason.status());
    }
}

/// The table covers every cell of seed 004's acceptance matrix.
#[test]
fn acceptance_matrix_is_complete() {
    let matrix = table::acceptance_matrix();
    assert_eq!(matrix.len(), 13);
    let allowed = matrix.iter().filter(|c| matches!(c.expect, Expect::Allow(_))).count();
    assert_eq!(allowed, 6, "six rows of the matrix allow (one of them with an RS256 token)");
}
