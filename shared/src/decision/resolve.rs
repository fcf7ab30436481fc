//! Step 5 of the request path: from a certificate to an identity, in the scope of the org it
//! belongs to.
//!
//! 1. The certificate's org is resolved first, in this order: its `smart_card_links` binding
//!    (fingerprint → user, org); else its thumbprint mapping (one owner: an org or the
//!    platform); else a SAN email/UPN mapping rule matching (kind, domain, issuer DN); else
//!    none. A step that rules of two owners answer is ambiguous and resolves nothing (it falls
//!    through): the control plane refuses such conflicts, so this is defence in depth.
//! 2. Refusals, each in that scope: blocklist and revocations of the platform or of the org;
//!    the route's constraints, then the platform's and the org's; a disabled binding; a route
//!    that requires an enrolled card.
//! 3. The principal, composed here in its owner's namespace (a name is never trusted as
//!    given where it could pass for another owner's): binding → `auth:account:user:{user}`;
//!    an org's thumbprint mapping `P` → `auth:account:org:{org}:{P}`; an org's SAN rule →
//!    `auth:account:org:{org}:{email|upn}:{value}`; the platform's mapping → `P`; the
//!    platform's SAN rule → `auth:account:x509:{email|upn}:{value}`; none →
//!    `auth:account:x509:sha256:{x5t#S256}`. `X-DM-Org-Id` is set whenever an org resolved.
//!
//! A source that cannot give a fact a rule needs (the `connection` source has no issuer,
//! serial, policies or email SANs) never lets the rule pass silently: an applicable
//! revocation by serial or an applicable constraint then refuses the certificate
//! (`certificate_not_allowed`).

use super::config::Route;
use super::constraints::email_domain;
use super::outcome::{header, Reason};
use crate::certificate::CertificateFacts;
use crate::identity::{
    CardBinding, IdentityData, Owner, RuleMatch, SanKind, ORG_PRINCIPAL_PREFIX, USER_PRINCIPAL_PREFIX,
};

/// Principal of a certificate with no other mapping (seed 004's canonical ARN).
pub fn default_principal(facts: &CertificateFacts) -> String {
    format!("auth:account:x509:sha256:{}", facts.fingerprint.to_x5t_s256())
}

/// How a certificate resolved (step 1), before any refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<'i> {
    Bound(CardBinding<'i>),
    Thumbprint { owner: Owner<'i>, name: &'i str },
    San { owner: Owner<'i>, kind: SanKind, value: String },
    Unresolved,
}

impl<'i> Resolution<'i> {
    /// The org the certificate belongs to, if any.
    pub fn org(&self) -> Option<&'i str> {
        match self {
            Resolution::Bound(binding) => Some(binding.org_id),
            Resolution::Thumbprint { owner, .. } | Resolution::San { owner, .. } => owner.org_id(),
            Resolution::Unresolved => None,
        }
    }

    fn principal(&self, facts: &CertificateFacts) -> String {
        match self {
            Resolution::Bound(binding) => format!("{USER_PRINCIPAL_PREFIX}{}", binding.user_id),
            Resolution::Thumbprint { owner: Owner::Org(org), name } => format!("{ORG_PRINCIPAL_PREFIX}{org}:{name}"),
            Resolution::Thumbprint { owner: Owner::Platform, name } => (*name).to_owned(),
            Resolution::San { owner: Owner::Org(org), kind, value } => {
                format!("{ORG_PRINCIPAL_PREFIX}{org}:{}:{value}", kind.as_str())
            }
            Resolution::San { owner: Owner::Platform, kind, value } => {
                format!("auth:account:x509:{}:{value}", kind.as_str())
            }
            Resolution::Unresolved => default_principal(facts),
        }
    }
}

/// Step 1: which org (and which rule) the certificate resolves into.
pub fn resolve<'i>(facts: &CertificateFacts, identity: &'i dyn IdentityData) -> Resolution<'i> {
    if let Some(binding) = identity.card_binding(&facts.fingerprint) {
        return Resolution::Bound(binding);
    }
    if let RuleMatch::One(mapping) = identity.thumbprint_mapping(&facts.fingerprint) {
        return Resolution::Thumbprint { owner: mapping.owner, name: mapping.name };
    }
    // A SAN rule names the issuer allowed to assert it: without the issuer, none applies.
    if !facts.complete {
        return Resolution::Unresolved;
    }
    let mut found: Option<(Owner<'i>, SanKind, &str)> = None;
    let values = facts.emails().map(|v| (SanKind::Email, v)).chain(facts.upns().map(|v| (SanKind::Upn, v)));
    for (kind, value) in values {
        let Some(domain) = email_domain(value) else { continue };
        match identity.san_rule(kind, domain, &facts.issuer_dn) {
            RuleMatch::Unmatched => {}
            RuleMatch::Ambiguous => return Resolution::Unresolved,
            RuleMatch::One(owner) => match found {
                None => found = Some((owner, kind, value)),
                Some((first, _, _)) if first != owner => return Resolution::Unresolved,
                Some(_) => {}
            },
        }
    }
    match found {
        Some((owner, kind, value)) => Resolution::San { owner, kind, value: value.to_ascii_lowercase() },
        None => Resolution::Unresolved,
    }
}

/// Checks the certificate and appends the identity headers for it; returns the org it
/// resolved into (the scope of the token issuers that apply to the request).
pub fn certificate_identity<'i>(
    facts: &CertificateFacts,
    route: &Route,
    identity: &'i dyn IdentityData,
    now: i64,
    set: &mut Vec<(&'static str, String)>,
) -> Result<Option<&'i str>, Reason> {
    let resolution = resolve(facts, identity);
    let org = resolution.org();
    if identity.is_blocklisted(&facts.fingerprint, org) {
        return Err(Reason::CertificateBlocklisted);
    }
    if facts.complete {
        if identity.is_revoked(&facts.issuer_dn, &facts.serial_hex, org) {
            return Err(Reason::CertificateRevoked);
        }
    } else if identity.has_revoked_serials(org) {
        // Revocations by serial apply, and this source gives no serial to check.
        return Err(Reason::CertificateNotAllowed);
    }
    route.constraints.check(facts, now)?;
    for owner in [Some(Owner::Platform), org.map(Owner::Org)].into_iter().flatten() {
        if identity.constraints(owner).is_some_and(|c| !c.allows(facts)) {
            return Err(Reason::CertificateNotAllowed);
        }
    }

    match &resolution {
        Resolution::Bound(binding) if !binding.enabled => return Err(Reason::BindingDisabled),
        Resolution::Bound(binding) => set.push((header::USER, header_safe(binding.user_id.as_str()))),
        _ if route.require_enrolled_card => return Err(Reason::CardNotEnrolled),
        _ => {}
    }
    if let Some(org) = org {
        set.push((header::ORG, header_safe(org)));
    }
    set.push((header::FINGERPRINT, facts.fingerprint.to_hex()));
    set.push((header::SUBJECT, header_safe(&facts.subject_dn)));
    if facts.complete {
        set.push((header::ISSUER, header_safe(&facts.issuer_dn)));
        set.push((header::SERIAL, facts.serial_hex.clone()));
    }
    set.push((header::PRINCIPAL, header_safe(&resolution.principal(facts))));
    Ok(org)
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
#[path = "tenancy_tests.rs"]
mod tenancy_tests;

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
