//! The control plane's nouns, known to storage, the snapshot builder and the API alike and to
//! none of their machinery: who owns a rule ([`Owner`]) and what a committed change is
//! ([`change::Change`]). Storage commits changes, the snapshot folds them, the API hands one
//! to the other; so they meet here rather than importing each other.

pub mod card;
pub mod change;
pub mod owner;

pub use change::{CaRecord, Change, Committed};
pub use owner::Owner;
