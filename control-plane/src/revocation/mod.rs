//! Revocation from the PKI itself: CRLs verified against the registered CA's key and folded
//! into the serials it has revoked ([`ingest`]), whether an admin uploaded them or the
//! [`poller`] fetched them from the CA's distribution points. The reading and verifying is
//! `certbind_shared::crl`'s; what is held is stored by `crate::db::cas`.

pub mod distribution_point;
pub mod ingest;
pub mod number;
pub mod poller;

pub use ingest::{ingest, CrlSource, IngestError, Ingested};
