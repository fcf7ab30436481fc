//! certbind as an Envoy dynamic module (`libcertbind.so`, `dynamic_module_config.name:
//! certbind`): the proxy-wasm filter's request path ([`certbind_filter::http`]) and snapshot
//! machinery ([`certbind_filter::snapshot`]) over Envoy's native ABI instead of a wasm VM.
//!
//! [`abi`] is the ABI, and the only place with `unsafe`; [`shim`] is the rest: configuration,
//! the [`certbind_filter::host::Host`] the request path calls, and the one snapshot per process
//! that every worker decides with.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

// Every hook catches a panic and refuses the request; a build that aborts on panic would take
// Envoy down instead. `cargo build -p certbind-native --profile native` builds it right.
#[cfg(all(panic = "abort", not(test)))]
compile_error!("certbind-native must unwind on panic: build it with `--profile native`, never `--release`");

mod abi;
mod shim;
