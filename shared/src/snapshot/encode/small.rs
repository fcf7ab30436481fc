//! The small sections — SAN rules, constraints, issuers (with their JWKS and audience blobs)
//! and CAs: pushed in any order, held here, and written sorted when the snapshot is finished,
//! so the bytes do not depend on the order of pushes. The encoder's `push_*` methods check a
//! record here, give it its owner's index, and add it.

use super::error::{EncodeError, EncodeProblem};
use crate::identity::{CertificateAuthority, ConstraintKind, SanKind, CaKey};
use crate::pop::jwks::MAX_JWKS_BYTES;
use crate::snapshot::format::{
    san_kind_wire_id, u24_bytes, Section, CA_CRL_HELD, CA_FAIL_OPEN, CA_RECORD, CA_REQUIRE_FRESH_CRL, MAX_AUDIENCES,
    MAX_AUDIENCES_BYTES, MAX_CAS, MAX_ISSUERS, MAX_STRING_LEN, SECTION_COUNT,
};
use std::ops::Range;

/// A string every record stores must name something and fit the string table's length byte.
pub(super) fn string_len_ok(text: &str) -> Result<(), EncodeProblem> {
    if text.is_empty() {
        return Err(EncodeProblem::EmptyString);
    }
    if text.len() > MAX_STRING_LEN {
        return Err(EncodeProblem::StringTooLong);
    }
    Ok(())
}

fn error_in(section: Section, index: usize, problem: EncodeProblem) -> EncodeError {
    EncodeError { section, index, problem }
}

/// What the small sections hold until [`SnapshotEncoder::finish`].
#[derive(Default)]
pub(super) struct SmallSections {
    san_rules: Vec<SanRuleRow>,
    constraints: Vec<ConstraintRow>,
    issuers: Vec<IssuerRow>,
    cas: Vec<CaRow>,
    /// Bytes the small sections will add, for the size cap.
    pub(super) bytes: usize,
}

struct SanRuleRow {
    kind: u8,
    domain: String,
    issuer_dn: String,
    owner: u32,
}

struct ConstraintRow {
    owner: u32,
    kind: u8,
    value: String,
}

struct CaRow {
    key: CaKey,
    flags: u8,
    valid_until: i64,
    subject_dn: String,
}

struct IssuerRow {
    issuer: String,
    owner: u32,
    audiences: Vec<u8>,
    jwks: Vec<u8>,
}

/// A string's reference in the table being finished (added once, in sorted order).
pub(super) type StringRef<'a> = dyn FnMut(&str, Section, usize) -> Result<u32, EncodeError> + 'a;

impl SmallSections {
    /// `problem` with the index the next record of `section` would have.
    pub(super) fn error(&self, section: Section, problem: EncodeProblem) -> EncodeError {
        let index = match section {
            Section::SanRules => self.san_rules.len(),
            Section::Constraints => self.constraints.len(),
            Section::Cas => self.cas.len(),
            _ => self.issuers.len(),
        };
        error_in(section, index, problem)
    }

    /// A registered CA and the state of its CRL. Any order; one record per key.
    pub(super) fn push_certificate_authority(&mut self, ca: &CertificateAuthority<'_>) -> Result<(), EncodeError> {
        let err = |p| self.error(Section::Cas, p);
        string_len_ok(ca.subject_dn).map_err(err)?;
        if self.cas.len() >= MAX_CAS {
            return Err(err(EncodeProblem::TooManyCas));
        }
        let mut flags = 0;
        if ca.require_fresh_crl {
            flags |= CA_REQUIRE_FRESH_CRL;
        }
        if ca.fail_open {
            flags |= CA_FAIL_OPEN;
        }
        if ca.crl_valid_until.is_some() {
            flags |= CA_CRL_HELD;
        }
        self.bytes += CA_RECORD + 1 + ca.subject_dn.len();
        self.cas.push(CaRow { key: ca.key, flags, valid_until: ca.crl_valid_until.unwrap_or(0), subject_dn: ca.subject_dn.to_owned() });
        Ok(())
    }

    pub(super) fn check_san_rule(&self, domain: &str, issuer_dn: &str) -> Result<(), EncodeError> {
        let err = |p| self.error(Section::SanRules, p);
        string_len_ok(domain).map_err(err)?;
        string_len_ok(issuer_dn).map_err(err)?;
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err(EncodeProblem::UppercaseDomain));
        }
        Ok(())
    }

    /// A SAN rule [`Self::check_san_rule`] accepted, of the owner at index `owner`.
    pub(super) fn add_san_rule(&mut self, kind: SanKind, domain: &str, issuer_dn: &str, owner: u32) {
        self.bytes += 12 + 2 + domain.len() + issuer_dn.len();
        self.san_rules.push(SanRuleRow {
            kind: san_kind_wire_id(kind),
            domain: domain.to_owned(),
            issuer_dn: issuer_dn.to_owned(),
            owner,
        });
    }

    pub(super) fn check_constraint(&self, value: &str) -> Result<(), EncodeError> {
        string_len_ok(value).map_err(|p| self.error(Section::Constraints, p))
    }

    pub(super) fn add_constraint(&mut self, owner: u32, kind: ConstraintKind, value: &str) {
        self.bytes += 8 + 1 + value.len();
        self.constraints.push(ConstraintRow { owner, kind: kind.wire_id(), value: value.to_owned() });
    }

    /// Checks an issuer registration; its audiences as the snapshot stores them (a JSON list).
    pub(super) fn check_issuer<S: AsRef<str>>(&self, issuer: &str, audiences: &[S], jwks_json: &[u8]) -> Result<Vec<u8>, EncodeError> {
        let err = |p| self.error(Section::Issuers, p);
        string_len_ok(issuer).map_err(err)?;
        if jwks_json.len() > MAX_JWKS_BYTES {
            return Err(err(EncodeProblem::JwksTooLarge));
        }
        if self.issuers.len() >= MAX_ISSUERS {
            return Err(err(EncodeProblem::TooManyIssuers));
        }
        if audiences.len() > MAX_AUDIENCES {
            return Err(err(EncodeProblem::AudiencesTooLarge));
        }
        for audience in audiences {
            string_len_ok(audience.as_ref()).map_err(err)?;
        }
        let list: Vec<&str> = audiences.iter().map(AsRef::as_ref).collect();
        let audiences = serde_json::to_vec(&list).map_err(|_| err(EncodeProblem::AudiencesTooLarge))?;
        if audiences.len() > MAX_AUDIENCES_BYTES {
            return Err(err(EncodeProblem::AudiencesTooLarge));
        }
        Ok(audiences)
    }

    /// An issuer [`Self::check_issuer`] accepted, with the audiences it returned.
    pub(super) fn add_issuer(&mut self, issuer: &str, owner: u32, audiences: Vec<u8>, jwks_json: &[u8]) {
        self.bytes += 23 + 1 + issuer.len() + jwks_json.len() + audiences.len();
        self.issuers.push(IssuerRow { issuer: issuer.to_owned(), owner, audiences, jwks: jwks_json.to_vec() });
    }

    /// Writes the small sections sorted, and the issuers' blobs after them; refuses a record
    /// pushed twice.
    pub(super) fn write(
        &mut self,
        out: &mut Vec<u8>,
        ranges: &mut [Range<usize>; SECTION_COUNT],
        string_ref: &mut StringRef<'_>,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        self.san_rules.sort_by(|a, b| {
            (a.kind, a.domain.as_bytes(), a.issuer_dn.as_bytes(), a.owner).cmp(&(
                b.kind,
                b.domain.as_bytes(),
                b.issuer_dn.as_bytes(),
                b.owner,
            ))
        });
        for (i, rule) in self.san_rules.iter().enumerate() {
            if i > 0
                && self.san_rules.get(i - 1).is_some_and(|p| {
                    (p.kind, &p.domain, &p.issuer_dn, p.owner) == (rule.kind, &rule.domain, &rule.issuer_dn, rule.owner)
                })
            {
                return Err(error_in(Section::SanRules, i, EncodeProblem::Duplicate));
            }
            let domain = string_ref(&rule.domain, Section::SanRules, i)?;
            let issuer = string_ref(&rule.issuer_dn, Section::SanRules, i)?;
            out.push(rule.kind);
            out.extend_from_slice(&domain.to_le_bytes());
            out.extend_from_slice(&issuer.to_le_bytes());
            out.extend_from_slice(&u24_bytes(rule.owner));
        }
        ranges[5] = start..out.len();

        let start = out.len();
        self.constraints.sort_by(|a, b| (a.owner, a.kind, a.value.as_bytes()).cmp(&(b.owner, b.kind, b.value.as_bytes())));
        for (i, constraint) in self.constraints.iter().enumerate() {
            if i > 0
                && self
                    .constraints
                    .get(i - 1)
                    .is_some_and(|p| (p.owner, p.kind, &p.value) == (constraint.owner, constraint.kind, &constraint.value))
            {
                return Err(error_in(Section::Constraints, i, EncodeProblem::Duplicate));
            }
            let value = string_ref(&constraint.value, Section::Constraints, i)?;
            out.extend_from_slice(&u24_bytes(constraint.owner));
            out.push(constraint.kind);
            out.extend_from_slice(&value.to_le_bytes());
        }
        ranges[6] = start..out.len();

        let start = out.len();
        self.issuers.sort_by(|a, b| (a.issuer.as_bytes(), a.owner).cmp(&(b.issuer.as_bytes(), b.owner)));
        let mut blobs_len = 0usize;
        for (i, issuer) in self.issuers.iter().enumerate() {
            if i > 0 && self.issuers.get(i - 1).is_some_and(|p| (&p.issuer, p.owner) == (&issuer.issuer, issuer.owner)) {
                return Err(error_in(Section::Issuers, i, EncodeProblem::Duplicate));
            }
            let name = string_ref(&issuer.issuer, Section::Issuers, i)?;
            let too_large = || error_in(Section::Issuers, i, EncodeProblem::SnapshotTooLarge);
            let jwks_at = u32::try_from(blobs_len).map_err(|_| too_large())?;
            let jwks_len = u32::try_from(issuer.jwks.len()).map_err(|_| too_large())?;
            blobs_len += issuer.jwks.len();
            let audiences_at = u32::try_from(blobs_len).map_err(|_| too_large())?;
            let audiences_len = u32::try_from(issuer.audiences.len()).map_err(|_| too_large())?;
            blobs_len += issuer.audiences.len();
            out.extend_from_slice(&name.to_le_bytes());
            out.extend_from_slice(&u24_bytes(issuer.owner));
            for value in [jwks_at, jwks_len, audiences_at, audiences_len] {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        ranges[7] = start..out.len();

        let start = out.len();
        self.cas.sort_by_key(|ca| ca.key);
        for (i, ca) in self.cas.iter().enumerate() {
            if i > 0 && self.cas.get(i - 1).is_some_and(|p| p.key == ca.key) {
                return Err(error_in(Section::Cas, i, EncodeProblem::Duplicate));
            }
            let subject = string_ref(&ca.subject_dn, Section::Cas, i)?;
            out.extend_from_slice(&ca.key.0);
            out.push(ca.flags);
            out.extend_from_slice(&ca.valid_until.to_le_bytes());
            out.extend_from_slice(&subject.to_le_bytes());
        }
        ranges[8] = start..out.len();

        let start = out.len();
        for issuer in &self.issuers {
            out.extend_from_slice(&issuer.jwks);
            out.extend_from_slice(&issuer.audiences);
        }
        ranges[9] = start..out.len();
        Ok(())
    }
}
