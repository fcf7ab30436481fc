//! certbind integration tests: the compiled filter `.wasm`, run headless under wasmtime.
//!
//! `host` is a proxy-wasm (ABI 0.2.1) host; the path of the filter built by this crate's
//! build script is [`FILTER_WASM`].

pub mod bridge;
pub mod cases;
pub mod host;
pub mod snapshots;
pub mod timing;

/// Absolute path of the filter `.wasm` that `build.rs` compiled for this build.
pub const FILTER_WASM: &str = env!("CERTBIND_FILTER_WASM");

/// The benchmark's baseline guest: the same host calls as the filter, no logic.
pub const PASSTHROUGH_WASM: &str = env!("CERTBIND_PASSTHROUGH_WASM");
