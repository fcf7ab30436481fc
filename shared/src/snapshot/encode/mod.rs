//! Writing a snapshot: the control plane's side of [`super::format`].
//!
//! The keyed sections (bindings, blocklist, revoked, principals, crl revoked) stream into the
//! one output buffer in that order, so a million bindings cost one pass and no intermediate
//! copy. Their records arrive in ascending key order (fingerprint, revocation key); records of one
//! fingerprint with different owners may come in any order (the encoder orders them by
//! owner, which the caller cannot know: an owner's index is assigned here). The small
//! sections (SAN rules, constraints, issuers, CAs) may be pushed at any time in any order; they
//! are sorted when the snapshot is finished. The encoder checks everything the reader checks,
//! so a snapshot it writes always opens.
//!
//! Orgs are interned: each distinct org id is stored once, and a record names it by index.
//! Output is deterministic: the same pushes give the same bytes.
//!
//! `error` says what the encoder refuses and where; `small` holds the small sections until
//! they are written; `unsigned` holds the finished snapshot the signer signs; `reencode`
//! writes a verified snapshot afresh.

mod error;
mod reencode;
mod small;
mod unsigned;

pub use error::{EncodeError, EncodeProblem};
pub use reencode::reencode;
pub use unsigned::UnsignedSnapshot;
use small::{string_len_ok, SmallSections};

use super::format::{
    bucket_digests, keyed_digest, plain_digest, principal_name_ref, read_string, read_u32, u24_bytes, write_header,
    Section, SnapshotHeader, BINDING_ENABLED, BINDING_RECORD, BINDING_UNVERIFIED, BINDING_USER_TEXT, BLOCKED_RECORD,
    BODY_SECTIONS, BODY_START, CA_RECORD, CA_SUBJECT_AT, CRL_REVOKED_RECORD, DIGEST_LEN, FINGERPRINT_LEN, KEYED_COUNT,
    KEYED_SECTIONS, MAX_ORGS, MAX_SNAPSHOT_BYTES, PLATFORM_OWNER, PRINCIPAL_RECORD, PRINCIPAL_UNVERIFIED, REVOKED_RECORD,
    SECTION_COUNT, SIGNATURE_LEN,
};
use super::view::SnapshotView;
use crate::encoding::ulid_bits;
use crate::fingerprint::Fingerprint;
use crate::identity::{is_reserved_principal, CertificateAuthority, Claim, ConstraintKind, Owner, SanKind, CA_KEY_LEN};
use std::collections::HashMap;
use std::ops::Range;

/// A record of the current fingerprint in an owned keyed section, held until the next
/// fingerprint so the run can be ordered by owner.
struct PendingOwned {
    owner: u32,
    principal: Option<String>,
    claim: Claim,
}

/// Streams records into a snapshot; see the module documentation for the order rules. Then
/// [`SnapshotEncoder::finish`].
pub struct SnapshotEncoder {
    out: Vec<u8>,
    strings: Vec<u8>,
    /// Index into [`KEYED_SECTIONS`] of the section being written; [`KEYED_COUNT`] once they
    /// are closed.
    current: usize,
    keyed: [Range<usize>; KEYED_COUNT],
    /// Records written (or pending) in the current keyed section.
    count: usize,
    /// Key of the previous record in the current keyed section (a 16-byte key zero-padded).
    previous: Option<[u8; FINGERPRINT_LEN]>,
    /// Whether `pending` holds the records of `previous` (typed pushes), so that another
    /// owner of it may still come.
    pending_open: bool,
    pending: Vec<PendingOwned>,
    org_index: HashMap<String, u32>,
    /// String refs of the orgs already in the string table (a continued snapshot's).
    org_refs: Vec<u32>,
    /// Orgs interned here, in index order after `org_refs`; their strings go last.
    new_orgs: Vec<String>,
    /// SAN rules, constraints, issuers and CAs, written when the snapshot is finished.
    small: SmallSections,
    /// Strings of principals and of the small sections, each stored once: a continued
    /// snapshot's are reused, so records that did not change keep their bytes (and a delta
    /// leaves them out).
    shared_strings: HashMap<String, u32>,
    continuing: bool,
}

impl Default for SnapshotEncoder {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

/// The reference of `text` in `shared`, or of a new entry for it.
fn shared_string(strings: &mut Vec<u8>, shared: &mut HashMap<String, u32>, text: &str) -> Result<u32, EncodeProblem> {
    if let Some(reference) = shared.get(text) {
        return Ok(*reference);
    }
    let reference = append_string(strings, text)?;
    shared.insert(text.to_owned(), reference);
    Ok(reference)
}

/// The width of the key a keyed section's records are ordered by: the fingerprint (owned
/// sections order a fingerprint's run by owner themselves), or the revocation key.
fn lead_key_len(section: Section) -> usize {
    if section == Section::CrlRevoked { CA_KEY_LEN } else { FINGERPRINT_LEN }
}

/// A key as the encoder remembers it: shorter keys zero-padded, which keeps their order.
fn padded_key(key: &[u8]) -> [u8; FINGERPRINT_LEN] {
    let mut out = [0u8; FINGERPRINT_LEN];
    let len = key.len().min(FINGERPRINT_LEN);
    out[..len].copy_from_slice(&key[..len]);
    out
}

/// Appends `text` to a string table and returns its reference.
fn append_string(strings: &mut Vec<u8>, text: &str) -> Result<u32, EncodeProblem> {
    string_len_ok(text)?;
    let len = u8::try_from(text.len()).map_err(|_| EncodeProblem::StringTooLong)?;
    let offset = u32::try_from(strings.len()).map_err(|_| EncodeProblem::SnapshotTooLarge)?;
    strings.push(len);
    strings.extend_from_slice(text.as_bytes());
    Ok(offset)
}

impl SnapshotEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves room up front so the buffers never grow by doubling (which would briefly need
    /// three times the snapshot's size): `total` for the whole snapshot, `strings` for the
    /// string table.
    pub fn with_capacity(total: usize, strings: usize) -> Self {
        let mut out = Vec::with_capacity(total.clamp(BODY_START, MAX_SNAPSHOT_BYTES));
        out.resize(BODY_START, 0);
        SnapshotEncoder {
            out,
            strings: Vec::with_capacity(strings.min(MAX_SNAPSHOT_BYTES)),
            current: 0,
            keyed: std::array::from_fn(|_| BODY_START..BODY_START),
            count: 0,
            previous: None,
            pending_open: false,
            pending: Vec::new(),
            org_index: HashMap::new(),
            org_refs: Vec::new(),
            new_orgs: Vec::new(),
            small: SmallSections::default(),
            shared_strings: HashMap::new(),
            continuing: false,
        }
    }

    /// An encoder whose string table and orgs table start as copies of `base`'s, so records
    /// of `base` can be copied unchanged with the `push_*_records` methods, and a delta from
    /// `base` to the result only appends to those tables. Strings of records left out stay
    /// behind as garbage until a build from scratch; `extra` reserves room for growth.
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
        // The strings principals and the small sections refer to, by their refs.
        let refs_at: [(Section, usize, &[usize]); 5] = [
            (Section::Principals, super::format::PRINCIPAL_RECORD, &[super::format::OWNED_KEY_LEN]),
            (Section::SanRules, super::format::SAN_RULE_RECORD, &[1, 5]),
            (Section::Constraints, super::format::CONSTRAINT_RECORD, &[4]),
            (Section::Issuers, super::format::ISSUER_RECORD, &[0]),
            (Section::Cas, CA_RECORD, &[CA_SUBJECT_AT]),
        ];
        for (section, record_len, offsets) in refs_at {
            for record in base.section_bytes(section).chunks_exact(record_len) {
                for offset in offsets {
                    let reference = match section {
                        Section::Principals => principal_name_ref(record).map(|(reference, _)| reference),
                        _ => read_u32(record, *offset),
                    };
                    let Some(reference) = reference else { continue };
                    if let Some(text) = read_string(strings, reference) {
                        encoder.shared_strings.entry(text.to_owned()).or_insert(reference);
                    }
                }
            }
        }
        encoder.continuing = true;
        encoder
    }

    /// Bytes written so far (header, records and the pending tables).
    pub fn len(&self) -> usize {
        self.out.len() + self.strings.len() + self.small.bytes + self.pending.len() * PRINCIPAL_RECORD
    }

    pub fn is_empty(&self) -> bool {
        self.len() <= BODY_START
    }

    fn current_section(&self) -> Section {
        KEYED_SECTIONS.get(self.current).copied().unwrap_or(Section::Issuers)
    }

    fn error(&self, problem: EncodeProblem) -> EncodeError {
        EncodeError { section: self.current_section(), index: self.count, problem }
    }

    fn error_in(section: Section, index: usize, problem: EncodeProblem) -> EncodeError {
        EncodeError { section, index, problem }
    }

    fn check_size(&self) -> Result<(), EncodeError> {
        if self.len() + SIGNATURE_LEN > MAX_SNAPSHOT_BYTES {
            return Err(self.error(EncodeProblem::SnapshotTooLarge));
        }
        Ok(())
    }

    /// Moves on to the keyed section `target`, closing every one before it.
    fn enter(&mut self, target: Section) -> Result<(), EncodeError> {
        let target_index = target.keyed_index().unwrap_or(KEYED_SECTIONS.len());
        if target_index < self.current {
            return Err(Self::error_in(target, 0, EncodeProblem::SectionOrder));
        }
        while self.current < target_index {
            self.flush_pending()?;
            if let Some(range) = self.keyed.get_mut(self.current) {
                range.end = self.out.len();
            }
            self.current += 1;
            self.count = 0;
            self.previous = None;
            let start = self.out.len();
            if let Some(range) = self.keyed.get_mut(self.current) {
                *range = start..start;
            }
        }
        Ok(())
    }

    /// The index of `org_id`, interning it.
    fn intern(&mut self, org_id: &str) -> Result<u32, EncodeProblem> {
        if let Some(index) = self.org_index.get(org_id) {
            return Ok(*index);
        }
        string_len_ok(org_id)?;
        let count = self.org_refs.len() + self.new_orgs.len();
        if count >= MAX_ORGS {
            return Err(EncodeProblem::TooManyOrgs);
        }
        let index = u32::try_from(count).map_err(|_| EncodeProblem::TooManyOrgs)?;
        self.new_orgs.push(org_id.to_owned());
        self.org_index.insert(org_id.to_owned(), index);
        self.small.bytes += 5 + org_id.len();
        Ok(index)
    }

    fn owner_index(&mut self, owner: Owner<&str>) -> Result<u32, EncodeProblem> {
        match owner {
            Owner::Platform => Ok(PLATFORM_OWNER),
            Owner::Org(org) => self.intern(org),
        }
    }

    /// Declares an org ahead of the rules that name it, fixing its index: orgs are otherwise
    /// numbered in the order they are first named. Re-encoding a decoded snapshot declares its
    /// orgs first, in their order, to get the same bytes.
    pub fn push_org(&mut self, org_id: &str) -> Result<(), EncodeError> {
        self.intern(org_id).map(|_| ()).map_err(|p| Self::error_in(Section::Orgs, 0, p))
    }

    /// Writes the records held for the current fingerprint, ordered by owner.
    fn flush_pending(&mut self) -> Result<(), EncodeError> {
        self.pending_open = false;
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(key) = self.previous else {
            self.pending.clear();
            return Ok(());
        };
        let section = self.current_section();
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|p| u24_bytes(p.owner));
        let first_index = self.count - pending.len();
        for (i, record) in pending.iter().enumerate() {
            self.out.extend_from_slice(&key);
            self.out.extend_from_slice(&u24_bytes(record.owner));
            if let Some(principal) = &record.principal {
                let reference = shared_string(&mut self.strings, &mut self.shared_strings, principal)
                    .map_err(|p| Self::error_in(section, first_index + i, p))?;
                let flag = if record.claim.is_verified() { 0 } else { PRINCIPAL_UNVERIFIED };
                self.out.extend_from_slice(&(reference | flag).to_le_bytes());
            }
        }
        pending.clear();
        self.pending = pending;
        Ok(())
    }

    /// Starts or extends the run of records of `key` in an owned keyed section.
    fn push_owned(
        &mut self,
        section: Section,
        key: &[u8; 32],
        owner: Owner<&str>,
        principal: Option<(&str, Claim)>,
    ) -> Result<(), EncodeError> {
        self.enter(section)?;
        match self.previous {
            Some(previous) if previous.as_slice() > key.as_slice() => return Err(self.error(EncodeProblem::NotAscending)),
            Some(previous) if previous == *key && !self.pending_open => {
                return Err(self.error(EncodeProblem::NotAscending));
            }
            Some(previous) if previous == *key => {}
            _ => {
                self.flush_pending()?;
                self.previous = Some(*key);
                self.pending_open = true;
            }
        }
        let owner = self.owner_index(owner).map_err(|p| self.error(p))?;
        if self.pending.iter().any(|p| p.owner == owner) {
            return Err(self.error(EncodeProblem::Duplicate));
        }
        let claim = principal.map_or(Claim::Verified, |(_, claim)| claim);
        self.pending.push(PendingOwned { owner, principal: principal.map(|(name, _)| name.to_owned()), claim });
        self.count += 1;
        self.check_size()
    }

    /// Appends whole records of the continued snapshot to a keyed section. Their order was
    /// checked when that snapshot was opened; only the seam with the previous record is
    /// checked here, and a fingerprint's records come either all copied or all pushed.
    fn push_records(&mut self, section: Section, record_len: usize, records: &[u8]) -> Result<(), EncodeError> {
        self.enter(section)?;
        if records.is_empty() {
            return Ok(());
        }
        if !self.continuing || !records.chunks_exact(record_len).remainder().is_empty() {
            return Err(self.error(EncodeProblem::NotContinuing));
        }
        self.flush_pending()?;
        let lead = lead_key_len(section);
        let first = records.get(..lead).map(padded_key).ok_or(self.error(EncodeProblem::NotContinuing))?;
        if self.previous.is_some_and(|p| p >= first) {
            return Err(self.error(EncodeProblem::NotAscending));
        }
        let last_start = records.len() - record_len;
        let last = records
            .get(last_start..last_start + lead)
            .map(padded_key)
            .ok_or(self.error(EncodeProblem::NotContinuing))?;
        self.previous = Some(last);
        self.out.extend_from_slice(records);
        self.count += records.len() / record_len;
        self.check_size()
    }

    /// Unchanged binding records of the continued snapshot.
    pub fn push_binding_records(&mut self, records: &[u8]) -> Result<(), EncodeError> {
        self.push_records(Section::Bindings, BINDING_RECORD, records)
    }

    /// Unchanged blocklist records of the continued snapshot.
    pub fn push_blocked_records(&mut self, records: &[u8]) -> Result<(), EncodeError> {
        self.push_records(Section::Blocklist, BLOCKED_RECORD, records)
    }

    /// Unchanged revoked records of the continued snapshot.
    pub fn push_revoked_records(&mut self, records: &[u8]) -> Result<(), EncodeError> {
        self.push_records(Section::Revoked, REVOKED_RECORD, records)
    }

    /// Unchanged principal records of the continued snapshot.
    pub fn push_principal_records(&mut self, records: &[u8]) -> Result<(), EncodeError> {
        self.push_records(Section::Principals, PRINCIPAL_RECORD, records)
    }

    /// Unchanged CRL revocation records of the continued snapshot.
    pub fn push_crl_revoked_records(&mut self, records: &[u8]) -> Result<(), EncodeError> {
        self.push_records(Section::CrlRevoked, CRL_REVOKED_RECORD, records)
    }

    /// A serial a CA's verified CRL lists, by its [`CaKey::revocation_key`]; keys strictly
    /// ascending. It belongs to no owner: it is a fact about the CA.
    pub fn push_crl_revoked_key(&mut self, key: &[u8; CA_KEY_LEN]) -> Result<(), EncodeError> {
        self.enter(Section::CrlRevoked)?;
        let padded = padded_key(key);
        if self.previous.is_some_and(|p| p >= padded) {
            return Err(self.error(EncodeProblem::NotAscending));
        }
        self.previous = Some(padded);
        self.out.extend_from_slice(key);
        self.count += 1;
        self.check_size()
    }

    /// A verified card binding of the org `org_id` ([`Self::push_binding_claim`]).
    pub fn push_binding(&mut self, fingerprint: &Fingerprint, user_id: &str, org_id: &str, enabled: bool) -> Result<(), EncodeError> {
        self.push_binding_claim(fingerprint, user_id, org_id, enabled, Claim::Verified)
    }

    /// A card binding of the org `org_id`, fingerprints strictly ascending. A user id in a
    /// ULID's canonical spelling is stored as its 16 bytes, any other as a string.
    pub fn push_binding_claim(
        &mut self,
        fingerprint: &Fingerprint,
        user_id: &str,
        org_id: &str,
        enabled: bool,
        claim: Claim,
    ) -> Result<(), EncodeError> {
        self.enter(Section::Bindings)?;
        string_len_ok(user_id).map_err(|p| self.error(p))?;
        if self.previous.is_some_and(|p| p >= fingerprint.0) {
            return Err(self.error(EncodeProblem::NotAscending));
        }
        self.check_size()?;
        let org = self.intern(org_id).map_err(|p| self.error(p))?;
        let (user, user_flag) = match ulid_bits(user_id) {
            Some(bits) => (bits, 0),
            None => {
                let mut user = [0u8; 16];
                let reference = append_string(&mut self.strings, user_id).map_err(|p| self.error(p))?;
                user[..4].copy_from_slice(&reference.to_le_bytes());
                (user, BINDING_USER_TEXT)
            }
        };
        self.previous = Some(fingerprint.0);
        self.out.extend_from_slice(&fingerprint.0);
        self.out.extend_from_slice(&user);
        self.out.extend_from_slice(&u24_bytes(org));
        let claim_flag = if claim.is_verified() { 0 } else { BINDING_UNVERIFIED };
        self.out.push(user_flag | claim_flag | if enabled { BINDING_ENABLED } else { 0 });
        self.count += 1;
        Ok(())
    }

    /// A blocklist entry of `owner`; fingerprints ascending (one fingerprint may be blocked
    /// by several owners, pushed one after another in any order).
    pub fn push_blocked(&mut self, fingerprint: &Fingerprint, owner: Owner<&str>) -> Result<(), EncodeError> {
        self.push_owned(Section::Blocklist, &fingerprint.0, owner, None)
    }

    /// A revoked serial of `owner` by its [`super::revoked_serial_key`]; keys ascending.
    pub fn push_revoked_key(&mut self, key: &[u8; 32], owner: Owner<&str>) -> Result<(), EncodeError> {
        self.push_owned(Section::Revoked, key, owner, None)
    }

    /// `owner`'s thumbprint → principal mapping; fingerprints ascending. `name` is as the
    /// owner wrote it: the filter composes an org's into the org's namespace; a platform name
    /// may not start with `auth:account:user:` or `auth:account:org:`.
    pub fn push_principal(&mut self, fingerprint: &Fingerprint, owner: Owner<&str>, name: &str) -> Result<(), EncodeError> {
        self.push_principal_claim(fingerprint, owner, name, Claim::Verified)
    }

    /// [`Self::push_principal`], with what the mapping rests on.
    pub fn push_principal_claim(
        &mut self,
        fingerprint: &Fingerprint,
        owner: Owner<&str>,
        name: &str,
        claim: Claim,
    ) -> Result<(), EncodeError> {
        self.enter(Section::Principals)?;
        string_len_ok(name).map_err(|p| self.error(p))?;
        if owner == Owner::Platform && is_reserved_principal(name) {
            return Err(self.error(EncodeProblem::ReservedPrincipal));
        }
        // The platform's mappings claim nothing: never flagged.
        let claim = if owner == Owner::Platform { Claim::Verified } else { claim };
        self.push_owned(Section::Principals, &fingerprint.0, owner, Some((name, claim)))
    }

    /// A registered CA and the state of its CRL. Any order; one record per key.
    pub fn push_certificate_authority(&mut self, ca: &CertificateAuthority<'_>) -> Result<(), EncodeError> {
        self.small.push_certificate_authority(ca)?;
        self.check_size()
    }

    /// `owner`'s SAN mapping rule: a SAN of `kind` in `domain` (lowercase) names a principal
    /// when the certificate's issuer is `issuer_dn` (RFC 4514, as the filter spells it). Any
    /// order.
    pub fn push_san_rule(&mut self, kind: SanKind, domain: &str, issuer_dn: &str, owner: Owner<&str>) -> Result<(), EncodeError> {
        self.small.check_san_rule(domain, issuer_dn)?;
        let owner = self.owner_index(owner).map_err(|p| self.small.error(Section::SanRules, p))?;
        self.small.add_san_rule(kind, domain, issuer_dn, owner);
        self.check_size()
    }

    /// A constraint `owner` sets on the certificates its rules apply to. Any order.
    pub fn push_constraint(&mut self, owner: Owner<&str>, kind: ConstraintKind, value: &str) -> Result<(), EncodeError> {
        self.small.check_constraint(value)?;
        let owner = self.owner_index(owner).map_err(|p| self.small.error(Section::Constraints, p))?;
        self.small.add_constraint(owner, kind, value);
        self.check_size()
    }

    /// `owner`'s registration of a token issuer (its exact `iss`): the audiences its tokens
    /// must name one of (empty: no restriction beyond the deployment's) and its JWKS document,
    /// stored as given and parsed by readers once, when they open the snapshot. Any order;
    /// two owners may register the same `iss`.
    pub fn push_issuer<S: AsRef<str>>(
        &mut self,
        issuer: &str,
        owner: Owner<&str>,
        audiences: &[S],
        jwks_json: &[u8],
    ) -> Result<(), EncodeError> {
        let audiences = self.small.check_issuer(issuer, audiences, jwks_json)?;
        let owner = self.owner_index(owner).map_err(|p| self.small.error(Section::Issuers, p))?;
        self.small.add_issuer(issuer, owner, audiences, jwks_json);
        self.check_size()
    }

    /// Closes every section, computes the digests and writes the header. The result still
    /// needs its signature (over the header only).
    pub fn finish(mut self, header: &SnapshotHeader) -> Result<UnsignedSnapshot, EncodeError> {
        let header_error = |problem| EncodeError { section: Section::Header, index: 0, problem };
        if !super::format::is_valid_key_id(&header.key_id) {
            return Err(header_error(EncodeProblem::BadKeyId));
        }
        if header.expires_at <= header.issued_at {
            return Err(header_error(EncodeProblem::BadValidity));
        }
        self.enter(Section::SanRules)?;
        let mut ranges: [Range<usize>; SECTION_COUNT] = Default::default();
        for (i, range) in self.keyed.iter().enumerate() {
            if let Some(slot) = ranges.get_mut(i) {
                *slot = range.clone();
            }
        }
        // Strings of the small sections are added in their sorted order (so the output does
        // not depend on the order of pushes), and each distinct one once.
        let mut strings = std::mem::take(&mut self.strings);
        let mut shared = std::mem::take(&mut self.shared_strings);
        let mut string_ref = |text: &str, section: Section, index: usize| -> Result<u32, EncodeError> {
            shared_string(&mut strings, &mut shared, text).map_err(|p| Self::error_in(section, index, p))
        };

        self.small.write(&mut self.out, &mut ranges, &mut string_ref)?;

        // Org strings last: a continued table keeps its old orgs' refs, new ones follow.
        let start = self.out.len();
        let mut org_refs = std::mem::take(&mut self.org_refs);
        for (i, org) in self.new_orgs.iter().enumerate() {
            let reference = append_string(&mut strings, org).map_err(|p| Self::error_in(Section::Orgs, i, p))?;
            org_refs.push(reference);
        }
        for reference in &org_refs {
            self.out.extend_from_slice(&reference.to_le_bytes());
        }
        ranges[10] = start..self.out.len();

        if self.out.len() + strings.len() > MAX_SNAPSHOT_BYTES {
            return Err(Self::error_in(Section::Strings, 0, EncodeProblem::SnapshotTooLarge));
        }
        let start = self.out.len();
        self.out.extend_from_slice(&strings);
        ranges[11] = start..self.out.len();

        let mut digests = [[0u8; DIGEST_LEN]; SECTION_COUNT];
        for (i, (section, range)) in BODY_SECTIONS.iter().zip(&ranges).enumerate() {
            let bytes = self.out.get(range.clone()).unwrap_or(&[]);
            let digest = match section.record_len().filter(|_| section.key_len().is_some()) {
                Some(record_len) => keyed_digest(*section, &bucket_digests(bytes, record_len)),
                None => plain_digest(*section, bytes),
            };
            if let Some(slot) = digests.get_mut(i) {
                *slot = digest;
            }
        }
        write_header(&mut self.out, header, &ranges, &digests).ok_or(header_error(EncodeProblem::SnapshotTooLarge))?;
        Ok(UnsignedSnapshot { bytes: self.out, algorithm: header.algorithm })
    }
}
