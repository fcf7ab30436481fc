//! Round trips, refusals and lookups of the snapshot against plain maps.

use super::*;
use crate::encoding::base64url_encode;
use crate::identity::{CardBinding, IdentityData, SanKind, UserId};
use crate::Fingerprint;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

const NOW: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

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

enum TestSigner {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl TestSigner {
    fn p256(seed: u8) -> Self {
        let secret: [u8; 32] = Sha256::digest([b'p', seed]).into();
        TestSigner::P256(p256::ecdsa::SigningKey::from_slice(&secret).unwrap())
    }

    fn ed25519(seed: u8) -> Self {
        let secret: [u8; 32] = Sha256::digest([b'e', seed]).into();
        TestSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&secret))
    }

    fn pinned(&self) -> PinnedKey {
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

    fn algorithm(&self) -> SignatureAlgorithm {
        match self {
            TestSigner::P256(_) => SignatureAlgorithm::EcdsaP256Sha256,
            TestSigner::Ed25519(_) => SignatureAlgorithm::Ed25519,
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            TestSigner::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
            TestSigner::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
        }
    }
}

#[derive(Default, Clone)]
struct Content {
    bindings: BTreeMap<[u8; 32], (String, String, bool)>,
    blocklist: BTreeSet<[u8; 32]>,
    revoked: Vec<(String, String)>,
    principals: BTreeMap<[u8; 32], String>,
    san_rules: BTreeSet<(u8, String)>,
    constraints: BTreeSet<(String, ConstraintKind, String)>,
    issuers: BTreeMap<String, Vec<u8>>,
}

fn san_kind(id: u8) -> SanKind {
    if id == 1 {
        SanKind::Email
    } else {
        SanKind::Upn
    }
}

struct Stamp {
    version: u64,
    issued_at: i64,
    expires_at: i64,
}

const STAMP: Stamp = Stamp { version: 7, issued_at: NOW - 60, expires_at: NOW + DAY };

fn unsigned(content: &Content, stamp: &Stamp, key_id: &str, algorithm: SignatureAlgorithm) -> UnsignedSnapshot {
    let mut encoder = SnapshotEncoder::new();
    for (fp, (user, org, enabled)) in &content.bindings {
        encoder.push_binding(&Fingerprint(*fp), user, org, *enabled).unwrap();
    }
    for fp in &content.blocklist {
        encoder.push_blocked(&Fingerprint(*fp)).unwrap();
    }
    let revoked: BTreeSet<[u8; 32]> =
        content.revoked.iter().map(|(dn, serial)| revoked_serial_key(dn, serial)).collect();
    for key in &revoked {
        encoder.push_revoked_key(key).unwrap();
    }
    for (fp, principal) in &content.principals {
        encoder.push_principal(&Fingerprint(*fp), principal).unwrap();
    }
    for (kind, domain) in &content.san_rules {
        encoder.push_san_rule(san_kind(*kind), domain).unwrap();
    }
    for (org, kind, value) in &content.constraints {
        encoder.push_constraint(org, *kind, value).unwrap();
    }
    for (issuer, jwks) in &content.issuers {
        encoder.push_issuer(issuer, jwks).unwrap();
    }
    let header = SnapshotHeader {
        version: stamp.version,
        issued_at: stamp.issued_at,
        expires_at: stamp.expires_at,
        key_id: key_id.to_owned(),
        algorithm,
    };
    encoder.finish(&header).unwrap()
}

fn signed(content: &Content, stamp: &Stamp, signer: &TestSigner) -> Vec<u8> {
    let unsigned = unsigned(content, stamp, signer.pinned().key_id(), signer.algorithm());
    let signature = signer.sign(unsigned.message());
    unsigned.attach_signature(&signature).unwrap()
}

fn fingerprint(label: &str, i: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    hasher.update(i.to_le_bytes());
    hasher.finalize().into()
}

fn issuer_jwks(seed: u8) -> Vec<u8> {
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

fn small_content() -> Content {
    let mut content = Content::default();
    content.bindings.insert(fingerprint("b", 1), ("user-1".into(), "org-a".into(), true));
    content.bindings.insert(fingerprint("b", 2), ("user-2".into(), "org-b".into(), false));
    // The control plane's users are ULIDs, stored as 16 bytes; other ids go to the string table.
    content.bindings.insert(fingerprint("b", 3), (SMALL_ULID_USER.into(), "org-a".into(), true));
    content.blocklist.insert(fingerprint("x", 1));
    content.revoked.push(("CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US".into(), "0x12:AB".into()));
    content.principals.insert(fingerprint("p", 1), "svc:billing".into());
    content.san_rules.insert((1, "example.mil".into()));
    content.san_rules.insert((2, "corp.example".into()));
    content.constraints.insert(("org-a".into(), ConstraintKind::AllowedIssuerDn, "CN=DOD ID CA-59".into()));
    content.constraints.insert(("org-a".into(), ConstraintKind::RequiredPolicyOid, "2.16.840.1.101.3.2.1.3.13".into()));
    content.constraints.insert(("org-ab".into(), ConstraintKind::SanEmailDomain, "example.mil".into()));
    content.issuers.insert("https://idp.example/".into(), issuer_jwks(1));
    content
}

fn verifier(signers: &[&TestSigner]) -> SnapshotVerifier {
    SnapshotVerifier::new(signers.iter().map(|s| s.pinned())).unwrap()
}

#[test]
fn round_trip_answers_every_lookup() {
    let signer = TestSigner::p256(1);
    let bytes = signed(&small_content(), &STAMP, &signer);
    let view = verifier(&[&signer]).verify(bytes, NOW, None).unwrap();

    assert_eq!(view.version(), 7);
    assert_eq!(view.generation(), 7);
    assert_eq!(view.issued_at(), NOW - 60);
    assert_eq!(view.expires_at(), NOW + DAY);
    assert_eq!(view.key_id(), signer.pinned().key_id());
    assert_eq!(
        view.card_binding(&Fingerprint(fingerprint("b", 1))),
        Some(CardBinding { user_id: "user-1".into(), org_id: "org-a", enabled: true })
    );
    assert_eq!(
        view.card_binding(&Fingerprint(fingerprint("b", 2))),
        Some(CardBinding { user_id: "user-2".into(), org_id: "org-b", enabled: false })
    );
    assert_eq!(view.card_binding(&Fingerprint(fingerprint("b", 4))), None);
    assert!(view.is_blocklisted(&Fingerprint(fingerprint("x", 1))));
    assert!(!view.is_blocklisted(&Fingerprint(fingerprint("b", 1))));
    let dod = "CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US";
    assert!(view.is_revoked(dod, "12ab"));
    assert!(view.is_revoked(dod, "0012AB"));
    assert!(!view.is_revoked(dod, "12ac"));
    assert!(!view.is_revoked("CN=Other CA", "12ab"));
    assert_eq!(view.mapped_principal(&Fingerprint(fingerprint("p", 1))), Some("svc:billing"));
    assert_eq!(view.mapped_principal(&Fingerprint(fingerprint("b", 1))), None);
    assert!(view.san_mapping_allowed(SanKind::Email, "example.mil"));
    assert!(view.san_mapping_allowed(SanKind::Email, "EXAMPLE.mil"));
    assert!(!view.san_mapping_allowed(SanKind::Upn, "example.mil"));
    assert!(view.san_mapping_allowed(SanKind::Upn, "corp.example"));
    assert!(!view.san_mapping_allowed(SanKind::Email, "corp.example"));
    assert!(!view.san_mapping_allowed(SanKind::Email, "sub.example.mil"));
    assert_eq!(view.issuer_keys("https://idp.example/").map(|k| k.len()), Some(1));
    assert!(view.issuer_keys("https://idp.example").is_none());
    assert_eq!(
        view.org_constraints("org-a").collect::<Vec<_>>(),
        vec![
            (ConstraintKind::AllowedIssuerDn, "CN=DOD ID CA-59"),
            (ConstraintKind::RequiredPolicyOid, "2.16.840.1.101.3.2.1.3.13")
        ]
    );
    assert_eq!(
        view.org_constraints("org-ab").collect::<Vec<_>>(),
        vec![(ConstraintKind::SanEmailDomain, "example.mil")]
    );
    assert_eq!(view.org_constraints("org-b").count(), 0);
    assert_eq!(view.org_constraints("org").count(), 0);
    assert_eq!(view.constraints().count(), 3);
    let issuers: Vec<(&str, &[u8])> = view.issuers().collect();
    assert_eq!(issuers, vec![("https://idp.example/", issuer_jwks(1).as_slice())]);
}

#[test]
fn an_empty_snapshot_is_valid_and_answers_nothing() {
    let signer = TestSigner::ed25519(1);
    let bytes = signed(&Content::default(), &STAMP, &signer);
    assert_eq!(bytes.len(), format::HEADER_LEN + format::SIGNATURE_LEN);
    let view = verifier(&[&signer]).verify(bytes, NOW, None).unwrap();
    assert_eq!(view.binding_count(), 0);
    assert_eq!(view.card_binding(&Fingerprint([0; 32])), None);
    assert!(!view.is_revoked("CN=CA", "1"));
    assert!(!view.san_mapping_allowed(SanKind::Email, "example.mil"));
    assert!(view.issuer_keys("x").is_none());
}

/// A deterministic stream of numbers for test data.
struct Counter(u64);

impl Counter {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn ten_thousand_entries_answer_like_hash_maps() {
    let mut rng = Counter(42);
    let mut content = Content::default();
    let mut bindings: HashMap<[u8; 32], (String, String, bool)> = HashMap::new();
    for i in 0..10_000u64 {
        // Mostly ULIDs (stored as bits), every third a free-form id (stored as a string).
        let user = if i % 3 == 0 { format!("user-{}", rng.next()) } else { format!("01HV{:022}", rng.next()) };
        let value = (user, format!("org-{}", rng.next() % 50), rng.next() % 7 != 3);
        bindings.insert(fingerprint("bind", i), value.clone());
        content.bindings.insert(fingerprint("bind", i), value);
    }
    let blocklist: HashSet<[u8; 32]> = (0..1_000).map(|i| fingerprint("block", i)).collect();
    content.blocklist = blocklist.iter().copied().collect();
    let revoked: HashSet<(String, String)> =
        (0..1_000).map(|i| (format!("CN=CA {}", i % 13), format!("{:x}", rng.next()))).collect();
    content.revoked = revoked.iter().cloned().collect();
    let principals: HashMap<[u8; 32], String> =
        (0..1_000).map(|i| (fingerprint("svc", i), format!("svc:{i}"))).collect();
    content.principals = principals.iter().map(|(k, v)| (*k, v.clone())).collect();
    for i in 0..40 {
        content.san_rules.insert((1 + (i % 2) as u8, format!("d{i}.example")));
    }
    for i in 0..300 {
        let kind =
            [ConstraintKind::AllowedIssuerDn, ConstraintKind::RequiredPolicyOid, ConstraintKind::SanEmailDomain][i % 3];
        content.constraints.insert((format!("org-{}", i % 60), kind, format!("value-{i}")));
    }
    for seed in 0..5u8 {
        content.issuers.insert(format!("https://idp{seed}.example"), issuer_jwks(seed));
    }
    let signer = TestSigner::p256(2);
    let view = verifier(&[&signer]).verify(signed(&content, &STAMP, &signer), NOW, None).unwrap();

    assert_eq!(view.binding_count(), 10_000);
    for i in 0..20_000u64 {
        let key = fingerprint("bind", i);
        let expected = bindings.get(&key).map(|(u, o, e)| CardBinding { user_id: u.as_str().into(), org_id: o, enabled: *e });
        assert_eq!(view.card_binding(&Fingerprint(key)), expected, "binding {i}");
    }
    for i in 0..2_000u64 {
        let key = fingerprint("block", i);
        assert_eq!(view.is_blocklisted(&Fingerprint(key)), blocklist.contains(&key), "blocklist {i}");
        let key = fingerprint("svc", i);
        assert_eq!(view.mapped_principal(&Fingerprint(key)), principals.get(&key).map(String::as_str), "principal {i}");
    }
    for (dn, serial) in &revoked {
        assert!(view.is_revoked(dn, serial));
        assert!(!view.is_revoked(dn, &format!("{serial}0")));
    }
    for i in 0..80 {
        let kind = 1 + (i % 2) as u8;
        let domain = format!("d{i}.example");
        assert_eq!(
            view.san_mapping_allowed(san_kind(kind), &domain),
            content.san_rules.contains(&(kind, domain.clone()))
        );
    }
    for seed in 0..7u8 {
        let present = view.issuer_keys(&format!("https://idp{seed}.example")).is_some();
        assert_eq!(present, seed < 5, "issuer {seed}");
    }
    let listed: Vec<[u8; 32]> = view.bindings().map(|(fp, _)| fp.0).collect();
    assert_eq!(listed, content.bindings.keys().copied().collect::<Vec<_>>());
    assert_eq!(view.blocklist().count(), 1_000);
    assert_eq!(view.principals().count(), 1_000);
    assert_eq!(view.revoked_keys().count(), revoked.len());
    assert_eq!(view.san_rules().count(), 40);
    for org in 0..70 {
        let org = format!("org-{org}");
        let expected: Vec<(ConstraintKind, &str)> =
            content.constraints.iter().filter(|(o, _, _)| *o == org).map(|(_, k, v)| (*k, v.as_str())).collect();
        assert_eq!(view.org_constraints(&org).collect::<Vec<_>>(), expected, "{org}");
    }
}

#[test]
fn every_tampered_byte_is_refused() {
    let signer = TestSigner::p256(3);
    let bytes = signed(&small_content(), &STAMP, &signer);
    let verifier = verifier(&[&signer]);
    for i in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[i] ^= 0x01;
        let err = verifier.verify(tampered, NOW, None).unwrap_err();
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
            // Algorithm, reserved, section count, key id and section table are read before the
            // signature: a change there is refused as unknown, mismatched or malformed.
            10..=15 | 40..=135 => assert_ne!(err, SnapshotError::BadSignature, "byte {i}"),
            _ => assert_eq!(err, SnapshotError::BadSignature, "byte {i}"),
        }
    }
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
    let mut future_format = bytes;
    future_format[8] = 3;
    assert_eq!(
        verifier.verify(future_format, NOW, None).unwrap_err(),
        SnapshotError::UnsupportedFormat { format_version: 3 }
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
    let shortest = format::HEADER_LEN + format::SIGNATURE_LEN;
    assert_eq!(
        verifier.verify(vec![0u8; shortest - 1], NOW, None).unwrap_err(),
        SnapshotError::Truncated { len: shortest - 1 }
    );
    assert_eq!(verifier.verify(vec![0u8; shortest], NOW, None).unwrap_err(), SnapshotError::BadMagic);
}

/// Re-signs `bytes` after `edit`, so structural checks behind the signature are reached.
fn resign(bytes: &[u8], signer: &TestSigner, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = bytes[..bytes.len() - format::SIGNATURE_LEN].to_vec();
    edit(&mut body);
    let signature = signer.sign(&body);
    body.extend_from_slice(&signature);
    body
}

fn section_start(bytes: &[u8], section: Section) -> usize {
    let index = section.table_index().unwrap();
    u32::from_le_bytes(bytes[56 + index * 8..60 + index * 8].try_into().unwrap()) as usize
}

#[test]
fn signed_but_malformed_bodies_are_refused_with_their_place() {
    let signer = TestSigner::p256(10);
    let verifier = verifier(&[&signer]);
    let bytes = signed(&small_content(), &STAMP, &signer);
    let bindings = section_start(&bytes, Section::Bindings);
    assert_eq!(bindings, format::HEADER_LEN);

    const R: usize = format::BINDING_RECORD;
    let swapped = resign(&bytes, &signer, |b| {
        let (first, second) = b[bindings..bindings + 2 * R].split_at_mut(R);
        first.swap_with_slice(second);
    });
    assert_eq!(
        verifier.verify(swapped, NOW, None).unwrap_err(),
        SnapshotError::Malformed {
            section: Section::Bindings,
            at: bindings + R,
            problem: "fingerprints not strictly ascending"
        }
    );
    // Records whose user is a string ref, and the one whose user is a ULID's bits.
    let flags_of = |i: usize| bytes[bindings + i * R + 51];
    let text = bindings + R * (0..3).find(|i| flags_of(*i) & 0x02 != 0).unwrap();
    let ulid = bindings + R * (0..3).find(|i| flags_of(*i) & 0x02 == 0).unwrap();
    let dangling_user = resign(&bytes, &signer, |b| b[text + 32..text + 36].copy_from_slice(&u32::MAX.to_le_bytes()));
    assert_eq!(
        verifier.verify(dangling_user, NOW, None).unwrap_err(),
        SnapshotError::Malformed {
            section: Section::Bindings,
            at: text + 32,
            problem: "string reference out of bounds, empty or not UTF-8"
        }
    );
    let trailing_user_bytes = resign(&bytes, &signer, |b| b[text + 40] = 1);
    assert_eq!(
        verifier.verify(trailing_user_bytes, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::Bindings, at: text + 36, problem: "bytes after a user string ref" }
    );
    // Turning a ULID record into a text one makes its first four bytes a (dangling) string ref.
    let ulid_as_text = resign(&bytes, &signer, |b| b[ulid + 51] |= 0x02);
    assert!(matches!(
        verifier.verify(ulid_as_text, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::Bindings, at, .. } if at == ulid + 32 || at == ulid + 36
    ));
    let unknown_org = resign(&bytes, &signer, |b| b[bindings + 48] = 0xff);
    assert_eq!(
        verifier.verify(unknown_org, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::Bindings, at: bindings + 48, problem: "org index out of range" }
    );
    let unknown_flag = resign(&bytes, &signer, |b| b[bindings + 51] |= 0x80);
    assert_eq!(
        verifier.verify(unknown_flag, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::Bindings, at: bindings + 51, problem: "unknown flag bits" }
    );
    let san = section_start(&bytes, Section::SanRules);
    let unknown_kind = resign(&bytes, &signer, |b| b[san] = 7);
    assert_eq!(
        verifier.verify(unknown_kind, NOW, None).unwrap_err(),
        SnapshotError::Malformed { section: Section::SanRules, at: san, problem: "unknown SAN kind" }
    );
    let constraints = section_start(&bytes, Section::Constraints);
    let unknown_constraint = resign(&bytes, &signer, |b| b[constraints + 4] = 0);
    assert_eq!(
        verifier.verify(unknown_constraint, NOW, None).unwrap_err(),
        SnapshotError::Malformed {
            section: Section::Constraints,
            at: constraints + 4,
            problem: "unknown constraint kind"
        }
    );
    let gap = resign(&bytes, &signer, |b| {
        // Shorten the bindings section by one record: the orgs section no longer follows it.
        let len = u32::from_le_bytes(b[60..64].try_into().unwrap()) - R as u32;
        b[60..64].copy_from_slice(&len.to_le_bytes());
    });
    assert_eq!(
        verifier.verify(gap, NOW, None).unwrap_err(),
        SnapshotError::Malformed {
            section: Section::Orgs,
            at: 64,
            problem: "section does not start where the previous one ends"
        }
    );
}

#[test]
fn a_broken_issuer_key_set_is_refused() {
    let signer = TestSigner::p256(11);
    let mut content = small_content();
    content.issuers.insert("https://a.example".into(), br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_vec());
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
            let at = (rng.next() as usize) % damaged.len();
            damaged[at] = rng.next() as u8;
        }
        if let Ok(view) = SnapshotView::open_unauthenticated(damaged) {
            opened += 1;
            // Whatever opened must answer without panicking.
            let _ = view.bindings().count();
            let _ = view.card_binding(&Fingerprint(fingerprint("b", 1)));
            let _ = view.san_mapping_allowed(SanKind::Upn, "corp.example");
            let _ = view.issuer_keys("https://idp.example/");
        }
    }
    // Changes inside user ids, fingerprints or the signature leave a well-formed structure.
    assert!(opened > 0);
}

#[test]
fn encoder_refuses_what_the_reader_would() {
    let fp = |i| Fingerprint(fingerprint("e", i));
    let (low, high) = if fp(1).0 < fp(2).0 { (fp(1), fp(2)) } else { (fp(2), fp(1)) };
    let mut encoder = SnapshotEncoder::new();
    encoder.push_binding(&high, "u", "o", true).unwrap();
    assert_eq!(
        encoder.push_binding(&low, "u", "o", true).unwrap_err(),
        EncodeError { section: Section::Bindings, index: 1, problem: EncodeProblem::NotAscending }
    );
    assert_eq!(
        encoder.push_binding(&high, "u", "o", true).unwrap_err(),
        EncodeError { section: Section::Bindings, index: 1, problem: EncodeProblem::NotAscending }
    );
    assert_eq!(
        encoder.push_binding(&fp(9), &"u".repeat(256), "o", true).unwrap_err(),
        EncodeError { section: Section::Bindings, index: 1, problem: EncodeProblem::StringTooLong }
    );
    assert_eq!(
        encoder.push_binding(&fp(9), "u", "", true).unwrap_err(),
        EncodeError { section: Section::Bindings, index: 1, problem: EncodeProblem::EmptyString }
    );
    encoder.push_blocked(&low).unwrap();
    assert_eq!(
        encoder.push_binding(&fp(9), "u", "o", true).unwrap_err(),
        EncodeError { section: Section::Bindings, index: 0, problem: EncodeProblem::SectionOrder }
    );
    assert_eq!(
        encoder.push_san_rule(SanKind::Email, "Example.mil").unwrap_err(),
        EncodeError { section: Section::SanRules, index: 0, problem: EncodeProblem::UppercaseDomain }
    );
    encoder.push_constraint("org-b", ConstraintKind::AllowedIssuerDn, "CN=CA").unwrap();
    // "org-a" < "org-b" although its kind is the higher one: org ids order first.
    assert_eq!(
        encoder.push_constraint("org-a", ConstraintKind::SanEmailDomain, "x.mil").unwrap_err(),
        EncodeError { section: Section::Constraints, index: 1, problem: EncodeProblem::NotAscending }
    );
    encoder.push_constraint("org-b", ConstraintKind::SanEmailDomain, "x.mil").unwrap();
    let too_big = vec![b' '; crate::pop::jwks::MAX_JWKS_BYTES + 1];
    assert_eq!(
        encoder.push_issuer("https://idp", &too_big).unwrap_err(),
        EncodeError { section: Section::Issuers, index: 0, problem: EncodeProblem::JwksTooLarge }
    );
    let bad_header = SnapshotHeader {
        version: 1,
        issued_at: NOW,
        expires_at: NOW,
        key_id: "0123456789abcdef".into(),
        algorithm: SignatureAlgorithm::Ed25519,
    };
    assert_eq!(
        encoder.finish(&bad_header).err(),
        Some(EncodeError { section: Section::Header, index: 0, problem: EncodeProblem::BadValidity })
    );
    let unsigned = SnapshotEncoder::new().finish(&SnapshotHeader { expires_at: NOW + 1, ..bad_header }).unwrap();
    assert_eq!(
        unsigned.attach_signature(&[0; 63]).unwrap_err(),
        EncodeError { section: Section::Signature, index: 0, problem: EncodeProblem::BadSignatureLength }
    );
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
    assert_eq!(
        header,
        SnapshotHeader {
            version: 7,
            issued_at: NOW - 60,
            expires_at: NOW + DAY,
            key_id: signer.pinned().key_id().to_owned(),
            algorithm: SignatureAlgorithm::Ed25519,
        }
    );
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
    // Keep the first and last binding records, drop the middle one, add a new binding.
    const R: usize = super::format::BINDING_RECORD;
    encoder.push_binding_records(&bindings[..R]).unwrap();
    let new_fp = Fingerprint([0xff; 32]);
    let (last, _) = base.bindings().last().unwrap();
    assert!(last < new_fp);
    encoder.push_binding_records(&bindings[2 * R..3 * R]).unwrap();
    assert_eq!(
        encoder.push_binding_records(&bindings[..R]).unwrap_err(),
        EncodeError { section: Section::Bindings, index: 2, problem: EncodeProblem::NotAscending }
    );
    encoder.push_binding(&new_fp, "user-new", "org-b", true).unwrap();
    encoder.push_blocked_records(base.section_bytes(Section::Blocklist)).unwrap();
    encoder.push_revoked_records(base.section_bytes(Section::Revoked)).unwrap();
    encoder.push_principal_records(base.section_bytes(Section::Principals)).unwrap();
    let header = SnapshotHeader { version: 8, ..base.header().clone() };
    let unsigned = encoder.finish(&header).unwrap();
    let signature = signer.sign(unsigned.message());
    let view = verifier(&[&signer]).verify(unsigned.attach_signature(&signature).unwrap(), NOW, Some(7)).unwrap();

    let expected: Vec<(Fingerprint, CardBinding<'_>)> =
        base.bindings().enumerate().filter(|(i, _)| *i != 1).map(|(_, b)| b).collect();
    let mut got: Vec<(Fingerprint, CardBinding<'_>)> = view.bindings().collect();
    assert_eq!(got.pop(), Some((new_fp, CardBinding { user_id: "user-new".into(), org_id: "org-b", enabled: true })));
    assert_eq!(got, expected);
    assert_eq!(view.blocklist().collect::<Vec<_>>(), base.blocklist().collect::<Vec<_>>());
    assert_eq!(view.principals().collect::<Vec<_>>(), base.principals().collect::<Vec<_>>());
    // The dropped binding's user id is still in the string table: garbage, not a reference.
    assert_eq!(view.strings_len(), base.strings_len() + 1 + "user-new".len());
}

/// The committed format-v2 snapshot: `small_content()` at `STAMP`, signed by `TestSigner::ed25519(1)`
/// (Ed25519 signatures are deterministic, so the bytes are too). It pins the layout: a change
/// to the encoder that alters these bytes is a format change and needs a new format version.
/// Regenerate with `CERTBIND_WRITE_SNAPSHOT_VECTOR=1` only together with such a version bump.
const FORMAT_V2_VECTOR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/snapshot/format-v2-small-ed25519.bin");

/// The format-v1 snapshot of the same content (40-byte binding records, user ids as strings),
/// kept to show that a reader refuses a format it does not speak instead of misreading it.
const FORMAT_V1_VECTOR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/snapshot/format-v1-small-ed25519.bin");

#[test]
fn the_committed_format_v2_vector_still_reads_the_same() {
    let signer = TestSigner::ed25519(1);
    let bytes = signed(&small_content(), &STAMP, &signer);
    if std::env::var_os("CERTBIND_WRITE_SNAPSHOT_VECTOR").is_some() {
        std::fs::create_dir_all(std::path::Path::new(FORMAT_V2_VECTOR).parent().unwrap()).unwrap();
        std::fs::write(FORMAT_V2_VECTOR, &bytes).unwrap();
    }
    let committed = std::fs::read(FORMAT_V2_VECTOR).expect("committed vector");
    assert_eq!(committed, bytes, "the encoder's output changed: that is a format change");
    let view = verifier(&[&signer]).verify(committed, NOW, None).unwrap();
    assert_eq!(
        view.card_binding(&Fingerprint(fingerprint("b", 2))),
        Some(CardBinding { user_id: "user-2".into(), org_id: "org-b", enabled: false })
    );
    let ulid_user = view.card_binding(&Fingerprint(fingerprint("b", 3))).unwrap();
    assert!(matches!(ulid_user.user_id, UserId::Ulid(_)), "a ULID user id is stored as its bits");
    assert_eq!(ulid_user.user_id.as_str(), SMALL_ULID_USER);
    assert!(view.is_revoked("CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US", "12ab"));
    // 52-byte records, and no string for the ULID user.
    assert_eq!(view.section_bytes(Section::Bindings).len(), 3 * 52);
}

#[test]
fn the_format_v1_vector_is_refused_as_an_unsupported_format() {
    let signer = TestSigner::ed25519(1);
    let committed = std::fs::read(FORMAT_V1_VECTOR).expect("committed vector");
    assert_eq!(
        verifier(&[&signer]).verify(committed, NOW, None).unwrap_err(),
        SnapshotError::UnsupportedFormat { format_version: 1 }
    );
}
