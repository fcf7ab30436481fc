//! certbind's proxy-wasm filter: thin glue between the proxy and the decision logic in
//! `certbind-shared`. The request path is in [`http`], configuration in [`root`], and every
//! call into the proxy goes through the small [`host::Host`] trait.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod host;
pub mod http;
pub mod metrics;
pub mod root;
pub mod snapshot;

#[cfg(target_arch = "wasm32")]
mod abi;

