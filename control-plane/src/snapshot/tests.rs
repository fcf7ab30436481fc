//! The store against plain collections: patched snapshots must equal full rebuilds, versions
//! must fold in order, and failures must lose nothing.

use super::builder::*;
use super::content::*;
use super::validate::*;
use crate::domain::change::{
    BindingRecord, CaRecord, Change, ConstraintRecord, IssuerRecord, MappingRecord, RevokedSerialRecord, SanRuleRecord,
};
use super::deltas::DeltaLimits;
use super::error::StoreError;
use super::store::*;
use crate::signer::{public_key_json, Signer, SoftwareSigner};
use certbind_shared::identity::{CaKey, Claim, IdentityData, Owner, SanKind};
use certbind_shared::snapshot::{
    revoked_serial_key, ConstraintKind, PinnedKey, SnapshotError, SnapshotHeader, SnapshotVerifier, SnapshotView,
};
use crate::domain::Owner as DbOwner;
use certbind_shared::Fingerprint;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;


fn signer(seed: u8) -> Arc<SoftwareSigner> {
    Arc::new(SoftwareSigner::from_secret(&[seed; 32]).unwrap())
}

fn jwks(seed: u8) -> Vec<u8> {
    let jwk = public_key_json(signer(seed).as_ref())["jwk"].clone();
    serde_json::to_vec(&serde_json::json!({ "keys": [jwk] })).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn verifier_for(signers: &[&dyn Signer]) -> SnapshotVerifier {
    SnapshotVerifier::new(signers.iter().map(|s| PinnedKey::from_spki_der(&s.public_key_der()).unwrap())).unwrap()
}

/// The identity data as plain ordered collections, updated by the same changes.
#[derive(Default, Clone)]
struct Oracle {
    bindings: BTreeMap<Fingerprint, (String, String, bool, Claim)>,
    blocklist: BTreeSet<(Fingerprint, DbOwner)>,
    revoked: BTreeMap<([u8; 32], DbOwner), (String, String)>,
    principals: BTreeMap<(Fingerprint, DbOwner), (String, Claim)>,
    san_rules: BTreeSet<(SanKind, String, String, DbOwner)>,
    constraints: BTreeSet<(DbOwner, ConstraintKind, String)>,
    issuers: BTreeMap<(String, DbOwner), (Vec<String>, Vec<u8>)>,
    cas: BTreeMap<CaKey, CaValue>,
    crl_revoked: BTreeSet<[u8; 16]>,
}

fn owned(owner: Owner<&str>) -> DbOwner {
    DbOwner::from(owner)
}

impl Oracle {
    fn apply(&mut self, change: &Change) {
        match change.clone() {
            Change::UpsertBinding(BindingRecord { fingerprint, user_id, org_id, enabled, claim }) => {
                self.bindings.insert(fingerprint, (user_id, org_id, enabled, claim));
            }
            Change::RemoveBinding { fingerprint } => {
                self.bindings.remove(&fingerprint);
            }
            Change::Block { fingerprint, owner } => {
                self.blocklist.insert((fingerprint, owner));
            }
            Change::Unblock { fingerprint, owner } => {
                self.blocklist.remove(&(fingerprint, owner));
            }
            Change::RevokeSerial(RevokedSerialRecord { issuer_dn, serial, owner }) => {
                self.revoked.insert((revoked_serial_key(&issuer_dn, &serial), owner), (issuer_dn, serial));
            }
            Change::UnrevokeSerial(RevokedSerialRecord { issuer_dn, serial, owner }) => {
                self.revoked.remove(&(revoked_serial_key(&issuer_dn, &serial), owner));
            }
            Change::MapPrincipal(MappingRecord { fingerprint, owner, principal, claim }) => {
                self.principals.insert((fingerprint, owner), (principal, claim));
            }
            Change::UnmapPrincipal { fingerprint, owner } => {
                self.principals.remove(&(fingerprint, owner));
            }
            Change::AddSanRule(SanRuleRecord { kind, domain, issuer_dn, owner }) => {
                self.san_rules.insert((kind, domain, issuer_dn, owner));
            }
            Change::RemoveSanRule(SanRuleRecord { kind, domain, issuer_dn, owner }) => {
                self.san_rules.remove(&(kind, domain, issuer_dn, owner));
            }
            Change::AddConstraint(ConstraintRecord { owner, kind, value }) => {
                self.constraints.insert((owner, kind, value));
            }
            Change::RemoveConstraint(ConstraintRecord { owner, kind, value }) => {
                self.constraints.remove(&(owner, kind, value));
            }
            Change::UpsertIssuer(IssuerRecord { issuer, owner, audiences, jwks_json }) => {
                self.issuers.insert((issuer, owner), (audiences, jwks_json));
            }
            Change::RemoveIssuer { issuer, owner } => {
                self.issuers.remove(&(issuer, owner));
            }
            Change::UpsertCa(ca) => {
                let value = CaValue {
                    subject_dn: ca.subject_dn.clone(),
                    require_fresh_crl: ca.require_fresh_crl,
                    fail_open: ca.fail_open,
                    crl_valid_until: ca.crl_valid_until,
                };
                self.cas.insert(CaKey::of(&ca.key), value);
            }
            Change::RemoveCa { key } => {
                self.cas.remove(&CaKey::of(&key));
            }
            Change::CrlRevoke { ca, serials } => {
                self.crl_revoked.extend(serials.iter().map(|s| crl_revocation_key(&ca, s)));
            }
            Change::CrlUnrevoke { ca, serials } => {
                for serial in &serials {
                    self.crl_revoked.remove(&crl_revocation_key(&ca, serial));
                }
            }
        }
    }

    fn content(&self) -> SnapshotContent {
        SnapshotContent {
            bindings: self
                .bindings
                .iter()
                .map(|(fp, (u, o, e, c))| BindingRecord {
                    fingerprint: *fp,
                    user_id: u.clone(),
                    org_id: o.clone(),
                    enabled: *e,
                    claim: *c,
                })
                .collect(),
            blocklist: self.blocklist.iter().cloned().collect(),
            revoked: self
                .revoked
                .iter()
                .map(|((_, o), (d, s))| RevokedSerialRecord { issuer_dn: d.clone(), serial: s.clone(), owner: o.clone() })
                .collect(),
            principals: self
                .principals
                .iter()
                .map(|((fp, o), (p, c))| MappingRecord { fingerprint: *fp, owner: o.clone(), principal: p.clone(), claim: *c })
                .collect(),
            san_rules: self
                .san_rules
                .iter()
                .map(|(k, d, i, o)| SanRuleRecord { kind: *k, domain: d.clone(), issuer_dn: i.clone(), owner: o.clone() })
                .collect(),
            constraints: self
                .constraints
                .iter()
                .map(|(o, k, v)| ConstraintRecord { owner: o.clone(), kind: *k, value: v.clone() })
                .collect(),
            issuers: self
                .issuers
                .iter()
                .map(|((i, o), (a, j))| IssuerRecord {
                    issuer: i.clone(),
                    owner: o.clone(),
                    audiences: a.clone(),
                    jwks_json: j.clone(),
                })
                .collect(),
            cas: self.cas.iter().map(|(key, value)| CaEntry { key: *key, value: value.clone() }).collect(),
            crl_revoked: self.crl_revoked.iter().copied().collect(),
        }
    }

    /// Whether `view` holds exactly this data.
    fn assert_matches(&self, view: &SnapshotView) {
        let bindings: Vec<(Fingerprint, (String, String, bool, Claim))> = view
            .bindings()
            .map(|(fp, b)| (fp, (b.user_id.as_str().to_owned(), b.org_id.to_owned(), b.enabled, b.claim)))
            .collect();
        assert_eq!(bindings, self.bindings.clone().into_iter().collect::<Vec<_>>());
        // Records of one key are ordered by owner index in the snapshot: compare as sets.
        let blocklist: BTreeSet<(Fingerprint, DbOwner)> = view.blocklist().map(|(f, o)| (f, owned(o))).collect();
        assert_eq!(blocklist, self.blocklist);
        let revoked: BTreeSet<([u8; 32], DbOwner)> = view.revoked().map(|(k, o)| (k, owned(o))).collect();
        assert_eq!(revoked, self.revoked.keys().cloned().collect());
        let principals: BTreeMap<(Fingerprint, DbOwner), (String, Claim)> =
            view.principals().map(|(f, m)| ((f, owned(m.owner)), (m.name.to_owned(), m.claim))).collect();
        assert_eq!(principals, self.principals);
        let rules: BTreeSet<(SanKind, String, String, DbOwner)> =
            view.san_rules().map(|(k, d, i, o)| (k, d.to_owned(), i.to_owned(), owned(o))).collect();
        assert_eq!(rules, self.san_rules);
        let constraints: BTreeSet<(DbOwner, ConstraintKind, String)> =
            view.all_constraints().map(|(o, k, v)| (owned(o), k, v.to_owned())).collect();
        assert_eq!(constraints, self.constraints);
        let issuers: BTreeMap<(String, DbOwner), (Vec<String>, Vec<u8>)> = view
            .issuers()
            .map(|i| ((i.issuer.to_owned(), owned(i.owner)), (i.audiences.to_vec(), i.jwks.to_vec())))
            .collect();
        assert_eq!(issuers, self.issuers);
        let cas: BTreeMap<CaKey, CaValue> = view
            .certificate_authorities()
            .map(|ca| {
                let value = CaValue {
                    subject_dn: ca.subject_dn.to_owned(),
                    require_fresh_crl: ca.require_fresh_crl,
                    fail_open: ca.fail_open,
                    crl_valid_until: ca.crl_valid_until,
                };
                (ca.key, value)
            })
            .collect();
        assert_eq!(cas, self.cas);
        let crl_revoked: Vec<[u8; 16]> = view.crl_revoked().collect();
        assert_eq!(crl_revoked, self.crl_revoked.iter().copied().collect::<Vec<_>>(), "ascending, as the oracle");
    }
}

struct Counter(u64);

impl Counter {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// The platform or one of a few orgs.
fn random_owner(rng: &mut Counter) -> DbOwner {
    match rng.next() % 4 {
        0 => DbOwner::Platform,
        n => DbOwner::Org(format!("o{n}")),
    }
}

fn random_change(rng: &mut Counter, known: &[Fingerprint]) -> Change {
    let existing = known[(rng.next() as usize) % known.len()];
    let fresh = Fingerprint::synthetic("fresh", rng.next());
    let pick = if rng.next() & 1 == 0 { existing } else { fresh };
    let owner = random_owner(rng);
    let n = rng.next();
    // Two CAs of one DN, told apart by their keys.
    let ca_key = certbind_shared::certificate::KeyIdentifier::new(&[0xca, (n % 2) as u8]).unwrap();
    match n % 18 {
        0 | 1 => Change::UpsertBinding(BindingRecord {
            fingerprint: pick,
            // ULIDs (stored as bits) and free-form ids (stored as strings) side by side.
            user_id: if n.is_multiple_of(4) { format!("u{}", n % 997) } else { format!("01HV{:022}", n % 997) },
            org_id: format!("o{}", n % 7),
            enabled: n % 3 != 1,
            // Bound by fields (unverified) now and then, beside bindings by PEM.
            claim: Claim::from_verified(n % 5 != 2),
        }),
        2 | 3 => Change::RemoveBinding { fingerprint: pick },
        4 => Change::Block { fingerprint: pick, owner },
        5 => Change::Unblock { fingerprint: existing, owner },
        6 => Change::RevokeSerial(RevokedSerialRecord { issuer_dn: format!("CN=CA {}", n % 3), serial: format!("{:x}", n % 50), owner }),
        7 => Change::UnrevokeSerial(RevokedSerialRecord { issuer_dn: format!("CN=CA {}", n % 3), serial: format!("{:x}", n % 50), owner }),
        8 => Change::MapPrincipal(MappingRecord {
            fingerprint: pick,
            // The platform's mappings claim nothing: never unverified.
            claim: Claim::from_verified(owner.is_platform() || n % 5 != 2),
            owner,
            principal: format!("svc:{}", n % 11),
        }),
        9 => Change::UnmapPrincipal { fingerprint: existing, owner },
        10 => Change::AddSanRule(SanRuleRecord {
            kind: if n & 1 == 0 { SanKind::Email } else { SanKind::Upn },
            domain: format!("d{}.mil", n % 5),
            issuer_dn: format!("CN=CA {}", n % 2),
            owner,
        }),
        11 => Change::RemoveSanRule(SanRuleRecord {
            kind: if n & 1 == 0 { SanKind::Email } else { SanKind::Upn },
            domain: format!("d{}.mil", n % 5),
            issuer_dn: format!("CN=CA {}", n % 2),
            owner,
        }),
        12 => Change::AddConstraint(ConstraintRecord { owner, kind: ConstraintKind::RequiredPolicyOid, value: format!("1.2.{}", n % 3) }),
        14 => Change::UpsertCa(CaRecord {
            key: ca_key,
            subject_dn: "CN=ICAM Test Card Signing CA".into(),
            require_fresh_crl: n % 3 != 0,
            fail_open: n % 5 == 0,
            crl_valid_until: (n % 4 != 0).then_some(1_800_000_000 + (n % 100) as i64),
        }),
        15 => Change::RemoveCa { key: ca_key },
        16 => Change::CrlRevoke { ca: ca_key, serials: (0..1 + n % 40).map(|i| format!("{:x}", 0x1000 + (n + i * 7) % 90)).collect() },
        17 => Change::CrlUnrevoke { ca: ca_key, serials: (0..1 + n % 20).map(|i| format!("{:x}", 0x1000 + (n + i * 3) % 90)).collect() },
        _ => {
            if n & 1 == 0 {
                Change::UpsertIssuer(IssuerRecord {
                    issuer: format!("https://idp{}.example", n % 3),
                    owner,
                    audiences: (0..n % 3).map(|a| format!("api://{a}")).collect(),
                    jwks_json: jwks((n % 5) as u8),
                })
            } else {
                Change::RemoveIssuer { issuer: format!("https://idp{}.example", n % 3), owner }
            }
        }
    }
}

fn starting_oracle(bindings: u64) -> Oracle {
    let mut oracle = Oracle::default();
    for i in 0..bindings {
        let claim = Claim::from_verified(i % 3 != 0);
        oracle.bindings.insert(Fingerprint::synthetic("bind", i), (format!("01HV{i:022}"), format!("o{}", i % 7), i % 5 != 0, claim));
    }
    oracle.blocklist.insert((Fingerprint::synthetic("bind", 1), DbOwner::Org("o1".into())));
    oracle.blocklist.insert((Fingerprint::synthetic("bind", 1), DbOwner::Platform));
    oracle.revoked.insert((revoked_serial_key("CN=CA 0", "1"), DbOwner::Platform), ("CN=CA 0".into(), "1".into()));
    oracle.principals.insert((Fingerprint::synthetic("bind", 2), DbOwner::Org("o2".into())), ("svc:seed".into(), Claim::Unverified));
    oracle.principals.insert((Fingerprint::synthetic("bind", 4), DbOwner::Org("o3".into())), ("svc:seen".into(), Claim::Verified));
    oracle.san_rules.insert((SanKind::Email, "example.mil".into(), "CN=CA 0".into(), DbOwner::Platform));
    oracle.constraints.insert((DbOwner::Org("o1".into()), ConstraintKind::AllowedIssuerDn, "CN=CA 0".into()));
    oracle.issuers.insert(("https://idp0.example".into(), DbOwner::Platform), (Vec::new(), jwks(1)));
    let ca = certbind_shared::certificate::KeyIdentifier::new(&[0xca, 0]).unwrap();
    let value = CaValue { subject_dn: "CN=ICAM Test Card Signing CA".into(), require_fresh_crl: true, fail_open: false, crl_valid_until: Some(1_800_000_000) };
    oracle.cas.insert(CaKey::of(&ca), value);
    oracle.crl_revoked.extend((0..500u32).map(|i| crl_revocation_key(&ca, &format!("{:x}", 0x9000 + i))));
    oracle
}

#[test]
fn patched_snapshots_equal_full_rebuilds() {
    let key = signer(1);
    let verifier = verifier_for(&[key.as_ref()]);
    let store = SnapshotStore::new(key.clone(), StoreSettings::default());
    let mut oracle = starting_oracle(2_000);
    let first = store.load(oracle.content(), 10).unwrap();
    oracle.assert_matches(first.view());
    let known: Vec<Fingerprint> = oracle.bindings.keys().copied().collect();
    let mut rng = Counter(99);
    let mut version = 10;
    let mut held = Some(first.version());
    for round in 0..40 {
        for _ in 0..1 + rng.next() % 25 {
            version += 1;
            let changes: Vec<Change> = (0..1 + rng.next() % 3).map(|_| random_change(&mut rng, &known)).collect();
            for change in &changes {
                oracle.apply(change);
            }
            assert_eq!(store.apply(version, changes), Applied::Now);
        }
        let published = store.publish().unwrap().unwrap();
        assert_eq!(published.version(), version, "round {round}");
        let view = verifier.verify(published.bytes().to_vec(), now(), held).unwrap();
        oracle.assert_matches(&view);
        held = Some(view.version());
    }
    assert_eq!(store.publish().unwrap().map(|s| s.version()), None, "nothing new to publish");
}

/// Opens unsigned bytes as a view (a dummy signature: structure only).
fn open(unsigned: certbind_shared::snapshot::UnsignedSnapshot) -> SnapshotView {
    SnapshotView::open_unauthenticated(unsigned.attach_signature(&[0; 64]).unwrap()).unwrap()
}

#[test]
fn both_patch_modes_agree_with_a_full_build() {
    let header = |version| SnapshotHeader {
        version,
        issued_at: 1,
        expires_at: 2,
        key_id: "0123456789abcdef".into(),
        algorithm: crate::signer::SignatureAlgorithm::EcdsaP256Sha256,
    };
    let mut oracle = starting_oracle(3_000);
    let mut compact_base = open(encode_content(&mut oracle.content(), &header(1)).unwrap());
    let mut copying_base = compact_base.clone();
    let known: Vec<Fingerprint> = oracle.bindings.keys().copied().collect();
    let mut rng = Counter(5);
    for round in 0..30u64 {
        let mut pending = Pending::default();
        for _ in 0..1 + rng.next() % 40 {
            let change = random_change(&mut rng, &known);
            oracle.apply(&change);
            pending.apply(change).unwrap();
        }
        let compact = encode_patched(&compact_base, &pending, &header(round + 2), PatchMode::Compact).unwrap();
        let full = encode_content(&mut oracle.content(), &header(round + 2)).unwrap();
        assert_eq!(compact.message(), full.message(), "round {round}: compact patch differs from a full build");
        compact_base = open(compact);
        let copying = encode_patched(&copying_base, &pending, &header(round + 2), PatchMode::KeepStrings).unwrap();
        copying_base = open(copying);
        oracle.assert_matches(&copying_base);
    }
    // Garbage only ever grows the string table of the copying path.
    assert!(copying_base.strings_len() >= compact_base.strings_len());
}

#[test]
fn streamed_bindings_build_the_same_bytes_as_a_full_build() {
    let header = SnapshotHeader {
        version: 3,
        issued_at: 1,
        expires_at: 2,
        key_id: "0123456789abcdef".into(),
        algorithm: crate::signer::SignatureAlgorithm::EcdsaP256Sha256,
    };
    let oracle = starting_oracle(2_500);
    let mut content = oracle.content();
    content.bindings.push(BindingRecord {
        fingerprint: Fingerprint::synthetic("text-user", 0),
        user_id: "not-a-ulid".into(),
        org_id: "o9".into(),
        enabled: true,
        claim: Claim::Unverified,
    });
    let full = encode_content(&mut content.clone(), &header).unwrap();

    // The database's order: ascending fingerprints.
    let mut bindings = std::mem::take(&mut content.bindings);
    bindings.sort_by_key(|b| b.fingerprint);
    let mut streamed = StreamedBindings::new(bindings.len(), &content);
    for b in &bindings {
        streamed.push(&b.fingerprint, &b.user_id, &b.org_id, b.enabled, b.claim).unwrap();
    }
    let built = streamed.finish(&mut content, &header).unwrap();
    assert_eq!(built.message(), full.message());

    // Out of order (a database that does not sort bytes as promised) is named as such.
    let mut streamed = StreamedBindings::new(2, &SnapshotContent::default());
    streamed.push(&bindings[1].fingerprint, "01HV0000000000000000000001", "o1", true, Claim::Verified).unwrap();
    assert_eq!(
        streamed.push(&bindings[0].fingerprint, "01HV0000000000000000000002", "o1", true, Claim::Verified),
        Err(BuildError::BindingsOutOfOrder { fingerprint: bindings[0].fingerprint.to_hex() })
    );
}

#[test]
fn versions_fold_in_order_whatever_order_they_arrive_in() {
    let store = SnapshotStore::new(signer(2), StoreSettings::default());
    let block = |i| vec![Change::Block { fingerprint: Fingerprint::synthetic("x", i), owner: DbOwner::Platform }];
    assert_eq!(store.apply(1, block(1)), Applied::Buffered, "nothing loaded yet");
    store.load(SnapshotContent::default(), 2).unwrap();
    assert_eq!(store.applied_version(), 2);
    assert_eq!(store.waiting_since(), None, "version 1 was covered by the load");
    assert_eq!(store.apply(4, block(4)), Applied::Buffered);
    assert!(store.waiting_since().is_some());
    assert_eq!(store.apply(5, block(5)), Applied::Buffered);
    assert_eq!(store.apply(3, block(3)), Applied::Now);
    assert_eq!(store.applied_version(), 5);
    assert_eq!(store.waiting_since(), None);
    assert_eq!(store.apply(4, block(4)), Applied::AlreadyIncluded);
    let published = store.publish().unwrap().unwrap();
    assert_eq!(published.version(), 5);
    let blocked: BTreeSet<Fingerprint> = published.view().blocklist().map(|(f, _)| f).collect();
    assert_eq!(blocked, [3, 4, 5].map(|i| Fingerprint::synthetic("x", i)).into_iter().collect());
    assert!(!published.view().is_blocklisted(&Fingerprint::synthetic("x", 1), None));
}

#[test]
fn a_claim_that_skips_versions_folds_after_the_one_it_follows() {
    let store = SnapshotStore::new(signer(2), StoreSettings::default());
    let block = |i| vec![Change::Block { fingerprint: Fingerprint::synthetic("x", i), owner: DbOwner::Platform }];
    store.load(SnapshotContent::default(), 2).unwrap();
    // Another service's load claimed 1 000 after 3; the change after it arrives first.
    assert_eq!(store.apply(1_001, block(1_001)), Applied::Buffered);
    assert_eq!(store.apply_after(3, 1_000, Vec::new()), Applied::Buffered, "3 has not arrived");
    assert_eq!(store.apply(3, block(3)), Applied::Now);
    assert_eq!(store.applied_version(), 1_001);
    assert_eq!(store.waiting_since(), None);
    // This service's own claim that skips versions: signed once everything before it folded.
    store.hold(1_001, 5_000);
    assert_eq!(store.ready_to_sign(), Some(5_000));
    assert_eq!(store.apply(5_001, block(5_001)), Applied::Buffered, "held at the claim");
    let published = store.publish().unwrap().unwrap();
    assert_eq!(published.version(), 5_000);
    assert!(published.view().is_blocklisted(&Fingerprint::synthetic("x", 1_001), None));
    assert!(!published.view().is_blocklisted(&Fingerprint::synthetic("x", 5_001), None));
    assert_eq!(store.applied_version(), 5_001);
    let next = store.publish().unwrap().unwrap();
    assert!(next.view().is_blocklisted(&Fingerprint::synthetic("x", 5_001), None));
    assert!(store.delta(5_000, 5_001, usize::MAX).is_some(), "a proxy holding 5 000 gets the step");
}

#[test]
fn a_reload_covers_changes_that_arrive_while_it_reads() {
    let store = SnapshotStore::new(signer(3), StoreSettings::default());
    store.load(SnapshotContent::default(), 1).unwrap();
    store.begin_load();
    // Committed before the reload read the database: the reload's rows include it.
    assert_eq!(store.apply(2, vec![Change::Block { fingerprint: Fingerprint::synthetic("x", 2), owner: DbOwner::Platform }]), Applied::Buffered);
    // Committed after: it must survive the reload.
    assert_eq!(store.apply(4, vec![Change::Block { fingerprint: Fingerprint::synthetic("x", 4), owner: DbOwner::Platform }]), Applied::Buffered);
    let content = SnapshotContent { blocklist: vec![(Fingerprint::synthetic("x", 2), DbOwner::Platform)], ..Default::default() };
    let loaded = store.finish_load(content, 3).unwrap();
    assert_eq!(loaded.version(), 3);
    assert_eq!(store.applied_version(), 4);
    let next = store.publish().unwrap().unwrap();
    assert_eq!(next.view().blocklist().collect::<Vec<_>>().len(), 2);
    assert!(next.view().is_blocklisted(&Fingerprint::synthetic("x", 4), None));
    match store.load(SnapshotContent::default(), 4) {
        Err(StoreError::StaleLoad { loaded: 4, published: 4 }) => {}
        other => panic!("expected StaleLoad, got {other:?}"),
    }
}

/// A signer that can be switched off, as a token that went away.
struct FlakySigner {
    inner: SoftwareSigner,
    down: AtomicBool,
}

impl Signer for FlakySigner {
    fn key_id(&self) -> &str {
        self.inner.key_id()
    }
    fn algorithm(&self) -> crate::signer::SignatureAlgorithm {
        self.inner.algorithm()
    }
    fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        if self.down.load(Ordering::SeqCst) {
            anyhow::bail!("token unreachable");
        }
        self.inner.sign(message)
    }
    fn public_key_der(&self) -> Vec<u8> {
        self.inner.public_key_der()
    }
}

#[test]
fn a_failed_signature_loses_no_change() {
    let flaky =
        Arc::new(FlakySigner { inner: SoftwareSigner::from_secret(&[4; 32]).unwrap(), down: AtomicBool::new(false) });
    let store = SnapshotStore::new(flaky.clone(), StoreSettings::default());
    store.load(SnapshotContent::default(), 1).unwrap();
    store.apply(
        2,
        vec![Change::Block { fingerprint: Fingerprint::synthetic("x", 1), owner: DbOwner::Platform }, Change::Block { fingerprint: Fingerprint::synthetic("x", 2), owner: DbOwner::Platform }],
    );
    flaky.down.store(true, Ordering::SeqCst);
    assert!(matches!(store.publish(), Err(StoreError::Sign(_))));
    assert!(store.has_unpublished());
    // A change made while the token was down overrides the failed batch for its key.
    store.apply(3, vec![Change::Unblock { fingerprint: Fingerprint::synthetic("x", 2), owner: DbOwner::Platform }]);
    flaky.down.store(false, Ordering::SeqCst);
    let published = store.publish().unwrap().unwrap();
    assert_eq!(published.version(), 3);
    assert_eq!(published.view().blocklist().collect::<Vec<_>>(), vec![(Fingerprint::synthetic("x", 1), Owner::Platform)]);
}

/// A signer whose signatures do not match its published key.
struct LyingSigner {
    published: SoftwareSigner,
    actual: SoftwareSigner,
}

impl Signer for LyingSigner {
    fn key_id(&self) -> &str {
        self.published.key_id()
    }
    fn algorithm(&self) -> crate::signer::SignatureAlgorithm {
        self.published.algorithm()
    }
    fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.actual.sign(message)
    }
    fn public_key_der(&self) -> Vec<u8> {
        self.published.public_key_der()
    }
}

#[test]
fn a_signature_that_does_not_verify_is_never_published() {
    let lying = LyingSigner {
        published: SoftwareSigner::from_secret(&[5; 32]).unwrap(),
        actual: SoftwareSigner::from_secret(&[6; 32]).unwrap(),
    };
    let store = SnapshotStore::new(Arc::new(lying), StoreSettings::default());
    match store.load(SnapshotContent::default(), 1) {
        Err(StoreError::SelfCheck(SnapshotError::BadSignature)) => {}
        other => panic!("expected SelfCheck(BadSignature), got {other:?}"),
    }
    assert!(store.latest().is_none());
}

#[test]
fn invalid_changes_are_left_out_and_counted() {
    let store = SnapshotStore::new(signer(7), StoreSettings::default());
    store.load(SnapshotContent::default(), 1).unwrap();
    store.apply(
        2,
        vec![
            Change::UpsertIssuer(IssuerRecord {
                issuer: "https://bad.example".into(),
                owner: DbOwner::Platform,
                audiences: Vec::new(),
                jwks_json: b"{\"keys\":[]}".to_vec(),
            }),
            Change::UpsertBinding(BindingRecord {
                fingerprint: Fingerprint::synthetic("b", 1),
                user_id: "u".repeat(256),
                org_id: "o".into(),
                enabled: true,
                claim: Claim::Verified,
            }),
            Change::Block { fingerprint: Fingerprint::synthetic("x", 1), owner: DbOwner::Org("o1".into()) },
        ],
    );
    assert_eq!(store.rejected_changes(), 2);
    let published = store.publish().unwrap().unwrap();
    assert!(published.view().token_issuer("https://bad.example", Owner::Platform).is_none());
    assert_eq!(published.view().binding_count(), 0);
    assert!(published.view().is_blocklisted(&Fingerprint::synthetic("x", 1), Some("o1")));
    assert!(!published.view().is_blocklisted(&Fingerprint::synthetic("x", 1), Some("o2")));
}

#[test]
fn a_change_the_encoder_refuses_is_dropped_and_the_rest_published() {
    use certbind_shared::snapshot::MAX_ISSUERS;
    let store = SnapshotStore::new(signer(8), StoreSettings::default());
    let document = jwks(9);
    let issuer = |i: usize| IssuerRecord {
        issuer: format!("https://issuer-{i}.example"),
        owner: DbOwner::Platform,
        audiences: Vec::new(),
        jwks_json: document.clone(),
    };
    // One registration short of what the format holds.
    let content = SnapshotContent { issuers: (0..MAX_ISSUERS - 1).map(issuer).collect(), ..Default::default() };
    store.load(content, 1).unwrap();
    let register = |name: &str| Change::UpsertIssuer(IssuerRecord {
        issuer: name.into(),
        owner: DbOwner::Org("o1".into()),
        audiences: Vec::new(),
        jwks_json: document.clone(),
    });
    // Each change is valid on its own; together the registrations overflow the format.
    store.apply(
        2,
        vec![
            register("https://a.example"),
            Change::Block { fingerprint: Fingerprint::synthetic("x", 1), owner: DbOwner::Platform },
            register("https://b.example"),
        ],
    );
    assert_eq!(store.rejected_changes(), 0);
    let published = store.publish().expect("published without the change that cannot go in").unwrap();
    assert_eq!(published.version(), 2);
    assert!(published.view().is_blocklisted(&Fingerprint::synthetic("x", 1), None), "the revocation goes out");
    assert!(published.view().token_issuer("https://a.example", Owner::Org("o1")).is_some());
    assert!(published.view().token_issuer("https://b.example", Owner::Org("o1")).is_none());
    assert_eq!(store.rejected_changes(), 1);
    // Nothing is left pending: the next change publishes on its own.
    store.apply(3, vec![Change::Block { fingerprint: Fingerprint::synthetic("x", 2), owner: DbOwner::Platform }]);
    let next = store.publish().unwrap().unwrap();
    assert!(next.view().is_blocklisted(&Fingerprint::synthetic("x", 2), None));
    assert_eq!(store.rejected_changes(), 1);
}

#[test]
fn full_builds_refuse_ambiguous_content() {
    let header = SnapshotHeader {
        version: 1,
        issued_at: 1,
        expires_at: 2,
        key_id: "0123456789abcdef".into(),
        algorithm: crate::signer::SignatureAlgorithm::EcdsaP256Sha256,
    };
    let binding =
        |user: &str| BindingRecord { fingerprint: Fingerprint::synthetic("b", 1), user_id: user.into(), org_id: "o".into(), enabled: true, claim: Claim::Verified };
    let mut twice = SnapshotContent { bindings: vec![binding("u1"), binding("u2")], ..Default::default() };
    assert_eq!(
        encode_content(&mut twice, &header).err(),
        Some(BuildError::DuplicateBinding { fingerprint: Fingerprint::synthetic("b", 1).to_hex() })
    );
    let mut long = SnapshotContent { bindings: vec![binding(&"u".repeat(256))], ..Default::default() };
    assert_eq!(encode_content(&mut long, &header).err(), Some(BuildError::BadString { field: "user_id", len: 256 }));
    let mut bad_jwks = SnapshotContent {
        issuers: vec![IssuerRecord {
            issuer: "https://idp".into(),
            owner: DbOwner::Platform,
            audiences: Vec::new(),
            jwks_json: b"[]".to_vec(),
        }],
        ..Default::default()
    };
    assert!(
        matches!(encode_content(&mut bad_jwks, &header), Err(BuildError::InvalidJwks { issuer, .. }) if issuer == "https://idp")
    );
    let mut issuer_twice = SnapshotContent {
        issuers: vec![
            IssuerRecord { issuer: "https://idp".into(), owner: DbOwner::Org("o1".into()), audiences: Vec::new(), jwks_json: jwks(1) },
            IssuerRecord { issuer: "https://idp".into(), owner: DbOwner::Org("o1".into()), audiences: Vec::new(), jwks_json: jwks(2) },
        ],
        ..Default::default()
    };
    assert_eq!(
        encode_content(&mut issuer_twice, &header).err(),
        Some(BuildError::DuplicateIssuer { issuer: "https://idp".into() })
    );
}

#[test]
fn rotation_signs_with_the_new_key_and_old_snapshots_stay_refusable() {
    let old = signer(8);
    let new = signer(9);
    let store = SnapshotStore::new(old.clone(), StoreSettings::default());
    let first = store.load(SnapshotContent::default(), 1).unwrap();
    store.rotate_signer(new.clone());
    store.apply(2, vec![Change::Block { fingerprint: Fingerprint::synthetic("x", 1), owner: DbOwner::Platform }]);
    let second = store.publish().unwrap().unwrap();
    assert_eq!(first.key_id(), old.key_id());
    assert_eq!(second.key_id(), new.key_id());
    let both = verifier_for(&[old.as_ref(), new.as_ref()]);
    let held = both.verify(first.bytes().to_vec(), now(), None).unwrap();
    let next = both.verify(second.bytes().to_vec(), now(), Some(held.version())).unwrap();
    assert_eq!(
        both.verify(first.bytes().to_vec(), now(), Some(next.version())).unwrap_err(),
        SnapshotError::Rollback { held: 2, offered: 1 }
    );
    let new_only = verifier_for(&[new.as_ref()]);
    assert_eq!(
        new_only.verify(first.bytes().to_vec(), now(), None).unwrap_err(),
        SnapshotError::UnknownKey { key_id: old.key_id().to_owned() }
    );
    assert!(second.etag().starts_with("\"v2-"));
}

#[test]
fn snapshots_expire_after_the_configured_validity() {
    let key = signer(10);
    let store = SnapshotStore::new(key.clone(), StoreSettings::with_validity(Duration::from_secs(600)));
    let snapshot = store.load(SnapshotContent::default(), 1).unwrap();
    assert_eq!(snapshot.expires_at() - snapshot.issued_at(), 600);
    let err = verifier_for(&[key.as_ref()]).verify(snapshot.bytes().to_vec(), snapshot.expires_at(), None).unwrap_err();
    assert_eq!(err, SnapshotError::Expired { expires_at: snapshot.expires_at(), now: snapshot.expires_at() });
}

#[tokio::test]
async fn long_polls_wake_on_a_newer_version_or_time_out() {
    let store = Arc::new(SnapshotStore::new(signer(11), StoreSettings::default()));
    store.load(SnapshotContent::default(), 1).unwrap();
    let timed_out = store.wait_newer_than(Some(1), Duration::from_millis(50)).await.unwrap();
    assert_eq!(timed_out.version(), 1);
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.wait_newer_than(Some(1), Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A re-signature, claimed at 2.
    store.hold(1, 2);
    let publisher = Arc::clone(&store);
    tokio::task::spawn_blocking(move || publisher.publish()).await.unwrap().unwrap();
    assert_eq!(waiter.await.unwrap().unwrap().version(), 2);
}

#[test]
fn the_string_table_is_rebuilt_before_garbage_piles_up() {
    let store = SnapshotStore::new(signer(12), StoreSettings::default());
    let mut oracle = starting_oracle(10);
    store.load(oracle.content(), 1).unwrap();
    let mut sizes = Vec::new();
    for version in 2..=70u64 {
        let change = Change::UpsertBinding(BindingRecord {
            fingerprint: Fingerprint::synthetic("bind", version % 10),
            user_id: format!("user-{version}"),
            org_id: "o1".into(),
            enabled: true,
            claim: Claim::Verified,
        });
        oracle.apply(&change);
        store.apply(version, vec![change]);
        sizes.push(store.publish().unwrap().unwrap().view().strings_len());
    }
    let header = store.latest().unwrap().view().header().clone();
    let clean = open(encode_content(&mut oracle.content(), &header).unwrap()).strings_len();
    // Each copying publication leaves the replaced user id behind; the 65th rebuilds.
    assert!(sizes[0] < sizes[63], "garbage accumulates while copying");
    assert!(sizes[64] < sizes[63], "the string table was rebuilt");
    assert!(sizes[64] <= clean + 64, "rebuilt table holds little beyond the live strings");
    oracle.assert_matches(store.latest().unwrap().view());
}

#[test]
fn deltas_are_kept_per_step_within_bounds_and_served_only_when_worth_it() {
    let limits = DeltaLimits { max_steps: 3, ..DeltaLimits::default() };
    let store = SnapshotStore::new(signer(9), StoreSettings { deltas: limits, ..StoreSettings::default() });
    let bindings: Vec<BindingRecord> = (0..200)
        .map(|i| BindingRecord { fingerprint: Fingerprint::synthetic("d", i), user_id: format!("01HV{i:022}"), org_id: "o1".into(), enabled: true, claim: Claim::Verified })
        .collect();
    let mut published = vec![store.load(SnapshotContent { bindings, ..Default::default() }, 1).unwrap()];
    let full_len = published[0].bytes().len();
    // One revoke per version: a step each, a few hundred bytes.
    for (version, i) in (2..=5u64).zip(0..) {
        store.apply(version, vec![Change::RemoveBinding { fingerprint: Fingerprint::synthetic("d", i) }]);
        published.push(store.publish().unwrap().unwrap());
    }
    assert_eq!(store.delta_ring_size().0, 3, "bounded by count");
    let latest = store.latest().unwrap();
    let verifier = verifier_for(&[signer(9).as_ref()]);
    // A chain from a version still in the ring takes that version to exactly the latest bytes.
    for from in [2u64, 3, 4] {
        let chain = store.delta(from, latest.version(), full_len).expect("a chain");
        assert!(chain.len() < 4096, "{} bytes", chain.len());
        let held = published.iter().find(|s| s.version() == from).unwrap().view();
        let applied = verifier.apply_delta(held, &chain, now()).expect("the chain applies");
        assert_eq!(applied.as_bytes(), latest.bytes());
    }
    // Out of the ring, not worth it beside a small full snapshot, or to a version the ring
    // never reached: none.
    assert_eq!(store.delta(1, latest.version(), full_len), None);
    assert_eq!(store.delta(4, latest.version(), 100), None);
    assert_eq!(store.delta(4, latest.version() + 1, full_len), None);
    // A step too big to keep starts the ring again.
    let small = DeltaLimits { max_bytes: 64, ..DeltaLimits::default() };
    let store = SnapshotStore::new(signer(9), StoreSettings { deltas: small, ..StoreSettings::default() });
    store.load(SnapshotContent::default(), 1).unwrap();
    store.apply(2, vec![Change::RemoveBinding { fingerprint: Fingerprint::synthetic("d", 0) }]);
    store.publish().unwrap();
    assert_eq!(store.delta_ring_size(), (0, 0));
}

#[test]
fn a_reload_signs_under_its_claim_with_what_was_committed_while_it_read() {
    let store = SnapshotStore::new(signer(10), StoreSettings::default());
    store.load(SnapshotContent::default(), 1).unwrap();
    // The tables as read at version 5: two bindings.
    store.begin_load();
    let rest = SnapshotContent::default();
    let mut streamed = StreamedBindings::new(2, &rest);
    let mut read: Vec<Fingerprint> = vec![Fingerprint::synthetic("r", 1), Fingerprint::synthetic("r", 2)];
    read.sort();
    for fingerprint in &read {
        streamed.push(fingerprint, "01HV0000000000000000000001", "o1", true, Claim::Verified).unwrap();
    }
    // Committed between the read and the claim (version 8): a revoke and an org's block.
    let catch_up = vec![
        Change::RemoveBinding { fingerprint: read[0] },
        Change::Block { owner: DbOwner::Org("o1".into()), fingerprint: read[1] },
    ];
    let signed = store.finish_streamed_load(streamed, rest, 5, 8, catch_up).unwrap();
    assert_eq!(signed.version(), 8, "signed under the claim, not the version read");
    let view = signed.view();
    assert_eq!(view.bindings().map(|(f, _)| f).collect::<Vec<_>>(), vec![read[1]]);
    assert!(view.is_blocklisted(&read[1], Some("o1")));
    assert!(!view.is_blocklisted(&read[1], Some("o2")));
    assert_eq!(store.applied_version(), 8);
    // And it verifies as any signed snapshot does.
    verifier_for(&[signer(10).as_ref()]).verify(signed.bytes().to_vec(), now(), None).unwrap();
}

/// What one replica signed, served by another: the same bytes, the step to them in its delta
/// ring, later changes patched onto them; never an older version, nor bytes of another key.
#[test]
fn a_snapshot_signed_elsewhere_is_served_as_signed() {
    let key = signer(13);
    let signing = SnapshotStore::new(key.clone(), StoreSettings::default());
    let serving = SnapshotStore::new(key.clone(), StoreSettings::default());
    let mut oracle = starting_oracle(5);
    serving.load(oracle.content(), 10).unwrap();
    signing.load(oracle.content(), 11).unwrap();
    let change = Change::UpsertBinding(BindingRecord {
        fingerprint: Fingerprint::synthetic("bind", 100),
        user_id: format!("01HV{:022}", 100),
        org_id: "o1".into(),
        enabled: true,
        claim: Claim::Verified,
    });
    oracle.apply(&change);
    signing.apply_after(11, 12, vec![change]);
    signing.hold(12, 13);
    let signed = signing.publish().unwrap().unwrap();
    assert!(serving.adopt(signed.bytes().to_vec()).unwrap());
    let served = serving.latest().unwrap();
    assert_eq!((served.version(), served.bytes()), (13, signed.bytes()));
    assert_eq!(serving.applied_version(), 13);
    assert!(serving.delta(10, 13, usize::MAX).is_some(), "the step to it is kept");
    // Not again, nor an older one.
    assert!(!serving.adopt(signed.bytes().to_vec()).unwrap());
    // Changes after it patch it.
    let change = Change::RemoveBinding { fingerprint: Fingerprint::synthetic("bind", 100) };
    oracle.apply(&change);
    serving.apply_after(13, 14, vec![change]);
    serving.hold(14, 15);
    let next = serving.publish().unwrap().unwrap();
    oracle.assert_matches(next.view());
    assert!(!serving.adopt(signed.bytes().to_vec()).unwrap(), "older than the one published");
    // Bytes of another key are refused.
    let other = SnapshotStore::new(signer(14), StoreSettings::default());
    let foreign = other.load(oracle.content(), 99).unwrap();
    assert!(matches!(serving.adopt(foreign.bytes().to_vec()), Err(StoreError::SelfCheck(_))));
    assert_eq!(serving.latest().unwrap().version(), 15);
}
