//! Distinguished names as RFC 4514 text.
//!
//! The RDNSequence is written most specific first (the reverse of its encoded order), RDNs
//! separated by `,` and the attributes of a multi-valued RDN by `+`. Attribute types RFC 4514
//! names get their short name; any other type is written as its dotted OID with the value as
//! `#` and the hex of its DER encoding, as RFC 4514 section 2.4 prescribes for types without a
//! string form. A named type whose value is not a string keeps its name and gets the `#hex`
//! value.

use der::asn1::{AnyRef, ObjectIdentifier};
use std::borrow::Cow;
use der::{Encode, Tag, Tagged};

use super::borrowed::NameRef;
use super::CertificateError;
use crate::encoding::hex_lower;

/// The attribute types RFC 4514 section 3 gives short names to.
const SHORT_NAMES: [(ObjectIdentifier, &str); 9] = [
    (ObjectIdentifier::new_unwrap("2.5.4.3"), "CN"),
    (ObjectIdentifier::new_unwrap("2.5.4.7"), "L"),
    (ObjectIdentifier::new_unwrap("2.5.4.8"), "ST"),
    (ObjectIdentifier::new_unwrap("2.5.4.10"), "O"),
    (ObjectIdentifier::new_unwrap("2.5.4.11"), "OU"),
    (ObjectIdentifier::new_unwrap("2.5.4.6"), "C"),
    (ObjectIdentifier::new_unwrap("2.5.4.9"), "STREET"),
    (
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25"),
        "DC",
    ),
    (
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1"),
        "UID",
    ),
];

fn short_name(oid: &ObjectIdentifier) -> Option<&'static str> {
    SHORT_NAMES
        .iter()
        .find(|(known, _)| known == oid)
        .map(|(_, name)| *name)
}

/// Renders `name` as an RFC 4514 string. An empty name renders as the empty string.
pub(crate) fn format_name(name: &NameRef<'_>) -> Result<String, CertificateError> {
    let mut out = String::with_capacity(name.value_bytes() + 8 * name.attribute_count());
    for (index, rdn) in name.rdns_most_specific_first().enumerate() {
        if index > 0 {
            out.push(',');
        }
        for (position, attribute) in rdn.iter().enumerate() {
            if position > 0 {
                out.push('+');
            }
            let name = short_name(&attribute.oid);
            match name {
                Some(name) => out.push_str(name),
                None => super::push_dotted_oid(&attribute.oid, &mut out),
            }
            out.push('=');
            let text = name.and_then(|_| string_value(attribute.value));
            match text {
                Some(text) => escape_value(&text, &mut out),
                None => {
                    let der = attribute.value.to_der().map_err(|_| {
                        CertificateError::Field("name attribute value does not re-encode")
                    })?;
                    out.push('#');
                    out.push_str(&hex_lower(&der));
                }
            }
        }
    }
    Ok(out)
}

/// The text of a directory string value, or `None` when it is of a type (or content) that has
/// no faithful text form here; the caller then writes it as `#hex`.
fn string_value(value: AnyRef<'_>) -> Option<Cow<'_, str>> {
    let bytes = value.value();
    match value.tag() {
        Tag::Utf8String => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
        // These are ASCII subsets; a CA that put a stray character in a PrintableString still
        // gets its text shown, as long as it is ASCII.
        Tag::PrintableString | Tag::Ia5String | Tag::VisibleString | Tag::NumericString => {
            if bytes.is_ascii() {
                std::str::from_utf8(bytes).ok().map(Cow::Borrowed)
            } else {
                None
            }
        }
        Tag::BmpString => {
            let pairs = bytes.chunks_exact(2);
            if !pairs.remainder().is_empty() {
                return None;
            }
            let units = pairs.map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
                .map(Cow::Owned)
        }
        _ => None,
    }
}

/// Appends `value` with RFC 4514 section 2.4 escaping. Control characters are hex-escaped too,
/// so that a name can never break the header line it is put on.
fn escape_value(value: &str, out: &mut String) {
    // Most values need no escaping at all: printable ASCII without a special character, and
    // no space or `#` where position matters.
    let bytes = value.as_bytes();
    let plain = bytes.iter().all(|b| matches!(b, 0x20..=0x7e) && !b"\"+,;<>\\".contains(b))
        && bytes.first().is_none_or(|b| *b != b' ' && *b != b'#')
        && bytes.last().is_none_or(|b| *b != b' ');
    if plain {
        out.push_str(value);
        return;
    }
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if index == 0 || index == last => out.push_str("\\ "),
            '#' if index == 0 => out.push_str("\\#"),
            c if c.is_control() => {
                let mut buffer = [0u8; 4];
                for byte in c.encode_utf8(&mut buffer).bytes() {
                    out.push('\\');
                    out.push_str(&hex_lower(&[byte]));
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Any;
    use std::str::FromStr;
    use x509_cert::attr::AttributeTypeAndValue;
    use x509_cert::name::{Name, RelativeDistinguishedName};

    /// Built with x509-cert's owned types, encoded, read back through the borrowed view.
    fn render(name: &Name) -> String {
        let der = name.to_der().unwrap();
        format_name(&NameRef::from_der(&der).unwrap()).unwrap()
    }

    fn attribute(oid: &str, tag: Tag, value: &[u8]) -> AttributeTypeAndValue {
        AttributeTypeAndValue {
            oid: ObjectIdentifier::new_unwrap(oid),
            value: Any::new(tag, value).unwrap(),
        }
    }

    /// One RDN per attribute, given in encoded (least specific first) order.
    fn name_of(attributes: Vec<AttributeTypeAndValue>) -> Name {
        Name::from(
            attributes
                .into_iter()
                .map(|a| RelativeDistinguishedName::try_from(vec![a]).unwrap())
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn cac_subject_renders_most_specific_first() {
        // The DER of `C=US,O=U.S. Government,OU=DoD,OU=PKI,OU=USA,CN=LAST.FIRST.MI.1234567890`
        // in encoded order, built from its parts.
        let name = name_of(vec![
            attribute("2.5.4.6", Tag::PrintableString, b"US"),
            attribute("2.5.4.10", Tag::PrintableString, b"U.S. Government"),
            attribute("2.5.4.11", Tag::PrintableString, b"DoD"),
            attribute("2.5.4.11", Tag::PrintableString, b"PKI"),
            attribute("2.5.4.11", Tag::PrintableString, b"USA"),
            attribute("2.5.4.3", Tag::PrintableString, b"LAST.FIRST.MI.1234567890"),
        ]);
        assert_eq!(
            render(&name),
            "CN=LAST.FIRST.MI.1234567890,OU=USA,OU=PKI,OU=DoD,O=U.S. Government,C=US"
        );
    }

    #[test]
    fn special_characters_are_escaped() {
        let cases: [(&[u8], &str); 9] = [
            (b"Doe, Jane", "CN=Doe\\, Jane"),
            (b"a+b", "CN=a\\+b"),
            (b"\"quoted\"", "CN=\\\"quoted\\\""),
            (b"x;y<z>", "CN=x\\;y\\<z\\>"),
            (b"back\\slash", "CN=back\\\\slash"),
            (b" lead and trail ", "CN=\\ lead and trail\\ "),
            (b"#hash#", "CN=\\#hash#"),
            (b"line\r\nbreak\x00", "CN=line\\0d\\0abreak\\00"),
            (b"a=b", "CN=a=b"),
        ];
        for (value, expected) in cases {
            let name = name_of(vec![attribute("2.5.4.3", Tag::Utf8String, value)]);
            assert_eq!(render(&name), expected);
        }
    }

    #[test]
    fn unknown_types_and_non_string_values_render_as_hex() {
        let name = name_of(vec![
            attribute("1.2.840.113549.1.9.1", Tag::Ia5String, b"a@b.mil"),
            attribute("2.5.4.5", Tag::PrintableString, b"1234"),
            attribute("2.5.4.3", Tag::OctetString, &[0xde, 0xad]),
            attribute("2.5.4.3", Tag::PrintableString, &[0xff]),
        ]);
        assert_eq!(
            render(&name),
            "CN=#1301ff,CN=#0402dead,2.5.4.5=#130431323334,\
             1.2.840.113549.1.9.1=#16076140622e6d696c"
        );
    }

    #[test]
    fn multi_valued_rdns_join_with_plus_and_bmp_strings_decode() {
        let multi = RelativeDistinguishedName::try_from(vec![
            attribute("2.5.4.3", Tag::BmpString, &[0x00, b'J', 0x00, 0xe9]),
            attribute("0.9.2342.19200300.100.1.1", Tag::Utf8String, b"jroe"),
        ])
        .unwrap();
        let country = RelativeDistinguishedName::try_from(vec![attribute(
            "2.5.4.6",
            Tag::PrintableString,
            b"US",
        )])
        .unwrap();
        let name = Name::from(vec![country, multi]);
        // DER orders the SET by encoding; CN's shorter encoding sorts first.
        assert_eq!(render(&name), "CN=J\u{e9}+UID=jroe,C=US");
        assert_eq!(render(&Name::default()), "");
    }

    #[test]
    fn parses_what_x509_cert_builds_from_text() {
        let name = Name::from_str("CN=Jane Q. Doe,OU=People,O=U.S. Government,C=US").unwrap();
        let der = name.to_der().unwrap();
        assert_eq!(
            format_name(&NameRef::from_der(&der).unwrap()).unwrap(),
            "CN=Jane Q. Doe,OU=People,O=U.S. Government,C=US"
        );
    }
}
