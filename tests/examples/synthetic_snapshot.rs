//! Writes a signed identity snapshot of N synthetic bindings, and the public key that verifies
//! it, for the memory benchmark (scripts/devstack/bench_memory.py): a snapshot the size of a
//! large deployment's without binding a million cards through the API.
//!
//!     synthetic_snapshot BINDINGS SNAPSHOT_OUT PINNED_KEY_OUT
//!
//! Valid from a minute ago for a day, version 1, signed by the test snapshot key.

use certbind_tests::snapshots::{signed_snapshot, SnapshotContent, Stamp, TestSnapshotKey};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, count, snapshot_out, key_out] = args.as_slice() else {
        eprintln!("usage: synthetic_snapshot BINDINGS SNAPSHOT_OUT PINNED_KEY_OUT");
        return ExitCode::FAILURE;
    };
    let Ok(count) = count.parse::<usize>() else {
        eprintln!("BINDINGS must be a number");
        return ExitCode::FAILURE;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let key = TestSnapshotKey::new("memory-bench");
    let bytes = signed_snapshot(&key, &SnapshotContent::synthetic(count), Stamp { version: 1, issued_at: now - 60, expires_at: now + 86_400 });
    if let Err(e) = std::fs::write(snapshot_out, &bytes).and_then(|()| std::fs::write(key_out, key.pinned_pem())) {
        eprintln!("cannot write: {e}");
        return ExitCode::FAILURE;
    }
    println!("{} bytes", bytes.len());
    ExitCode::SUCCESS
}
