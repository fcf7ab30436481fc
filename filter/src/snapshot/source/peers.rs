//! The other workers of the proxy: the contest for the lease that makes one of them the
//! fetcher, and the verified snapshot (with the delta that made it) published in shared data
//! for the rest to follow.

use super::SnapshotSource;
use crate::host::{Level, RootHost};
use crate::snapshot::metrics::refusal_kind;
use crate::snapshot::shared::{
    decode_lease, encode_head, encode_lease, read_head, Head, CHUNK_BYTES, MAX_SHARED_DELTA_BYTES,
};
use certbind_shared::snapshot::SnapshotView;

/// How long a fetching worker's lease lasts without renewal. It renews on every tick, so
/// only a worker that stopped running (its VM torn down) lets it lapse; another takes over
/// within this time.
pub const LEASE_MS: i64 = 5_000;

/// How long a worker that could not start a fetch stays out of the lease contest.
const LEASE_PAUSE_AFTER_DISPATCH_FAILURE_MS: i64 = 60_000;

impl SnapshotSource {
    /// Adopts a newer snapshot another worker published. The bytes were verified by the
    /// worker that published them, so opening them checks the structure, not the signature
    /// again: one verification per proxy, not per worker.
    pub(super) fn follow_shared<H: RootHost>(&mut self, host: &H) {
        // A publish between reading the head and reading its chunks empties them: read again.
        for _ in 0..3 {
            let (Some(head), _) = read_head(host, &self.keys.head) else { return };
            if self.held_version().is_some_and(|held| held >= head.version) || self.refused_head == Some(head) {
                return;
            }
            if head.delta_len > 0 && self.held_version() == Some(head.delta_from) && self.follow_delta(host, head) {
                return;
            }
            let len = usize::try_from(head.len).unwrap_or(usize::MAX);
            let mut buffer = self.buffer_for(len);
            let complete = (0..head.chunks).all(|index| match host.shared_get(&self.keys.chunk(head.version, index)) {
                Ok((Some(chunk), _)) if !chunk.is_empty() && buffer.len() + chunk.len() <= len => {
                    buffer.extend_from_slice(&chunk);
                    true
                }
                _ => false,
            });
            if !complete || buffer.len() != len {
                self.spare = buffer;
                continue;
            }
            // Shared data is shared by every plugin of the proxy with the same vm_id: what is
            // read there is verified like a fetched snapshot (pinned key, signature, digests,
            // version, expiry), never taken on trust.
            let now = host.now_ms().div_euclid(1000);
            let held_version = self.held_version();
            match self.verifier.verify(buffer, now, held_version) {
                Ok(view) if view.version() == head.version => {
                    host.increment(self.metrics.adopted_from_shared);
                    self.adopt(host, view);
                }
                Ok(_) => {}
                Err(e) => {
                    // Not read again until the head changes: a bad head costs one verification.
                    self.refused_head = Some(head);
                    host.increment(self.metrics.refused(refusal_kind(&e)));
                    host.log(
                        Level::Error,
                        &format!("certbind: snapshot {} in shared data refused ({}): {e}", head.version, refusal_kind(&e)),
                    );
                }
            }
            return;
        }
    }

    /// Applies the delta published beside `head` to the held snapshot; false if it is gone
    /// (replaced meanwhile) or refused, so the caller falls back to the whole snapshot.
    pub(super) fn follow_delta<H: RootHost>(&mut self, host: &H, head: Head) -> bool {
        let Some(from) = self.held_version() else { return false };
        let Ok((Some(delta), _)) = host.shared_get(&self.keys.delta(head.version)) else { return false };
        if usize::try_from(head.delta_len).ok() != Some(delta.len()) {
            return false;
        }
        let now = host.now_ms().div_euclid(1000);
        match self.apply_delta(&delta, now) {
            // Verified and newer than the one held, which it may have replaced: in force either
            // way; the caller reads the head's whole snapshot if it is not that one.
            Ok(view) => {
                let published = view.version() == head.version;
                if published {
                    host.increment(self.metrics.adopted_from_shared);
                    host.increment(self.metrics.deltas_applied);
                }
                self.adopt_after(host, view, Some(from));
                published
            }
            // Refused: the held snapshot is still held, unless the signed result itself was
            // malformed after rewriting its buffer; the caller then reads the head's whole one.
            Err(e) => {
                host.increment(self.metrics.refused(refusal_kind(&e)));
                host.log(
                    Level::Warn,
                    &format!("certbind: delta to {} in shared data refused ({}): {e}", head.version, refusal_kind(&e)),
                );
                false
            }
        }
    }

    pub(super) fn keep_lease<H: RootHost>(&mut self, host: &H, now_ms: i64) {
        if now_ms < self.lease_pause_until_ms {
            self.leader = false;
            return;
        }
        let (value, cas) = match host.shared_get(&self.keys.lease) {
            Ok(read) => read,
            Err(_) => {
                self.leader = false;
                return;
            }
        };
        let holder = value.as_deref().and_then(decode_lease);
        let ours_or_free = match holder {
            None => true,
            Some((worker, until)) => worker == self.worker || until < now_ms,
        };
        if !ours_or_free {
            self.leader = false;
            return;
        }
        let lease = encode_lease(self.worker, now_ms.saturating_add(LEASE_MS));
        let was_leader = self.leader;
        self.leader = matches!(host.shared_set(&self.keys.lease, &lease, cas), Ok(true));
        if self.leader && !was_leader {
            host.log(Level::Info, "certbind: this worker fetches the identity snapshot");
        }
    }

    /// Lets the lease lapse now, and stays out of the contest for a while.
    pub(super) fn give_up_lease<H: RootHost>(&mut self, host: &H, now_ms: i64) {
        if let Ok((Some(value), cas)) = host.shared_get(&self.keys.lease) {
            if decode_lease(&value).is_some_and(|(worker, _)| worker == self.worker) {
                let _ = host.shared_set(&self.keys.lease, &encode_lease(self.worker, i64::MIN), cas);
            }
        }
        self.leader = false;
        self.lease_pause_until_ms = now_ms.saturating_add(LEASE_PAUSE_AFTER_DISPATCH_FAILURE_MS);
    }

    /// Publishes a verified snapshot for the other workers: its chunks under their version's
    /// keys first, then the head moved to that version by compare-and-swap (never backwards),
    /// then the replaced version's chunks emptied (shared data has no delete).
    pub(super) fn publish<H: RootHost>(&self, host: &H, view: &SnapshotView, delta: Option<(u64, &[u8])>) {
        if self.alone {
            return;
        }
        let bytes = view.as_bytes();
        let Ok(chunks) = u32::try_from(bytes.len().div_ceil(CHUNK_BYTES)) else { return };
        let delta = delta.filter(|(_, d)| d.len() <= MAX_SHARED_DELTA_BYTES);
        let head = Head {
            version: view.version(),
            len: bytes.len() as u64,
            chunks,
            delta_from: delta.map_or(0, |(from, _)| from),
            delta_len: delta.and_then(|(_, d)| u32::try_from(d.len()).ok()).unwrap_or(0),
        };
        for _ in 0..4 {
            let (published, cas) = read_head(host, &self.keys.head);
            if published.is_some_and(|p| p.version >= head.version) {
                return;
            }
            let written = bytes
                .chunks(CHUNK_BYTES)
                .zip(0u32..)
                .all(|(chunk, index)| matches!(host.shared_set(&self.keys.chunk(head.version, index), chunk, None), Ok(true)))
                && delta.is_none_or(|(_, d)| matches!(host.shared_set(&self.keys.delta(head.version), d, None), Ok(true)));
            if !written {
                host.log(Level::Error, "certbind: cannot publish the snapshot to the other workers");
                return;
            }
            match host.shared_set(&self.keys.head, &encode_head(head), cas) {
                Ok(true) => {
                    if let Some(old) = published {
                        for index in 0..old.chunks {
                            let _ = host.shared_set(&self.keys.chunk(old.version, index), &[], None);
                        }
                        if old.delta_len > 0 {
                            let _ = host.shared_set(&self.keys.delta(old.version), &[], None);
                        }
                    }
                    return;
                }
                Ok(false) => continue,
                Err(_) => return,
            }
        }
    }

    /// Whether `bytes` are exactly what is published as `version`, compared chunk by chunk.
    pub(super) fn published_equals<H: RootHost>(&self, host: &H, version: u64, bytes: &[u8]) -> bool {
        let (Some(head), _) = read_head(host, &self.keys.head) else { return false };
        if head.version != version || usize::try_from(head.len).ok() != Some(bytes.len()) {
            return false;
        }
        bytes.chunks(CHUNK_BYTES).zip(0u32..).all(|(ours, index)| {
            matches!(host.shared_get(&self.keys.chunk(version, index)), Ok((Some(theirs), _)) if theirs == ours)
        })
    }
}
