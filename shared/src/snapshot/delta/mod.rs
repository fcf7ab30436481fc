//! Deltas: what takes a proxy from the snapshot it holds (version N) to the latest (M) without
//! downloading M whole. A revoke at a million bindings moves a few hundred bytes.
//!
//! - `wire`: the chain's byte layout, its owned form ([`Delta`]) and its borrowed reader;
//! - `diff`: [`between`], the delta from one snapshot to a later one;
//! - `merge`: what a chain's steps compose into, and the one merge of a keyed section that
//!   the check hashes and the apply writes, so what is checked is what is written;
//! - `check`: every section's length and digest as the result will have them, computed
//!   before a byte is written;
//! - `apply`: [`apply()`] and [`apply_in_place`], the order of their refusals, and
//!   [`super::SnapshotVerifier::apply_delta`], which calls them.

mod apply;
mod check;
mod diff;
mod merge;
mod wire;

pub use apply::{apply, apply_in_place, InPlaceRefusal, Unapplied};
pub use diff::between;
pub use wire::{chain, Delta, DeltaStep, SectionEdit, DELTA_HEAD_LEN, DELTA_MAGIC, MAX_DELTA_BYTES, MAX_DELTA_STEPS};
