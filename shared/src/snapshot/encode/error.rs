//! What the encoder refuses, and where: the section, the record's index within it, and the
//! problem, which the control plane maps to the rule at fault.

use crate::snapshot::format::Section;
use std::fmt;

/// What is wrong with a record handed to the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeProblem {
    /// The key is lower than the previous record's key in the same section, or equal to it
    /// where that is not allowed (bindings; copied records).
    NotAscending,
    /// The same rule twice: same key and owner (or same SAN rule, constraint, issuer and owner).
    Duplicate,
    /// A record was pushed into a keyed section that precedes one already written.
    SectionOrder,
    /// A string is longer than [`MAX_STRING_LEN`](crate::snapshot::format::MAX_STRING_LEN) bytes.
    StringTooLong,
    /// A string that must name something is empty.
    EmptyString,
    /// A SAN domain contains ASCII uppercase (the reader compares lowercase).
    UppercaseDomain,
    /// More than [`MAX_ORGS`](crate::snapshot::format::MAX_ORGS) distinct orgs.
    TooManyOrgs,
    /// More than [`MAX_ISSUERS`](crate::snapshot::format::MAX_ISSUERS) issuer registrations.
    TooManyIssuers,
    TooManyCas,
    /// A JWKS document is larger than the JWKS parser accepts.
    JwksTooLarge,
    /// More than [`MAX_AUDIENCES`](crate::snapshot::format::MAX_AUDIENCES) audiences, or more
    /// than [`MAX_AUDIENCES_BYTES`](crate::snapshot::format::MAX_AUDIENCES_BYTES) of them.
    AudiencesTooLarge,
    /// A platform principal that would pass for a user's or an org's.
    ReservedPrincipal,
    /// The snapshot would exceed [`MAX_SNAPSHOT_BYTES`](crate::snapshot::format::MAX_SNAPSHOT_BYTES).
    SnapshotTooLarge,
    /// The header's key id is not 16 lowercase hex digits.
    BadKeyId,
    /// `expires_at` is not after `issued_at`.
    BadValidity,
    /// The signature is not 64 bytes.
    BadSignatureLength,
    /// Raw records were pushed into an encoder that does not continue their snapshot, or
    /// their length is not a whole number of records.
    NotContinuing,
}

/// A record the encoder refused: which section, which record (0-based within its section)
/// and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeError {
    pub section: Section,
    pub index: usize,
    pub problem: EncodeProblem,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.problem {
            EncodeProblem::NotAscending => "key is not greater than the previous one",
            EncodeProblem::Duplicate => "the same rule twice for one owner",
            EncodeProblem::SectionOrder => "section written after a later one",
            EncodeProblem::StringTooLong => "string longer than 255 bytes",
            EncodeProblem::EmptyString => "empty string",
            EncodeProblem::UppercaseDomain => "domain is not lowercase",
            EncodeProblem::TooManyOrgs => "more than 16777215 orgs",
            EncodeProblem::TooManyIssuers => "too many issuer registrations",
            EncodeProblem::TooManyCas => "too many certificate authorities",
            EncodeProblem::JwksTooLarge => "JWKS document too large",
            EncodeProblem::AudiencesTooLarge => "too many audiences",
            EncodeProblem::ReservedPrincipal => "a platform principal may not name a user's or an org's",
            EncodeProblem::SnapshotTooLarge => "snapshot larger than the maximum size",
            EncodeProblem::BadKeyId => "key id is not 16 lowercase hex digits",
            EncodeProblem::BadValidity => "expiry is not after issue time",
            EncodeProblem::BadSignatureLength => "signature is not 64 bytes",
            EncodeProblem::NotContinuing => "raw records need an encoder continuing their snapshot",
        };
        write!(f, "snapshot {} record {}: {what}", self.section, self.index)
    }
}

impl std::error::Error for EncodeError {}
