//! Certificate authorities as their certificates describe them, for revocation.
//!
//! A CA is known by its key, never by its name: two CAs may share one DN, and a revoked serial
//! means nothing without the key that signed it. The key's identifier is the CA's
//! SubjectKeyIdentifier, or the SHA-256 of its SubjectPublicKeyInfo DER when it has none; a
//! certificate names the key that issued it in its AuthorityKeyIdentifier, and so does a CRL.

use super::borrowed::{ExtensionRef, NameRef};
use super::{decode_certificate, dn, extension, extension_error, refuse_repeated_extensions, unix_seconds};
use super::{pem, CertificateError};
use crate::encoding::hex_lower;
use crate::fingerprint::Fingerprint;
use der::Decode;
use sha2::{Digest, Sha256};
use std::fmt;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, KeyUsage, SubjectKeyIdentifier};

/// The identifier of a CA's key: a SubjectKeyIdentifier's or AuthorityKeyIdentifier's
/// keyIdentifier octets (RFC 5280 §4.2.1.1–2, any length, never empty), or a SHA-256.
/// Carries its [`CaKey`], hashed once when the identifier is read: a certificate's facts are
/// cached, so looking up its CA then costs no hash per request.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyIdentifier {
    octets: Vec<u8>,
    ca_key: CaKey,
}

impl KeyIdentifier {
    /// `None` for no octets: an empty identifier would name every key that has none.
    pub fn new(octets: &[u8]) -> Option<Self> {
        (!octets.is_empty()).then(|| KeyIdentifier::of_octets(octets.to_vec()))
    }

    /// The identifier of a key without a SubjectKeyIdentifier: SHA-256 of its SPKI DER.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        KeyIdentifier::of_octets(Sha256::digest(spki_der).to_vec())
    }

    fn of_octets(octets: Vec<u8>) -> Self {
        let ca_key = CaKey::of_octets(&octets);
        KeyIdentifier { octets, ca_key }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.octets
    }

    /// Lowercase hex, as APIs and metrics show it.
    pub fn to_hex(&self) -> String {
        hex_lower(&self.octets)
    }

    /// The identifier [`Self::to_hex`] wrote (either case, surrounding space ignored); `None`
    /// for anything else. At most 64 octets: a SHA-256 is 32, real SKIs are 20.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() || text.len() > 128 || !text.len().is_multiple_of(2) {
            return None;
        }
        let octets: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
            .collect();
        KeyIdentifier::new(&octets?)
    }
}

/// Width of a [`CaKey`] and of a CRL revocation's key. 128 bits keep the two colliding
/// entries of a DoD-sized set (6 million) at a probability of about 2^-83, and the serials
/// they hash are chosen by the CA, not by the holder.
pub const CA_KEY_LEN: usize = 16;

/// A CA as the snapshot names it: the first 16 bytes of SHA-256 over a label and the CA's key
/// identifier (its SubjectKeyIdentifier, or SHA-256 of its SubjectPublicKeyInfo), which is
/// what a certificate it issued carries as its AuthorityKeyIdentifier. So every CA record and
/// every revoked entry has one width whatever the identifier's length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaKey(pub [u8; CA_KEY_LEN]);

impl CaKey {
    /// The CA `key` names; hashed when the identifier was read, not here.
    pub fn of(key: &KeyIdentifier) -> Self {
        key.ca_key
    }

    fn of_octets(octets: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"certbind ca key v1\0");
        hasher.update(octets);
        let digest: [u8; 32] = hasher.finalize().into();
        let mut out = [0u8; CA_KEY_LEN];
        out.copy_from_slice(&digest[..CA_KEY_LEN]);
        CaKey(out)
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaKey({})", crate::encoding::hex_lower(&self.0))
    }
}

impl fmt::Display for KeyIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyIdentifier({})", self.to_hex())
    }
}

/// Where a CA's [`KeyIdentifier`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyIdentifierSource {
    SubjectKeyIdentifier,
    /// The certificate has no SubjectKeyIdentifier (RFC 5280 requires one of a CA).
    SpkiSha256,
}

/// How a CRL distribution point is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlUrlScheme {
    /// `http:` or `https:`.
    Http,
    /// `ldap:` or `ldaps:`.
    Ldap,
}

/// One URL of a certificate's CRLDistributionPoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlUrl {
    pub scheme: CrlUrlScheme,
    pub url: String,
}

/// The facts of a CA's own certificate that revocation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificate {
    pub fingerprint: Fingerprint,
    pub key_identifier: KeyIdentifier,
    pub key_identifier_source: KeyIdentifierSource,
    /// The SubjectPublicKeyInfo, whole: what the CA's CRLs are verified with.
    pub spki_der: Vec<u8>,
    /// The subject Name, whole (its SEQUENCE), and as the crate renders DNs.
    pub subject_der: Vec<u8>,
    pub subject_dn: String,
    /// basicConstraints cA; false when the extension is absent.
    pub is_ca: bool,
    /// keyUsage is absent or asserts cRLSign (RFC 5280 §6.3.3 (f)).
    pub may_sign_crls: bool,
    /// The key of the CA that issued this certificate, if it says.
    pub authority_key_identifier: Option<KeyIdentifier>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The HTTP and LDAP URLs of this certificate's CRLDistributionPoints. In a CA's
    /// certificate they say where the CRL of the CA *above* it is published; where a CA's own
    /// CRL lies is written in the certificates it issues ([`crl_distribution_urls`]).
    pub crl_urls: Vec<CrlUrl>,
}

impl CaCertificate {
    /// Reads one DER certificate (the same walk and caps as [`super::CertificateFacts`]).
    /// Whether it may act as a CA is told, not enforced: see `is_ca` and `may_sign_crls`.
    pub fn from_der(der: &[u8]) -> Result<CaCertificate, CertificateError> {
        let certificate = decode_certificate(der)?;
        let extensions = certificate.extensions.as_slice();
        refuse_repeated_extensions(extensions)?;
        let subject_key = extension::<SubjectKeyIdentifier>(extensions, "subjectKeyIdentifier")?;
        let (key_identifier, key_identifier_source) = match subject_key {
            Some(ski) => (
                KeyIdentifier::new(ski.0.as_bytes())
                    .ok_or(CertificateError::Field("subjectKeyIdentifier is empty"))?,
                KeyIdentifierSource::SubjectKeyIdentifier,
            ),
            None => (KeyIdentifier::of_spki(certificate.spki_der), KeyIdentifierSource::SpkiSha256),
        };
        let is_ca = extension::<BasicConstraints>(extensions, "basicConstraints")?.is_some_and(|b| b.ca);
        let may_sign_crls = extension::<KeyUsage>(extensions, "keyUsage")?.is_none_or(|usage| usage.crl_sign());
        Ok(CaCertificate {
            fingerprint: Fingerprint::of_der(der),
            key_identifier,
            key_identifier_source,
            spki_der: certificate.spki_der.to_vec(),
            subject_der: certificate.subject_der.to_vec(),
            subject_dn: dn::format_name(&certificate.subject)?,
            is_ca,
            may_sign_crls,
            authority_key_identifier: authority_key_identifier(extensions)?,
            not_before: unix_seconds(certificate.validity.not_before)?,
            not_after: unix_seconds(certificate.validity.not_after)?,
            crl_urls: distribution_urls(extensions)?,
        })
    }

    /// [`Self::from_der`] of the first certificate in a PEM text.
    pub fn from_pem(text: &[u8]) -> Result<CaCertificate, CertificateError> {
        Self::from_der(&pem::decode_certificate_pem(text)?)
    }
}

/// The HTTP and LDAP URLs of any certificate's CRLDistributionPoints: for a certificate a CA
/// issued, where that CA publishes its CRL.
pub fn crl_distribution_urls(der: &[u8]) -> Result<Vec<CrlUrl>, CertificateError> {
    let certificate = decode_certificate(der)?;
    refuse_repeated_extensions(&certificate.extensions)?;
    distribution_urls(&certificate.extensions)
}

/// The full-name URIs of the distribution points that cover every reason and are this
/// certificate's issuer's own: a point limited to some reasons, or naming another cRLIssuer
/// (an indirect CRL), leads to a CRL the CRL reader refuses. Schemes other than HTTP(S) and
/// LDAP(S) (`ftp:`, `file:`) are left out.
fn distribution_urls(extensions: &[ExtensionRef<'_>]) -> Result<Vec<CrlUrl>, CertificateError> {
    let Some(points) = extension::<CrlDistributionPoints>(extensions, "cRLDistributionPoints")? else {
        return Ok(Vec::new());
    };
    let mut urls = Vec::new();
    for point in points.0.iter().filter(|p| p.reasons.is_none() && p.crl_issuer.is_none()) {
        let Some(DistributionPointName::FullName(names)) = &point.distribution_point else {
            continue;
        };
        for name in names {
            if let GeneralName::UniformResourceIdentifier(uri) = name {
                let url = uri.as_str();
                if let Some(scheme) = url_scheme(url) {
                    urls.push(CrlUrl { scheme, url: url.to_owned() });
                }
            }
        }
    }
    Ok(urls)
}

fn url_scheme(url: &str) -> Option<CrlUrlScheme> {
    let scheme = url.split_once(':')?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "http" | "https" => Some(CrlUrlScheme::Http),
        "ldap" | "ldaps" => Some(CrlUrlScheme::Ldap),
        _ => None,
    }
}

/// The keyIdentifier of a certificate's AuthorityKeyIdentifier, if it has one.
pub(super) fn authority_key_identifier(
    extensions: &[ExtensionRef<'_>],
) -> Result<Option<KeyIdentifier>, CertificateError> {
    match extension::<AuthorityKeyIdentifier>(extensions, "authorityKeyIdentifier")? {
        Some(aki) => key_identifier_of(&aki).map_err(|e| extension_error("authorityKeyIdentifier", e)),
        None => Ok(None),
    }
}

/// An AuthorityKeyIdentifier's keyIdentifier, `None` when it names the issuer by name and
/// serial only; an empty one is refused, as an empty SubjectKeyIdentifier is.
pub(crate) fn key_identifier_of(aki: &AuthorityKeyIdentifier) -> Result<Option<KeyIdentifier>, der::Error> {
    match &aki.key_identifier {
        Some(octets) => KeyIdentifier::new(octets.as_bytes()).map(Some).ok_or_else(|| der::Tag::OctetString.value_error()),
        None => Ok(None),
    }
}

/// [`key_identifier_of`] the AuthorityKeyIdentifier DER `value` (an extnValue's contents).
pub(crate) fn decode_authority_key_identifier(value: &[u8]) -> Result<Option<KeyIdentifier>, der::Error> {
    key_identifier_of(&AuthorityKeyIdentifier::from_der(value)?)
}

/// A Name's text as [`super::CertificateFacts`] renders DNs, from the contents of its SEQUENCE
/// (the CRL reader's issuer).
pub(crate) fn name_text(contents: &[u8]) -> Result<String, CertificateError> {
    let name = NameRef::from_contents(contents, "name").map_err(|e| CertificateError::Der(e.problem))?;
    dn::format_name(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::CertificateFacts;

    #[test]
    fn key_ids_read_back_from_even_length_hex() {
        assert_eq!(KeyIdentifier::from_hex("0a1B").map(|k| k.to_hex()), Some("0a1b".to_string()));
        assert_eq!(KeyIdentifier::from_hex(""), None);
        assert_eq!(KeyIdentifier::from_hex("abc"), None);
        assert_eq!(KeyIdentifier::from_hex("zz"), None);
        assert_eq!(KeyIdentifier::from_hex(&"ab".repeat(64)).map(|k| k.as_bytes().len()), Some(64));
        assert_eq!(KeyIdentifier::from_hex(&"ab".repeat(65)), None);
    }

    const ROOT_CA: &str = include_str!("../../../tests/pki/root-ca.pem");
    const ISSUING_CA: &str = include_str!("../../../tests/pki/piv-issuing-ca.pem");
    const PIV_AUTH: &str = include_str!("../../../tests/pki/piv-auth.pem");

    fn ski_of(pem_text: &str) -> String {
        let der = pem::decode_certificate_pem(pem_text.as_bytes()).unwrap();
        let certificate = x509_cert::Certificate::from_der(&der).unwrap();
        let (_, ski) = certificate.tbs_certificate.get::<SubjectKeyIdentifier>().unwrap().unwrap();
        hex_lower(ski.0.as_bytes())
    }

    #[test]
    fn a_ca_is_identified_by_its_subject_key_identifier() {
        let issuing = CaCertificate::from_pem(ISSUING_CA.as_bytes()).unwrap();
        let root = CaCertificate::from_pem(ROOT_CA.as_bytes()).unwrap();
        assert_eq!(issuing.key_identifier.to_hex(), ski_of(ISSUING_CA));
        assert_eq!(issuing.key_identifier_source, KeyIdentifierSource::SubjectKeyIdentifier);
        assert_eq!(issuing.subject_dn, "CN=certbind Test PIV Issuing CA,OU=Test PKI,O=certbind,C=US");
        assert_eq!(issuing.subject_der.first(), Some(&0x30));
        assert!(issuing.is_ca && issuing.may_sign_crls);
        assert_eq!(issuing.authority_key_identifier, Some(root.key_identifier.clone()));
        assert_eq!(root.authority_key_identifier, None, "the root names no authority key");
        assert!(issuing.crl_urls.is_empty());
        // The certificates a CA issues name its key, and `CertificateFacts` reads it.
        let user = CertificateFacts::from_pem(PIV_AUTH.as_bytes()).unwrap();
        assert_eq!(user.authority_key_identifier, Some(issuing.key_identifier.clone()));
        // The SPKI is the key the CA's signatures verify with.
        let certificate = x509_cert::Certificate::from_der(&pem::decode_certificate_pem(ISSUING_CA.as_bytes()).unwrap()).unwrap();
        use der::Encode as _;
        assert_eq!(issuing.spki_der, certificate.tbs_certificate.subject_public_key_info.to_der().unwrap());
    }

    /// The piv-auth certificate with its AuthorityKeyIdentifier's value replaced.
    fn with_authority_key_value(value: Vec<u8>) -> Vec<u8> {
        use der::Encode as _;
        let der = pem::decode_certificate_pem(PIV_AUTH.as_bytes()).unwrap();
        let mut certificate = x509_cert::Certificate::from_der(&der).unwrap();
        for extension in certificate.tbs_certificate.extensions.as_mut().unwrap() {
            if extension.extn_id == const_oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER {
                extension.extn_value = der::asn1::OctetString::new(value.clone()).unwrap();
            }
        }
        certificate.to_der().unwrap()
    }

    #[test]
    fn an_unreadable_or_empty_authority_key_identifier_refuses_the_certificate() {
        for value in [vec![0x30, 0x03, 0x80, 0x05], vec![0x30, 0x02, 0x80, 0x00]] {
            let der = with_authority_key_value(value.clone());
            match CertificateFacts::from_der(&der) {
                Err(CertificateError::Der(message)) => {
                    assert!(message.starts_with("authorityKeyIdentifier extension: "), "{message}")
                }
                other => panic!("expected a DER error for {value:02x?}, got {other:?}"),
            }
            assert!(crate::certificate::reference::facts_by_full_decode(&der).is_err());
        }
        // Issuer name and serial only: no key named.
        let by_name = with_authority_key_value(vec![0x30, 0x03, 0x82, 0x01, 0x07]);
        assert_eq!(CertificateFacts::from_der(&by_name).unwrap().authority_key_identifier, None);
    }

    #[test]
    fn a_leaf_is_not_a_ca() {
        let leaf = CaCertificate::from_pem(PIV_AUTH.as_bytes()).unwrap();
        assert!(!leaf.is_ca);
        assert!(!leaf.may_sign_crls, "its keyUsage is digitalSignature only");
    }

    #[test]
    fn url_schemes_are_http_and_ldap_only() {
        assert_eq!(url_scheme("http://crl.disa.mil/crl/DODIDCA_59.crl"), Some(CrlUrlScheme::Http));
        assert_eq!(url_scheme("HTTPS://example/x.crl"), Some(CrlUrlScheme::Http));
        assert_eq!(url_scheme("ldap://crl.gds.disa.mil/cn%3dDOD%20ID%20CA-59"), Some(CrlUrlScheme::Ldap));
        assert_eq!(url_scheme("ldaps://x"), Some(CrlUrlScheme::Ldap));
        assert_eq!(url_scheme("ftp://x/y.crl"), None);
        assert_eq!(url_scheme("no scheme"), None);
    }

    #[test]
    fn key_identifiers_are_never_empty() {
        assert_eq!(KeyIdentifier::new(&[]), None);
        assert_eq!(KeyIdentifier::new(&[0xab, 0x01]).unwrap().to_hex(), "ab01");
        assert_eq!(format!("{:?}", KeyIdentifier::new(&[0xab]).unwrap()), "KeyIdentifier(ab)");
        assert_eq!(KeyIdentifier::of_spki(b"").to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let empty = AuthorityKeyIdentifier { key_identifier: Some(der::asn1::OctetString::new(Vec::new()).unwrap()), ..Default::default() };
        assert!(key_identifier_of(&empty).is_err());
        assert_eq!(key_identifier_of(&AuthorityKeyIdentifier::default()), Ok(None));
    }
}
