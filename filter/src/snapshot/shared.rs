//! The records the workers of one proxy share: the head (which version is published, in how
//! many chunks, beside which delta), the lease (which worker fetches), and the keys they are
//! kept under. Each is a fixed layout, read back only when it is exactly that layout.

use crate::host::RootHost;
use certbind_shared::snapshot::MAX_SNAPSHOT_BYTES;

/// Snapshots move between the proxy and the VM in pieces of this size (callout bodies are
/// read, and shared data written, a chunk at a time), so nothing but the snapshot buffer
/// itself is ever large.
pub const CHUNK_BYTES: usize = 1 << 20;

/// The small record every worker reads on each tick: which version is published, its length,
/// in how many chunks, and — when the fetching worker got it as a delta — the version that
/// delta applies to and its length, so a worker holding that version applies the delta
/// (a few hundred bytes, a few buckets re-hashed) instead of copying the whole snapshot.
const HEAD_MAGIC: [u8; 4] = *b"CBH3";
const HEAD_LEN: usize = 36;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) version: u64,
    pub(super) len: u64,
    pub(super) chunks: u32,
    /// 0: no delta published.
    pub(super) delta_from: u64,
    pub(super) delta_len: u32,
}

pub(super) fn encode_head(head: Head) -> [u8; HEAD_LEN] {
    let mut bytes = [0u8; HEAD_LEN];
    bytes[..4].copy_from_slice(&HEAD_MAGIC);
    bytes[4..12].copy_from_slice(&head.version.to_le_bytes());
    bytes[12..20].copy_from_slice(&head.len.to_le_bytes());
    bytes[20..24].copy_from_slice(&head.chunks.to_le_bytes());
    bytes[24..32].copy_from_slice(&head.delta_from.to_le_bytes());
    bytes[32..].copy_from_slice(&head.delta_len.to_le_bytes());
    bytes
}

fn decode_head(bytes: &[u8]) -> Option<Head> {
    if bytes.len() != HEAD_LEN || bytes.get(..4) != Some(&HEAD_MAGIC[..]) {
        return None;
    }
    let u64_at = |at: usize| bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let u32_at = |at: usize| bytes.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let (version, len, chunks) = (u64_at(4)?, u64_at(12)?, u32_at(20)?);
    let (delta_from, delta_len) = (u64_at(24)?, u32_at(32)?);
    let whole = usize::try_from(len).ok().filter(|l| *l <= MAX_SNAPSHOT_BYTES)?;
    let chunks_fit = usize::try_from(chunks).ok()? == whole.div_ceil(CHUNK_BYTES);
    let delta_fits = usize::try_from(delta_len).ok()? <= MAX_SHARED_DELTA_BYTES && delta_from < version;
    (chunks_fit && delta_fits).then_some(Head { version, len, chunks, delta_from, delta_len })
}

/// Largest delta published in shared data beside the snapshot: a delta is worth sharing only
/// while it is much smaller than the snapshot; past this the others copy the chunks.
pub(super) const MAX_SHARED_DELTA_BYTES: usize = 4 << 20;

pub(super) fn read_head<H: RootHost>(host: &H, key: &str) -> (Option<Head>, Option<u32>) {
    match host.shared_get(key) {
        Ok((value, cas)) => (value.as_deref().and_then(decode_head), cas),
        Err(_) => (None, None),
    }
}

/// The lease record: which worker fetches, and until when.
const LEASE_LEN: usize = 16;

pub(super) fn encode_lease(worker: u64, until_ms: i64) -> [u8; LEASE_LEN] {
    let mut lease = [0u8; LEASE_LEN];
    lease[..8].copy_from_slice(&worker.to_le_bytes());
    lease[8..].copy_from_slice(&until_ms.to_le_bytes());
    lease
}

pub(super) fn decode_lease(bytes: &[u8]) -> Option<(u64, i64)> {
    if bytes.len() != LEASE_LEN {
        return None;
    }
    let worker = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let until = i64::from_le_bytes(bytes.get(8..)?.try_into().ok()?);
    Some((worker, until))
}

pub(super) struct Keys {
    pub(super) lease: String,
    pub(super) head: String,
    prefix: String,
}

impl Keys {
    pub(super) fn new(namespace: &str) -> Self {
        Keys {
            lease: format!("certbind.{namespace}.lease"),
            head: format!("certbind.{namespace}.head"),
            prefix: format!("certbind.{namespace}.snapshot."),
        }
    }

    pub(super) fn chunk(&self, version: u64, index: u32) -> String {
        format!("{}{version}.{index}", self.prefix)
    }

    pub(super) fn delta(&self, version: u64) -> String {
        format!("{}{version}.delta", self.prefix)
    }
}
