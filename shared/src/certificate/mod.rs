//! What a client certificate says, extracted once from its DER encoding.

mod borrowed;
pub mod ca;
pub mod card;
pub mod dn;
#[cfg(any(test, feature = "x509-reference"))]
pub mod reference;
pub mod fascn;
pub mod key;
pub mod pem;
pub mod san;

use crate::encoding::hex_lower;
use crate::fingerprint::Fingerprint;
use der::asn1::ObjectIdentifier;
use borrowed::{CertificateRef, ExtensionRef};
use const_oid::AssociatedOid;
use der::Decode;
use x509_cert::ext::pkix::{CertificatePolicies, ExtendedKeyUsage};
use x509_cert::time::Time;

pub use ca::{CaCertificate, KeyIdentifier};
pub use card::{CardFact, CardFacts, CertificateType};
pub use fascn::Fascn;
pub use key::PublicKeyFacts;
pub use san::SubjectAltName;

/// Largest certificate DER accepted. Real PIV/CAC certificates are 1.5–2.5 KiB; 16 KiB leaves
/// room for unusual extensions while bounding the work an attacker can ask for.
pub const MAX_CERTIFICATE_DER: usize = 16 * 1024;

/// id-PIV-cardAuth: the Card Authentication key needs no PIN, so it proves possession of a
/// card, not presence of its holder.
pub const OID_EKU_PIV_CARD_AUTH: &str = "2.16.840.1.101.3.6.8";

/// Certificate policies asserted only by Card Authentication certificates, production arc
/// then FPKI test arc: id-fpki-common-cardAuth, id-fpki-certpcy-pivi-cardAuth,
/// id-fpki-common-pivi-cardAuth, and ECA's PIV-I cardAuth (which has no test arc). A card-auth
/// certificate need not carry the EKU, so either marks it.
pub const CARD_AUTH_POLICY_OIDS: &[&str] = &[
    "2.16.840.1.101.3.2.1.3.17",
    "2.16.840.1.101.3.2.1.48.13",
    "2.16.840.1.101.3.2.1.3.19",
    "2.16.840.1.101.3.2.1.48.79",
    "2.16.840.1.101.3.2.1.3.46",
    "2.16.840.1.101.3.2.1.48.84",
    "2.16.840.1.101.3.2.1.12.7",
];

/// The facts certbind decides on. Built by [`CertificateFacts::from_der`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    pub fingerprint: Fingerprint,
    /// RFC 4514 string, most specific RDN first (`CN=…,OU=…,O=…,C=US`).
    pub subject_dn: String,
    pub issuer_dn: String,
    /// Both names as people read them, for the headers upstreams read.
    pub display_names: DisplayNames,
    /// Lowercase hex of the serial's magnitude, without a sign-padding zero byte.
    pub serial_hex: String,
    /// Validity window, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub subject_alt_names: Vec<SubjectAltName>,
    /// certificatePolicies OIDs, dotted.
    pub policy_oids: Vec<String>,
    /// extKeyUsage OIDs, dotted.
    pub extended_key_usages: Vec<String>,
    /// The AuthorityKeyIdentifier's keyIdentifier: the key of the CA that issued it.
    pub authority_key_identifier: Option<KeyIdentifier>,
    /// The subject's public key; `None` when the certificate itself was not at hand.
    pub public_key: Option<PublicKeyFacts>,
    /// False when only part of the certificate was available (e.g. the connection's
    /// properties give a digest and a subject but no issuer): constraints that need a missing
    /// fact then refuse.
    pub complete: bool,
}

/// A certificate's subject and issuer DN in the display form ([`dn::display_dn`]), made once
/// with its facts, which are cached: the identity headers show them on every request. `None`
/// where the display form is the matching form itself, as for most names, which then cost
/// nothing to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisplayNames {
    subject: Option<Box<str>>,
    issuer: Option<Box<str>>,
}

impl DisplayNames {
    /// The display forms of these two names in the matching form.
    pub fn of(subject_dn: &str, issuer_dn: &str) -> Self {
        let differing = |matching: &str| match dn::display_dn(matching) {
            std::borrow::Cow::Owned(shown) => Some(shown.into_boxed_str()),
            std::borrow::Cow::Borrowed(_) => None,
        };
        DisplayNames { subject: differing(subject_dn), issuer: differing(issuer_dn) }
    }

    fn heap_bytes(&self) -> usize {
        [&self.subject, &self.issuer].iter().map(|name| name.as_ref().map_or(0, |n| n.len())).sum()
    }
}

/// Why certificate bytes were refused. Says what was wrong, never echoes the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateError {
    TooLarge {
        len: usize,
        limit: usize,
    },
    /// No `-----BEGIN CERTIFICATE-----` block, a broken block, or bytes after it.
    Pem(&'static str),
    /// The DER does not decode as an X.509 certificate; the text names the part.
    Der(String),
    /// The certificate decodes but a field is unusable (e.g. a time out of range).
    Field(&'static str),
}

impl std::fmt::Display for CertificateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertificateError::TooLarge { len, limit } => {
                write!(
                    f,
                    "certificate is {len} bytes, more than the {limit}-byte limit"
                )
            }
            CertificateError::Pem(what) => write!(f, "PEM: {what}"),
            CertificateError::Der(what) => write!(f, "DER: {what}"),
            CertificateError::Field(what) => write!(f, "certificate field: {what}"),
        }
    }
}

impl std::error::Error for CertificateError {}

impl CertificateFacts {
    /// Extracts the facts from one DER-encoded X.509 certificate. Refuses more than
    /// [`MAX_CERTIFICATE_DER`] bytes, anything after the certificate's SEQUENCE, DER that
    /// x509-cert does not accept, a repeated extension, and identity-bearing fields that are
    /// present but unreadable (a UPN or FASC-N of the wrong form, an AuthorityKeyIdentifier that
    /// does not decode or has an empty keyIdentifier).
    pub fn from_der(der: &[u8]) -> Result<CertificateFacts, CertificateError> {
        let certificate = decode_certificate(der)?;
        let extensions = certificate.extensions.as_slice();
        refuse_repeated_extensions(extensions)?;

        let subject_alt_names = match extension_value(extensions, &x509_cert::ext::pkix::SubjectAltName::OID) {
            Some(value) => san::subject_alt_names(value)?,
            None => Vec::new(),
        };
        let policy_oids = match extension::<CertificatePolicies>(extensions, "certificatePolicies")? {
            Some(policies) => policies.0.iter().map(|p| dotted_oid(&p.policy_identifier)).collect(),
            None => Vec::new(),
        };
        let extended_key_usages = match extension::<ExtendedKeyUsage>(extensions, "extKeyUsage")? {
            Some(usages) => usages.0.iter().map(dotted_oid).collect(),
            None => Vec::new(),
        };

        let subject_dn = dn::format_name(&certificate.subject)?;
        let issuer_dn = dn::format_name(&certificate.issuer)?;
        Ok(CertificateFacts {
            fingerprint: Fingerprint::of_der(der),
            display_names: DisplayNames::of(&subject_dn, &issuer_dn),
            subject_dn,
            issuer_dn,
            serial_hex: serial_hex(certificate.serial_number.as_bytes()),
            not_before: unix_seconds(certificate.validity.not_before)?,
            not_after: unix_seconds(certificate.validity.not_after)?,
            subject_alt_names,
            policy_oids,
            extended_key_usages,
            authority_key_identifier: ca::authority_key_identifier(extensions)?,
            public_key: PublicKeyFacts::of_spki(certificate.spki_der),
            complete: true,
        })
    }

    /// [`Self::from_der`] of the first certificate in a PEM text.
    pub fn from_pem(text: &[u8]) -> Result<CertificateFacts, CertificateError> {
        Self::from_der(&pem::decode_certificate_pem(text)?)
    }

    /// FASC-N digit strings from PIV otherName SANs.
    pub fn fascns(&self) -> impl Iterator<Item = &str> {
        self.subject_alt_names.iter().filter_map(|s| match s {
            SubjectAltName::FascN(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// URIs from SANs (PIV card UUIDs, SPIFFE IDs).
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.subject_alt_names.iter().filter_map(|s| match s {
            SubjectAltName::Uri(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// Email addresses from RFC 822 SANs.
    pub fn emails(&self) -> impl Iterator<Item = &str> {
        self.subject_alt_names.iter().filter_map(|s| match s {
            SubjectAltName::Email(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// Microsoft UPNs from otherName SANs.
    pub fn upns(&self) -> impl Iterator<Item = &str> {
        self.subject_alt_names.iter().filter_map(|s| match s {
            SubjectAltName::Upn(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The subject DN as people read it ([`dn::display_dn`]); never compared.
    pub fn display_subject(&self) -> &str {
        self.display_names.subject.as_deref().unwrap_or(&self.subject_dn)
    }

    /// The issuer DN as people read it ([`dn::display_dn`]); never compared.
    pub fn display_issuer(&self) -> &str {
        self.display_names.issuer.as_deref().unwrap_or(&self.issuer_dn)
    }

    /// Approximate bytes these facts hold, for caches bounded by memory.
    pub fn heap_bytes(&self) -> usize {
        let strings = |v: &[String]| v.iter().map(|s| s.len() + std::mem::size_of::<String>()).sum::<usize>();
        std::mem::size_of::<Self>()
            + self.subject_dn.len()
            + self.issuer_dn.len()
            + self.display_names.heap_bytes()
            + self.serial_hex.len()
            + self.subject_alt_names.iter().map(|s| s.text_len() + std::mem::size_of::<SubjectAltName>()).sum::<usize>()
            + strings(&self.policy_oids)
            + strings(&self.extended_key_usages)
            + self.authority_key_identifier.as_ref().map_or(0, |k| k.as_bytes().len())
            + self.public_key.as_ref().map_or(0, PublicKeyFacts::heap_bytes)
    }

    /// A PIV (or PIV-I) Card Authentication certificate: its EKU, or a card-auth policy.
    pub fn is_piv_card_auth(&self) -> bool {
        self.extended_key_usages.iter().any(|o| o == OID_EKU_PIV_CARD_AUTH)
            || self.policy_oids.iter().any(|o| CARD_AUTH_POLICY_OIDS.contains(&o.as_str()))
    }
}

/// Decodes exactly one certificate from `der`, naming trailing bytes separately from
/// malformed DER.
fn decode_certificate(der: &[u8]) -> Result<CertificateRef<'_>, CertificateError> {
    if der.len() > MAX_CERTIFICATE_DER {
        return Err(CertificateError::TooLarge {
            len: der.len(),
            limit: MAX_CERTIFICATE_DER,
        });
    }
    CertificateRef::walk(der).map_err(|e| match e.part {
        "trailing" => CertificateError::Der(e.problem),
        part => CertificateError::Der(format!("certificate: {part}: {}", e.problem)),
    })
}

/// RFC 5280 4.2: a certificate must not include more than one instance of an extension.
/// Without this check, which of two subjectAltNames counted would be an implementation detail.
/// Certificates carry a handful of extensions, so comparing pairs beats sorting a copy.
fn refuse_repeated_extensions(extensions: &[ExtensionRef<'_>]) -> Result<(), CertificateError> {
    for (i, extension) in extensions.iter().enumerate() {
        if extensions.iter().skip(i + 1).any(|other| other.extn_id == extension.extn_id) {
            return Err(CertificateError::Der(
                "an extension appears more than once".to_owned(),
            ));
        }
    }
    Ok(())
}

/// The value of the extension `oid`, if present (repeats are refused before this is asked).
fn extension_value<'a>(extensions: &[ExtensionRef<'a>], oid: &ObjectIdentifier) -> Option<&'a [u8]> {
    extensions.iter().find(|e| e.extn_id == *oid).map(|e| e.extn_value)
}

/// The extension of type `T`, decoded from its value by x509-cert, if present.
fn extension<'a, T>(extensions: &[ExtensionRef<'a>], name: &str) -> Result<Option<T>, CertificateError>
where
    T: Decode<'a> + AssociatedOid,
{
    extension_value(extensions, &T::OID).map(|value| T::from_der(value).map_err(|e| extension_error(name, e))).transpose()
}

/// `oid` in dotted decimal, as its `Display` writes it, without going through `fmt`: a
/// certificate has a handful of OIDs and formatting them was a tenth of a cold request.
pub(crate) fn dotted_oid(oid: &ObjectIdentifier) -> String {
    let mut out = String::with_capacity(oid.as_bytes().len() * 3);
    push_dotted_oid(oid, &mut out);
    out
}

/// Appends `oid` in dotted decimal. The encoding was validated when the OID was built: its
/// first byte carries the first two arcs, every arc ends and fits 32 bits.
pub(crate) fn push_dotted_oid(oid: &ObjectIdentifier, out: &mut String) {
    let mut arc: u64 = 0;
    let mut first = true;
    for &byte in oid.as_bytes() {
        // Masked to stay in range even if an encoding ever carried a wider arc.
        arc = ((arc << 7) | u64::from(byte & 0x7f)) & u64::from(u32::MAX);
        if byte & 0x80 != 0 {
            continue;
        }
        if first {
            let (top, second) = match arc {
                0..=39 => (0, arc),
                40..=79 => (1, arc - 40),
                _ => (2, arc - 80),
            };
            push_decimal(top, out);
            out.push('.');
            push_decimal(second, out);
            first = false;
        } else {
            out.push('.');
            push_decimal(arc, out);
        }
        arc = 0;
    }
}

fn push_decimal(mut value: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 || start == 0 {
            break;
        }
    }
    out.extend(digits.iter().skip(start).map(|d| char::from(*d)));
}

fn extension_error(name: &str, error: der::Error) -> CertificateError {
    CertificateError::Der(format!("{name} extension: {error}"))
}

/// Lowercase hex of the serial's magnitude, one byte per two digits, with DER's 0x00 sign
/// byte removed (`00 9f 3a` -> `9f3a`). Negative serials, which RFC 5280 forbids but some
/// CAs issued, keep their sign the way OpenSSL prints them: `-` and the magnitude.
pub fn serial_hex(twos_complement: &[u8]) -> String {
    let negative = twos_complement.first().is_some_and(|b| b & 0x80 != 0);
    let magnitude: Vec<u8> = if negative {
        // Two's complement negation: invert, then add one from the least significant byte.
        let mut bytes: Vec<u8> = twos_complement.iter().map(|b| !b).collect();
        for byte in bytes.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        bytes
    } else {
        twos_complement.to_vec()
    };
    let significant = magnitude
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(magnitude.len());
    let digits = match magnitude.get(significant..) {
        Some(rest) if !rest.is_empty() => hex_lower(rest),
        _ => "00".to_owned(),
    };
    if negative {
        format!("-{digits}")
    } else {
        digits
    }
}

fn unix_seconds(time: Time) -> Result<i64, CertificateError> {
    i64::try_from(time.to_unix_duration().as_secs())
        .map_err(|_| CertificateError::Field("validity time out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::OctetString;
    use der::{Any, Encode, Tag};
    use x509_cert::ext::pkix::name::{GeneralName, OtherName};
    use x509_cert::ext::Extension;
    use reference::facts_by_full_decode as reference_facts;
    use x509_cert::Certificate;

    /// Whether both decoders accept `der` (with the same facts) — or both refuse it, with the
    /// same kind of error; panics when they disagree. `at` names the damaged byte.
    fn agree_with_reference(der: &[u8], at: usize) -> bool {
        match (CertificateFacts::from_der(der), reference_facts(der)) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "facts differ at byte {at}");
                true
            }
            (Err(a), Err(b)) => {
                assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b), "{a:?} vs {b:?} at byte {at}");
                false
            }
            (ours, theirs) => panic!("verdicts differ at byte {at}: ours {ours:?}, x509-cert {theirs:?}"),
        }
    }

    /// Same verdict and same facts as the reference, on every certificate of the test PKI
    /// and on thousands of damaged copies (flipped, dropped and inserted bytes; the damage
    /// mostly lands in names, keys and signatures, where both decoders must still agree).
    #[test]
    fn borrowed_decoder_agrees_with_x509_cert_on_valid_and_damaged_input() {
        let mut damage = crate::damage::Damage::new(0x2545_f491_4f6c_dd1d);
        let (mut accepted, mut refused) = (0, 0);
        for pem_text in [PIV_AUTH, PIV_AUTH_2, PIV_CARD_AUTH, CAC, SERVICE, EXPIRED, UNTRUSTED_USER, TEST_ARC, ROOT_CA, ISSUING_CA, UNTRUSTED_CA] {
            let der = der_of(pem_text);
            assert_eq!(CertificateFacts::from_der(&der), reference_facts(&der));
            for _ in 0..1500 {
                let (damaged, at) = damage.one_change(&der);
                if agree_with_reference(&damaged, at) {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        // Both outcomes must actually have been exercised.
        assert!(accepted > 1000 && refused > 1000, "accepted {accepted}, refused {refused}");

        // Damage aimed at the subjectAltName extension, which is walked by hand.
        let (mut accepted, mut refused) = (0, 0);
        for pem_text in [PIV_AUTH, PIV_AUTH_2, CAC, SERVICE] {
            let der = der_of(pem_text);
            let san_oid = [0x06, 0x03, 0x55, 0x1d, 0x11];
            let start = der.windows(5).position(|w| w == san_oid).unwrap() + 5;
            let span = (der.len() - start).min(160);
            for _ in 0..4000 {
                let mut damaged = der.clone();
                let at = start + (damage.next() as usize) % span;
                match damage.next() % 3 {
                    0 => damaged[at] ^= 1 << (damage.next() % 8),
                    1 => damaged[at] = damage.next() as u8,
                    _ => damaged[at] = [0x80, 0x81, 0x82, 0x86, 0xa0, 0xa4, 0x87, 0x88, 0x0c, 0x04, 0x16][(damage.next() % 11) as usize],
                }
                if agree_with_reference(&damaged, at) {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        assert!(accepted > 500 && refused > 500, "SAN damage: accepted {accepted}, refused {refused}");
    }

    // The committed test PKI (envoy/pki/gen-test-pki.sh). Expected serials, fingerprints,
    // names and dates below are what `openssl x509 -serial -fingerprint -sha256 -subject
    // -issuer -dates -nameopt RFC2253` prints for these files.
    const PIV_AUTH: &str = include_str!("../../../tests/pki/piv-auth.pem");
    const PIV_AUTH_2: &str = include_str!("../../../tests/pki/piv-auth-2.pem");
    const PIV_CARD_AUTH: &str = include_str!("../../../tests/pki/piv-card-auth.pem");
    const CAC: &str = include_str!("../../../tests/pki/cac.pem");
    const SERVICE: &str = include_str!("../../../tests/pki/service.pem");
    const EXPIRED: &str = include_str!("../../../tests/pki/expired.pem");
    const UNTRUSTED_USER: &str = include_str!("../../../tests/pki/untrusted-user.pem");
    const TEST_ARC: &str = include_str!("../../../tests/pki/piv-auth-test-arc.pem");
    const ROOT_CA: &str = include_str!("../../../tests/pki/root-ca.pem");
    const ISSUING_CA: &str = include_str!("../../../tests/pki/piv-issuing-ca.pem");
    const UNTRUSTED_CA: &str = include_str!("../../../tests/pki/untrusted-ca.pem");

    const ISSUING_CA_DN: &str = "CN=certbind Test PIV Issuing CA,OU=Test PKI,O=certbind,C=US";
    const UNTRUSTED_CA_DN: &str = "CN=Untrusted Test CA,O=Not certbind,C=US";
    const ROOT_CA_DN: &str = "CN=certbind Test Root CA,OU=Test PKI,O=certbind,C=US";

    const JAN_2020: i64 = 1_577_836_800;
    const JAN_2021: i64 = 1_609_459_200;
    const JAN_2025: i64 = 1_735_689_600;
    const JAN_2045: i64 = 2_366_841_600;
    const JUN_2050: i64 = 2_537_654_400;
    const JAN_2055: i64 = 2_682_374_400;
    const JAN_2060: i64 = 2_840_140_800;

    const FPKI_COMMON_AUTH: &str = "2.16.840.1.101.3.2.1.3.13";
    const CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";
    const SMARTCARD_LOGON: &str = "1.3.6.1.4.1.311.20.2.2";

    fn der_of(pem_text: &str) -> Vec<u8> {
        pem::decode_certificate_pem(pem_text.as_bytes()).unwrap()
    }

    fn facts(pem_text: &str) -> CertificateFacts {
        CertificateFacts::from_der(&der_of(pem_text)).unwrap()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn piv_auth_certificate_facts() {
        assert_eq!(
            facts(PIV_AUTH),
            CertificateFacts {
                fingerprint: Fingerprint::parse(
                    "88385f9ffede1a99ec5317726375bb6ff317a5c3061d92a0695a24753a46d049"
                )
                .unwrap(),
                subject_dn: "CN=Jane Q. Doe,OU=People,OU=Example Agency,O=U.S. Government,C=US"
                    .into(),
                issuer_dn: ISSUING_CA_DN.into(),
                display_names: DisplayNames::default(),
                // openssl: serial=9F3A5C7E21D04B68 (DER carries a 0x00 sign byte before it).
                serial_hex: "9f3a5c7e21d04b68".into(),
                not_before: JAN_2025,
                not_after: JAN_2045,
                subject_alt_names: vec![
                    SubjectAltName::FascN("99999999999999111234567890112232".into()),
                    SubjectAltName::Uri("urn:uuid:3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81".into()),
                    SubjectAltName::Upn("1234567890@mil".into()),
                    SubjectAltName::Email("jane.doe@example.mil".into()),
                ],
                policy_oids: strings(&[FPKI_COMMON_AUTH]),
                extended_key_usages: strings(&[CLIENT_AUTH, SMARTCARD_LOGON]),
                // The issuing CA's SubjectKeyIdentifier, as `openssl x509 -ext` prints it.
                authority_key_identifier: KeyIdentifier::new(
                    &crate::encoding::hex_decode("ea896c2f3342bdb893c3c2cd7f2b404540a863a8").unwrap()
                ),
                public_key: Some(PublicKeyFacts { algorithm: "RSA".into(), curve: None, bits: Some(2048) }),
                complete: true,
            }
        );
    }

    #[test]
    fn second_piv_user_has_escaped_multi_valued_subject() {
        let f = facts(PIV_AUTH_2);
        assert_eq!(
            f.subject_dn,
            "1.2.840.113549.1.9.1=#16146a6f686e2e726f65406578616d706c652e6d696c,\
             CN=John R. Roe+UID=jroe,OU=People,O=Example\\, Inc.,C=US"
        );
        assert_eq!(f.serial_hex, "5001");
        assert_eq!(
            f.fingerprint.to_hex(),
            "0118b4cd84aed00de7134c69697ce529ed689335010e8196192a1e78bcb12922"
        );
        assert_eq!(
            f.subject_alt_names,
            vec![
                SubjectAltName::FascN("99999999000123119876543210112231".into()),
                SubjectAltName::Uri("urn:uuid:c0b1d2e3-f405-4617-8829-3a4b5c6d7e8f".into()),
                SubjectAltName::Upn("9876543210@mil".into()),
                SubjectAltName::Email("john.roe@example.mil".into()),
            ]
        );
        assert_eq!(f.emails().collect::<Vec<_>>(), vec!["john.roe@example.mil"]);
        assert_eq!(f.upns().collect::<Vec<_>>(), vec!["9876543210@mil"]);
        assert_eq!(
            f.fascns().collect::<Vec<_>>(),
            vec!["99999999000123119876543210112231"]
        );
        assert!(!f.is_piv_card_auth());
    }

    #[test]
    fn card_auth_certificate_is_recognised() {
        let f = facts(PIV_CARD_AUTH);
        assert_eq!(
            f.subject_dn,
            "CN=Card Authentication,OU=Example Agency,O=U.S. Government,C=US"
        );
        assert_eq!(f.serial_hex, "2001");
        assert_eq!(
            f.fingerprint.to_hex(),
            "9a8af3c663524732dcc031c03775c6121e6461ca9a27fcba55041efaea803504"
        );
        assert_eq!(f.extended_key_usages, strings(&[OID_EKU_PIV_CARD_AUTH]));
        assert_eq!(f.policy_oids, strings(&["2.16.840.1.101.3.2.1.3.17"]));
        assert_eq!(
            f.subject_alt_names,
            vec![
                SubjectAltName::FascN("99999999999999111234567890112232".into()),
                SubjectAltName::Uri("urn:uuid:3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81".into()),
            ]
        );
        assert!(f.is_piv_card_auth());
    }

    #[test]
    fn cac_certificate_facts() {
        let f = facts(CAC);
        assert_eq!(
            f.subject_dn,
            "CN=LAST.FIRST.MI.1234567890,OU=USA,OU=PKI,OU=DoD,O=U.S. Government,C=US"
        );
        assert_eq!(f.issuer_dn, ISSUING_CA_DN);
        assert_eq!(f.serial_hex, "3001");
        assert_eq!(
            f.fingerprint.to_hex(),
            "63b994d9f9a1ed9e672bc1dde4ab4b9d2da7f4157f0b8a44a13815fc94178871"
        );
        assert_eq!(
            f.subject_alt_names,
            vec![SubjectAltName::Upn("1234567890@mil".into())]
        );
        assert_eq!(
            f.policy_oids,
            strings(&["2.16.840.1.101.2.1.11.42", FPKI_COMMON_AUTH])
        );
        assert_eq!(
            f.extended_key_usages,
            strings(&[CLIENT_AUTH, SMARTCARD_LOGON])
        );
        assert_eq!((f.not_before, f.not_after), (JAN_2025, JAN_2045));
    }

    #[test]
    fn service_certificate_with_generalized_time() {
        let f = facts(SERVICE);
        assert_eq!(
            f.subject_dn,
            "CN=api.certbind.test,OU=Services,O=certbind,C=US"
        );
        assert_eq!(f.serial_hex, "4001");
        assert_eq!(
            f.fingerprint.to_hex(),
            "4da5da23f1963222ac21b03e2dcead3073cd09fc7be85645e6d730bf03ab4e93"
        );
        assert_eq!(
            f.subject_alt_names,
            vec![
                SubjectAltName::Uri("spiffe://certbind.test/ns/default/sa/api".into()),
                SubjectAltName::Dns("api.certbind.test".into()),
            ]
        );
        assert_eq!(
            f.uris().collect::<Vec<_>>(),
            vec!["spiffe://certbind.test/ns/default/sa/api"]
        );
        assert!(f.policy_oids.is_empty());
        assert_eq!(
            f.extended_key_usages,
            strings(&[CLIENT_AUTH, "1.3.6.1.5.5.7.3.1"])
        );
        // notAfter 2050-06-01 is a GeneralizedTime; notBefore a UTCTime.
        assert_eq!((f.not_before, f.not_after), (JAN_2025, JUN_2050));
    }

    #[test]
    fn negative_cases_of_the_pki() {
        let expired = facts(EXPIRED);
        assert_eq!(
            (expired.not_before, expired.not_after),
            (JAN_2020, JAN_2021)
        );
        assert_eq!(expired.serial_hex, "6001");
        assert_eq!(
            expired.fingerprint.to_hex(),
            "45c5095ea90cf5caae92fa3529d1f64dcd71a52f02f962223a304bf02d7ef09a"
        );

        let untrusted = facts(UNTRUSTED_USER);
        assert_eq!(untrusted.issuer_dn, UNTRUSTED_CA_DN);
        assert_eq!(
            untrusted.subject_dn,
            facts(PIV_AUTH).subject_dn,
            "same subject, other issuer"
        );
        assert_eq!(untrusted.serial_hex, "7001");
        assert_eq!(
            untrusted.fingerprint.to_hex(),
            "d4ee72d15280c621c2ea02551a54e9e56d21ece56a2b5998362783c44504ce2e"
        );

        let test_arc = facts(TEST_ARC);
        assert_eq!(
            test_arc.policy_oids,
            strings(&["2.16.840.1.101.3.2.1.48.11"])
        );
        assert_eq!(test_arc.serial_hex, "8001");
        assert_eq!(
            test_arc.fingerprint.to_hex(),
            "c4ac9e66a1a5d4866ffa594f08d18d8fb774abd9a3efb3f692f605818ad4ae97"
        );
        assert_eq!(
            test_arc.subject_alt_names,
            vec![
                SubjectAltName::Upn("5555555555@mil".into()),
                SubjectAltName::Email("test.user@example.mil".into()),
            ]
        );
    }

    #[test]
    fn certificate_authorities() {
        let root = facts(ROOT_CA);
        assert_eq!(
            (root.subject_dn.as_str(), root.issuer_dn.as_str()),
            (ROOT_CA_DN, ROOT_CA_DN)
        );
        assert_eq!(root.serial_hex, "01");
        assert_eq!((root.not_before, root.not_after), (JAN_2025, JAN_2060));
        assert_eq!(
            root.fingerprint.to_hex(),
            "ee2d43f80150e4e37f3c24fd77bd07e5f33ad1c60a7eedfe6d5e4623f8b4966d"
        );

        let issuing = facts(ISSUING_CA);
        assert_eq!(
            (issuing.subject_dn.as_str(), issuing.issuer_dn.as_str()),
            (ISSUING_CA_DN, ROOT_CA_DN)
        );
        assert_eq!(issuing.serial_hex, "1000");
        assert_eq!(issuing.not_after, JAN_2055);
        assert_eq!(
            issuing.fingerprint.to_hex(),
            "f41d3ca0cc57523ece80d3a6d80b0f579a0f028df2473097aaea86362c7fe2cf"
        );

        let untrusted = facts(UNTRUSTED_CA);
        assert_eq!(untrusted.serial_hex, "0bad");
        assert_eq!(
            untrusted.fingerprint.to_hex(),
            "62ec11b79e7bf0e0f0dcb350784aa75aab3bbc6a7f50325732a6b3d7760c3475"
        );
    }

    #[test]
    fn every_fixture_re_encodes_byte_identically() {
        for pem_text in [
            PIV_AUTH,
            PIV_AUTH_2,
            PIV_CARD_AUTH,
            CAC,
            SERVICE,
            EXPIRED,
            UNTRUSTED_USER,
            TEST_ARC,
            ROOT_CA,
            ISSUING_CA,
            UNTRUSTED_CA,
        ] {
            let der = der_of(pem_text);
            CertificateFacts::from_der(&der).unwrap();
            let certificate = Certificate::from_der(&der).unwrap();
            assert_eq!(certificate.to_der().unwrap(), der);
            assert_eq!(pem::encode_certificate_pem(&der), pem_text);
        }
    }

    #[test]
    fn from_pem_matches_from_der() {
        assert_eq!(
            CertificateFacts::from_pem(CAC.as_bytes()).unwrap(),
            facts(CAC)
        );
    }

    #[test]
    fn malformed_der_is_refused_with_its_reason() {
        let der = der_of(PIV_AUTH);
        let mut trailing = der.clone();
        trailing.extend_from_slice(&[0x00, 0x00, 0x00]);
        assert_eq!(
            CertificateFacts::from_der(&trailing),
            Err(CertificateError::Der(
                "3 trailing bytes after the certificate".into()
            ))
        );
        let oversized = vec![0u8; MAX_CERTIFICATE_DER + 1];
        assert_eq!(
            CertificateFacts::from_der(&oversized),
            Err(CertificateError::TooLarge {
                len: MAX_CERTIFICATE_DER + 1,
                limit: MAX_CERTIFICATE_DER
            })
        );
        for broken in [
            &der[..der.len() - 1],
            &der[..10],
            &[][..],
            &[0x30, 0x00][..],
            &[0x04, 0x00][..],
        ] {
            match CertificateFacts::from_der(broken) {
                Err(CertificateError::Der(message)) => {
                    assert!(message.starts_with("certificate: "), "{message}")
                }
                other => panic!("expected a DER error, got {other:?}"),
            }
        }
    }

    /// The piv-auth certificate with its extensions replaced by `edit`'s result. The signature
    /// no longer matches, which does not matter: facts are extracted from verified chains.
    fn with_extensions(edit: impl FnOnce(&mut Vec<Extension>)) -> Vec<u8> {
        let mut certificate = Certificate::from_der(&der_of(PIV_AUTH)).unwrap();
        edit(certificate.tbs_certificate.extensions.as_mut().unwrap());
        certificate.to_der().unwrap()
    }

    fn san_extension(names: Vec<GeneralName>) -> Extension {
        Extension {
            extn_id: ObjectIdentifier::new_unwrap("2.5.29.17"),
            critical: false,
            extn_value: OctetString::new(
                x509_cert::ext::pkix::SubjectAltName(names)
                    .to_der()
                    .unwrap(),
            )
            .unwrap(),
        }
    }

    fn replace_san(names: Vec<GeneralName>) -> Vec<u8> {
        with_extensions(|extensions| {
            for extension in extensions.iter_mut() {
                if extension.extn_id == ObjectIdentifier::new_unwrap("2.5.29.17") {
                    *extension = san_extension(names.clone());
                }
            }
        })
    }

    #[test]
    fn repeated_extensions_and_unreadable_identity_names_are_refused() {
        let duplicated = with_extensions(|extensions| {
            let san = extensions
                .iter()
                .find(|e| e.extn_id == ObjectIdentifier::new_unwrap("2.5.29.17"))
                .unwrap()
                .clone();
            extensions.push(san);
        });
        assert_eq!(
            CertificateFacts::from_der(&duplicated),
            Err(CertificateError::Der(
                "an extension appears more than once".into()
            ))
        );

        let upn = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2.3");
        let fascn = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.6.6");
        let other = |oid, tag, value: &[u8]| {
            GeneralName::OtherName(OtherName {
                type_id: oid,
                value: Any::new(tag, value).unwrap(),
            })
        };
        let cases = [
            (
                other(upn, Tag::Ia5String, b"1@mil"),
                "UPN otherName is not a UTF8String",
            ),
            (
                other(fascn, Tag::OctetString, &[0u8; 25]),
                "FASC-N character fails its parity check",
            ),
            (
                other(fascn, Tag::OctetString, &[0u8; 3]),
                "FASC-N is not 25 bytes",
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(
                CertificateFacts::from_der(&replace_san(vec![name])),
                Err(CertificateError::Field(expected))
            );
        }

        // An otherName of a type certbind does not know is kept, by OID.
        let unknown = replace_san(vec![other(
            ObjectIdentifier::new_unwrap("1.2.3.4"),
            Tag::Utf8String,
            b"x",
        )]);
        assert_eq!(
            CertificateFacts::from_der(&unknown)
                .unwrap()
                .subject_alt_names,
            vec![SubjectAltName::Other("1.2.3.4".into())]
        );
    }

    #[test]
    fn undecodable_extension_content_is_named() {
        let broken = with_extensions(|extensions| {
            for extension in extensions.iter_mut() {
                if extension.extn_id == ObjectIdentifier::new_unwrap("2.5.29.37") {
                    extension.extn_value = OctetString::new(vec![0x30, 0x03, 0x06, 0x01]).unwrap();
                }
            }
        });
        match CertificateFacts::from_der(&broken) {
            Err(CertificateError::Der(message)) => {
                assert!(message.starts_with("extKeyUsage extension: "), "{message}")
            }
            other => panic!("expected a DER error, got {other:?}"),
        }
    }

    #[test]
    fn dotted_oids_read_as_const_oid_writes_them() {
        for text in [
            "0.0.1", "0.39.1", "1.0.7", "1.39.2", "2.0.0", "2.5.4.3", "2.39.1", "2.16.840.1.101.3.6.6",
            "1.3.6.1.4.1.311.20.2.3", "1.2.840.113549.1.9.1", "0.9.2342.19200300.100.1.25",
            "1.2.268435455", "1.3.6.1.4.1.99999.18446744",
        ] {
            let oid = ObjectIdentifier::new(text).unwrap();
            assert_eq!(dotted_oid(&oid), text);
            assert_eq!(dotted_oid(&oid), oid.to_string(), "{text}");
        }
        // Every encoding const-oid accepts among random short byte strings.
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut checked = 0;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 1 + (state % 9) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (state >> (8 * (i % 8))) as u8 & if i % 3 == 0 { 0xff } else { 0x7f }).collect();
            if let Ok(oid) = ObjectIdentifier::from_bytes(&bytes) {
                assert_eq!(dotted_oid(&oid), oid.to_string(), "{bytes:02x?}");
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} valid encodings drawn");
    }

    #[test]
    fn serial_hex_strips_sign_bytes_and_keeps_negative_sign() {
        let cases: [(&[u8], &str); 7] = [
            (&[0x00, 0x9f, 0x3a], "9f3a"),
            (&[0x01], "01"),
            (&[0x0b, 0xad], "0bad"),
            (&[0x00], "00"),
            (&[], "00"),
            (&[0xff], "-01"),
            (&[0xff, 0x00], "-0100"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(serial_hex(bytes), expected, "{bytes:02x?}");
        }
        assert_eq!(serial_hex(&[0x80]), "-80");
    }
}
