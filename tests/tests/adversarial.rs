//! The adversarial suite: hundreds of hostile requests across the classes of belief
//! an attacker who knows Envoy goes after, each run natively and through the compiled `.wasm`,
//! each with one exact expected outcome. None is accepted: every one is refused, or forwarded
//! with its hostile headers removed. None crashes either runner.

use certbind_tests::cases::adversarial::{self, Class, Hostile};
use certbind_tests::cases::{native, uniquely_named, wasm::WasmRunner, Expect};
use std::collections::BTreeMap;

fn suite() -> Vec<Hostile> {
    let suite = adversarial::all();
    uniquely_named(suite.iter().map(|h| &h.case)).unwrap();
    suite
}

#[test]
fn at_least_three_hundred_hostile_requests_in_every_class() {
    let suite = suite();
    assert!(suite.len() >= 300, "only {} hostile requests", suite.len());
    let mut by_class: BTreeMap<Class, usize> = BTreeMap::new();
    for hostile in &suite {
        *by_class.entry(hostile.class).or_default() += 1;
    }
    eprintln!("{} hostile requests: {by_class:?}", suite.len());
    for class in [
        Class::Peer,
        Class::Path,
        Class::XfccElement,
        Class::HeaderCase,
        Class::LookAlike,
        Class::SourceLimits,
        Class::BoundToken,
        Class::Credential,
        Class::Trailer,
        Class::Smaller,
    ] {
        assert!(by_class.get(&class).copied().unwrap_or(0) >= 10, "{class:?} has {:?} cases", by_class.get(&class));
    }
    // Nothing is expected to be accepted as it came: a forwarded case must name what it strips.
    for hostile in &suite {
        if matches!(hostile.case.expect, Expect::Allow(_)) {
            assert!(!hostile.case.strip_expected.is_empty(), "{} is forwarded with nothing stripped", hostile.case.name);
        }
    }
}

#[test]
fn every_hostile_request_natively() {
    let failures = native::failures(suite().iter().map(|h| &h.case));
    assert!(failures.is_empty(), "{} native failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_hostile_request_through_the_wasm() {
    let suite = suite();
    let failures = WasmRunner::default().failures(suite.iter().map(|h| &h.case));
    assert!(failures.is_empty(), "{} wasm failures:\n{}", failures.len(), failures.join("\n"));
}
