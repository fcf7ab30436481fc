//! CRL revocations in the snapshot, at DoD scale: 49 issuing CAs and 6 million revoked serials
//! (the largest CA a million), encoded into one signed snapshot, verified and opened as a
//! filter opens it, then looked up per request. Every figure stands beside a baseline from the
//! same run: the same CAs with no revocations (the per-request floor of the revocation step),
//! and the section's own bytes (the floor of what the filter must hold).
//!
//! `cargo bench -p certbind-shared --bench revocations` prints Markdown tables.
//! `CERTBIND_BENCH_MAX=600000` caps the revoked serials.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use certbind_shared::certificate::ca::KeyIdentifier;
use certbind_shared::certificate::CertificateFacts;
use certbind_shared::decision::revocation::{check_freshness, check_revoked, issuing_ca, RevocationPolicy};
use certbind_shared::identity::{CaKey, CertificateAuthority, IdentityData};
use certbind_shared::snapshot::testing::SyntheticSigner;
use certbind_shared::snapshot::{Section, SnapshotEncoder, SnapshotView};
use certbind_shared::Fingerprint;
use std::hint::black_box;
use std::time::{Duration, Instant};

const CAS: u64 = 49;
const DOD_ENTRIES: u64 = 6_000_000;
const LARGEST: u64 = 1_000_000;
const NOW: i64 = 1_800_000_000;
/// Bytes a revocation may take in the snapshot.
const GOAL_BYTES_PER_ENTRY: f64 = 16.0;
/// What the filter holds for the revocations, against their share of the snapshot.
const GOAL_MEMORY_RATIO: f64 = 1.2;
/// What 6 M revocations may add to a warm request's revocation step.
const GOAL_LOOKUP_ADDED_NS: f64 = 1_000.0;

fn ca_key(i: u64) -> KeyIdentifier {
    KeyIdentifier::new(format!("synthetic ca key {i}").as_bytes()).unwrap()
}

/// The serials of CA `ca`: the first CA holds the largest CRL, the rest share what is left.
fn entries_of(ca: u64, total: u64) -> u64 {
    let largest = LARGEST.min(total);
    if ca == 0 { largest } else { (total - largest) / (CAS - 1) }
}

fn build(signer: &SyntheticSigner, total: u64) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut keys: Vec<[u8; 16]> = Vec::with_capacity(total as usize);
    for ca in 0..CAS {
        let key = CaKey::of(&ca_key(ca));
        for serial in 0..entries_of(ca, total) {
            keys.push(key.revocation_key(&format!("{:x}", 0x1000_0000_u64 + serial)));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    let mut encoder = SnapshotEncoder::with_capacity(keys.len() * 16 + 64 * 1024, 4096);
    for key in &keys {
        encoder.push_crl_revoked_key(key).unwrap();
    }
    for ca in 0..CAS {
        let subject = format!("CN=Synthetic Issuing CA-{ca},OU=PKI,O=certbind,C=US");
        let authority = CertificateAuthority {
            key: CaKey::of(&ca_key(ca)),
            subject_dn: &subject,
            require_fresh_crl: true,
            fail_open: false,
            crl_valid_until: Some(NOW + 86_400),
        };
        encoder.push_certificate_authority(&authority).unwrap();
    }
    let unsigned = encoder.finish(&signer.header(1, NOW - 60, NOW + 86_400)).unwrap();
    let bytes = signer.sign(unsigned).unwrap();
    (bytes, started.elapsed())
}

fn facts(ca: u64, serial: u64) -> CertificateFacts {
    CertificateFacts {
        fingerprint: Fingerprint([9; 32]),
        subject_dn: "CN=Holder".into(),
        issuer_dn: format!("CN=Synthetic Issuing CA-{ca},OU=PKI,O=certbind,C=US"),
        display_names: certbind_shared::certificate::DisplayNames::default(),
        serial_hex: format!("{serial:x}"),
        not_before: NOW - 60,
        not_after: NOW + 60,
        subject_alt_names: Vec::new(),
        policy_oids: Vec::new(),
        extended_key_usages: Vec::new(),
        authority_key_identifier: Some(ca_key(ca)),
        public_key: None,
        complete: true,
    }
}

/// Median nanoseconds of the revocation step (CRL lookup, then freshness) for `count`
/// certificates spread over the CAs, half of them revoked where revocations are loaded.
fn step_ns(view: &SnapshotView, count: u64) -> f64 {
    let certificates: Vec<CertificateFacts> =
        (0..count).map(|i| facts(i % CAS, 0x1000_0000 + (i * 7919) % 1_000 + if i % 2 == 0 { 0 } else { 1 << 40 })).collect();
    let policy = RevocationPolicy::default();
    let mut samples = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        for facts in &certificates {
            let ca = issuing_ca(facts, view);
            let revoked = check_revoked(facts, ca.as_ref(), view).is_err();
            let fresh = check_freshness(facts, ca.as_ref(), view, None, &policy, NOW);
            let _ = black_box((revoked, fresh));
        }
        samples.push(started.elapsed().as_secs_f64() * 1e9 / count as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let total = std::env::var("CERTBIND_BENCH_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(DOD_ENTRIES);
    let signer = SyntheticSigner::new("revocations").unwrap();
    let verifier = signer.verifier().unwrap();

    let (empty, _) = build(&signer, 0);
    let floor_view = verifier.verify(empty, NOW, None).unwrap();
    let (bytes, built) = build(&signer, total);
    let started = Instant::now();
    let view = verifier.verify(bytes, NOW, None).unwrap();
    let opened = started.elapsed();
    let entries = view.crl_revoked_count();
    let section = view.section_bytes(Section::CrlRevoked).len();
    // The filter holds the snapshot's bytes and, per keyed section of 4096 records or more,
    // a bucket index of 4097 u32 starts; nothing else grows with the revocations.
    let held = section + 4097 * 4;
    let probe = facts(0, 0x1000_0000);
    let revoked = |facts: &CertificateFacts| check_revoked(facts, issuing_ca(facts, &view).as_ref(), &view);
    assert!(entries == 0 || revoked(&probe).is_err(), "a listed serial is found");
    assert!(revoked(&facts(0, 1 << 41)).is_ok());

    println!("\n## CRL revocations in the snapshot ({CAS} CAs, largest CRL {} entries)\n", LARGEST.min(total));
    println!("| revocations | section | bytes / entry (goal ≤ {GOAL_BYTES_PER_ENTRY}) | snapshot | encoded + signed in | verified + opened in | filter holds ÷ section (goal ≤ {GOAL_MEMORY_RATIO}) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let per_entry = section as f64 / entries.max(1) as f64;
    let ratio = held as f64 / section.max(1) as f64;
    println!(
        "| {entries} | {:.1} MB | {per_entry:.1} | {:.1} MB | {:.2} s | {:.2} s | {ratio:.3} |",
        section as f64 / 1e6,
        view.as_bytes().len() as f64 / 1e6,
        built.as_secs_f64(),
        opened.as_secs_f64()
    );

    let count = 200_000;
    let floor = step_ns(&floor_view, count);
    let loaded = step_ns(&view, count);
    println!("\n## The revocation step per request, warm (same run)\n");
    println!("| snapshot | ns / request | added over none (goal ≤ {GOAL_LOOKUP_ADDED_NS} ns) |");
    println!("|---|---:|---:|");
    println!("| {CAS} CAs, no revocations (floor) | {floor:.0} | — |");
    println!("| {CAS} CAs, {entries} revocations | {loaded:.0} | {:.0} |", loaded - floor);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "\nGoals: {} bytes per entry ({}), filter memory {ratio:.3}× the section ({}), lookup +{:.0} ns ({}).",
        per_entry,
        verdict(per_entry <= GOAL_BYTES_PER_ENTRY),
        verdict(ratio <= GOAL_MEMORY_RATIO),
        loaded - floor,
        verdict(loaded - floor <= GOAL_LOOKUP_ADDED_NS)
    );
    black_box(floor_view.is_crl_revoked(&CaKey::of(&ca_key(0)), "1"));
}
