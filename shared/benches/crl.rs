//! The CRL reader natively: synthetic CRLs of 10 k / 100 k / 1 M entries (16-byte serials, a
//! reasonCode on every fourth, as `certbind_shared::crl::testing` writes them, signed ECDSA
//! P-256), read, verified, iterated and folded into the revoked-serial set. Each figure
//! stands beside SHA-256 of the same bytes measured in the same run: the floor any check of a
//! signed CRL pays, since the signature covers nearly all of it.
//!
//! `cargo bench -p certbind-shared --bench crl` prints Markdown tables.
//! `CERTBIND_BENCH_MAX=100000` skips the million.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use certbind_shared::crl::testing::{synthetic_serial, SyntheticCa};
use certbind_shared::crl::{verify_crl, Crl, CrlLimits, ReasonCode, RevokedSerials, Serial};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];
const THIS_UPDATE: i64 = 1_750_000_000;

/// The goal for reading and verifying the largest CRL a CA publishes (about a million entries).
const GOAL_AT_ONE_MILLION: Duration = Duration::from_secs(2);

fn max_size() -> u64 {
    std::env::var("CERTBIND_BENCH_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let ca = SyntheticCa::new("bench", "Synthetic Bench CA").expect("CA");
    let limits = CrlLimits::default();
    let sizes: Vec<u64> = SIZES.into_iter().filter(|n| *n <= max_size()).collect();

    println!("\n## CRL read + verify, natively (ECDSA P-256, 16-byte serials)\n");
    println!("| entries | size | built in | read (every entry checked) | read + verify | + serial set | iterate entries | SHA-256 of same bytes | read + verify ÷ SHA-256 |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut largest = None;
    for n in sizes {
        let started = Instant::now();
        let der = ca.synthetic_crl(1, n, THIS_UPDATE);
        let built = started.elapsed();
        let runs = if n >= 1_000_000 { 5 } else { 15 };
        let read = timed(runs, || Crl::from_der(&der, &limits).expect("reads").entry_count());
        let verify = timed(runs, || verify_crl(&der, ca.certificate(), &limits).expect("verifies").entry_count());
        let crl = verify_crl(&der, ca.certificate(), &limits).expect("verifies");
        let folded = timed(runs, || {
            let crl = verify_crl(&der, ca.certificate(), &limits).expect("verifies");
            RevokedSerials::from_complete(&crl).expect("complete").len()
        });
        let iterate = timed(runs, || crl.entries().filter(|e| e.reason == Some(ReasonCode::KeyCompromise)).count());
        let hash = timed(runs, || Sha256::digest(&der));
        assert_eq!(crl.entry_count() as u64, n);
        println!(
            "| {n} | {:.1} MiB | {:.0} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× |",
            der.len() as f64 / 1_048_576.0,
            ms(built),
            ms(read),
            ms(verify),
            ms(folded),
            ms(iterate),
            ms(hash),
            verify.as_secs_f64() / hash.as_secs_f64()
        );
        largest = Some((n, der, verify));
    }
    let Some((n, der, verify)) = largest else { return };
    let crl = verify_crl(&der, ca.certificate(), &limits).expect("verifies");
    let serials = RevokedSerials::from_complete(&crl).expect("complete");
    println!("\n## At {n} entries\n");
    println!("| figure | value |");
    println!("|---|---:|");
    println!(
        "| read + verify against the {:.0} s goal | {:.2} s ({}) |",
        GOAL_AT_ONE_MILLION.as_secs_f64(),
        verify.as_secs_f64(),
        if n < 1_000_000 { "not measured at a million" } else if verify <= GOAL_AT_ONE_MILLION { "met" } else { "MISSED" }
    );
    println!(
        "| revoked-serial set | {:.1} MiB ({} B per serial; the CRL is {} B per entry) |",
        serials.heap_bytes() as f64 / 1_048_576.0,
        serials.heap_bytes() / serials.len().max(1),
        der.len() / serials.len().max(1)
    );
    let probes: Vec<[u8; 16]> = (0..1_000_000u64).map(|i| synthetic_serial(i * 7 % (2 * n))).collect();
    let lookup = timed(5, || {
        probes.iter().filter(|s| serials.contains(Serial::from_der_content(&s[..]))).count()
    });
    // Baseline: the same serials in a HashSet of fixed-size keys (no sorted form, 2–3× the memory).
    let set: std::collections::HashSet<[u8; 16]> = (0..n).map(synthetic_serial).collect();
    let hashed = timed(5, || probes.iter().filter(|s| set.contains(*s)).count());
    let per = |d: Duration| d.as_secs_f64() * 1e9 / probes.len() as f64;
    println!(
        "| serial lookup, random probes, half hit (HashSet baseline) | {:.0} ns ({:.0} ns, {:.1}×) |",
        per(lookup),
        per(hashed),
        per(lookup) / per(hashed)
    );
}
