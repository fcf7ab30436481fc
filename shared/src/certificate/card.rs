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

/// `text` with every byte outside printable ASCII, `%` and `,` percent-encoded.
fn header_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' && byte != b',' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The UUID of the first `urn:uuid:` URI SAN (prefix matched without regard to case, as
/// RFC 4122's URN namespace is).
pub fn card_uuid(facts: &CertificateFacts) -> Option<&str> {
    facts.uris().find_map(|uri| {
        let prefix = uri.get(..UUID_URN.len())?;
        prefix.eq_ignore_ascii_case(UUID_URN).then(|| uri.get(UUID_URN.len()..)).flatten()
    })
}

/// One fact of a card a policy may forward upstream in a header of its own
/// (`forward_card_facts`). Each header name is under the trusted `x-dm-` prefix, so a
/// client's copy is removed from every request like every identity header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardFact {
    Upn,
    Email,
    Uuid,
    Fascn,
    FascnAgency,
    FascnSystem,
    FascnCredential,
    FascnCs,
    FascnIci,
    FascnPi,
    FascnOc,
    FascnOi,
    FascnPoa,
    Policies,
    CertificateType,
}

impl CardFact {
    pub const ALL: [CardFact; 15] = [
        CardFact::Upn,
        CardFact::Email,
        CardFact::Uuid,
        CardFact::Fascn,
        CardFact::FascnAgency,
        CardFact::FascnSystem,
        CardFact::FascnCredential,
        CardFact::FascnCs,
        CardFact::FascnIci,
        CardFact::FascnPi,
        CardFact::FascnOc,
        CardFact::FascnOi,
        CardFact::FascnPoa,
        CardFact::Policies,
        CardFact::CertificateType,
    ];

    /// The name a policy lists it by.
    pub fn name(self) -> &'static str {
        match self {
            CardFact::Upn => "upn",
            CardFact::Email => "email",
            CardFact::Uuid => "uuid",
            CardFact::Fascn => "fascn",
            CardFact::FascnAgency => "fascn_agency",
            CardFact::FascnSystem => "fascn_system",
            CardFact::FascnCredential => "fascn_credential",
            CardFact::FascnCs => "fascn_cs",
            CardFact::FascnIci => "fascn_ici",
            CardFact::FascnPi => "fascn_pi",
            CardFact::FascnOc => "fascn_oc",
            CardFact::FascnOi => "fascn_oi",
            CardFact::FascnPoa => "fascn_poa",
            CardFact::Policies => "policies",
            CardFact::CertificateType => "certificate_type",
        }
    }

    /// The header it is forwarded in (lowercase).
    pub fn header(self) -> &'static str {
        match self {
            CardFact::Upn => "x-dm-smartcard-upn",
            CardFact::Email => "x-dm-smartcard-email",
            CardFact::Uuid => "x-dm-smartcard-uuid",
            CardFact::Fascn => "x-dm-smartcard-fascn",
            CardFact::FascnAgency => "x-dm-smartcard-fascn-agency",
            CardFact::FascnSystem => "x-dm-smartcard-fascn-system",
            CardFact::FascnCredential => "x-dm-smartcard-fascn-credential",
            CardFact::FascnCs => "x-dm-smartcard-fascn-cs",
            CardFact::FascnIci => "x-dm-smartcard-fascn-ici",
            CardFact::FascnPi => "x-dm-smartcard-fascn-pi",
            CardFact::FascnOc => "x-dm-smartcard-fascn-oc",
            CardFact::FascnOi => "x-dm-smartcard-fascn-oi",
            CardFact::FascnPoa => "x-dm-smartcard-fascn-poa",
            CardFact::Policies => "x-dm-smartcard-policies",
            CardFact::CertificateType => "x-dm-smartcard-certificate-type",
        }
    }

    pub fn from_name(name: &str) -> Option<CardFact> {
        CardFact::ALL.into_iter().find(|fact| fact.name() == name)
    }

    /// The fact's value as forwarded, or `None` when the certificate does not carry it (then
    /// the header is not set). Bytes outside printable ASCII and `%` are percent-encoded, as
    /// in every identity header; several UPNs, emails or policies are joined with `,`, a
    /// comma inside one percent-encoded too, so the list splits back.
    pub fn value(self, facts: &CertificateFacts) -> Option<String> {
        let fascn = || facts.fascns().next().and_then(Fascn::from_digits);
        let list = |items: &mut dyn Iterator<Item = &str>| {
            let joined = items.map(header_value).collect::<Vec<_>>().join(",");
            (!joined.is_empty()).then_some(joined)
        };
        match self {
            CardFact::Upn => list(&mut facts.upns()),
            CardFact::Email => list(&mut facts.emails()),
            CardFact::Uuid => card_uuid(facts).map(header_value),
            CardFact::Fascn => facts.fascns().next().map(str::to_owned),
            CardFact::FascnAgency => fascn().map(|f| f.agency_code),
            CardFact::FascnSystem => fascn().map(|f| f.system_code),
            CardFact::FascnCredential => fascn().map(|f| f.credential_number),
            CardFact::FascnCs => fascn().map(|f| f.credential_series),
            CardFact::FascnIci => fascn().map(|f| f.individual_credential_issue),
            CardFact::FascnPi => fascn().map(|f| f.person_identifier),
            CardFact::FascnOc => fascn().map(|f| f.organizational_category),
            CardFact::FascnOi => fascn().map(|f| f.organizational_identifier),
            CardFact::FascnPoa => fascn().map(|f| f.association_category),
            CardFact::Policies => list(&mut facts.policy_oids.iter().map(String::as_str)),
            // Only a certificate seen whole says what it is.
            CardFact::CertificateType => facts.complete.then(|| CertificateType::of(facts).as_str().to_owned()),
        }
    }
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

    #[test]
    fn forwarded_facts_of_the_test_cards() {
        let jane = CertificateFacts::from_pem(&std::fs::read(format!("{}/../tests/pki/piv-auth.pem", env!("CARGO_MANIFEST_DIR"))).unwrap()).unwrap();
        let expected = [
            (CardFact::Upn, Some("1234567890@mil")),
            (CardFact::Email, Some("jane.doe@example.mil")),
            (CardFact::Uuid, Some("3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81")),
            (CardFact::Fascn, Some("99999999999999111234567890112232")),
            (CardFact::FascnAgency, Some("9999")),
            (CardFact::FascnSystem, Some("9999")),
            (CardFact::FascnCredential, Some("999999")),
            (CardFact::FascnCs, Some("1")),
            (CardFact::FascnIci, Some("1")),
            (CardFact::FascnPi, Some("1234567890")),
            (CardFact::FascnOc, Some("1")),
            (CardFact::FascnOi, Some("1223")),
            (CardFact::FascnPoa, Some("2")),
            (CardFact::Policies, Some("2.16.840.1.101.3.2.1.3.13")),
            (CardFact::CertificateType, Some("piv_authentication")),
        ];
        assert_eq!(expected.len(), CardFact::ALL.len());
        for (fact, value) in expected {
            assert_eq!(fact.value(&jane).as_deref(), value, "{}", fact.name());
            assert_eq!(CardFact::from_name(fact.name()), Some(fact));
            assert!(fact.header().starts_with("x-dm-"));
            assert_eq!(fact.header(), format!("x-dm-smartcard-{}", fact.name().replace('_', "-")));
        }
        assert_eq!(CardFact::from_name("FASCN_PI"), None);

        let cac = CertificateFacts::from_pem(&std::fs::read(format!("{}/../tests/pki/cac.pem", env!("CARGO_MANIFEST_DIR"))).unwrap()).unwrap();
        assert_eq!(CardFact::FascnPi.value(&cac), None);
        assert_eq!(CardFact::Uuid.value(&cac), None);
        assert_eq!(CardFact::Email.value(&cac), None);
        assert_eq!(CardFact::Policies.value(&cac).as_deref(), Some("2.16.840.1.101.2.1.11.42,2.16.840.1.101.3.2.1.3.13"));

        let mut odd = cac.clone();
        odd.subject_alt_names = vec![
            super::super::SubjectAltName::Email("\"a,b\"@example.mil".into()),
            super::super::SubjectAltName::Email("c%d@example.mil".into()),
            super::super::SubjectAltName::Email("é\r\n@example.mil".into()),
        ];
        assert_eq!(CardFact::Email.value(&odd).as_deref(), Some("\"a%2Cb\"@example.mil,c%25d@example.mil,%C3%A9%0D%0A@example.mil"));
        odd.complete = false;
        assert_eq!(CardFact::CertificateType.value(&odd), None);
    }
}
