//! The snapshot natively: verify + open at 10 k / 100 k / 1 M bindings, lookups at 1 M, and one
//! revoke at 1 M as a delta (its size, the control plane's diff, the proxy's apply, copying
//! and in place). Each figure stands beside a baseline measured in the same run: SHA-256 of
//! the same bytes (what any signed format costs to check), a `HashMap` lookup, a plain copy of
//! the snapshot, the copying apply.
//!
//! `cargo bench -p certbind-shared --bench snapshot` prints Markdown tables.
//! `CERTBIND_BENCH_MAX=100000` skips the million. The same functions
//! (`certbind_shared::snapshot::testing`) feed the filter's measurements through the `.wasm`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use certbind_shared::identity::IdentityData;
use certbind_shared::snapshot::testing::{revoke_binding, synthetic_fingerprint, synthetic_snapshot, SyntheticSigner};
use certbind_shared::snapshot::{SnapshotView, BINDING_RECORD};
use certbind_shared::Fingerprint;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];
const NOW: i64 = 1_750_000_000;

fn max_size() -> u64 {
    std::env::var("CERTBIND_BENCH_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                black_box(f());
                start.elapsed()
            })
            .collect(),
    )
}

/// The median time of `f` on what `setup` makes for it, neither the setup nor dropping what
/// `f` returns counted.
fn timed_on<S, T>(runs: usize, mut setup: impl FnMut() -> S, mut f: impl FnMut(S) -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let input = setup();
                let start = Instant::now();
                let output = black_box(f(black_box(input)));
                let elapsed = start.elapsed();
                drop(output);
                elapsed
            })
            .collect(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let signer = SyntheticSigner::new("bench").expect("signer");
    let verifier = signer.verifier().expect("verifier");
    let sizes: Vec<u64> = SIZES.into_iter().filter(|n| *n <= max_size()).collect();

    println!("\n## Snapshot verify + open, natively (format 4, Ed25519)\n");
    println!("| bindings | size | verify + open (signature, digests, structure) | open only (structure) | SHA-256 of same bytes | verify ÷ SHA-256 |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut largest = None;
    for n in sizes {
        let bytes = synthetic_snapshot(&signer, n, 1, NOW - 60).expect("snapshot");
        let runs = if n >= 1_000_000 { 5 } else { 15 };
        let verify = timed(runs, || verifier.verify(bytes.clone(), NOW, None).expect("verifies"));
        let open = timed(runs, || SnapshotView::open_unauthenticated(bytes.clone()).expect("opens"));
        let copy = timed(runs, || bytes.clone());
        let hash = timed(runs, || Sha256::digest(&bytes));
        let verify = verify.saturating_sub(copy);
        let open = open.saturating_sub(copy);
        println!(
            "| {n} | {:.1} MiB | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× |",
            bytes.len() as f64 / 1_048_576.0,
            ms(verify),
            ms(open),
            ms(hash),
            verify.as_secs_f64() / hash.as_secs_f64()
        );
        largest = Some((n, bytes));
    }
    let Some((n, bytes)) = largest else { return };
    let held = verifier.verify(bytes.clone(), NOW, None).expect("verifies");

    println!("\n## Lookups at {n} bindings (ns per lookup, 1 000 000 random keys)\n");
    println!("| lookup | snapshot view | HashMap baseline | ratio |");
    println!("|---|---:|---:|---:|");
    let keys: Vec<Fingerprint> = (0..1_000_000u64).map(|i| synthetic_fingerprint((i * 7_919) % (2 * n))).collect();
    let map: HashMap<Fingerprint, u64> = (0..n).map(|i| (synthetic_fingerprint(i), i)).collect();
    let per = |d: Duration| d.as_secs_f64() * 1e9 / keys.len() as f64;
    let baseline = per(timed(5, || keys.iter().filter(|k| map.contains_key(k)).count()));
    let org = held.orgs().nth(3);
    let rows: [(&str, Duration); 3] = [
        ("binding (half hit, half miss)", timed(5, || keys.iter().filter(|k| held.card_binding(k).is_some()).count())),
        ("blocklist in an org's scope", timed(5, || keys.iter().filter(|k| held.is_blocklisted(k, org)).count())),
        ("thumbprint mapping", timed(5, || keys.iter().filter(|k| !matches!(held.thumbprint_mapping(k), certbind_shared::identity::RuleMatch::Unmatched)).count())),
    ];
    for (name, d) in rows {
        println!("| {name} | {:.0} | {baseline:.0} | {:.1}× |", per(d), per(d) / baseline);
    }

    println!("\n## One revoke at {n} bindings as a delta\n");
    println!("| figure | value | baseline (same run) |");
    println!("|---|---:|---:|");
    let started = Instant::now();
    let (next, chain) = revoke_binding(&signer, &held, (n / 2) as usize, NOW).expect("revoke");
    let patch_and_diff = started.elapsed();
    let next_view = verifier.verify(next.clone(), NOW, Some(1)).expect("next verifies");
    let diff = timed(5, || certbind_shared::snapshot::between(&held, &next_view));
    let apply = timed_on(9, || (), |()| verifier.apply_delta(&held, &chain, NOW).expect("applies"));
    // In place: a held view that owns its bytes, with the eighth of room the filter keeps.
    let unique = || {
        let mut buffer = Vec::with_capacity(bytes.len() + bytes.len() / 8);
        buffer.extend_from_slice(&bytes);
        verifier.verify(buffer, NOW, None).expect("verifies")
    };
    let in_place = timed_on(9, unique, |view| verifier.apply_delta_in_place(view, &chain, NOW).expect("applies"));
    let copy = timed(9, || bytes.clone());
    let full = timed(5, || verifier.verify(next.clone(), NOW, Some(1)).expect("verifies"));
    let applied = verifier.apply_delta(&held, &chain, NOW).expect("applies");
    assert_eq!(applied.as_bytes(), &next[..], "the applied delta is the signed snapshot");
    let applied = verifier.apply_delta_in_place(unique(), &chain, NOW).expect("applies");
    assert_eq!(applied.as_bytes(), &next[..], "the delta applied in place is the signed snapshot");
    println!("| delta bytes for one revoke | {} B | full snapshot {:.1} MiB ({} B per binding) |", chain.len(), next.len() as f64 / 1_048_576.0, BINDING_RECORD);
    println!("| delta apply (copy, merge, re-digest, check) | {:.1} ms | copying the snapshot {:.1} ms; full verify {:.1} ms |", ms(apply), ms(copy), ms(full));
    println!("| delta apply in place (the held buffer's own, records after the revoked one moved) | {:.1} ms | copying apply {:.1} ms ({:.2}×) |", ms(in_place), ms(apply), in_place.as_secs_f64() / apply.as_secs_f64());
    println!("| delta between two views (control plane) | {:.2} ms | — |", ms(diff));
    println!("| patch + sign + verify + diff (synthetic control plane) | {:.0} ms | — |", ms(patch_and_diff));
}
