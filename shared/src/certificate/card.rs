//! The facts of a card: what a PIV, PIV-I or CAC certificate says about its holder and its
//! card, in the form an administrator checks and a policy forwards upstream. Built from the
//! [`CertificateFacts`] the filter decides on, never by reading the certificate again.

use super::fascn::Fascn;
use super::key::PublicKeyFacts;
use super::CertificateFacts;
use serde::Serialize;

/// The prefix of a card UUID's URI SAN (SP 800-73-4 §3.3.2.1: `urn:uuid:` and the UUID).
const UUID_URN: &str = "urn:uuid:";

/// Which of a PIV card's keys the certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateType {
    /// The Card Authentication key: usable without the PIN, so it proves the card is present
    /// but not its holder (the id-PIV-cardAuth EKU or a card-auth policy OID). The filter
    /// refuses it unless the route allows Card Authentication.
    CardAuthentication,
    /// Any other certificate: the holder's PIN-protected PIV Authentication key, as the filter
    /// treats it.
    PivAuthentication,
}

impl CertificateType {
    pub fn of(facts: &CertificateFacts) -> CertificateType {
        if facts.is_piv_card_auth() {
            CertificateType::CardAuthentication
        } else {
            CertificateType::PivAuthentication
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CertificateType::CardAuthentication => "card_authentication",
            CertificateType::PivAuthentication => "piv_authentication",
        }
    }
}

/// What a card's certificate says, beyond the subject, issuer, serial and validity every
/// binding shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardFacts {
    pub certificate_type: CertificateType,
    /// Microsoft UPN otherName SANs (`1234567890@mil`).
    pub upns: Vec<String>,
    /// RFC 822 SANs.
    pub emails: Vec<String>,
    /// URI SANs, the card UUID's `urn:uuid:` among them.
    pub uris: Vec<String>,
    /// The UUID of the first `urn:uuid:` URI SAN, without the prefix.
    pub card_uuid: Option<String>,
    /// The first FASC-N otherName SAN, decoded into its fields.
    pub fascn: Option<Fascn>,
    /// certificatePolicies OIDs, dotted, in the certificate's order.
    pub policy_oids: Vec<String>,
    /// extKeyUsage OIDs, dotted, in the certificate's order.
    pub extended_key_usages: Vec<String>,
    /// Null only where the certificate itself was not at hand.
    pub public_key: Option<PublicKeyFacts>,
}

impl CardFacts {
    pub fn of(facts: &CertificateFacts) -> CardFacts {
        let owned = |items: &mut dyn Iterator<Item = &str>| items.map(str::to_owned).collect::<Vec<_>>();
        CardFacts {
            certificate_type: CertificateType::of(facts),
            upns: owned(&mut facts.upns()),
            emails: owned(&mut facts.emails()),
            uris: owned(&mut facts.uris()),
            card_uuid: card_uuid(facts).map(str::to_owned),
            fascn: facts.fascns().next().and_then(Fascn::from_digits),
            policy_oids: facts.policy_oids.clone(),
            extended_key_usages: facts.extended_key_usages.clone(),
            public_key: facts.public_key.clone(),
        }
    }
}

/// The UUID of the first `urn:uuid:` URI SAN (prefix matched without regard to case, as
/// RFC 4122's URN namespace is).
pub fn card_uuid(facts: &CertificateFacts) -> Option<&str> {
    facts.uris().find_map(|uri| {
        let prefix = uri.get(..UUID_URN.len())?;
        prefix.eq_ignore_ascii_case(UUID_URN).then(|| uri.get(UUID_URN.len()..)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_of(name: &str) -> CardFacts {
        let path = format!("{}/../tests/pki/{name}.pem", env!("CARGO_MANIFEST_DIR"));
        let pem = std::fs::read(path).unwrap();
        CardFacts::of(&CertificateFacts::from_pem(&pem).unwrap())
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// tests/pki/README.md's description of piv-auth.pem, field by field.
    #[test]
    fn piv_authentication_card_of_the_test_pki() {
        assert_eq!(
            facts_of("piv-auth"),
            CardFacts {
                certificate_type: CertificateType::PivAuthentication,
                upns: strings(&["1234567890@mil"]),
                emails: strings(&["jane.doe@example.mil"]),
                uris: strings(&["urn:uuid:3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81"]),
                card_uuid: Some("3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81".into()),
                fascn: Some(Fascn {
                    digits: "99999999999999111234567890112232".into(),
                    agency_code: "9999".into(),
                    system_code: "9999".into(),
                    credential_number: "999999".into(),
                    credential_series: "1".into(),
                    individual_credential_issue: "1".into(),
                    person_identifier: "1234567890".into(),
                    organizational_category: "1".into(),
                    organizational_identifier: "1223".into(),
                    association_category: "2".into(),
                }),
                policy_oids: strings(&["2.16.840.1.101.3.2.1.3.13"]),
                extended_key_usages: strings(&["1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.20.2.2"]),
                public_key: Some(PublicKeyFacts { algorithm: "RSA".into(), curve: None, bits: Some(2048) }),
            }
        );
    }

    #[test]
    fn card_authentication_and_cac_certificates() {
        let card_auth = facts_of("piv-card-auth");
        assert_eq!(card_auth.certificate_type, CertificateType::CardAuthentication);
        assert_eq!(card_auth.upns, Vec::<String>::new());
        assert_eq!(card_auth.card_uuid.as_deref(), Some("3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81"));
        assert_eq!(card_auth.fascn.map(|f| f.person_identifier), Some("1234567890".into()));
        assert_eq!(card_auth.extended_key_usages, strings(&["2.16.840.1.101.3.6.8"]));
        assert_eq!(card_auth.public_key, Some(PublicKeyFacts { algorithm: "EC".into(), curve: Some("P-256".into()), bits: Some(256) }));

        let cac = facts_of("cac");
        assert_eq!(cac.certificate_type, CertificateType::PivAuthentication);
        assert_eq!((cac.upns, cac.card_uuid, cac.fascn), (strings(&["1234567890@mil"]), None, None));
        assert_eq!(cac.policy_oids, strings(&["2.16.840.1.101.2.1.11.42", "2.16.840.1.101.3.2.1.3.13"]));

        // A SPIFFE URI is a URI SAN but no card UUID.
        let service = facts_of("service");
        assert_eq!((service.uris, service.card_uuid), (strings(&["spiffe://certbind.test/ns/default/sa/api"]), None));
    }

    #[test]
    fn json_names_every_fact() {
        let json = serde_json::to_value(facts_of("piv-card-auth")).unwrap();
        assert_eq!(json["certificate_type"], "card_authentication");
        assert_eq!(json["fascn"]["organizational_identifier"], "1223");
        assert_eq!(json["public_key"], serde_json::json!({"algorithm": "EC", "curve": "P-256", "bits": 256}));
        assert_eq!(json["emails"], serde_json::json!([]));
        assert_eq!(json["upns"], serde_json::json!([]));
    }
}
