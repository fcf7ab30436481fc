//! Writing a snapshot: the control plane's side of [`super::format`].
//!
//! The encoder streams records into one output buffer in section order, so a million
//! bindings cost one pass and no intermediate copies beyond the string table. Records must
//! arrive sorted strictly ascending by key; the encoder checks, so a snapshot it writes always
//! passes the reader's checks.

use super::format::{
    read_string, read_u32, san_kind_wire_id, write_header, ConstraintKind, Section, SignatureAlgorithm, SnapshotHeader,
    BINDING_ENABLED, BINDING_USER_TEXT, BODY_SECTIONS, HEADER_LEN, MAX_ORGS, MAX_SNAPSHOT_BYTES, MAX_STRING_LEN, SECTION_COUNT,
    SIGNATURE_LEN,
};
use super::view::SnapshotView;
use crate::encoding::ulid_bits;
use crate::fingerprint::Fingerprint;
use crate::identity::SanKind;
use crate::pop::jwks::MAX_JWKS_BYTES;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

/// What is wrong with a record handed to the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeProblem {
    /// The key is not greater than the previous record's key in the same section.
    NotAscending,
    /// A record was pushed into a section that precedes one already written.
    SectionOrder,
    /// A string is longer than [`MAX_STRING_LEN`] bytes.
    StringTooLong,
    /// A string that must name something is empty.
    EmptyString,
    /// A SAN domain contains ASCII uppercase (the reader compares lowercase).
    UppercaseDomain,
    /// More than [`MAX_ORGS`] distinct orgs.
    TooManyOrgs,
    /// A JWKS document is larger than the JWKS parser accepts.
    JwksTooLarge,
    /// The snapshot would exceed [`MAX_SNAPSHOT_BYTES`].
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
            EncodeProblem::NotAscending => "key is not strictly greater than the previous one",
            EncodeProblem::SectionOrder => "section written after a later one",
            EncodeProblem::StringTooLong => "string longer than 255 bytes",
            EncodeProblem::EmptyString => "empty string",
            EncodeProblem::UppercaseDomain => "domain is not lowercase",
            EncodeProblem::TooManyOrgs => "more than 16777216 orgs",
            EncodeProblem::JwksTooLarge => "JWKS document too large",
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

/// Streams records into a snapshot. Push each section's records in ascending key order and
/// the sections in the order bindings, blocklist, revoked, principals, SAN rules,
/// constraints, issuers;
/// then [`SnapshotEncoder::finish`].
pub struct SnapshotEncoder {
    out: Vec<u8>,
    strings: Vec<u8>,
    /// Index into `BODY_SECTIONS` of the section being written.
    current: usize,
    ranges: [Range<usize>; SECTION_COUNT],
    /// Records written into the current section.
    count: usize,
    /// Key of the previous record in the current section.
    previous_key: Vec<u8>,
    org_index: HashMap<String, u32>,
    org_refs: Vec<u32>,
    jwks: Vec<u8>,
    /// Previous constraint, compared as a tuple (a byte concatenation would not order
    /// variable-length org ids the way the reader does).
    previous_constraint: Option<(String, u8, String)>,
    /// Keeps the string and org tables of a previous snapshot as prefixes of its own, so raw
    /// records of that snapshot stay valid here.
    continuing: bool,
}

impl Default for SnapshotEncoder {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl SnapshotEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves room up front so the buffers never grow by doubling (which would briefly need
    /// three times the snapshot's size): `total` for the whole snapshot, `strings` for the
    /// string table.
    pub fn with_capacity(total: usize, strings: usize) -> Self {
        let mut out = Vec::with_capacity(total.clamp(HEADER_LEN + SIGNATURE_LEN, MAX_SNAPSHOT_BYTES));
        out.resize(HEADER_LEN, 0);
        SnapshotEncoder {
            out,
            strings: Vec::with_capacity(strings.min(MAX_SNAPSHOT_BYTES)),
            current: 0,
            ranges: std::array::from_fn(|_| HEADER_LEN..HEADER_LEN),
            count: 0,
            previous_key: Vec::new(),
            org_index: HashMap::new(),
            org_refs: Vec::new(),
            jwks: Vec::new(),
            previous_constraint: None,
            continuing: false,
        }
    }

    /// An encoder whose string table and org table start as copies of `base`'s, so records
    /// of `base` can be copied unchanged with the `push_*_records` methods: a snapshot that
    /// differs from `base` by a few records costs a few `memcpy`s. Strings of records left out
    /// stay behind as garbage until a build from scratch; `extra` reserves room for growth.
    pub fn continuing(base: &SnapshotView, extra: usize) -> Self {
        let strings = base.section_bytes(Section::Strings);
        let mut encoder =
            Self::with_capacity(base.as_bytes().len().saturating_add(extra), strings.len().saturating_add(extra));
        encoder.strings.extend_from_slice(strings);
        for (index, record) in base.section_bytes(Section::Orgs).chunks_exact(4).enumerate() {
            let (Some(reference), Ok(index)) = (read_u32(record, 0), u32::try_from(index)) else { continue };
            if let Some(org) = read_string(strings, reference) {
                encoder.org_index.entry(org.to_owned()).or_insert(index);
            }
            encoder.org_refs.push(reference);
        }
        encoder.continuing = true;
        encoder
    }

    /// Appends whole records of the continued snapshot to a fingerprint-keyed section. Their
    /// order was checked when that snapshot was opened; only the seam with the previous record
    /// is checked here.
    fn push_records(&mut self, section: Section, record_len: usize, records: &[u8]) -> Result<(), EncodeError> {
        self.enter(section)?;
        if records.is_empty() {
            return Ok(());
        }
        if !self.continuing || !records.chunks_exact(record_len).remainder().is_empty() {
            return Err(self.error(EncodeProblem::NotContinuing));
        }
        let first = records.get(..32).ok_or(self.error(EncodeProblem::NotContinuing))?;
        self.check_ascending(first)?;
        let last_start = records.len() - record_len;
        let last = records.get(last_start..last_start + 32).ok_or(self.error(EncodeProblem::NotContinuing))?;
        self.previous_key.clear();
        self.previous_key.extend_from_slice(last);
        self.out.extend_from_slice(records);
        self.count += records.len() / record_len;
        self.check_size()
    }

    /// Unchanged binding records of the continued snapshot.
    pub fn push_binding_records(&mut self, records: &[u8]) -> Result<(), EncodeError> {
        self.push_records(Section::Bindings, super::format::BINDING_RECORD, records)
    }

    pub fn push_blocked_records(&mut self, records: &[u8]) -> Result<(), EncodeError> {
        self.push_records(Section::Blocklist, super::format::FINGERPRINT_RECORD, records)
    }

    pub fn push_revoked_records(&mut self, records: &[u8]) -> Result<(), EncodeError> {
        self.push_records(Section::Revoked, super::format::FINGERPRINT_RECORD, records)
    }

    pub fn push_principal_records(&mut self, records: &[u8]) -> Result<(), EncodeError> {
        self.push_records(Section::Principals, super::format::PRINCIPAL_RECORD, records)
    }

    /// Bytes written so far (header, sections and the pending string table).
    pub fn len(&self) -> usize {
        self.out.len() + self.jwks.len() + self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() <= HEADER_LEN
    }

    fn error(&self, problem: EncodeProblem) -> EncodeError {
        EncodeError {
            section: BODY_SECTIONS.get(self.current).copied().unwrap_or(Section::Strings),
            index: self.count,
            problem,
        }
    }

    /// Moves on to `target`, closing every section before it.
    fn enter(&mut self, target: Section) -> Result<(), EncodeError> {
        let target_index = target.table_index().unwrap_or(SECTION_COUNT);
        if target_index < self.current {
            return Err(EncodeError { section: target, index: 0, problem: EncodeProblem::SectionOrder });
        }
        while self.current < target_index {
            self.close_current();
            self.current += 1;
            self.count = 0;
            self.previous_key.clear();
            self.open_current();
        }
        Ok(())
    }

    fn close_current(&mut self) {
        if let Some(range) = self.ranges.get_mut(self.current) {
            range.end = self.out.len();
        }
    }

    /// Starts the current section; the sections the encoder fills itself are written here.
    fn open_current(&mut self) {
        let start = self.out.len();
        if let Some(range) = self.ranges.get_mut(self.current) {
            *range = start..start;
        }
        match BODY_SECTIONS.get(self.current) {
            Some(Section::Orgs) => {
                for org in &self.org_refs {
                    self.out.extend_from_slice(&org.to_le_bytes());
                }
            }
            Some(Section::Jwks) => self.out.extend_from_slice(&self.jwks),
            _ => {}
        }
    }

    fn check_ascending(&mut self, key: &[u8]) -> Result<(), EncodeError> {
        if self.count > 0 && key <= self.previous_key.as_slice() {
            return Err(self.error(EncodeProblem::NotAscending));
        }
        self.previous_key.clear();
        self.previous_key.extend_from_slice(key);
        Ok(())
    }

    fn check_size(&self) -> Result<(), EncodeError> {
        if self.len() + SIGNATURE_LEN > MAX_SNAPSHOT_BYTES {
            return Err(self.error(EncodeProblem::SnapshotTooLarge));
        }
        Ok(())
    }

    /// Appends `text` to the string table and returns its reference.
    fn add_string(&mut self, text: &str, section: Section) -> Result<u32, EncodeError> {
        let len = u8::try_from(text.len()).map_err(|_| EncodeError {
            section,
            index: self.count,
            problem: EncodeProblem::StringTooLong,
        })?;
        if text.is_empty() {
            return Err(EncodeError { section, index: self.count, problem: EncodeProblem::EmptyString });
        }
        let offset = u32::try_from(self.strings.len()).map_err(|_| EncodeError {
            section,
            index: self.count,
            problem: EncodeProblem::SnapshotTooLarge,
        })?;
        self.strings.push(len);
        self.strings.extend_from_slice(text.as_bytes());
        Ok(offset)
    }

    fn check_string(&self, text: &str) -> Result<(), EncodeError> {
        if text.is_empty() {
            return Err(self.error(EncodeProblem::EmptyString));
        }
        if text.len() > MAX_STRING_LEN {
            return Err(self.error(EncodeProblem::StringTooLong));
        }
        Ok(())
    }

    /// A card binding. Orgs are interned: each distinct org id is stored once; a user id in a
    /// ULID's canonical spelling is stored as its 16 bytes, any other as a string.
    pub fn push_binding(
        &mut self,
        fingerprint: &Fingerprint,
        user_id: &str,
        org_id: &str,
        enabled: bool,
    ) -> Result<(), EncodeError> {
        self.enter(Section::Bindings)?;
        self.check_string(user_id)?;
        self.check_string(org_id)?;
        self.check_ascending(&fingerprint.0)?;
        self.check_size()?;
        let org = match self.org_index.get(org_id) {
            Some(index) => *index,
            None => {
                if self.org_refs.len() >= MAX_ORGS {
                    return Err(self.error(EncodeProblem::TooManyOrgs));
                }
                let index = u32::try_from(self.org_refs.len()).map_err(|_| self.error(EncodeProblem::TooManyOrgs))?;
                let org_ref = self.add_string(org_id, Section::Orgs)?;
                self.org_refs.push(org_ref);
                self.org_index.insert(org_id.to_owned(), index);
                index
            }
        };
        let (user, user_flag) = match ulid_bits(user_id) {
            Some(bits) => (bits, 0),
            None => {
                let mut user = [0u8; 16];
                let reference = self.add_string(user_id, Section::Bindings)?;
                user[..4].copy_from_slice(&reference.to_le_bytes());
                (user, BINDING_USER_TEXT)
            }
        };
        self.out.extend_from_slice(&fingerprint.0);
        self.out.extend_from_slice(&user);
        let org_bytes = org.to_le_bytes();
        self.out.extend_from_slice(org_bytes.get(..3).unwrap_or(&[0, 0, 0]));
        self.out.push(user_flag | if enabled { BINDING_ENABLED } else { 0 });
        self.count += 1;
        Ok(())
    }

    pub fn push_blocked(&mut self, fingerprint: &Fingerprint) -> Result<(), EncodeError> {
        self.enter(Section::Blocklist)?;
        self.check_ascending(&fingerprint.0)?;
        self.check_size()?;
        self.out.extend_from_slice(&fingerprint.0);
        self.count += 1;
        Ok(())
    }

    /// A revoked serial by its [`super::revoked_serial_key`].
    pub fn push_revoked_key(&mut self, key: &[u8; 32]) -> Result<(), EncodeError> {
        self.enter(Section::Revoked)?;
        self.check_ascending(key)?;
        self.check_size()?;
        self.out.extend_from_slice(key);
        self.count += 1;
        Ok(())
    }

    /// An explicit thumbprint → principal mapping.
    pub fn push_principal(&mut self, fingerprint: &Fingerprint, principal: &str) -> Result<(), EncodeError> {
        self.enter(Section::Principals)?;
        self.check_string(principal)?;
        self.check_ascending(&fingerprint.0)?;
        self.check_size()?;
        let principal = self.add_string(principal, Section::Principals)?;
        self.out.extend_from_slice(&fingerprint.0);
        self.out.extend_from_slice(&principal.to_le_bytes());
        self.count += 1;
        Ok(())
    }

    /// A SAN mapping rule; ascending by (kind, domain) with email before UPN.
    pub fn push_san_rule(&mut self, kind: SanKind, domain: &str) -> Result<(), EncodeError> {
        self.enter(Section::SanRules)?;
        self.check_string(domain)?;
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(self.error(EncodeProblem::UppercaseDomain));
        }
        let kind_id = san_kind_wire_id(kind);
        let mut key = Vec::with_capacity(1 + domain.len());
        key.push(kind_id);
        key.extend_from_slice(domain.as_bytes());
        self.check_ascending(&key)?;
        self.check_size()?;
        let domain = self.add_string(domain, Section::SanRules)?;
        self.out.push(kind_id);
        self.out.extend_from_slice(&domain.to_le_bytes());
        self.count += 1;
        Ok(())
    }

    /// An org constraint; ascending by (org id, kind, value).
    pub fn push_constraint(&mut self, org_id: &str, kind: ConstraintKind, value: &str) -> Result<(), EncodeError> {
        self.enter(Section::Constraints)?;
        self.check_string(org_id)?;
        self.check_string(value)?;
        let kind_id = kind.wire_id();
        if let Some((org, k, v)) = &self.previous_constraint {
            if (org.as_bytes(), *k, v.as_bytes()) >= (org_id.as_bytes(), kind_id, value.as_bytes()) {
                return Err(self.error(EncodeProblem::NotAscending));
            }
        }
        self.check_size()?;
        let org = self.add_string(org_id, Section::Constraints)?;
        let value_ref = self.add_string(value, Section::Constraints)?;
        self.out.extend_from_slice(&org.to_le_bytes());
        self.out.push(kind_id);
        self.out.extend_from_slice(&value_ref.to_le_bytes());
        self.previous_constraint = Some((org_id.to_owned(), kind_id, value.to_owned()));
        self.count += 1;
        Ok(())
    }

    /// A trusted token issuer (its exact `iss`) and its JWKS document, ascending by issuer.
    /// The JSON is stored as given; readers parse it once when they open the snapshot.
    pub fn push_issuer(&mut self, issuer: &str, jwks_json: &[u8]) -> Result<(), EncodeError> {
        self.enter(Section::Issuers)?;
        self.check_string(issuer)?;
        if jwks_json.len() > MAX_JWKS_BYTES {
            return Err(self.error(EncodeProblem::JwksTooLarge));
        }
        self.check_ascending(issuer.as_bytes())?;
        self.check_size()?;
        let name = self.add_string(issuer, Section::Issuers)?;
        let offset = u32::try_from(self.jwks.len()).map_err(|_| self.error(EncodeProblem::SnapshotTooLarge))?;
        let len = u32::try_from(jwks_json.len()).map_err(|_| self.error(EncodeProblem::JwksTooLarge))?;
        self.jwks.extend_from_slice(jwks_json);
        self.out.extend_from_slice(&name.to_le_bytes());
        self.out.extend_from_slice(&offset.to_le_bytes());
        self.out.extend_from_slice(&len.to_le_bytes());
        self.count += 1;
        Ok(())
    }

    /// Closes every section and writes the header. The result still needs its signature.
    pub fn finish(mut self, header: &SnapshotHeader) -> Result<UnsignedSnapshot, EncodeError> {
        let header_error = |problem| EncodeError { section: Section::Header, index: 0, problem };
        if !super::format::is_valid_key_id(&header.key_id) {
            return Err(header_error(EncodeProblem::BadKeyId));
        }
        if header.expires_at <= header.issued_at {
            return Err(header_error(EncodeProblem::BadValidity));
        }
        self.enter(Section::Strings)?;
        if self.out.len() + self.strings.len() + SIGNATURE_LEN > MAX_SNAPSHOT_BYTES {
            return Err(EncodeError { section: Section::Strings, index: 0, problem: EncodeProblem::SnapshotTooLarge });
        }
        self.out.extend_from_slice(&self.strings);
        self.close_current();
        write_header(&mut self.out, header, &self.ranges).ok_or(header_error(EncodeProblem::SnapshotTooLarge))?;
        Ok(UnsignedSnapshot { bytes: self.out, algorithm: header.algorithm })
    }
}

/// A snapshot whose signature is still to be made.
pub struct UnsignedSnapshot {
    bytes: Vec<u8>,
    algorithm: SignatureAlgorithm,
}

impl UnsignedSnapshot {
    /// The bytes the signature covers.
    pub fn message(&self) -> &[u8] {
        &self.bytes
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    /// Appends the signature (r ‖ s for ECDSA P-256, 64 bytes for Ed25519).
    pub fn attach_signature(mut self, signature: &[u8]) -> Result<Vec<u8>, EncodeError> {
        if signature.len() != SIGNATURE_LEN {
            return Err(EncodeError {
                section: Section::Signature,
                index: 0,
                problem: EncodeProblem::BadSignatureLength,
            });
        }
        self.bytes.extend_from_slice(signature);
        Ok(self.bytes)
    }
}
