//! One worker's snapshot and the state machine that keeps it current: what it holds and how a
//! new one is put in force. The lease contest and publication to the other workers are in
//! [`peers`], the fetch from the control plane and its backoff in [`fetch`].

mod fetch;
mod peers;

pub use fetch::{CONTENT_TYPE_DELTA, CONTENT_TYPE_SNAPSHOT, MAX_BACKOFF_MS};
pub use peers::LEASE_MS;

use super::metrics::SnapshotMetrics;
use super::shared::{Head, Keys};
use crate::config::{ControlPlane, SnapshotSettings};
use crate::host::{Level, RootHost};
use certbind_shared::snapshot::{InPlaceRefusal, SnapshotError, SnapshotVerifier, SnapshotView, Unapplied};
use std::rc::Rc;
use std::sync::Arc;

/// A snapshot at least this large is read only after the held one is let go, into the same
/// buffer, so a worker never holds two (wasm memory grows and never shrinks: holding both for
/// a moment would double the VM's memory for good, and a new buffer beside the old one's hole
/// would too). If the new one is refused, the held one is read back from shared data, where it
/// was published. Smaller ones are read beside the held one: safer, and cheap.
pub const RELEASE_FIRST_BYTES: usize = 1 << 20;

/// The fetch out now.
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
