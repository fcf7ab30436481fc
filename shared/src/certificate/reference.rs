//! The facts as x509-cert's owned decoder of the whole certificate gives them: the reference
//! the borrowed walk is held to, by the unit tests and by the `certificate_facts` fuzz target
//! (feature `x509-reference`). Not used on the request path.

use super::borrowed::NameRef;
use super::{dn, serial_hex, unix_seconds, CertificateError, CertificateFacts, PublicKeyFacts, SubjectAltName, MAX_CERTIFICATE_DER};
use crate::fingerprint::Fingerprint;
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode, Reader, SliceReader};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CertificatePolicies, ExtendedKeyUsage};
use x509_cert::Certificate;

/// [`CertificateFacts::from_der`]'s facts, by decoding the whole certificate with x509-cert.
pub fn facts_by_full_decode(der: &[u8]) -> Result<CertificateFacts, CertificateError> {
    if der.len() > MAX_CERTIFICATE_DER {
        return Err(CertificateError::TooLarge { len: der.len(), limit: MAX_CERTIFICATE_DER });
    }
    let mut reader = SliceReader::new(der).map_err(|e| CertificateError::Der(e.to_string()))?;
    let certificate = Certificate::decode(&mut reader).map_err(|e| CertificateError::Der(e.to_string()))?;
    if !reader.is_finished() {
        return Err(CertificateError::Der("trailing bytes".into()));
    }
    let tbs = &certificate.tbs_certificate;
    let mut oids: Vec<_> = tbs.extensions.iter().flatten().map(|e| e.extn_id).collect();
    oids.sort();
    if oids.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(CertificateError::Der("repeated extension".into()));
    }
    let der_error = |e: der::Error| CertificateError::Der(e.to_string());
    let sans = match tbs.get::<x509_cert::ext::pkix::SubjectAltName>().map_err(der_error)? {
        Some((_, names)) => names.0.iter().map(SubjectAltName::from_general_name).collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let policies = tbs.get::<CertificatePolicies>().map_err(der_error)?;
    let usages = tbs.get::<ExtendedKeyUsage>().map_err(der_error)?;
    let authority_key_identifier = match tbs.get::<AuthorityKeyIdentifier>().map_err(der_error)? {
        Some((_, aki)) => super::ca::key_identifier_of(&aki).map_err(der_error)?,
        None => None,
    };
    let name = |n: &x509_cert::name::Name| {
        let der = n.to_der().map_err(der_error)?;
        let name = NameRef::from_der(&der).map_err(|e| CertificateError::Der(e.problem))?;
        dn::format_name(&name)
    };
    let (subject_dn, issuer_dn) = (name(&tbs.subject)?, name(&tbs.issuer)?);
    Ok(CertificateFacts {
        fingerprint: Fingerprint::of_der(der),
        display_names: super::DisplayNames::of(&subject_dn, &issuer_dn),
        subject_dn,
        issuer_dn,
        serial_hex: serial_hex(tbs.serial_number.as_bytes()),
        not_before: unix_seconds(tbs.validity.not_before)?,
        not_after: unix_seconds(tbs.validity.not_after)?,
        subject_alt_names: sans,
        policy_oids: policies.map(|(_, p)| p.0.iter().map(|i| i.policy_identifier.to_string()).collect()).unwrap_or_default(),
        extended_key_usages: usages.map(|(_, u)| u.0.iter().map(ObjectIdentifier::to_string).collect()).unwrap_or_default(),
        authority_key_identifier,
        public_key: PublicKeyFacts::of_spki(&tbs.subject_public_key_info.to_der().map_err(der_error)?),
        complete: true,
    })
}
