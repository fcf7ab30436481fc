//! The signed identity snapshot: everything a filter needs to know about who is who, in one
//! compact binary document signed by the control plane's HSM key.
//!
//! - [`format`]: the byte layout (format 4), its digests, and the header reader;
//! - [`encode`]: the writer the control plane uses;
//! - [`keys`]: pinned public keys and key ids;
//! - [`verify`]: [`SnapshotVerifier`], which turns bytes into a [`SnapshotView`] only if they
//!   are authentic, newer than what is held, and current;
//! - [`view`]: [`SnapshotView`], binary searches over the verified bytes, implementing
//!   [`crate::identity::IdentityData`];
//! - [`delta`]: from one snapshot to a later one in a few hundred bytes.

pub mod delta;
pub mod encode;
#[cfg(any(test, feature = "fuzzing"))]
pub mod exercise;
pub mod format;
pub mod keys;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod verify;
pub mod view;

#[cfg(test)]
mod delta_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use encode::{reencode, EncodeError, EncodeProblem, SnapshotEncoder, UnsignedSnapshot};
pub use crate::identity::ConstraintKind;
pub use format::{
    peek_header, revoked_serial_key, Section, SignatureAlgorithm, SnapshotHeader, BINDING_RECORD,
    BLOCKED_RECORD, FINGERPRINT_LEN, MAX_AUDIENCES, MAX_CLOCK_SKEW_SECS, MAX_ISSUERS, MAX_SNAPSHOT_BYTES,
    MAX_STRING_LEN, PRINCIPAL_RECORD, REVOKED_RECORD,
};
pub use keys::{ed25519_spki_der, key_id_of_spki, p256_spki_der, public_key_pem, KeyError, PinnedKey};
pub use delta::{between, chain, Delta, DeltaStep, InPlaceRefusal, SectionEdit, Unapplied};
pub use verify::SnapshotVerifier;
pub use view::{IssuerEntry, SnapshotView};

use std::fmt;

/// Why a snapshot was refused. A filter keeps the snapshot it holds on every one of these;
/// [`SnapshotError::NotNewer`] is the ordinary "nothing changed" answer, not a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Larger than [`MAX_SNAPSHOT_BYTES`]; refused before hashing.
    TooLarge { len: usize, max: usize },
    /// Shorter than a header and a signature.
    Truncated { len: usize },
    /// Does not start with the snapshot magic: not a snapshot at all.
    BadMagic,
    /// A format version this reader does not know.
    UnsupportedFormat { format_version: u16 },
    /// Signed by a key id that is not pinned.
    UnknownKey { key_id: String },
    /// The header's algorithm is not the pinned key's.
    KeyAlgorithmMismatch { key_id: String },
    /// The signature does not verify: some header byte was changed, or another key signed.
    BadSignature,
    /// A section's bytes are not the ones the signed header's digest names.
    DigestMismatch { section: Section },
    /// Older than the snapshot held: a replay or a rollback.
    Rollback { held: u64, offered: u64 },
    /// The same version as the snapshot held.
    NotNewer { version: u64 },
    /// Past its expiry: a frozen control plane must not keep proxies on stale data.
    Expired { expires_at: i64, now: i64 },
    /// Issued longer ago than the verifier's maximum age allows (a replayed old snapshot).
    TooOld { issued_at: i64, max_age_secs: i64, now: i64 },
    /// Issued further in the future than clock skew explains.
    IssuedInFuture { issued_at: i64, now: i64 },
    /// Authentic but structurally wrong; says which section, at which byte, and what.
    Malformed { section: Section, at: usize, problem: &'static str },
    /// An issuer's JWKS does not parse (issuers counted from 0 in issuer order).
    IssuerKeys { issuer_index: usize, problem: String },
    /// A delta chain is malformed: in which step (0-based), at which byte of the chain, what.
    DeltaMalformed { step: usize, at: usize, problem: &'static str },
    /// A delta chain starts from another version than the snapshot held.
    DeltaBase { held: u64, from: u64 },
    /// A delta's result has another length for a section than the signed header gives it.
    DeltaLength { section: Section, expected: usize, built: usize },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::TooLarge { len, max } => write!(f, "snapshot is {len} bytes, more than {max}"),
            SnapshotError::Truncated { len } => {
                write!(f, "snapshot is {len} bytes, too short for a header and signature")
            }
            SnapshotError::BadMagic => f.write_str("not a certbind snapshot (bad magic)"),
            SnapshotError::UnsupportedFormat { format_version } => {
                write!(f, "snapshot format version {format_version} is not supported")
            }
            SnapshotError::UnknownKey { key_id } => write!(f, "snapshot signed by key {key_id}, which is not pinned"),
            SnapshotError::KeyAlgorithmMismatch { key_id } => {
                write!(f, "snapshot names another algorithm than pinned key {key_id} uses")
            }
            SnapshotError::BadSignature => f.write_str("snapshot signature does not verify"),
            SnapshotError::DigestMismatch { section } => {
                write!(f, "snapshot {section} section does not match the signed digest")
            }
            SnapshotError::Rollback { held, offered } => {
                write!(f, "snapshot version {offered} is older than the held version {held}")
            }
            SnapshotError::NotNewer { version } => write!(f, "snapshot version {version} is already held"),
            SnapshotError::Expired { expires_at, now } => write!(f, "snapshot expired at {expires_at} (now {now})"),
            SnapshotError::TooOld { issued_at, max_age_secs, now } => write!(
                f,
                "snapshot issued at {issued_at}, more than the accepted {max_age_secs} s before {now}"
            ),
            SnapshotError::IssuedInFuture { issued_at, now } => {
                write!(f, "snapshot issued at {issued_at}, in the future (now {now})")
            }
            SnapshotError::Malformed { section, at, problem } => {
                write!(f, "snapshot {section} section malformed at byte {at}: {problem}")
            }
            SnapshotError::IssuerKeys { issuer_index, problem } => {
                write!(f, "snapshot issuer {issuer_index} has unusable keys: {problem}")
            }
            SnapshotError::DeltaMalformed { step, at, problem } => {
                write!(f, "delta chain step {step} malformed at byte {at}: {problem}")
            }
            SnapshotError::DeltaBase { held, from } => {
                write!(f, "delta chain starts at version {from}, but version {held} is held")
            }
            SnapshotError::DeltaLength { section, expected, built } => {
                write!(f, "delta builds a {built}-byte {section} section, the signed header says {expected}")
            }
        }
    }
}

impl std::error::Error for SnapshotError {}
