//! The control plane's nouns and rules, known to storage, the snapshot builder, the API and
//! the command line alike and to none of their machinery: who owns a rule ([`Owner`]), what a
//! committed change is ([`change::Change`]), and what a value must be before it is stored
//! ([`text`], [`binding`], [`certificate`], [`ca`], [`issuer`]; a refusal is an [`Invalid`]).
//! Storage commits changes, the snapshot folds them, the API and the command line check what
//! they are given with the same rules; so they meet here rather than importing each other.

pub mod binding;
pub mod ca;
pub mod card;
pub mod certificate;
pub mod change;
pub mod invalid;
pub mod issuer;
pub mod owner;
pub mod records;
pub mod text;

pub use change::{
    BindingRecord, CaRecord, Change, Committed, ConstraintRecord, IssuerRecord, MappingRecord, RevokedSerialRecord, SanRuleRecord,
};
pub use invalid::{Checked, Invalid};
pub use owner::Owner;
