//! Subject alternative names certbind understands.

use der::asn1::ObjectIdentifier;
use der::{Tag, Tagged};
use x509_cert::ext::pkix::name::{GeneralName, OtherName};

use super::borrowed::{TlvReader, WalkError};
use super::fascn::decode_fascn;
use super::CertificateError;
use der::Decode;

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
    /// Length of the text the entry holds.
    pub fn text_len(&self) -> usize {
        match self {
            SubjectAltName::Dns(v)
            | SubjectAltName::Uri(v)
            | SubjectAltName::Email(v)
            | SubjectAltName::Upn(v)
            | SubjectAltName::FascN(v)
            | SubjectAltName::Other(v) => v.len(),
        }
    }

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
    other_name(&other.type_id, other.value.tag(), other.value.value())
}

fn other_name(type_id: &ObjectIdentifier, tag: Tag, value: &[u8]) -> Result<SubjectAltName, CertificateError> {
    if *type_id == OID_UPN {
        if tag != Tag::Utf8String {
            return Err(CertificateError::Field("UPN otherName is not a UTF8String"));
        }
        let text = std::str::from_utf8(value)
            .map_err(|_| CertificateError::Field("UPN otherName is not valid UTF-8"))?;
        Ok(SubjectAltName::Upn(text.to_owned()))
    } else if *type_id == OID_FASCN {
        if tag != Tag::OctetString {
            return Err(CertificateError::Field(
                "FASC-N otherName is not an OCTET STRING",
            ));
        }
        Ok(SubjectAltName::FascN(decode_fascn(value)?))
    } else {
        Ok(SubjectAltName::Other(super::dotted_oid(type_id)))
    }
}

/// The names of a subjectAltName extension's value (`GeneralNames`), read over the bytes.
/// The four kinds PIV, CAC and service certificates carry — otherName, rfc822Name, dNSName
/// and URI — are walked here with x509-cert's rules (an IA5String is ASCII; an otherName is
/// an OID and one `[0] EXPLICIT` value, nothing more); every other kind is handed, as its own
/// TLV, to x509-cert's `GeneralName` decoder.
pub(crate) fn subject_alt_names(value: &[u8]) -> Result<Vec<SubjectAltName>, CertificateError> {
    let structure = |e: WalkError| CertificateError::Der(format!("subjectAltName extension: {}", e.problem));
    let mut outer = TlvReader::new(value, "subjectAltName");
    let list = outer.expect(Tag::Sequence, "GeneralNames").map_err(structure)?;
    outer.finish().map_err(structure)?;
    let mut names = TlvReader::new(list.value, "subjectAltName");
    let mut out = Vec::with_capacity(4);
    while !names.is_empty() {
        let name = names.next().map_err(structure)?;
        let ia5 = |kind: fn(String) -> SubjectAltName| {
            if name.value.is_ascii() {
                std::str::from_utf8(name.value).map(|text| kind(text.to_owned())).map_err(|_| ())
            } else {
                Err(())
            }
        };
        let invalid = |what: &str| CertificateError::Der(format!("subjectAltName extension: invalid {what}"));
        out.push(match name.encoded.first() {
            Some(0x81) => ia5(SubjectAltName::Email).map_err(|()| invalid("rfc822Name"))?,
            Some(0x82) => ia5(SubjectAltName::Dns).map_err(|()| invalid("dNSName"))?,
            Some(0x86) => ia5(SubjectAltName::Uri).map_err(|()| invalid("uniformResourceIdentifier"))?,
            Some(0xa0) => {
                let mut fields = TlvReader::new(name.value, "otherName");
                let type_id = fields.oid("type-id").map_err(structure)?;
                let wrapper = fields.next().map_err(structure)?;
                fields.finish().map_err(structure)?;
                if wrapper.encoded.first() != Some(&0xa0) {
                    return Err(invalid("otherName value"));
                }
                let value = TlvReader::single(wrapper.value, "otherName").map_err(structure)?;
                other_name(&type_id, value.tag, value.value)?
            }
            _ => {
                let general = GeneralName::from_der(name.encoded)
                    .map_err(|e| CertificateError::Der(format!("subjectAltName extension: {e}")))?;
                SubjectAltName::from_general_name(&general)?
            }
        });
    }
    Ok(out)
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
