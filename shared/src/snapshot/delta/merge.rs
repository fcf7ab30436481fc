//! What a chain's steps compose into, section by section ([`Plan`]), and the one merge of a
//! keyed section's held records with the keys a chain touches ([`merge_keyed`]), over any
//! [`Sink`]: the check before writing hashes what it would give, the apply writes it.

use super::wire::{EditBody, ParsedEdit};
use crate::snapshot::format::{Layout, SECTION_COUNT};
use std::collections::BTreeMap;
use std::ops::Range;

/// What the steps do to one section, composed.
pub(super) enum Plan<'a> {
    Unchanged,
    /// The held bytes, then these.
    Appended(Vec<&'a [u8]>),
    /// These bytes, then (for orgs and strings) any appended after the replacement.
    Replaced(Vec<&'a [u8]>),
    /// Keyed: the final state of every key the steps touched (`None`: deleted).
    Edited(BTreeMap<&'a [u8], Option<&'a [u8]>>),
}

pub(super) fn compose<'a>(steps: &[Vec<ParsedEdit<'a>>]) -> Vec<Plan<'a>> {
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
/// (`Copied`), the in-place apply plans them as moves within the held buffer (`Moves`), and
/// the checks before either hash what a bucket would hold (`Hashed`, in [`super::check`]).
/// One merge (`emit` in [`super::apply`], [`merge_keyed`]) drives all three, so what is
/// checked is what is written.
pub(super) trait Sink<'a> {
    /// Bytes so far: where the next one lands.
    fn len(&self) -> usize;
    /// Bytes `range` of the held snapshot, next.
    fn held(&mut self, range: Range<usize>);
    /// Bytes of the chain, next.
    fn chain(&mut self, bytes: &'a [u8]);
}

/// Merges a keyed section's held records (`range` of `held`, sorted) with the final states
/// of the touched keys (ascending): the held records before each key, then its new record if
/// it has one; a held record with the key is left out. `inserted_at` collects where each new
/// record lands.
pub(super) fn merge_keyed<'a, S: Sink<'a>>(
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
pub(super) struct Admitted<'a> {
    pub target: Layout,
    /// The target's header and signature, as the chain carries them.
    pub signed: &'a [u8],
    pub plans: Vec<Plan<'a>>,
}
