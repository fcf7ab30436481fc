//! Reads over a view's checked records: every record of a section in order (for the producer
//! and inspection), and the [`IdentityData`] lookups the decision makes per request: binary
//! searches over sorted records, or reads of what the view read whole when it opened.

use super::SnapshotView;
use crate::encoding::ulid_render;
use crate::fingerprint::Fingerprint;
use crate::identity::{
    CaKey, CardBinding, CertificateAuthority, Claim, ConstraintKind, IdentityData, Owner, OwnerConstraints, SanKind,
    ThumbprintMapping, TokenIssuer, UserId, CA_KEY_LEN,
};
use crate::snapshot::format::{
    bucket_of, principal_name_ref, read_string, read_u24, read_u32, read_u64, revoked_serial_key, san_kind_from_wire_id, san_kind_wire_id,
    Section, CA_CRL_HELD, CA_FAIL_OPEN, CA_FLAGS_AT, CA_RECORD, CA_REQUIRE_FRESH_CRL, CA_SUBJECT_AT, CA_VALID_UNTIL_AT,
    CRL_REVOKED_RECORD, BINDING_ENABLED, BINDING_FLAGS_AT, BINDING_ORG_AT, BINDING_RECORD, BINDING_UNVERIFIED, BINDING_USER_AT, BINDING_USER_TEXT,
    BLOCKED_RECORD, CONSTRAINT_RECORD, FINGERPRINT_LEN, ISSUER_RECORD, ORG_RECORD, PLATFORM_OWNER,
    PRINCIPAL_RECORD, REVOKED_RECORD, SAN_RULE_RECORD,
};
use std::cmp::Ordering;

/// Compares two byte strings, the second one ASCII-lowercased on the fly.
fn cmp_lowercased(stored: &[u8], query: &[u8]) -> Ordering {
    let query = query.iter().map(u8::to_ascii_lowercase);
    stored.iter().copied().cmp(query)
}

/// The first record in `low..high` whose key is not below `key`. Every key of a keyed section
/// is a SHA-256 output, so keys are spread evenly: the first probes interpolate on the key's
/// leading 8 bytes and land within a few dozen records of the answer (a few cache lines, where
/// bisecting a 96 MB section touches a dozen far-apart ones); the search then bisects what is
/// left. Each probe is an ordinary step of a lower-bound search, so any order of bytes still
/// gives the right answer, only more slowly.
fn lower_bound<'a>(mut low: usize, mut high: usize, key: &[u8], key_at: &impl Fn(usize) -> Option<&'a [u8]>) -> usize {
    let below = |i: usize| key_at(i).is_some_and(|k| k < key);
    let value = |bytes: &[u8]| bytes.iter().take(8).fold(0u64, |v, b| v << 8 | u64::from(*b)) << (8 * 8usize.saturating_sub(bytes.len().min(8)));
    let target = value(key);
    for _ in 0..2 {
        if high - low <= 8 {
            break;
        }
        let (Some(first), Some(last)) = (key_at(low), key_at(high - 1)) else { break };
        let (first, last) = (value(first), value(last));
        if target <= first || target >= last || last <= first {
            break;
        }
        let span = u128::from(target - first) * (high - 1 - low) as u128 / u128::from(last - first);
        let guess = low + usize::try_from(span).unwrap_or(0).min(high - 1 - low);
        // Bracket the answer with steps doubling away from the guess.
        let mut step = 1usize;
        if below(guess) {
            low = guess + 1;
            while low + step < high && below(low + step - 1) {
                low += step;
                step *= 2;
            }
            high = high.min(low + step);
        } else {
            high = guess;
            while high > low + step && !below(high - step) {
                high -= step;
                step *= 2;
            }
            low = low.max(high.saturating_sub(step));
        }
    }
    while low < high {
        let mid = low + (high - low) / 2;
        if below(mid) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

/// One issuer registration as the snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerEntry<'a> {
    pub issuer: &'a str,
    pub owner: Owner<&'a str>,
    pub audiences: &'a [String],
    /// The JWKS document as signed.
    pub jwks: &'a [u8],
}

impl SnapshotView {
    fn strings(&self) -> &[u8] {
        self.section_bytes(Section::Strings)
    }

    fn org_name(&self, index: u32) -> Option<&str> {
        self.checker().org_name(index)
    }

    /// The owner an owner field names (checked when the view opened).
    fn owner_at(&self, index: u32) -> Owner<&str> {
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
    fn owner_is(&self, index: u32, owner: Owner<&str>) -> bool {
        match owner {
            Owner::Platform => index == PLATFORM_OWNER,
            Owner::Org(org) => index != PLATFORM_OWNER && self.org_name(index) == Some(org),
        }
    }

    /// Every org id, in index order.
    pub fn orgs(&self) -> impl Iterator<Item = &str> + '_ {
        self.section_bytes(Section::Orgs)
            .chunks_exact(ORG_RECORD)
            .filter_map(|record| read_string(self.strings(), read_u32(record, 0)?))
    }

    /// Binary search over sorted fixed-width records for the run whose first bytes are `key`
    /// (one record in the bindings and CRL revocations; one per owner elsewhere).
    fn find_run(&self, section: Section, record_len: usize, key: &[u8]) -> &[u8] {
        let records = self.section_bytes(section);
        let count = records.len() / record_len;
        let key_at = |i: usize| records.get(i * record_len..i * record_len + key.len());
        // The key's bucket bounds the search, when the section is indexed.
        let bucket = bucket_of(key);
        let index = section.keyed_index().and_then(|k| self.derived.bucket_starts.get(k)).and_then(Option::as_ref);
        let bounds = index.and_then(|starts| Some((*starts.get(bucket)?, *starts.get(bucket + 1)?)));
        let (low, high) = match bounds {
            Some((start, end)) => (usize::try_from(start).unwrap_or(0), usize::try_from(end).unwrap_or(count).min(count)),
            None => (0usize, count),
        };
        let low = lower_bound(low, high, key, &key_at);
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
        let claim = Claim::from_verified(flags & BINDING_UNVERIFIED == 0);
        Some((fingerprint, CardBinding { user_id, org_id, enabled, claim }))
    }

    /// Every binding, in fingerprint order.
    pub fn bindings(&self) -> impl Iterator<Item = (Fingerprint, CardBinding<'_>)> + '_ {
        self.section_bytes(Section::Bindings).chunks_exact(BINDING_RECORD).filter_map(|record| self.binding_of(record))
    }

    fn owned_key(&self, record: &[u8]) -> Option<([u8; 32], Owner<&str>)> {
        Some((record.get(..FINGERPRINT_LEN)?.try_into().ok()?, self.owner_at(read_u24(record, FINGERPRINT_LEN)?)))
    }

    /// Every blocklist entry with its owner, in record order.
    pub fn blocklist(&self) -> impl Iterator<Item = (Fingerprint, Owner<&str>)> + '_ {
        self.section_bytes(Section::Blocklist)
            .chunks_exact(BLOCKED_RECORD)
            .filter_map(|record| self.owned_key(record).map(|(k, o)| (Fingerprint(k), o)))
    }

    /// Every revoked-serial key ([`crate::snapshot::revoked_serial_key`]) with its owner, in record order.
    pub fn revoked(&self) -> impl Iterator<Item = ([u8; 32], Owner<&str>)> + '_ {
        self.section_bytes(Section::Revoked).chunks_exact(REVOKED_RECORD).filter_map(|record| self.owned_key(record))
    }

    /// Every thumbprint mapping: fingerprint, owner and name as written, in record order.
    pub fn principals(&self) -> impl Iterator<Item = (Fingerprint, ThumbprintMapping<'_>)> + '_ {
        self.section_bytes(Section::Principals).chunks_exact(PRINCIPAL_RECORD).filter_map(|record| {
            let (key, owner) = self.owned_key(record)?;
            let (reference, claim) = principal_name_ref(record)?;
            Some((Fingerprint(key), ThumbprintMapping { owner, name: read_string(self.strings(), reference)?, claim }))
        })
    }

    /// Every CRL revocation key ([`CaKey::revocation_key`]), in record order.
    pub fn crl_revoked(&self) -> impl Iterator<Item = [u8; CA_KEY_LEN]> + '_ {
        self.section_bytes(Section::CrlRevoked).chunks_exact(CRL_REVOKED_RECORD).filter_map(|r| r.try_into().ok())
    }

    pub fn crl_revoked_count(&self) -> usize {
        self.section_bytes(Section::CrlRevoked).len() / CRL_REVOKED_RECORD
    }

    fn certificate_authority_at(&self, record: &[u8]) -> Option<CertificateAuthority<'_>> {
        let key = CaKey(record.get(..CA_KEY_LEN)?.try_into().ok()?);
        let flags = *record.get(CA_FLAGS_AT)?;
        let until = read_u64(record, CA_VALID_UNTIL_AT).map(|v| i64::from_le_bytes(v.to_le_bytes()))?;
        Some(CertificateAuthority {
            key,
            subject_dn: read_string(self.strings(), read_u32(record, CA_SUBJECT_AT)?)?,
            require_fresh_crl: flags & CA_REQUIRE_FRESH_CRL != 0,
            fail_open: flags & CA_FAIL_OPEN != 0,
            crl_valid_until: (flags & CA_CRL_HELD != 0).then_some(until),
        })
    }

    /// Every registered CA, ascending by key.
    pub fn certificate_authorities(&self) -> impl Iterator<Item = CertificateAuthority<'_>> + '_ {
        self.section_bytes(Section::Cas).chunks_exact(CA_RECORD).filter_map(|r| self.certificate_authority_at(r))
    }

    fn san_rule_at(&self, record: &[u8]) -> Option<(SanKind, &str, &str, Owner<&str>)> {
        let kind = san_kind_from_wire_id(*record.first()?)?;
        let domain = read_string(self.strings(), read_u32(record, 1)?)?;
        let issuer = read_string(self.strings(), read_u32(record, 5)?)?;
        Some((kind, domain, issuer, self.owner_at(read_u24(record, 9)?)))
    }

    /// Every SAN mapping rule: kind, domain, issuer DN, owner; in record order.
    pub fn san_rules(&self) -> impl Iterator<Item = (SanKind, &str, &str, Owner<&str>)> + '_ {
        self.section_bytes(Section::SanRules).chunks_exact(SAN_RULE_RECORD).filter_map(|record| self.san_rule_at(record))
    }

    /// Every constraint as (owner, kind, value), in record order.
    pub fn all_constraints(&self) -> impl Iterator<Item = (Owner<&str>, ConstraintKind, &str)> + '_ {
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
        let key = revoked_serial_key(issuer_dn, serial_hex);
        self.find_run(Section::Revoked, REVOKED_RECORD, &key)
            .chunks_exact(REVOKED_RECORD)
            .any(|record| read_u24(record, FINGERPRINT_LEN).is_some_and(|owner| self.owner_applies(owner, org)))
    }

    fn has_revoked_serials(&self, org: Option<&str>) -> bool {
        self.derived.revoked_owners.get(&PLATFORM_OWNER).is_some_and(|n| *n > 0)
            || org.is_some_and(|org| self.derived.revoked_orgs.contains(org))
    }

    fn certificate_authority(&self, key: &CaKey) -> Option<CertificateAuthority<'_>> {
        let record = self.find_run(Section::Cas, CA_RECORD, &key.0);
        self.certificate_authority_at(record.get(..CA_RECORD)?)
    }

    fn certificate_authorities_named<'a>(&'a self, subject_dn: &str, each: &mut dyn FnMut(CertificateAuthority<'a>)) {
        // At most `MAX_CAS` records, read only for certificates without an AuthorityKeyIdentifier.
        self.certificate_authorities().filter(|ca| ca.subject_dn == subject_dn).for_each(each);
    }

    fn has_certificate_authorities(&self) -> bool {
        !self.section_bytes(Section::Cas).is_empty()
    }

    fn is_crl_revoked(&self, ca: &CaKey, serial_hex: &str) -> bool {
        if self.crl_revoked_count() == 0 {
            return false;
        }
        !self.find_run(Section::CrlRevoked, CRL_REVOKED_RECORD, &ca.revocation_key(serial_hex)).is_empty()
    }

    fn thumbprint_mappings<'a>(&'a self, fingerprint: &Fingerprint, each: &mut dyn FnMut(ThumbprintMapping<'a>)) {
        let run = self.find_run(Section::Principals, PRINCIPAL_RECORD, &fingerprint.0);
        for record in run.chunks_exact(PRINCIPAL_RECORD) {
            let owner = read_u24(record, FINGERPRINT_LEN).map(|o| self.owner_at(o));
            let Some((reference, claim)) = principal_name_ref(record) else { continue };
            let name = read_string(self.strings(), reference);
            if let (Some(owner), Some(name)) = (owner, name) {
                each(ThumbprintMapping { owner, name, claim });
            }
        }
    }

    fn san_rule_owners<'a>(&'a self, kind: SanKind, domain: &str, issuer_dn: &str, each: &mut dyn FnMut(Owner<&'a str>)) {
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

    fn constraints(&self, owner: Owner<&str>) -> Option<&OwnerConstraints> {
        match owner {
            Owner::Platform => self.derived.platform_constraints.as_ref(),
            Owner::Org(org) => self.derived.org_constraints.get(org),
        }
    }

    fn token_issuer(&self, issuer: &str, owner: Owner<&str>) -> Option<TokenIssuer<'_>> {
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

#[cfg(test)]
mod tests {
    use super::lower_bound;
    use sha2::{Digest, Sha256};

    /// Against a linear scan: evenly spread keys, keys bunched at one end, runs of one key.
    #[test]
    fn the_interpolating_search_finds_what_a_scan_finds() {
        let spread: Vec<[u8; 16]> = (0u32..3_000).map(|i| Sha256::digest(i.to_le_bytes())[..16].try_into().unwrap()).collect();
        let bunched: Vec<[u8; 16]> = (0u32..3_000)
            .map(|i| {
                let mut key = [0u8; 16];
                key[0] = if i < 2_990 { 0 } else { 0xff };
                key[12..].copy_from_slice(&i.to_be_bytes());
                key
            })
            .collect();
        let runs: Vec<[u8; 16]> = (0u32..3_000).map(|i| [u8::try_from(i / 100).unwrap(); 16]).collect();
        for mut keys in [spread, bunched, runs] {
            keys.sort_unstable();
            let key_at = |i: usize| keys.get(i).map(|k| &k[..]);
            let probes = keys.iter().step_by(7).copied().chain([[0u8; 16], [0xff; 16], [0x80; 16]]);
            for probe in probes {
                let expected = keys.iter().position(|k| k >= &probe).unwrap_or(keys.len());
                assert_eq!(lower_bound(0, keys.len(), &probe, &key_at), expected, "{probe:?}");
                let mut near = probe;
                near[15] ^= 1;
                let expected = keys.iter().position(|k| k >= &near).unwrap_or(keys.len());
                assert_eq!(lower_bound(0, keys.len(), &near, &key_at), expected, "{near:?}");
            }
        }
    }
}
