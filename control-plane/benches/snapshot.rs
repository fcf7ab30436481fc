//! Snapshot build + sign time and size at 10 k, 100 k and 1 M bindings, and the cost of one
//! revoke at 1 M bindings (patch + re-sign), each against a baseline measured in the same run:
//! a plain SHA-256 of as many bytes as the snapshot has (the floor any signed format pays),
//! and a full rebuild for the patch. Peak memory is read from /proc/self/status (VmHWM).
//!
//! `cargo bench -p certbind-control-plane --bench snapshot` prints a summary table first, then
//! criterion's measurements. `CERTBIND_BENCH_MAX=100000` skips the million.
//! With SoftHSM2 installed, one token signature is timed too (the store signs a digest, so
//! the token's cost does not grow with the snapshot).

use certbind_control_plane::signer::pkcs11::{init_softhsm_token, Pkcs11Settings, Pkcs11Signer, SOFTHSM2_MODULE};
use certbind_control_plane::signer::{Signer, SoftwareSigner};
use certbind_control_plane::domain::{BindingRecord, Change, Owner};
use certbind_control_plane::snapshot::{SnapshotContent, SnapshotStore, StoreSettings};
use certbind_shared::encoding::ulid_render;
use certbind_shared::identity::Claim;
use certbind_shared::Fingerprint;
use criterion::{BatchSize, Criterion};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/memory.rs"]
mod memory;
use memory::{mib, reset_peak, status_kib};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const ORGS: usize = 100;

/// A ULID-shaped id (26 characters), the control plane's id format.
fn ulid_like(prefix: u8, n: u64) -> String {
    let value = (u128::from(prefix) << 100)
        | (u128::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15) << 16)
        | u128::from(n & 0xffff);
    ulid_render(&value.to_be_bytes()).iter().map(|&c| char::from(c)).collect()
}

fn fingerprint(n: u64) -> Fingerprint {
    Fingerprint::synthetic("bench", n)
}

/// `n` bindings in database order (by creation, not by fingerprint), one user each.
fn content(n: usize) -> SnapshotContent {
    let orgs: Vec<String> = (0..ORGS as u64).map(|i| ulid_like(1, i)).collect();
    let bindings = (0..n as u64)
        .map(|i| BindingRecord {
            fingerprint: fingerprint(i),
            user_id: ulid_like(2, i),
            org_id: orgs[(i as usize) % ORGS].clone(),
            enabled: i % 50 != 0,
            claim: Claim::Verified,
        })
        .collect();
    SnapshotContent { bindings, blocklist: (0..100).map(|i| (fingerprint(u64::MAX - i), Owner::Platform)).collect(), ..Default::default() }
}

fn signer() -> Arc<dyn Signer> {
    Arc::new(SoftwareSigner::from_secret(&[0x42; 32]).expect("valid scalar"))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn max_size() -> usize {
    std::env::var("CERTBIND_BENCH_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// One token signature through SoftHSM2, if it is installed.
fn hsm_sign_time() -> Option<Duration> {
    let module = std::env::var("CERTBIND_PKCS11_MODULE").unwrap_or_else(|_| SOFTHSM2_MODULE.into());
    if !std::path::Path::new(&module).exists() {
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let conf = init_softhsm_token(dir.path(), "bench", "bench-so", "bench-pin").ok()?;
    std::env::set_var("SOFTHSM2_CONF", conf);
    let settings = Pkcs11Settings {
        module: module.into(),
        token_label: "bench".into(),
        key_label: "bench".into(),
        pin: "bench-pin".into(),
    };
    let (signer, _) = Pkcs11Signer::init_key(&settings).ok()?;
    let samples = (0..50).map(|i: u32| {
        let start = Instant::now();
        signer.sign(&i.to_le_bytes()).ok()?;
        Some(start.elapsed())
    });
    samples.collect::<Option<Vec<_>>>().map(median)
}

fn summary() {
    println!("\n## Snapshot build + sign (software P-256 key; content in database order)\n");
    println!("| bindings | encoded size (= store steady state) | build+sign (median) | SHA-256 of same bytes | ratio | peak RSS above input |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut full_1m = None;
    for n in SIZES.into_iter().filter(|n| *n <= max_size()) {
        let runs = if n >= 1_000_000 { 3 } else { 5 };
        let input = content(n);
        let mut times = Vec::new();
        let mut size = 0;
        let mut peak_above = 0;
        for run in 0..runs {
            let copy = input.clone();
            let store = SnapshotStore::new(signer(), StoreSettings::default());
            let measuring = run == 0 && reset_peak();
            let before = status_kib("VmRSS:");
            let start = Instant::now();
            let snapshot = store.load(copy, 1).expect("build");
            times.push(start.elapsed());
            if measuring {
                peak_above = status_kib("VmHWM:").saturating_sub(before);
            }
            size = snapshot.bytes().len();
        }
        let build = median(times);
        let buffer = vec![0x5au8; size];
        let hash = median(
            (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(Sha256::digest(std::hint::black_box(&buffer)));
                    start.elapsed()
                })
                .collect(),
        );
        println!(
            "| {n} | {:.1} MiB ({:.1} B/binding) | {:.0} ms | {:.0} ms | {:.1}× | {:.1} MiB |",
            size as f64 / 1048576.0,
            size as f64 / n as f64,
            build.as_secs_f64() * 1e3,
            hash.as_secs_f64() * 1e3,
            build.as_secs_f64() / hash.as_secs_f64(),
            mib(peak_above),
        );
        if n == 1_000_000 {
            full_1m = Some((input, build));
        }
    }

    if let Some((input, full)) = full_1m {
        let store = SnapshotStore::new(signer(), StoreSettings::default());
        store.load(input, 1).expect("build");
        let mut version = 1;
        let mut times = Vec::new();
        for i in 0..10u64 {
            version += 1;
            let start = Instant::now();
            store.apply(version, vec![Change::RemoveBinding { fingerprint: fingerprint(i * 7919) }]);
            let published = store.publish().expect("publish").expect("new snapshot");
            times.push(start.elapsed());
            assert_eq!(published.version(), version);
        }
        let patch = median(times);
        println!("\n## One revoke at 1 M bindings: patch + re-sign + self-verify\n");
        println!("| patch+sign (median of 10) | full rebuild | ratio |");
        println!("|---:|---:|---:|");
        println!(
            "| {:.0} ms | {:.0} ms | {:.2}× |",
            patch.as_secs_f64() * 1e3,
            full.as_secs_f64() * 1e3,
            patch.as_secs_f64() / full.as_secs_f64()
        );
        memory_probe_in_child();
    }
    match hsm_sign_time() {
        Some(t) => {
            println!("\nSoftHSM2 CKM_ECDSA signature of a digest: {:.2} ms (median of 50)\n", t.as_secs_f64() * 1e3)
        }
        None => println!("\nSoftHSM2 not available: token signature not timed\n"),
    }
}

/// Runs [`memory_probe`] in a fresh process, so its peak is not hidden by memory the
/// allocator kept from earlier measurements.
fn memory_probe_in_child() {
    let Ok(exe) = std::env::current_exe() else { return };
    let output = std::process::Command::new(exe).env(PROBE_ENV, max_size().to_string()).output();
    match output {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!("memory probe failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => println!("memory probe not run: {e}"),
    }
}

const PROBE_ENV: &str = "CERTBIND_BENCH_MEMORY_PROBE";

/// Peak resident memory of a process that builds a snapshot of `n` bindings, then patches it.
fn memory_probe(n: usize) {
    let start = status_kib("VmRSS:");
    let input = content(n);
    let with_input = status_kib("VmRSS:");
    let store = SnapshotStore::new(signer(), StoreSettings::default());
    reset_peak();
    let snapshot = store.load(input, 1).expect("build");
    let build_peak = status_kib("VmHWM:");
    let size = snapshot.bytes().len() as u64 / 1024;
    drop(snapshot);
    let steady = status_kib("VmRSS:");
    reset_peak();
    for version in 2..7u64 {
        store.apply(version, vec![Change::RemoveBinding { fingerprint: fingerprint(version) }]);
        store.publish().expect("publish");
    }
    let patch_peak = status_kib("VmHWM:");
    println!("\n## Memory at {n} bindings (fresh process, VmRSS/VmHWM)\n");
    println!("| input rows in memory | build peak above input | snapshot (store steady state) | patch peak above steady RSS |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        mib(with_input.saturating_sub(start)),
        mib(build_peak.saturating_sub(with_input)),
        mib(size),
        mib(patch_peak.saturating_sub(steady)),
    );
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_build_sign");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(1));
    for n in SIZES.into_iter().filter(|n| *n <= max_size()) {
        let input = content(n);
        group.bench_function(format!("{n}"), |b| {
            b.iter_batched(
                || (input.clone(), SnapshotStore::new(signer(), StoreSettings::default())),
                |(copy, store)| store.load(copy, 1).expect("build"),
                BatchSize::PerIteration,
            )
        });
        let size = SnapshotStore::new(signer(), StoreSettings::default()).load(input, 1).expect("build").bytes().len();
        let buffer = vec![0x5au8; size];
        group.bench_function(format!("{n}_sha256_baseline"), |b| {
            b.iter(|| Sha256::digest(std::hint::black_box(&buffer)))
        });
    }
    group.finish();

    let n = max_size().min(1_000_000);
    let store = SnapshotStore::new(signer(), StoreSettings::default());
    store.load(content(n), 1).expect("build");
    let mut version = 1;
    let mut group = c.benchmark_group("snapshot_revoke_patch");
    group.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(1));
    group.bench_function(format!("{n}"), |b| {
        b.iter(|| {
            version += 1;
            let fp = fingerprint(version % n as u64);
            store.apply(version, vec![Change::RemoveBinding { fingerprint: fp }]);
            store.publish().expect("publish")
        })
    });
    group.finish();
}

fn main() {
    if let Some(n) = std::env::var(PROBE_ENV).ok().and_then(|v| v.parse().ok()) {
        memory_probe(n);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let listing_or_testing = args.iter().any(|a| a == "--list" || a == "--test");
    if !listing_or_testing {
        summary();
    }
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
}
