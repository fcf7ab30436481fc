//! Turning identity data into snapshot bytes, two ways:
//!
//! - [`encode_content`]: a full build from [`SnapshotContent`] (start-up, resynchronisation);
//! - [`encode_patched`]: the previous snapshot merged with [`Pending`] changes, in one linear
//!   pass over the old bytes. A revoke at a million bindings costs an O(log n) insert into a
//!   small ordered map, then this pass, one SHA-256 and one HSM signature: no sorting, no
//!   database read.

use certbind_shared::encoding::hex_lower;
use certbind_shared::identity::{self, CaKey, CardBinding, Claim, SanKind, CA_KEY_LEN};
use certbind_shared::snapshot::{
    revoked_serial_key, ConstraintKind, EncodeError, EncodeProblem, Section, SnapshotEncoder, SnapshotHeader, SnapshotView,
    UnsignedSnapshot, BINDING_RECORD, BLOCKED_RECORD, PRINCIPAL_RECORD,
};
use certbind_shared::Fingerprint;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::content::*;
use super::validate::*;
use crate::domain::change::{
    BindingRecord, Change, ConstraintRecord, IssuerRecord, MappingRecord, RevokedSerialRecord, SanRuleRecord,
};
use crate::domain::Owner;

#[derive(Debug, Clone, PartialEq, Eq)]
struct BindingValue {
    user_id: String,
    org_id: String,
    enabled: bool,
    claim: Claim,
}

/// Changes not yet in a signed snapshot, keyed like the snapshot's sections. `None` / `false`
/// means removed; the latest change to a key wins.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pending {
    bindings: BTreeMap<Fingerprint, Option<BindingValue>>,
    blocklist: BTreeMap<([u8; 32], Owner), Option<()>>,
    revoked: BTreeMap<([u8; 32], Owner), Option<()>>,
    principals: BTreeMap<([u8; 32], Owner), Option<MappedName>>,
    san_rules: BTreeMap<(SanKind, String, String, Owner), Option<()>>,
    constraints: BTreeMap<(Owner, ConstraintKind, String), Option<()>>,
    issuers: BTreeMap<(String, Owner), Option<Registration>>,
    cas: BTreeMap<CaKey, Option<CaValue>>,
    crl_revoked: BTreeMap<[u8; CA_KEY_LEN], Option<()>>,
}

enum ChangeKind {
    Adds,
    Removes,
}

/// An issuer registration's audiences and JWKS document.
type Registration = (Vec<String>, Vec<u8>);

/// A thumbprint mapping's name as its owner wrote it, and what the mapping rests on.
type MappedName = (String, Claim);

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
            && self.blocklist.is_empty()
            && self.revoked.is_empty()
            && self.principals.is_empty()
            && self.san_rules.is_empty()
            && self.constraints.is_empty()
            && self.issuers.is_empty()
            && self.cas.is_empty()
            && self.crl_revoked.is_empty()
    }

    /// Number of keys touched.
    pub fn len(&self) -> usize {
        self.bindings.len()
            + self.blocklist.len()
            + self.revoked.len()
            + self.principals.len()
            + self.san_rules.len()
            + self.constraints.len()
            + self.issuers.len()
            + self.cas.len()
            + self.crl_revoked.len()
    }

    /// Records `change` after [`validate_change`]; a refused change leaves `self` untouched.
    /// Removals are not checked: one of something that could not be encoded takes out
    /// nothing, harmlessly.
    pub fn apply(&mut self, change: Change) -> Result<(), BuildError> {
        let change_kind = if change.adds() { ChangeKind::Adds } else { ChangeKind::Removes };
        if change.adds() {
            validate_change(&change)?;
        }
        match change {
            Change::UpsertBinding(BindingRecord { fingerprint, user_id, org_id, enabled, claim }) => {
                self.bindings.insert(fingerprint, Some(BindingValue { user_id, org_id, enabled, claim }));
            }
            Change::RemoveBinding { fingerprint } => {
                self.bindings.insert(fingerprint, None);
            }
            Change::Block { fingerprint, owner } => {
                self.blocklist.insert((fingerprint.0, owner), Some(()));
            }
            Change::Unblock { fingerprint, owner } => {
                self.blocklist.insert((fingerprint.0, owner), None);
            }
            Change::RevokeSerial(RevokedSerialRecord { issuer_dn, serial, owner }) => {
                self.revoked.insert((revoked_serial_key(&issuer_dn, &serial), owner), Some(()));
            }
            Change::UnrevokeSerial(RevokedSerialRecord { issuer_dn, serial, owner }) => {
                self.revoked.insert((revoked_serial_key(&issuer_dn, &serial), owner), None);
            }
            Change::MapPrincipal(MappingRecord { fingerprint, owner, principal, claim }) => {
                self.principals.insert((fingerprint.0, owner), Some((principal, claim)));
            }
            Change::UnmapPrincipal { fingerprint, owner } => {
                self.principals.insert((fingerprint.0, owner), None);
            }
            Change::AddSanRule(SanRuleRecord { kind, domain, issuer_dn, owner }) => {
                self.san_rules.insert((kind, domain.to_ascii_lowercase(), issuer_dn, owner), Some(()));
            }
            Change::RemoveSanRule(SanRuleRecord { kind, domain, issuer_dn, owner }) => {
                self.san_rules.insert((kind, domain.to_ascii_lowercase(), issuer_dn, owner), None);
            }
            Change::AddConstraint(ConstraintRecord { owner, kind, value }) => {
                self.constraints.insert((owner, kind, value), Some(()));
            }
            Change::RemoveConstraint(ConstraintRecord { owner, kind, value }) => {
                self.constraints.insert((owner, kind, value), None);
            }
            Change::UpsertIssuer(IssuerRecord { issuer, owner, audiences, jwks_json }) => {
                self.issuers.insert((issuer, owner), Some((audiences, jwks_json)));
            }
            Change::RemoveIssuer { issuer, owner } => {
                self.issuers.insert((issuer, owner), None);
            }
            Change::UpsertCa(ca) => {
                self.cas.insert(CaKey::of(&ca.key), Some(CaValue::of(&ca)));
            }
            Change::RemoveCa { key } => {
                self.cas.insert(CaKey::of(&key), None);
            }
            Change::CrlRevoke { ca, serials } | Change::CrlUnrevoke { ca, serials } => {
                let revoked = matches!(change_kind, ChangeKind::Adds);
                let key = CaKey::of(&ca);
                for serial in &serials {
                    self.crl_revoked.insert(key.revocation_key(serial), revoked.then_some(()));
                }
            }
        }
        Ok(())
    }

    /// Puts back changes whose publication failed, under the ones recorded since: for a key
    /// in both, the newer change stays.
    pub fn restore_older(&mut self, older: Pending) {
        fn keep_newer<K: Ord, V>(newer: &mut BTreeMap<K, V>, older: BTreeMap<K, V>) {
            for (key, value) in older {
                newer.entry(key).or_insert(value);
            }
        }
        keep_newer(&mut self.bindings, older.bindings);
        keep_newer(&mut self.blocklist, older.blocklist);
        keep_newer(&mut self.revoked, older.revoked);
        keep_newer(&mut self.principals, older.principals);
        keep_newer(&mut self.san_rules, older.san_rules);
        keep_newer(&mut self.constraints, older.constraints);
        keep_newer(&mut self.issuers, older.issuers);
        keep_newer(&mut self.cas, older.cas);
        keep_newer(&mut self.crl_revoked, older.crl_revoked);
    }

    /// Every change on its own (removals first: they can only shrink a snapshot), so that
    /// a batch the encoder refuses can be sifted for the changes that cannot go in.
    pub fn into_entries(self) -> Vec<Pending> {
        fn split<K: Ord, V>(
            map: BTreeMap<K, Option<V>>,
            into: &mut Vec<Pending>,
            added: &mut Vec<Pending>,
            put: impl Fn(&mut Pending) -> &mut BTreeMap<K, Option<V>>,
        ) {
            for (key, value) in map {
                let removal = value.is_none();
                let mut one = Pending::default();
                put(&mut one).insert(key, value);
                if removal { into.push(one) } else { added.push(one) }
            }
        }
        let (mut entries, mut added) = (Vec::new(), Vec::new());
        split(self.bindings, &mut entries, &mut added, |p| &mut p.bindings);
        split(self.blocklist, &mut entries, &mut added, |p| &mut p.blocklist);
        split(self.revoked, &mut entries, &mut added, |p| &mut p.revoked);
        split(self.principals, &mut entries, &mut added, |p| &mut p.principals);
        split(self.san_rules, &mut entries, &mut added, |p| &mut p.san_rules);
        split(self.constraints, &mut entries, &mut added, |p| &mut p.constraints);
        split(self.issuers, &mut entries, &mut added, |p| &mut p.issuers);
        split(self.cas, &mut entries, &mut added, |p| &mut p.cas);
        split(self.crl_revoked, &mut entries, &mut added, |p| &mut p.crl_revoked);
        entries.append(&mut added);
        entries
    }

    /// `self` with `other`'s changes added (for a key in both, `other`'s).
    pub fn merge(&mut self, other: Pending) {
        self.bindings.extend(other.bindings);
        self.blocklist.extend(other.blocklist);
        self.revoked.extend(other.revoked);
        self.principals.extend(other.principals);
        self.san_rules.extend(other.san_rules);
        self.constraints.extend(other.constraints);
        self.issuers.extend(other.issuers);
        self.cas.extend(other.cas);
        self.crl_revoked.extend(other.crl_revoked);
    }

    /// Binding and principal keys touched: what leaves garbage in a continued string table.
    pub fn churn(&self) -> usize {
        self.bindings.len() + self.principals.len()
    }

    /// Upper bound of the bytes these changes add to a snapshot.
    fn growth_bound(&self) -> usize {
        let strings = |s: &str| s.len() + 1;
        let bindings: usize = self
            .bindings
            .values()
            .flatten()
            .map(|b| BINDING_RECORD + user_string_len(&b.user_id) + strings(&b.org_id) + 4)
            .sum();
        let org = |o: &Owner| o.org_id().map_or(0, |o| 4 + strings(o));
        let principals: usize =
            self.principals.iter().map(|((_, o), p)| PRINCIPAL_RECORD + org(o) + p.as_ref().map_or(0, |(name, _)| strings(name))).sum();
        let issuers: usize = self
            .issuers
            .iter()
            .map(|((i, o), v)| {
                let blobs = v.as_ref().map_or(0, |(a, j)| j.len() + 2 + a.iter().map(|a| a.len() + 3).sum::<usize>());
                23 + strings(i) + org(o) + blobs
            })
            .sum();
        let constraints: usize = self.constraints.keys().map(|(o, _, v)| 8 + org(o) + strings(v)).sum();
        let rules: usize = self.san_rules.keys().map(|(_, d, i, o)| 12 + strings(d) + strings(i) + org(o)).sum();
        let owned: usize = self.blocklist.keys().chain(self.revoked.keys()).map(|(_, o)| BLOCKED_RECORD + org(o)).sum();
        let cas: usize = self.cas.values().map(|v| 32 + v.as_ref().map_or(0, |v| strings(&v.subject_dn))).sum();
        let crl_revoked = self.crl_revoked.len() * CA_KEY_LEN;
        bindings + principals + issuers + constraints + rules + owned + cas + crl_revoked
    }
}

enum Merged<B, O> {
    Kept(B),
    Changed(O),
}

/// Walks two streams sorted by key, the second overriding the first: `Some` replaces or adds,
/// `None` removes.
fn merge<K: Ord, B, O>(
    base: impl Iterator<Item = (K, B)>,
    overlay: impl Iterator<Item = (K, Option<O>)>,
    mut emit: impl FnMut(K, Merged<B, O>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let mut base = base.peekable();
    let mut overlay = overlay.peekable();
    loop {
        let order = match (base.peek(), overlay.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((b, _)), Some((o, _))) => b.cmp(o),
        };
        if order == Ordering::Less {
            if let Some((key, value)) = base.next() {
                emit(key, Merged::Kept(value))?;
            }
            continue;
        }
        if order == Ordering::Equal {
            base.next();
        }
        if let Some((key, Some(value))) = overlay.next() {
            emit(key, Merged::Changed(value))?;
        }
    }
}

/// Merges a keyed section's records of `base` (key, owner, value) with `pending` changes keyed
/// by (key, owner), in key order; the encoder orders one key's owners itself.
fn merge_owned<'a, V: Clone + 'a>(
    base: impl Iterator<Item = ([u8; 32], Owner, V)>,
    pending: &'a BTreeMap<([u8; 32], Owner), Option<V>>,
    mut push: impl FnMut(&[u8; 32], identity::Owner<&str>, &V) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let mut base = base.peekable();
    let mut pending = pending.iter().peekable();
    loop {
        let key = match (base.peek(), pending.peek()) {
            (None, None) => return Ok(()),
            (Some((b, _, _)), None) => *b,
            (None, Some(((p, _), _))) => *p,
            (Some((b, _, _)), Some(((p, _), _))) => (*b).min(*p),
        };
        let mut group: BTreeMap<Owner, V> = BTreeMap::new();
        while let Some((_, o, v)) = base.next_if(|(k, _, _)| *k == key) {
            group.insert(o, v);
        }
        while let Some(((_, o), v)) = pending.next_if(|((k, _), _)| *k == key) {
            match v {
                Some(v) => group.insert(o.clone(), v.clone()),
                None => group.remove(o),
            };
        }
        for (o, v) in &group {
            push(&key, o.borrowed(), v)?;
        }
    }
}

/// A small section's entries of `base` with `pending` applied; the encoder sorts them.
fn merge_small<K: Ord + Clone, V: Clone>(
    base: impl Iterator<Item = (K, V)>,
    pending: &BTreeMap<K, Option<V>>,
) -> BTreeMap<K, V> {
    let mut merged: BTreeMap<K, V> = base.collect();
    for (key, value) in pending {
        match value {
            Some(value) => merged.insert(key.clone(), value.clone()),
            None => merged.remove(key),
        };
    }
    merged
}

/// How [`encode_patched`] treats the previous snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchMode {
    /// Copy the string table and every unchanged record as they are; encode only the
    /// changes. Strings of removed records stay behind as garbage.
    KeepStrings,
    /// Re-encode every record into a fresh string table, dropping the garbage.
    Compact,
}

/// Copies the runs of `base` records (fixed width, keyed by their first `K` bytes) between
/// the overlay's keys, skipping records the overlay replaces or removes, and pushes the
/// overlay's new values in their place. Cost: one binary search per change, plus `memcpy` —
/// a DoD-sized CRL section is millions of records, and an update touches thousands.
fn patch_fixed<'a, const K: usize, V>(
    encoder: &mut SnapshotEncoder,
    base: &[u8],
    record_len: usize,
    overlay: impl Iterator<Item = (&'a [u8; K], Option<V>)>,
    copy_run: fn(&mut SnapshotEncoder, &[u8]) -> Result<(), EncodeError>,
    mut push_new: impl FnMut(&mut SnapshotEncoder, &[u8; K], V) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let count = base.len() / record_len;
    let key_at = |i: usize| base.get(i * record_len..i * record_len + K);
    let mut copied = 0;
    for (key, value) in overlay {
        let (mut low, mut high) = (copied, count);
        while low < high {
            let mid = low + (high - low) / 2;
            if key_at(mid).is_some_and(|k| k < &key[..]) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        copy_run(encoder, base.get(copied * record_len..low * record_len).unwrap_or(&[]))?;
        copied = if key_at(low) == Some(&key[..]) { low + 1 } else { low };
        if let Some(value) = value {
            push_new(encoder, key, value)?;
        }
    }
    copy_run(encoder, base.get(copied * record_len..).unwrap_or(&[]))
}

/// The previous snapshot with `pending` applied, stamped with `header`.
pub fn encode_patched(
    base: &SnapshotView,
    pending: &Pending,
    header: &SnapshotHeader,
    mode: PatchMode,
) -> Result<UnsignedSnapshot, BuildError> {
    let growth = pending.growth_bound();
    let mut encoder = match mode {
        PatchMode::KeepStrings => SnapshotEncoder::continuing(base, growth + 4096),
        PatchMode::Compact => {
            SnapshotEncoder::with_capacity(base.as_bytes().len() + growth, base.strings_len() + growth)
        }
    };
    if mode == PatchMode::KeepStrings {
        patch_fixed(
            &mut encoder,
            base.section_bytes(Section::Bindings),
            BINDING_RECORD,
            pending.bindings.iter().map(|(k, v)| (&k.0, v.as_ref())),
            SnapshotEncoder::push_binding_records,
            |e, key, b| e.push_binding_claim(&Fingerprint(*key), &b.user_id, &b.org_id, b.enabled, b.claim),
        )?;
    } else {
        merge(base.bindings(), pending.bindings.iter().map(|(k, v)| (*k, v.as_ref())), |fp, item| match item {
            Merged::Kept(CardBinding { user_id, org_id, enabled, claim }) => {
                encoder.push_binding_claim(&fp, user_id.as_str(), org_id, enabled, claim)
            }
            Merged::Changed(b) => encoder.push_binding_claim(&fp, &b.user_id, &b.org_id, b.enabled, b.claim),
        })?;
    }
    // Owned keyed sections and the small ones are re-encoded record by record (they are small
    // next to the bindings; the encoder orders the owners of one key).
    merge_owned(base.blocklist().map(|(fp, o)| (fp.0, Owner::from(o), ())), &pending.blocklist, |key, o, ()| {
        encoder.push_blocked(&Fingerprint(*key), o)
    })?;
    merge_owned(base.revoked().map(|(key, o)| (key, Owner::from(o), ())), &pending.revoked, |key, o, ()| {
        encoder.push_revoked_key(key, o)
    })?;
    merge_owned(
        base.principals().map(|(fp, m)| (fp.0, Owner::from(m.owner), (m.name.to_owned(), m.claim))),
        &pending.principals,
        |key, o, (name, claim)| encoder.push_principal_claim(&Fingerprint(*key), o, name, *claim),
    )?;
    let crl_revoked = base.section_bytes(Section::CrlRevoked);
    if mode == PatchMode::KeepStrings {
        patch_fixed(
            &mut encoder,
            crl_revoked,
            CA_KEY_LEN,
            pending.crl_revoked.iter().map(|(key, change)| (key, *change)),
            SnapshotEncoder::push_crl_revoked_records,
            |encoder, key, ()| encoder.push_crl_revoked_key(key),
        )?;
    } else {
        // A fresh encoder copies no records: every key is pushed again.
        let base_keys = crl_revoked.chunks_exact(CA_KEY_LEN).filter_map(|k| <[u8; CA_KEY_LEN]>::try_from(k).ok()).map(|k| (k, ()));
        merge(base_keys, pending.crl_revoked.iter().map(|(k, v)| (*k, v.as_ref())), |key, _| encoder.push_crl_revoked_key(&key))?;
    }
    let rules = merge_small(
        base.san_rules().map(|(k, d, i, o)| ((k, d.to_owned(), i.to_owned(), Owner::from(o)), ())),
        &pending.san_rules,
    );
    for (kind, domain, issuer_dn, o) in rules.keys() {
        encoder.push_san_rule(*kind, domain, issuer_dn, o.borrowed())?;
    }
    let constraints =
        merge_small(base.all_constraints().map(|(o, k, v)| ((Owner::from(o), k, v.to_owned()), ())), &pending.constraints);
    for (o, kind, value) in constraints.keys() {
        encoder.push_constraint(o.borrowed(), *kind, value)?;
    }
    let issuers = merge_small(
        base.issuers().map(|i| ((i.issuer.to_owned(), Owner::from(i.owner)), (i.audiences.to_vec(), i.jwks.to_vec()))),
        &pending.issuers,
    );
    for ((issuer, o), (audiences, jwks)) in &issuers {
        encoder.push_issuer(issuer, o.borrowed(), audiences, jwks)?;
    }
    let cas = merge_small(
        base.certificate_authorities().map(|ca| {
            let value = CaValue {
                subject_dn: ca.subject_dn.to_owned(),
                require_fresh_crl: ca.require_fresh_crl,
                fail_open: ca.fail_open,
                crl_valid_until: ca.crl_valid_until,
            };
            (ca.key, value)
        }),
        &pending.cas,
    );
    for (key, value) in &cas {
        encoder.push_certificate_authority(&value.authority(*key))?;
    }
    Ok(encoder.finish(header)?)
}

/// Room for `bindings` binding records plus everything in `content`, so the snapshot's
/// buffer is allocated once (growing it by doubling would briefly need three times its size).
fn capacity_for(bindings: usize, binding_strings: usize, content: &SnapshotContent) -> (usize, usize) {
    let org = |o: &Owner| o.org_id().map_or(0, |o| o.len() + 5);
    let strings = binding_strings + content.principals.iter().map(|p| p.principal.len() + 1 + org(&p.owner)).sum::<usize>();
    let records = bindings * BINDING_RECORD
        + (content.blocklist.len() + content.revoked.len()) * BLOCKED_RECORD
        + content.principals.len() * PRINCIPAL_RECORD
        + content.crl_revoked.len() * CA_KEY_LEN
        + content.cas.len() * 64;
    let jwks: usize = content
        .issuers
        .iter()
        .map(|i| i.jwks_json.len() + i.issuer.len() + 26 + i.audiences.iter().map(|a| a.len() + 3).sum::<usize>())
        .sum();
    let other: usize = content.constraints.iter().map(|c| c.value.len() + 9 + org(&c.owner)).sum::<usize>()
        + content.san_rules.iter().map(|r| r.domain.len() + r.issuer_dn.len() + 14 + org(&r.owner)).sum::<usize>()
        + content.cas.iter().map(|c| c.value.subject_dn.len() + 1).sum::<usize>();
    (records + strings + jwks + other + 4096, strings + other + 4096)
}

/// A full build. Sorts `content` in place; refuses duplicates that would make the snapshot
/// ambiguous and JWKS documents the filter could not parse.
pub fn encode_content(content: &mut SnapshotContent, header: &SnapshotHeader) -> Result<UnsignedSnapshot, BuildError> {
    let user_strings: usize = content.bindings.iter().map(|b| user_string_len(&b.user_id)).sum();
    let mut streamed = StreamedBindings::with_room(content.bindings.len(), user_strings, content);

    content.bindings.sort_unstable_by_key(|b| b.fingerprint);
    for pair in content.bindings.windows(2) {
        if let [a, b] = pair {
            if a.fingerprint == b.fingerprint {
                return Err(BuildError::DuplicateBinding { fingerprint: a.fingerprint.to_hex() });
            }
        }
    }
    for b in &content.bindings {
        streamed.push(&b.fingerprint, &b.user_id, &b.org_id, b.enabled, b.claim)?;
    }
    streamed.finish(content, header)
}

/// Bindings streamed straight into the snapshot's buffer in ascending fingerprint order (the
/// database's `ORDER BY`), so a full build from the database never holds the rows: at a
/// million bindings the buffer itself is all the memory it takes.
pub struct StreamedBindings {
    encoder: SnapshotEncoder,
}

impl StreamedBindings {
    /// Room for `bindings` records of ULID users and for `rest`, the snapshot's other sections.
    pub fn new(bindings: usize, rest: &SnapshotContent) -> Self {
        Self::with_room(bindings, 0, rest)
    }

    /// As [`StreamedBindings::new`], with `user_strings` bytes of string table for user ids.
    fn with_room(bindings: usize, user_strings: usize, rest: &SnapshotContent) -> Self {
        let (total, strings) = capacity_for(bindings, user_strings, rest);
        StreamedBindings { encoder: SnapshotEncoder::with_capacity(total, strings) }
    }

    /// The next binding; its fingerprint must be greater than the previous one's.
    pub fn push(
        &mut self,
        fingerprint: &Fingerprint,
        user_id: &str,
        org_id: &str,
        enabled: bool,
        claim: Claim,
    ) -> Result<(), BuildError> {
        check_string("user_id", user_id)?;
        check_string("org_id", org_id)?;
        self.encoder.push_binding_claim(fingerprint, user_id, org_id, enabled, claim).map_err(|e| match e.problem {
            EncodeProblem::NotAscending => BuildError::BindingsOutOfOrder { fingerprint: fingerprint.to_hex() },
            _ => BuildError::Encode(e),
        })
    }

    /// The rest of the snapshot from `rest` (its bindings are not read).
    pub fn finish(self, rest: &mut SnapshotContent, header: &SnapshotHeader) -> Result<UnsignedSnapshot, BuildError> {
        encode_other_sections(self.encoder, rest, header)
    }
}

/// Every section after the bindings, from `content` (sorted in place), then the header.
fn encode_other_sections(
    mut encoder: SnapshotEncoder,
    content: &mut SnapshotContent,
    header: &SnapshotHeader,
) -> Result<UnsignedSnapshot, BuildError> {
    content.blocklist.sort_unstable();
    content.blocklist.dedup();
    for (fp, o) in &content.blocklist {
        check_owner(o)?;
        encoder.push_blocked(fp, o.borrowed())?;
    }

    let mut revoked: Vec<([u8; 32], &Owner)> =
        content.revoked.iter().map(|r| (revoked_serial_key(&r.issuer_dn, &r.serial), &r.owner)).collect();
    revoked.sort_unstable();
    revoked.dedup();
    for (key, o) in &revoked {
        check_owner(o)?;
        encoder.push_revoked_key(key, o.borrowed())?;
    }

    content.principals.sort_unstable_by(|a, b| (a.fingerprint, &a.owner).cmp(&(b.fingerprint, &b.owner)));
    for pair in content.principals.windows(2) {
        if let [a, b] = pair {
            if (a.fingerprint, &a.owner) == (b.fingerprint, &b.owner) && (&a.principal, a.claim) != (&b.principal, b.claim) {
                return Err(BuildError::DuplicatePrincipal { fingerprint: hex_lower(&a.fingerprint.0) });
            }
        }
    }
    content.principals.dedup();
    for p in &content.principals {
        check_principal(&p.owner, &p.principal)?;
        encoder.push_principal_claim(&p.fingerprint, p.owner.borrowed(), &p.principal, p.claim)?;
    }

    content.crl_revoked.sort_unstable();
    content.crl_revoked.dedup();
    for key in &content.crl_revoked {
        encoder.push_crl_revoked_key(key)?;
    }

    let mut rules: Vec<(SanKind, String, &str, &Owner)> = content
        .san_rules
        .iter()
        .map(|r| (r.kind, r.domain.to_ascii_lowercase(), r.issuer_dn.as_str(), &r.owner))
        .collect();
    rules.sort_unstable();
    rules.dedup();
    for (kind, domain, issuer_dn, o) in &rules {
        check_string("domain", domain)?;
        check_string("issuer_dn", issuer_dn)?;
        check_owner(o)?;
        encoder.push_san_rule(*kind, domain, issuer_dn, o.borrowed())?;
    }

    let mut constraints: Vec<(&Owner, ConstraintKind, &str)> =
        content.constraints.iter().map(|c| (&c.owner, c.kind, c.value.as_str())).collect();
    constraints.sort_unstable();
    constraints.dedup();
    for (o, kind, value) in constraints {
        check_owner(o)?;
        check_string("value", value)?;
        encoder.push_constraint(o.borrowed(), kind, value)?;
    }

    content.issuers.sort_unstable_by(|a, b| (&a.issuer, &a.owner).cmp(&(&b.issuer, &b.owner)));
    for pair in content.issuers.windows(2) {
        if let [a, b] = pair {
            if (&a.issuer, &a.owner) == (&b.issuer, &b.owner) {
                return Err(BuildError::DuplicateIssuer { issuer: a.issuer.clone() });
            }
        }
    }
    for issuer in &content.issuers {
        check_string("issuer", &issuer.issuer)?;
        check_owner(&issuer.owner)?;
        check_jwks(&issuer.issuer, &issuer.jwks_json)?;
        encoder.push_issuer(&issuer.issuer, issuer.owner.borrowed(), &issuer.audiences, &issuer.jwks_json)?;
    }

    content.cas.sort_unstable_by_key(|ca| ca.key);
    content.cas.dedup_by_key(|ca| ca.key);
    for ca in &content.cas {
        check_string("subject_dn", &ca.value.subject_dn)?;
        encoder.push_certificate_authority(&ca.value.authority(ca.key))?;
    }
    Ok(encoder.finish(header)?)
}
