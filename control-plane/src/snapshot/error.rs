//! What can keep the store from publishing a snapshot: the store's own state, the build, the
//! signer, or the check of what it signed.

use super::validate::BuildError;
use certbind_shared::snapshot::SnapshotError;
use std::fmt;

/// Why a snapshot could not be published.
#[derive(Debug)]
pub enum StoreError {
    /// Nothing has been loaded yet: there is no snapshot to patch.
    NotLoaded,
    /// A load at a version not newer than the one published: it would sign an old version
    /// again.
    StaleLoad {
        loaded: u64,
        published: u64,
    },
    Build(BuildError),
    /// The signer failed (token unreachable, PIN, session…).
    Sign(anyhow::Error),
    /// The signed snapshot does not verify with the signer's own public key: the token
    /// signed with another key or returned a malformed signature.
    SelfCheck(SnapshotError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotLoaded => f.write_str("no snapshot has been loaded yet"),
            StoreError::StaleLoad { loaded, published } => {
                write!(f, "loaded version {loaded} is not newer than the published version {published}")
            }
            StoreError::Build(e) => write!(f, "cannot build the snapshot: {e}"),
            StoreError::Sign(e) => write!(f, "cannot sign the snapshot: {e:#}"),
            StoreError::SelfCheck(e) => write!(f, "the signed snapshot does not verify: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<BuildError> for StoreError {
    fn from(e: BuildError) -> Self {
        StoreError::Build(e)
    }
}
