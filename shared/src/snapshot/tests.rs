//! Round trips, refusals and lookups of the snapshot against plain maps.

use super::*;
use crate::encoding::base64url_encode;
use crate::identity::{
    CaKey, CardBinding, CertificateAuthority, Claim, IdentityData, Owner, OwnerConstraints, RuleMatch, SanKind,
    ThumbprintMapping, UserId,
};
use crate::Fingerprint;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const NOW: i64 = 1_700_000_000;
pub(crate) const DAY: i64 = 86_400;

// A P-256 key made with `openssl ecparam -name prime256v1 -genkey`; its key id is
// `openssl pkey -pubin -outform DER | sha256sum | cut -c1-16`.
const OPENSSL_P256_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElbL0k38C+BmnQUEYlvf2xeVK8HDT
FeMz4J9ztXgl+r5gRwuHU7g6O922RiV/evK45RnOW4Hqf0crKIgfN2/NEA==
-----END PUBLIC KEY-----
";
const OPENSSL_P256_KEY_ID: &str = "5202af9c73a49b6d";
// The same key as `openssl ec -pubout -conv_form compressed` prints it.
const OPENSSL_P256_COMPRESSED_PEM: &str = "-----BEGIN PUBLIC KEY-----
MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgAClbL0k38C+BmnQUEYlvf2xeVK8HDT
FeMz4J9ztXgl+r4=
-----END PUBLIC KEY-----";
const OPENSSL_P256_JWK_X: &str = "lbL0k38C-BmnQUEYlvf2xeVK8HDTFeMz4J9ztXgl-r4";
const OPENSSL_P256_JWK_Y: &str = "YEcLh1O4OjvdtkYlf3ryuOUZzluB6n9HKyiIHzdvzRA";
// An Ed25519 key made with `openssl genpkey -algorithm ed25519`, key id computed as above.
const OPENSSL_ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAkqSeIZVP9qG7In9DLgQKOmDS9mm+QLbUlcJneNdQe8w=
-----END PUBLIC KEY-----";
const OPENSSL_ED25519_KEY_ID: &str = "e3a238e446805155";
const OPENSSL_ED25519_JWK_X: &str = "kqSeIZVP9qG7In9DLgQKOmDS9mm-QLbUlcJneNdQe8w";

pub(crate) enum TestSigner {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl TestSigner {
    pub fn p256(seed: u8) -> Self {
        let secret: [u8; 32] = Sha256::digest([b'p', seed]).into();
        TestSigner::P256(p256::ecdsa::SigningKey::from_slice(&secret).unwrap())
    }

    pub fn ed25519(seed: u8) -> Self {
        let secret: [u8; 32] = Sha256::digest([b'e', seed]).into();
        TestSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&secret))
    }

    pub fn pinned(&self) -> PinnedKey {
        match self {
            TestSigner::P256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                PinnedKey::from_spki_der(&p256_spki_der(point.as_bytes()).unwrap()).unwrap()
            }
            TestSigner::Ed25519(key) => {
                PinnedKey::from_spki_der(&ed25519_spki_der(key.verifying_key().as_bytes())).unwrap()
            }
        }
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        match self {
            TestSigner::P256(_) => SignatureAlgorithm::EcdsaP256Sha256,
            TestSigner::Ed25519(_) => SignatureAlgorithm::Ed25519,
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            TestSigner::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                // Low S, as the control plane signs and the verifier requires.
                signature.normalize_s().unwrap_or(signature).to_bytes().to_vec()
            }
            TestSigner::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
        }
    }
}

/// Snapshot content as plain ordered collections; `None` owner is the platform.
#[derive(Default, Clone)]
pub(crate) struct Content {
    pub bindings: BTreeMap<[u8; 32], (String, String, bool)>,
    pub blocklist: BTreeSet<([u8; 32], Option<String>)>,
    pub revoked: BTreeSet<(String, String, Option<String>)>,
    pub principals: BTreeMap<([u8; 32], Option<String>), String>,
    pub san_rules: BTreeSet<(SanKind, String, String, Option<String>)>,
    pub constraints: BTreeSet<(Option<String>, ConstraintKind, String)>,
    pub issuers: BTreeMap<(String, Option<String>), Registration>,
    /// Registered CAs by key: subject DN, require a fresh CRL, fail open, CRL valid until.
    pub cas: BTreeMap<CaKey, (String, bool, bool, Option<i64>)>,
    /// Serials CRLs list, by CA.
    pub crl_revoked: BTreeSet<(CaKey, String)>,
}

/// An issuer registration's audiences and JWKS.
pub(crate) type Registration = (Vec<String>, Vec<u8>);

pub(crate) fn owner(org: &Option<String>) -> Owner<&str> {
    Owner::from_org_id(org.as_deref())
}

pub(crate) struct Stamp {
    pub version: u64,
    pub issued_at: i64,
    pub expires_at: i64,
}

pub(crate) const STAMP: Stamp = Stamp { version: 7, issued_at: NOW - 60, expires_at: NOW + DAY };

pub(crate) fn header_for(stamp: &Stamp, key_id: &str, algorithm: SignatureAlgorithm) -> SnapshotHeader {
    SnapshotHeader {
        version: stamp.version,
        issued_at: stamp.issued_at,
        expires_at: stamp.expires_at,
        key_id: key_id.to_owned(),
        algorithm,
    }
}

pub(crate) fn push_content(encoder: &mut SnapshotEncoder, content: &Content) {
    for (fp, (user, org, enabled)) in &content.bindings {
        encoder.push_binding(&Fingerprint(*fp), user, org, *enabled).unwrap();
    }
    for (fp, org) in &content.blocklist {
        encoder.push_blocked(&Fingerprint(*fp), owner(org)).unwrap();
    }
    let revoked: BTreeSet<([u8; 32], &Option<String>)> =
        content.revoked.iter().map(|(dn, serial, org)| (revoked_serial_key(dn, serial), org)).collect();
    for (key, org) in &revoked {
        encoder.push_revoked_key(key, owner(org)).unwrap();
    }
    for ((fp, org), name) in &content.principals {
        encoder.push_principal(&Fingerprint(*fp), owner(org), name).unwrap();
    }
    push_crl_revoked(encoder, content);
    for (kind, domain, issuer, org) in &content.san_rules {
        encoder.push_san_rule(*kind, domain, issuer, owner(org)).unwrap();
    }
    for (org, kind, value) in &content.constraints {
        encoder.push_constraint(owner(org), *kind, value).unwrap();
    }
    for ((issuer, org), (audiences, jwks)) in &content.issuers {
        encoder.push_issuer(issuer, owner(org), audiences, jwks).unwrap();
    }
    for (key, setting) in &content.cas {
        push_ca(encoder, key, setting);
    }
}

fn push_crl_revoked(encoder: &mut SnapshotEncoder, content: &Content) {
    let keys: BTreeSet<[u8; 16]> = content.crl_revoked.iter().map(|(ca, serial)| ca.revocation_key(serial)).collect();
    for key in &keys {
        encoder.push_crl_revoked_key(key).unwrap();
    }
}

fn push_ca(encoder: &mut SnapshotEncoder, key: &CaKey, setting: &(String, bool, bool, Option<i64>)) {
    let (subject_dn, require_fresh_crl, fail_open, crl_valid_until) = setting;
    let ca = CertificateAuthority {
        key: *key,
        subject_dn,
        require_fresh_crl: *require_fresh_crl,
        fail_open: *fail_open,
        crl_valid_until: *crl_valid_until,
    };
    encoder.push_certificate_authority(&ca).unwrap();
}

/// A CA key from a short key identifier.
pub(crate) fn ca_key(identifier: &[u8]) -> CaKey {
    CaKey::of(&crate::certificate::ca::KeyIdentifier::new(identifier).unwrap())
}

pub(crate) fn unsigned(content: &Content, stamp: &Stamp, key_id: &str, algorithm: SignatureAlgorithm) -> UnsignedSnapshot {
    let mut encoder = SnapshotEncoder::new();
    push_content(&mut encoder, content);
    encoder.finish(&header_for(stamp, key_id, algorithm)).unwrap()
}

pub(crate) fn signed(content: &Content, stamp: &Stamp, signer: &TestSigner) -> Vec<u8> {
    let unsigned = unsigned(content, stamp, signer.pinned().key_id(), signer.algorithm());
    let signature = signer.sign(unsigned.message());
    unsigned.attach_signature(&signature).unwrap()
}

pub(crate) fn fingerprint(label: &str, i: u64) -> [u8; 32] {
    Fingerprint::synthetic(label, i).0
}

pub(crate) fn issuer_jwks(seed: u8) -> Vec<u8> {
    let TestSigner::P256(key) = TestSigner::p256(seed) else { unreachable!() };
    let point = key.verifying_key().to_encoded_point(false);
    // Written out by hand so the bytes never depend on a JSON map's ordering.
    format!(
        r#"{{"keys":[{{"kty":"EC","crv":"P-256","alg":"ES256","kid":"k{seed}","x":"{}","y":"{}"}}]}}"#,
        base64url_encode(point.x().unwrap()),
        base64url_encode(point.y().unwrap())
    )
    .into_bytes()
}

const SMALL_ULID_USER: &str = "01HV4ABCDEFGHJKMNPQRSTVWXY";
pub(crate) const DOD_CA: &str = "CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US";

fn org(name: &str) -> Option<String> {
    Some(name.to_owned())
}

/// Two orgs and the platform, every section populated, one fingerprint blocked by two owners.
pub(crate) fn small_content() -> Content {
    let mut content = Content::default();
    content.bindings.insert(fingerprint("b", 1), ("user-1".into(), "org-a".into(), true));
    content.bindings.insert(fingerprint("b", 2), ("user-2".into(), "org-b".into(), false));
    // The control plane's users are ULIDs, stored as 16 bytes; other ids go to the string table.
    content.bindings.insert(fingerprint("b", 3), (SMALL_ULID_USER.into(), "org-a".into(), true));
    content.blocklist.insert((fingerprint("x", 1), None));
    content.blocklist.insert((fingerprint("x", 2), org("org-b")));
    content.blocklist.insert((fingerprint("x", 2), org("org-a")));
    content.revoked.insert((DOD_CA.into(), "0x12:AB".into(), None));
    content.revoked.insert((DOD_CA.into(), "0x12:AC".into(), org("org-b")));
    content.principals.insert((fingerprint("p", 1), None), "svc:billing".into());
    content.principals.insert((fingerprint("p", 2), org("org-a")), "svc:ledger".into());
    content.san_rules.insert((SanKind::Email, "example.mil".into(), DOD_CA.into(), None));
    content.san_rules.insert((SanKind::Upn, "corp.example".into(), "CN=Corp CA".into(), org("org-b")));
    content.constraints.insert((org("org-a"), ConstraintKind::AllowedIssuerDn, "CN=DOD ID CA-59".into()));
    content.constraints.insert((org("org-a"), ConstraintKind::RequiredPolicyOid, "2.16.840.1.101.3.2.1.3.13".into()));
    content.constraints.insert((None, ConstraintKind::SanEmailDomain, "example.mil".into()));
    content.issuers.insert(("https://idp.example/".into(), None), (Vec::new(), issuer_jwks(1)));
    content.issuers.insert(("https://idp.example/".into(), org("org-b")), (vec!["api://b".into()], issuer_jwks(2)));
    // Two CAs of one DN, told apart by key: A's CRL lists two serials; B has no CRL and fails open.
    content.cas.insert(ca_key(b"ca-a"), (SHARED_DN_CA.into(), true, false, Some(NOW + DAY)));
    content.cas.insert(ca_key(b"ca-b"), (SHARED_DN_CA.into(), true, true, None));
    content.crl_revoked.insert((ca_key(b"ca-a"), "0x30:01".into()));
    content.crl_revoked.insert((ca_key(b"ca-a"), "3002".into()));
    content.constraints.insert((org("org-b"), ConstraintKind::RequireFreshCrl, "true".into()));
    content
}

pub(crate) const SHARED_DN_CA: &str = "CN=ICAM Test Card Signing CA,OU=FPKI,O=U.S. Government,C=US";

pub(crate) fn verifier(signers: &[&TestSigner]) -> SnapshotVerifier {
    SnapshotVerifier::new(signers.iter().map(|s| s.pinned())).unwrap()
}


#[test]
fn round_trip_answers_every_lookup_in_its_owners_scope() {
    let signer = TestSigner::p256(1);
    let bytes = signed(&small_content(), &STAMP, &signer);
    let view = verifier(&[&signer]).verify(bytes, NOW, None).unwrap();

    assert_eq!(view.version(), 7);
    assert_eq!(view.generation(), 7);
    assert_eq!(view.issued_at(), NOW - 60);
    assert_eq!(view.expires_at(), NOW + DAY);
    assert_eq!(view.key_id(), signer.pinned().key_id());
    assert_eq!(view.orgs().collect::<Vec<_>>(), vec!["org-a", "org-b"]);
    assert_eq!(
        view.card_binding(&Fingerprint::synthetic("b", 1)),
        Some(CardBinding { user_id: "user-1".into(), org_id: "org-a", enabled: true, claim: Claim::Verified })
    );
    assert_eq!(
        view.card_binding(&Fingerprint::synthetic("b", 2)),
        Some(CardBinding { user_id: "user-2".into(), org_id: "org-b", enabled: false, claim: Claim::Verified })
    );
    assert_eq!(view.card_binding(&Fingerprint::synthetic("b", 4)), None);

    // A platform entry applies to every certificate; an org's only to its own.
    assert!(view.is_blocklisted(&Fingerprint::synthetic("x", 1), None));
    assert!(view.is_blocklisted(&Fingerprint::synthetic("x", 1), Some("org-c")));
    assert!(view.is_blocklisted(&Fingerprint::synthetic("x", 2), Some("org-a")));
    assert!(view.is_blocklisted(&Fingerprint::synthetic("x", 2), Some("org-b")));
    assert!(!view.is_blocklisted(&Fingerprint::synthetic("x", 2), Some("org-c")));
    assert!(!view.is_blocklisted(&Fingerprint::synthetic("x", 2), None));
    assert!(!view.is_blocklisted(&Fingerprint::synthetic("b", 1), Some("org-a")));

    assert!(view.is_revoked(DOD_CA, "12ab", None));
    assert!(view.is_revoked(DOD_CA, "0012AB", Some("org-a")));
    assert!(view.is_revoked(DOD_CA, "12ac", Some("org-b")));
    assert!(!view.is_revoked(DOD_CA, "12ac", Some("org-a")));
    assert!(!view.is_revoked(DOD_CA, "12ad", None));
    assert!(!view.is_revoked("CN=Other CA", "12ab", None));
    assert!(view.has_revoked_serials(None));

    assert_eq!(
        view.thumbprint_mapping(&Fingerprint::synthetic("p", 1)),
        RuleMatch::One(ThumbprintMapping { owner: Owner::Platform, name: "svc:billing", claim: Claim::Verified })
    );
    assert_eq!(
        view.thumbprint_mapping(&Fingerprint::synthetic("p", 2)),
        RuleMatch::One(ThumbprintMapping { owner: Owner::Org("org-a"), name: "svc:ledger", claim: Claim::Verified })
    );
    assert_eq!(view.thumbprint_mapping(&Fingerprint::synthetic("b", 1)), RuleMatch::Unmatched);

    assert_eq!(view.san_rule(SanKind::Email, "EXAMPLE.mil", DOD_CA), RuleMatch::One(Owner::Platform));
    assert_eq!(view.san_rule(SanKind::Email, "example.mil", "CN=Corp CA"), RuleMatch::Unmatched);
    assert_eq!(view.san_rule(SanKind::Upn, "corp.example", "CN=Corp CA"), RuleMatch::One(Owner::Org("org-b")));
    assert_eq!(view.san_rule(SanKind::Upn, "example.mil", DOD_CA), RuleMatch::Unmatched);
    assert_eq!(view.san_rule(SanKind::Email, "sub.example.mil", DOD_CA), RuleMatch::Unmatched);

    let org_a = view.constraints(Owner::Org("org-a")).unwrap();
    assert_eq!(org_a.allowed_issuer_dns, vec!["CN=DOD ID CA-59".to_owned()]);
    assert_eq!(org_a.required_policy_oids, vec!["2.16.840.1.101.3.2.1.3.13".to_owned()]);
    assert_eq!(view.constraints(Owner::Platform).unwrap().san_email_domains, vec!["example.mil".to_owned()]);
    assert!(!org_a.require_fresh_crl);
    let org_b = view.constraints(Owner::Org("org-b")).unwrap();
    assert!(org_b.require_fresh_crl && org_b.is_empty(), "a CRL requirement alone: {org_b:?}");

    let platform = view.token_issuer("https://idp.example/", Owner::Platform).unwrap();
    assert_eq!((platform.owner, platform.audiences.len(), platform.keys.len()), (Owner::Platform, 0, 1));
    let org_b = view.token_issuer("https://idp.example/", Owner::Org("org-b")).unwrap();
    assert_eq!((org_b.owner, org_b.audiences), (Owner::Org("org-b"), &["api://b".to_owned()][..]));
    assert!(view.token_issuer("https://idp.example/", Owner::Org("org-a")).is_none());
    assert!(view.token_issuer("https://idp.example", Owner::Platform).is_none());
    let issuers: Vec<(&str, Owner<&str>, &[u8])> = view.issuers().map(|i| (i.issuer, i.owner, i.jwks)).collect();
    let (one, two) = (issuer_jwks(1), issuer_jwks(2));
    assert_eq!(
        issuers,
        vec![
            ("https://idp.example/", Owner::Org("org-b"), two.as_slice()),
            ("https://idp.example/", Owner::Platform, one.as_slice())
        ]
    );
}

#[test]
fn an_empty_snapshot_is_valid_and_answers_nothing() {
    let signer = TestSigner::ed25519(1);
    let bytes = signed(&Content::default(), &STAMP, &signer);
    assert_eq!(bytes.len(), format::BODY_START);
    let view = verifier(&[&signer]).verify(bytes, NOW, None).unwrap();
    assert_eq!(view.binding_count(), 0);
    assert_eq!(view.card_binding(&Fingerprint([0; 32])), None);
    assert!(!view.is_revoked("CN=CA", "1", None));
    assert!(!view.has_revoked_serials(Some("o")));
    assert_eq!(view.san_rule(SanKind::Email, "example.mil", "CN=CA"), RuleMatch::Unmatched);
    assert!(view.token_issuer("x", Owner::Platform).is_none());
}

/// A deterministic stream of numbers for test data.
pub(crate) struct Counter(pub u64);

impl Counter {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn random_owner(rng: &mut Counter, orgs: u64) -> Option<String> {
    match rng.next() % (orgs + 1) {
        0 => None,
        n => Some(format!("org-{n}")),
    }
}

#[test]
fn ten_thousand_entries_answer_like_maps() {
    let mut rng = Counter(42);
    let mut content = Content::default();
    for i in 0..10_000u64 {
        // Mostly ULIDs (stored as bits), every third a free-form id (stored as a string).
        let user = if i % 3 == 0 { format!("user-{}", rng.next()) } else { format!("01HV{:022}", rng.next()) };
        content.bindings.insert(fingerprint("bind", i), (user, format!("org-{}", rng.next() % 50), rng.next() % 7 != 3));
    }
    for i in 0..1_000 {
        // Some fingerprints blocked by several owners.
        for _ in 0..1 + rng.next() % 2 {
            content.blocklist.insert((fingerprint("block", i), random_owner(&mut rng, 5)));
        }
        content.revoked.insert((format!("CN=CA {}", i % 13), format!("{:x}", rng.next()), random_owner(&mut rng, 5)));
        content.principals.insert((fingerprint("svc", i), random_owner(&mut rng, 5)), format!("svc:{i}"));
    }
    for i in 0..40 {
        let kind = if i % 2 == 0 { SanKind::Email } else { SanKind::Upn };
        content.san_rules.insert((kind, format!("d{}.example", i % 20), format!("CN=CA {}", i % 3), random_owner(&mut rng, 3)));
    }
    for i in 0..300 {
        let kind =
            [ConstraintKind::AllowedIssuerDn, ConstraintKind::RequiredPolicyOid, ConstraintKind::SanEmailDomain][i % 3];
        content.constraints.insert((random_owner(&mut rng, 60), kind, format!("value-{i}")));
    }
    for seed in 0..5u8 {
        content.issuers.insert((format!("https://idp{seed}.example"), random_owner(&mut rng, 3)), (Vec::new(), issuer_jwks(seed)));
    }
    let signer = TestSigner::p256(2);
    let view = verifier(&[&signer]).verify(signed(&content, &STAMP, &signer), NOW, None).unwrap();

    assert_eq!(view.binding_count(), 10_000);
    for i in 0..20_000u64 {
        let key = fingerprint("bind", i);
        let expected =
            content.bindings.get(&key).map(|(u, o, e)| CardBinding { user_id: u.as_str().into(), org_id: o, enabled: *e, claim: Claim::Verified });
        assert_eq!(view.card_binding(&Fingerprint(key)), expected, "binding {i}");
    }
    let scopes: Vec<Option<String>> = (0..7).map(|n| if n == 0 { None } else { Some(format!("org-{n}")) }).collect();
    for i in 0..2_000u64 {
        let key = fingerprint("block", i);
        let owners: Vec<&Option<String>> = content.blocklist.range((key, None)..).take_while(|(k, _)| *k == key).map(|(_, o)| o).collect();
        for scope in &scopes {
            let expected = owners.iter().any(|o| owner(o).applies_to(scope.as_deref()));
            assert_eq!(view.is_blocklisted(&Fingerprint(key), scope.as_deref()), expected, "blocklist {i} {scope:?}");
        }
        let key = fingerprint("svc", i);
        let mapped: Vec<(&Option<String>, &String)> =
            content.principals.range((key, None)..).take_while(|((k, _), _)| *k == key).map(|((_, o), n)| (o, n)).collect();
        let expected = match mapped.as_slice() {
            [] => RuleMatch::Unmatched,
            [(o, name)] => RuleMatch::One(ThumbprintMapping { owner: owner(o), name: name.as_str(), claim: Claim::Verified }),
            _ => RuleMatch::Ambiguous,
        };
        assert_eq!(view.thumbprint_mapping(&Fingerprint(key)), expected, "principal {i}");
    }
    for (dn, serial, org) in &content.revoked {
        assert!(view.is_revoked(dn, serial, org.as_deref()));
        assert!(!view.is_revoked(dn, &format!("{serial}0"), org.as_deref()));
    }
    for kind in [SanKind::Email, SanKind::Upn] {
        for d in 0..25 {
            for ca in 0..4 {
                let (domain, issuer) = (format!("d{d}.example"), format!("CN=CA {ca}"));
                let owners: Vec<&Option<String>> = content
                    .san_rules
                    .iter()
                    .filter(|(k, dd, i, _)| *k == kind && *dd == domain && *i == issuer)
                    .map(|(_, _, _, o)| o)
                    .collect();
                let expected = match owners.as_slice() {
                    [] => RuleMatch::Unmatched,
                    [o] => RuleMatch::One(owner(o)),
                    _ => RuleMatch::Ambiguous,
                };
                assert_eq!(view.san_rule(kind, &domain, &issuer), expected, "{kind:?} {domain} {issuer}");
            }
        }
    }
    for scope in scopes.iter().chain(&[Some("org-99".to_owned())]) {
        let mut expected = OwnerConstraints::default();
        for (o, kind, value) in &content.constraints {
            if o == scope {
                expected.add(*kind, value);
            }
        }
        assert_eq!(view.constraints(owner(scope)).cloned().unwrap_or_default(), expected, "{scope:?}");
        let expected_revoked = content.revoked.iter().any(|(_, _, o)| owner(o).applies_to(scope.as_deref()));
        assert_eq!(view.has_revoked_serials(scope.as_deref()), expected_revoked);
    }
    for seed in 0..7u8 {
        let name = format!("https://idp{seed}.example");
        for scope in &scopes {
            let present = content.issuers.contains_key(&(name.clone(), scope.clone()));
            assert_eq!(view.token_issuer(&name, owner(scope)).is_some(), present, "issuer {seed} {scope:?}");
        }
    }
    let listed: Vec<[u8; 32]> = view.bindings().map(|(fp, _)| fp.0).collect();
    assert_eq!(listed, content.bindings.keys().copied().collect::<Vec<_>>());
    assert_eq!(view.blocklist().count(), content.blocklist.len());
    assert_eq!(view.principals().count(), content.principals.len());
    assert_eq!(view.revoked().count(), content.revoked.len());
    assert_eq!(view.san_rules().count(), content.san_rules.len());
    assert_eq!(view.all_constraints().count(), content.constraints.len());
}

/// The section a body byte lies in.
fn section_of(bytes: &[u8], at: usize) -> Section {
    let layout = format::read_layout(bytes).unwrap();
    format::BODY_SECTIONS.into_iter().zip(layout.sections).find(|(_, r)| r.contains(&at)).map(|(s, _)| s).unwrap()
}

#[test]
fn every_tampered_byte_is_refused_by_what_covers_it() {
    let signer = TestSigner::p256(3);
    let bytes = signed(&small_content(), &STAMP, &signer);
    let verifier = verifier(&[&signer]);
    let tampered = |i: usize| {
        let mut tampered = bytes.clone();
        tampered[i] ^= 0x01;
        tampered
    };
    // Header and signature: through the verifier (a signature check each, so the 32-byte
    // digests and the signature are sampled at both ends).
    let sampled = |i: &usize| !(56..format::HEADER_LEN).contains(i) || matches!((i - 56) % 40, 0..=8 | 39);
    for i in (0..format::BODY_START).filter(sampled) {
        let err = verifier.verify(tampered(i), NOW, None).unwrap_err();
        match i {
            0..=7 => assert_eq!(err, SnapshotError::BadMagic, "byte {i}"),
            8 => assert_eq!(err, SnapshotError::UnsupportedFormat { format_version: format::FORMAT_VERSION ^ 1 }),
            9 => assert_eq!(err, SnapshotError::UnsupportedFormat { format_version: format::FORMAT_VERSION | 0x0100 }),
            // The top bytes of issued_at, or expires_at's top non-zero byte: the validity window
            // is now empty, which is caught on reading.
            28..=31 | 35 => assert_eq!(
                err,
                SnapshotError::Malformed { section: Section::Header, at: 32, problem: "expires before it is issued" },
                "byte {i}"
            ),
            // Algorithm, reserved, section count, key id and section offsets and lengths are
            // read before the signature: a change there is unknown, mismatched or malformed.
            10..=15 | 40..=55 => assert_ne!(err, SnapshotError::BadSignature, "byte {i}"),
            56..=535 if (i - 56) % 40 < 8 => assert_ne!(err, SnapshotError::BadSignature, "byte {i}"),
            // Everything else in the header (the digests among it) and the signature itself.
            _ => assert_eq!(err, SnapshotError::BadSignature, "byte {i}"),
        }
    }
    // Body: every byte against the signed digests, and one per section through the verifier.
    let layout = format::read_layout(&bytes).unwrap();
    let mut through_verifier = BTreeSet::new();
    for i in format::BODY_START..bytes.len() {
        let section = section_of(&bytes, i);
        let damaged = tampered(i);
        let checker = view::Checker { bytes: &damaged, layout: &layout };
        let mut state = view::DigestState::default();
        assert_eq!(checker.check_digest(section, &mut state), Err(SnapshotError::DigestMismatch { section }), "byte {i}");
        if through_verifier.insert(section.name()) {
            assert_eq!(verifier.verify(damaged, NOW, None).unwrap_err(), SnapshotError::DigestMismatch { section });
        }
    }
    // Every section of the small content has bytes.
    assert_eq!(through_verifier.len(), format::SECTION_COUNT);
    assert_eq!(verifier.verify(bytes, NOW, None).map(|v| v.version()), Ok(7));
}

#[test]
fn header_tampering_gives_exact_errors() {
    let signer = TestSigner::p256(3);
    let bytes = signed(&small_content(), &STAMP, &signer);
    let verifier = verifier(&[&signer]);
    let mut changed_key = bytes.clone();
    changed_key[40] = if changed_key[40] == b'0' { b'1' } else { b'0' };
    let stated = String::from_utf8(changed_key[40..56].to_vec()).unwrap();
    assert_eq!(verifier.verify(changed_key, NOW, None).unwrap_err(), SnapshotError::UnknownKey { key_id: stated });
    let mut uppercase_key = bytes.clone();
    uppercase_key[40..56].copy_from_slice(b"ABCDEF0123456789");
    assert_eq!(
        verifier.verify(uppercase_key, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::Header, at: 40, problem: "key id is not 16 lowercase hex digits" }
    );
    let mut other_algorithm = bytes.clone();
    other_algorithm[10] = 2;
    assert_eq!(
        verifier.verify(other_algorithm, NOW, None).unwrap_err(),
        SnapshotError::KeyAlgorithmMismatch { key_id: signer.pinned().key_id().to_owned() }
    );
    let mut unknown_algorithm = bytes.clone();
    unknown_algorithm[10] = 9;
    assert_eq!(
        verifier.verify(unknown_algorithm, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::Header, at: 10, problem: "unknown signature algorithm" }
    );
    let mut future_format = bytes.clone();
    future_format[8] = 5;
    assert_eq!(
        verifier.verify(future_format, NOW, None).unwrap_err(),
        SnapshotError::UnsupportedFormat { format_version: 5 }
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        verifier.verify(trailing, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::Strings, at: bytes.len(), problem: "bytes after the last section" }
    );
    let mut short = bytes.clone();
    short.pop();
    assert_eq!(
        verifier.verify(short, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::Strings, at: bytes.len(), problem: "bytes after the last section" }
    );
}

#[test]
fn a_key_that_is_not_pinned_is_refused() {
    let pinned = TestSigner::p256(4);
    let stranger = TestSigner::p256(5);
    let verifier = verifier(&[&pinned]);
    let by_stranger = signed(&small_content(), &STAMP, &stranger);
    assert_eq!(
        verifier.verify(by_stranger, NOW, None).unwrap_err(),
        SnapshotError::UnknownKey { key_id: stranger.pinned().key_id().to_owned() }
    );
    // The stranger names the pinned key's id: the signature gives it away.
    let forged = unsigned(&small_content(), &STAMP, pinned.pinned().key_id(), SignatureAlgorithm::EcdsaP256Sha256);
    let signature = stranger.sign(forged.message());
    let forged = forged.attach_signature(&signature).unwrap();
    assert_eq!(verifier.verify(forged, NOW, None).unwrap_err(), SnapshotError::BadSignature);
}

#[test]
fn older_and_equal_versions_are_refused_distinctly() {
    let signer = TestSigner::ed25519(6);
    let verifier = verifier(&[&signer]);
    let at = |version| signed(&small_content(), &Stamp { version, ..STAMP }, &signer);
    assert_eq!(verifier.verify(at(4), NOW, Some(5)).unwrap_err(), SnapshotError::Rollback { held: 5, offered: 4 });
    assert_eq!(verifier.verify(at(5), NOW, Some(5)).unwrap_err(), SnapshotError::NotNewer { version: 5 });
    assert_eq!(verifier.verify(at(6), NOW, Some(5)).map(|v| v.version()), Ok(6));
    assert_eq!(verifier.verify(at(0), NOW, None).map(|v| v.version()), Ok(0));
}

#[test]
fn expired_and_future_snapshots_are_refused() {
    let signer = TestSigner::p256(7);
    let verifier = verifier(&[&signer]);
    let expired = signed(&small_content(), &Stamp { version: 1, issued_at: NOW - DAY, expires_at: NOW }, &signer);
    assert_eq!(verifier.verify(expired, NOW, None).unwrap_err(), SnapshotError::Expired { expires_at: NOW, now: NOW });
    let last_second =
        signed(&small_content(), &Stamp { version: 1, issued_at: NOW - DAY, expires_at: NOW + 1 }, &signer);
    let view = verifier.verify(last_second, NOW, None).unwrap();
    assert!(!view.is_expired(NOW));
    assert!(view.is_expired(NOW + 1));
    let skew = MAX_CLOCK_SKEW_SECS;
    let future =
        signed(&small_content(), &Stamp { version: 1, issued_at: NOW + skew + 1, expires_at: NOW + DAY }, &signer);
    assert_eq!(
        verifier.verify(future, NOW, None).unwrap_err(),
        SnapshotError::IssuedInFuture { issued_at: NOW + skew + 1, now: NOW }
    );
    let within_skew =
        signed(&small_content(), &Stamp { version: 1, issued_at: NOW + skew, expires_at: NOW + DAY }, &signer);
    assert!(verifier.verify(within_skew, NOW, None).is_ok());
}

#[test]
fn rotation_accepts_every_pinned_key() {
    let old = TestSigner::p256(8);
    let new = TestSigner::ed25519(8);
    let verifier = verifier(&[&old, &new]);
    let by_old = signed(&small_content(), &Stamp { version: 1, ..STAMP }, &old);
    let by_new = signed(&small_content(), &Stamp { version: 2, ..STAMP }, &new);
    let held = verifier.verify(by_old, NOW, None).unwrap();
    let next = verifier.verify(by_new, NOW, Some(held.version())).unwrap();
    assert_eq!(next.key_id(), new.pinned().key_id());
    assert_eq!(next.algorithm(), SignatureAlgorithm::Ed25519);
    assert_eq!(SnapshotVerifier::new(Vec::new()).unwrap_err(), KeyError::NoKeys);
}

#[test]
fn sizes_are_capped_before_anything_else() {
    let verifier = verifier(&[&TestSigner::p256(9)]);
    assert_eq!(
        verifier.verify(vec![0u8; MAX_SNAPSHOT_BYTES + 1], NOW, None).unwrap_err(),
        SnapshotError::TooLarge { len: MAX_SNAPSHOT_BYTES + 1, max: MAX_SNAPSHOT_BYTES }
    );
    let shortest = format::BODY_START;
    assert_eq!(
        verifier.verify(vec![0u8; shortest - 1], NOW, None).unwrap_err(),
        SnapshotError::Truncated { len: shortest - 1 }
    );
    assert_eq!(verifier.verify(vec![0u8; shortest], NOW, None).unwrap_err(), SnapshotError::BadMagic);
}

/// Applies `edit` to the bytes after the signature, then recomputes every digest and signs
/// again: the structure checks behind the digests are reached.
pub(crate) fn reseal(bytes: &[u8], signer: &TestSigner, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    edit(&mut bytes);
    let layout = format::read_header(&bytes).unwrap();
    let mut digests = [[0u8; 32]; format::SECTION_COUNT];
    for (i, (section, range)) in format::BODY_SECTIONS.iter().zip(&layout.sections).enumerate() {
        let body = bytes.get(range.clone()).unwrap_or(&[]);
        digests[i] = match section.key_len() {
            Some(_) => format::keyed_digest(*section, &format::bucket_digests(body, section.record_len().unwrap())),
            None => format::plain_digest(*section, body),
        };
    }
    format::write_header(&mut bytes, &layout.header, &layout.sections, &digests).unwrap();
    let signature = signer.sign(&bytes[..format::HEADER_LEN]);
    bytes[format::HEADER_LEN..format::BODY_START].copy_from_slice(&signature);
    bytes
}

fn section_start(bytes: &[u8], section: Section) -> usize {
    let entry = format::section_entry_offset(section).unwrap();
    u32::from_le_bytes(bytes[entry..entry + 4].try_into().unwrap()) as usize
}

#[test]
fn signed_but_malformed_bodies_are_refused_with_their_place() {
    let signer = TestSigner::p256(10);
    let verifier = verifier(&[&signer]);
    let bytes = signed(&small_content(), &STAMP, &signer);
    let refused = |edit: &dyn Fn(&mut Vec<u8>)| verifier.verify(reseal(&bytes, &signer, edit), NOW, None).unwrap_err();
    let malformed = |section, at, problem| SnapshotError::Malformed { section, at, problem };

    let bindings = section_start(&bytes, Section::Bindings);
    assert_eq!(bindings, format::BODY_START);
    const R: usize = format::BINDING_RECORD;
    assert_eq!(
        refused(&|b| {
            let (first, second) = (b[bindings..bindings + R].to_vec(), b[bindings + R..bindings + 2 * R].to_vec());
            b[bindings..bindings + R].copy_from_slice(&second);
            b[bindings + R..bindings + 2 * R].copy_from_slice(&first);
        }),
        malformed(Section::Bindings, bindings + R, "keys not strictly ascending")
    );
    assert_eq!(refused(&|b| b[bindings + 48] = 0xfe), malformed(Section::Bindings, bindings + 48, "org index out of range"));
    assert_eq!(refused(&|b| b[bindings + 51] |= 0x80), malformed(Section::Bindings, bindings + 51, "unknown flag bits"));

    let blocklist = section_start(&bytes, Section::Blocklist);
    assert_eq!(
        refused(&|b| b[blocklist + 32..blocklist + 35].copy_from_slice(&[9, 0, 0])),
        malformed(Section::Blocklist, blocklist + 32, "owner is neither an org nor the platform")
    );
    let san = section_start(&bytes, Section::SanRules);
    assert_eq!(refused(&|b| b[san] = 7), malformed(Section::SanRules, san, "unknown SAN kind"));
    let constraints = section_start(&bytes, Section::Constraints);
    assert_eq!(
        refused(&|b| b[constraints + 3] = 0),
        malformed(Section::Constraints, constraints + 3, "unknown constraint kind")
    );
    let issuers = section_start(&bytes, Section::Issuers);
    assert_eq!(
        refused(&|b| b[issuers + 15] ^= 1),
        malformed(Section::Issuers, issuers + 15, "audiences do not follow the JWKS")
    );
    let orgs = section_start(&bytes, Section::Orgs);
    assert_eq!(
        refused(&|b| b[orgs..orgs + 4].copy_from_slice(&u32::MAX.to_le_bytes())),
        malformed(Section::Orgs, orgs, "string reference out of bounds, empty or not UTF-8")
    );
    // The second org record naming the first org's id: one org under two indices.
    assert_eq!(
        refused(&|b| {
            let first = b[orgs..orgs + 4].to_vec();
            b[orgs + format::ORG_RECORD..orgs + format::ORG_RECORD + 4].copy_from_slice(&first);
        }),
        malformed(Section::Orgs, orgs + format::ORG_RECORD, "the same org twice")
    );
    // Shorten the bindings by one record, signing the header again: the blocklist no longer
    // starts where the bindings end.
    let mut gap = bytes.clone();
    let len = u32::from_le_bytes(gap[60..64].try_into().unwrap()) - R as u32;
    gap[60..64].copy_from_slice(&len.to_le_bytes());
    let signature = signer.sign(&gap[..format::HEADER_LEN]);
    gap[format::HEADER_LEN..format::BODY_START].copy_from_slice(&signature);
    let entry = format::section_entry_offset(Section::Blocklist).unwrap();
    assert_eq!(
        verifier.verify(gap, NOW, None).unwrap_err(),
        malformed(Section::Blocklist, entry, "section does not start where the previous one ends")
    );
}

#[test]
fn a_platform_principal_in_a_reserved_namespace_is_refused() {
    let signer = TestSigner::p256(10);
    let mut content = Content::default();
    content.principals.insert((fingerprint("p", 1), None), "auth:account:usex:u1".into());
    let bytes = signed(&content, &STAMP, &signer);
    let strings = section_start(&bytes, Section::Strings);
    let at = strings + 1 + "auth:account:use".len();
    assert_eq!(bytes[at], b'x');
    let reserved = reseal(&bytes, &signer, |b| b[at] = b'r');
    let principals = section_start(&bytes, Section::Principals);
    assert_eq!(
        verifier(&[&signer]).verify(reserved, NOW, None).unwrap_err(),
        SnapshotError::Malformed {
            section: Section::Principals,
            at: principals + 35,
            problem: "platform principal in a reserved namespace"
        }
    );
    let mut encoder = SnapshotEncoder::new();
    assert_eq!(
        encoder.push_principal(&Fingerprint::synthetic("p", 1), Owner::Platform, "auth:account:org:o:x").unwrap_err(),
        EncodeError { section: Section::Principals, index: 0, problem: EncodeProblem::ReservedPrincipal }
    );
    // An org's name is composed into its own namespace by the filter: any name is fine.
    encoder.push_principal(&Fingerprint::synthetic("p", 1), Owner::Org("o"), "auth:account:user:u1").unwrap();
}

#[test]
fn unverified_claims_are_flagged_read_back_and_kept_by_reencoding() {
    let signer = TestSigner::p256(10);
    let mut encoder = SnapshotEncoder::new();
    let (a, b) = {
        let mut pair = [Fingerprint::synthetic("c", 1), Fingerprint::synthetic("c", 2)];
        pair.sort();
        (pair[0], pair[1])
    };
    encoder.push_binding_claim(&a, "01HV4ABCDEFGHJKMNPQRSTVWXY", "org-a", true, Claim::Unverified).unwrap();
    encoder.push_binding_claim(&b, "text-user", "org-b", false, Claim::Verified).unwrap();
    encoder.push_principal_claim(&a, Owner::Org("org-a"), "svc:stated", Claim::Unverified).unwrap();
    encoder.push_principal_claim(&b, Owner::Org("org-b"), "svc:seen", Claim::Verified).unwrap();
    // The platform's mappings claim nothing: never flagged, whatever is asked.
    encoder.push_principal_claim(&b, Owner::Platform, "svc:platform", Claim::Unverified).unwrap();
    let header = header_for(&STAMP, signer.pinned().key_id(), signer.algorithm());
    let unsigned = encoder.finish(&header).unwrap();
    let message = unsigned.message().to_vec();
    let bytes = unsigned.attach_signature(&signer.sign(&message)).unwrap();
    let view = verifier(&[&signer]).verify(bytes.clone(), NOW, None).unwrap();

    assert_eq!(view.card_binding(&a).map(|x| x.claim), Some(Claim::Unverified));
    assert_eq!(view.card_binding(&b).map(|x| (x.claim, x.enabled)), Some((Claim::Verified, false)));
    let mappings = |fingerprint| {
        let mut found = Vec::new();
        view.thumbprint_mappings(fingerprint, &mut |m| found.push((m.owner, m.name.to_owned(), m.claim)));
        found
    };
    assert_eq!(mappings(&a), vec![(Owner::Org("org-a"), "svc:stated".to_owned(), Claim::Unverified)]);
    assert_eq!(
        mappings(&b),
        vec![
            (Owner::Org("org-b"), "svc:seen".to_owned(), Claim::Verified),
            (Owner::Platform, "svc:platform".to_owned(), Claim::Verified)
        ]
    );
    // The flags are bit 2 of a binding's flags and the top bit of a principal's name ref.
    let bindings = section_start(&bytes, Section::Bindings);
    assert_eq!(bytes[bindings + 51] & 0x04, 0x04);
    assert_eq!(bytes[bindings + format::BINDING_RECORD + 51] & 0x04, 0);
    let principals = section_start(&bytes, Section::Principals);
    assert_eq!(bytes[principals + 38] & 0x80, 0x80);
    assert_eq!(bytes[principals + format::PRINCIPAL_RECORD + 38] & 0x80, 0);
    // Encoded afresh, the snapshot comes back byte for byte.
    let again = super::encode::reencode(&view, &header).unwrap();
    assert_eq!(again.message(), &message[..]);

    // A platform mapping flagged unverified has two spellings of one meaning: refused.
    let platform = principals + 2 * format::PRINCIPAL_RECORD;
    let flagged = reseal(&bytes, &signer, |b| b[platform + 38] |= 0x80);
    assert_eq!(
        verifier(&[&signer]).verify(flagged, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::Principals, at: platform + 35, problem: "platform principal flagged unverified" }
    );
    // Bit 3 of a binding's flags means nothing.
    let unknown = reseal(&bytes, &signer, |b| b[bindings + 51] |= 0x08);
    assert_eq!(
        verifier(&[&signer]).verify(unknown, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::Bindings, at: bindings + 51, problem: "unknown flag bits" }
    );
}

#[test]
fn a_broken_issuer_key_set_is_refused() {
    let signer = TestSigner::p256(11);
    let mut content = small_content();
    content.issuers.insert(("https://a.example".into(), None), (Vec::new(), br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_vec()));
    let err = verifier(&[&signer]).verify(signed(&content, &STAMP, &signer), NOW, None).unwrap_err();
    assert!(matches!(err, SnapshotError::IssuerKeys { issuer_index: 0, .. }), "{err:?}");
}

#[test]
fn damaged_bytes_never_panic() {
    let signer = TestSigner::p256(12);
    let bytes = signed(&small_content(), &STAMP, &signer);
    for len in 0..bytes.len() {
        assert!(SnapshotView::open_unauthenticated(bytes[..len].to_vec()).is_err(), "prefix {len}");
    }
    let mut rng = Counter(7);
    let mut opened = 0;
    for _ in 0..20_000 {
        let mut damaged = bytes.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = format::BODY_START + (rng.next() as usize) % (damaged.len() - format::BODY_START);
            damaged[at] = rng.next() as u8;
        }
        if let Ok(view) = SnapshotView::open_unauthenticated(damaged) {
            opened += 1;
            // Whatever opened must answer without panicking.
            let _ = view.bindings().count();
            let _ = view.card_binding(&Fingerprint::synthetic("b", 1));
            let _ = view.is_blocklisted(&Fingerprint::synthetic("x", 2), Some("org-a"));
            let _ = view.thumbprint_mapping(&Fingerprint::synthetic("p", 2));
            let _ = view.san_rule(SanKind::Upn, "corp.example", "CN=Corp CA");
            let _ = view.token_issuer("https://idp.example/", Owner::Org("org-b"));
            let _ = view.issuers().count();
        }
    }
    // Changes inside user ids, fingerprints or string bytes leave a well-formed structure.
    assert!(opened > 0);
}

#[test]
fn encoder_refuses_what_the_reader_would() {
    let (low, high) = if Fingerprint::synthetic("e", 1) < Fingerprint::synthetic("e", 2) { (Fingerprint::synthetic("e", 1), Fingerprint::synthetic("e", 2)) } else { (Fingerprint::synthetic("e", 2), Fingerprint::synthetic("e", 1)) };
    let error = |section, index, problem| EncodeError { section, index, problem };
    let mut encoder = SnapshotEncoder::new();
    encoder.push_binding(&high, "u", "o", true).unwrap();
    assert_eq!(encoder.push_binding(&low, "u", "o", true).unwrap_err(), error(Section::Bindings, 1, EncodeProblem::NotAscending));
    assert_eq!(encoder.push_binding(&high, "u", "o", true).unwrap_err(), error(Section::Bindings, 1, EncodeProblem::NotAscending));
    let top = Fingerprint([0xff; 32]);
    assert_eq!(
        encoder.push_binding(&top, &"u".repeat(256), "o", true).unwrap_err(),
        error(Section::Bindings, 1, EncodeProblem::StringTooLong)
    );
    assert_eq!(encoder.push_binding(&top, "u", "", true).unwrap_err(), error(Section::Bindings, 1, EncodeProblem::EmptyString));
    encoder.push_blocked(&low, Owner::Org("b")).unwrap();
    encoder.push_blocked(&low, Owner::Platform).unwrap();
    // One fingerprint, several owners, in any order; the same owner twice is a duplicate.
    encoder.push_blocked(&low, Owner::Org("a")).unwrap();
    assert_eq!(encoder.push_blocked(&low, Owner::Org("b")).unwrap_err(), error(Section::Blocklist, 3, EncodeProblem::Duplicate));
    assert_eq!(encoder.push_binding(&top, "u", "o", true).unwrap_err(), error(Section::Bindings, 0, EncodeProblem::SectionOrder));
    assert_eq!(
        encoder.push_san_rule(SanKind::Email, "Example.mil", "CN=CA", Owner::Platform).unwrap_err(),
        error(Section::SanRules, 0, EncodeProblem::UppercaseDomain)
    );
    assert_eq!(
        encoder.push_san_rule(SanKind::Email, "example.mil", "", Owner::Platform).unwrap_err(),
        error(Section::SanRules, 0, EncodeProblem::EmptyString)
    );
    let too_big = vec![b' '; crate::pop::jwks::MAX_JWKS_BYTES + 1];
    assert_eq!(
        encoder.push_issuer::<&str>("https://idp", Owner::Platform, &[], &too_big).unwrap_err(),
        error(Section::Issuers, 0, EncodeProblem::JwksTooLarge)
    );
    let many: Vec<String> = (0..=format::MAX_AUDIENCES).map(|i| format!("aud-{i}")).collect();
    assert_eq!(
        encoder.push_issuer("https://idp", Owner::Platform, &many, &issuer_jwks(1)).unwrap_err(),
        error(Section::Issuers, 0, EncodeProblem::AudiencesTooLarge)
    );
    // Small sections are sorted at the end, where a duplicate shows.
    encoder.push_constraint(Owner::Org("b"), ConstraintKind::AllowedIssuerDn, "CN=CA").unwrap();
    encoder.push_constraint(Owner::Platform, ConstraintKind::SanEmailDomain, "x.mil").unwrap();
    encoder.push_constraint(Owner::Org("b"), ConstraintKind::AllowedIssuerDn, "CN=CA").unwrap();
    let header = SnapshotHeader {
        version: 1,
        issued_at: NOW,
        expires_at: NOW + 1,
        key_id: "0123456789abcdef".into(),
        algorithm: SignatureAlgorithm::Ed25519,
    };
    assert_eq!(encoder.finish(&header).err(), Some(error(Section::Constraints, 1, EncodeProblem::Duplicate)));
    assert_eq!(
        SnapshotEncoder::new().finish(&SnapshotHeader { expires_at: NOW, ..header.clone() }).err(),
        Some(error(Section::Header, 0, EncodeProblem::BadValidity))
    );
    let unsigned = SnapshotEncoder::new().finish(&header).unwrap();
    assert_eq!(unsigned.attach_signature(&[0; 63]).unwrap_err(), error(Section::Signature, 0, EncodeProblem::BadSignatureLength));
}

#[test]
fn pushes_in_any_order_give_the_same_bytes() {
    let signer = TestSigner::ed25519(2);
    let content = small_content();
    let forward = signed(&content, &STAMP, &signer);
    // The small sections pushed backwards, and the blocked fingerprint's owners swapped.
    let mut encoder = SnapshotEncoder::new();
    for (fp, (user, org, enabled)) in &content.bindings {
        encoder.push_binding(&Fingerprint(*fp), user, org, *enabled).unwrap();
    }
    for (fp, org) in content.blocklist.iter().rev().collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().chunk_by(|a, b| a.0 == b.0).flat_map(|run| run.iter().rev()) {
        encoder.push_blocked(&Fingerprint(*fp), owner(org)).unwrap();
    }
    let revoked: BTreeSet<([u8; 32], &Option<String>)> =
        content.revoked.iter().map(|(dn, serial, org)| (revoked_serial_key(dn, serial), org)).collect();
    for (key, org) in &revoked {
        encoder.push_revoked_key(key, owner(org)).unwrap();
    }
    for ((fp, org), name) in &content.principals {
        encoder.push_principal(&Fingerprint(*fp), owner(org), name).unwrap();
    }
    push_crl_revoked(&mut encoder, &content);
    for (key, setting) in content.cas.iter().rev() {
        push_ca(&mut encoder, key, setting);
    }
    for ((issuer, org), (audiences, jwks)) in content.issuers.iter().rev() {
        encoder.push_issuer(issuer, owner(org), audiences, jwks).unwrap();
    }
    for (org, kind, value) in content.constraints.iter().rev() {
        encoder.push_constraint(owner(org), *kind, value).unwrap();
    }
    for (kind, domain, issuer, org) in content.san_rules.iter().rev() {
        encoder.push_san_rule(*kind, domain, issuer, owner(org)).unwrap();
    }
    let unsigned = encoder.finish(&header_for(&STAMP, signer.pinned().key_id(), signer.algorithm())).unwrap();
    let signature = signer.sign(unsigned.message());
    assert_eq!(unsigned.attach_signature(&signature).unwrap(), forward);
}

#[test]
fn pinned_keys_parse_from_pem_spki_and_jwk_with_one_id() {
    let pem = PinnedKey::from_pem(OPENSSL_P256_PEM).unwrap();
    assert_eq!(pem.key_id(), OPENSSL_P256_KEY_ID);
    assert_eq!(pem.algorithm(), SignatureAlgorithm::EcdsaP256Sha256);
    assert_eq!(PinnedKey::from_pem(OPENSSL_P256_COMPRESSED_PEM).unwrap().key_id(), OPENSSL_P256_KEY_ID);
    let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": OPENSSL_P256_JWK_X, "y": OPENSSL_P256_JWK_Y});
    assert_eq!(PinnedKey::from_jwk(&jwk).unwrap(), pem);
    assert_eq!(PinnedKey::parse(&jwk.to_string()).unwrap().key_id(), OPENSSL_P256_KEY_ID);
    assert_eq!(PinnedKey::from_pem(&public_key_pem(pem.spki_der())).unwrap(), pem);

    let ed = PinnedKey::parse(OPENSSL_ED25519_PEM).unwrap();
    assert_eq!(ed.key_id(), OPENSSL_ED25519_KEY_ID);
    assert_eq!(ed.algorithm(), SignatureAlgorithm::Ed25519);
    let ed_jwk =
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": OPENSSL_ED25519_JWK_X, "kid": OPENSSL_ED25519_KEY_ID});
    assert_eq!(PinnedKey::from_jwk(&ed_jwk).unwrap(), ed);

    let verifier =
        SnapshotVerifier::from_key_texts(&[OPENSSL_P256_PEM, OPENSSL_ED25519_PEM, OPENSSL_P256_PEM]).unwrap();
    assert_eq!(verifier.keys().len(), 2);
}

#[test]
fn bad_pinned_keys_say_why() {
    let wrong_kid = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": OPENSSL_ED25519_JWK_X, "kid": "k1"});
    assert_eq!(
        PinnedKey::from_jwk(&wrong_kid).unwrap_err(),
        KeyError::KeyIdMismatch { stated: "k1".into(), derived: OPENSSL_ED25519_KEY_ID.into() }
    );
    let private = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": OPENSSL_ED25519_JWK_X, "d": "AAAA"});
    assert_eq!(PinnedKey::from_jwk(&private).unwrap_err(), KeyError::PrivateKeyMaterial);
    let p384 = serde_json::json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"});
    assert_eq!(PinnedKey::from_jwk(&p384).unwrap_err(), KeyError::Jwk("crv"));
    let short_y = serde_json::json!({"kty": "EC", "crv": "P-256", "x": OPENSSL_P256_JWK_X, "y": "AAAA"});
    assert_eq!(PinnedKey::from_jwk(&short_y).unwrap_err(), KeyError::Jwk("y"));
    let off_curve = serde_json::json!({"kty": "EC", "crv": "P-256", "x": OPENSSL_P256_JWK_X, "y": OPENSSL_P256_JWK_X});
    assert_eq!(PinnedKey::from_jwk(&off_curve).unwrap_err(), KeyError::InvalidPoint);
    assert_eq!(
        PinnedKey::parse("-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----").unwrap_err(),
        KeyError::NotPem
    );
    assert_eq!(PinnedKey::parse("MFkwEwYH").unwrap_err(), KeyError::NotPem);
    let rsa_spki =
        "-----BEGIN PUBLIC KEY-----\nMCIwDQYJKoZIhvcNAQEBBQADEQAwDgIJAMMqOYbBJjgfAgED\n-----END PUBLIC KEY-----";
    assert_eq!(PinnedKey::parse(rsa_spki).unwrap_err(), KeyError::UnsupportedKey);
    let long = "x".repeat(keys::MAX_KEY_TEXT_BYTES + 1);
    assert_eq!(PinnedKey::parse(&long).unwrap_err(), KeyError::TooLong { len: keys::MAX_KEY_TEXT_BYTES + 1 });
}

#[test]
fn peek_header_reads_without_verifying() {
    let signer = TestSigner::ed25519(13);
    let bytes = signed(&small_content(), &STAMP, &signer);
    let header = peek_header(&bytes).unwrap();
    assert_eq!(header, header_for(&STAMP, signer.pinned().key_id(), SignatureAlgorithm::Ed25519));
}

#[test]
fn a_continuing_encoder_copies_records_that_stay_valid() {
    let signer = TestSigner::p256(14);
    let base = SnapshotView::open_unauthenticated(signed(&small_content(), &STAMP, &signer)).unwrap();
    let mut fresh = SnapshotEncoder::new();
    assert_eq!(
        fresh.push_binding_records(base.section_bytes(Section::Bindings)).unwrap_err(),
        EncodeError { section: Section::Bindings, index: 0, problem: EncodeProblem::NotContinuing }
    );

    let mut encoder = SnapshotEncoder::continuing(&base, 0);
    let bindings = base.section_bytes(Section::Bindings);
    // Keep the first and last binding records, drop the middle one, add a new binding of a new org.
    const R: usize = format::BINDING_RECORD;
    encoder.push_binding_records(&bindings[..R]).unwrap();
    encoder.push_binding_records(&bindings[2 * R..3 * R]).unwrap();
    assert_eq!(
        encoder.push_binding_records(&bindings[..R]).unwrap_err(),
        EncodeError { section: Section::Bindings, index: 2, problem: EncodeProblem::NotAscending }
    );
    let new_fp = Fingerprint([0xff; 32]);
    encoder.push_binding(&new_fp, "user-new", "org-c", true).unwrap();
    encoder.push_blocked_records(base.section_bytes(Section::Blocklist)).unwrap();
    // A fingerprint's records come all copied or all pushed.
    let (last_blocked, _) = base.blocklist().last().unwrap();
    assert_eq!(
        encoder.push_blocked(&last_blocked, Owner::Org("org-c")).unwrap_err(),
        EncodeError { section: Section::Blocklist, index: 3, problem: EncodeProblem::NotAscending }
    );
    encoder.push_revoked_records(base.section_bytes(Section::Revoked)).unwrap();
    encoder.push_principal_records(base.section_bytes(Section::Principals)).unwrap();
    let header = SnapshotHeader { version: 8, ..base.header().clone() };
    let unsigned = encoder.finish(&header).unwrap();
    let signature = signer.sign(unsigned.message());
    let view = verifier(&[&signer]).verify(unsigned.attach_signature(&signature).unwrap(), NOW, Some(7)).unwrap();

    let expected: Vec<(Fingerprint, CardBinding<'_>)> =
        base.bindings().enumerate().filter(|(i, _)| *i != 1).map(|(_, b)| b).collect();
    let mut got: Vec<(Fingerprint, CardBinding<'_>)> = view.bindings().collect();
    assert_eq!(got.pop(), Some((new_fp, CardBinding { user_id: "user-new".into(), org_id: "org-c", enabled: true, claim: Claim::Verified })));
    assert_eq!(got, expected);
    assert_eq!(view.blocklist().collect::<Vec<_>>(), base.blocklist().collect::<Vec<_>>());
    assert_eq!(view.principals().collect::<Vec<_>>(), base.principals().collect::<Vec<_>>());
    // The orgs and strings of the base are prefixes of the new ones.
    assert_eq!(view.orgs().collect::<Vec<_>>(), vec!["org-a", "org-b", "org-c"]);
    assert!(view.section_bytes(Section::Strings).starts_with(base.section_bytes(Section::Strings)));
    assert!(view.section_bytes(Section::Orgs).starts_with(base.section_bytes(Section::Orgs)));
}

/// The committed format-4 snapshot: `small_content()` (two orgs and the platform, every
/// section populated) at `STAMP`, signed by `TestSigner::ed25519(1)` (Ed25519 signatures are
/// deterministic, so the bytes are too). It pins the layout: a change to the encoder that
/// alters these bytes is a format change and needs a new format version. Regenerate with
/// `CERTBIND_WRITE_SNAPSHOT_VECTOR=1` only together with such a version bump.
pub(crate) const FORMAT_V4_VECTOR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/snapshot/format-v4-two-orgs-and-platform-ed25519.bin");

/// Earlier formats of similar content, kept to show that a reader refuses a format it does
/// not speak instead of misreading it.
const FORMAT_V3_VECTOR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/snapshot/format-v3-two-orgs-and-platform-ed25519.bin");
const FORMAT_V2_VECTOR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/snapshot/format-v2-small-ed25519.bin");
const FORMAT_V1_VECTOR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/snapshot/format-v1-small-ed25519.bin");

#[test]
fn the_committed_format_v4_vector_decodes_checks_and_re_encodes_byte_for_byte() {
    let signer = TestSigner::ed25519(1);
    let bytes = signed(&small_content(), &STAMP, &signer);
    if std::env::var_os("CERTBIND_WRITE_SNAPSHOT_VECTOR").is_some() {
        std::fs::write(FORMAT_V4_VECTOR, &bytes).unwrap();
    }
    let committed = std::fs::read(FORMAT_V4_VECTOR).expect("committed vector");
    assert_eq!(committed, bytes, "the encoder's output changed: that is a format change");
    let view = verifier(&[&signer]).verify(committed.clone(), NOW, None).unwrap();
    assert_eq!(
        view.card_binding(&Fingerprint::synthetic("b", 2)),
        Some(CardBinding { user_id: "user-2".into(), org_id: "org-b", enabled: false, claim: Claim::Verified })
    );
    let ulid_user = view.card_binding(&Fingerprint::synthetic("b", 3)).unwrap();
    assert!(matches!(ulid_user.user_id, UserId::Ulid(_)), "a ULID user id is stored as its bits");
    assert_eq!(ulid_user.user_id.as_str(), SMALL_ULID_USER);
    assert!(view.is_revoked(DOD_CA, "12ab", Some("org-a")));
    assert!(view.is_blocklisted(&Fingerprint::synthetic("x", 2), Some("org-b")));
    assert!(view.is_crl_revoked(&ca_key(b"ca-a"), "3001"));
    assert!(!view.is_crl_revoked(&ca_key(b"ca-b"), "3001"));
    assert_eq!(view.certificate_authority(&ca_key(b"ca-b")).map(|ca| (ca.fail_open, ca.crl_valid_until)), Some((true, None)));
    assert_eq!(view.section_bytes(Section::Bindings).len(), 3 * 52);
    // Decoded and encoded again: the same bytes, signature included.
    let again = reencode(&view, view.header()).unwrap();
    let signature = signer.sign(again.message());
    assert_eq!(again.attach_signature(&signature).unwrap(), committed);
}

#[test]
fn format_v1_v2_and_v3_vectors_are_refused_as_unsupported_formats() {
    let signer = TestSigner::ed25519(1);
    for (path, format_version) in [(FORMAT_V1_VECTOR, 1), (FORMAT_V2_VECTOR, 2), (FORMAT_V3_VECTOR, 3)] {
        let committed = std::fs::read(path).expect("committed vector");
        assert_eq!(
            verifier(&[&signer]).verify(committed.clone(), NOW, None).unwrap_err(),
            SnapshotError::UnsupportedFormat { format_version }
        );
        assert_eq!(peek_header(&committed).unwrap_err(), SnapshotError::UnsupportedFormat { format_version });
    }
}

/// A fuzzing finding: three edits to the committed vector that made the second org record
/// name the first org's id. The reader accepted it and the encoder then refused the blocklist
/// as a duplicate; the reader now refuses the org table.
#[test]
fn an_org_table_naming_one_org_twice_is_refused_by_the_reader() {
    let edits: &[u8] = &[0x00, 0x71, 0x69, 0x0c, 0x92, 0x11, 0x0e, 0x96, 0x11, 0x0e, 0x26, 0x16];
    exercise::snapshot_bytes(edits);
}
