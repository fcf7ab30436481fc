//! What identity data may go into a snapshot: every string within the format's limits, no
//! duplicate, no reserved principal, every JWKS one the filter parses. Checked when a change
//! is committed ([`validate_change`]), so a change the snapshot would refuse is never stored.

use certbind_shared::encoding::ulid_bits;
use certbind_shared::identity::{is_reserved_principal, CaKey};
use certbind_shared::pop::jwks::Jwks;
use certbind_shared::snapshot::{EncodeError, EncodeProblem, SnapshotEncoder, MAX_STRING_LEN};
use certbind_shared::Fingerprint;
use std::fmt;
use crate::domain::change::{
    BindingRecord, Change, ConstraintRecord, IssuerRecord, MappingRecord, RevokedSerialRecord, SanRuleRecord,
};
use crate::domain::Owner;
use super::content::*;

/// Why identity data cannot go into a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// A string is empty or longer than the snapshot's 255-byte limit; names the field.
    BadString { field: &'static str, len: usize },
    /// The same fingerprint bound twice.
    DuplicateBinding { fingerprint: String },
    /// A streamed binding whose fingerprint is not greater than the one before it.
    BindingsOutOfOrder { fingerprint: String },
    /// The same fingerprint mapped to two principals by one owner.
    DuplicatePrincipal { fingerprint: String },
    /// A platform principal in a user's or an org's namespace.
    ReservedPrincipal { principal: String },
    /// The same issuer listed twice by one owner.
    DuplicateIssuer { issuer: String },
    /// An issuer's JWKS does not parse; the filter would refuse the whole snapshot.
    InvalidJwks { issuer: String, problem: String },
    /// The encoder refused a record (an ordering bug, or the size cap).
    Encode(EncodeError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::BadString { field, len } => {
                write!(f, "{field} is {len} bytes; snapshot strings are 1 to {MAX_STRING_LEN} bytes")
            }
            BuildError::DuplicateBinding { fingerprint } => write!(f, "fingerprint {fingerprint} is bound twice"),
            BuildError::BindingsOutOfOrder { fingerprint } => {
                write!(f, "binding {fingerprint} arrived out of ascending fingerprint order")
            }
            BuildError::DuplicatePrincipal { fingerprint } => write!(f, "fingerprint {fingerprint} is mapped twice"),
            BuildError::ReservedPrincipal { principal } => {
                write!(f, "platform principal {principal:?} would name a user or an org")
            }
            BuildError::DuplicateIssuer { issuer } => write!(f, "issuer {issuer:?} is listed twice"),
            BuildError::InvalidJwks { issuer, problem } => write!(f, "issuer {issuer:?}: {problem}"),
            BuildError::Encode(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<EncodeError> for BuildError {
    fn from(e: EncodeError) -> Self {
        BuildError::Encode(e)
    }
}

/// String-table bytes a binding's user id takes: none for a ULID, which the record holds.
pub(super) fn user_string_len(user_id: &str) -> usize {
    if ulid_bits(user_id).is_some() {
        0
    } else {
        user_id.len() + 1
    }
}

pub(super) fn check_string(field: &'static str, text: &str) -> Result<(), BuildError> {
    if text.is_empty() || text.len() > MAX_STRING_LEN {
        return Err(BuildError::BadString { field, len: text.len() });
    }
    Ok(())
}

pub(super) fn check_owner(o: &Owner) -> Result<(), BuildError> {
    match o {
        Owner::Org(org) => check_string("org_id", org),
        Owner::Platform => Ok(()),
    }
}

pub(super) fn check_principal(o: &Owner, principal: &str) -> Result<(), BuildError> {
    check_owner(o)?;
    check_string("principal", principal)?;
    if o.is_platform() && is_reserved_principal(principal) {
        return Err(BuildError::ReservedPrincipal { principal: principal.to_owned() });
    }
    Ok(())
}

pub(super) fn check_jwks(issuer: &str, json: &[u8]) -> Result<(), BuildError> {
    Jwks::parse(json)
        .map(|_| ())
        .map_err(|e| BuildError::InvalidJwks { issuer: issuer.to_owned(), problem: e.to_string() })
}

/// Checks a change the way the encoder and the filter's reader will, so that a change
/// accepted here can never make a later build fail on its own account. The database layer
/// calls this inside the change's transaction (`db::commit_change`), so what cannot be
/// distributed is answered 422 and never stored; the record is also pushed through a scratch
/// encoder, so every per-record limit of the format applies exactly as it will.
pub fn validate_change(change: &Change) -> Result<(), BuildError> {
    check_fields(change)?;
    let mut scratch = SnapshotEncoder::with_capacity(4096, 1024);
    let probe = Fingerprint([0; 32]);
    match change {
        Change::UpsertBinding(BindingRecord { user_id, org_id, enabled, claim, .. }) => {
            scratch.push_binding_claim(&probe, user_id, org_id, *enabled, *claim)?
        }
        Change::MapPrincipal(MappingRecord { owner: o, principal, claim, .. }) => {
            scratch.push_principal_claim(&probe, o.borrowed(), principal, *claim)?
        }
        Change::AddSanRule(SanRuleRecord { kind, domain, issuer_dn, owner: o }) => {
            scratch.push_san_rule(*kind, &domain.to_ascii_lowercase(), issuer_dn, o.borrowed())?
        }
        Change::AddConstraint(ConstraintRecord { owner: o, kind, value }) => scratch.push_constraint(o.borrowed(), *kind, value)?,
        Change::UpsertIssuer(IssuerRecord { issuer, owner: o, audiences, jwks_json }) => {
            scratch.push_issuer(issuer, o.borrowed(), audiences, jwks_json)?
        }
        Change::Block { owner: o, fingerprint } => scratch.push_blocked(fingerprint, o.borrowed())?,
        Change::UpsertCa(ca) => scratch.push_certificate_authority(&CaValue::of(ca).authority(CaKey::of(&ca.key)))?,
        _ => {}
    }
    Ok(())
}

/// The request field a refused change names: the builder's own field names, or the one the
/// encoder's problem is about.
pub fn field_of(change: &Change, error: &BuildError) -> &'static str {
    match error {
        BuildError::BadString { field: "audience", .. } => "audiences",
        BuildError::BadString { field, .. } => field,
        BuildError::ReservedPrincipal { .. } | BuildError::DuplicatePrincipal { .. } => "principal",
        BuildError::InvalidJwks { .. } => "jwks",
        BuildError::Encode(e) => match (change, e.problem) {
            (_, EncodeProblem::JwksTooLarge) => "jwks",
            (_, EncodeProblem::AudiencesTooLarge) => "audiences",
            (Change::UpsertIssuer(_), _) => "issuer",
            (Change::MapPrincipal(_), _) => "principal",
            (Change::AddSanRule(_), EncodeProblem::UppercaseDomain) => "domain",
            (Change::AddSanRule(_), _) => "issuer_dn",
            (Change::AddConstraint(_), _) => "value",
            _ => "body",
        },
        _ => "body",
    }
}

pub(super) fn check_fields(change: &Change) -> Result<(), BuildError> {
    match change {
        Change::UpsertBinding(BindingRecord { user_id, org_id, .. }) => {
            check_string("user_id", user_id)?;
            check_string("org_id", org_id)
        }
        Change::MapPrincipal(MappingRecord { owner, principal, .. }) => check_principal(owner, principal),
        Change::AddSanRule(SanRuleRecord { domain, issuer_dn, owner, .. })
        | Change::RemoveSanRule(SanRuleRecord { domain, issuer_dn, owner, .. }) => {
            check_owner(owner)?;
            check_string("issuer_dn", issuer_dn)?;
            check_string("domain", domain)
        }
        Change::AddConstraint(ConstraintRecord { owner, value, .. }) | Change::RemoveConstraint(ConstraintRecord { owner, value, .. }) => {
            check_owner(owner)?;
            check_string("value", value)
        }
        Change::UpsertIssuer(IssuerRecord { issuer, owner, audiences, jwks_json }) => {
            check_owner(owner)?;
            check_string("issuer", issuer)?;
            for audience in audiences {
                check_string("audience", audience)?;
            }
            check_jwks(issuer, jwks_json)
        }
        Change::RemoveIssuer { issuer, owner } => {
            check_owner(owner)?;
            check_string("issuer", issuer)
        }
        Change::Block { owner, .. }
        | Change::Unblock { owner, .. }
        | Change::RevokeSerial(RevokedSerialRecord { owner, .. })
        | Change::UnrevokeSerial(RevokedSerialRecord { owner, .. })
        | Change::UnmapPrincipal { owner, .. } => check_owner(owner),
        Change::RemoveBinding { .. } => Ok(()),
        Change::UpsertCa(ca) => check_string("subject_dn", &ca.subject_dn),
        Change::CrlRevoke { serials, .. } | Change::CrlUnrevoke { serials, .. } => {
            for serial in serials {
                check_string("serial", serial)?;
            }
            Ok(())
        }
        Change::RemoveCa { .. } => Ok(()),
    }
}
