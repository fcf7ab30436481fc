//! The control plane's counters, kept apart from `/metrics` (which renders them) so the state
//! that holds them need not import a handler.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use super::auth_failures::AuthFailures;

#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route template, status) → count. Route templates, not paths, keep the label
    /// set bounded whatever clients send.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    pub binds: AtomicU64,
    pub revokes: AtomicU64,
    /// Snapshot answers with a body: delta chains and full snapshots, and their bytes.
    pub deltas_served: AtomicU64,
    pub delta_bytes_served: AtomicU64,
    pub full_snapshots_served: AtomicU64,
    pub full_bytes_served: AtomicU64,
    /// Requests refused for their credential.
    pub auth_failures: AuthFailures,
}

impl Metrics {
    pub(super) fn count(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((method.to_string(), route.to_string(), status)).or_insert(0) += 1;
        }
    }

    /// Every (method, route template, status) counted so far, with its count, in order.
    pub fn request_counts(&self) -> Vec<((String, String, u16), u64)> {
        self.requests.lock().map(|m| m.iter().map(|(k, n)| (k.clone(), *n)).collect()).unwrap_or_default()
    }

    /// Requests counted for one (method, route, status).
    pub fn requests(&self, method: &str, route: &str, status: u16) -> u64 {
        self.requests
            .lock()
            .map(|m| m.get(&(method.to_string(), route.to_string(), status)).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}
