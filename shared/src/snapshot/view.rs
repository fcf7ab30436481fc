//! Lookups straight over a snapshot's bytes.
//!
//! Opening a view checks every offset, length, reference, owner and ordering once; after that
//! a lookup is a binary search over fixed-width records and reads nothing it has not checked.
//! Reads still go through `get`, so even a bug here could only make a lookup miss, never panic.
//! The few small sections whose content is needed whole (constraints, issuers with their
//! parsed keys) are read into maps once, when the view opens.

use super::format::{
    bucket_digests, keyed_digest, malformed, plain_digest, plain_digest_state, read_layout, read_string, read_u24,
    read_u32, san_kind_from_wire_id, san_kind_wire_id, Layout, Section, SignatureAlgorithm,
    SnapshotHeader, BINDING_ENABLED, BINDING_FLAGS_AT, BINDING_ORG_AT, BINDING_RECORD, BINDING_USER_AT,
    BINDING_USER_TEXT, BLOCKED_RECORD, BODY_SECTIONS, BODY_START, BUCKETS, CONSTRAINT_RECORD, DIGEST_LEN,
    FINGERPRINT_LEN, ISSUER_RECORD, KEYED_SECTIONS, MAX_AUDIENCES, MAX_AUDIENCES_BYTES, MAX_ISSUERS, MAX_STRING_LEN,
    ORG_RECORD, OWNED_KEY_LEN, PLATFORM_OWNER, PRINCIPAL_RECORD, REVOKED_RECORD, SAN_RULE_RECORD,
};
use super::SnapshotError;
use crate::encoding::ulid_render;
use crate::fingerprint::Fingerprint;
use crate::identity::{
    is_reserved_principal, CardBinding, ConstraintKind, IdentityData, Owner, OwnerConstraints, SanKind, ThumbprintMapping,
    TokenIssuer, UserId,
};
use crate::pop::jwks::{Jwks, MAX_JWKS_BYTES};
use sha2::Sha256;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// A structurally valid snapshot, answering [`IdentityData`] lookups without parsing.
/// Cloning is cheap: the bytes and everything read from them are shared.
#[derive(Clone)]
pub struct SnapshotView {
    bytes: Arc<Vec<u8>>,
    layout: Layout,
    derived: Arc<Derived>,
    digests: Arc<DigestState>,
}

/// What the view reads whole when it opens.
#[derive(Debug, Default, Clone)]
pub(crate) struct Derived {
    pub platform_constraints: Option<OwnerConstraints>,
    pub org_constraints: HashMap<String, OwnerConstraints>,
    /// In issuer-record order; shared, so a delta that leaves them be parses nothing.
    pub issuers: Arc<Vec<ParsedIssuer>>,
    /// Revoked records per owner index, to answer whether any revocation applies.
    pub revoked_owners: HashMap<u32, u64>,
    pub revoked_orgs: HashSet<String>,
    /// Per keyed section of at least [`INDEX_FROM`] records: where each of the 4096 buckets
    /// starts (record index; one more entry for the end), so a lookup searches one bucket
    /// (a few hundred records, kilobytes apart) instead of the whole section.
    pub bucket_starts: [Option<Arc<Vec<u32>>>; 4],
}

/// Sections smaller than this are searched whole: the index would cost more than it saves.
pub(crate) const INDEX_FROM: usize = BUCKETS;

/// Where each bucket of a sorted keyed section starts, by one pass over its keys.
pub(crate) fn bucket_starts(records: &[u8], record_len: usize) -> Vec<u32> {
    let mut starts = vec![0u32; BUCKETS + 1];
    let mut counts = vec![0u32; BUCKETS];
    for record in records.chunks_exact(record_len) {
        if let Some(count) = counts.get_mut(super::format::bucket_of(record)) {
            *count = count.saturating_add(1);
        }
    }
    let mut total = 0u32;
    for (slot, count) in starts.iter_mut().skip(1).zip(&counts) {
        total = total.saturating_add(*count);
        *slot = total;
    }
    starts
}

#[derive(Debug)]
pub(crate) struct ParsedIssuer {
    pub keys: Jwks,
    pub audiences: Vec<String>,
}

/// What a delta needs to re-digest only what it changes: the keyed sections' bucket
/// digests (kept where a section is at least as large as its table; a smaller one is cheaper
/// to re-hash) and the SHA-256 states after the orgs and strings sections, which deltas
/// only append to. Empty for a view opened without its digests.
#[derive(Clone, Default)]
pub(crate) struct DigestState {
    pub buckets: [Option<Arc<Vec<[u8; DIGEST_LEN]>>>; 4],
    pub orgs: Option<Sha256>,
    pub strings: Option<Sha256>,
}

/// A section is kept by bucket when it is at least as large as the bucket table.
pub(crate) const KEEP_BUCKETS_FROM: usize = BUCKETS * DIGEST_LEN;

impl fmt::Debug for SnapshotView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotView")
            .field("header", &self.layout.header)
            .field("len", &self.bytes.len())
            .field("bindings", &self.binding_count())
            .finish()
    }
}

/// Compares two byte strings, the second one ASCII-lowercased on the fly.
fn cmp_lowercased(stored: &[u8], query: &[u8]) -> Ordering {
    let query = query.iter().map(u8::to_ascii_lowercase);
    stored.iter().copied().cmp(query)
}

/// One issuer registration as the snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerEntry<'a> {
    pub issuer: &'a str,
    pub owner: Owner<'a>,
    pub audiences: &'a [String],
    /// The JWKS document as signed.
    pub jwks: &'a [u8],
}

/// The bytes of a snapshot and its layout, with the checks of every part; shared by the
/// view's opening and by a delta, which checks only the records it inserts.
pub(crate) struct Checker<'a> {
    pub bytes: &'a [u8],
    pub layout: &'a Layout,
}

impl<'a> Checker<'a> {
    pub fn range(&self, section: Section) -> Range<usize> {
        section.table_index().and_then(|i| self.layout.sections.get(i)).cloned().unwrap_or(0..0)
    }

    pub fn section(&self, section: Section) -> &'a [u8] {
        self.bytes.get(self.range(section)).unwrap_or(&[])
    }

    fn strings(&self) -> &'a [u8] {
        self.section(Section::Strings)
    }

    pub fn org_count(&self) -> usize {
        self.section(Section::Orgs).len() / ORG_RECORD
    }

    fn org_name(&self, index: u32) -> Option<&'a str> {
        let at = usize::try_from(index).ok()?.checked_mul(ORG_RECORD)?;
        read_string(self.strings(), read_u32(self.section(Section::Orgs), at)?)
    }

    /// The string at `reference`, which must be a valid, non-empty entry.
    fn string(&self, section: Section, at: usize, reference: Option<u32>) -> Result<&'a str, SnapshotError> {
        reference.and_then(|r| read_string(self.strings(), r)).filter(|s| !s.is_empty()).ok_or(malformed(
            section,
            at,
            "string reference out of bounds, empty or not UTF-8",
        ))
    }

    fn owner(&self, section: Section, at: usize, record: &[u8], offset: usize) -> Result<u32, SnapshotError> {
        let owner = read_u24(record, offset).ok_or(malformed(section, at + offset, "truncated record"))?;
        if owner != PLATFORM_OWNER && usize::try_from(owner).map_or(true, |o| o >= self.org_count()) {
            return Err(malformed(section, at + offset, "owner is neither an org nor the platform"));
        }
        Ok(owner)
    }

    /// Every org record names an org, and no org id appears twice in the table: two indices
    /// for one org would put its rules in two scopes, and an org's blocklist would miss its own
    /// cards bound under the other one. Run again whole when a delta appends orgs, since an
    /// appended id may repeat a held one.
    pub fn check_orgs(&self) -> Result<(), SnapshotError> {
        let start = self.range(Section::Orgs).start;
        let mut seen = std::collections::HashSet::with_capacity(self.org_count());
        for (i, record) in self.section(Section::Orgs).chunks_exact(ORG_RECORD).enumerate() {
            let at = start + i * ORG_RECORD;
            if !seen.insert(self.string(Section::Orgs, at, read_u32(record, 0))?) {
                return Err(malformed(Section::Orgs, at, "the same org twice"));
            }
        }
        Ok(())
    }

    /// One keyed record's own fields (not its order), at absolute byte `at`.
    pub fn check_keyed_record(&self, section: Section, at: usize, record: &[u8]) -> Result<(), SnapshotError> {
        match section {
            Section::Bindings => {
                let flags = record.get(BINDING_FLAGS_AT).copied().unwrap_or(u8::MAX);
                if flags & !(BINDING_ENABLED | BINDING_USER_TEXT) != 0 {
                    return Err(malformed(section, at + BINDING_FLAGS_AT, "unknown flag bits"));
                }
                if flags & BINDING_USER_TEXT != 0 {
                    self.string(section, at + BINDING_USER_AT, read_u32(record, BINDING_USER_AT))?;
                    // One spelling per record: the bytes after a string ref are zero.
                    if record.get(BINDING_USER_AT + 4..BINDING_ORG_AT).is_none_or(|rest| rest.iter().any(|b| *b != 0)) {
                        return Err(malformed(section, at + BINDING_USER_AT + 4, "bytes after a user string ref"));
                    }
                }
                let org = read_u24(record, BINDING_ORG_AT).and_then(|o| usize::try_from(o).ok());
                if org.is_none_or(|o| o >= self.org_count()) {
                    return Err(malformed(section, at + BINDING_ORG_AT, "org index out of range"));
                }
            }
            Section::Blocklist | Section::Revoked => {
                self.owner(section, at, record, FINGERPRINT_LEN)?;
            }
            Section::Principals => {
                let owner = self.owner(section, at, record, FINGERPRINT_LEN)?;
                let name = self.string(section, at + OWNED_KEY_LEN, read_u32(record, OWNED_KEY_LEN))?;
                if owner == PLATFORM_OWNER && is_reserved_principal(name) {
                    return Err(malformed(section, at + OWNED_KEY_LEN, "platform principal in a reserved namespace"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Every record of a keyed section, and their strict order.
    pub fn check_keyed(&self, section: Section) -> Result<(), SnapshotError> {
        let (Some(record_len), Some(key_len)) = (section.record_len(), section.key_len()) else { return Ok(()) };
        let start = self.range(section).start;
        let mut previous: Option<&[u8]> = None;
        for (i, record) in self.section(section).chunks_exact(record_len).enumerate() {
            let at = start + i * record_len;
            let key = record.get(..key_len).ok_or(malformed(section, at, "truncated record"))?;
            if previous.is_some_and(|p| p >= key) {
                return Err(malformed(section, at, "keys not strictly ascending"));
            }
            previous = Some(key);
            self.check_keyed_record(section, at, record)?;
        }
        Ok(())
    }

    pub fn check_san_rules(&self) -> Result<(), SnapshotError> {
        let section = Section::SanRules;
        let start = self.range(section).start;
        let mut previous: Option<(u8, &str, &str, u32)> = None;
        for (i, record) in self.section(section).chunks_exact(SAN_RULE_RECORD).enumerate() {
            let at = start + i * SAN_RULE_RECORD;
            let kind = record.first().copied().filter(|k| san_kind_from_wire_id(*k).is_some());
            let kind = kind.ok_or(malformed(section, at, "unknown SAN kind"))?;
            let domain = self.string(section, at + 1, read_u32(record, 1))?;
            if domain.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(malformed(section, at + 1, "domain is not lowercase"));
            }
            let issuer = self.string(section, at + 5, read_u32(record, 5))?;
            let owner = self.owner(section, at, record, 9)?;
            let key = (kind, domain.as_bytes(), issuer.as_bytes(), owner);
            if previous.is_some_and(|(k, d, s, o)| (k, d.as_bytes(), s.as_bytes(), o) >= key) {
                return Err(malformed(section, at, "rules not strictly ascending"));
            }
            previous = Some((kind, domain, issuer, owner));
        }
        Ok(())
    }

    fn read_constraints(&self, derived: &mut Derived) -> Result<(), SnapshotError> {
        let section = Section::Constraints;
        let start = self.range(section).start;
        let mut previous: Option<(u32, u8, &str)> = None;
        for (i, record) in self.section(section).chunks_exact(CONSTRAINT_RECORD).enumerate() {
            let at = start + i * CONSTRAINT_RECORD;
            let owner = self.owner(section, at, record, 0)?;
            let kind = record.get(3).copied().and_then(ConstraintKind::from_wire_id);
            let kind = kind.ok_or(malformed(section, at + 3, "unknown constraint kind"))?;
            let value = self.string(section, at + 4, read_u32(record, 4))?;
            if previous.is_some_and(|(o, k, v)| (o, k, v.as_bytes()) >= (owner, kind.wire_id(), value.as_bytes())) {
                return Err(malformed(section, at, "constraints not strictly ascending"));
            }
            previous = Some((owner, kind.wire_id(), value));
            let target = match self.org_name(owner) {
                Some(org) if owner != PLATFORM_OWNER => derived.org_constraints.entry(org.to_owned()).or_default(),
                _ => derived.platform_constraints.get_or_insert_with(OwnerConstraints::default),
            };
            target.add(kind, value);
        }
        Ok(())
    }

    fn read_issuers(&self, derived: &mut Derived) -> Result<(), SnapshotError> {
        let section = Section::Issuers;
        let blobs = self.section(Section::Blobs);
        let start = self.range(section).start;
        let count = self.section(section).len() / ISSUER_RECORD;
        if count > MAX_ISSUERS {
            return Err(malformed(section, start, "more issuers than a snapshot may carry"));
        }
        let mut issuers = Vec::with_capacity(count);
        let mut previous: Option<(&str, u32)> = None;
        let mut expected = 0usize;
        for (i, record) in self.section(section).chunks_exact(ISSUER_RECORD).enumerate() {
            let at = start + i * ISSUER_RECORD;
            let name = self.string(section, at, read_u32(record, 0))?;
            let owner = self.owner(section, at, record, 4)?;
            if previous.is_some_and(|(n, o)| (n.as_bytes(), o) >= (name.as_bytes(), owner)) {
                return Err(malformed(section, at, "issuers not strictly ascending"));
            }
            previous = Some((name, owner));
            let field = |offset: usize| read_u32(record, offset).and_then(|v| usize::try_from(v).ok());
            let (Some(jwks_at), Some(jwks_len), Some(audiences_at), Some(audiences_len)) =
                (field(7), field(11), field(15), field(19))
            else {
                return Err(malformed(section, at + 7, "truncated record"));
            };
            if jwks_at != expected {
                return Err(malformed(section, at + 7, "JWKS does not start where the previous blob ends"));
            }
            if jwks_len > MAX_JWKS_BYTES {
                return Err(malformed(section, at + 11, "JWKS larger than the JWKS parser accepts"));
            }
            let jwks_end = jwks_at.checked_add(jwks_len).ok_or(malformed(section, at + 11, "JWKS bounds overflow"))?;
            if audiences_at != jwks_end {
                return Err(malformed(section, at + 15, "audiences do not follow the JWKS"));
            }
            if audiences_len > MAX_AUDIENCES_BYTES {
                return Err(malformed(section, at + 19, "audiences larger than a registration may list"));
            }
            let end = audiences_at + audiences_len;
            let json = blobs.get(jwks_at..jwks_end).ok_or(malformed(section, at + 11, "JWKS out of bounds"))?;
            let audiences = blobs.get(audiences_at..end).ok_or(malformed(section, at + 19, "audiences out of bounds"))?;
            let keys =
                Jwks::parse(json).map_err(|e| SnapshotError::IssuerKeys { issuer_index: i, problem: e.to_string() })?;
            let audiences: Vec<String> = serde_json::from_slice(audiences)
                .map_err(|_| malformed(Section::Blobs, audiences_at, "audiences are not a JSON array of strings"))?;
            if audiences.len() > MAX_AUDIENCES || audiences.iter().any(|a| a.is_empty() || a.len() > MAX_STRING_LEN) {
                return Err(malformed(Section::Blobs, audiences_at, "too many audiences, or one empty or too long"));
            }
            issuers.push(ParsedIssuer { keys, audiences });
            expected = end;
        }
        if expected != blobs.len() {
            return Err(malformed(Section::Blobs, self.range(Section::Blobs).start + expected, "bytes no issuer refers to"));
        }
        derived.issuers = Arc::new(issuers);
        Ok(())
    }

    pub fn count_revoked_owners(&self) -> HashMap<u32, u64> {
        let mut counts: HashMap<u32, u64> = HashMap::new();
        for record in self.section(Section::Revoked).chunks_exact(REVOKED_RECORD) {
            if let Some(owner) = read_u24(record, FINGERPRINT_LEN) {
                *counts.entry(owner).or_default() += 1;
            }
        }
        counts
    }

    pub fn revoked_orgs(&self, counts: &HashMap<u32, u64>) -> HashSet<String> {
        counts
            .iter()
            .filter(|(owner, count)| **owner != PLATFORM_OWNER && **count > 0)
            .filter_map(|(owner, _)| self.org_name(*owner).map(str::to_owned))
            .collect()
    }

    /// Constraints and issuers, read whole and checked.
    pub fn read_small_sections(&self, revoked_owners: HashMap<u32, u64>) -> Result<Derived, SnapshotError> {
        let mut derived = Derived::default();
        self.check_san_rules()?;
        self.read_constraints(&mut derived)?;
        self.read_issuers(&mut derived)?;
        derived.revoked_orgs = self.revoked_orgs(&revoked_owners);
        derived.revoked_owners = revoked_owners;
        Ok(derived)
    }

    /// Every check of every section.
    pub fn check_all(&self) -> Result<Derived, SnapshotError> {
        self.check_orgs()?;
        for section in KEYED_SECTIONS {
            self.check_keyed(section)?;
        }
        let mut derived = self.read_small_sections(self.count_revoked_owners())?;
        for (slot, section) in derived.bucket_starts.iter_mut().zip(KEYED_SECTIONS) {
            let record_len = section.record_len().unwrap_or(1);
            let records = self.section(section);
            if records.len() / record_len >= INDEX_FROM {
                *slot = Some(Arc::new(bucket_starts(records, record_len)));
            }
        }
        Ok(derived)
    }

    /// Digests every section and compares with the header's, keeping what a delta needs.
    pub fn check_digests(&self) -> Result<DigestState, SnapshotError> {
        let mut state = DigestState::default();
        for section in BODY_SECTIONS {
            self.check_digest(section, &mut state)?;
        }
        Ok(state)
    }

    /// One section's digest against the header's.
    pub fn check_digest(&self, section: Section, state: &mut DigestState) -> Result<(), SnapshotError> {
        let bytes = self.section(section);
        let expected = section.table_index().and_then(|i| self.layout.digests.get(i)).copied().unwrap_or_default();
        let digest = match (section.keyed_index(), section.record_len()) {
            (Some(k), Some(record_len)) => {
                let table = bucket_digests(bytes, record_len);
                let digest = keyed_digest(section, &table);
                if bytes.len() >= KEEP_BUCKETS_FROM {
                    if let Some(slot) = state.buckets.get_mut(k) {
                        *slot = Some(Arc::new(table));
                    }
                }
                digest
            }
            _ if matches!(section, Section::Orgs | Section::Strings) => {
                let mut hasher = plain_digest_state(section);
                sha2::Digest::update(&mut hasher, bytes);
                let digest: [u8; DIGEST_LEN] = sha2::Digest::finalize(hasher.clone()).into();
                if section == Section::Orgs {
                    state.orgs = Some(hasher);
                } else {
                    state.strings = Some(hasher);
                }
                digest
            }
            _ => plain_digest(section, bytes),
        };
        if digest != expected {
            return Err(SnapshotError::DigestMismatch { section });
        }
        Ok(())
    }
}

/// A view whose bytes were taken out ([`SnapshotView::into_unique_bytes`]).
pub(crate) struct ViewWithoutBytes {
    layout: Layout,
    derived: Arc<Derived>,
    digests: Arc<DigestState>,
}

impl ViewWithoutBytes {
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn derived(&self) -> &Derived {
        &self.derived
    }

    /// The view again, over the bytes taken out (unchanged: what was checked of them holds).
    pub(crate) fn with_bytes(self, bytes: Vec<u8>) -> SnapshotView {
        SnapshotView { bytes: Arc::new(bytes), layout: self.layout, derived: self.derived, digests: self.digests }
    }
}

impl SnapshotView {
    /// Opens `bytes` after checking their structure only: no signature, no digests, no clock,
    /// no version. For the producer re-reading what it has just signed, for inspection tools,
    /// and for a worker opening bytes another worker of the same proxy verified; bytes from
    /// the network go through [`super::SnapshotVerifier::verify`].
    pub fn open_unauthenticated(bytes: impl Into<Arc<Vec<u8>>>) -> Result<Self, SnapshotError> {
        let bytes = bytes.into();
        let layout = read_layout(&bytes)?;
        let derived = Checker { bytes: &bytes, layout: &layout }.check_all()?;
        Ok(SnapshotView { bytes, layout, derived: Arc::new(derived), digests: Arc::default() })
    }

    /// Digests, then structure, of bytes whose header is authenticated.
    pub(crate) fn open_authenticated(bytes: Arc<Vec<u8>>, layout: Layout) -> Result<Self, SnapshotError> {
        let checker = Checker { bytes: &bytes, layout: &layout };
        let digests = checker.check_digests()?;
        let derived = checker.check_all()?;
        Ok(SnapshotView { bytes, layout, derived: Arc::new(derived), digests: Arc::new(digests) })
    }

    /// A view over parts a delta assembled and checked.
    pub(crate) fn from_parts(bytes: Arc<Vec<u8>>, layout: Layout, derived: Arc<Derived>, digests: DigestState) -> Self {
        SnapshotView { bytes, layout, derived, digests: Arc::new(digests) }
    }

    pub(crate) fn derived(&self) -> &Arc<Derived> {
        &self.derived
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The same view over a copy of its bytes that it alone owns, with an eighth more room (as
    /// the filter keeps): what an in-place delta rewrites.
    #[cfg(test)]
    pub(crate) fn unshared(&self) -> SnapshotView {
        let mut bytes = Vec::with_capacity(self.bytes.len() + self.bytes.len() / 8);
        bytes.extend_from_slice(&self.bytes);
        SnapshotView { bytes: Arc::new(bytes), ..self.clone() }
    }

    /// The bytes, taken out of the view when it is their only owner (a delta then rewrites
    /// them in place), with everything else the view holds; otherwise the view, unchanged.
    pub(crate) fn into_unique_bytes(self) -> Result<(Vec<u8>, ViewWithoutBytes), Box<SnapshotView>> {
        let SnapshotView { bytes, layout, derived, digests } = self;
        match Arc::try_unwrap(bytes) {
            Ok(bytes) => Ok((bytes, ViewWithoutBytes { layout, derived, digests })),
            Err(bytes) => Err(Box::new(SnapshotView { bytes, layout, derived, digests })),
        }
    }

    pub(crate) fn digest_state(&self) -> &DigestState {
        &self.digests
    }

    fn checker(&self) -> Checker<'_> {
        Checker { bytes: &self.bytes, layout: &self.layout }
    }

    fn strings(&self) -> &[u8] {
        self.section_bytes(Section::Strings)
    }

    fn org_name(&self, index: u32) -> Option<&str> {
        self.checker().org_name(index)
    }

    /// The owner an owner field names (checked when the view opened).
    fn owner_at(&self, index: u32) -> Owner<'_> {
        if index == PLATFORM_OWNER {
            Owner::Platform
        } else {
            Owner::Org(self.org_name(index).unwrap_or_default())
        }
    }

    /// Whether the owner field `index` names a rule that applies to a certificate of `org`.
    fn owner_applies(&self, index: u32, org: Option<&str>) -> bool {
        index == PLATFORM_OWNER || org.is_some_and(|org| self.org_name(index) == Some(org))
    }

    /// Whether the owner field `index` is `owner`.
    fn owner_is(&self, index: u32, owner: Owner<'_>) -> bool {
        match owner {
            Owner::Platform => index == PLATFORM_OWNER,
            Owner::Org(org) => index != PLATFORM_OWNER && self.org_name(index) == Some(org),
        }
    }

    pub fn header(&self) -> &SnapshotHeader {
        &self.layout.header
    }

    pub fn version(&self) -> u64 {
        self.layout.header.version
    }

    pub fn issued_at(&self) -> i64 {
        self.layout.header.issued_at
    }

    pub fn expires_at(&self) -> i64 {
        self.layout.header.expires_at
    }

    /// Whether the snapshot has expired at `now` (Unix seconds): from then on it must not be
    /// used, and requests are answered `identity_unavailable`.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.layout.header.expires_at
    }

    pub fn key_id(&self) -> &str {
        &self.layout.header.key_id
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.layout.header.algorithm
    }

    /// The whole signed snapshot.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The snapshot bytes, shared rather than copied.
    pub fn shared_bytes(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.bytes)
    }

    /// The signed header and its signature: what a delta to this snapshot ends with.
    pub fn signed_header(&self) -> &[u8] {
        self.bytes.get(..BODY_START).unwrap_or(&[])
    }

    /// The digest the header gives `section` (zero for the header and signature).
    pub fn digest(&self, section: Section) -> [u8; DIGEST_LEN] {
        section.table_index().and_then(|i| self.layout.digests.get(i)).copied().unwrap_or_default()
    }

    /// Bytes in the string table: a builder's hint for the next snapshot's.
    pub fn strings_len(&self) -> usize {
        self.section_bytes(Section::Strings).len()
    }

    /// The raw bytes of one part of the snapshot, as checked when the view was opened. For
    /// the producer, which copies unchanged records into the next snapshot
    /// ([`super::SnapshotEncoder::continuing`]), and for deltas.
    pub fn section_bytes(&self, section: Section) -> &[u8] {
        match section {
            Section::Header => self.bytes.get(..super::format::HEADER_LEN).unwrap_or(&[]),
            Section::Signature => self.bytes.get(super::format::HEADER_LEN..BODY_START).unwrap_or(&[]),
            _ => self.checker().section(section),
        }
    }

    pub fn binding_count(&self) -> usize {
        self.section_bytes(Section::Bindings).len() / BINDING_RECORD
    }

    pub fn blocklist_count(&self) -> usize {
        self.section_bytes(Section::Blocklist).len() / BLOCKED_RECORD
    }

    pub fn revoked_count(&self) -> usize {
        self.section_bytes(Section::Revoked).len() / REVOKED_RECORD
    }

    pub fn principal_count(&self) -> usize {
        self.section_bytes(Section::Principals).len() / PRINCIPAL_RECORD
    }

    pub fn org_count(&self) -> usize {
        self.checker().org_count()
    }

    /// Every org id, in index order.
    pub fn orgs(&self) -> impl Iterator<Item = &str> + '_ {
        self.section_bytes(Section::Orgs)
            .chunks_exact(ORG_RECORD)
            .filter_map(|record| read_string(self.strings(), read_u32(record, 0)?))
    }

    /// Binary search over sorted fixed-width records for the run whose first 32 bytes are
    /// `key` (one record in the bindings; one per owner elsewhere).
    fn find_run(&self, section: Section, record_len: usize, key: &[u8; FINGERPRINT_LEN]) -> &[u8] {
        let records = self.section_bytes(section);
        let count = records.len() / record_len;
        let key_at = |i: usize| records.get(i * record_len..i * record_len + FINGERPRINT_LEN);
        // The key's bucket bounds the search, when the section is indexed.
        let bucket = super::format::bucket_of(key);
        let index = section.keyed_index().and_then(|k| self.derived.bucket_starts.get(k)).and_then(Option::as_ref);
        let bounds = index.and_then(|starts| Some((*starts.get(bucket)?, *starts.get(bucket + 1)?)));
        let (mut low, mut high) = match bounds {
            Some((start, end)) => (usize::try_from(start).unwrap_or(0), usize::try_from(end).unwrap_or(count).min(count)),
            None => (0usize, count),
        };
        while low < high {
            let mid = low + (high - low) / 2;
            if key_at(mid).is_some_and(|k| k < &key[..]) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let mut end = low;
        while end < count && key_at(end) == Some(&key[..]) {
            end += 1;
        }
        records.get(low * record_len..end * record_len).unwrap_or(&[])
    }

    fn binding_of(&self, record: &[u8]) -> Option<(Fingerprint, CardBinding<'_>)> {
        let fingerprint = Fingerprint(record.get(..32)?.try_into().ok()?);
        let flags = *record.get(BINDING_FLAGS_AT)?;
        let user_id = if flags & BINDING_USER_TEXT != 0 {
            UserId::Text(read_string(self.strings(), read_u32(record, BINDING_USER_AT)?)?)
        } else {
            UserId::Ulid(ulid_render(record.get(BINDING_USER_AT..BINDING_ORG_AT)?.try_into().ok()?))
        };
        let org_id = self.org_name(read_u24(record, BINDING_ORG_AT)?)?;
        let enabled = flags & BINDING_ENABLED != 0;
        Some((fingerprint, CardBinding { user_id, org_id, enabled }))
    }

    /// Every binding, in fingerprint order.
    pub fn bindings(&self) -> impl Iterator<Item = (Fingerprint, CardBinding<'_>)> + '_ {
        self.section_bytes(Section::Bindings).chunks_exact(BINDING_RECORD).filter_map(|record| self.binding_of(record))
    }

    fn owned_key(&self, record: &[u8]) -> Option<([u8; 32], Owner<'_>)> {
        Some((record.get(..FINGERPRINT_LEN)?.try_into().ok()?, self.owner_at(read_u24(record, FINGERPRINT_LEN)?)))
    }

    /// Every blocklist entry with its owner, in record order.
    pub fn blocklist(&self) -> impl Iterator<Item = (Fingerprint, Owner<'_>)> + '_ {
        self.section_bytes(Section::Blocklist)
            .chunks_exact(BLOCKED_RECORD)
            .filter_map(|record| self.owned_key(record).map(|(k, o)| (Fingerprint(k), o)))
    }

    /// Every revoked-serial key ([`super::revoked_serial_key`]) with its owner, in record order.
    pub fn revoked(&self) -> impl Iterator<Item = ([u8; 32], Owner<'_>)> + '_ {
        self.section_bytes(Section::Revoked).chunks_exact(REVOKED_RECORD).filter_map(|record| self.owned_key(record))
    }

    /// Every thumbprint mapping: fingerprint, owner and name as written, in record order.
    pub fn principals(&self) -> impl Iterator<Item = (Fingerprint, Owner<'_>, &str)> + '_ {
        self.section_bytes(Section::Principals).chunks_exact(PRINCIPAL_RECORD).filter_map(|record| {
            let (key, owner) = self.owned_key(record)?;
            Some((Fingerprint(key), owner, read_string(self.strings(), read_u32(record, OWNED_KEY_LEN)?)?))
        })
    }

    fn san_rule_at(&self, record: &[u8]) -> Option<(SanKind, &str, &str, Owner<'_>)> {
        let kind = san_kind_from_wire_id(*record.first()?)?;
        let domain = read_string(self.strings(), read_u32(record, 1)?)?;
        let issuer = read_string(self.strings(), read_u32(record, 5)?)?;
        Some((kind, domain, issuer, self.owner_at(read_u24(record, 9)?)))
    }

    /// Every SAN mapping rule: kind, domain, issuer DN, owner; in record order.
    pub fn san_rules(&self) -> impl Iterator<Item = (SanKind, &str, &str, Owner<'_>)> + '_ {
        self.section_bytes(Section::SanRules).chunks_exact(SAN_RULE_RECORD).filter_map(|record| self.san_rule_at(record))
    }

    /// Every constraint as (owner, kind, value), in record order.
    pub fn all_constraints(&self) -> impl Iterator<Item = (Owner<'_>, ConstraintKind, &str)> + '_ {
        self.section_bytes(Section::Constraints).chunks_exact(CONSTRAINT_RECORD).filter_map(|record| {
            let owner = self.owner_at(read_u24(record, 0)?);
            let kind = ConstraintKind::from_wire_id(*record.get(3)?)?;
            Some((owner, kind, read_string(self.strings(), read_u32(record, 4)?)?))
        })
    }

    fn issuer_at(&self, index: usize) -> Option<IssuerEntry<'_>> {
        let record = self.section_bytes(Section::Issuers).get(index * ISSUER_RECORD..(index + 1) * ISSUER_RECORD)?;
        let blobs = self.section_bytes(Section::Blobs);
        let field = |offset: usize| read_u32(record, offset).and_then(|v| usize::try_from(v).ok());
        let (jwks_at, jwks_len) = (field(7)?, field(11)?);
        Some(IssuerEntry {
            issuer: read_string(self.strings(), read_u32(record, 0)?)?,
            owner: self.owner_at(read_u24(record, 4)?),
            audiences: &self.derived.issuers.get(index)?.audiences,
            jwks: blobs.get(jwks_at..jwks_at.checked_add(jwks_len)?)?,
        })
    }

    /// Every issuer registration, ascending by issuer then owner.
    pub fn issuers(&self) -> impl Iterator<Item = IssuerEntry<'_>> + '_ {
        (0..self.section_bytes(Section::Issuers).len() / ISSUER_RECORD).filter_map(|i| self.issuer_at(i))
    }

    fn issuer_name(&self, index: usize) -> Option<&str> {
        let at = index.checked_mul(ISSUER_RECORD)?;
        read_string(self.strings(), read_u32(self.section_bytes(Section::Issuers), at)?)
    }
}

impl IdentityData for SnapshotView {
    fn card_binding(&self, fingerprint: &Fingerprint) -> Option<CardBinding<'_>> {
        let record = self.find_run(Section::Bindings, BINDING_RECORD, &fingerprint.0);
        self.binding_of(record.get(..BINDING_RECORD)?).map(|(_, binding)| binding)
    }

    fn is_blocklisted(&self, fingerprint: &Fingerprint, org: Option<&str>) -> bool {
        self.find_run(Section::Blocklist, BLOCKED_RECORD, &fingerprint.0)
            .chunks_exact(BLOCKED_RECORD)
            .any(|record| read_u24(record, FINGERPRINT_LEN).is_some_and(|owner| self.owner_applies(owner, org)))
    }

    fn is_revoked(&self, issuer_dn: &str, serial_hex: &str, org: Option<&str>) -> bool {
        // Most snapshots revoke by fingerprint (blocklist) only: skip the key's SHA-256.
        if self.revoked_count() == 0 {
            return false;
        }
        let key = super::format::revoked_serial_key(issuer_dn, serial_hex);
        self.find_run(Section::Revoked, REVOKED_RECORD, &key)
            .chunks_exact(REVOKED_RECORD)
            .any(|record| read_u24(record, FINGERPRINT_LEN).is_some_and(|owner| self.owner_applies(owner, org)))
    }

    fn has_revoked_serials(&self, org: Option<&str>) -> bool {
        self.derived.revoked_owners.get(&PLATFORM_OWNER).is_some_and(|n| *n > 0)
            || org.is_some_and(|org| self.derived.revoked_orgs.contains(org))
    }

    fn thumbprint_mappings<'a>(&'a self, fingerprint: &Fingerprint, each: &mut dyn FnMut(ThumbprintMapping<'a>)) {
        let run = self.find_run(Section::Principals, PRINCIPAL_RECORD, &fingerprint.0);
        for record in run.chunks_exact(PRINCIPAL_RECORD) {
            let owner = read_u24(record, FINGERPRINT_LEN).map(|o| self.owner_at(o));
            let name = read_u32(record, OWNED_KEY_LEN).and_then(|r| read_string(self.strings(), r));
            if let (Some(owner), Some(name)) = (owner, name) {
                each(ThumbprintMapping { owner, name });
            }
        }
    }

    fn san_rule_owners<'a>(&'a self, kind: SanKind, domain: &str, issuer_dn: &str, each: &mut dyn FnMut(Owner<'a>)) {
        let kind_id = san_kind_wire_id(kind);
        let records = self.section_bytes(Section::SanRules);
        let count = records.len() / SAN_RULE_RECORD;
        let order = |i: usize| -> Option<Ordering> {
            let record = records.get(i * SAN_RULE_RECORD..(i + 1) * SAN_RULE_RECORD)?;
            let stored_domain = read_string(self.strings(), read_u32(record, 1)?)?;
            let stored_issuer = read_string(self.strings(), read_u32(record, 5)?)?;
            Some(
                record
                    .first()?
                    .cmp(&kind_id)
                    .then_with(|| cmp_lowercased(stored_domain.as_bytes(), domain.as_bytes()))
                    .then_with(|| stored_issuer.as_bytes().cmp(issuer_dn.as_bytes())),
            )
        };
        let (mut low, mut high) = (0usize, count);
        while low < high {
            let mid = low + (high - low) / 2;
            if order(mid) == Some(Ordering::Less) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        for i in (low..count).take_while(|i| order(*i) == Some(Ordering::Equal)) {
            if let Some(owner) = records.get(i * SAN_RULE_RECORD..).and_then(|r| read_u24(r, 9)) {
                each(self.owner_at(owner));
            }
        }
    }

    fn constraints(&self, owner: Owner<'_>) -> Option<&OwnerConstraints> {
        match owner {
            Owner::Platform => self.derived.platform_constraints.as_ref(),
            Owner::Org(org) => self.derived.org_constraints.get(org),
        }
    }

    fn token_issuer(&self, issuer: &str, owner: Owner<'_>) -> Option<TokenIssuer<'_>> {
        let records = self.section_bytes(Section::Issuers);
        let count = records.len() / ISSUER_RECORD;
        let (mut low, mut high) = (0usize, count);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.issuer_name(mid).is_some_and(|n| n.as_bytes() < issuer.as_bytes()) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let index = (low..count).take_while(|i| self.issuer_name(*i) == Some(issuer)).find(|i| {
            records.get(i * ISSUER_RECORD..).and_then(|r| read_u24(r, 4)).is_some_and(|o| self.owner_is(o, owner))
        })?;
        let parsed = self.derived.issuers.get(index)?;
        let stored_owner = records.get(index * ISSUER_RECORD..).and_then(|r| read_u24(r, 4))?;
        Some(TokenIssuer { owner: self.owner_at(stored_owner), keys: &parsed.keys, audiences: &parsed.audiences })
    }

    fn generation(&self) -> u64 {
        self.layout.header.version
    }
}
