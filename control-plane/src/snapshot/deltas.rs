//! The recent per-step deltas between consecutive signed snapshots, so that a proxy holding
//! version N downloads the change to the latest (a few hundred bytes for a revoke) instead of
//! the whole snapshot (52 MB at a million bindings).
//!
//! Each publication adds one step, computed by `certbind_shared::snapshot::delta::between`
//! from the snapshot it replaces. The ring is bounded by steps and by bytes; a proxy whose
//! version fell out of it, or whose chain would be larger than a fraction of the full snapshot
//! (not worth it: the full snapshot costs nothing to patch), gets the full snapshot.

use certbind_shared::snapshot::delta::{self, Delta};
use std::collections::VecDeque;

/// Bounds of the ring and of what is worth serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaLimits {
    /// Steps kept: at one publication per change burst, hours of ordinary use.
    pub max_steps: usize,
    /// Bytes kept, all steps together. A step larger than this (a bulk load) is not kept.
    pub max_bytes: usize,
    /// A chain is served only when it is at most `1 / max_fraction_divisor` of the full
    /// snapshot.
    pub max_fraction_divisor: usize,
}

impl Default for DeltaLimits {
    fn default() -> Self {
        DeltaLimits { max_steps: 512, max_bytes: 32 * 1024 * 1024, max_fraction_divisor: 4 }
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct DeltaRing {
    steps: VecDeque<(Delta, usize)>,
    bytes: usize,
    limits: DeltaLimits,
}

impl DeltaRing {
    pub fn new(limits: DeltaLimits) -> Self {
        DeltaRing { steps: VecDeque::new(), bytes: 0, limits }
    }

    pub fn limits(&self) -> DeltaLimits {
        self.limits
    }

    /// Adds the step to a newly published version. A step that does not start where the
    /// last one ended (a publication the ring did not see) starts the ring again.
    pub fn push(&mut self, step: Delta) {
        let len = step.encoded_len();
        if self.steps.back().is_some_and(|(last, _)| last.to_version() != step.from_version) {
            self.clear();
        }
        if len > self.limits.max_bytes {
            // Too big to keep, and the ring cannot go past it.
            self.clear();
            return;
        }
        self.bytes += len;
        self.steps.push_back((step, len));
        while self.steps.len() > self.limits.max_steps || self.bytes > self.limits.max_bytes {
            match self.steps.pop_front() {
                Some((_, len)) => self.bytes -= len,
                None => break,
            }
        }
    }

    pub fn clear(&mut self) {
        self.steps.clear();
        self.bytes = 0;
    }

    /// Steps kept, and their bytes.
    pub fn size(&self) -> (usize, usize) {
        (self.steps.len(), self.bytes)
    }

    /// The chain from `from` to `to` (the version being served), encoded, if the ring holds
    /// every step of it and it is worth serving beside a full snapshot of `full_len` bytes.
    pub fn chain(&self, from: u64, to: u64, full_len: usize) -> Option<Vec<u8>> {
        let start = self.steps.iter().position(|(step, _)| step.from_version == from)?;
        let mut len = 0;
        let mut end = None;
        for (index, (step, step_len)) in self.steps.iter().enumerate().skip(start) {
            len += step_len;
            if step.to_version() == to {
                end = Some(index);
                break;
            }
        }
        let end = end?;
        if len.saturating_mul(self.limits.max_fraction_divisor) > full_len {
            return None;
        }
        let steps: Vec<Delta> = self.steps.range(start..=end).map(|(step, _)| step.clone()).collect();
        let chained = delta::chain(&steps).ok()?;
        Some(chained.encode())
    }
}
