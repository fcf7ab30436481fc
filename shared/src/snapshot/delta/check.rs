//! The checks before a byte of a delta's result is written: every section's length and digest
//! as the result will have them, computed from the held snapshot and the chain, against the
//! target's signed header (the whole order of refusals is in [`super::apply`]'s documentation).

use super::merge::{merge_keyed, Admitted, Plan, Sink};
use crate::snapshot::format::{
    bucket_digests, bucket_of, bucket_range, keyed_digest, malformed, plain_digest_state, read_u24, Section,
    BODY_SECTIONS, DIGEST_LEN, FINGERPRINT_LEN, MAX_SNAPSHOT_BYTES, REVOKED_RECORD,
};
use crate::snapshot::view::checker::DigestState;
use crate::snapshot::view::SnapshotView;
use crate::snapshot::SnapshotError;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

/// SHA-256 and length of what would be written; nothing is.
struct Hashed<'h> {
    held: &'h [u8],
    hasher: Sha256,
    len: usize,
}

impl<'a> Sink<'a> for Hashed<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn held(&mut self, range: Range<usize>) {
        let bytes = self.held.get(range).unwrap_or(&[]);
        self.hasher.update(bytes);
        self.len += bytes.len();
    }

    fn chain(&mut self, bytes: &'a [u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len();
    }
}

/// What the checks before writing found, for the view after it.
pub(super) struct Checked {
    pub state: DigestState,
    /// Per edited keyed section: its new bucket table and the buckets touched.
    pub tables: Vec<(Section, Vec<[u8; DIGEST_LEN]>, BTreeSet<usize>)>,
    pub revoked_owners: Option<HashMap<u32, u64>>,
    pub replaced_small: bool,
    pub rebuilt_tables: bool,
    /// Org records were appended: the org table is checked again.
    pub orgs_appended: bool,
}

/// Every section's length and digest as the result will have them, computed from `held` and
/// the chain before a byte is written, against the target's signed header. A keyed
/// section's touched buckets are merged one by one into a hash ([`Hashed`]) by the same
/// [`merge_keyed`] that writes the section afterwards.
pub(super) fn check(held: &SnapshotView, admitted: &Admitted<'_>) -> Result<Checked, SnapshotError> {
    let target = &admitted.target;
    let end = target.end();
    if end > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge { len: end, max: MAX_SNAPSHOT_BYTES });
    }
    let held_state = held.digest_state();
    let mut checked = Checked {
        state: DigestState::default(),
        tables: Vec::new(),
        revoked_owners: None,
        replaced_small: false,
        rebuilt_tables: false,
        orgs_appended: false,
    };
    let mut start = admitted.signed.len();
    for (i, (section, plan)) in BODY_SECTIONS.into_iter().zip(&admitted.plans).enumerate() {
        let held_bytes = held.section_bytes(section);
        let held_range = held.layout().sections.get(i).cloned().unwrap_or(0..0);
        let expected_range = target.sections.get(i).cloned().unwrap_or(0..0);
        let expected_len = expected_range.len();
        let expected_digest = target.digests.get(i).copied().unwrap_or_default();
        let length = |built: usize| {
            if built != expected_len || start != expected_range.start {
                return Err(SnapshotError::DeltaLength { section, expected: expected_len, built });
            }
            Ok(())
        };
        let digest = |digest: [u8; DIGEST_LEN]| {
            if digest != expected_digest {
                return Err(SnapshotError::DigestMismatch { section });
            }
            Ok(())
        };
        match plan {
            Plan::Unchanged => {
                length(held_bytes.len())?;
                digest(held.digest(section))?;
                if let Some(k) = section.keyed_index() {
                    if let (Some(slot), Some(table)) = (checked.state.buckets.get_mut(k), held_state.buckets.get(k)) {
                        *slot = table.clone();
                    }
                }
                match section {
                    Section::Orgs => checked.state.orgs = held_state.orgs.clone(),
                    Section::Strings => checked.state.strings = held_state.strings.clone(),
                    _ => {}
                }
            }
            Plan::Appended(parts) => {
                length(held_bytes.len() + parts.iter().map(|p| p.len()).sum::<usize>())?;
                let mut hasher = match (section, &held_state.orgs, &held_state.strings) {
                    (Section::Orgs, Some(h), _) | (Section::Strings, _, Some(h)) => h.clone(),
                    _ => {
                        let mut h = plain_digest_state(section);
                        h.update(held_bytes);
                        h
                    }
                };
                parts.iter().for_each(|part| hasher.update(part));
                digest(hasher.clone().finalize().into())?;
                if section == Section::Orgs {
                    checked.orgs_appended = true;
                    checked.state.orgs = Some(hasher);
                } else {
                    checked.state.strings = Some(hasher);
                }
            }
            Plan::Replaced(parts) => {
                length(parts.iter().map(|p| p.len()).sum::<usize>())?;
                let mut hasher = plain_digest_state(section);
                parts.iter().for_each(|part| hasher.update(part));
                digest(hasher.clone().finalize().into())?;
                match section {
                    Section::Orgs => {
                        checked.rebuilt_tables = true;
                        checked.state.orgs = Some(hasher);
                    }
                    Section::Strings => {
                        checked.rebuilt_tables = true;
                        checked.state.strings = Some(hasher);
                    }
                    _ => checked.replaced_small = true,
                }
            }
            Plan::Edited(map) => {
                let keyed = (section.record_len(), section.key_len(), section.keyed_index());
                let (Some(record_len), Some(key_len), Some(k)) = keyed else {
                    return Err(malformed(section, start, "edited section is not keyed"));
                };
                let mut table: Vec<[u8; DIGEST_LEN]> = match held_state.buckets.get(k).cloned().flatten() {
                    Some(table) => table.as_ref().clone(),
                    None => bucket_digests(held_bytes, record_len),
                };
                let (built, touched) = edited_buckets(held.as_bytes(), held_range, &mut table, map, record_len, key_len);
                length(built)?;
                digest(keyed_digest(section, &table))?;
                if section == Section::Revoked {
                    checked.revoked_owners = Some(revoked_counts(held, held_bytes, map));
                }
                checked.tables.push((section, table, touched));
            }
        }
        start += expected_len;
    }
    if start != end {
        return Err(SnapshotError::DeltaLength { section: Section::Strings, expected: end, built: start });
    }
    Ok(checked)
}

/// A keyed section's edit merged bucket by bucket, without writing: each touched bucket's
/// digest put in `table`; returns the section's new length and the buckets touched.
fn edited_buckets(
    held: &[u8],
    range: Range<usize>,
    table: &mut [[u8; DIGEST_LEN]],
    map: &BTreeMap<&[u8], Option<&[u8]>>,
    record_len: usize,
    key_len: usize,
) -> (usize, BTreeSet<usize>) {
    let records = held.get(range.clone()).unwrap_or(&[]);
    let mut len = records.len();
    let mut touched = BTreeSet::new();
    let mut entries = map.iter().map(|(key, record)| (*key, *record)).peekable();
    while let Some(first) = entries.next() {
        let bucket = bucket_of(first.0);
        let mut group = vec![first];
        while let Some(next) = entries.next_if(|(key, _)| bucket_of(key) == bucket) {
            group.push(next);
        }
        let run = bucket_range(records, record_len, bucket);
        let bucket_bytes = range.start + run.start * record_len..range.start + run.end * record_len;
        let mut hashed = Hashed { held, hasher: Sha256::new(), len: 0 };
        merge_keyed(&mut hashed, held, bucket_bytes, group, record_len, key_len, None);
        if let Some(slot) = table.get_mut(bucket) {
            *slot = hashed.hasher.finalize().into();
        }
        len = len.saturating_sub(run.len() * record_len).saturating_add(hashed.len);
        touched.insert(bucket);
    }
    (len, touched)
}

/// The held revoked counts per owner, with the touched keys' old records taken out and their
/// new ones put in.
fn revoked_counts(held: &SnapshotView, held_bytes: &[u8], map: &BTreeMap<&[u8], Option<&[u8]>>) -> HashMap<u32, u64> {
    let mut counts = held.derived().revoked_owners.clone();
    let count = held_bytes.len() / REVOKED_RECORD;
    for (key, record) in map {
        let (mut low, mut high) = (0usize, count);
        while low < high {
            let mid = low + (high - low) / 2;
            if held_bytes.get(mid * REVOKED_RECORD..mid * REVOKED_RECORD + key.len()).is_some_and(|k| k < *key) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let old = held_bytes.get(low * REVOKED_RECORD..(low + 1) * REVOKED_RECORD).filter(|r| r.starts_with(key));
        if let Some(owner) = old.and_then(|r| read_u24(r, FINGERPRINT_LEN)) {
            if let Some(n) = counts.get_mut(&owner) {
                *n = n.saturating_sub(1);
            }
        }
        if let Some(owner) = record.and_then(|r| read_u24(r, FINGERPRINT_LEN)) {
            *counts.entry(owner).or_default() += 1;
        }
    }
    counts.retain(|_, n| *n > 0);
    counts
}
