//! Step 4 of the request path (see [`crate::decision`]): from a certificate to an identity, in the scope of the org it
//! belongs to.
//!
//! 1. The certificate's org is resolved first, in this order: its `smart_card_links` binding
//!    (fingerprint → user, org); else its thumbprint mapping (one owner: an org or the
//!    platform); else a SAN email/UPN mapping rule matching (kind, domain, issuer DN); else
//!    none. Every org whose rule answers the certificate — its binding, a thumbprint mapping,
//!    a SAN rule — claims it. **Two orgs claiming one certificate, at one step or at
//!    different steps, is a conflict**: the certificate is refused (`certificate_not_allowed`),
//!    never given to the higher-precedence owner, so no org can capture another org's card by
//!    binding or mapping its public certificate. The platform's rules claim nothing (the
//!    platform is trusted): they take their place in the order. A step that the platform and
//!    one org both answer is ambiguous and resolves nothing (it falls through). The control
//!    plane refuses to create such conflicts, so all this is defence in depth.
//!
//!    Except for claims that rest on an org's word alone: a binding or thumbprint mapping the
//!    control plane made without seeing the certificate ([`Claim::Unverified`]: bound by
//!    fields, mapped by fingerprint) is **dropped** when another org claims the certificate
//!    by a verified claim (a SAN rule, which this step checks against the certificate itself,
//!    or a binding or mapping made from the certificate). Dropped, it claims nothing: the
//!    certificate resolves as if it were not there, and its org's blocklist and revocations
//!    do not apply. So an org that knows only another org's card holder's public certificate
//!    (or its fingerprint) cannot have that card holder refused. Unverified claims that meet
//!    no other org's verified claim stand as any other.
//! 2. Refusals: blocklist and revocations of the platform and of every org that claims the
//!    certificate, then its CA's CRL (before anything else, conflicts included); a conflict;
//!    a CRL that is required and not fresh ([`super::revocation`]); the route's constraints,
//!    then the platform's and the resolved org's; a disabled binding; a route that requires
//!    an enrolled card.
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
//! (`certificate_not_allowed`). SAN rules name the issuer allowed to assert them, so without
//! the issuer none applies.

use super::config::Route;
use super::constraints::email_domain;
use super::outcome::{header, NotAllowed, Notice, Reason};
use super::revocation::{self, RevocationPolicy};
use crate::certificate::CertificateFacts;
use crate::identity::{
    CardBinding, Claim, IdentityData, Owner, RuleMatch, SanKind, ThumbprintMapping, ORG_PRINCIPAL_PREFIX,
    USER_PRINCIPAL_PREFIX,
};

/// Principal of a certificate with no other mapping: the canonical ARN, keyed by its x5t#S256.
pub fn default_principal(facts: &CertificateFacts) -> String {
    format!("auth:account:x509:sha256:{}", facts.fingerprint.to_x5t_s256())
}

/// How a certificate resolved (its org, point 1 above), before any refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<'i> {
    Bound(CardBinding<'i>),
    Thumbprint { owner: Owner<&'i str>, name: &'i str },
    San { owner: Owner<&'i str>, kind: SanKind, value: String },
    Unresolved,
    /// Rules of two orgs answer the certificate: it belongs to neither, and is refused.
    Conflict,
}

impl<'i> Resolution<'i> {
    /// The org the certificate belongs to, if any.
    pub fn org(&self) -> Option<&'i str> {
        match self {
            Resolution::Bound(binding) => Some(binding.org_id),
            Resolution::Thumbprint { owner, .. } | Resolution::San { owner, .. } => owner.org_id(),
            Resolution::Unresolved | Resolution::Conflict => None,
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
            Resolution::Unresolved | Resolution::Conflict => default_principal(facts),
        }
    }
}

/// The orgs whose rules answer a certificate, each once. Usually none or one, so the second
/// and later (a conflict) are the only ones that allocate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimants<'i> {
    first: Option<&'i str>,
    others: Vec<&'i str>,
}

impl<'i> Claimants<'i> {
    fn add(&mut self, org: &'i str) {
        match self.first {
            None => self.first = Some(org),
            Some(first) if first == org || self.others.contains(&org) => {}
            Some(_) => self.others.push(org),
        }
    }

    /// Whether two orgs claim the certificate.
    pub fn conflict(&self) -> bool {
        !self.others.is_empty()
    }

    pub fn orgs(&self) -> impl Iterator<Item = &'i str> + '_ {
        self.first.into_iter().chain(self.others.iter().copied())
    }

    /// The scopes whose blocklist and revocations apply: each claiming org's (the platform's
    /// come with every one), or the platform's alone when no org claims the certificate.
    fn scopes(&self) -> impl Iterator<Item = Option<&'i str>> + '_ {
        let unclaimed = self.first.is_none().then_some(None);
        unclaimed.into_iter().chain(self.orgs().map(Some))
    }
}

/// Point 1 above: which org (and which rule) the certificate resolves into, and every org whose rule
/// answers it.
pub fn resolve<'i>(facts: &CertificateFacts, identity: &'i dyn IdentityData) -> (Resolution<'i>, Claimants<'i>) {
    // The orgs claiming the certificate by verified claims first: they decide which
    // unverified claims stand.
    let mut verified = Claimants::default();
    let binding = identity.card_binding(&facts.fingerprint);
    if let Some(binding) = binding.as_ref().filter(|b| b.claim.is_verified()) {
        verified.add(binding.org_id);
    }
    identity.thumbprint_mappings(&facts.fingerprint, &mut |found| {
        if let (Owner::Org(org), true) = (found.owner, found.claim.is_verified()) {
            verified.add(org);
        }
    });
    // A SAN rule names the issuer allowed to assert it: without the issuer, none applies.
    let mut san = RuleMatch::<(Owner<&'i str>, SanKind, &str)>::Unmatched;
    if facts.complete {
        let values = facts.emails().map(|v| (SanKind::Email, v)).chain(facts.upns().map(|v| (SanKind::Upn, v)));
        for (kind, value) in values {
            let Some(domain) = email_domain(value) else { continue };
            identity.san_rule_owners(kind, domain, &facts.issuer_dn, &mut |owner| {
                if let Owner::Org(org) = owner {
                    verified.add(org);
                }
                // One owner's rules matching several SANs resolve by the first.
                san = match san {
                    RuleMatch::Unmatched => RuleMatch::One((owner, kind, value)),
                    RuleMatch::One(first) if first.0 == owner => RuleMatch::One(first),
                    _ => RuleMatch::Ambiguous,
                };
            });
        }
    }
    // An unverified claim stands unless an org other than its own claims the certificate
    // verifiably.
    let stands = |org: &str, claim: Claim| claim.is_verified() || verified.orgs().all(|other| other == org);
    let mut claimants = verified.clone();
    let binding = binding.filter(|b| stands(b.org_id, b.claim));
    if let Some(binding) = &binding {
        claimants.add(binding.org_id);
    }
    // Every step is looked at, bound or not: a rule of another org at a later step is a
    // conflict, not something the binding hides.
    let mut mapping = RuleMatch::<ThumbprintMapping<'i>>::Unmatched;
    identity.thumbprint_mappings(&facts.fingerprint, &mut |found| {
        if let Owner::Org(org) = found.owner {
            if !stands(org, found.claim) {
                return;
            }
            claimants.add(org);
        }
        mapping = mapping.and(found);
    });
    let resolution = if claimants.conflict() {
        Resolution::Conflict
    } else if let Some(binding) = binding {
        Resolution::Bound(binding)
    } else if let RuleMatch::One(ThumbprintMapping { owner, name, .. }) = mapping {
        Resolution::Thumbprint { owner, name }
    } else if let RuleMatch::One((owner, kind, value)) = san {
        Resolution::San { owner, kind, value: value.to_ascii_lowercase() }
    } else {
        Resolution::Unresolved
    };
    (resolution, claimants)
}

/// Checks the certificate and appends the identity headers for it; returns the org it
/// resolved into (the scope of the token issuers that apply to the request). A certificate
/// accepted failing open leaves its `notice`.
pub fn certificate_identity<'i>(
    facts: &CertificateFacts,
    route: &Route,
    revocation: &RevocationPolicy,
    identity: &'i dyn IdentityData,
    now: i64,
    set: &mut Vec<(&'static str, String)>,
    notice: &mut Option<Notice>,
) -> Result<Option<&'i str>, Reason> {
    let (resolution, claimants) = resolve(facts, identity);
    // A card any claiming org (or the platform) blocked or revoked is refused as such, whoever
    // else claims it and whatever resolved.
    if claimants.scopes().any(|scope| identity.is_blocklisted(&facts.fingerprint, scope)) {
        return Err(Reason::CertificateBlocklisted);
    }
    if facts.complete {
        if claimants.scopes().any(|scope| identity.is_revoked(&facts.issuer_dn, &facts.serial_hex, scope)) {
            return Err(Reason::CertificateRevoked);
        }
    } else if claimants.scopes().any(|scope| identity.has_revoked_serials(scope)) {
        // Revocations by serial apply, and this source gives no serial to check.
        return Err(Reason::CertificateNotAllowed(NotAllowed::FactsUnavailable));
    }
    let ca = revocation::issuing_ca(facts, identity);
    revocation::check_revoked(facts, ca.as_ref(), identity)?;
    if resolution == Resolution::Conflict {
        return Err(Reason::CertificateNotAllowed(NotAllowed::ClaimedByTwoOrgs));
    }
    let org = resolution.org();
    *notice = revocation::check_freshness(facts, ca.as_ref(), identity, org, revocation, now)?;
    route.constraints.check(facts, now)?;
    for owner in [Some(Owner::Platform), org.map(Owner::Org)].into_iter().flatten() {
        if let Some(constraints) = identity.constraints(owner) {
            constraints.check(facts).map_err(Reason::CertificateNotAllowed)?;
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
    // Upstreams read names; the filter compares the matching form, never this one.
    set.push((header::SUBJECT, header_safe(facts.display_subject())));
    if facts.complete {
        set.push((header::ISSUER, header_safe(facts.display_issuer())));
        set.push((header::SERIAL, facts.serial_hex.clone()));
    }
    set.push((header::PRINCIPAL, header_safe_owned(resolution.principal(facts))));
    for fact in &route.forward_card_facts {
        if let Some(value) = fact.value(facts) {
            set.push((fact.header(), value));
        }
    }
    Ok(org)
}

/// Header values must not carry control characters, and non-ASCII is mangled by many hops:
/// such bytes (and `%` itself, so the encoding is reversible) are percent-encoded.
pub fn header_safe(value: &str) -> String {
    if is_header_safe(value) {
        return value.to_string();
    }
    escape_for_header(value)
}

/// [`header_safe`] of a string made for the header, which is kept when it needs no escape.
fn header_safe_owned(value: String) -> String {
    if is_header_safe(&value) {
        return value;
    }
    escape_for_header(&value)
}

/// Whether every byte may stand in a header value as it is. Every byte is looked at (no early
/// exit), which the compiler turns into a few wide comparisons.
fn is_header_safe(value: &str) -> bool {
    value.bytes().fold(true, |safe, b| safe & (0x20..0x7f).contains(&b) & (b != b'%'))
}

fn escape_for_header(value: &str) -> String {
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
    use crate::decision::constraints::Constraints;
    use crate::decision::mode::{Mode, PathMatching};
    use crate::fingerprint::Fingerprint;
    use crate::identity::{CaKey, CertificateAuthority, OwnerConstraints, StaticIdentity, StaticIdentityConfig, TokenIssuer};
    use std::cell::Cell;

    /// An identity that counts the CA lookups made of it.
    struct CountingCaLookups {
        inner: StaticIdentity,
        lookups: Cell<usize>,
    }

    impl IdentityData for CountingCaLookups {
        fn card_binding(&self, fingerprint: &Fingerprint) -> Option<CardBinding<'_>> {
            self.inner.card_binding(fingerprint)
        }
        fn is_blocklisted(&self, fingerprint: &Fingerprint, org: Option<&str>) -> bool {
            self.inner.is_blocklisted(fingerprint, org)
        }
        fn is_revoked(&self, issuer_dn: &str, serial_hex: &str, org: Option<&str>) -> bool {
            self.inner.is_revoked(issuer_dn, serial_hex, org)
        }
        fn has_revoked_serials(&self, org: Option<&str>) -> bool {
            self.inner.has_revoked_serials(org)
        }
        fn thumbprint_mappings<'a>(&'a self, fingerprint: &Fingerprint, each: &mut dyn FnMut(ThumbprintMapping<'a>)) {
            self.inner.thumbprint_mappings(fingerprint, each);
        }
        fn san_rule_owners<'a>(&'a self, kind: SanKind, domain: &str, issuer_dn: &str, each: &mut dyn FnMut(Owner<&'a str>)) {
            self.inner.san_rule_owners(kind, domain, issuer_dn, each);
        }
        fn constraints(&self, owner: Owner<&str>) -> Option<&OwnerConstraints> {
            self.inner.constraints(owner)
        }
        fn certificate_authority(&self, key: &CaKey) -> Option<CertificateAuthority<'_>> {
            self.lookups.set(self.lookups.get() + 1);
            self.inner.certificate_authority(key)
        }
        fn certificate_authorities_named<'a>(&'a self, subject_dn: &str, each: &mut dyn FnMut(CertificateAuthority<'a>)) {
            self.lookups.set(self.lookups.get() + 1);
            self.inner.certificate_authorities_named(subject_dn, each);
        }
        fn has_certificate_authorities(&self) -> bool {
            self.inner.has_certificate_authorities()
        }
        fn is_crl_revoked(&self, ca: &CaKey, serial_hex: &str) -> bool {
            self.inner.is_crl_revoked(ca, serial_hex)
        }
        fn token_issuer(&self, issuer: &str, owner: Owner<&str>) -> Option<TokenIssuer<'_>> {
            self.inner.token_issuer(issuer, owner)
        }
        fn generation(&self) -> u64 {
            self.inner.generation()
        }
    }

    #[test]
    fn the_issuing_ca_is_looked_up_once_for_both_revocation_checks() {
        const NOW: i64 = 1_800_000_000;
        let facts = CertificateFacts::from_pem(include_bytes!("../../../tests/pki/piv-auth.pem")).unwrap();
        let key = facts.authority_key_identifier.as_ref().unwrap().to_hex();
        let route = Route {
            pattern: None,
            mode: Mode::Mtls,
            sender_binding_required_paths: Vec::new(),
            require_enrolled_card: false,
            constraints: Constraints::default(),
            path_matching: PathMatching::default(),
            forward_card_facts: Vec::new(),
        };
        let decide = |facts: &CertificateFacts, crl_valid_until: Option<i64>, revoked: &[&str]| {
            let config: StaticIdentityConfig = serde_json::from_value(serde_json::json!({"certificate_authorities": [
                {"key_identifier": key, "subject_dn": facts.issuer_dn, "crl_valid_until": crl_valid_until,
                 "revoked_serials": revoked}
            ]}))
            .unwrap();
            let identity = CountingCaLookups { inner: StaticIdentity::from_config(config, 1).unwrap(), lookups: Cell::new(0) };
            let (mut set, mut notice) = (Vec::new(), None);
            let result = certificate_identity(facts, &route, &RevocationPolicy::default(), &identity, NOW, &mut set, &mut notice)
                .map(|org| org.map(str::to_owned));
            (result, identity.lookups.get())
        };
        // Through both checks: accepted on a fresh CRL, refused on none; by key and by DN.
        let mut by_dn = facts.clone();
        by_dn.authority_key_identifier = None;
        for certificate in [&facts, &by_dn] {
            assert_eq!(decide(certificate, Some(NOW + 60), &[]), (Ok(None), 1));
            assert_eq!(decide(certificate, None, &[]), (Err(Reason::RevocationUnknown), 1));
            assert_eq!(decide(certificate, Some(NOW + 60), &[&facts.serial_hex]), (Err(Reason::CertificateRevoked), 1));
        }
    }

    #[test]
    fn header_values_are_made_safe_reversibly() {
        assert_eq!(header_safe("CN=Doe\\, Jane,O=Example"), "CN=Doe\\, Jane,O=Example");
        assert_eq!(header_safe("CN=a\r\nb"), "CN=a%0D%0Ab");
        assert_eq!(header_safe("CN=Ünal 100%"), "CN=%C3%9Cnal 100%25");
        assert_eq!(header_safe("a\x7fb\x1f ~"), "a%7Fb%1F ~");
        assert_eq!(header_safe_owned("auth:account:user:x\x7f".to_owned()), "auth:account:user:x%7F");
        assert_eq!(header_safe_owned("auth:account:user:x".to_owned()), "auth:account:user:x");
    }
}
