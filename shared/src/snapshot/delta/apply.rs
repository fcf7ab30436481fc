//! Applying a delta chain to the snapshot held, in a new buffer or in the held one's.
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

use super::check::{check, Checked};
use super::merge::{compose, merge_keyed, Admitted, Plan, Sink};
use super::wire::{delta_error, Parsed, DELTA_HEAD_LEN, MAX_DELTA_BYTES};
use crate::snapshot::format::{
    bucket_range, read_header, read_u64, Layout, Section, BODY_SECTIONS, BODY_START, MAX_SNAPSHOT_BYTES,
};
use crate::snapshot::verify::SnapshotVerifier;
use crate::snapshot::view::checker::{bucket_starts, Checker, Derived, INDEX_FROM, KEEP_BUCKETS_FROM};
use crate::snapshot::view::SnapshotView;
use crate::snapshot::SnapshotError;
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

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
