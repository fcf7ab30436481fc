//! A certificate a client or the command line gives as PEM (to bind a card, or to map a
//! thumbprint): exactly one certificate, read by the filter's own walk, and the SAN domains
//! SAN rules could claim it by.

use super::invalid::{Checked, Invalid};
use super::text::MAX_PEM_TEXT_BYTES;
use certbind_shared::certificate::pem::decode_certificate_pem_file;
use certbind_shared::certificate::CertificateFacts;
use certbind_shared::decision::constraints::email_domain;
use certbind_shared::identity::SanKind;

/// The one certificate of a `certificate_pem`.
pub struct GivenCertificate {
    pub facts: CertificateFacts,
    /// basicConstraints cA.
    pub is_ca: bool,
    pub der: Vec<u8>,
}

/// A certificate's facts, and whether it is a CA certificate. Exactly one certificate.
pub fn facts_of_pem(pem: &str) -> Checked<GivenCertificate> {
    if pem.len() > MAX_PEM_TEXT_BYTES {
        return Err(Invalid::new(
            "certificate_pem",
            format!("is {} bytes, more than the {MAX_PEM_TEXT_BYTES}-byte limit", pem.len()),
        ));
    }
    let chain = decode_certificate_pem_file(pem.as_bytes()).map_err(|e| Invalid::new("certificate_pem", e.to_string()))?;
    let der = match chain.as_slice() {
        [der] => der.clone(),
        more => {
            return Err(Invalid::new(
                "certificate_pem",
                format!("holds {} certificates; send the card's certificate alone, without its chain", more.len()),
            ))
        }
    };
    let facts = CertificateFacts::from_der(&der).map_err(|e| Invalid::new("certificate_pem", e.to_string()))?;
    Ok(GivenCertificate { facts, is_ca: is_ca_certificate(&der), der })
}

/// basicConstraints with cA set. A certificate the facts walk accepted but x509-cert cannot
/// decode is treated as not a CA: the walk is the filter's, and decides.
fn is_ca_certificate(der: &[u8]) -> bool {
    use der::Decode;
    use x509_cert::ext::pkix::BasicConstraints;
    let Ok(certificate) = x509_cert::Certificate::from_der(der) else { return false };
    certificate
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS)
        .any(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).is_ok_and(|bc| bc.ca))
}

/// The (kind, lowercase domain) pairs a certificate's SANs offer to SAN rules, each once.
pub fn san_domains(facts: &CertificateFacts) -> Vec<(SanKind, String)> {
    let mut out: Vec<(SanKind, String)> = Vec::new();
    let values = facts.emails().map(|v| (SanKind::Email, v)).chain(facts.upns().map(|v| (SanKind::Upn, v)));
    for (kind, value) in values {
        if let Some(domain) = email_domain(value) {
            let pair = (kind, domain.to_ascii_lowercase());
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    out
}
