//! Distinguished names for people to read: the API's answers and the identity headers.
//!
//! The matching form ([`super::format`]) writes every type without an RFC 4514 short name as a
//! dotted OID and `#hex`, since only then does a name typed by an admin compare byte for byte
//! with the one read from a certificate. The display form names the types PIV and CAC
//! certificates carry (`serialNumber`, `emailAddress`, …) and writes their value as text when
//! the text parses back to the very same DER; otherwise it keeps `#hex`. Either way
//! [`super::canonical_dn`] of the display form is the matching form, so a DN copied from an
//! answer into a request finds what it names. The display form is never compared.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Encode, Tagged};

use super::format::{escape_value, short_name, string_tag, string_value};
use crate::certificate::push_dotted_oid;
use crate::encoding::hex_lower;

/// Names for types RFC 4514 gives no short name to, as RFC 4519 and PKCS #9 spell them; each
/// is one the text parser reads back.
const DISPLAY_NAMES: [(ObjectIdentifier, &str); 13] = [
    (ObjectIdentifier::new_unwrap("2.5.4.4"), "surname"),
    (ObjectIdentifier::new_unwrap("2.5.4.5"), "serialNumber"),
    (ObjectIdentifier::new_unwrap("2.5.4.12"), "title"),
    (ObjectIdentifier::new_unwrap("2.5.4.13"), "description"),
    (ObjectIdentifier::new_unwrap("2.5.4.15"), "businessCategory"),
    (ObjectIdentifier::new_unwrap("2.5.4.17"), "postalCode"),
    (ObjectIdentifier::new_unwrap("2.5.4.42"), "givenName"),
    (ObjectIdentifier::new_unwrap("2.5.4.43"), "initials"),
    (ObjectIdentifier::new_unwrap("2.5.4.44"), "generationQualifier"),
    (ObjectIdentifier::new_unwrap("2.5.4.46"), "dnQualifier"),
    (ObjectIdentifier::new_unwrap("2.5.4.65"), "pseudonym"),
    (ObjectIdentifier::new_unwrap("2.5.4.97"), "organizationIdentifier"),
    (ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1"), "emailAddress"),
];

fn display_name(oid: &ObjectIdentifier) -> Option<&'static str> {
    DISPLAY_NAMES.iter().find(|(known, _)| known == oid).map(|(_, name)| *name)
}

/// Appends one `type=value` in the display form.
pub(super) fn push_attribute(oid: &ObjectIdentifier, value: AnyRef<'_>, out: &mut String) -> Result<(), der::Error> {
    if let Some(name) = short_name(oid) {
        // The matching form already names it; the display form is the same.
        out.push_str(name);
        out.push('=');
        match string_value(value) {
            Some(text) => escape_value(&text, out),
            None => push_hex(value, out)?,
        }
        return Ok(());
    }
    match display_name(oid) {
        Some(name) => out.push_str(name),
        None => push_dotted_oid(oid, out),
    }
    out.push('=');
    // As text only when the parser would choose this very string type for it: the matching
    // form keeps the type in its `#hex`, and the display form must read back to it.
    let text = display_name(oid)
        .and_then(|_| string_value(value))
        .filter(|text| string_tag(oid, text) == value.tag());
    match text {
        Some(text) => escape_value(&text, out),
        None => push_hex(value, out)?,
    }
    Ok(())
}

fn push_hex(value: AnyRef<'_>, out: &mut String) -> Result<(), der::Error> {
    out.push('#');
    out.push_str(&hex_lower(&value.to_der()?));
    Ok(())
}
