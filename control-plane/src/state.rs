//! What every handler shares: the database, the snapshot service, counters, and the limits
//! the service was started with. Handlers import this, and the router (`app`) imports the
//! handlers, so the state lives apart from both.

use crate::db::Db;
use crate::http::counters::Metrics;
use crate::http::fleet::Fleet;
use crate::http::usage::Usage;
use crate::revocation::poller::CrlCounters;
use crate::domain::change::Committed;
use crate::snapshot::SnapshotService;
use certbind_shared::crl::CrlLimits;
use std::sync::Arc;
use std::time::Duration;

/// Default request body cap: a bind by PEM (a few KiB) fits many times over, a JWKS of
/// dozens of RSA keys fits, and a client cannot make the server buffer megabytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest a snapshot long-poll may hold a request, whatever `wait` asks for: below common
/// proxy idle timeouts (60 s), so the poll ends with an answer, not a dropped connection.
pub const DEFAULT_MAX_LONG_POLL: Duration = Duration::from_secs(55);

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_long_poll: Duration,
    /// Caps of one CRL, uploaded or fetched; the CRL upload route's body limit follows them.
    pub crl: CrlLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: DEFAULT_MAX_BODY_BYTES, max_long_poll: DEFAULT_MAX_LONG_POLL, crl: CrlLimits::default() }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub snapshots: Arc<dyn SnapshotService>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<Limits>,
    pub usage: Arc<Usage>,
    /// CRL refusals and fetches, shared with the poller.
    pub crl: Arc<CrlCounters>,
    /// The proxies this replica serves.
    pub fleet: Arc<Fleet>,
}

impl AppState {
    pub fn new(db: Db, snapshots: Arc<dyn SnapshotService>, limits: Limits) -> Self {
        AppState {
            db,
            snapshots,
            metrics: Arc::default(),
            limits: Arc::new(limits),
            usage: Arc::default(),
            crl: Arc::default(),
            fleet: Arc::default(),
        }
    }

    /// Hands a committed change to the snapshot service; returns what the change returns.
    pub fn identity_changed<T>(&self, committed: Committed<T>) -> (T, i64) {
        self.snapshots.committed(committed.version, committed.changes);
        (committed.value, committed.version)
    }
}
