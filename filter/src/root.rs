//! The root context: one per worker. It validates the plugin configuration (a refused
//! configuration is refused by the proxy, with a log line naming the member), defines the
//! counters, keeps the identity snapshot current on each tick, and hands each request context
//! the engine and the identity data in force when the request arrives.

use crate::http::IdentityAt;
use crate::snapshot::SnapshotSource;
use certbind_shared::identity::{IdentityData, StaticIdentity};
use certbind_shared::snapshot::SnapshotView;
use std::cell::Cell;
use std::rc::Rc;

/// How often each worker looks at the shared snapshot head, and the fetching worker at its
/// fetch: a change reaches every worker within this much of the fetching one.
pub const TICK_MS: u64 = 200;

/// Where a worker's identity data comes from.
pub enum Identity {
    Snapshot(Box<SnapshotSource>),
    Development(Rc<StaticIdentity>),
}

impl Identity {
    /// What one request decides with: a handle that stays the same for the whole request,
    /// however the worker's snapshot changes meanwhile (old or new, never a mix).
    pub fn for_request<'a>(&self, logged: &'a Cell<bool>) -> RequestIdentity<'a> {
        match self {
            Identity::Development(data) => RequestIdentity::Development(Rc::clone(data)),
            Identity::Snapshot(source) => {
                RequestIdentity::Snapshot { held: source.held(), cluster: source.cluster(), logged }
            }
        }
    }
}

/// The identity data one request holds on to.
pub enum RequestIdentity<'a> {
    Development(Rc<StaticIdentity>),
    Snapshot {
        held: Option<Rc<SnapshotView>>,
        /// The control plane's cluster, for the log line.
        cluster: Option<Rc<str>>,
        /// Whether "no identity data" has been logged since the last snapshot arrived.
        logged: &'a Cell<bool>,
    },
}

impl IdentityAt for RequestIdentity<'_> {
    fn identity_at(&self, now: i64) -> Option<&dyn IdentityData> {
        match self {
            RequestIdentity::Development(data) => Some(data.as_ref()),
            RequestIdentity::Snapshot { held, .. } => {
                held.as_deref().filter(|view| !view.is_expired(now)).map(|view| view as &dyn IdentityData)
            }
        }
    }

    fn note_unavailable(&self, now: i64, log: &dyn Fn(&str)) {
        let RequestIdentity::Snapshot { held, cluster, logged } = self else { return };
        if logged.replace(true) {
            return;
        }
        log(&unavailable_message(now, held.as_deref(), cluster.as_deref()));
    }
}

/// The warning for the first request refused for want of identity data since the last
/// snapshot arrived: why there is none (`held`: the snapshot held, expired).
pub fn unavailable_message(now: i64, held: Option<&SnapshotView>, cluster: Option<&str>) -> String {
    let why = match held {
        Some(view) => format!("snapshot version {} expired at {}", view.version(), view.expires_at()),
        None => match cluster {
            Some(cluster) => format!("no snapshot has verified yet (control plane cluster {cluster:?})"),
            None => "no snapshot has verified".to_string(),
        },
    };
    format!("certbind: no identity data at {now}: {why}; requests that need it are refused with 503 identity_unavailable")
}

