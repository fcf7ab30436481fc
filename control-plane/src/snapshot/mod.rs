//! Signed identity snapshots: building them from the database's rows and the changes that
//! reach them ([`crate::domain::change`]) ([`builder`]), keeping the latest one and the changes since
//! ([`store`]), and serving them to the API ([`service`], behind [`served::SnapshotService`]).
//! The format and its verification live in `certbind_shared::snapshot`, so the filter checks
//! exactly what is tested here.

pub mod builder;
pub mod content;
pub mod deltas;
pub mod error;
pub mod served;
pub mod service;
pub mod signed;
pub mod store;
pub mod validate;

pub use builder::StreamedBindings;
pub use content::SnapshotContent;
pub use validate::{validate_change, BuildError};
pub use deltas::{DeltaLimits, DeltaRing};
pub use served::{LeftOut, NoSnapshots, ServedSnapshot, SnapshotService};
pub use service::{build_from_database, StoreService};
pub use signed::SignedSnapshot;
pub use error::StoreError;
pub use store::{Applied, SnapshotStore, StoreSettings};

#[cfg(test)]
mod tests;
