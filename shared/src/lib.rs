//! The logic both halves of certbind share: what a client certificate says, where it came
//! from, what the route demands, whether the bearer token is bound to it, and the signed
//! identity snapshot that carries who is who.
//!
//! Everything here is pure: no I/O, no clock, no panics on any input. The filter feeds it
//! bytes from the proxy; the control plane feeds it bytes from its database.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod certificate;
pub mod clock;
pub mod crl;
#[cfg(test)]
mod damage;
pub mod decision;
pub mod encoding;
pub mod fingerprint;
pub mod forwarded_signature;
pub mod identity;
pub mod pairs;
pub mod pop;
pub mod snapshot;
pub mod source;

pub use fingerprint::Fingerprint;
