//! Lookups straight over a snapshot's bytes.
//!
//! Opening a view checks every offset, length, reference and ordering once; after that a
//! lookup is a binary search over fixed-width records and reads nothing it has not checked.
//! Reads still go through `get`, so even a bug here could only make a lookup miss, never panic.

use super::format::{
    malformed, read_layout, read_string, read_u24, read_u32, san_kind_from_wire_id, san_kind_wire_id, ConstraintKind,
    Layout, Section, SignatureAlgorithm, SnapshotHeader, BINDING_ENABLED, BINDING_FLAGS_AT, BINDING_ORG_AT, BINDING_RECORD, BINDING_USER_AT, BINDING_USER_TEXT, CONSTRAINT_RECORD,
    FINGERPRINT_RECORD, ISSUER_RECORD, ORG_RECORD, PRINCIPAL_RECORD, SAN_RULE_RECORD,
};
use super::SnapshotError;
use crate::encoding::ulid_render;
use crate::fingerprint::Fingerprint;
use crate::identity::{CardBinding, IdentityData, SanKind, UserId};
use crate::pop::jwks::{Jwks, MAX_JWKS_BYTES};
use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// A structurally valid snapshot, answering [`IdentityData`] lookups without parsing.
/// Cloning is cheap: the bytes are shared.
#[derive(Clone)]
pub struct SnapshotView {
    bytes: Arc<Vec<u8>>,
    header: SnapshotHeader,
    bindings: Range<usize>,
    orgs: Range<usize>,
    blocklist: Range<usize>,
    revoked: Range<usize>,
    principals: Range<usize>,
    san_rules: Range<usize>,
    constraints: Range<usize>,
    issuers: Range<usize>,
    jwks: Range<usize>,
    strings: Range<usize>,
    /// Issuer key sets, parsed once, in issuer-record order.
    issuer_keys: Arc<Vec<Jwks>>,
}

impl fmt::Debug for SnapshotView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotView")
            .field("header", &self.header)
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

impl SnapshotView {
    /// Opens `bytes` after checking their structure only: no signature, no clock, no version.
    /// For the producer re-reading what it has just signed and for inspection tools; a proxy
    /// must use [`super::SnapshotVerifier::verify`].
    pub fn open_unauthenticated(bytes: impl Into<Arc<Vec<u8>>>) -> Result<Self, SnapshotError> {
        let bytes = bytes.into();
        let layout = read_layout(&bytes)?;
        Self::from_layout(bytes, layout)
    }

    pub(crate) fn from_layout(bytes: Arc<Vec<u8>>, layout: Layout) -> Result<Self, SnapshotError> {
        let Layout { header, sections, .. } = layout;
        let [bindings, orgs, blocklist, revoked, principals, san_rules, constraints, issuers, jwks, strings] = sections;
        let mut view = SnapshotView {
            bytes,
            header,
            bindings,
            orgs,
            blocklist,
            revoked,
            principals,
            san_rules,
            constraints,
            issuers,
            jwks,
            strings,
            issuer_keys: Arc::new(Vec::new()),
        };
        view.check_orgs()?;
        view.check_bindings()?;
        view.check_sorted_keys(Section::Blocklist, &view.blocklist, FINGERPRINT_RECORD)?;
        view.check_sorted_keys(Section::Revoked, &view.revoked, FINGERPRINT_RECORD)?;
        view.check_principals()?;
        view.check_san_rules()?;
        view.check_constraints()?;
        view.issuer_keys = Arc::new(view.check_issuers()?);
        Ok(view)
    }

    fn strings(&self) -> &[u8] {
        self.bytes.get(self.strings.clone()).unwrap_or(&[])
    }

    fn section(&self, range: &Range<usize>) -> &[u8] {
        self.bytes.get(range.clone()).unwrap_or(&[])
    }

    /// The string at `reference`, which must be a valid, non-empty entry.
    fn checked_string(&self, section: Section, at: usize, reference: Option<u32>) -> Result<&str, SnapshotError> {
        reference.and_then(|r| read_string(self.strings(), r)).filter(|s| !s.is_empty()).ok_or(malformed(
            section,
            at,
            "string reference out of bounds, empty or not UTF-8",
        ))
    }

    fn check_orgs(&self) -> Result<(), SnapshotError> {
        for (i, record) in self.section(&self.orgs).chunks_exact(ORG_RECORD).enumerate() {
            let at = self.orgs.start + i * ORG_RECORD;
            self.checked_string(Section::Orgs, at, read_u32(record, 0))?;
        }
        Ok(())
    }

    fn org_count(&self) -> usize {
        self.orgs.len() / ORG_RECORD
    }

    fn check_bindings(&self) -> Result<(), SnapshotError> {
        let org_count = self.org_count();
        let mut previous: Option<&[u8]> = None;
        for (i, record) in self.section(&self.bindings).chunks_exact(BINDING_RECORD).enumerate() {
            let at = self.bindings.start + i * BINDING_RECORD;
            let key = record.get(..32).ok_or(malformed(Section::Bindings, at, "truncated record"))?;
            if previous.is_some_and(|p| p >= key) {
                return Err(malformed(Section::Bindings, at, "fingerprints not strictly ascending"));
            }
            previous = Some(key);
            let flags = record.get(BINDING_FLAGS_AT).copied().unwrap_or(u8::MAX);
            if flags & !(BINDING_ENABLED | BINDING_USER_TEXT) != 0 {
                return Err(malformed(Section::Bindings, at + BINDING_FLAGS_AT, "unknown flag bits"));
            }
            if flags & BINDING_USER_TEXT != 0 {
                self.checked_string(Section::Bindings, at + BINDING_USER_AT, read_u32(record, BINDING_USER_AT))?;
                // One spelling per record: the bytes after a string ref are zero.
                if record.get(BINDING_USER_AT + 4..BINDING_ORG_AT).is_none_or(|rest| rest.iter().any(|b| *b != 0)) {
                    return Err(malformed(Section::Bindings, at + BINDING_USER_AT + 4, "bytes after a user string ref"));
                }
            }
            let org = read_u24(record, BINDING_ORG_AT).and_then(|o| usize::try_from(o).ok());
            if org.is_none_or(|o| o >= org_count) {
                return Err(malformed(Section::Bindings, at + BINDING_ORG_AT, "org index out of range"));
            }
        }
        Ok(())
    }

    fn check_sorted_keys(
        &self,
        section: Section,
        range: &Range<usize>,
        record_len: usize,
    ) -> Result<(), SnapshotError> {
        let mut previous: Option<&[u8]> = None;
        for (i, record) in self.section(range).chunks_exact(record_len).enumerate() {
            let key = record.get(..32).unwrap_or(record);
            if previous.is_some_and(|p| p >= key) {
                return Err(malformed(section, range.start + i * record_len, "keys not strictly ascending"));
            }
            previous = Some(key);
        }
        Ok(())
    }

    fn check_principals(&self) -> Result<(), SnapshotError> {
        self.check_sorted_keys(Section::Principals, &self.principals, PRINCIPAL_RECORD)?;
        for (i, record) in self.section(&self.principals).chunks_exact(PRINCIPAL_RECORD).enumerate() {
            let at = self.principals.start + i * PRINCIPAL_RECORD;
            self.checked_string(Section::Principals, at + 32, read_u32(record, 32))?;
        }
        Ok(())
    }

    fn check_san_rules(&self) -> Result<(), SnapshotError> {
        let mut previous: Option<(u8, &str)> = None;
        for (i, record) in self.section(&self.san_rules).chunks_exact(SAN_RULE_RECORD).enumerate() {
            let at = self.san_rules.start + i * SAN_RULE_RECORD;
            let kind = record.first().copied().filter(|k| san_kind_from_wire_id(*k).is_some());
            let kind = kind.ok_or(malformed(Section::SanRules, at, "unknown SAN kind"))?;
            let domain = self.checked_string(Section::SanRules, at + 1, read_u32(record, 1))?;
            if domain.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(malformed(Section::SanRules, at + 1, "domain is not lowercase"));
            }
            if previous.is_some_and(|(pk, pd)| (pk, pd.as_bytes()) >= (kind, domain.as_bytes())) {
                return Err(malformed(Section::SanRules, at, "rules not strictly ascending"));
            }
            previous = Some((kind, domain));
        }
        Ok(())
    }

    fn check_constraints(&self) -> Result<(), SnapshotError> {
        let mut previous: Option<(&str, u8, &str)> = None;
        for (i, record) in self.section(&self.constraints).chunks_exact(CONSTRAINT_RECORD).enumerate() {
            let at = self.constraints.start + i * CONSTRAINT_RECORD;
            let org = self.checked_string(Section::Constraints, at, read_u32(record, 0))?;
            let kind = record.get(4).copied().filter(|k| ConstraintKind::from_wire_id(*k).is_some());
            let kind = kind.ok_or(malformed(Section::Constraints, at + 4, "unknown constraint kind"))?;
            let value = self.checked_string(Section::Constraints, at + 5, read_u32(record, 5))?;
            let key = (org.as_bytes(), kind, value.as_bytes());
            if previous.is_some_and(|(po, pk, pv)| (po.as_bytes(), pk, pv.as_bytes()) >= key) {
                return Err(malformed(Section::Constraints, at, "constraints not strictly ascending"));
            }
            previous = Some((org, kind, value));
        }
        Ok(())
    }

    fn check_issuers(&self) -> Result<Vec<Jwks>, SnapshotError> {
        let jwks_section = self.section(&self.jwks);
        let mut keys = Vec::with_capacity(self.issuers.len() / ISSUER_RECORD);
        let mut previous: Option<&str> = None;
        let mut expected_offset = 0usize;
        for (i, record) in self.section(&self.issuers).chunks_exact(ISSUER_RECORD).enumerate() {
            let at = self.issuers.start + i * ISSUER_RECORD;
            let name = self.checked_string(Section::Issuers, at, read_u32(record, 0))?;
            if previous.is_some_and(|p| p.as_bytes() >= name.as_bytes()) {
                return Err(malformed(Section::Issuers, at, "issuers not strictly ascending"));
            }
            previous = Some(name);
            let offset = read_u32(record, 4).and_then(|v| usize::try_from(v).ok());
            let len = read_u32(record, 8).and_then(|v| usize::try_from(v).ok());
            let (Some(offset), Some(len)) = (offset, len) else {
                return Err(malformed(Section::Issuers, at + 4, "truncated record"));
            };
            if offset != expected_offset {
                return Err(malformed(Section::Issuers, at + 4, "JWKS does not start where the previous one ends"));
            }
            if len > MAX_JWKS_BYTES {
                return Err(malformed(Section::Issuers, at + 8, "JWKS larger than the JWKS parser accepts"));
            }
            let end = offset.checked_add(len).ok_or(malformed(Section::Issuers, at + 8, "JWKS bounds overflow"))?;
            let json =
                jwks_section.get(offset..end).ok_or(malformed(Section::Issuers, at + 8, "JWKS out of bounds"))?;
            let parsed =
                Jwks::parse(json).map_err(|e| SnapshotError::IssuerKeys { issuer_index: i, problem: e.to_string() })?;
            keys.push(parsed);
            expected_offset = end;
        }
        if expected_offset != jwks_section.len() {
            return Err(malformed(Section::Jwks, self.jwks.start + expected_offset, "bytes no issuer refers to"));
        }
        Ok(keys)
    }

    /// Binary search over sorted fixed-width records whose first 32 bytes are the key.
    fn find_record(&self, range: &Range<usize>, record_len: usize, key: &[u8; 32]) -> Option<&[u8]> {
        let section = self.section(range);
        let mut low = 0usize;
        let mut high = section.len() / record_len;
        while low < high {
            let mid = low + (high - low) / 2;
            let start = mid.checked_mul(record_len)?;
            let record = section.get(start..start.checked_add(record_len)?)?;
            match record.get(..32)?.cmp(&key[..]) {
                Ordering::Less => low = mid + 1,
                Ordering::Greater => high = mid,
                Ordering::Equal => return Some(record),
            }
        }
        None
    }

    fn binding_of(&self, record: &[u8]) -> Option<(Fingerprint, CardBinding<'_>)> {
        let fingerprint = Fingerprint(record.get(..32)?.try_into().ok()?);
        let flags = *record.get(BINDING_FLAGS_AT)?;
        let user_id = if flags & BINDING_USER_TEXT != 0 {
            UserId::Text(read_string(self.strings(), read_u32(record, BINDING_USER_AT)?)?)
        } else {
            UserId::Ulid(ulid_render(record.get(BINDING_USER_AT..BINDING_ORG_AT)?.try_into().ok()?))
        };
        let org = usize::try_from(read_u24(record, BINDING_ORG_AT)?).ok()?;
        let org_record = org.checked_mul(ORG_RECORD)?;
        let org_id = read_string(self.strings(), read_u32(self.section(&self.orgs), org_record)?)?;
        let enabled = flags & BINDING_ENABLED != 0;
        Some((fingerprint, CardBinding { user_id, org_id, enabled }))
    }

    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    pub fn version(&self) -> u64 {
        self.header.version
    }

    pub fn issued_at(&self) -> i64 {
        self.header.issued_at
    }

    pub fn expires_at(&self) -> i64 {
        self.header.expires_at
    }

    /// Whether the snapshot has expired at `now` (Unix seconds): from then on it must not be
    /// used, and requests are answered `identity_unavailable`.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.header.expires_at
    }

    pub fn key_id(&self) -> &str {
        &self.header.key_id
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.header.algorithm
    }

    /// The whole signed snapshot.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The snapshot bytes, shared rather than copied.
    pub fn shared_bytes(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.bytes)
    }

    /// Bytes in the string table: a builder's hint for the next snapshot's.
    pub fn strings_len(&self) -> usize {
        self.strings.len()
    }

    /// The raw bytes of one part of the snapshot, as checked when the view was opened. For
    /// the producer, which copies unchanged records into the next snapshot
    /// ([`super::SnapshotEncoder::continuing`]).
    pub fn section_bytes(&self, section: Section) -> &[u8] {
        let range = match section {
            Section::Header => 0..super::format::HEADER_LEN,
            Section::Bindings => self.bindings.clone(),
            Section::Orgs => self.orgs.clone(),
            Section::Blocklist => self.blocklist.clone(),
            Section::Revoked => self.revoked.clone(),
            Section::Principals => self.principals.clone(),
            Section::SanRules => self.san_rules.clone(),
            Section::Constraints => self.constraints.clone(),
            Section::Issuers => self.issuers.clone(),
            Section::Jwks => self.jwks.clone(),
            Section::Strings => self.strings.clone(),
            Section::Signature => self.bytes.len().saturating_sub(super::format::SIGNATURE_LEN)..self.bytes.len(),
        };
        self.section(&range)
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.len() / BINDING_RECORD
    }

    pub fn blocklist_count(&self) -> usize {
        self.blocklist.len() / FINGERPRINT_RECORD
    }

    pub fn revoked_count(&self) -> usize {
        self.revoked.len() / FINGERPRINT_RECORD
    }

    pub fn principal_count(&self) -> usize {
        self.principals.len() / PRINCIPAL_RECORD
    }

    /// Every binding, in fingerprint order.
    pub fn bindings(&self) -> impl Iterator<Item = (Fingerprint, CardBinding<'_>)> + '_ {
        self.section(&self.bindings).chunks_exact(BINDING_RECORD).filter_map(|record| self.binding_of(record))
    }

    /// Every blocklisted fingerprint, ascending.
    pub fn blocklist(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.section(&self.blocklist)
            .chunks_exact(FINGERPRINT_RECORD)
            .filter_map(|record| record.try_into().ok().map(Fingerprint))
    }

    /// Every revoked-serial key ([`super::revoked_serial_key`]), ascending.
    pub fn revoked_keys(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.section(&self.revoked).chunks_exact(FINGERPRINT_RECORD).filter_map(|record| record.try_into().ok())
    }

    /// Every thumbprint → principal mapping, in fingerprint order.
    pub fn principals(&self) -> impl Iterator<Item = (Fingerprint, &str)> + '_ {
        self.section(&self.principals).chunks_exact(PRINCIPAL_RECORD).filter_map(|record| {
            let fingerprint = Fingerprint(record.get(..32)?.try_into().ok()?);
            Some((fingerprint, read_string(self.strings(), read_u32(record, 32)?)?))
        })
    }

    /// Every SAN mapping rule, email before UPN, domains ascending.
    pub fn san_rules(&self) -> impl Iterator<Item = (SanKind, &str)> + '_ {
        self.section(&self.san_rules).chunks_exact(SAN_RULE_RECORD).filter_map(|record| {
            let kind = san_kind_from_wire_id(*record.first()?)?;
            Some((kind, read_string(self.strings(), read_u32(record, 1)?)?))
        })
    }

    /// The constraints of `org_id`, ordered by kind then value.
    pub fn org_constraints<'a>(&'a self, org_id: &'a str) -> impl Iterator<Item = (ConstraintKind, &'a str)> + 'a {
        let section = self.section(&self.constraints);
        let org_of = move |i: usize| -> Option<&'a str> {
            let start = i.checked_mul(CONSTRAINT_RECORD)?;
            read_string(self.strings(), read_u32(section, start)?)
        };
        // Lower bound: the first record whose org is not below `org_id`.
        let mut low = 0usize;
        let mut high = section.len() / CONSTRAINT_RECORD;
        while low < high {
            let mid = low + (high - low) / 2;
            if org_of(mid).is_some_and(|org| org.as_bytes() < org_id.as_bytes()) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        section.get(low.saturating_mul(CONSTRAINT_RECORD)..).unwrap_or(&[]).chunks_exact(CONSTRAINT_RECORD).map_while(
            move |record| {
                let org = read_string(self.strings(), read_u32(record, 0)?)?;
                if org != org_id {
                    return None;
                }
                let kind = ConstraintKind::from_wire_id(*record.get(4)?)?;
                Some((kind, read_string(self.strings(), read_u32(record, 5)?)?))
            },
        )
    }

    /// Every constraint as (org id, kind, value), in order.
    pub fn constraints(&self) -> impl Iterator<Item = (&str, ConstraintKind, &str)> + '_ {
        self.section(&self.constraints).chunks_exact(CONSTRAINT_RECORD).filter_map(|record| {
            let org = read_string(self.strings(), read_u32(record, 0)?)?;
            let kind = ConstraintKind::from_wire_id(*record.get(4)?)?;
            Some((org, kind, read_string(self.strings(), read_u32(record, 5)?)?))
        })
    }

    /// Every trusted issuer with its JWKS document as signed, ascending by issuer.
    pub fn issuers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let jwks = self.section(&self.jwks);
        self.section(&self.issuers).chunks_exact(ISSUER_RECORD).filter_map(move |record| {
            let name = read_string(self.strings(), read_u32(record, 0)?)?;
            let offset = usize::try_from(read_u32(record, 4)?).ok()?;
            let len = usize::try_from(read_u32(record, 8)?).ok()?;
            Some((name, jwks.get(offset..offset.checked_add(len)?)?))
        })
    }

    fn issuer_index(&self, issuer: &str) -> Option<usize> {
        let section = self.section(&self.issuers);
        let mut low = 0usize;
        let mut high = section.len() / ISSUER_RECORD;
        while low < high {
            let mid = low + (high - low) / 2;
            let start = mid.checked_mul(ISSUER_RECORD)?;
            let name = read_string(self.strings(), read_u32(section, start)?)?;
            match name.as_bytes().cmp(issuer.as_bytes()) {
                Ordering::Less => low = mid + 1,
                Ordering::Greater => high = mid,
                Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

impl IdentityData for SnapshotView {
    fn card_binding(&self, fingerprint: &Fingerprint) -> Option<CardBinding<'_>> {
        let record = self.find_record(&self.bindings, BINDING_RECORD, &fingerprint.0)?;
        self.binding_of(record).map(|(_, binding)| binding)
    }

    fn is_blocklisted(&self, fingerprint: &Fingerprint) -> bool {
        self.find_record(&self.blocklist, FINGERPRINT_RECORD, &fingerprint.0).is_some()
    }

    fn is_revoked(&self, issuer_dn: &str, serial_hex: &str) -> bool {
        // Most snapshots revoke by fingerprint (blocklist) only: skip the key's SHA-256.
        if self.revoked.is_empty() {
            return false;
        }
        let key = super::format::revoked_serial_key(issuer_dn, serial_hex);
        self.find_record(&self.revoked, FINGERPRINT_RECORD, &key).is_some()
    }

    fn mapped_principal(&self, fingerprint: &Fingerprint) -> Option<&str> {
        let record = self.find_record(&self.principals, PRINCIPAL_RECORD, &fingerprint.0)?;
        read_string(self.strings(), read_u32(record, 32)?)
    }

    fn san_mapping_allowed(&self, kind: SanKind, domain: &str) -> bool {
        let kind_id = san_kind_wire_id(kind);
        let section = self.section(&self.san_rules);
        let mut low = 0usize;
        let mut high = section.len() / SAN_RULE_RECORD;
        while low < high {
            let mid = low + (high - low) / 2;
            let Some(start) = mid.checked_mul(SAN_RULE_RECORD) else { return false };
            let Some(stored_kind) = section.get(start).copied() else { return false };
            let Some(stored) = read_u32(section, start + 1).and_then(|r| read_string(self.strings(), r)) else {
                return false;
            };
            let order = stored_kind.cmp(&kind_id).then_with(|| cmp_lowercased(stored.as_bytes(), domain.as_bytes()));
            match order {
                Ordering::Less => low = mid + 1,
                Ordering::Greater => high = mid,
                Ordering::Equal => return true,
            }
        }
        false
    }

    fn issuer_keys(&self, issuer: &str) -> Option<&Jwks> {
        self.issuer_keys.get(self.issuer_index(issuer)?)
    }

    fn generation(&self) -> u64 {
        self.header.version
    }
}
