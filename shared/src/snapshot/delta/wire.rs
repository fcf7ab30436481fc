//! The wire form of a delta chain: the bytes a proxy fetches, the owned [`Delta`] the
//! control plane computes, stores and joins, and the bounds-checked reader both go through.
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

use crate::snapshot::format::{
    read_u32, read_u64, Section, BODY_START, FORMAT_VERSION, MAX_SNAPSHOT_BYTES, SECTION_COUNT,
};
use crate::snapshot::SnapshotError;
use std::collections::BTreeSet;

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
    /// The target snapshot's header and signature ([`crate::snapshot::SnapshotView::signed_header`]).
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

/// One edit, borrowed from the chain's bytes.
pub(super) struct ParsedEdit<'a> {
    pub section: Section,
    pub body: EditBody<'a>,
}

pub(super) enum EditBody<'a> {
    Replaced(&'a [u8]),
    Appended(&'a [u8]),
    Edited { deleted: &'a [u8], inserted: &'a [u8] },
}

/// A chain's structure, borrowed.
pub(super) struct Parsed<'a> {
    pub from_version: u64,
    pub steps: Vec<Vec<ParsedEdit<'a>>>,
    pub signed_header: &'a [u8],
}

pub(super) fn delta_error(step: usize, at: usize, problem: &'static str) -> SnapshotError {
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
    pub(super) fn read(bytes: &'a [u8]) -> Result<Parsed<'a>, SnapshotError> {
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
