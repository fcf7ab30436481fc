//! The checks of a snapshot's structure: every offset, length, reference, owner and ordering,
//! run once when a view opens, and on only the records a delta inserts; and what the view
//! reads whole while checking (constraints, issuers with their parsed keys, bucket indexes).

use crate::identity::{is_reserved_principal, ConstraintKind, OwnerConstraints, CA_KEY_LEN};
use crate::pop::jwks::{Jwks, MAX_JWKS_BYTES};
use crate::snapshot::format::{
    bucket_digests, bucket_of, keyed_digest, malformed, plain_digest, plain_digest_state, principal_name_ref, read_string, read_u24,
    read_u32, read_u64, san_kind_from_wire_id, Layout, Section, BINDING_ENABLED, BINDING_FLAGS_AT, BINDING_ORG_AT,
    BINDING_UNVERIFIED, BINDING_USER_AT, BINDING_USER_TEXT, BODY_SECTIONS, BUCKETS, CA_CRL_HELD, CA_FAIL_OPEN, CA_FLAGS_AT, CA_RECORD,
    CA_REQUIRE_FRESH_CRL, CA_SUBJECT_AT, CA_VALID_UNTIL_AT, CONSTRAINT_RECORD, DIGEST_LEN, FINGERPRINT_LEN,
    ISSUER_RECORD, KEYED_COUNT, KEYED_SECTIONS, MAX_AUDIENCES, MAX_AUDIENCES_BYTES, MAX_CAS, MAX_ISSUERS,
    MAX_STRING_LEN, ORG_RECORD,
    OWNED_KEY_LEN, PLATFORM_OWNER, REVOKED_RECORD, SAN_RULE_RECORD,
};
use crate::snapshot::SnapshotError;
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

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
    pub bucket_starts: [Option<Arc<Vec<u32>>>; KEYED_COUNT],
}

/// Sections smaller than this are searched whole: the index would cost more than it saves.
pub(crate) const INDEX_FROM: usize = BUCKETS;

/// Where each bucket of a sorted keyed section starts, by one pass over its keys.
pub(crate) fn bucket_starts(records: &[u8], record_len: usize) -> Vec<u32> {
    let mut starts = vec![0u32; BUCKETS + 1];
    let mut counts = vec![0u32; BUCKETS];
    for record in records.chunks_exact(record_len) {
        if let Some(count) = counts.get_mut(bucket_of(record)) {
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
    pub buckets: [Option<Arc<Vec<[u8; DIGEST_LEN]>>>; KEYED_COUNT],
    pub orgs: Option<Sha256>,
    pub strings: Option<Sha256>,
}

/// A section is kept by bucket when it is at least as large as the bucket table.
pub(crate) const KEEP_BUCKETS_FROM: usize = BUCKETS * DIGEST_LEN;

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

    pub fn org_name(&self, index: u32) -> Option<&'a str> {
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
                if flags & !(BINDING_ENABLED | BINDING_USER_TEXT | BINDING_UNVERIFIED) != 0 {
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
                let name = self.string(section, at + OWNED_KEY_LEN, principal_name_ref(record).map(|(r, _)| r))?;
                if owner == PLATFORM_OWNER && is_reserved_principal(name) {
                    return Err(malformed(section, at + OWNED_KEY_LEN, "platform principal in a reserved namespace"));
                }
                // The platform's mappings claim nothing, so one spelling: never flagged.
                if owner == PLATFORM_OWNER && principal_name_ref(record).is_some_and(|(_, claim)| !claim.is_verified()) {
                    return Err(malformed(section, at + OWNED_KEY_LEN, "platform principal flagged unverified"));
                }
            }
            // A CRL revocation is its key alone, and its order is checked with its section.
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

    /// The CA records: ascending keys, known flags, a CRL deadline only where a CRL is held,
    /// a subject string.
    pub fn check_cas(&self) -> Result<(), SnapshotError> {
        let section = Section::Cas;
        let start = self.range(section).start;
        if self.section(section).len() / CA_RECORD > MAX_CAS {
            return Err(malformed(section, start, "more CAs than a snapshot may carry"));
        }
        let mut previous: Option<&[u8]> = None;
        for (i, record) in self.section(section).chunks_exact(CA_RECORD).enumerate() {
            let at = start + i * CA_RECORD;
            let key = record.get(..CA_KEY_LEN).ok_or(malformed(section, at, "truncated record"))?;
            if previous.is_some_and(|p| p >= key) {
                return Err(malformed(section, at, "keys not strictly ascending"));
            }
            previous = Some(key);
            let flags = record.get(CA_FLAGS_AT).copied().unwrap_or(u8::MAX);
            if flags & !(CA_REQUIRE_FRESH_CRL | CA_FAIL_OPEN | CA_CRL_HELD) != 0 {
                return Err(malformed(section, at + CA_FLAGS_AT, "unknown flag bits"));
            }
            if flags & CA_CRL_HELD == 0 && read_u64(record, CA_VALID_UNTIL_AT) != Some(0) {
                return Err(malformed(section, at + CA_VALID_UNTIL_AT, "a CRL deadline without a CRL"));
            }
            self.string(section, at + CA_SUBJECT_AT, read_u32(record, CA_SUBJECT_AT))?;
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
        self.check_cas()?;
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
