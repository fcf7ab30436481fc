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

//! The files: [`source`] the state machine (lease, fetch, verify, adopt, publish), [`shared`]
//! the records it keeps in shared data (head, lease, keys), [`metrics`] what it counts, and
//! [`host`] the calls it makes of the proxy.

mod host;
mod metrics;
mod shared;
mod source;

pub use crate::host::{Level, RootHost};
pub use host::{BodyBytes, BodyChunks, FetchResponse, LocalSharedData, ResponseBody};
pub use metrics::{refusal_kind, SnapshotMetrics, REFUSAL_KINDS};
pub use shared::CHUNK_BYTES;
pub use source::{
    SnapshotSource, CONTENT_TYPE_DELTA, CONTENT_TYPE_SNAPSHOT, LEASE_MS, MAX_BACKOFF_MS, RELEASE_FIRST_BYTES,
};
