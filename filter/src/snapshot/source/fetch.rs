//! The fetch from the control plane: the long-poll the lease holder keeps open, what its
//! answer is (a snapshot, a delta, nothing newer, a refusal), and the backoff after a failure.

use super::{InFlight, SnapshotSource};
use crate::config::ControlPlane;
use crate::host::{Level, RootHost};
use crate::snapshot::host::{FetchResponse, ResponseBody};
use crate::snapshot::metrics::refusal_kind;
use crate::snapshot::shared::CHUNK_BYTES;
use certbind_shared::snapshot::{SnapshotError, MAX_SNAPSHOT_BYTES};
use std::sync::Arc;

pub const CONTENT_TYPE_SNAPSHOT: &str = "application/vnd.certbind.snapshot";
pub const CONTENT_TYPE_DELTA: &str = "application/vnd.certbind.snapshot-delta";

/// Longest wait between two failed fetches. Failures back off exponentially from
/// one second with full jitter, so a fleet that lost its control plane does not return in step.
pub const MAX_BACKOFF_MS: i64 = 60_000;

/// Margin on top of the long-poll before a fetch counts as lost.
const CALLOUT_MARGIN_MS: u64 = 10_000;

impl SnapshotSource {
    pub(super) fn fetch_if_due<H: RootHost>(&mut self, host: &H, now_ms: i64) {
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

    pub(super) fn received<H: RootHost>(
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

    /// A fetch that ended well. After a new snapshot the next poll goes out at once: the
    /// control plane holds it until the next change, so a burst of changes arrives change by
    /// change. After "nothing newer", at least `poll_interval_seconds` separate two fetches, so
    /// a control plane that answers at once (no long-poll) is polled, not hammered.
    pub(super) fn succeeded<H: RootHost>(&mut self, _host: &H, now_ms: i64, in_flight: InFlight, changed: bool) {
        self.failures = 0;
        let interval = self.control_plane.as_ref().map_or(1_000, |cp| i64::from(cp.poll_interval_seconds) * 1_000);
        self.next_fetch_at_ms =
            if changed { now_ms } else { now_ms.max(in_flight.sent_at_ms.saturating_add(interval)) };
    }

    pub(super) fn refused<H: RootHost>(&mut self, host: &H, now_ms: i64, error: &SnapshotError) {
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

    pub(super) fn failed<H: RootHost>(&mut self, host: &H, now_ms: i64, why: &str) {
        host.increment(self.metrics.fetch_failures);
        // The first failure of a run is worth a warning; the rest would flood the log.
        if self.failures == 0 {
            host.log(Level::Warn, &format!("certbind: {why}; retrying with backoff, keeping the last good snapshot"));
        }
        self.back_off(host, now_ms);
    }

    pub(super) fn back_off<H: RootHost>(&mut self, host: &H, now_ms: i64) {
        self.failures = self.failures.saturating_add(1);
        let base = (1_000i64 << self.failures.min(6)).min(MAX_BACKOFF_MS);
        // Full jitter over the upper half: spread, but never sooner than half the base.
        let half = base / 2;
        let jitter = i64::try_from(host.random_u64() % u64::try_from(half.max(1)).unwrap_or(1)).unwrap_or(0);
        self.next_fetch_at_ms = now_ms.saturating_add(half + jitter);
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
