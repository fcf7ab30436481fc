//! Deltas: what takes a proxy from the snapshot it holds (version N) to the latest (M) without
//! downloading M whole. A revoke at a million bindings moves a few hundred bytes.
//!
//! A delta *chain* is several steps (N → N+1 → … → M), then M's signed header:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "CBIDDLTA"
//!      8     2  snapshot format version the steps patch (3)
//!     10     2  number of steps, 1 to MAX_DELTA_STEPS
//!     12     4  reserved, 0
//!     16     8  from version: the snapshot the chain applies to
//!     24     …  the steps, back to back
//!  end-520   520  the target snapshot's header and signature, as it signed them
//! ```
//!
//! A step is a count u8 (0 to 10) of section edits, each: section index u8 (strictly
//! ascending within the step), kind u8, then
//!
//! | kind | name     | body                                                        | sections |
//! |------|----------|-------------------------------------------------------------|----------|
//! | 1    | replaced | length u32, the section's new bytes                          | any but the keyed ones |
//! | 2    | appended | length u32, bytes added at the section's end                 | orgs, strings |
//! | 3    | edited   | count u32, deleted keys; count u32, inserted records         | bindings, blocklist, revoked, principals |
//!
//! In an edit, deleted keys (the record's first 32 or 35 bytes) and inserted records are each
//! strictly ascending by key and never name the same key twice; an inserted record replaces a
//! held one with its key. A section no edit names is unchanged by that step. Intermediate
//! steps carry no signature: the end state is authenticated by M's header, whose digests
//! and lengths the result must match byte for byte.
//!
//! [`apply`] builds the result on a copy of the held bytes in one pass (the steps composed
//! first, so a chain costs one copy however long), re-digests only what changed — a touched
//! bucket of a keyed section and its 4096-entry bucket table, the appended tail of the orgs
//! and strings sections, a replaced section whole — and checks the structure of only what
//! changed. That last part is sound because every byte it skips was checked when the held
//! snapshot was opened, is unchanged, and its references still resolve (orgs and strings only
//! grow unless replaced, and a replaced orgs or strings section re-checks everything); the
//! merge keeps each keyed section sorted by construction; and every lookup is bounds-checked
//! anyway, so even a mistake here could make a lookup miss, never read out of bounds.

use super::format::{
    bucket_digests, bucket_of, bucket_range, keyed_digest, malformed, plain_digest_state, read_header,
    read_u24, read_u32, read_u64, Layout, Section, BODY_SECTIONS, BODY_START, DIGEST_LEN, FORMAT_VERSION,
    FINGERPRINT_LEN, MAX_SNAPSHOT_BYTES, REVOKED_RECORD, SECTION_COUNT,
};
use super::verify::SnapshotVerifier;
use super::view::{bucket_starts, Checker, DigestState, SnapshotView, INDEX_FROM, KEEP_BUCKETS_FROM};
use super::SnapshotError;
use sha2::Digest as _;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub const DELTA_MAGIC: [u8; 8] = *b"CBIDDLTA";
/// The fixed part before the steps.
pub const DELTA_HEAD_LEN: usize = 24;

/// Most steps in one chain. A proxy further behind than this fetches the full snapshot: a
/// long chain costs the control plane a long read and the proxy a long parse for no gain.
pub const MAX_DELTA_STEPS: usize = 1024;

/// Largest delta chain accepted: never more than a full snapshot (which would be the better
/// answer anyway).
pub const MAX_DELTA_BYTES: usize = MAX_SNAPSHOT_BYTES;

const KIND_REPLACED: u8 = 1;
const KIND_APPENDED: u8 = 2;
const KIND_EDITED: u8 = 3;

/// One section's change within a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionEdit {
    /// The section's new bytes (any section but the keyed ones).
    Replaced { section: Section, bytes: Vec<u8> },
    /// Bytes added at the end (orgs, strings).
    Appended { section: Section, bytes: Vec<u8> },
    /// A keyed section: keys deleted (concatenated, ascending) and records inserted
    /// (concatenated, ascending by key; each replaces a held record with its key).
    Edited { section: Section, deleted: Vec<u8>, inserted: Vec<u8> },
}

impl SectionEdit {
    pub fn section(&self) -> Section {
        match self {
            SectionEdit::Replaced { section, .. }
            | SectionEdit::Appended { section, .. }
            | SectionEdit::Edited { section, .. } => *section,
        }
    }
}

/// One step: the edits of one version to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaStep {
    pub edits: Vec<SectionEdit>,
}

/// A delta chain, owned: what [`between`] computes and [`Delta::encode`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub from_version: u64,
    pub steps: Vec<DeltaStep>,
    /// The target snapshot's header and signature ([`SnapshotView::signed_header`]).
    pub signed_header: Vec<u8>,
}

impl Delta {
    /// The version the chain ends at, as its (not yet verified) header says.
    pub fn to_version(&self) -> u64 {
        read_u64(&self.signed_header, 16).unwrap_or(0)
    }

    /// Bytes [`Delta::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let edits: usize = self
            .steps
            .iter()
            .map(|step| {
                1 + step
                    .edits
                    .iter()
                    .map(|edit| match edit {
                        SectionEdit::Replaced { bytes, .. } | SectionEdit::Appended { bytes, .. } => 6 + bytes.len(),
                        SectionEdit::Edited { deleted, inserted, .. } => 10 + deleted.len() + inserted.len(),
                    })
                    .sum::<usize>()
            })
            .sum();
        DELTA_HEAD_LEN + edits + self.signed_header.len()
    }

    /// The wire form (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&DELTA_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&u16::try_from(self.steps.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.from_version.to_le_bytes());
        let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        for step in &self.steps {
            out.push(u8::try_from(step.edits.len()).unwrap_or(u8::MAX));
            for edit in &step.edits {
                out.push(edit.section().table_index().and_then(|i| u8::try_from(i).ok()).unwrap_or(u8::MAX));
                match edit {
                    SectionEdit::Replaced { bytes, .. } | SectionEdit::Appended { bytes, .. } => {
                        out.push(if matches!(edit, SectionEdit::Replaced { .. }) { KIND_REPLACED } else { KIND_APPENDED });
                        out.extend_from_slice(&len32(bytes.len()));
                        out.extend_from_slice(bytes);
                    }
                    SectionEdit::Edited { section, deleted, inserted } => {
                        out.push(KIND_EDITED);
                        let key_len = section.key_len().unwrap_or(1);
                        let record_len = section.record_len().unwrap_or(1);
                        out.extend_from_slice(&len32(deleted.len() / key_len));
                        out.extend_from_slice(deleted);
                        out.extend_from_slice(&len32(inserted.len() / record_len));
                        out.extend_from_slice(inserted);
                    }
                }
            }
        }
        out.extend_from_slice(&self.signed_header);
        out
    }

    /// Parses a chain's structure (no signature, no held snapshot): for the producer, which
    /// joins stored steps into chains ([`chain`]), and for tests.
    pub fn decode(bytes: &[u8]) -> Result<Delta, SnapshotError> {
        let parsed = Parsed::read(bytes)?;
        let steps = parsed
            .steps
            .iter()
            .map(|step| DeltaStep {
                edits: step
                    .iter()
                    .map(|edit| match edit.body {
                        EditBody::Replaced(bytes) => SectionEdit::Replaced { section: edit.section, bytes: bytes.to_vec() },
                        EditBody::Appended(bytes) => SectionEdit::Appended { section: edit.section, bytes: bytes.to_vec() },
                        EditBody::Edited { deleted, inserted } => SectionEdit::Edited {
                            section: edit.section,
                            deleted: deleted.to_vec(),
                            inserted: inserted.to_vec(),
                        },
                    })
                    .collect(),
            })
            .collect();
        Ok(Delta { from_version: parsed.from_version, steps, signed_header: parsed.signed_header.to_vec() })
    }
}

/// Joins consecutive deltas (each starting where the one before ends) into one chain that
/// ends with the last one's header.
pub fn chain(deltas: &[Delta]) -> Result<Delta, SnapshotError> {
    let (Some(first), Some(last)) = (deltas.first(), deltas.last()) else {
        return Err(SnapshotError::DeltaMalformed { step: 0, at: 0, problem: "no deltas to chain" });
    };
    let mut steps = Vec::new();
    let mut expected_from = first.from_version;
    for delta in deltas {
        if delta.from_version != expected_from {
            return Err(SnapshotError::DeltaBase { held: expected_from, from: delta.from_version });
        }
        steps.extend(delta.steps.iter().cloned());
        expected_from = delta.to_version();
    }
    if steps.len() > MAX_DELTA_STEPS {
        return Err(SnapshotError::DeltaMalformed { step: MAX_DELTA_STEPS, at: 0, problem: "more steps than a chain may hold" });
    }
    Ok(Delta { from_version: first.from_version, steps, signed_header: last.signed_header.clone() })
}

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

/// One edit, borrowed from the chain's bytes.
struct ParsedEdit<'a> {
    section: Section,
    body: EditBody<'a>,
}

enum EditBody<'a> {
    Replaced(&'a [u8]),
    Appended(&'a [u8]),
    Edited { deleted: &'a [u8], inserted: &'a [u8] },
}

/// A chain's structure, borrowed.
struct Parsed<'a> {
    from_version: u64,
    steps: Vec<Vec<ParsedEdit<'a>>>,
    signed_header: &'a [u8],
}

fn delta_error(step: usize, at: usize, problem: &'static str) -> SnapshotError {
    SnapshotError::DeltaMalformed { step, at, problem }
}

/// A bounds-checked reader over the steps.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    end: usize,
    step: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.at.checked_add(len).filter(|e| *e <= self.end);
        let slice = end.and_then(|e| self.bytes.get(self.at..e));
        let slice = slice.ok_or(delta_error(self.step, self.at, "runs past the end of the steps"))?;
        self.at += len;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        self.take(1).map(|b| b.first().copied().unwrap_or(0))
    }

    fn u32(&mut self) -> Result<usize, SnapshotError> {
        let at = self.at;
        let bytes = self.take(4)?;
        read_u32(bytes, 0).and_then(|v| usize::try_from(v).ok()).ok_or(delta_error(self.step, at, "bad count"))
    }

    /// `count` items of `width` bytes, the count checked against what is left first.
    fn items(&mut self, count: usize, width: usize) -> Result<&'a [u8], SnapshotError> {
        let at = self.at;
        let len = count.checked_mul(width).ok_or(delta_error(self.step, at, "count overflows"))?;
        self.take(len)
    }
}

/// Whether `items` (of `width` bytes, compared on their first `key_len`) ascend strictly.
fn strictly_ascending(items: &[u8], width: usize, key_len: usize) -> bool {
    let mut previous: Option<&[u8]> = None;
    for item in items.chunks_exact(width) {
        let key = item.get(..key_len).unwrap_or(item);
        if previous.is_some_and(|p| p >= key) {
            return false;
        }
        previous = Some(key);
    }
    true
}

impl<'a> Parsed<'a> {
    fn read(bytes: &'a [u8]) -> Result<Parsed<'a>, SnapshotError> {
        if bytes.len() > MAX_DELTA_BYTES {
            return Err(SnapshotError::TooLarge { len: bytes.len(), max: MAX_DELTA_BYTES });
        }
        if bytes.len() < DELTA_HEAD_LEN + BODY_START {
            return Err(delta_error(0, bytes.len(), "shorter than a chain's head and a signed header"));
        }
        if bytes.get(..8) != Some(&DELTA_MAGIC[..]) {
            return Err(delta_error(0, 0, "not a delta chain (bad magic)"));
        }
        let format = bytes.get(8..10).and_then(|b| <[u8; 2]>::try_from(b).ok()).map(u16::from_le_bytes);
        if format != Some(FORMAT_VERSION) {
            return Err(SnapshotError::UnsupportedFormat { format_version: format.unwrap_or(0) });
        }
        let step_count = bytes.get(10..12).and_then(|b| <[u8; 2]>::try_from(b).ok()).map(u16::from_le_bytes);
        let step_count = usize::from(step_count.unwrap_or(0));
        if step_count == 0 || step_count > MAX_DELTA_STEPS {
            return Err(delta_error(0, 10, "step count is not 1 to 1024"));
        }
        if read_u32(bytes, 12) != Some(0) {
            return Err(delta_error(0, 12, "reserved bytes are not zero"));
        }
        let from_version = read_u64(bytes, 16).ok_or(delta_error(0, 16, "truncated"))?;
        let end = bytes.len() - BODY_START;
        let signed_header = bytes.get(end..).unwrap_or(&[]);
        let mut cursor = Cursor { bytes, at: DELTA_HEAD_LEN, end, step: 0 };
        let mut steps = Vec::with_capacity(step_count);
        for step in 0..step_count {
            cursor.step = step;
            let edit_count = usize::from(cursor.u8()?);
            if edit_count > SECTION_COUNT {
                return Err(delta_error(step, cursor.at - 1, "more edits than sections"));
            }
            let mut edits = Vec::with_capacity(edit_count);
            let mut previous: Option<usize> = None;
            for _ in 0..edit_count {
                let at = cursor.at;
                let index = usize::from(cursor.u8()?);
                let section = Section::from_table_index(index).ok_or(delta_error(step, at, "no such section"))?;
                if previous.is_some_and(|p| p >= index) {
                    return Err(delta_error(step, at, "sections not strictly ascending"));
                }
                previous = Some(index);
                let kind_at = cursor.at;
                let kind = cursor.u8()?;
                let keyed = section.key_len().zip(section.record_len());
                let body = match (kind, keyed) {
                    (KIND_REPLACED, None) => {
                        let len = cursor.u32()?;
                        let bytes = cursor.take(len)?;
                        if section.record_len().is_some_and(|r| len % r != 0) {
                            return Err(delta_error(step, kind_at + 1, "not a whole number of records"));
                        }
                        EditBody::Replaced(bytes)
                    }
                    (KIND_APPENDED, None) if matches!(section, Section::Orgs | Section::Strings) => {
                        let len = cursor.u32()?;
                        let bytes = cursor.take(len)?;
                        if section.record_len().is_some_and(|r| len % r != 0) {
                            return Err(delta_error(step, kind_at + 1, "not a whole number of records"));
                        }
                        EditBody::Appended(bytes)
                    }
                    (KIND_EDITED, Some((key_len, record_len))) => {
                        let count = cursor.u32()?;
                        let deleted_at = cursor.at;
                        let deleted = cursor.items(count, key_len)?;
                        if !strictly_ascending(deleted, key_len, key_len) {
                            return Err(delta_error(step, deleted_at, "deleted keys not strictly ascending"));
                        }
                        let count = cursor.u32()?;
                        let inserted_at = cursor.at;
                        let inserted = cursor.items(count, record_len)?;
                        if !strictly_ascending(inserted, record_len, key_len) {
                            return Err(delta_error(step, inserted_at, "inserted records not strictly ascending"));
                        }
                        let deleted_keys: BTreeSet<&[u8]> = deleted.chunks_exact(key_len).collect();
                        if inserted.chunks_exact(record_len).any(|r| r.get(..key_len).is_some_and(|k| deleted_keys.contains(k))) {
                            return Err(delta_error(step, inserted_at, "a key both deleted and inserted"));
                        }
                        EditBody::Edited { deleted, inserted }
                    }
                    _ => return Err(delta_error(step, kind_at, "edit kind not allowed for this section")),
                };
                edits.push(ParsedEdit { section, body });
            }
            steps.push(edits);
        }
        if cursor.at != end {
            return Err(delta_error(step_count, cursor.at, "bytes between the last step and the signed header"));
        }
        Ok(Parsed { from_version, steps, signed_header })
    }
}

/// What the steps do to one section, composed.
enum Plan<'a> {
    Unchanged,
    /// The held bytes, then these.
    Appended(Vec<&'a [u8]>),
    /// These bytes, then (for orgs and strings) any appended after the replacement.
    Replaced(Vec<&'a [u8]>),
    /// Keyed: the final state of every key the steps touched (`None`: deleted).
    Edited(BTreeMap<&'a [u8], Option<&'a [u8]>>),
}

fn compose<'a>(steps: &[Vec<ParsedEdit<'a>>]) -> Vec<Plan<'a>> {
    let mut plans: Vec<Plan<'a>> = (0..SECTION_COUNT).map(|_| Plan::Unchanged).collect();
    for step in steps {
        for edit in step {
            let Some(plan) = edit.section.table_index().and_then(|i| plans.get_mut(i)) else { continue };
            match (&edit.body, &mut *plan) {
                (EditBody::Replaced(bytes), plan) => *plan = Plan::Replaced(vec![bytes]),
                (EditBody::Appended(bytes), Plan::Appended(parts) | Plan::Replaced(parts)) => parts.push(bytes),
                (EditBody::Appended(bytes), plan) => *plan = Plan::Appended(vec![bytes]),
                (EditBody::Edited { deleted, inserted }, plan) => {
                    let (key_len, record_len) =
                        (edit.section.key_len().unwrap_or(1), edit.section.record_len().unwrap_or(1));
                    if !matches!(plan, Plan::Edited(_)) {
                        *plan = Plan::Edited(BTreeMap::new());
                    }
                    if let Plan::Edited(map) = plan {
                        for key in deleted.chunks_exact(key_len) {
                            map.insert(key, None);
                        }
                        for record in inserted.chunks_exact(record_len) {
                            if let Some(key) = record.get(..key_len) {
                                map.insert(key, Some(record));
                            }
                        }
                    }
                }
            }
        }
    }
    plans
}

/// Writes a keyed section: the held records merged with the final states of the touched
/// keys. Returns the buckets touched and the offsets (in `out`) of the records inserted.
fn merge_keyed(
    out: &mut Vec<u8>,
    held: &[u8],
    map: &BTreeMap<&[u8], Option<&[u8]>>,
    record_len: usize,
    key_len: usize,
) -> (BTreeSet<usize>, Vec<usize>) {
    let count = held.len() / record_len;
    let key_at = |i: usize| held.get(i * record_len..i * record_len + key_len);
    let mut copied = 0usize;
    let mut touched = BTreeSet::new();
    let mut inserted_at = Vec::new();
    for (key, record) in map {
        touched.insert(bucket_of(key));
        let (mut low, mut high) = (copied, count);
        while low < high {
            let mid = low + (high - low) / 2;
            if key_at(mid).is_some_and(|k| k < *key) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        out.extend_from_slice(held.get(copied * record_len..low * record_len).unwrap_or(&[]));
        copied = if key_at(low) == Some(*key) { low + 1 } else { low };
        if let Some(record) = record {
            inserted_at.push(out.len());
            out.extend_from_slice(record);
        }
    }
    out.extend_from_slice(held.get(copied * record_len..).unwrap_or(&[]));
    (touched, inserted_at)
}

/// Applies `chain` to `held`; see the module documentation. Refusals, in order: the chain's
/// shape; the target header's shape; pinned key, signature, version (newer than `held`),
/// expiry and issue time as [`SnapshotVerifier::verify`] checks them; the chain's
/// `from_version` against `held`; the steps' structure; each section's length and digest
/// against the signed header; the structure of what changed.
pub fn apply(
    verifier: &SnapshotVerifier,
    held: &SnapshotView,
    chain: &[u8],
    now: i64,
) -> Result<SnapshotView, SnapshotError> {
    if chain.len() > MAX_DELTA_BYTES {
        return Err(SnapshotError::TooLarge { len: chain.len(), max: MAX_DELTA_BYTES });
    }
    let header_at = chain
        .len()
        .checked_sub(BODY_START)
        .filter(|at| *at >= DELTA_HEAD_LEN)
        .ok_or(delta_error(0, chain.len(), "shorter than a chain's head and a signed header"))?;
    let signed = chain.get(header_at..).unwrap_or(&[]);
    let target = read_header(signed)?;
    verifier.check_signed_header(signed, &target.header, now, Some(held.version()))?;
    let from_version = read_u64(chain, 16).ok_or(delta_error(0, 16, "truncated"))?;
    if from_version != held.version() {
        return Err(SnapshotError::DeltaBase { held: held.version(), from: from_version });
    }
    let parsed = Parsed::read(chain)?;
    let plans = compose(&parsed.steps);
    build(held, target, signed, &plans)
}

fn build(held: &SnapshotView, target: Layout, signed: &[u8], plans: &[Plan<'_>]) -> Result<SnapshotView, SnapshotError> {
    let end = target.end();
    if end > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge { len: end, max: MAX_SNAPSHOT_BYTES });
    }
    let mut out = Vec::with_capacity(end);
    out.extend_from_slice(signed);
    let held_state = held.digest_state();
    let mut state = DigestState::default();
    let mut inserted: Vec<(Section, Vec<usize>)> = Vec::new();
    let mut starts = held.derived().bucket_starts.clone();
    let mut revoked_changes: Option<HashMap<u32, u64>> = None;
    let mut replaced_small = false;
    let mut rebuilt_tables = false;
    let mut new_orgs_from = None;

    for (i, (section, plan)) in BODY_SECTIONS.into_iter().zip(plans).enumerate() {
        let start = out.len();
        let held_bytes = held.section_bytes(section);
        let expected_range = target.sections.get(i).cloned().unwrap_or(0..0);
        let expected_len = expected_range.len();
        let expected_digest = target.digests.get(i).copied().unwrap_or_default();
        let built_len = match plan {
            Plan::Unchanged => held_bytes.len(),
            Plan::Appended(parts) => held_bytes.len() + parts.iter().map(|p| p.len()).sum::<usize>(),
            Plan::Replaced(parts) => parts.iter().map(|p| p.len()).sum::<usize>(),
            // Known once merged; bounded by the target's length below.
            Plan::Edited(_) => expected_len,
        };
        if built_len != expected_len || start != expected_range.start {
            return Err(SnapshotError::DeltaLength { section, expected: expected_len, built: built_len });
        }
        let keyed = section.keyed_index();
        match plan {
            Plan::Unchanged => {
                out.extend_from_slice(held_bytes);
                if held.digest(section) != expected_digest {
                    return Err(SnapshotError::DigestMismatch { section });
                }
                if let Some(k) = keyed {
                    if let (Some(slot), Some(table)) = (state.buckets.get_mut(k), held_state.buckets.get(k)) {
                        *slot = table.clone();
                    }
                }
                match section {
                    Section::Orgs => state.orgs = held_state.orgs.clone(),
                    Section::Strings => state.strings = held_state.strings.clone(),
                    _ => {}
                }
            }
            Plan::Appended(parts) => {
                out.extend_from_slice(held_bytes);
                let mut hasher = match (section, &held_state.orgs, &held_state.strings) {
                    (Section::Orgs, Some(h), _) | (Section::Strings, _, Some(h)) => h.clone(),
                    _ => {
                        let mut h = plain_digest_state(section);
                        h.update(held_bytes);
                        h
                    }
                };
                for part in parts {
                    out.extend_from_slice(part);
                    hasher.update(part);
                }
                let digest: [u8; DIGEST_LEN] = hasher.clone().finalize().into();
                if digest != expected_digest {
                    return Err(SnapshotError::DigestMismatch { section });
                }
                if section == Section::Orgs {
                    new_orgs_from = Some(held_bytes.len() / super::format::ORG_RECORD);
                    state.orgs = Some(hasher);
                } else {
                    state.strings = Some(hasher);
                }
            }
            Plan::Replaced(parts) => {
                let mut hasher = plain_digest_state(section);
                for part in parts {
                    out.extend_from_slice(part);
                    hasher.update(part);
                }
                let digest: [u8; DIGEST_LEN] = hasher.clone().finalize().into();
                if digest != expected_digest {
                    return Err(SnapshotError::DigestMismatch { section });
                }
                match section {
                    Section::Orgs | Section::Strings => {
                        rebuilt_tables = true;
                        if section == Section::Orgs {
                            state.orgs = Some(hasher);
                        } else {
                            state.strings = Some(hasher);
                        }
                    }
                    _ => replaced_small = true,
                }
            }
            Plan::Edited(map) => {
                let (Some(record_len), Some(key_len), Some(k)) = (section.record_len(), section.key_len(), keyed) else {
                    return Err(malformed(section, start, "edited section is not keyed"));
                };
                // The merge may only produce as many bytes as the target says.
                let (touched, at) = merge_keyed(&mut out, held_bytes, map, record_len, key_len);
                let built = out.len() - start;
                if built != expected_len {
                    return Err(SnapshotError::DeltaLength { section, expected: expected_len, built });
                }
                let new_bytes = out.get(start..).unwrap_or(&[]);
                let mut table: Vec<[u8; DIGEST_LEN]> = match held_state.buckets.get(k).cloned().flatten() {
                    Some(table) => table.as_ref().clone(),
                    None => bucket_digests(held_bytes, record_len),
                };
                for bucket in &touched {
                    let range = bucket_range(new_bytes, record_len, *bucket);
                    let records = new_bytes.get(range.start * record_len..range.end * record_len).unwrap_or(&[]);
                    if let Some(slot) = table.get_mut(*bucket) {
                        *slot = sha2::Sha256::digest(records).into();
                    }
                }
                if keyed_digest(section, &table) != expected_digest {
                    return Err(SnapshotError::DigestMismatch { section });
                }
                if new_bytes.len() >= KEEP_BUCKETS_FROM {
                    if let Some(slot) = state.buckets.get_mut(k) {
                        *slot = Some(Arc::new(table));
                    }
                }
                if section == Section::Revoked {
                    revoked_changes = Some(revoked_counts(held, held_bytes, map));
                }
                if let Some(slot) = starts.get_mut(k) {
                    *slot = updated_starts(slot.as_deref(), new_bytes, record_len, &touched);
                }
                inserted.push((section, at));
            }
        }
    }
    if out.len() != end {
        return Err(SnapshotError::DeltaLength { section: Section::Strings, expected: end, built: out.len() });
    }

    // Structure, now that every byte is the signed one.
    let bytes = Arc::new(out);
    let checker = Checker { bytes: &bytes, layout: &target };
    let derived = if rebuilt_tables {
        // Every reference may have moved: check everything.
        checker.check_all()?
    } else {
        if let Some(from) = new_orgs_from {
            checker.check_orgs(from)?;
        }
        for (section, offsets) in &inserted {
            let record_len = section.record_len().unwrap_or(1);
            for at in offsets {
                let record = bytes.get(*at..*at + record_len).unwrap_or(&[]);
                checker.check_keyed_record(*section, *at, record)?;
            }
        }
        let revoked_owners = revoked_changes.unwrap_or_else(|| held.derived().revoked_owners.clone());
        let mut derived = if replaced_small {
            checker.read_small_sections(revoked_owners)?
        } else {
            let mut derived = held.derived().as_ref().clone();
            derived.revoked_orgs = checker.revoked_orgs(&revoked_owners);
            derived.revoked_owners = revoked_owners;
            derived
        };
        derived.bucket_starts = starts;
        derived
    };
    Ok(SnapshotView::from_parts(bytes, target, Arc::new(derived), state))
}

/// A keyed section's bucket index after an edit: the held one with the touched buckets'
/// sizes read again (4096 additions), or a fresh one for a section that just grew large.
fn updated_starts(
    held: Option<&Vec<u32>>,
    records: &[u8],
    record_len: usize,
    touched: &BTreeSet<usize>,
) -> Option<Arc<Vec<u32>>> {
    if records.len() / record_len < INDEX_FROM {
        return None;
    }
    let Some(held) = held else { return Some(Arc::new(bucket_starts(records, record_len))) };
    let mut starts = Vec::with_capacity(held.len());
    starts.push(0u32);
    let mut total = 0u32;
    for bucket in 0..held.len().saturating_sub(1) {
        let count = if touched.contains(&bucket) {
            u32::try_from(bucket_range(records, record_len, bucket).len()).unwrap_or(u32::MAX)
        } else {
            held.get(bucket + 1).zip(held.get(bucket)).map_or(0, |(end, start)| end.saturating_sub(*start))
        };
        total = total.saturating_add(count);
        starts.push(total);
    }
    Some(Arc::new(starts))
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
