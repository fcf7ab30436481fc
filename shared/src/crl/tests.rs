//! The reader, verifier and serial set on the committed vectors
//! (`shared/tests/vectors/crl/generate.py`) and on CRLs written here with [`super::testing`].

use super::testing::*;
use super::*;
use crate::certificate::ca::{crl_distribution_urls, CrlUrl, CrlUrlScheme, KeyIdentifierSource};
use crate::certificate::{CaCertificate, CertificateFacts, KeyIdentifier};
use der::asn1::ObjectIdentifier;

macro_rules! vector {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/vectors/crl/", $name)).as_slice()
    };
}

const THIS_UPDATE: i64 = 1_748_736_000; // 2025-06-01
const NEXT_UPDATE: i64 = 1_749_340_800; // 2025-06-08
const REVOKED_ON: i64 = 1_747_742_400; // 2025-05-20 12:00
const COMPROMISED_ON: i64 = 1_747_643_400; // 2025-05-19 08:30
const NOW: i64 = THIS_UPDATE + 86_400;
const UNKNOWN_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1");

fn limits() -> CrlLimits {
    CrlLimits::default()
}

fn ca(pem: &[u8]) -> CaCertificate {
    CaCertificate::from_pem(pem).unwrap()
}

fn issuing_ca() -> CaCertificate {
    ca(include_bytes!("../../../tests/pki/piv-issuing-ca.pem"))
}

fn rsa_ca() -> CaCertificate {
    ca(vector!("ca-rsa-2048.pem"))
}

fn parse(der: &[u8]) -> Result<Crl<'_>, CrlError> {
    Crl::from_der(der, &limits())
}

fn verified<'a>(der: &'a [u8], ca: &CaCertificate) -> VerifiedCrl<'a> {
    verify_crl(der, ca, &limits()).unwrap_or_else(|e| panic!("{e}"))
}

fn hex(serials: impl Iterator<Item = String>) -> Vec<String> {
    serials.collect()
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// Where the Extension whose extnID is `oid` starts (its SEQUENCE has a one-octet length).
fn extension_at(der: &[u8], oid: &ObjectIdentifier) -> usize {
    find(der, &[&[0x06, oid.as_bytes().len() as u8][..], oid.as_bytes()].concat()) - 2
}

fn serial_of(pem: &[u8]) -> String {
    CertificateFacts::from_pem(pem).unwrap().serial_hex
}

#[test]
fn an_rsa_crl_reads_every_field() {
    let ca = rsa_ca();
    let crl = verified(vector!("rsa-pkcs1-sha256-three-entries.crl.der"), &ca);
    assert_eq!(crl.issuer_dn(), "CN=certbind Test RSA CA,O=certbind,C=US");
    assert_eq!(crl.issuer_der(), ca.subject_der.as_slice());
    assert_eq!((crl.this_update(), crl.next_update()), (THIS_UPDATE, Some(NEXT_UPDATE)));
    assert_eq!(crl.number(), CrlNumber::from(7));
    assert_eq!((crl.base_number(), crl.is_delta()), (None, false));
    assert_eq!(crl.authority_key_identifier(), Some(&ca.key_identifier));
    assert_eq!(crl.scope(), CrlScope::All);
    assert_eq!(crl.distribution_point_uris(), ["http://crl.certbind.test/rsa-ca.crl"]);
    assert_eq!(crl.signature_algorithm(), CrlSignatureAlgorithm::RsaPkcs1v15(DigestAlgorithm::Sha256));
    assert_eq!(crl.entry_count(), 3);
    assert_eq!(crl.entries().len(), 3);
    let entries: Vec<RevokedEntry<'_>> = crl.entries().collect();
    let expected = [
        ("1001", &[0x10, 0x01][..], Some(ReasonCode::KeyCompromise), Some(COMPROMISED_ON)),
        ("9f3a5c7e21d04b68", &[0x00, 0x9f, 0x3a, 0x5c, 0x7e, 0x21, 0xd0, 0x4b, 0x68][..], None, None),
        ("1003", &[0x10, 0x03][..], Some(ReasonCode::CertificateHold), None),
    ];
    for (entry, (text, content, reason, invalidity)) in entries.iter().zip(expected) {
        assert_eq!(entry.serial.to_hex(), text);
        assert_eq!(entry.serial.der_content(), content);
        assert_eq!((entry.revocation_date, entry.reason, entry.invalidity_date), (REVOKED_ON, reason, invalidity));
    }
    // The same bytes as PEM, with `openssl crl -text`'s output above the block.
    let pem = vector!("rsa-pkcs1-sha256-three-entries.crl.txt.pem");
    assert_eq!(&*crl_der(pem, &limits()).unwrap(), vector!("rsa-pkcs1-sha256-three-entries.crl.der"));
}

#[test]
fn every_supported_algorithm_verifies() {
    let (rsa, issuing) = (rsa_ca(), issuing_ca());
    let root = ca(include_bytes!("../../../tests/pki/root-ca.pem"));
    let cases: [(&[u8], &CaCertificate, CrlSignatureAlgorithm); 9] = [
        (vector!("rsa-pkcs1-sha256-three-entries.crl.der"), &rsa, CrlSignatureAlgorithm::RsaPkcs1v15(DigestAlgorithm::Sha256)),
        (vector!("rsa-pkcs1-sha384.crl.der"), &rsa, CrlSignatureAlgorithm::RsaPkcs1v15(DigestAlgorithm::Sha384)),
        (vector!("rsa-pkcs1-sha512.crl.der"), &rsa, CrlSignatureAlgorithm::RsaPkcs1v15(DigestAlgorithm::Sha512)),
        (vector!("rsa-pss-sha256-salt-32.crl.der"), &rsa, CrlSignatureAlgorithm::RsaPss { digest: DigestAlgorithm::Sha256, salt_len: 32 }),
        (vector!("rsa-pss-sha384-salt-48.crl.der"), &rsa, CrlSignatureAlgorithm::RsaPss { digest: DigestAlgorithm::Sha384, salt_len: 48 }),
        (vector!("rsa-pss-sha512-salt-20.crl.der"), &rsa, CrlSignatureAlgorithm::RsaPss { digest: DigestAlgorithm::Sha512, salt_len: 20 }),
        (vector!("p256-piv-issuing-ca-number-10.crl.der"), &issuing, CrlSignatureAlgorithm::Ecdsa(DigestAlgorithm::Sha256)),
        (vector!("p256-piv-issuing-ca-sha384.crl.der"), &issuing, CrlSignatureAlgorithm::Ecdsa(DigestAlgorithm::Sha384)),
        (vector!("p384-root-ca-sha384.crl.der"), &root, CrlSignatureAlgorithm::Ecdsa(DigestAlgorithm::Sha384)),
    ];
    for (der, ca, algorithm) in cases {
        let crl = verified(der, ca);
        assert_eq!(crl.signature_algorithm(), algorithm);
        // One flipped bit of the signed bytes (inside thisUpdate's digits) breaks it.
        let mut damaged = der.to_vec();
        let at = find(der, b"250601000000Z");
        damaged[at + 11] ^= 0x01;
        assert_eq!(verify_crl(&damaged, ca, &limits()).unwrap_err(), CrlError::BadSignature, "{algorithm:?}");
    }
}

#[test]
fn the_pss_salt_length_stated_is_the_one_checked() {
    let der = vector!("rsa-pss-sha256-salt-32.crl.der");
    let crl = parse(der).unwrap();
    let spki = rsa_ca().spki_der;
    let with_salt = |salt_len| CrlSignatureAlgorithm::RsaPss { digest: DigestAlgorithm::Sha256, salt_len };
    assert_eq!(signature::verify(with_salt(32), &spki, crl.tbs, crl.signature), Ok(()));
    assert_eq!(signature::verify(with_salt(31), &spki, crl.tbs, crl.signature), Err(CrlError::BadSignature));
    assert_eq!(signature::verify(with_salt(0), &spki, crl.tbs, crl.signature), Err(CrlError::BadSignature));
}

/// An AlgorithmIdentifier of RSASSA-PSS with `params` (the contents of its SEQUENCE).
fn pss(params: &[&[u8]]) -> Result<CrlSignatureAlgorithm, CrlError> {
    let oid = tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]);
    let identifier = sequence(&[&oid, &sequence(params)]);
    signature::signature_algorithm(walk::Der::new(&identifier).next("signatureAlgorithm").unwrap())
}

fn hash_identifier(last: u8) -> Vec<u8> {
    sequence(&[&tlv(0x06, &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, last]), &tlv(0x05, &[])])
}

fn mgf1(hash: &[u8]) -> Vec<u8> {
    sequence(&[&tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08]), hash])
}

#[test]
fn pss_parameters_are_read_and_checked() {
    let sha256 = hash_identifier(1);
    let sha384 = hash_identifier(2);
    let hash = tlv(0xa0, &sha256);
    let mask = tlv(0xa1, &mgf1(&sha256));
    assert_eq!(
        pss(&[&hash, &mask, &tlv(0xa2, &integer(&[64]))]),
        Ok(CrlSignatureAlgorithm::RsaPss { digest: DigestAlgorithm::Sha256, salt_len: 64 })
    );
    // saltLength defaults to 20, trailerField 1 is accepted.
    assert_eq!(
        pss(&[&hash, &mask, &tlv(0xa3, &integer(&[1]))]),
        Ok(CrlSignatureAlgorithm::RsaPss { digest: DigestAlgorithm::Sha256, salt_len: 20 })
    );
    // hashAlgorithm's default is SHA-1, refused by its OID.
    assert_eq!(
        pss(&[&mask]),
        Err(CrlError::UnsupportedSignatureAlgorithm { at: 13, oid: ObjectIdentifier::new_unwrap("1.3.14.3.2.26") })
    );
    let mismatched = tlv(0xa1, &mgf1(&sha384));
    match pss(&[&hash, &mismatched]) {
        Err(CrlError::Malformed { field: "RSASSA-PSS-params.maskGenAlgorithm", problem, .. }) => {
            assert_eq!(problem, "the MGF1 hash is not the signature's hash")
        }
        other => panic!("{other:?}"),
    }
    match pss(&[&hash]) {
        Err(CrlError::Malformed { field: "RSASSA-PSS-params.maskGenAlgorithm", .. }) => {}
        other => panic!("an absent MGF (MGF1 with SHA-1) must not pass: {other:?}"),
    }
    match pss(&[&hash, &mask, &tlv(0xa2, &integer(&[0x04, 0x01]))]) {
        Err(CrlError::Malformed { field: "RSASSA-PSS-params.saltLength", problem, .. }) => {
            assert_eq!(problem, "salt longer than any supported key")
        }
        other => panic!("{other:?}"),
    }
    match pss(&[&hash, &mask, &tlv(0xa3, &integer(&[2]))]) {
        Err(CrlError::Malformed { field: "RSASSA-PSS-params.trailerField", .. }) => {}
        other => panic!("{other:?}"),
    }
    // Fields out of order leave bytes unread.
    match pss(&[&mask, &hash]) {
        Err(CrlError::UnsupportedSignatureAlgorithm { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_crl_signed_by_another_key_is_refused() {
    let der = vector!("p256-piv-issuing-ca-signed-by-wrong-key.crl.der");
    let crl = parse(der).unwrap();
    assert_eq!(crl.issuer_dn(), issuing_ca().subject_dn);
    assert_eq!(crl.authority_key_identifier(), Some(&issuing_ca().key_identifier), "it claims the CA's key");
    assert_eq!(crl.verify(&issuing_ca()).unwrap_err(), CrlError::BadSignature);
}

#[test]
fn a_delta_crl_folds_onto_its_base() {
    let issuing = issuing_ca();
    let piv_auth = serial_of(include_bytes!("../../../tests/pki/piv-auth.pem"));
    let cac = serial_of(include_bytes!("../../../tests/pki/cac.pem"));
    let piv_auth_2 = serial_of(include_bytes!("../../../tests/pki/piv-auth-2.pem"));
    let base = verified(vector!("p256-piv-issuing-ca-number-10.crl.der"), &issuing);
    let delta = verified(vector!("p256-piv-issuing-ca-delta-11-on-10.crl.der"), &issuing);
    assert_eq!((delta.number(), delta.base_number(), delta.is_delta()), (CrlNumber::from(11), Some(CrlNumber::from(10)), true));
    let reasons: Vec<_> = delta.entries().map(|e| (e.serial.to_hex(), e.reason)).collect();
    assert_eq!(
        reasons,
        [(cac.clone(), Some(ReasonCode::RemoveFromCrl)), (piv_auth_2.clone(), Some(ReasonCode::Superseded))]
    );

    let mut serials = RevokedSerials::from_complete(&base).unwrap();
    assert_eq!(serials.number(), CrlNumber::from(10));
    let mut held = hex(serials.iter().map(|s| s.to_hex()));
    held.sort();
    assert_eq!(held, [cac.clone(), piv_auth.clone()]);
    let before = serials.clone();
    serials.apply_delta(&delta).unwrap();
    assert_eq!(serials.number(), CrlNumber::from(11));
    let mut held = hex(serials.iter().map(|s| s.to_hex()));
    held.sort();
    assert_eq!(held, [piv_auth_2, piv_auth], "the hold on {cac} is released");
    assert_eq!(serials.len(), 2);

    // A delta applies once, and only onto a base at least as new as its base number.
    assert_eq!(
        serials.apply_delta(&delta),
        Err(CrlError::DeltaDoesNotApply { held: CrlNumber::from(11), base: CrlNumber::from(10), delta: CrlNumber::from(11) })
    );
    let older = RevokedSerials::from_complete(&verified(vector!("p256-piv-issuing-ca-number-9.crl.der"), &issuing)).unwrap();
    let mut older_copy = older.clone();
    assert_eq!(
        older_copy.apply_delta(&delta),
        Err(CrlError::DeltaDoesNotApply { held: CrlNumber::from(9), base: CrlNumber::from(10), delta: CrlNumber::from(11) })
    );
    assert_eq!(older_copy, older, "a refused delta changes nothing");
    assert_eq!(RevokedSerials::from_complete(&delta), Err(CrlError::WrongKind { expected: "a complete CRL, not a delta CRL" }));
    let mut copy = before.clone();
    assert_eq!(copy.apply_delta(&base), Err(CrlError::WrongKind { expected: "a delta CRL, not a complete CRL" }));
}

#[test]
fn a_newer_complete_crl_replaces_the_set_and_an_older_one_is_refused() {
    let issuing = issuing_ca();
    let ten = verified(vector!("p256-piv-issuing-ca-number-10.crl.der"), &issuing);
    let mut serials = RevokedSerials::from_complete(&ten).unwrap();
    assert_eq!((serials.ca_key_identifier(), serials.scope()), (&issuing.key_identifier, CrlScope::All));
    let nine = verified(vector!("p256-piv-issuing-ca-number-9.crl.der"), &issuing);
    assert_eq!(serials.apply_complete(&nine), Err(CrlError::OlderCrl { held: CrlNumber::from(10), offered: CrlNumber::from(9) }));
    assert_eq!(serials.len(), 2, "a refused CRL changes nothing");
    // The same CRL fetched again is no change; a newer one replaces every serial.
    serials.apply_complete(&ten).unwrap();
    assert_eq!((serials.number(), serials.len()), (CrlNumber::from(10), 2));
    let empty = verified(vector!("p256-piv-issuing-ca-empty.crl.der"), &issuing);
    serials.apply_complete(&empty).unwrap();
    assert_eq!((serials.number(), serials.is_empty()), (CrlNumber::from(14), true));
    let delta = verified(vector!("p256-piv-issuing-ca-delta-11-on-10.crl.der"), &issuing);
    assert_eq!(serials.apply_complete(&delta), Err(CrlError::WrongKind { expected: "a complete CRL, not a delta CRL" }));

    // Another CA's CRL, or one covering CA certificates only, does not speak of these serials.
    let b = ca(vector!("shared-dn-ca-b.pem"));
    let other = verified(vector!("shared-dn-ca-b.crl.der"), &b);
    assert_eq!(
        serials.apply_complete(&other),
        Err(CrlError::OtherCa { held: issuing.key_identifier.clone(), offered: b.key_identifier.clone() })
    );
    let arl = verified(vector!("p256-only-ca-certificates.crl.der"), &issuing);
    assert_eq!(
        serials.apply_complete(&arl),
        Err(CrlError::ScopeMismatch { held: CrlScope::All, offered: CrlScope::CaCertificates })
    );
    let mut from_base = RevokedSerials::from_complete(&ten).unwrap();
    let mut arl_set = RevokedSerials::from_complete(&arl).unwrap();
    assert_eq!(
        arl_set.apply_delta(&delta),
        Err(CrlError::ScopeMismatch { held: CrlScope::CaCertificates, offered: CrlScope::All })
    );
    assert_eq!(
        CrlError::ScopeMismatch { held: CrlScope::All, offered: CrlScope::CaCertificates }.to_string(),
        "the CRL covers CA certificates only, the CRL held covers every certificate of its CA"
    );

    // A set kept elsewhere comes back as it was, and takes the delta alike.
    let kept: Vec<Vec<u8>> = from_base.iter().map(|s| s.der_content().to_vec()).collect();
    let mut restored = RevokedSerials::from_serials(
        issuing.key_identifier.clone(),
        CrlScope::All,
        CrlNumber::from(10),
        kept.iter().rev().map(|bytes| Serial::from_der_content(bytes)),
    )
    .unwrap();
    assert_eq!(restored, from_base);
    restored.apply_delta(&delta).unwrap();
    from_base.apply_delta(&delta).unwrap();
    assert_eq!(restored, from_base);
    let too_long = [0x7f; 22];
    assert_eq!(
        RevokedSerials::from_serials(issuing.key_identifier.clone(), CrlScope::All, CrlNumber::from(1), [Serial::from_der_content(&too_long)]),
        None
    );
}

#[test]
fn freshness_follows_this_and_next_update() {
    let issuing = issuing_ca();
    let current = verified(vector!("p256-piv-issuing-ca-number-10.crl.der"), &issuing);
    assert_eq!(current.freshness(NOW, 0), Freshness::Current);
    assert_eq!(current.freshness(THIS_UPDATE - 1, 0), Freshness::NotYetValid);
    assert_eq!(current.freshness(NEXT_UPDATE + 1, 0), Freshness::Expired);
    assert_eq!(current.freshness(NEXT_UPDATE + 1, 3600), Freshness::Current);
    let expired = verified(vector!("p256-piv-issuing-ca-expired.crl.der"), &issuing);
    assert_eq!(expired.next_update(), Some(1_736_294_400));
    assert_eq!(expired.freshness(NOW, 86_400), Freshness::Expired);
    let open_ended = verified(vector!("p256-piv-issuing-ca-no-next-update.crl.der"), &issuing);
    assert_eq!(open_ended.next_update(), None);
    assert_eq!(open_ended.entry_count(), 2);
    assert_eq!(open_ended.freshness(NOW, 0), Freshness::NoNextUpdate);
}

#[test]
fn crl_numbers_order_as_integers() {
    let issuing = issuing_ca();
    let nine = verified(vector!("p256-piv-issuing-ca-number-9.crl.der"), &issuing);
    let ten = verified(vector!("p256-piv-issuing-ca-number-10.crl.der"), &issuing);
    assert!(nine.number() < ten.number());
    assert_eq!((nine.number().to_string(), ten.number().to_string()), ("9".into(), "10".into()));
    let max = CrlNumber::from_be_bytes(&[0xff; 20]).unwrap();
    assert_eq!(max.to_string(), "1461501637330902918203684832716283019655932542975");
    assert_eq!(max.as_u128(), None);
    assert_eq!(CrlNumber::from_be_bytes(&[0, 0, 1, 0]).unwrap().as_u128(), Some(256));
    assert_eq!(CrlNumber::from_be_bytes(&[0, 0, 1, 0]).unwrap().to_be_bytes(), [1, 0]);
    assert_eq!(CrlNumber::default().to_string(), "0");
    assert_eq!(CrlNumber::default().to_be_bytes(), [0]);
    assert_eq!(CrlNumber::from_be_bytes(&[1; 21]), None);
    assert!(CrlNumber::from(u64::MAX) < CrlNumber::from_be_bytes(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap());
    assert_eq!(format!("{:?}", CrlNumber::from(12)), "CrlNumber(12)");
}

#[test]
fn critical_extensions_not_understood_are_refused_by_oid() {
    let der = vector!("p256-unknown-critical-extension.crl.der");
    let refused = parse(der).unwrap_err();
    assert_eq!(refused, CrlError::UnknownCriticalExtension { at: extension_at(der, &UNKNOWN_OID), oid: UNKNOWN_OID, entry: None });
    assert_eq!(
        refused.to_string(),
        format!("CRL extension 1.3.6.1.4.1.99999.1 at byte {} is critical and not understood", extension_at(der, &UNKNOWN_OID))
    );
    let der = vector!("p256-unknown-critical-entry-extension.crl.der");
    assert_eq!(
        parse(der).unwrap_err(),
        CrlError::UnknownCriticalExtension { at: extension_at(der, &UNKNOWN_OID), oid: UNKNOWN_OID, entry: Some(0) }
    );
    // The same extension, not critical, is skipped.
    let quiet = verified(vector!("p256-unknown-non-critical-extension.crl.der"), &issuing_ca());
    assert_eq!(quiet.entry_count(), 2);
}

#[test]
fn indirect_and_partial_crls_are_refused() {
    let der = vector!("p256-indirect-idp.crl.der");
    assert_eq!(
        parse(der).unwrap_err(),
        CrlError::IndirectCrl { at: find(der, &[0x84, 0x01, 0xff]), field: "issuingDistributionPoint.indirectCRL" }
    );
    let der = vector!("p256-indirect-certificate-issuer-entry.crl.der");
    let certificate_issuer = ObjectIdentifier::new_unwrap("2.5.29.29");
    assert_eq!(
        parse(der).unwrap_err(),
        CrlError::IndirectCrl { at: extension_at(der, &certificate_issuer), field: "certificateIssuer" }
    );
    let der = vector!("p256-only-some-reasons.crl.der");
    match parse(der) {
        Err(CrlError::PartialScope { field: "issuingDistributionPoint.onlySomeReasons", at }) => assert_eq!(der[at], 0x83),
        other => panic!("{other:?}"),
    }
    // An authority revocation list is read, and says so.
    let arl = verified(vector!("p256-only-ca-certificates.crl.der"), &issuing_ca());
    assert_eq!((arl.scope(), arl.entry_count()), (CrlScope::CaCertificates, 0));
    assert_eq!(arl.distribution_point_uris(), [] as [&str; 0]);
}

#[test]
fn two_cas_of_one_dn_are_told_apart_by_their_keys() {
    let a = ca(vector!("shared-dn-ca-a.pem"));
    let b = ca(vector!("shared-dn-ca-b.pem"));
    assert_eq!(a.subject_dn, "CN=ICAM Test Card Signing CA,OU=Test PKI,O=certbind,C=US");
    assert_eq!((&a.subject_dn, &a.subject_der), (&b.subject_dn, &b.subject_der));
    assert_ne!(a.key_identifier, b.key_identifier);
    let crl_a = vector!("shared-dn-ca-a.crl.der");
    let crl_b = vector!("shared-dn-ca-b.crl.der");
    assert_eq!(verified(crl_a, &a).number(), CrlNumber::from(1));
    assert_eq!(verified(crl_b, &b).number(), CrlNumber::from(1));
    assert_eq!(
        verify_crl(crl_a, &b, &limits()).unwrap_err(),
        CrlError::AuthorityKeyMismatch { crl: a.key_identifier.clone(), ca: b.key_identifier.clone() }
    );
    // Without an AKI the names match, and the signature alone refuses it.
    let bare = vector!("shared-dn-ca-a-without-aki.crl.der");
    assert_eq!(parse(bare).unwrap().authority_key_identifier(), None);
    assert_eq!(verified(bare, &a).number(), CrlNumber::from(2));
    assert_eq!(verify_crl(bare, &b, &limits()).unwrap_err(), CrlError::BadSignature);
    // Both revoke serial 42: the revocation is the pair (CA key, serial), never (DN, serial).
    let serials_a = RevokedSerials::from_complete(&verified(crl_a, &a)).unwrap();
    assert!(serials_a.contains(Serial::from_der_content(&[0x42])));
}

#[test]
fn a_ca_without_subject_key_identifier_is_known_by_its_spki_digest() {
    let ca = ca(vector!("ca-p256-without-ski.pem"));
    assert_eq!(ca.key_identifier_source, KeyIdentifierSource::SpkiSha256);
    assert_eq!(ca.key_identifier, KeyIdentifier::of_spki(&ca.spki_der));
    let crl = verified(vector!("ca-p256-without-ski.crl.der"), &ca);
    assert_eq!(crl.entries().map(|e| e.serial.to_hex()).collect::<Vec<_>>(), ["10"]);
}

#[test]
fn a_certificate_names_the_http_and_ldap_distribution_points_of_its_ca() {
    let leaf = crate::certificate::pem::decode_certificate_pem(vector!("leaf-with-crl-distribution-points.pem")).unwrap();
    assert_eq!(
        crl_distribution_urls(&leaf).unwrap(),
        [
            CrlUrl { scheme: CrlUrlScheme::Http, url: "http://crl.certbind.test/rsa-ca.crl".into() },
            CrlUrl {
                scheme: CrlUrlScheme::Ldap,
                url: "ldap://ldap.certbind.test/cn=certbind%20Test%20RSA%20CA?certificateRevocationList;binary".into()
            },
        ],
        "ftp and the point limited to keyCompromise are left out"
    );
    assert_eq!(CaCertificate::from_der(&leaf).unwrap().crl_urls, crl_distribution_urls(&leaf).unwrap());
    // Its AKI is the RSA CA's key.
    let facts = CertificateFacts::from_der(&leaf).unwrap();
    assert_eq!(facts.authority_key_identifier, Some(rsa_ca().key_identifier));
}

#[test]
fn the_ca_must_be_the_issuer_and_able_to_sign_crls() {
    let der = vector!("p256-piv-issuing-ca-number-10.crl.der");
    let issuing = issuing_ca();
    let leaf = ca(include_bytes!("../../../tests/pki/piv-auth.pem"));
    assert_eq!(
        verify_crl(der, &leaf, &limits()).unwrap_err(),
        CrlError::CaCannotSignCrls { problem: "its certificate does not assert basicConstraints cA" }
    );
    let no_crl_sign = CaCertificate { may_sign_crls: false, ..issuing.clone() };
    assert_eq!(
        verify_crl(der, &no_crl_sign, &limits()).unwrap_err(),
        CrlError::CaCannotSignCrls { problem: "its keyUsage does not include cRLSign" }
    );
    assert_eq!(
        verify_crl(der, &rsa_ca(), &limits()).unwrap_err(),
        CrlError::AuthorityKeyMismatch { crl: issuing.key_identifier.clone(), ca: rsa_ca().key_identifier }
    );
    let bare = vector!("shared-dn-ca-a-without-aki.crl.der");
    assert_eq!(
        verify_crl(bare, &rsa_ca(), &limits()).unwrap_err(),
        CrlError::IssuerMismatch {
            crl: "CN=ICAM Test Card Signing CA,OU=Test PKI,O=certbind,C=US".into(),
            ca: "CN=certbind Test RSA CA,O=certbind,C=US".into()
        }
    );
    let rsa_keyed = CaCertificate { spki_der: rsa_ca().spki_der, ..issuing.clone() };
    assert_eq!(
        verify_crl(der, &rsa_keyed, &limits()).unwrap_err(),
        CrlError::KeyAlgorithmMismatch { key: "RSA", signature: "ECDSA" }
    );
    let ed25519 = CaCertificate { spki_der: crate::snapshot::ed25519_spki_der(&[7; 32]), ..issuing.clone() };
    assert_eq!(
        verify_crl(der, &ed25519, &limits()).unwrap_err(),
        CrlError::UnsupportedKey { oid: ObjectIdentifier::new_unwrap("1.3.101.112") }
    );
    // RSA keys are held to the bounds issuers' JWKS keys are: 2048 to 8192 bits.
    let rsa_spki = |modulus_octets: usize| {
        let rsa_encryption = sequence(&[&tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]), &tlv(0x05, &[])]);
        let mut modulus = vec![0xc5; modulus_octets];
        modulus[modulus_octets - 1] |= 1;
        let key = sequence(&[&integer(&modulus), &integer(&[1, 0, 1])]);
        sequence(&[&rsa_encryption, &tlv(0x03, &[&[0u8][..], &key].concat())])
    };
    let rsa_crl = vector!("rsa-pkcs1-sha256-three-entries.crl.der");
    for (octets, problem) in [
        (128, "RSA modulus shorter than 2048 bits"),
        (1026, "RSA modulus or exponent too long"),
        (1025, "RSA key out of bounds (modulus over 8192 bits, or a bad exponent)"),
    ] {
        let keyed = CaCertificate { spki_der: rsa_spki(octets), ..rsa_ca() };
        assert_eq!(verify_crl(rsa_crl, &keyed, &limits()).unwrap_err(), CrlError::UnusableKey { problem }, "{octets} octets");
    }
    let fake_2048 = CaCertificate { spki_der: rsa_spki(256), ..rsa_ca() };
    assert_eq!(verify_crl(rsa_crl, &fake_2048, &limits()).unwrap_err(), CrlError::BadSignature);
    let broken = CaCertificate { spki_der: vec![0x30, 0x00], ..issuing.clone() };
    assert_eq!(verify_crl(der, &broken, &limits()).unwrap_err(), CrlError::UnusableKey { problem: "not a SubjectPublicKeyInfo" });
    // The same name in another encoding still matches as text.
    let ca = CaCertificate { subject_der: Vec::new(), ..issuing };
    assert!(verify_crl(der, &ca, &limits()).is_ok());
}

#[test]
fn revoked_serials_are_normalised_as_certificates_serials_are() {
    let crl = verified(vector!("p256-piv-issuing-ca-number-10.crl.der"), &issuing_ca());
    let piv_auth = CertificateFacts::from_pem(include_bytes!("../../../tests/pki/piv-auth.pem")).unwrap();
    let first = crl.entries().next().unwrap();
    assert_eq!(first.serial.to_hex(), crate::identity::normalize_serial(&piv_auth.serial_hex));
    assert_eq!(first.serial.to_hex(), "9f3a5c7e21d04b68");
    assert_eq!(format!("{:?}", first.serial), "Serial(9f3a5c7e21d04b68)");
    assert_eq!(Serial::from_der_content(&[0x00]).to_hex(), "0");
    assert_eq!(Serial::from_der_content(&[0x0a]).to_hex(), "a");
    let negative = Serial::from_der_content(&[0xff]);
    assert!(negative.is_negative());
    assert_eq!(negative.to_hex(), "-01");
}

// ---- CRLs written here, signed by a synthetic CA ----

fn synthetic() -> SyntheticCa {
    SyntheticCa::new("tests", "Synthetic CA").unwrap()
}

fn signed(ca: &SyntheticCa, edit: impl FnOnce(&mut TbsParts)) -> Vec<u8> {
    let mut parts = ca.tbs_parts(5, THIS_UPDATE, Some(NEXT_UPDATE), synthetic_entries(3, REVOKED_ON));
    edit(&mut parts);
    ca.sign(&parts.encode())
}

#[test]
fn synthetic_crls_verify_and_their_serials_collect() {
    let ca = synthetic();
    let der = ca.synthetic_crl(42, 1000, THIS_UPDATE);
    let crl = verified(&der, ca.certificate());
    assert_eq!((crl.number(), crl.entry_count()), (CrlNumber::from(42), 1000));
    let serials = RevokedSerials::from_complete(&crl).unwrap();
    assert_eq!(serials.len(), 1000);
    for i in [0u64, 1, 500, 999] {
        let expected = synthetic_serial(i);
        assert!(serials.contains(Serial::from_der_content(&expected)), "{i}");
    }
    assert!(!serials.contains(Serial::from_der_content(&synthetic_serial(1000))));
    assert!(!serials.contains(Serial::from_der_content(&[0x01; 22])));
    let reasons = crl.entries().filter(|e| e.reason == Some(ReasonCode::KeyCompromise)).count();
    assert_eq!(reasons, 250);
    assert!(serials.heap_bytes() >= 1000 * 22);
    let iterated: Vec<_> = serials.iter().collect();
    assert!(iterated.windows(2).all(|pair| (pair[0].der_content().len(), pair[0].der_content()) < (pair[1].der_content().len(), pair[1].der_content())));
}

#[test]
fn a_real_ca_signs_with_its_own_key_and_only_its_own() {
    use p256::pkcs8::DecodePrivateKey as _;
    let certificate = CaCertificate::from_pem(include_bytes!("../../../tests/pki/piv-issuing-ca.pem")).unwrap();
    let key = |pem: &str| p256::ecdsa::SigningKey::from_pkcs8_pem(pem).unwrap();
    let ca = SyntheticCa::with_key(key(include_str!("../../../tests/pki/piv-issuing-ca.key")), certificate.clone()).unwrap();
    assert_eq!(ca.name_der(), certificate.subject_der.as_slice());
    let der = ca.synthetic_crl(7, 10, THIS_UPDATE);
    let crl = verified(&der, &certificate);
    assert_eq!((crl.number(), crl.entry_count()), (CrlNumber::from(7), 10));
    let other = key(include_str!("../../../tests/pki/untrusted-ca.key"));
    assert!(SyntheticCa::with_key(other, certificate).is_none());
}

#[test]
fn garbage_and_truncated_der_are_refused_where_they_break() {
    let der = vector!("p256-piv-issuing-ca-number-10.crl.der");
    assert_eq!(parse(&[]).unwrap_err(), CrlError::Malformed { at: 0, field: "CertificateList", problem: "truncated: missing" });
    assert_eq!(
        parse(b"not a CRL").unwrap_err(),
        CrlError::UnexpectedTag { at: 0, field: "CertificateList", expected: 0x30, found: b'n' }
    );
    assert_eq!(
        parse(&der[..der.len() - 1]).unwrap_err(),
        CrlError::Malformed { at: 0, field: "CertificateList", problem: "value runs past its enclosing element" }
    );
    for len in 0..der.len() {
        assert!(parse(&der[..len]).is_err(), "a prefix of {len} bytes");
    }
    let mut trailing = der.to_vec();
    trailing.push(0);
    assert_eq!(parse(&trailing).unwrap_err(), CrlError::Trailing { at: der.len(), field: "CertificateList", len: 1 });
    let cases: [(&[u8], &str); 4] = [
        (&[0x30, 0x80, 0x00, 0x00], "indefinite length"),
        (&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0], "length not in its shortest form"),
        (&[0x30, 0x82, 0x00, 0x80], "length not in its shortest form"),
        (&[0x30, 0x85, 1, 1, 1, 1, 1], "length of more than four octets"),
    ];
    for (bytes, problem) in cases {
        assert_eq!(parse(bytes).unwrap_err(), CrlError::Malformed { at: 0, field: "CertificateList", problem }, "{bytes:02x?}");
    }
    assert_eq!(
        walk::Der::new(&[0x3f, 0x00]).next("any").unwrap_err(),
        CrlError::Malformed { at: 0, field: "any", problem: "high-tag-number form" }
    );
    // Random damage never panics, and whatever still reads agrees with x509-cert.
    let mut damage = crate::damage::Damage::new(0x9e37_79b9_7f4a_7c15);
    let vectors: [&[u8]; 6] = [
        der,
        vector!("rsa-pkcs1-sha256-three-entries.crl.der"),
        vector!("p256-piv-issuing-ca-delta-11-on-10.crl.der"),
        vector!("rsa-pss-sha384-salt-48.crl.der"),
        vector!("p256-piv-issuing-ca-no-next-update.crl.der"),
        vector!("p256-only-ca-certificates.crl.der"),
    ];
    let (mut read, mut refused) = (0, 0);
    for vector in vectors {
        reference::exercise(vector);
        for _ in 0..3000 {
            let (damaged, _) = damage.one_change(vector);
            reference::exercise(&damaged);
            match parse(&damaged) {
                Ok(_) => read += 1,
                Err(_) => refused += 1,
            }
        }
    }
    assert!(read > 1000 && refused > 1000, "read {read}, refused {refused}");
}

#[test]
fn bytes_left_inside_an_element_are_refused() {
    let ca = synthetic();
    let der = signed(&ca, |parts| parts.trailing = tlv(0x05, &[]));
    match parse(&der) {
        Err(CrlError::Trailing { field: "tbsCertList", len: 2, at }) => assert_eq!(&der[at..at + 2], [0x05, 0x00]),
        other => panic!("{other:?}"),
    }
    let der = signed(&ca, |parts| {
        parts.extensions[1] = extension(&id_ce(20), false, &[integer(&[5]), vec![0x00]].concat())
    });
    match parse(&der) {
        Err(CrlError::Trailing { field: "cRLNumber", len: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    let der = signed(&ca, |parts| {
        let mut entry = entry(&[7], REVOKED_ON, &[]);
        entry[1] += 2;
        entry.extend_from_slice(&[0x05, 0x00]);
        parts.entries = Some(entry);
    });
    match parse(&der) {
        Err(CrlError::Trailing { field: "revokedCertificates entry", len: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn caps_hold() {
    let ca = synthetic();
    let der = ca.synthetic_crl(1, 4, THIS_UPDATE);
    let three = CrlLimits { max_der_bytes: der.len(), max_entries: 3 };
    let fourth = parse(&der).unwrap().entries().nth(3).unwrap();
    let at = find(&der, fourth.serial.der_content()) - 4;
    assert_eq!(Crl::from_der(&der, &three).unwrap_err(), CrlError::TooManyEntries { at, limit: 3 });
    assert_eq!(
        Crl::from_der(&der, &CrlLimits { max_der_bytes: der.len() - 1, max_entries: 10 }).unwrap_err(),
        CrlError::TooLarge { len: der.len(), limit: der.len() - 1 }
    );
    assert_eq!(Crl::from_der(&der, &CrlLimits { max_entries: 4, ..three }).unwrap().entry_count(), 4);
    assert_eq!(CrlLimits::default(), CrlLimits { max_der_bytes: 256 << 20, max_entries: 8_000_000 });

    // Serials: 20 octets, 21 with a sign octet, no more.
    let with_serial = |serial: &[u8]| signed(&ca, |parts| parts.entries = Some(entry(serial, REVOKED_ON, &[])));
    let twenty = [0x7f; 20];
    assert_eq!(verified(&with_serial(&twenty), ca.certificate()).entries().next().unwrap().serial.der_content(), twenty);
    let signed_twenty = [0xff; 20];
    let der = with_serial(&signed_twenty);
    assert_eq!(verified(&der, ca.certificate()).entries().next().unwrap().serial.der_content().len(), 21);
    let der = with_serial(&[0x7f; 21]);
    let at = find(&der, &[0x02, 21, 0x7f]);
    assert_eq!(parse(&der).unwrap_err(), CrlError::SerialTooLong { at, len: 21 });

    // Extensions: a repeat, and one too many.
    let der = signed(&ca, |parts| parts.extensions.push(crl_number_extension(6)));
    let number_oid = ObjectIdentifier::new_unwrap("2.5.29.20");
    let second = find(&der, &crl_number_extension(6));
    assert_eq!(parse(&der).unwrap_err(), CrlError::RepeatedExtension { at: second, oid: number_oid });
    let der = signed(&ca, |parts| {
        for n in 0..31u8 {
            parts.extensions.push(extension(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x86, 0x8d, 0x1f, 0x02, n], false, &[0x05, 0x00]));
        }
    });
    match parse(&der) {
        Err(CrlError::TooManyExtensions { limit: 32, .. }) => {}
        other => panic!("{other:?}"),
    }
    let der = signed(&ca, |parts| {
        let extensions: Vec<_> =
            (0..9u8).map(|n| extension(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x86, 0x8d, 0x1f, 0x03, n], false, &[0x05, 0x00])).collect();
        parts.entries = Some(entry(&[1], REVOKED_ON, &extensions));
    });
    match parse(&der) {
        Err(CrlError::TooManyExtensions { limit: 8, .. }) => {}
        other => panic!("{other:?}"),
    }

    // A name too large to be a CA's.
    let long_cn = "x".repeat(MAX_NAME_DER);
    let der = signed(&ca, |parts| parts.issuer = name(&[(&[0x55, 0x04, 0x03], long_cn.as_str())]));
    match parse(&der) {
        Err(CrlError::IssuerName { problem, .. }) => assert_eq!(problem, "larger than 4096 bytes"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn syntax_rfc_5280_requires_is_enforced() {
    let ca = synthetic();
    let version_at = |der: &[u8]| find(der, &ecdsa_with_sha256()) - 3;
    let der = signed(&ca, |parts| parts.version = Vec::new());
    let at = find(&der, &ecdsa_with_sha256());
    assert_eq!(
        parse(&der).unwrap_err(),
        CrlError::Malformed { at, field: "tbsCertList.version", problem: "absent: a v1 CRL carries no CRL Number" }
    );
    let der = signed(&ca, |parts| parts.version = integer(&[2]));
    assert_eq!(parse(&der).unwrap_err(), CrlError::Malformed { at: version_at(&der), field: "tbsCertList.version", problem: "not v2" });
    let der = signed(&ca, |parts| parts.extensions.truncate(1));
    assert_eq!(parse(&der).unwrap_err(), CrlError::MissingCrlNumber);
    let der = signed(&ca, |parts| parts.extensions.clear());
    assert_eq!(parse(&der).unwrap_err(), CrlError::MissingCrlNumber);
    let der = signed(&ca, |parts| parts.extensions[1] = extension(&id_ce(20), false, &tlv(0x02, &[0x80])));
    match parse(&der) {
        Err(CrlError::Malformed { field: "cRLNumber", problem: "negative", .. }) => {}
        other => panic!("{other:?}"),
    }
    let der = signed(&ca, |parts| parts.extensions.push(delta_indicator_extension(5)));
    match parse(&der) {
        Err(CrlError::Malformed { field: "deltaCRLIndicator", .. }) => {}
        other => panic!("{other:?}"),
    }
    let der = signed(&ca, |parts| parts.entries = Some(entry(&[9], REVOKED_ON, &[reason_extension(8)])));
    let at = find(&der, &[0x02, 0x01, 0x09]) - 2;
    assert_eq!(parse(&der).unwrap_err(), CrlError::RemoveFromCrlInCompleteCrl { at, entry: 0 });
    let der = signed(&ca, |parts| parts.entries = Some(entry(&[9], REVOKED_ON, &[reason_extension(7)])));
    match parse(&der) {
        Err(CrlError::Malformed { field: "reasonCode", problem: "not an RFC 5280 CRLReason", .. }) => {}
        other => panic!("{other:?}"),
    }
    // A negative serial is read, not refused (RFC 5280 asks to handle them gracefully).
    let der = signed(&ca, |parts| parts.entries = Some(sequence(&[&tlv(0x02, &[0xff]), &time(REVOKED_ON)])));
    assert_eq!(verified(&der, ca.certificate()).entries().next().unwrap().serial.to_hex(), "-01");
    // An empty revokedCertificates is read as no entries.
    let der = signed(&ca, |parts| parts.entries = Some(Vec::new()));
    assert_eq!(verified(&der, ca.certificate()).entry_count(), 0);
    let der = signed(&ca, |parts| parts.entries = None);
    assert_eq!(verified(&der, ca.certificate()).entry_count(), 0);
    // thisUpdate after 2049 is a GeneralizedTime.
    let der = signed(&ca, |parts| parts.this_update = 2_556_144_000);
    assert_eq!(verified(&der, ca.certificate()).this_update(), 2_556_144_000);
}

#[test]
fn the_signature_algorithm_must_be_one_and_supported() {
    let ca = synthetic();
    let tbs = ca.tbs_parts(5, THIS_UPDATE, Some(NEXT_UPDATE), Vec::new()).encode();
    let ecdsa_sha384 = sequence(&[&tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03])]);
    let der = certificate_list(&tbs, &ecdsa_sha384, &[0x30, 0x00]);
    let at = find(&der, &tbs) + tbs.len();
    assert_eq!(parse(&der).unwrap_err(), CrlError::SignatureAlgorithmMismatch { at });
    let ed25519 = sequence(&[&tlv(0x06, &[0x2b, 0x65, 0x70])]);
    let der = certificate_list(&tbs, &ed25519, &[0; 64]);
    let at = find(&der, &tbs) + tbs.len();
    assert_eq!(
        parse(&der).unwrap_err(),
        CrlError::UnsupportedSignatureAlgorithm { at, oid: ObjectIdentifier::new_unwrap("1.3.101.112") }
    );
    let with_parameters = sequence(&[&tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]), &integer(&[1])]);
    let der = certificate_list(&tbs, &with_parameters, &[0x30, 0x00]);
    match parse(&der) {
        Err(CrlError::Malformed { field: "signatureAlgorithm", problem: "parameters must be absent or NULL", .. }) => {}
        other => panic!("{other:?}"),
    }
    // A signature that is not DER, or not whole octets.
    let der = certificate_list(&tbs, &ecdsa_with_sha256(), &[0x01, 0x02]);
    assert_eq!(verify_crl(&der, ca.certificate(), &limits()).unwrap_err(), CrlError::BadSignature);
    let mut der = ca.sign(&tbs);
    let signature_at = find(&der, &tbs) + tbs.len() + ecdsa_with_sha256().len();
    der[signature_at + 2] = 1;
    match parse(&der) {
        Err(CrlError::Malformed { field: "signatureValue", problem: "BIT STRING does not hold whole octets", .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_read_as_sentences() {
    let cases: [(CrlError, &str); 5] = [
        (
            CrlError::UnexpectedTag { at: 4, field: "tbsCertList", expected: 0x30, found: 0x02 },
            "tbsCertList at byte 4: expected SEQUENCE (tag 0x30), found INTEGER (tag 0x02)",
        ),
        (CrlError::Trailing { at: 9, field: "CertificateList", len: 3 }, "3 unexpected bytes after CertificateList, at byte 9"),
        (
            CrlError::UnknownCriticalExtension { at: 77, oid: UNKNOWN_OID, entry: Some(12) },
            "extension 1.3.6.1.4.1.99999.1 of revoked entry 12 (byte 77) is critical and not understood",
        ),
        (
            CrlError::DeltaDoesNotApply { held: CrlNumber::from(9), base: CrlNumber::from(10), delta: CrlNumber::from(11) },
            "delta CRL 11 (base 10) does not apply to the complete CRL 9 held",
        ),
        (CrlError::TooLarge { len: 10, limit: 5 }, "CRL is 10 bytes, more than the 5-byte limit"),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
}
