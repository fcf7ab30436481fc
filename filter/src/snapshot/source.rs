//! One worker's snapshot and the state machine that keeps it current: the lease contest, the
//! long-poll fetch and its backoff, verification, adoption, and publication to the others.

use super::host::{FetchResponse, ResponseBody};
use crate::host::{Level, RootHost};
use super::metrics::{refusal_kind, SnapshotMetrics};
use super::shared::{
    decode_lease, encode_head, encode_lease, read_head, Head, Keys, CHUNK_BYTES, MAX_SHARED_DELTA_BYTES,
};
use crate::config::{ControlPlane, SnapshotSettings};
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

/// Margin on top of the long-poll before a fetch counts as lost.
const CALLOUT_MARGIN_MS: u64 = 10_000;

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

/// Grows `buffer` (empty) to hold `len` bytes, with an eighth more for the snapshot to grow
/// into before the next reallocation. The old allocation is freed before the new one is made.
fn make_room(buffer: &mut Vec<u8>, len: usize) {
    buffer.clear();
    if buffer.capacity() < len {
        *buffer = Vec::new();
        *buffer = Vec::with_capacity(len.saturating_add(len / 8));
    }
}
