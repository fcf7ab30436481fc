//! The snapshot a worker decides with, and how it stays current.
//!
//! One worker at a time — the holder of a lease in the proxy's shared data — fetches from the
//! control plane: a long-poll with `If-None-Match`, so a change arrives as soon as it is signed
//! and an idle fleet costs one open request per proxy. It verifies what it receives (pinned key,
//! signature, version, expiry, structure) and publishes the verified bytes in shared data under
//! a key named by their version, then moves a small head record to that version with a
//! compare-and-swap. Every other worker reads only the head on each tick (a few bytes) and
//! copies the snapshot once per new version: N workers make one fetch and one verification.
//!
//! A refused snapshot (bad signature, unknown key, older or equal version, expired, malformed)
//! is counted and logged, and the last good one stays in force until it expires; from then on
//! requests that need identity data are refused with 503 until a newer one verifies.
//!
//! Everything here runs behind [`RootHost`], so it is tested natively with a double and through
//! the `.wasm` in the wasmtime host.

use crate::config::{ControlPlane, SnapshotSettings};
use crate::host::HostError;
use certbind_shared::snapshot::{
    InPlaceRefusal, SnapshotError, SnapshotVerifier, SnapshotView, Unapplied, MAX_SNAPSHOT_BYTES,
};
use std::rc::Rc;
use std::sync::Arc;

pub const CONTENT_TYPE_SNAPSHOT: &str = "application/vnd.certbind.snapshot";
pub const CONTENT_TYPE_DELTA: &str = "application/vnd.certbind.snapshot-delta";

/// How long a fetching worker's lease lasts without renewal. It renews on every tick, so
/// only a worker that stopped running (its VM torn down) lets it lapse; another takes over
/// within this time.
pub const LEASE_MS: i64 = 5_000;

/// How long a worker that could not start a fetch stays out of the lease contest.
const LEASE_PAUSE_AFTER_DISPATCH_FAILURE_MS: i64 = 60_000;

/// Longest wait between two failed fetches. Failures back off exponentially from
/// one second with full jitter, so a fleet that lost its control plane does not return in step.
pub const MAX_BACKOFF_MS: i64 = 60_000;

/// A snapshot at least this large is read only after the held one is let go, into the same
/// buffer, so a worker never holds two (wasm memory grows and never shrinks: holding both for
/// a moment would double the VM's memory for good, and a new buffer beside the old one's hole
/// would too). If the new one is refused, the held one is read back from shared data, where it
/// was published. Smaller ones are read beside the held one: safer, and cheap.
pub const RELEASE_FIRST_BYTES: usize = 1 << 20;

/// Snapshots move between the proxy and the VM in pieces of this size (callout bodies are
/// read, and shared data written, a chunk at a time), so nothing but the snapshot buffer
/// itself is ever large.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Margin on top of the long-poll before a fetch counts as lost.
const CALLOUT_MARGIN_MS: u64 = 10_000;

/// Severity of a log line, mapped to the proxy's levels by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// The root-level calls the snapshot machinery makes.
pub trait RootHost {
    /// Milliseconds since the Unix epoch, from the proxy's clock.
    fn now_ms(&self) -> i64;
    /// A shared-data value and its compare-and-swap token; `(None, None)` when absent.
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Writes a shared-data value. `cas`: only if the value is still the one read with that
    /// token. `Ok(false)`: someone wrote in between.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError>;
    /// Starts an HTTP callout; returns its token.
    fn dispatch(&self, upstream: &str, headers: &[(&str, &str)], timeout_ms: u64) -> Result<u32, HostError>;
    fn log(&self, level: Level, message: &str);
    fn random_u64(&self) -> u64;
    fn increment(&self, metric: Option<u32>);
    fn record(&self, metric: Option<u32>, value: u64);
}

/// The body of a fetch's response, read from the proxy only when and as the snapshot
/// machinery decides: after the held snapshot has been let go, a chunk at a time, into the
/// worker's one snapshot buffer (see [`RELEASE_FIRST_BYTES`]).
pub trait ResponseBody {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `len` bytes from `start`; `None` if the proxy cannot hand them over.
    fn read(&self, start: usize, len: usize) -> Option<Vec<u8>>;
}

/// A body read whole, by a host that receives it so (a native fetch, Envoy's callout answer
/// to a dynamic module).
pub struct BodyBytes(pub Vec<u8>);

/// A body a host hands over in chunks, read where they are (Envoy's callout answer to a
/// dynamic module): no copy of the whole body beside the snapshot read from it.
pub struct BodyChunks<'a> {
    chunks: &'a [&'a [u8]],
    len: usize,
}

impl<'a> BodyChunks<'a> {
    pub fn new(chunks: &'a [&'a [u8]]) -> Self {
        BodyChunks { chunks, len: chunks.iter().map(|c| c.len()).sum() }
    }
}

impl ResponseBody for BodyChunks<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, start: usize, len: usize) -> Option<Vec<u8>> {
        let end = start.checked_add(len).filter(|end| *end <= self.len)?;
        let mut out = Vec::with_capacity(len);
        let mut offset = 0;
        for chunk in self.chunks {
            if offset >= end {
                break;
            }
            let next = offset + chunk.len();
            if next > start {
                let from = start.saturating_sub(offset);
                out.extend_from_slice(chunk.get(from..(end - offset).min(chunk.len()))?);
            }
            offset = next;
        }
        Some(out)
    }
}

impl ResponseBody for BodyBytes {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read(&self, start: usize, len: usize) -> Option<Vec<u8>> {
        self.0.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    }
}

/// What came back from a fetch.
pub enum FetchResponse<'a> {
    /// The callout failed: no connection, reset, timeout.
    Failed,
    Answer { status: u32, content_type: Option<String>, body: &'a dyn ResponseBody },
}

/// Metric ids, defined at configuration time. Any may be missing (the host refused to define
/// it); counting is then skipped, never the request.
#[derive(Debug, Clone, Default)]
pub struct SnapshotMetrics {
    pub version: Option<u32>,
    pub age_seconds: Option<u32>,
    pub expires_in_seconds: Option<u32>,
    pub fetches: Option<u32>,
    pub not_modified: Option<u32>,
    pub fetch_failures: Option<u32>,
    pub full_loads: Option<u32>,
    pub deltas_applied: Option<u32>,
    pub adopted_from_shared: Option<u32>,
    pub refused: Vec<(&'static str, u32)>,
}

/// Every refusal kind, as counted (`certbind.snapshot.refused.<kind>`).
pub const REFUSAL_KINDS: [&str; 11] = [
    "too_large",
    "malformed",
    "unsupported_format",
    "unknown_key",
    "bad_signature",
    "rollback",
    "replay",
    "expired",
    "issued_in_future",
    "too_old",
    "unexpected_content_type",
];

impl SnapshotMetrics {
    pub fn define(mut define: impl FnMut(&str, bool) -> Option<u32>) -> Self {
        let gauge = |define: &mut dyn FnMut(&str, bool) -> Option<u32>, name: &str| define(name, true);
        let counter = |define: &mut dyn FnMut(&str, bool) -> Option<u32>, name: &str| define(name, false);
        SnapshotMetrics {
            version: gauge(&mut define, "certbind.snapshot.version"),
            age_seconds: gauge(&mut define, "certbind.snapshot.age_seconds"),
            expires_in_seconds: gauge(&mut define, "certbind.snapshot.expires_in_seconds"),
            fetches: counter(&mut define, "certbind.snapshot.fetches"),
            not_modified: counter(&mut define, "certbind.snapshot.not_modified"),
            fetch_failures: counter(&mut define, "certbind.snapshot.fetch_failures"),
            full_loads: counter(&mut define, "certbind.snapshot.full_loads"),
            deltas_applied: counter(&mut define, "certbind.snapshot.deltas_applied"),
            adopted_from_shared: counter(&mut define, "certbind.snapshot.adopted_from_shared"),
            refused: REFUSAL_KINDS
                .iter()
                .filter_map(|kind| define(&format!("certbind.snapshot.refused.{kind}"), false).map(|id| (*kind, id)))
                .collect(),
        }
    }

    fn refused(&self, kind: &str) -> Option<u32> {
        self.refused.iter().find(|(k, _)| *k == kind).map(|(_, id)| *id)
    }
}

/// The counter a refusal is filed under.
pub fn refusal_kind(error: &SnapshotError) -> &'static str {
    match error {
        SnapshotError::TooLarge { .. } => "too_large",
        SnapshotError::Truncated { .. }
        | SnapshotError::BadMagic
        | SnapshotError::Malformed { .. }
        | SnapshotError::IssuerKeys { .. }
        | SnapshotError::DeltaMalformed { .. }
        | SnapshotError::DeltaBase { .. } => "malformed",
        SnapshotError::UnsupportedFormat { .. } => "unsupported_format",
        SnapshotError::UnknownKey { .. } | SnapshotError::KeyAlgorithmMismatch { .. } => "unknown_key",
        // A section that is not the one the signed header names: as good as a bad signature.
        SnapshotError::BadSignature | SnapshotError::DigestMismatch { .. } | SnapshotError::DeltaLength { .. } => {
            "bad_signature"
        }
        SnapshotError::Rollback { .. } => "rollback",
        SnapshotError::NotNewer { .. } => "replay",
        SnapshotError::Expired { .. } => "expired",
        SnapshotError::IssuedInFuture { .. } => "issued_in_future",
        SnapshotError::TooOld { .. } => "too_old",
    }
}

/// The small record every worker reads on each tick: which version is published, its length,
/// in how many chunks, and — when the fetching worker got it as a delta — the version that
/// delta applies to and its length, so a worker holding that version applies the delta
/// (a few hundred bytes, a few buckets re-hashed) instead of copying the whole snapshot.
const HEAD_MAGIC: [u8; 4] = *b"CBH3";
const HEAD_LEN: usize = 36;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    version: u64,
    len: u64,
    chunks: u32,
    /// 0: no delta published.
    delta_from: u64,
    delta_len: u32,
}

fn encode_head(head: Head) -> [u8; HEAD_LEN] {
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
const MAX_SHARED_DELTA_BYTES: usize = 4 << 20;

fn read_head<H: RootHost>(host: &H, key: &str) -> (Option<Head>, Option<u32>) {
    match host.shared_get(key) {
        Ok((value, cas)) => (value.as_deref().and_then(decode_head), cas),
        Err(_) => (None, None),
    }
}

/// Grows `buffer` (empty) to hold `len` bytes, with an eighth more for the snapshot to grow
/// into before the next reallocation. The old allocation is freed before the new one is made.
fn make_room(buffer: &mut Vec<u8>, len: usize) {
    buffer.clear();
    if buffer.capacity() < len {
        *buffer = Vec::new();
        *buffer = Vec::with_capacity(len.saturating_add(len / 8));
    }
}

/// The lease record: which worker fetches, and until when.
const LEASE_LEN: usize = 16;

fn encode_lease(worker: u64, until_ms: i64) -> [u8; LEASE_LEN] {
    let mut lease = [0u8; LEASE_LEN];
    lease[..8].copy_from_slice(&worker.to_le_bytes());
    lease[8..].copy_from_slice(&until_ms.to_le_bytes());
    lease
}

fn decode_lease(bytes: &[u8]) -> Option<(u64, i64)> {
    if bytes.len() != LEASE_LEN {
        return None;
    }
    let worker = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let until = i64::from_le_bytes(bytes.get(8..)?.try_into().ok()?);
    Some((worker, until))
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    token: u32,
    sent_at_ms: i64,
    asked_for_delta: bool,
}

/// One worker's snapshot and its part in keeping it current.
pub struct SnapshotSource {
    verifier: SnapshotVerifier,
    control_plane: Option<ControlPlane>,
    cluster: Option<Rc<str>>,
    keys: Keys,
    metrics: SnapshotMetrics,
    held: Option<Rc<SnapshotView>>,
    /// The snapshot buffer while no view holds it.
    spare: Vec<u8>,
    /// The last head in shared data whose snapshot was refused.
    refused_head: Option<Head>,
    worker: u64,
    leader: bool,
    in_flight: Option<InFlight>,
    next_fetch_at_ms: i64,
    failures: u32,
    /// After a delta could not be applied, the next fetch asks for the whole snapshot.
    want_full: bool,
    /// A worker that could not dispatch stays out of the lease contest until then.
    lease_pause_until_ms: i64,
    /// Set once the held snapshot's expiry has been logged, cleared when a newer one arrives.
    expiry_logged: bool,
    /// The only source of its process ([`SnapshotSource::alone`]).
    alone: bool,
}

struct Keys {
    lease: String,
    head: String,
    prefix: String,
}

impl Keys {
    fn new(namespace: &str) -> Self {
        Keys {
            lease: format!("certbind.{namespace}.lease"),
            head: format!("certbind.{namespace}.head"),
            prefix: format!("certbind.{namespace}.snapshot."),
        }
    }

    fn chunk(&self, version: u64, index: u32) -> String {
        format!("{}{version}.{index}", self.prefix)
    }

    fn delta(&self, version: u64) -> String {
        format!("{}{version}.delta", self.prefix)
    }
}

impl SnapshotSource {
    pub fn new(settings: SnapshotSettings, metrics: SnapshotMetrics, worker: u64) -> Self {
        SnapshotSource {
            verifier: settings.verifier,
            cluster: settings.control_plane.as_ref().map(|cp| Rc::from(cp.cluster.as_str())),
            control_plane: settings.control_plane,
            keys: Keys::new(&settings.namespace),
            metrics,
            held: None,
            spare: Vec::new(),
            refused_head: None,
            worker,
            leader: false,
            in_flight: None,
            next_fetch_at_ms: 0,
            failures: 0,
            want_full: false,
            lease_pause_until_ms: 0,
            expiry_logged: false,
            alone: false,
        }
    }

    /// The source as the only one of its process, whose workers decide with what it holds
    /// (the dynamic module): it publishes nothing to shared data, where no other worker would
    /// read it, and so never lets go of the held snapshot to read a large one (it could not be
    /// read back). A process then holds its snapshot once, not twice.
    pub fn alone(mut self) -> Self {
        self.alone = true;
        self
    }

    /// The snapshot to decide with at `now` (Unix seconds): `None` before the first one
    /// verifies and once the held one has expired.
    pub fn current(&self, now: i64) -> Option<Rc<SnapshotView>> {
        self.held.as_ref().filter(|view| !view.is_expired(now)).cloned()
    }

    pub fn held_version(&self) -> Option<u64> {
        self.held.as_ref().map(|view| view.version())
    }

    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// The snapshot held, expired or not (the request checks expiry at its own time).
    pub fn held(&self) -> Option<Rc<SnapshotView>> {
        self.held.clone()
    }

    /// The control plane's cluster name, for log lines.
    pub fn cluster(&self) -> Option<Rc<str>> {
        self.cluster.clone()
    }

    /// Verifies a snapshot given in the configuration and holds it. Its refusal is the
    /// configuration's.
    pub fn load_configured<H: RootHost>(&mut self, host: &H, bytes: Vec<u8>) -> Result<(), SnapshotError> {
        let now = host.now_ms().div_euclid(1000);
        let view = self.verifier.verify(bytes, now, self.held_version())?;
        host.increment(self.metrics.full_loads);
        self.publish(host, &view, None);
        self.adopt(host, view);
        Ok(())
    }

    /// Takes up what other workers already published, without contesting the lease: for
    /// configuration time, which runs on threads that may never tick or call out.
    pub fn catch_up<H: RootHost>(&mut self, host: &H) {
        self.follow_shared(host);
    }

    /// Called on every tick of the proxy.
    pub fn on_tick<H: RootHost>(&mut self, host: &H) {
        let now_ms = host.now_ms();
        self.follow_shared(host);
        if self.control_plane.is_some() {
            self.keep_lease(host, now_ms);
            if self.leader {
                self.fetch_if_due(host, now_ms);
            }
        }
        self.report(host, now_ms);
    }

    /// Adopts a newer snapshot another worker published. The bytes were verified by the
    /// worker that published them, so opening them checks the structure, not the signature
    /// again: one verification per proxy, not per worker.
    fn follow_shared<H: RootHost>(&mut self, host: &H) {
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
    fn follow_delta<H: RootHost>(&mut self, host: &H, head: Head) -> bool {
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

    /// An empty buffer with room for `len` bytes. For a large snapshot, the held one is let
    /// go first and its buffer reused (see [`RELEASE_FIRST_BYTES`]).
    fn buffer_for(&mut self, len: usize) -> Vec<u8> {
        let mut buffer = std::mem::take(&mut self.spare);
        if len >= RELEASE_FIRST_BYTES && !self.alone {
            if let Some(bytes) = self.held.take().and_then(|rc| Rc::try_unwrap(rc).ok()).map(|v| v.shared_bytes()) {
                if let Ok(reusable) = Arc::try_unwrap(bytes) {
                    if reusable.capacity() > buffer.capacity() {
                        buffer = reusable;
                    }
                }
            }
        }
        make_room(&mut buffer, len);
        buffer
    }

    fn keep_lease<H: RootHost>(&mut self, host: &H, now_ms: i64) {
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
    fn give_up_lease<H: RootHost>(&mut self, host: &H, now_ms: i64) {
        if let Ok((Some(value), cas)) = host.shared_get(&self.keys.lease) {
            if decode_lease(&value).is_some_and(|(worker, _)| worker == self.worker) {
                let _ = host.shared_set(&self.keys.lease, &encode_lease(self.worker, i64::MIN), cas);
            }
        }
        self.leader = false;
        self.lease_pause_until_ms = now_ms.saturating_add(LEASE_PAUSE_AFTER_DISPATCH_FAILURE_MS);
    }

    fn fetch_if_due<H: RootHost>(&mut self, host: &H, now_ms: i64) {
        let Some(timeout) = self.control_plane.as_ref().map(callout_timeout_ms) else { return };
        if let Some(in_flight) = self.in_flight {
            let limit = i64::try_from(timeout + CALLOUT_MARGIN_MS).unwrap_or(i64::MAX);
            if now_ms.saturating_sub(in_flight.sent_at_ms) < limit {
                return;
            }
            // The proxy answers every callout, so this is a guard, not a path: start over.
            self.in_flight = None;
            self.failed(host, now_ms, "the snapshot fetch never completed");
        }
        if now_ms < self.next_fetch_at_ms {
            return;
        }
        let Some(cp) = self.control_plane.as_ref() else { return };
        let held = self.held_version();
        let asked_for_delta = cp.deltas && held.is_some() && !self.want_full;
        let path = match held {
            Some(version) => format!("{}?after_version={version}&wait={}", cp.path, cp.long_poll_seconds),
            None => format!("{}?wait=0", cp.path),
        };
        let authorization = format!("Bearer {}", cp.credential);
        let etag = held.map(|v| format!("\"{v}\""));
        let accept = if asked_for_delta {
            format!("{CONTENT_TYPE_DELTA}, {CONTENT_TYPE_SNAPSHOT}")
        } else {
            CONTENT_TYPE_SNAPSHOT.to_string()
        };
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "GET"),
            (":path", &path),
            (":authority", &cp.authority),
            ("authorization", &authorization),
            ("accept", &accept),
        ];
        if let Some(etag) = &etag {
            headers.push(("if-none-match", etag));
        }
        let timeout = if held.is_some() { callout_timeout_ms(cp) } else { CALLOUT_MARGIN_MS };
        match host.dispatch(&cp.cluster, &headers, timeout) {
            Ok(token) => {
                host.increment(self.metrics.fetches);
                self.in_flight = Some(InFlight { token, sent_at_ms: now_ms, asked_for_delta });
            }
            Err(e) => {
                // This worker cannot call out (Envoy's main thread, or a cluster this worker
                // does not know): hand the lease over at once rather than hold it idle.
                let cluster = cp.cluster.clone();
                self.give_up_lease(host, now_ms);
                self.failed(host, now_ms, &format!("cannot call the control plane (cluster {cluster:?}): {e}"));
            }
        }
    }

    /// The answer to callout `token`.
    pub fn on_response<H: RootHost>(&mut self, host: &H, token: u32, response: FetchResponse) {
        let Some(in_flight) = self.in_flight.filter(|f| f.token == token) else { return };
        self.in_flight = None;
        let now_ms = host.now_ms();
        match response {
            FetchResponse::Failed => self.failed(host, now_ms, "the snapshot fetch failed (no response)"),
            FetchResponse::Answer { status: 304, .. } => {
                host.increment(self.metrics.not_modified);
                self.succeeded(host, now_ms, in_flight, false);
            }
            FetchResponse::Answer { status: 200, content_type, body } => {
                self.received(host, now_ms, in_flight, content_type.as_deref(), body);
            }
            FetchResponse::Answer { status: status @ (401 | 403), .. } => self.failed(
                host,
                now_ms,
                &format!("the control plane refused the proxy credential ({status}); check snapshot.control_plane.credential or credential_env"),
            ),
            FetchResponse::Answer { status, .. } => {
                self.failed(host, now_ms, &format!("the control plane answered {status}"))
            }
        }
        if self.leader {
            self.fetch_if_due(host, now_ms);
        }
    }

    fn received<H: RootHost>(
        &mut self,
        host: &H,
        now_ms: i64,
        in_flight: InFlight,
        content_type: Option<&str>,
        body: &dyn ResponseBody,
    ) {
        let now = now_ms.div_euclid(1000);
        if body.len() > MAX_SNAPSHOT_BYTES {
            return self.refused(host, now_ms, &SnapshotError::TooLarge { len: body.len(), max: MAX_SNAPSHOT_BYTES });
        }
        let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let held_version = self.held_version();
        let result = match media.as_deref() {
            Some(CONTENT_TYPE_SNAPSHOT) => {
                let mut buffer = self.buffer_for(body.len());
                let released = held_version.is_some() && self.held.is_none();
                if !read_body(body, &mut buffer) {
                    self.spare = buffer;
                    self.restore(host, released, held_version);
                    return self.failed(host, now_ms, "cannot read the snapshot response body");
                }
                // The very snapshot held, sent again (another replica, a retried answer):
                // nothing changed. The same version with other bytes is refused as a replay.
                if self.held.as_ref().is_some_and(|held| held.as_bytes() == buffer.as_slice()) {
                    host.increment(self.metrics.not_modified);
                    return self.succeeded(host, now_ms, in_flight, false);
                }
                let bytes = Arc::new(buffer);
                match self.verifier.verify(Arc::clone(&bytes), now, held_version) {
                    Ok(view) => Ok((view, None)),
                    Err(e) => {
                        let sent = Arc::try_unwrap(bytes).unwrap_or_default();
                        let resent = released
                            && matches!(e, SnapshotError::NotNewer { .. })
                            && held_version.is_some_and(|v| self.published_equals(host, v, &sent));
                        self.spare = sent;
                        self.restore(host, released, held_version);
                        if resent {
                            host.increment(self.metrics.not_modified);
                            return self.succeeded(host, now_ms, in_flight, false);
                        }
                        Err(e)
                    }
                }
            }
            Some(CONTENT_TYPE_DELTA) if in_flight.asked_for_delta => match (held_version, read_all(body)) {
                (Some(from), Some(delta)) => match self.apply_delta(&delta, now) {
                    Ok(view) => Ok((view, Some((from, delta)))),
                    Err(e) => {
                        // Refused after the held buffer was rewritten: read the held one back.
                        self.restore(host, true, held_version);
                        Err(e)
                    }
                },
                (None, _) => Err(SnapshotError::BadMagic),
                (_, None) => return self.failed(host, now_ms, "cannot read the delta response body"),
            },
            _ => {
                host.increment(self.metrics.refused("unexpected_content_type"));
                self.want_full = true;
                return self.failed(
                    host,
                    now_ms,
                    &format!("the control plane answered with content type {content_type:?}"),
                );
            }
        };
        match result {
            Ok((view, delta)) => {
                host.increment(if delta.is_some() { self.metrics.deltas_applied } else { self.metrics.full_loads });
                self.want_full = false;
                self.publish(host, &view, delta.as_ref().map(|(from, d)| (*from, d.as_slice())));
                self.adopt_after(host, view, held_version);
                self.succeeded(host, now_ms, in_flight, true);
            }
            Err(e) => {
                if in_flight.asked_for_delta {
                    self.want_full = true;
                }
                self.refused(host, now_ms, &e);
            }
        }
    }

    /// After a refused snapshot that was read with the held one let go: the held one back,
    /// from shared data (where it was published). Nothing to do if it was not let go.
    fn restore<H: RootHost>(&mut self, host: &H, released: bool, version: Option<u64>) {
        if !released || self.held.is_some() {
            return;
        }
        self.follow_shared(host);
        if self.held_version() < version {
            host.log(
                Level::Error,
                &format!(
                    "certbind: snapshot version {} could not be read back from shared data; no identity data until a newer one verifies",
                    version.unwrap_or(0)
                ),
            );
        }
    }

    fn adopt<H: RootHost>(&mut self, host: &H, view: SnapshotView) {
        let previous = self.held_version();
        self.adopt_after(host, view, previous);
    }

    /// Puts `view` in force in place of version `previous` (which a delta may have consumed).
    fn adopt_after<H: RootHost>(&mut self, host: &H, view: SnapshotView, previous: Option<u64>) {
        host.log(
            Level::Info,
            &format!(
                "certbind: identity snapshot version {} in force ({} bindings, expires at {}; was {})",
                view.version(),
                view.binding_count(),
                view.expires_at(),
                previous.map_or_else(|| "none".to_string(), |v| v.to_string())
            ),
        );
        self.held = Some(Rc::new(view));
        self.expiry_logged = false;
        self.report(host, host.now_ms());
    }

    /// Publishes a verified snapshot for the other workers: its chunks under their version's
    /// keys first, then the head moved to that version by compare-and-swap (never backwards),
    /// then the replaced version's chunks emptied (shared data has no delete).
    fn publish<H: RootHost>(&self, host: &H, view: &SnapshotView, delta: Option<(u64, &[u8])>) {
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
    fn published_equals<H: RootHost>(&self, host: &H, version: u64, bytes: &[u8]) -> bool {
        let (Some(head), _) = read_head(host, &self.keys.head) else { return false };
        if head.version != version || usize::try_from(head.len).ok() != Some(bytes.len()) {
            return false;
        }
        bytes.chunks(CHUNK_BYTES).zip(0u32..).all(|(ours, index)| {
            matches!(host.shared_get(&self.keys.chunk(version, index)), Ok((Some(theirs), _)) if theirs == ours)
        })
    }

    /// A fetch that ended well. After a new snapshot the next poll goes out at once: the
    /// control plane holds it until the next change, so a burst of changes arrives change by
    /// change. After "nothing newer", at least `poll_interval_seconds` separate two fetches, so
    /// a control plane that answers at once (no long-poll) is polled, not hammered.
    fn succeeded<H: RootHost>(&mut self, _host: &H, now_ms: i64, in_flight: InFlight, changed: bool) {
        self.failures = 0;
        let interval = self.control_plane.as_ref().map_or(1_000, |cp| i64::from(cp.poll_interval_seconds) * 1_000);
        self.next_fetch_at_ms =
            if changed { now_ms } else { now_ms.max(in_flight.sent_at_ms.saturating_add(interval)) };
    }

    fn refused<H: RootHost>(&mut self, host: &H, now_ms: i64, error: &SnapshotError) {
        host.increment(self.metrics.refused(refusal_kind(error)));
        host.log(
            Level::Warn,
            &format!(
                "certbind: snapshot refused ({}): {error}; keeping version {}",
                refusal_kind(error),
                self.held_version().map_or_else(|| "none".to_string(), |v| v.to_string())
            ),
        );
        self.back_off(host, now_ms);
    }

    fn failed<H: RootHost>(&mut self, host: &H, now_ms: i64, why: &str) {
        host.increment(self.metrics.fetch_failures);
        // The first failure of a run is worth a warning; the rest would flood the log.
        if self.failures == 0 {
            host.log(Level::Warn, &format!("certbind: {why}; retrying with backoff, keeping the last good snapshot"));
        }
        self.back_off(host, now_ms);
    }

    fn back_off<H: RootHost>(&mut self, host: &H, now_ms: i64) {
        self.failures = self.failures.saturating_add(1);
        let base = (1_000i64 << self.failures.min(6)).min(MAX_BACKOFF_MS);
        // Full jitter over the upper half: spread, but never sooner than half the base.
        let half = base / 2;
        let jitter = i64::try_from(host.random_u64() % u64::try_from(half.max(1)).unwrap_or(1)).unwrap_or(0);
        self.next_fetch_at_ms = now_ms.saturating_add(half + jitter);
    }

    fn report<H: RootHost>(&mut self, host: &H, now_ms: i64) {
        let now = now_ms.div_euclid(1000);
        let Some(view) = &self.held else { return };
        host.record(self.metrics.version, view.version());
        host.record(self.metrics.age_seconds, u64::try_from(now.saturating_sub(view.issued_at())).unwrap_or(0));
        host.record(self.metrics.expires_in_seconds, u64::try_from(view.expires_at().saturating_sub(now)).unwrap_or(0));
        if view.is_expired(now) && !self.expiry_logged {
            self.expiry_logged = true;
            host.log(
                Level::Error,
                &format!(
                    "certbind: identity snapshot version {} expired at {}; refusing requests that need identity data with 503 until a newer one verifies",
                    view.version(),
                    view.expires_at()
                ),
            );
        }
    }
}

/// Appends the whole body to `buffer`, a chunk at a time.
fn read_body(body: &dyn ResponseBody, buffer: &mut Vec<u8>) -> bool {
    let len = body.len();
    let mut start = 0;
    while start < len {
        let want = CHUNK_BYTES.min(len - start);
        match body.read(start, want) {
            Some(chunk) if chunk.len() == want => buffer.extend_from_slice(&chunk),
            _ => return false,
        }
        start += want;
    }
    true
}

fn read_all(body: &dyn ResponseBody) -> Option<Vec<u8>> {
    let mut buffer = Vec::with_capacity(body.len());
    read_body(body, &mut buffer).then_some(buffer)
}

fn callout_timeout_ms(cp: &ControlPlane) -> u64 {
    u64::from(cp.long_poll_seconds) * 1_000 + CALLOUT_MARGIN_MS
}

impl SnapshotSource {
    /// Applies a delta chain to the held snapshot: accepted only if it starts at the held
    /// version and ends in a snapshot whose signed header and digests verify. Ticks and callout
    /// answers run outside any request, so nothing else holds the snapshot and the result is
    /// built in its own buffer: the VM's memory does not grow by a second snapshot (it never
    /// shrinks back). Were a request holding it, the result would be built beside it.
    ///
    /// `Ok`: the new snapshot; the held one is consumed (`self.held` is `None` until the new
    /// one is adopted). `Err`: the held one is still held — except when the signed result
    /// itself is malformed, found only after its buffer was rewritten: that buffer becomes the
    /// spare and the caller restores the held snapshot from shared data.
    fn apply_delta(&mut self, chain: &[u8], now: i64) -> Result<SnapshotView, SnapshotError> {
        let Some(held) = self.held.take() else { return Err(SnapshotError::BadMagic) };
        let held = match Rc::try_unwrap(held) {
            Ok(held) => held,
            Err(shared) => {
                let applied = self.verifier.apply_delta(&shared, chain, now);
                self.held = Some(shared);
                return applied;
            }
        };
        self.verifier.apply_delta_in_place(held, chain, now).map_err(|InPlaceRefusal { error, unapplied }| {
            match unapplied {
                Unapplied::Held(view) => self.held = Some(Rc::new(*view)),
                Unapplied::Spent(buffer) => {
                    if buffer.capacity() > self.spare.capacity() {
                        self.spare = buffer;
                    }
                }
            }
            error
        })
    }
}

/// The proxy's shared data, for a host that is one process with one snapshot source: a map
/// of the source's own thread. The source always holds the lease there, and what it publishes
/// is what it reads back when a large refused snapshot made it let go of the held one.
#[derive(Debug, Default)]
pub struct LocalSharedData {
    values: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
}

impl LocalSharedData {
    /// [`RootHost::shared_get`] over the map.
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.values.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    /// [`RootHost::shared_set`] over the map: `false` when `cas` is not the value's token.
    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut values = self.values.borrow_mut();
        let current = values.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return false;
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        values.insert(key.to_string(), (value.to_vec(), next));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_shared_data_writes_only_over_the_value_it_was_read_with() {
        let data = LocalSharedData::default();
        assert_eq!(data.get("k"), (None, None));
        assert!(data.set("k", b"one", None));
        let (value, cas) = data.get("k");
        assert_eq!(value.as_deref(), Some(&b"one"[..]));
        assert!(data.set("k", b"two", cas));
        // The token read with "one" is spent: a writer that read before "two" loses.
        assert!(!data.set("k", b"three", cas));
        assert_eq!(data.get("k").0.as_deref(), Some(&b"two"[..]));
        // A token for a key that does not exist yet is never current.
        assert!(!data.set("absent", b"x", Some(1)));
    }

    #[test]
    fn a_body_in_chunks_hands_out_the_ranges_a_whole_one_would() {
        let whole = BodyBytes(b"abcdefghij".to_vec());
        let pieces: [&[u8]; 5] = [b"abc", b"", b"d", b"efgh", b"ij"];
        let chunks = BodyChunks::new(&pieces);
        assert_eq!(chunks.len(), 10);
        for start in 0..=11 {
            for len in 0..=11 {
                assert_eq!(chunks.read(start, len), whole.read(start, len), "{start}+{len}");
            }
        }
        assert_eq!(chunks.read(usize::MAX, 2), None);
        assert!(BodyChunks::new(&[]).is_empty());
    }

    #[test]
    fn a_whole_body_hands_out_exactly_the_ranges_it_has() {
        let body = BodyBytes(b"abcdef".to_vec());
        assert_eq!(body.len(), 6);
        assert_eq!(body.read(1, 3).as_deref(), Some(&b"bcd"[..]));
        assert_eq!(body.read(6, 0).as_deref(), Some(&b""[..]));
        assert_eq!(body.read(4, 3), None);
        assert_eq!(body.read(usize::MAX, 2), None);
    }
}
