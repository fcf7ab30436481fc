//! Distinguished names rendered as RFC 4514 text from a certificate's DER.
//!
//! The RDNSequence is written most specific first (the reverse of its encoded order), RDNs
//! separated by `,` and the attributes of a multi-valued RDN by `+`. Attribute types RFC 4514
//! names get their short name; any other type is written as its dotted OID with the value as
//! `#` and the hex of its DER encoding, as RFC 4514 section 2.4 prescribes for types without a
//! string form. A named type whose value is not a string keeps its name and gets the `#hex`
//! value.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Encode, Tag, Tagged};
use std::borrow::Cow;

use crate::certificate::borrowed::NameRef;
use crate::certificate::{push_dotted_oid, CertificateError};
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

pub(super) const OID_EMAIL_ADDRESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1");
pub(super) const OID_DOMAIN_COMPONENT: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25");

pub(super) fn short_name(oid: &ObjectIdentifier) -> Option<&'static str> {
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
                None => push_dotted_oid(&attribute.oid, &mut out),
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
pub(super) fn string_value(value: AnyRef<'_>) -> Option<Cow<'_, str>> {
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
pub(super) fn escape_value(value: &str, out: &mut String) {
    // Most values need no escaping at all: printable ASCII without a special character, and
    // no space or `#` where position matters.
    let bytes = value.as_bytes();
    let plain = bytes
        .iter()
        .all(|b| matches!(b, 0x20..=0x7e) && !b"\"+,;<>\\".contains(b))
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

/// The string type a CA most likely chose for a value given as text.
pub(super) fn string_tag(oid: &ObjectIdentifier, value: &str) -> Tag {
    let printable = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b));
    if (*oid == OID_EMAIL_ADDRESS || *oid == OID_DOMAIN_COMPONENT) && value.is_ascii() {
        Tag::Ia5String
    } else if printable {
        Tag::PrintableString
    } else {
        Tag::Utf8String
    }
}
