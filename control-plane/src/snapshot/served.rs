//! What the API needs from the snapshot machinery ([`SnapshotService`]) and what it serves
//! ([`ServedSnapshot`]).

use crate::domain::change::Change;
use axum::body::Bytes;
use std::sync::Arc;
use tokio::sync::watch;

/// A signed snapshot as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedSnapshot {
    pub version: u64,
    /// The encoded, signed bytes.
    pub bytes: Bytes,
}

impl ServedSnapshot {
    /// Strong ETag: the version names the content, since a version is signed once.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// Identity data left out of the snapshot because it cannot be encoded, for `/metrics`:
/// either should stay 0, and an alert on it says a row needs fixing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeftOut {
    /// Changes dropped since start (validation, or the encoder at publication).
    pub rejected_changes: u64,
    /// Rows the last full build quarantined.
    pub quarantined_rows: u64,
}

/// The latest signed snapshot, a way to wait for a newer one, the public keys, and notice of
/// every committed change.
pub trait SnapshotService: Send + Sync + 'static {
    /// The latest signed snapshot, once one has been built.
    fn latest(&self) -> Option<Arc<ServedSnapshot>>;
    /// Watches the version of the latest signed snapshot (0 before the first).
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// The verification keys, as `GET /api/v1/snapshot/keys` serves them.
    fn public_keys(&self) -> serde_json::Value;
    /// `changes` were committed at `version` (what the snapshot log holds for it; a service
    /// that never hears of a version reads it there).
    fn committed(&self, version: i64, changes: Vec<Change>);
    /// A caller holds `version`, newer than the latest here: another replica signed it, so
    /// look for it now rather than at the next periodic check.
    fn served_elsewhere(&self, _version: u64) {}
    /// The delta chain from version `from` to `latest` (the snapshot being served), encoded,
    /// when one is kept and worth serving instead of it.
    fn delta(&self, _from: u64, _latest: &ServedSnapshot) -> Option<Bytes> {
        None
    }
    /// What was left out of the snapshot.
    fn left_out(&self) -> LeftOut {
        LeftOut::default()
    }
}

/// Used where no signer is configured: the admin API works; snapshot routes answer 503.
#[derive(Debug)]
pub struct NoSnapshots {
    version: watch::Sender<u64>,
}

impl Default for NoSnapshots {
    fn default() -> Self {
        NoSnapshots { version: watch::Sender::new(0) }
    }
}

impl SnapshotService for NoSnapshots {
    fn latest(&self) -> Option<Arc<ServedSnapshot>> {
        None
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
    fn public_keys(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [] })
    }
    fn committed(&self, _version: i64, _changes: Vec<Change>) {}
}
