//! [`between`]: the delta from one snapshot to a later one, as the control plane publishes
//! it with every snapshot it signs.

use super::wire::{Delta, DeltaStep, SectionEdit};
use crate::snapshot::format::{bucket_range, Section, BODY_SECTIONS};
use crate::snapshot::view::SnapshotView;

/// The delta from `old` to `new`, as one step: a merge walk over each keyed section (only
/// buckets whose digests differ, when both views kept them), the orgs and strings sections
/// appended to when `new`'s start with `old`'s, other changed sections replaced. Sections with
/// the same digest are left out. Applied to `old`, it gives `new` byte for byte.
pub fn between(old: &SnapshotView, new: &SnapshotView) -> Delta {
    let mut edits = Vec::new();
    for section in BODY_SECTIONS {
        let (old_bytes, new_bytes) = (old.section_bytes(section), new.section_bytes(section));
        if old.digest(section) == new.digest(section) && old_bytes.len() == new_bytes.len() {
            continue;
        }
        match (section.record_len(), section.key_len()) {
            (Some(record_len), Some(key_len)) => {
                let (deleted, inserted) = keyed_diff(old, new, section, record_len, key_len);
                if !deleted.is_empty() || !inserted.is_empty() {
                    edits.push(SectionEdit::Edited { section, deleted, inserted });
                }
            }
            _ if matches!(section, Section::Orgs | Section::Strings) && new_bytes.starts_with(old_bytes) => {
                let tail = new_bytes.get(old_bytes.len()..).unwrap_or(&[]);
                if !tail.is_empty() {
                    edits.push(SectionEdit::Appended { section, bytes: tail.to_vec() });
                }
            }
            _ => edits.push(SectionEdit::Replaced { section, bytes: new_bytes.to_vec() }),
        }
    }
    Delta { from_version: old.version(), steps: vec![DeltaStep { edits }], signed_header: new.signed_header().to_vec() }
}

/// Keys only `old` has, and records `new` has that `old` has not byte for byte.
fn keyed_diff(
    old: &SnapshotView,
    new: &SnapshotView,
    section: Section,
    record_len: usize,
    key_len: usize,
) -> (Vec<u8>, Vec<u8>) {
    let (old_bytes, new_bytes) = (old.section_bytes(section), new.section_bytes(section));
    let keyed = section.keyed_index().unwrap_or(0);
    let tables = (
        old.digest_state().buckets.get(keyed).cloned().flatten(),
        new.digest_state().buckets.get(keyed).cloned().flatten(),
    );
    let (mut deleted, mut inserted) = (Vec::new(), Vec::new());
    let mut walk = |old_run: &[u8], new_run: &[u8]| {
        let mut a = old_run.chunks_exact(record_len).peekable();
        let mut b = new_run.chunks_exact(record_len).peekable();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(x), None) => {
                    deleted.extend_from_slice(x.get(..key_len).unwrap_or(&[]));
                    a.next();
                }
                (None, Some(y)) => {
                    inserted.extend_from_slice(y);
                    b.next();
                }
                (Some(x), Some(y)) => match x.get(..key_len).cmp(&y.get(..key_len)) {
                    std::cmp::Ordering::Less => {
                        deleted.extend_from_slice(x.get(..key_len).unwrap_or(&[]));
                        a.next();
                    }
                    std::cmp::Ordering::Greater => {
                        inserted.extend_from_slice(y);
                        b.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if x != y {
                            inserted.extend_from_slice(y);
                        }
                        a.next();
                        b.next();
                    }
                },
            }
        }
    };
    match tables {
        // Only buckets whose digests differ hold a change.
        (Some(old_table), Some(new_table)) => {
            for (bucket, (o, n)) in old_table.iter().zip(new_table.iter()).enumerate() {
                if o == n {
                    continue;
                }
                let (ro, rn) =
                    (bucket_range(old_bytes, record_len, bucket), bucket_range(new_bytes, record_len, bucket));
                let old_run = old_bytes.get(ro.start * record_len..ro.end * record_len).unwrap_or(&[]);
                let new_run = new_bytes.get(rn.start * record_len..rn.end * record_len).unwrap_or(&[]);
                walk(old_run, new_run);
            }
        }
        _ => walk(old_bytes, new_bytes),
    }
    (deleted, inserted)
}
