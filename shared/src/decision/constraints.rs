//! What a certificate must satisfy on a route, beyond the proxy's chain verification.

use super::config_error::ConfigError;
use super::outcome::{NotAllowed, Reason};
use crate::certificate::dn::canonical_dn;
use crate::certificate::CertificateFacts;
use serde::Deserialize;

/// Largest clock skew tolerated on token lifetimes and certificate validity: more turns an
/// expired credential into a valid one.
pub const MAX_LEEWAY_SECONDS: u64 = 600;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// RFC 4514 issuer DNs, in any spelling the DN text parser reads (compared in the form the
    /// certificate walk renders). Empty: any issuer the proxy verified.
    #[serde(default)]
    pub allowed_issuers: Vec<String>,
    /// At least one of these policy OIDs must be asserted (FPKI PIV authentication is
    /// `2.16.840.1.101.3.2.1.3.13`, its test arc `2.16.840.1.101.3.2.1.48.11`: list both to
    /// admit test cards in lower environments). Empty: not enforced.
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
        for i in 0..self.allowed_issuers.len() {
            let written = self.allowed_issuers.get(i).cloned().unwrap_or_default();
            let canonical = canonical_dn(&written)
                .map_err(|e| ConfigError::new(format!("{field}.allowed_issuers[{i}]"), e.to_string()))?;
            if let Some(earlier) = self.allowed_issuers.iter().take(i).position(|d| *d == canonical) {
                return Err(ConfigError::new(
                    format!("{field}.allowed_issuers[{i}]"),
                    format!("the same DN as allowed_issuers[{earlier}], spelled otherwise"),
                ));
            }
            if let Some(slot) = self.allowed_issuers.get_mut(i) {
                *slot = canonical;
            }
        }
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
            return Err(Reason::CertificateNotAllowed(NotAllowed::FactsUnavailable));
        }
        if !self.allowed_issuers.is_empty() && !self.allowed_issuers.contains(&facts.issuer_dn) {
            return Err(Reason::CertificateNotAllowed(NotAllowed::IssuerNotAllowed));
        }
        if !self.required_policy_oids.is_empty()
            && !facts.policy_oids.iter().any(|oid| self.required_policy_oids.contains(oid))
        {
            return Err(Reason::CertificateNotAllowed(NotAllowed::PolicyOidMissing));
        }
        if !self.allowed_email_domains.is_empty() {
            let mut emails = facts.emails().peekable();
            let any = emails.peek().is_some();
            let all_allowed = emails.all(|email| {
                email_domain(email).is_some_and(|d| self.allowed_email_domains.iter().any(|a| a.eq_ignore_ascii_case(d)))
            });
            if !any || !all_allowed {
                return Err(Reason::CertificateNotAllowed(NotAllowed::SanDomain));
            }
        }
        if !self.allow_card_authentication && facts.is_piv_card_auth() {
            return Err(Reason::CertificateNotAllowed(NotAllowed::CardAuthentication));
        }
        Ok(())
    }
}

/// The domain of an address, after its last `@`. `None` when there is none or it is empty.
pub fn email_domain(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, d)| d).filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraints(json: serde_json::Value) -> Result<Constraints, ConfigError> {
        serde_json::from_value::<Constraints>(json).unwrap().validated("constraints")
    }

    #[test]
    fn issuers_are_compared_in_one_spelling_and_repeats_refused() {
        let c = constraints(serde_json::json!({"allowed_issuers": ["cn=Issuing CA, o=certbind ,c=US"]})).unwrap();
        assert_eq!(c.allowed_issuers, vec!["CN=Issuing CA,O=certbind,C=US".to_string()]);
        let repeated = constraints(serde_json::json!({"allowed_issuers": ["CN=A,O=B", "cn=A, O=B"]})).unwrap_err();
        assert_eq!(repeated.field, "constraints.allowed_issuers[1]");
        assert_eq!(constraints(serde_json::json!({"allowed_issuers": ["not a dn"]})).unwrap_err().field, "constraints.allowed_issuers[0]");
        assert_eq!(constraints(serde_json::json!({"required_policy_oids": ["2.16.x"]})).unwrap_err().field, "constraints.required_policy_oids[0]");
        assert_eq!(constraints(serde_json::json!({"allowed_email_domains": ["a@b"]})).unwrap_err().field, "constraints.allowed_email_domains[0]");
        assert_eq!(constraints(serde_json::json!({"validity_leeway_seconds": 601})).unwrap_err().field, "constraints.validity_leeway_seconds");
    }

    fn facts() -> CertificateFacts {
        CertificateFacts {
            fingerprint: crate::Fingerprint([1; 32]),
            subject_dn: "CN=x".into(),
            issuer_dn: "CN=CA".into(),
            display_names: crate::certificate::DisplayNames::default(),
            serial_hex: "01".into(),
            not_before: 0,
            not_after: 100,
            subject_alt_names: Vec::new(),
            policy_oids: Vec::new(),
            extended_key_usages: Vec::new(),
            authority_key_identifier: None,
            public_key: None,
            complete: true,
        }
    }

    #[test]
    fn card_authentication_is_recognised_by_policy_alone() {
        let route = constraints(serde_json::json!({})).unwrap();
        assert_eq!(route.check(&facts(), 50), Ok(()));
        for oid in crate::certificate::CARD_AUTH_POLICY_OIDS {
            let mut card_auth = facts();
            card_auth.policy_oids = vec![(*oid).to_string()];
            assert_eq!(route.check(&card_auth, 50), Err(Reason::CertificateNotAllowed(NotAllowed::CardAuthentication)), "{oid}");
        }
        let opted_in = constraints(serde_json::json!({"allow_card_authentication": true})).unwrap();
        let mut card_auth = facts();
        card_auth.policy_oids = vec!["2.16.840.1.101.3.2.1.48.13".into()];
        assert_eq!(opted_in.check(&card_auth, 50), Ok(()));
    }

    #[test]
    fn incomplete_facts_refuse_every_check_that_needs_more() {
        let mut partial = facts();
        partial.complete = false;
        let opted_in = serde_json::json!({"allow_card_authentication": true});
        assert_eq!(constraints(opted_in.clone()).unwrap().check(&partial, 50), Ok(()));
        for needs in [
            serde_json::json!({}),
            serde_json::json!({"allow_card_authentication": true, "allowed_issuers": ["CN=CA"]}),
            serde_json::json!({"allow_card_authentication": true, "required_policy_oids": ["1.2.3"]}),
            serde_json::json!({"allow_card_authentication": true, "allowed_email_domains": ["mil"]}),
        ] {
            assert_eq!(
                constraints(needs.clone()).unwrap().check(&partial, 50),
                Err(Reason::CertificateNotAllowed(NotAllowed::FactsUnavailable)),
                "{needs}"
            );
        }
        // An email-domain rule needs an email SAN to be met.
        let mail = constraints(serde_json::json!({"allowed_email_domains": ["mil"]})).unwrap();
        assert_eq!(mail.check(&facts(), 50), Err(Reason::CertificateNotAllowed(NotAllowed::SanDomain)));
        let mut with_mail = facts();
        with_mail.subject_alt_names = vec![crate::certificate::SubjectAltName::Email("a@MIL".into())];
        assert_eq!(mail.check(&with_mail, 50), Ok(()));
    }
}
