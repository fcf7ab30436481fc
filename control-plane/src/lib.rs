//! certbind control plane: the `smart_card_links` database, the admin API, and the signed
//! identity snapshots every filter fetches.

// The OpenAPI schemas are one large `serde_json::json!` literal.
#![recursion_limit = "256"]

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod private_files;
pub mod revocation;
pub mod signer;
pub mod snapshot;
pub mod state;
pub mod time;
pub mod tls;
