//! Revocation by the issuing CA's own CRL, part of step 4 of the request path (see
//! [`crate::decision`]).
//!
//! A certificate is tied to its CA by the CA's key: its AuthorityKeyIdentifier names it (a
//! certificate without one is matched by its issuer DN, and only when exactly one registered
//! CA has that subject — two CAs may share a DN, and then neither is chosen). Then:
//!
//! 1. A serial the CA's verified CRL lists is refused, `certificate_revoked`, whichever org
//!    the certificate belongs to: a CRL is a fact about its CA.
//! 2. Where a fresh CRL is required — by the CA's platform policy, or by the org the
//!    certificate resolved into for its own users — and none is held (never verified, or past
//!    its nextUpdate plus the CA's grace), the certificate is refused, `revocation_unknown`.
//!    A CA the platform set to fail open is accepted instead, and the acceptance is counted
//!    ([`Notice::RevocationFailOpen`]); an org's requirement is never failed open.
//! 3. A certificate whose CA is not registered is not checked, unless the policy's
//!    `revocation.require_registered_ca` is set, or the certificate's org requires a fresh CRL:
//!    then it is refused, `revocation_unknown`.
//!
//! A source that gives neither issuer key nor serial (the `connection` source without the
//! whole certificate) cannot be checked: once any CA is registered such a certificate is
//! refused, `certificate_not_allowed`, as it is when revocations by serial apply.
//!
//! An org's own setting only ever adds a refusal for certificates resolved into that org, so
//! nothing one org writes changes what happens to another org's users.

use super::outcome::{NotAllowed, Notice, Reason};
use crate::certificate::CertificateFacts;
use crate::identity::{CaKey, CertificateAuthority, IdentityData, Owner};
use serde::Deserialize;

/// The deployment's revocation settings (`revocation` in the policy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationPolicy {
    /// Refuse (`revocation_unknown`) every certificate whose issuing CA is not registered.
    /// Off by default: a deployment registers its CAs first, then turns this on.
    #[serde(default)]
    pub require_registered_ca: bool,
}

/// The registered CA of a certificate, found by its key (or, without one, by its issuer DN
/// when exactly one CA has that subject); `None` also for a source without the whole
/// certificate, which gives neither. Looked up once per request and handed to
/// [`check_revoked`] and [`check_freshness`].
pub fn issuing_ca<'i>(facts: &CertificateFacts, identity: &'i dyn IdentityData) -> Option<CertificateAuthority<'i>> {
    // Without a registered CA there is nothing to find: no map to look the key up in.
    if !facts.complete || !identity.has_certificate_authorities() {
        return None;
    }
    match &facts.authority_key_identifier {
        Some(key) => identity.certificate_authority(&CaKey::of(key)),
        None => {
            let mut found = None;
            let mut count = 0usize;
            identity.certificate_authorities_named(&facts.issuer_dn, &mut |ca| {
                count += 1;
                found = Some(ca);
            });
            found.filter(|_| count == 1)
        }
    }
}

/// Point 1 above: whether the certificate's CA (`ca`, its [`issuing_ca`]) has revoked it. Run
/// with the other revocations, before any org is resolved.
pub fn check_revoked(
    facts: &CertificateFacts,
    ca: Option<&CertificateAuthority<'_>>,
    identity: &dyn IdentityData,
) -> Result<(), Reason> {
    if !facts.complete {
        return if identity.has_certificate_authorities() {
            Err(Reason::CertificateNotAllowed(NotAllowed::FactsUnavailable))
        } else {
            Ok(())
        };
    }
    match ca {
        Some(ca) if identity.is_crl_revoked(&ca.key, &facts.serial_hex) => Err(Reason::CertificateRevoked),
        _ => Ok(()),
    }
}

/// Points 2 and 3 above, once the certificate's org (if any) is known: whether its revocation state
/// may be relied on at `now`, `ca` being its [`issuing_ca`]. `Ok(Some(notice))` accepts it
/// failing open.
pub fn check_freshness(
    facts: &CertificateFacts,
    ca: Option<&CertificateAuthority<'_>>,
    identity: &dyn IdentityData,
    org: Option<&str>,
    policy: &RevocationPolicy,
    now: i64,
) -> Result<Option<Notice>, Reason> {
    if !facts.complete {
        // Refused by `check_revoked` where CAs are registered; nothing to know otherwise.
        return if policy.require_registered_ca {
            Err(Reason::CertificateNotAllowed(NotAllowed::FactsUnavailable))
        } else {
            Ok(None)
        };
    }
    let org_requires =
        org.is_some_and(|org| identity.constraints(Owner::Org(org)).is_some_and(|c| c.require_fresh_crl));
    let Some(ca) = ca else {
        return if policy.require_registered_ca || org_requires { Err(Reason::RevocationUnknown) } else { Ok(None) };
    };
    if ca.crl_fresh_at(now) || !(ca.require_fresh_crl || org_requires) {
        return Ok(None);
    }
    if ca.fail_open && !org_requires {
        return Ok(Some(Notice::RevocationFailOpen));
    }
    Err(Reason::RevocationUnknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::ca::KeyIdentifier;
    use crate::identity::{StaticIdentity, StaticIdentityConfig};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const KEY_A: &str = "0a0a0a0a";
    const KEY_B: &str = "0b0b0b0b";
    const SHARED_DN: &str = "CN=Card Signing CA,O=Test";

    fn facts(aki: Option<&str>, serial: &str) -> CertificateFacts {
        CertificateFacts {
            fingerprint: crate::Fingerprint([7; 32]),
            subject_dn: "CN=Holder".to_owned(),
            issuer_dn: SHARED_DN.to_owned(),
            display_names: crate::certificate::DisplayNames::default(),
            serial_hex: serial.to_owned(),
            not_before: NOW - 60,
            not_after: NOW + 60,
            subject_alt_names: Vec::new(),
            policy_oids: Vec::new(),
            extended_key_usages: Vec::new(),
            authority_key_identifier: aki
                .map(|hex| KeyIdentifier::new(&crate::encoding::hex_decode(hex).unwrap()).unwrap()),
            public_key: None,
            complete: true,
        }
    }

    /// [`check_revoked`] with the CA looked up as the decision does.
    fn revoked(facts: &CertificateFacts, identity: &dyn IdentityData) -> Result<(), Reason> {
        check_revoked(facts, issuing_ca(facts, identity).as_ref(), identity)
    }

    /// [`check_freshness`] with the CA looked up as the decision does.
    fn fresh(
        facts: &CertificateFacts,
        identity: &dyn IdentityData,
        org: Option<&str>,
        policy: &RevocationPolicy,
        now: i64,
    ) -> Result<Option<Notice>, Reason> {
        check_freshness(facts, issuing_ca(facts, identity).as_ref(), identity, org, policy, now)
    }

    fn identity(value: serde_json::Value) -> StaticIdentity {
        let config: StaticIdentityConfig = serde_json::from_value(value).unwrap();
        StaticIdentity::from_config(config, 1).unwrap()
    }

    /// Two CAs sharing one DN, told apart by their keys; A's CRL lists serial 3001.
    fn two_cas(a_until: Option<i64>, a_fail_open: bool) -> StaticIdentity {
        identity(json!({
            "certificate_authorities": [
                {"key_identifier": KEY_A, "subject_dn": SHARED_DN, "crl_valid_until": a_until,
                 "fail_open": a_fail_open, "revoked_serials": ["30:01"]},
                {"key_identifier": KEY_B, "subject_dn": SHARED_DN, "crl_valid_until": NOW + 60}
            ],
            "constraints": [{"kind": "require_fresh_crl", "value": "true", "org_id": "strict"}]
        }))
    }

    #[test]
    fn a_serial_revoked_by_one_ca_does_not_refuse_another_cas_certificate_of_the_same_dn() {
        let data = two_cas(Some(NOW + 60), false);
        assert_eq!(revoked(&facts(Some(KEY_A), "3001"), &data), Err(Reason::CertificateRevoked));
        assert_eq!(revoked(&facts(Some(KEY_B), "3001"), &data), Ok(()));
        assert_eq!(revoked(&facts(Some(KEY_A), "3002"), &data), Ok(()));
        // Without a key identifier, the shared DN names two CAs: neither is chosen.
        assert_eq!(issuing_ca(&facts(None, "3001"), &data), None);
    }

    #[test]
    fn a_certificate_without_a_key_identifier_finds_a_ca_whose_dn_is_unique() {
        let data = identity(json!({"certificate_authorities": [
            {"key_identifier": KEY_A, "subject_dn": SHARED_DN, "revoked_serials": ["3001"]}
        ]}));
        assert_eq!(revoked(&facts(None, "3001"), &data), Err(Reason::CertificateRevoked));
    }

    #[test]
    fn a_stale_or_missing_crl_is_revocation_unknown_unless_the_ca_fails_open() {
        let policy = RevocationPolicy::default();
        let certificate = facts(Some(KEY_A), "3002");
        for until in [None, Some(NOW - 1)] {
            assert_eq!(
                fresh(&certificate, &two_cas(until, false), None, &policy, NOW),
                Err(Reason::RevocationUnknown)
            );
            assert_eq!(
                fresh(&certificate, &two_cas(until, true), None, &policy, NOW),
                Ok(Some(Notice::RevocationFailOpen))
            );
        }
        assert_eq!(fresh(&certificate, &two_cas(Some(NOW), false), None, &policy, NOW), Ok(None));
    }

    #[test]
    fn an_org_tightens_for_its_own_users_only() {
        let policy = RevocationPolicy::default();
        let data = identity(json!({
            "certificate_authorities": [
                {"key_identifier": KEY_A, "subject_dn": SHARED_DN, "require_fresh_crl": false, "fail_open": true}
            ],
            "constraints": [{"kind": "require_fresh_crl", "value": "true", "org_id": "strict"}]
        }));
        let certificate = facts(Some(KEY_A), "1");
        assert_eq!(fresh(&certificate, &data, Some("relaxed"), &policy, NOW), Ok(None));
        assert_eq!(fresh(&certificate, &data, None, &policy, NOW), Ok(None));
        // The platform's fail-open does not override the org's own requirement.
        assert_eq!(fresh(&certificate, &data, Some("strict"), &policy, NOW), Err(Reason::RevocationUnknown));
        // An unregistered CA, for the strict org's users only.
        let unregistered = facts(Some("0c0c"), "1");
        assert_eq!(fresh(&unregistered, &data, Some("strict"), &policy, NOW), Err(Reason::RevocationUnknown));
        assert_eq!(fresh(&unregistered, &data, Some("relaxed"), &policy, NOW), Ok(None));
    }

    #[test]
    fn the_policy_switch_refuses_certificates_of_unregistered_cas() {
        let data = two_cas(Some(NOW + 60), false);
        let strict = RevocationPolicy { require_registered_ca: true };
        let unregistered = facts(Some("0c0c"), "1");
        assert_eq!(fresh(&unregistered, &data, None, &strict, NOW), Err(Reason::RevocationUnknown));
        assert_eq!(fresh(&unregistered, &data, None, &RevocationPolicy::default(), NOW), Ok(None));
        assert_eq!(fresh(&facts(Some(KEY_B), "1"), &data, None, &strict, NOW), Ok(None));
    }

    #[test]
    fn a_source_without_issuer_or_serial_is_refused_once_cas_are_registered() {
        let mut partial = facts(None, "");
        partial.complete = false;
        assert_eq!(revoked(&partial, &two_cas(None, false)), Err(Reason::CertificateNotAllowed(NotAllowed::FactsUnavailable)));
        assert_eq!(revoked(&partial, &identity(json!({}))), Ok(()));
    }
}
