//! CRL ingestion in the control plane, DoD-sized: the whole path an upload takes (read,
//! verify with the registered CA's key, fold onto the CRL held, store the revoked serials) on
//! SQLite, then the snapshot carrying them.
//!
//! - A 1 M-entry CRL (about 40 MB): ingested, against the shared crate's read + verify alone
//!   on the same bytes (the floor: what any verifying reader pays). Target: ≤ 2 s.
//! - A synthetic DoD PKI: 49 CAs, 6 M entries in all, the largest 1 M. Target: ≤ 60 s.
//! - The snapshot of those 6 M revocations: bytes per entry (target ≤ 16), and a CRL update
//!   adding 1,000 entries to the 1 M as a delta (target ≤ 32 KB), against the delta of one
//!   card revoke measured on the same snapshot.
//!
//! `cargo bench -p certbind-control-plane --bench crl` prints Markdown tables.
//! `CERTBIND_BENCH_CRL_TOTAL=1000000` shrinks the DoD set (the largest CRL stays 1 M).

use certbind_control_plane::db::cas;
use certbind_control_plane::domain::ca::{NewCa, RevocationPolicy};
use certbind_control_plane::db::{Actor, Db, DbOptions};
use certbind_control_plane::revocation::{ingest, CrlSource};
use certbind_control_plane::signer::{Signer, SoftwareSigner};
use certbind_control_plane::domain::Change;
use certbind_control_plane::snapshot::service::content_from_rows;
use certbind_control_plane::snapshot::{SnapshotStore, StoreSettings};
use certbind_shared::certificate::CaCertificate;
use certbind_shared::crl::testing::SyntheticCa;
use certbind_shared::crl::{verify_crl, CrlLimits};
use certbind_shared::Fingerprint;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/synthetic_ca.rs"]
mod synthetic_ca;

const LARGEST: u64 = 1_000_000;
const CAS: u64 = 49;
const DEFAULT_TOTAL: u64 = 6_000_000;
const TARGET_LARGEST: Duration = Duration::from_secs(2);
const TARGET_SET: Duration = Duration::from_secs(60);

fn now() -> i64 {
    certbind_shared::clock::now_seconds()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

async fn register(db: &Db, ca: &SyntheticCa) -> String {
    let pem = synthetic_ca::ca_certificate_pem(ca, ca.name_der(), now());
    let certificate = CaCertificate::from_pem(pem.as_bytes()).expect("CA certificate");
    let new = NewCa { certificate, certificate_pem: pem, policy: RevocationPolicy::default() };
    cas::register(db, &Actor::service("bench"), new).await.expect("register").value.key_id
}

async fn take(db: &Db, der: Vec<u8>) -> (Duration, Vec<Change>) {
    let start = Instant::now();
    let committed = ingest(db, &Actor::service("bench"), der, CrlSource::Upload, CrlLimits::default(), now())
        .await
        .expect("the CRL is taken");
    (start.elapsed(), committed.changes)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: u64 = std::env::var("CERTBIND_BENCH_CRL_TOTAL").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_TOTAL).max(LARGEST);
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = Db::open(&DbOptions::new(format!("sqlite://{}", dir.path().join("crl.db").display()))).await.expect("database");
    let this_update = now() - 600;

    // The largest CRL, against the reader alone.
    let largest = SyntheticCa::new("dod-largest", "DOD ID CA-70").expect("CA");
    let key = register(&db, &largest).await;
    let der = largest.synthetic_crl(1, LARGEST, this_update);
    let mut floor = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let verified = verify_crl(&der, largest.certificate(), &CrlLimits::default()).expect("verifies");
        assert_eq!(verified.entry_count() as u64, LARGEST);
        floor = floor.min(start.elapsed());
    }
    let (took, _) = take(&db, der.clone()).await;
    println!("\n## CRL ingestion in the control plane (SQLite)\n");
    println!("| what | time | baseline: shared read + verify | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| 1 M-entry CRL ({:.1} MB): read, verify, fold, store | {} | {} | {:.2}× | ≤ {} {} |",
        der.len() as f64 / 1e6,
        secs(took),
        secs(floor),
        took.as_secs_f64() / floor.as_secs_f64(),
        secs(TARGET_LARGEST),
        if took <= TARGET_LARGEST { "met" } else { "missed" }
    );

    // The rest of the DoD-sized set: 48 more CAs sharing the remaining entries.
    let rest = total - LARGEST;
    let per_ca = rest / (CAS - 1);
    let set_start = Instant::now();
    let mut set_bytes = der.len();
    for i in 1..CAS {
        let ca = SyntheticCa::new(&format!("dod-{i}"), &format!("DOD ID CA-{}", 70 + i)).expect("CA");
        register(&db, &ca).await;
        let count = if i == CAS - 1 { rest - per_ca * (CAS - 2) } else { per_ca };
        let crl = ca.synthetic_crl(1, count, this_update);
        set_bytes += crl.len();
        take(&db, crl).await;
    }
    let set = set_start.elapsed() + took;
    println!(
        "| DoD-sized set: {CAS} CAs, {total} entries, {:.0} MB | {} (the 48 after the largest: {}) | — | — | ≤ {} {} |",
        set_bytes as f64 / 1e6,
        secs(set),
        secs(set_start.elapsed()),
        secs(TARGET_SET),
        if set <= TARGET_SET { "met" } else { "missed" }
    );

    // The snapshot of it all, full build, then a CRL update and a card revoke as patches.
    let rows = certbind_control_plane::db::snapshot_data::load(&db).await.expect("rows");
    let (content, _) = content_from_rows(&rows);
    let entries = content.crl_revoked.len();
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::from_secret(&[0x42; 32]).expect("key"));
    let store = SnapshotStore::new(signer, StoreSettings::default());
    let start = Instant::now();
    let empty = store.load(certbind_control_plane::snapshot::SnapshotContent::default(), 1).expect("empty").bytes().len();
    let full = store.load(content, 2).expect("full build");
    let build = start.elapsed();
    let full_len = full.bytes().len();
    println!("\n## CRL revocations in the snapshot\n");
    println!("| what | value | baseline | target |");
    println!("|---|---|---|---|");
    let section = full.view().section_bytes(certbind_shared::snapshot::Section::CrlRevoked).len();
    let cas_bytes = full.view().section_bytes(certbind_shared::snapshot::Section::Cas).len();
    println!(
        "| {entries} revocations: bytes per entry in the snapshot | {:.2} B (the snapshot {:.1} MB in all, its {CAS} CA records {cas_bytes} B; built and signed in {}) | an empty snapshot, {empty} B | ≤ 16 B {} |",
        section as f64 / entries as f64,
        full_len as f64 / 1e6,
        secs(build),
        if section <= 16 * entries { "met" } else { "missed" }
    );

    // The largest CA's next CRL adds 1,000 entries.
    let (update, changes) = take(&db, largest.synthetic_crl(2, LARGEST + 1_000, this_update + 60)).await;
    store.apply(3, changes);
    let patched = store.publish().expect("publish").expect("a new snapshot");
    let crl_delta = store.delta(2, patched.version(), patched.bytes().len()).expect("a delta").len();
    store.apply(4, vec![Change::Block { owner: certbind_control_plane::domain::Owner::Platform, fingerprint: Fingerprint([7; 32]) }]);
    let blocked = store.publish().expect("publish").expect("a new snapshot");
    let block_delta = store.delta(patched.version(), blocked.version(), blocked.bytes().len()).expect("a delta").len();
    println!(
        "| a CRL update adding 1,000 entries to 1 M (ingested in {}): delta | {crl_delta} B ({:.1} B per entry) | one blocklist entry's delta: {block_delta} B | ≤ 32768 B {} |",
        secs(update),
        (crl_delta - block_delta.min(crl_delta)) as f64 / 1000.0,
        if crl_delta <= 32 * 1024 { "met" } else { "missed" }
    );
    let _ = key;
    db.close().await;
}
