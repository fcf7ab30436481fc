//! Subject alternative names certbind understands.

use der::asn1::ObjectIdentifier;
use der::{Tag, Tagged};
use x509_cert::ext::pkix::name::{GeneralName, OtherName};

use super::fascn::decode_fascn;
use super::CertificateError;

/// otherName type of a Microsoft User Principal Name.
pub const OID_UPN: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2.3");
/// otherName type of a PIV FASC-N (id-PIV-FASC-N).
pub const OID_FASCN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.6.6");

/// One subjectAltName entry. Entries of other types are kept as `Other` with their OID or
/// tag, so that nothing is silently dropped from audit output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectAltName {
    Dns(String),
    Uri(String),
    /// rfc822Name.
    Email(String),
    /// otherName 1.3.6.1.4.1.311.20.2.3 (Microsoft UPN), e.g. `1234567890@mil`.
    Upn(String),
    /// otherName 2.16.840.1.101.3.6.6 (PIV FASC-N) decoded to its digits.
    FascN(String),
    /// Any other entry: an otherName's OID, or the name of the GeneralName choice.
    Other(String),
}

impl SubjectAltName {
    /// Converts one decoded GeneralName. A UPN that is not a UTF8String and a FASC-N that is not
    /// a valid 25-byte OCTET STRING are refused rather than kept as `Other`: an identity-bearing
    /// name that is present but unreadable must not look like an absent one.
    pub fn from_general_name(name: &GeneralName) -> Result<Self, CertificateError> {
        Ok(match name {
            GeneralName::DnsName(v) => SubjectAltName::Dns(v.as_str().to_owned()),
            GeneralName::UniformResourceIdentifier(v) => SubjectAltName::Uri(v.as_str().to_owned()),
            GeneralName::Rfc822Name(v) => SubjectAltName::Email(v.as_str().to_owned()),
            GeneralName::OtherName(other) => from_other_name(other)?,
            GeneralName::DirectoryName(_) => SubjectAltName::Other("directoryName".to_owned()),
            GeneralName::EdiPartyName(_) => SubjectAltName::Other("ediPartyName".to_owned()),
            GeneralName::IpAddress(_) => SubjectAltName::Other("iPAddress".to_owned()),
            GeneralName::RegisteredId(_) => SubjectAltName::Other("registeredID".to_owned()),
        })
    }
}

fn from_other_name(other: &OtherName) -> Result<SubjectAltName, CertificateError> {
    if other.type_id == OID_UPN {
        if other.value.tag() != Tag::Utf8String {
            return Err(CertificateError::Field("UPN otherName is not a UTF8String"));
        }
        let text = std::str::from_utf8(other.value.value())
            .map_err(|_| CertificateError::Field("UPN otherName is not valid UTF-8"))?;
        Ok(SubjectAltName::Upn(text.to_owned()))
    } else if other.type_id == OID_FASCN {
        if other.value.tag() != Tag::OctetString {
            return Err(CertificateError::Field(
                "FASC-N otherName is not an OCTET STRING",
            ));
        }
        Ok(SubjectAltName::FascN(decode_fascn(other.value.value())?))
    } else {
        Ok(SubjectAltName::Other(super::dotted_oid(&other.type_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::fascn::tests::encode_fascn;
    use der::asn1::{Ia5String, OctetString};
    use der::Any;

    fn other(oid: ObjectIdentifier, tag: Tag, value: &[u8]) -> GeneralName {
        GeneralName::OtherName(OtherName {
            type_id: oid,
            value: Any::new(tag, value).unwrap(),
        })
    }

    #[test]
    fn each_choice_maps_to_its_variant() {
        let ia5 = |s: &str| Ia5String::new(s).unwrap();
        let fascn = encode_fascn("99999999999999111234567890112232");
        let cases = vec![
            (
                GeneralName::DnsName(ia5("api.certbind.test")),
                SubjectAltName::Dns("api.certbind.test".into()),
            ),
            (
                GeneralName::UniformResourceIdentifier(ia5(
                    "spiffe://certbind.test/ns/default/sa/api",
                )),
                SubjectAltName::Uri("spiffe://certbind.test/ns/default/sa/api".into()),
            ),
            (
                GeneralName::Rfc822Name(ia5("jane.doe@example.mil")),
                SubjectAltName::Email("jane.doe@example.mil".into()),
            ),
            (
                other(OID_UPN, Tag::Utf8String, b"1234567890@mil"),
                SubjectAltName::Upn("1234567890@mil".into()),
            ),
            (
                other(OID_FASCN, Tag::OctetString, &fascn),
                SubjectAltName::FascN("99999999999999111234567890112232".into()),
            ),
            (
                other(
                    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.8.9"),
                    Tag::Utf8String,
                    b"x",
                ),
                SubjectAltName::Other("1.3.6.1.5.5.7.8.9".into()),
            ),
            (
                GeneralName::IpAddress(OctetString::new([127, 0, 0, 1]).unwrap()),
                SubjectAltName::Other("iPAddress".into()),
            ),
            (
                GeneralName::RegisteredId(ObjectIdentifier::new_unwrap("1.2.3.4")),
                SubjectAltName::Other("registeredID".into()),
            ),
            (
                GeneralName::DirectoryName(Default::default()),
                SubjectAltName::Other("directoryName".into()),
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(SubjectAltName::from_general_name(&name).unwrap(), expected);
        }
    }

    #[test]
    fn unreadable_identity_names_are_refused() {
        let fascn = encode_fascn("99999999999999111234567890112232");
        let mut bad_lrc = fascn;
        // The last two bits are the LRC character's high data bit and its parity bit: flipping
        // both keeps the parity odd and changes the value.
        bad_lrc[24] ^= 0b0000_0011;
        let cases = vec![
            (
                other(OID_UPN, Tag::PrintableString, b"1@mil"),
                "UPN otherName is not a UTF8String",
            ),
            (
                other(OID_UPN, Tag::Utf8String, &[0xff, 0xfe]),
                "UPN otherName is not valid UTF-8",
            ),
            (
                other(OID_FASCN, Tag::Utf8String, &fascn),
                "FASC-N otherName is not an OCTET STRING",
            ),
            (
                other(OID_FASCN, Tag::OctetString, &fascn[..24]),
                "FASC-N is not 25 bytes",
            ),
            (
                other(OID_FASCN, Tag::OctetString, &bad_lrc),
                "FASC-N LRC does not match",
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(
                SubjectAltName::from_general_name(&name),
                Err(CertificateError::Field(expected))
            );
        }
    }
}
