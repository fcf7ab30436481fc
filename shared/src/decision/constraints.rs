//! What a certificate must satisfy on a route, beyond the proxy's chain verification.

use super::config::{ConfigError, MAX_LEEWAY_SECONDS};
use super::outcome::Reason;
use crate::certificate::CertificateFacts;
use serde::Deserialize;

/// FPKI certificate policies commonly required for PIV authentication. Operators list the arcs
/// they accept; both the production and the test arc are configurable so that test cards can be
/// admitted in lower environments only.
pub const OID_FPKI_COMMON_AUTHENTICATION: &str = "2.16.840.1.101.3.2.1.3.13";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Exact RFC 4514 issuer DNs. Empty: any issuer the proxy verified.
    #[serde(default)]
    pub allowed_issuers: Vec<String>,
    /// At least one of these policy OIDs must be asserted. Empty: not enforced.
    #[serde(default)]
    pub required_policy_oids: Vec<String>,
    /// The certificate must carry an RFC 822 SAN, and every one must be in one of these
    /// domains. Empty: not enforced.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// PIV Card Authentication certificates prove a card is present but not that its holder
    /// typed a PIN, so they are refused for user login unless a route opts in.
    #[serde(default)]
    pub allow_card_authentication: bool,
    /// Seconds of clock skew tolerated on the validity window.
    #[serde(default)]
    pub validity_leeway_seconds: u32,
}

impl Constraints {
    /// Checks the values and lowercases domains once so that checks compare without
    /// allocating. `field` names this object in errors.
    pub fn validated(mut self, field: &str) -> Result<Self, ConfigError> {
        for (i, d) in self.allowed_email_domains.iter_mut().enumerate() {
            *d = d.trim_start_matches('@').to_ascii_lowercase();
            if d.is_empty() || d.contains('@') {
                return Err(ConfigError::new(format!("{field}.allowed_email_domains[{i}]"), "not a domain"));
            }
        }
        for (i, oid) in self.required_policy_oids.iter().enumerate() {
            if der::asn1::ObjectIdentifier::new(oid).is_err() {
                return Err(ConfigError::new(format!("{field}.required_policy_oids[{i}]"), "not a dotted OID"));
            }
        }
        if u64::from(self.validity_leeway_seconds) > MAX_LEEWAY_SECONDS {
            return Err(ConfigError::new(
                format!("{field}.validity_leeway_seconds"),
                format!("at most {MAX_LEEWAY_SECONDS}"),
            ));
        }
        Ok(self)
    }

    /// Checks `facts`. A check that needs a fact the certificate source could not supply
    /// (`facts.complete` false: issuer, serial, validity, policies, EKUs, email SANs) refuses:
    /// nothing is passed for want of the means to check it.
    pub fn check(&self, facts: &CertificateFacts, now: i64) -> Result<(), Reason> {
        let leeway = i64::from(self.validity_leeway_seconds);
        if facts.complete && (now.saturating_add(leeway) < facts.not_before || now.saturating_sub(leeway) > facts.not_after) {
            return Err(Reason::CertificateExpired);
        }
        let needs_complete = !self.allowed_issuers.is_empty()
            || !self.required_policy_oids.is_empty()
            || !self.allowed_email_domains.is_empty()
            || !self.allow_card_authentication;
        if needs_complete && !facts.complete {
            return Err(Reason::CertificateNotAllowed);
        }
        if !self.allowed_issuers.is_empty() && !self.allowed_issuers.contains(&facts.issuer_dn) {
            return Err(Reason::CertificateNotAllowed);
        }
        if !self.required_policy_oids.is_empty()
            && !facts.policy_oids.iter().any(|oid| self.required_policy_oids.contains(oid))
        {
            return Err(Reason::CertificateNotAllowed);
        }
        if !self.allowed_email_domains.is_empty() {
            let mut emails = facts.emails().peekable();
            let any = emails.peek().is_some();
            let all_allowed = emails.all(|email| {
                email_domain(email).is_some_and(|d| self.allowed_email_domains.iter().any(|a| a.eq_ignore_ascii_case(d)))
            });
            if !any || !all_allowed {
                return Err(Reason::CertificateNotAllowed);
            }
        }
        if !self.allow_card_authentication && facts.is_piv_card_auth() {
            return Err(Reason::CertificateNotAllowed);
        }
        Ok(())
    }
}

/// The domain of an address, after its last `@`. `None` when there is none or it is empty.
pub fn email_domain(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, d)| d).filter(|d| !d.is_empty())
}
