//! Step 5 of the request path: from a certificate to an identity. Refusals first (blocklist,
//! revocation, constraints), then the identity in a fixed order of precedence: the card's
//! `smart_card_links` binding, an explicit thumbprint mapping, a SAN email or UPN mapping where
//! allowed, and finally the canonical thumbprint ARN.

use super::config::Route;
use super::constraints::email_domain;
use super::outcome::{header, Reason};
use crate::certificate::CertificateFacts;
use crate::identity::{IdentityData, SanKind};

/// Principal of a certificate with no other mapping (seed 004's canonical ARN).
pub fn default_principal(facts: &CertificateFacts) -> String {
    format!("auth:account:x509:sha256:{}", facts.fingerprint.to_x5t_s256())
}

/// Checks the certificate and appends the identity headers for it.
pub fn certificate_identity(
    facts: &CertificateFacts,
    route: &Route,
    identity: &dyn IdentityData,
    now: i64,
    set: &mut Vec<(&'static str, String)>,
) -> Result<(), Reason> {
    if identity.is_blocklisted(&facts.fingerprint) {
        return Err(Reason::CertificateBlocklisted);
    }
    if facts.complete && identity.is_revoked(&facts.issuer_dn, &facts.serial_hex) {
        return Err(Reason::CertificateRevoked);
    }
    route.constraints.check(facts, now)?;

    let binding = identity.card_binding(&facts.fingerprint);
    let principal = match binding {
        Some(b) if !b.enabled => return Err(Reason::BindingDisabled),
        Some(b) => {
            set.push((header::USER, header_safe(b.user_id.as_str())));
            set.push((header::ORG, header_safe(b.org_id)));
            format!("auth:account:user:{}", b.user_id)
        }
        None if route.require_enrolled_card => return Err(Reason::CardNotEnrolled),
        None => mapped_principal(facts, identity),
    };
    set.push((header::FINGERPRINT, facts.fingerprint.to_hex()));
    set.push((header::SUBJECT, header_safe(&facts.subject_dn)));
    if facts.complete {
        set.push((header::ISSUER, header_safe(&facts.issuer_dn)));
        set.push((header::SERIAL, facts.serial_hex.clone()));
    }
    set.push((header::PRINCIPAL, header_safe(&principal)));
    Ok(())
}

fn mapped_principal(facts: &CertificateFacts, identity: &dyn IdentityData) -> String {
    if let Some(p) = identity.mapped_principal(&facts.fingerprint) {
        return p.to_string();
    }
    for (kind, values) in [(SanKind::Email, facts.emails().collect::<Vec<_>>()), (SanKind::Upn, facts.upns().collect())] {
        for value in values {
            if email_domain(value).is_some_and(|d| identity.san_mapping_allowed(kind, &d.to_ascii_lowercase())) {
                return format!("auth:account:x509:{}:{}", kind.as_str(), value.to_ascii_lowercase());
            }
        }
    }
    default_principal(facts)
}

/// Header values must not carry control characters, and non-ASCII is mangled by many hops:
/// such bytes (and `%` itself, so the encoding is reversible) are percent-encoded.
pub fn header_safe(value: &str) -> String {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'%') {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push_str(&crate::encoding::hex_lower(&[b]).to_ascii_uppercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_made_safe_reversibly() {
        assert_eq!(header_safe("CN=Doe\\, Jane,O=Example"), "CN=Doe\\, Jane,O=Example");
        assert_eq!(header_safe("CN=a\r\nb"), "CN=a%0D%0Ab");
        assert_eq!(header_safe("CN=Ünal 100%"), "CN=%C3%9Cnal 100%25");
    }
}
