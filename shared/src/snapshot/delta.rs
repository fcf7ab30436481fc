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
//! Applying a chain ([`apply`], [`apply_in_place`]) composes its steps first, so a chain
//! costs one pass however long. Before a byte is written, every section's length and digest
//! are computed from the held bytes and the chain and compared with M's header: a touched
//! bucket of a keyed section is merged into a hash (and its 4096-entry bucket table updated),
//! the appended tail of the orgs and strings sections continues the held hash, a replaced
//! section is hashed whole; nothing else is hashed. Only then is the result written — into a
//! new buffer ([`apply`]), or by moving the held bytes within their own buffer
//! ([`apply_in_place`]) — by the same merge that was hashed (a bucket at a time into the
//! hash, a section at a time into the buffer: a sorted section keeps each bucket's records
//! together, so the two give the same bytes), and the structure of only what changed is
//! checked. That last part is sound because every byte it skips was checked when
//! the held snapshot was opened, is unchanged, and its references still resolve (orgs and
//! strings only grow unless replaced, and a replaced orgs or strings section re-checks
//! everything); the merge keeps each keyed section sorted by construction; and every lookup
//! is bounds-checked anyway, so even a mistake here could make a lookup miss, never read out
//! of bounds. Every refusal but that last check leaves the held snapshot untouched, in place
//! too.

use super::format::{
    bucket_digests, bucket_of, bucket_range, keyed_digest, malformed, plain_digest_state, read_header,
    read_u24, read_u32, read_u64, Layout, Section, BODY_SECTIONS, BODY_START, DIGEST_LEN, FORMAT_VERSION,
    FINGERPRINT_LEN, MAX_SNAPSHOT_BYTES, REVOKED_RECORD, SECTION_COUNT,
};
use super::verify::SnapshotVerifier;
use super::view::{bucket_starts, Checker, Derived, DigestState, SnapshotView, INDEX_FROM, KEEP_BUCKETS_FROM};
use super::SnapshotError;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
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

/// Where the result's bytes go, in order. The copying apply appends them to a new buffer
/// ([`Copied`]), the in-place apply plans them as moves within the held buffer ([`Moves`]),
/// and the checks before either hash what a bucket would hold ([`Hashed`]). One merge
/// ([`emit`], [`merge_keyed`]) drives all three, so what is checked is what is written.
trait Sink<'a> {
    /// Bytes so far: where the next one lands.
    fn len(&self) -> usize;
    /// Bytes `range` of the held snapshot, next.
    fn held(&mut self, range: Range<usize>);
    /// Bytes of the chain, next.
    fn chain(&mut self, bytes: &'a [u8]);
}

/// The result in a new buffer, beside the held one.
struct Copied<'h> {
    held: &'h [u8],
    out: Vec<u8>,
}

impl<'a> Sink<'a> for Copied<'_> {
    fn len(&self) -> usize {
        self.out.len()
    }

    fn held(&mut self, range: Range<usize>) {
        self.out.extend_from_slice(self.held.get(range).unwrap_or(&[]));
    }

    fn chain(&mut self, bytes: &'a [u8]) {
        self.out.extend_from_slice(bytes);
    }
}

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

/// One piece of the result: held bytes that move to its offset, or chain bytes copied there.
enum Piece<'a> {
    Held { from: usize, len: usize },
    Chain(&'a [u8]),
}

/// The result as moves within the held buffer, each piece at its offset, in order.
#[derive(Default)]
struct Moves<'a> {
    pieces: Vec<(usize, Piece<'a>)>,
    len: usize,
}

impl<'a> Sink<'a> for Moves<'a> {
    fn len(&self) -> usize {
        self.len
    }

    fn held(&mut self, range: Range<usize>) {
        let len = range.len();
        if len == 0 {
            return;
        }
        // Held bytes that follow the last piece's in both places move with it.
        if let Some((_, Piece::Held { from, len: run })) = self.pieces.last_mut() {
            if from.checked_add(*run) == Some(range.start) {
                *run += len;
                self.len += len;
                return;
            }
        }
        self.pieces.push((self.len, Piece::Held { from: range.start, len }));
        self.len += len;
    }

    fn chain(&mut self, bytes: &'a [u8]) {
        if bytes.is_empty() {
            return;
        }
        self.pieces.push((self.len, Piece::Chain(bytes)));
        self.len += bytes.len();
    }
}

impl Moves<'_> {
    /// Whether the pieces tile the result from its first byte, and read held bytes within
    /// `held_len` in ascending order without reading one twice: what [`Moves::run`] relies on.
    fn fit(&self, held_len: usize) -> bool {
        let (mut written, mut read) = (0usize, 0usize);
        for (to, piece) in &self.pieces {
            if *to != written {
                return false;
            }
            let len = match piece {
                Piece::Held { from, len } => match from.checked_add(*len) {
                    Some(end) if *from >= read && end <= held_len => {
                        read = end;
                        *len
                    }
                    _ => return false,
                },
                Piece::Chain(bytes) => bytes.len(),
            };
            let Some(next) = written.checked_add(len) else { return false };
            written = next;
        }
        written == self.len
    }

    /// Rewrites `buffer` — the held bytes, then room up to the longer of them and the result —
    /// into the result, given [`Moves::fit`]. Pieces and their sources both ascend and never
    /// overlap among themselves, so a piece moving towards the start writes only over bytes
    /// before its own source's end (read already, or by no later piece), and a piece moving
    /// towards the end only over bytes after its own source's start: the first kind moves
    /// first, from the start, the second then, from the end, and the chain's bytes go last
    /// into the gaps, when no held byte is left to read. Held bytes that stay put do not move.
    fn run(&self, buffer: &mut [u8]) {
        let size = buffer.len();
        let inside = |from: usize, to: usize, len: usize| from.max(to).checked_add(len).is_some_and(|end| end <= size);
        for (to, piece) in &self.pieces {
            if let Piece::Held { from, len } = piece {
                if to < from && inside(*from, *to, *len) {
                    buffer.copy_within(*from..*from + *len, *to);
                }
            }
        }
        for (to, piece) in self.pieces.iter().rev() {
            if let Piece::Held { from, len } = piece {
                if to > from && inside(*from, *to, *len) {
                    buffer.copy_within(*from..*from + *len, *to);
                }
            }
        }
        for (to, piece) in &self.pieces {
            if let Piece::Chain(bytes) = piece {
                if let Some(slot) = to.checked_add(bytes.len()).and_then(|end| buffer.get_mut(*to..end)) {
                    slot.copy_from_slice(bytes);
                }
            }
        }
    }
}

/// Merges a keyed section's held records (`range` of `held`, sorted) with the final states
/// of the touched keys (ascending): the held records before each key, then its new record if
/// it has one; a held record with the key is left out. `inserted_at` collects where each new
/// record lands.
fn merge_keyed<'a, S: Sink<'a>>(
    sink: &mut S,
    held: &[u8],
    range: Range<usize>,
    entries: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    record_len: usize,
    key_len: usize,
    mut inserted_at: Option<&mut Vec<usize>>,
) {
    let records = held.get(range.clone()).unwrap_or(&[]);
    let count = records.len() / record_len;
    let key_at = |i: usize| records.get(i * record_len..i * record_len + key_len);
    let run = |from: usize, to: usize| range.start + from * record_len..range.start + to * record_len;
    let mut copied = 0usize;
    for (key, record) in entries {
        let (mut low, mut high) = (copied, count);
        while low < high {
            let mid = low + (high - low) / 2;
            if key_at(mid).is_some_and(|k| k < key) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        sink.held(run(copied, low));
        copied = if key_at(low) == Some(key) { low + 1 } else { low };
        if let Some(record) = record {
            if let Some(at) = inserted_at.as_deref_mut() {
                at.push(sink.len());
            }
            sink.chain(record);
        }
    }
    sink.held(run(copied, count));
}

/// What the steps composed into, borrowed from the chain.
struct Admitted<'a> {
    target: Layout,
    /// The target's header and signature, as the chain carries them.
    signed: &'a [u8],
    plans: Vec<Plan<'a>>,
}

/// Writes the result into `sink`: the target's signed header, then each section as its plan
/// says, from `held` (laid out as `held_layout`) and the chain. Returns, per edited section,
/// the offsets of the records inserted.
fn emit<'a, S: Sink<'a>>(
    sink: &mut S,
    held: &[u8],
    held_layout: &Layout,
    admitted: &Admitted<'a>,
) -> Vec<(Section, Vec<usize>)> {
    sink.chain(admitted.signed);
    let mut inserted = Vec::new();
    for ((section, plan), range) in BODY_SECTIONS.into_iter().zip(&admitted.plans).zip(held_layout.sections.iter()) {
        match plan {
            Plan::Unchanged => sink.held(range.clone()),
            Plan::Appended(parts) => {
                sink.held(range.clone());
                parts.iter().for_each(|part| sink.chain(part));
            }
            Plan::Replaced(parts) => parts.iter().for_each(|part| sink.chain(part)),
            Plan::Edited(map) => {
                let (record_len, key_len) = (section.record_len().unwrap_or(1), section.key_len().unwrap_or(1));
                let mut at = Vec::new();
                let entries = map.iter().map(|(key, record)| (*key, *record));
                merge_keyed(sink, held, range.clone(), entries, record_len, key_len, Some(&mut at));
                inserted.push((section, at));
            }
        }
    }
    inserted
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
    let admitted = admit(verifier, held, chain, now)?;
    let checked = check(held, &admitted)?;
    let (out, inserted) = copied(held, &admitted);
    finish(out, admitted.target, held.derived(), checked, inserted).map_err(|(error, _)| error)
}

/// The result in a new buffer.
fn copied(held: &SnapshotView, admitted: &Admitted<'_>) -> (Vec<u8>, Vec<(Section, Vec<usize>)>) {
    let mut sink = Copied { held: held.as_bytes(), out: Vec::with_capacity(admitted.target.end()) };
    let inserted = emit(&mut sink, held.as_bytes(), held.layout(), admitted);
    (sink.out, inserted)
}

/// What [`apply_in_place`] hands back with a refusal.
#[derive(Debug)]
pub enum Unapplied {
    /// Refused before a byte of it was written: the held snapshot, as it was.
    Held(Box<SnapshotView>),
    /// Refused after its buffer was rewritten — a result whose every length and digest is the
    /// signed one, but whose structure is not valid (which only a signer's fault produces):
    /// the buffer, for its allocation; its contents are meaningless.
    Spent(Vec<u8>),
}

/// A delta refused by [`apply_in_place`]: why, and what is left of the held snapshot.
#[derive(Debug)]
pub struct InPlaceRefusal {
    pub error: SnapshotError,
    pub unapplied: Unapplied,
}

/// [`apply`], building the result in `held`'s own buffer when nothing else shares it: no
/// second buffer, and the bytes around an edit move once (a revoke moves the records after
/// one binding 52 bytes down) instead of all being copied. A buffer that must grow takes an
/// eighth more than needed, so a snapshot growing by a little does not reallocate each time.
/// When another view shares the bytes, the result is built beside them, as [`apply`] does.
///
/// The same refusals, in the same order, as [`apply`]. Every one but the last kind (the
/// structure of what changed) comes before anything is written and hands `held` back as it
/// was; only a result that matches the signed header but is malformed hands back the spent
/// buffer, and the caller restores its snapshot from elsewhere.
pub fn apply_in_place(
    verifier: &SnapshotVerifier,
    held: SnapshotView,
    chain: &[u8],
    now: i64,
) -> Result<SnapshotView, InPlaceRefusal> {
    let refused = |error, unapplied| InPlaceRefusal { error, unapplied };
    let admitted = match admit(verifier, &held, chain, now) {
        Ok(admitted) => admitted,
        Err(error) => return Err(refused(error, Unapplied::Held(Box::new(held)))),
    };
    let checked = match check(&held, &admitted) {
        Ok(checked) => checked,
        Err(error) => return Err(refused(error, Unapplied::Held(Box::new(held)))),
    };
    let (mut buffer, rest) = match held.into_unique_bytes() {
        Ok(parts) => parts,
        Err(shared) => {
            let (out, inserted) = copied(&shared, &admitted);
            return finish(out, admitted.target, shared.derived(), checked, inserted)
                .map_err(|(error, _)| refused(error, Unapplied::Held(shared)));
        }
    };
    let mut moves = Moves::default();
    let inserted = emit(&mut moves, &buffer, rest.layout(), &admitted);
    let end = admitted.target.end();
    let held_len = buffer.len();
    if moves.len != end || !moves.fit(held_len) {
        let built = moves.len;
        let held = Box::new(rest.with_bytes(buffer));
        let error = SnapshotError::DeltaLength { section: Section::Strings, expected: end, built };
        return Err(refused(error, Unapplied::Held(held)));
    }
    if end > buffer.capacity() && buffer.try_reserve_exact((end + end / 8).saturating_sub(held_len)).is_err() {
        let held = Box::new(rest.with_bytes(buffer));
        return Err(refused(SnapshotError::TooLarge { len: end, max: MAX_SNAPSHOT_BYTES }, Unapplied::Held(held)));
    }
    if end > held_len {
        buffer.resize(end, 0);
    }
    moves.run(&mut buffer);
    buffer.truncate(end);
    finish(buffer, admitted.target, rest.derived(), checked, inserted)
        .map_err(|(error, buffer)| refused(error, Unapplied::Spent(buffer)))
}

/// Deltas are accepted by the verifier that accepts whole snapshots, with the same header
/// checks.
impl SnapshotVerifier {
    /// Applies a delta chain to `held`: accepted only if it starts at `held`'s version and
    /// ends in a snapshot whose signed header verifies as [`SnapshotVerifier::verify`] would,
    /// with every length and digest matching.
    pub fn apply_delta(&self, held: &SnapshotView, chain: &[u8], now: i64) -> Result<SnapshotView, SnapshotError> {
        apply(self, held, chain, now)
    }

    /// [`SnapshotVerifier::apply_delta`] in `held`'s own buffer when `held` is its only owner
    /// ([`apply_in_place`]): the same result and the same refusals, without a second buffer.
    /// A refusal hands back `held` as it was, or — only when the signed result
    /// itself is malformed — its spent buffer.
    pub fn apply_delta_in_place(
        &self,
        held: SnapshotView,
        chain: &[u8],
        now: i64,
    ) -> Result<SnapshotView, InPlaceRefusal> {
        apply_in_place(self, held, chain, now)
    }
}

/// The checks that read only the chain and `held`'s header: the chain's size, the target's
/// signed header (key, signature, version, clock), the base version, the steps' structure.
fn admit<'a>(
    verifier: &SnapshotVerifier,
    held: &SnapshotView,
    chain: &'a [u8],
    now: i64,
) -> Result<Admitted<'a>, SnapshotError> {
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
    Ok(Admitted { target, signed, plans })
}

/// What the checks before writing found, for the view after it.
struct Checked {
    state: DigestState,
    /// Per edited keyed section: its new bucket table and the buckets touched.
    tables: Vec<(Section, Vec<[u8; DIGEST_LEN]>, BTreeSet<usize>)>,
    revoked_owners: Option<HashMap<u32, u64>>,
    replaced_small: bool,
    rebuilt_tables: bool,
    /// Org records were appended: the org table is checked again.
    orgs_appended: bool,
}

/// Every section's length and digest as the result will have them, computed from `held` and
/// the chain before a byte is written, against the target's signed header. A keyed
/// section's touched buckets are merged one by one into a hash ([`Hashed`]) by the same
/// [`merge_keyed`] that writes the section afterwards.
fn check(held: &SnapshotView, admitted: &Admitted<'_>) -> Result<Checked, SnapshotError> {
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

/// The view over the written result: the structure of what changed checked (every byte is
/// the signed one by now), the lookup index and what the view reads whole carried over from
/// `held_derived` or read again. A refusal hands `out` back.
fn finish(
    out: Vec<u8>,
    target: Layout,
    held_derived: &Derived,
    checked: Checked,
    inserted: Vec<(Section, Vec<usize>)>,
) -> Result<SnapshotView, (SnapshotError, Vec<u8>)> {
    if out.len() != target.end() {
        let error = SnapshotError::DeltaLength { section: Section::Strings, expected: target.end(), built: out.len() };
        return Err((error, out));
    }
    let mut state = checked.state;
    let mut starts = held_derived.bucket_starts.clone();
    let checker = Checker { bytes: &out, layout: &target };
    for (section, table, touched) in checked.tables {
        let (Some(record_len), Some(k)) = (section.record_len(), section.keyed_index()) else { continue };
        let records = checker.section(section);
        if let Some(slot) = starts.get_mut(k) {
            *slot = updated_starts(slot.as_deref(), records, record_len, &touched);
        }
        if records.len() >= KEEP_BUCKETS_FROM {
            if let Some(slot) = state.buckets.get_mut(k) {
                *slot = Some(Arc::new(table));
            }
        }
    }
    let structure = || -> Result<Derived, SnapshotError> {
        if checked.rebuilt_tables {
            // Every reference may have moved: check everything.
            return checker.check_all();
        }
        if checked.orgs_appended {
            checker.check_orgs()?;
        }
        for (section, offsets) in &inserted {
            let record_len = section.record_len().unwrap_or(1);
            for at in offsets {
                let record = out.get(*at..*at + record_len).unwrap_or(&[]);
                checker.check_keyed_record(*section, *at, record)?;
            }
        }
        let revoked_owners = checked.revoked_owners.clone().unwrap_or_else(|| held_derived.revoked_owners.clone());
        let mut derived = if checked.replaced_small {
            checker.read_small_sections(revoked_owners)?
        } else {
            let mut derived = held_derived.clone();
            derived.revoked_orgs = checker.revoked_orgs(&revoked_owners);
            derived.revoked_owners = revoked_owners;
            derived
        };
        derived.bucket_starts = starts;
        Ok(derived)
    };
    match structure() {
        Ok(derived) => Ok(SnapshotView::from_parts(Arc::new(out), target, Arc::new(derived), state)),
        Err(error) => Err((error, out)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tests::Counter;

    /// Moves within one buffer build what a copy builds, whatever the pieces: held runs that
    /// move towards the start, towards the end or stay, runs left out, chain bytes between,
    /// a result shorter or longer than the held bytes.
    #[test]
    fn moves_in_place_build_what_a_copy_builds() {
        let mut rng = Counter(31);
        let chain: Vec<u8> = (0..512).map(|_| rng.next() as u8).collect();
        for round in 0..3_000 {
            let held: Vec<u8> = (0..rng.next() % 600).map(|_| rng.next() as u8).collect();
            let mut copy = Copied { held: &held, out: Vec::new() };
            let mut moves = Moves::default();
            let mut read = 0usize;
            while read < held.len() {
                let len = (rng.next() % 90) as usize;
                match rng.next() % 4 {
                    0 => read += len,
                    1 => {
                        let at = (rng.next() % 400) as usize;
                        let bytes = &chain[at..at + len];
                        copy.chain(bytes);
                        moves.chain(bytes);
                    }
                    _ => {
                        let range = read..(read + len).min(held.len());
                        read = range.end;
                        copy.held(range.clone());
                        moves.held(range);
                    }
                }
            }
            assert!(moves.fit(held.len()), "round {round}");
            assert_eq!(moves.len, copy.out.len());
            let mut buffer = held.clone();
            buffer.resize(held.len().max(moves.len), 0);
            moves.run(&mut buffer);
            buffer.truncate(moves.len);
            assert_eq!(buffer, copy.out, "round {round}");
        }
    }

    /// What `run`'s order relies on is checked first: pieces that would read held bytes twice,
    /// out of order or past the end do not fit.
    #[test]
    fn moves_that_read_back_or_past_the_end_do_not_fit() {
        let piece = |to, from, len| (to, Piece::Held { from, len });
        let moves = |pieces: Vec<(usize, Piece<'static>)>, len| Moves { pieces, len };
        assert!(moves(vec![piece(0, 10, 5), piece(5, 15, 5)], 10).fit(20));
        assert!(!moves(vec![piece(0, 10, 5), piece(5, 12, 5)], 10).fit(20), "overlapping reads");
        assert!(!moves(vec![piece(0, 10, 5), piece(5, 0, 5)], 10).fit(20), "reads back");
        assert!(!moves(vec![piece(0, 18, 5)], 5).fit(20), "past the end");
        assert!(!moves(vec![piece(0, 0, 5), piece(6, 5, 5)], 11).fit(20), "a gap in the result");
        assert!(!moves(vec![piece(0, 0, 5)], 6).fit(20), "shorter than said");
        assert!(!moves(vec![piece(0, usize::MAX, 2)], 2).fit(20), "overflow");
    }
}
