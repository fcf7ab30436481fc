//! Distinguished names as RFC 4514 text.
//!
//! The RDNSequence is written most specific first (the reverse of its encoded order), RDNs
//! separated by `,` and the attributes of a multi-valued RDN by `+`. Attribute types RFC 4514
//! names get their short name; any other type is written as its dotted OID with the value as
//! `#` and the hex of its DER encoding, as RFC 4514 section 2.4 prescribes for types without a
//! string form. A named type whose value is not a string keeps its name and gets the `#hex`
//! value.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Encode, Tag, Tagged};
use std::borrow::Cow;

use super::borrowed::NameRef;
use super::CertificateError;
use crate::encoding::{hex_lower, hex_value};

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

/// Longest DN text [`canonical_dn`] reads: far above any real DN (see `MAX_DN_BYTES` in the
/// control plane), small enough that parsing is cheap whatever a caller sends.
pub const MAX_DN_TEXT_BYTES: usize = 4096;

/// Most attributes [`canonical_dn`] accepts in one DN.
pub const MAX_DN_ATTRIBUTES: usize = 64;

/// Why a DN text could not be read: where (a byte offset into the text) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnTextError {
    pub at: usize,
    pub problem: &'static str,
}

impl std::fmt::Display for DnTextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at byte {})", self.problem, self.at)
    }
}

impl std::error::Error for DnTextError {}

fn dn_error(at: usize, problem: &'static str) -> DnTextError {
    DnTextError { at, problem }
}

/// Attribute type names people write, upper case, and their OIDs: RFC 4514's and RFC 4519's
/// names, their long forms, and the spellings of OpenSSL (`emailAddress`) and Windows (`E`,
/// `S`).
const TYPE_KEYWORDS: [(&str, &str); 37] = [
    ("CN", "2.5.4.3"),
    ("COMMONNAME", "2.5.4.3"),
    ("L", "2.5.4.7"),
    ("LOCALITYNAME", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("S", "2.5.4.8"),
    ("STATEORPROVINCENAME", "2.5.4.8"),
    ("O", "2.5.4.10"),
    ("ORGANIZATIONNAME", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("ORGANIZATIONALUNITNAME", "2.5.4.11"),
    ("C", "2.5.4.6"),
    ("COUNTRYNAME", "2.5.4.6"),
    ("STREET", "2.5.4.9"),
    ("STREETADDRESS", "2.5.4.9"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("DOMAINCOMPONENT", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("USERID", "0.9.2342.19200300.100.1.1"),
    ("SN", "2.5.4.4"),
    ("SURNAME", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("T", "2.5.4.12"),
    ("TITLE", "2.5.4.12"),
    ("DESCRIPTION", "2.5.4.13"),
    ("BUSINESSCATEGORY", "2.5.4.15"),
    ("POSTALCODE", "2.5.4.17"),
    ("GN", "2.5.4.42"),
    ("GIVENNAME", "2.5.4.42"),
    ("INITIALS", "2.5.4.43"),
    ("GENERATIONQUALIFIER", "2.5.4.44"),
    ("DNQUALIFIER", "2.5.4.46"),
    ("PSEUDONYM", "2.5.4.65"),
    ("ORGANIZATIONIDENTIFIER", "2.5.4.97"),
    ("E", "1.2.840.113549.1.9.1"),
    ("EMAIL", "1.2.840.113549.1.9.1"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
];

const OID_EMAIL_ADDRESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1");
const OID_DOMAIN_COMPONENT: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25");
const OID_COUNTRY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");

/// One `type=value` of a DN text, as written: byte ranges into the text.
#[derive(Debug, Clone, Copy)]
struct RawAttribute {
    start: usize,
    equals: usize,
    end: usize,
}

/// A distinguished name read from text by [`parse_dn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnText {
    /// Each RDN rendered, most specific first.
    rdns: Vec<String>,
    country_first: bool,
}

impl DnText {
    /// The name as [`format_name`] renders it from a certificate.
    pub fn canonical(&self) -> String {
        self.rdns.join(",")
    }

    /// The same RDNs in the opposite order: what was meant if the text was written least
    /// specific first.
    pub fn reversed(&self) -> String {
        let mut rdns = self.rdns.clone();
        rdns.reverse();
        rdns.join(",")
    }

    /// A comma list whose most specific RDN is a lone country or domain component while the
    /// least specific is not: the order of OpenSSL's default output (`C = US, O = Example,
    /// CN = Jane`), which RFC 4514 reverses. Few CAs encode names so; a caller that cannot
    /// tell should ask which was meant rather than guess. (The slash form states its order,
    /// so it can name such a CA unambiguously: `/CN=Jane/O=Example/C=US`.)
    pub fn country_first(&self) -> bool {
        self.country_first
    }
}

/// [`parse_dn`]'s canonical rendering. A rendering longer than [`MAX_DN_TEXT_BYTES`] is
/// refused: names given by short keyword (`E=`) render as dotted OIDs and `#` hex, several
/// times longer, and what this returns must read back as itself.
pub fn canonical_dn(text: &str) -> Result<String, DnTextError> {
    let rendered = parse_dn(text)?.canonical();
    if rendered.len() > MAX_DN_TEXT_BYTES {
        return Err(dn_error(text.len(), "the DN's canonical form is longer than 4096 bytes"));
    }
    Ok(rendered)
}

/// Parses a distinguished name as people write it, so that [`DnText::canonical`] renders it
/// exactly as [`format_name`] renders the same name from a certificate's DER: a DN typed into
/// the control plane then compares byte for byte with the one the filter reads.
///
/// Tolerated beyond strict RFC 4514: spaces around `=`, `,` and `+`; attribute types in any
/// case, by long name (`commonName`), OpenSSL's and Windows' names (`emailAddress`, `E`, `S`),
/// as dotted OIDs with or without an `OID.` prefix; `;` between RDNs; legacy quoted values
/// (`O="Example, Inc."`); `\XX` and `\c` escapes anywhere; values given as `#` and their
/// BER/DER hex; OpenSSL's slash form (`/C=US/O=Example/CN=Jane`), which names the least
/// specific RDN first and is turned around. A comma list is taken in RFC 4514 order, most
/// specific first, as written ([`DnText::country_first`] flags one that looks reversed).
///
/// Values of types without a short name are rendered as `#` and hex of a DER string: an
/// IA5String for `emailAddress` and `DC`, else a PrintableString when the text fits one and a
/// UTF8String otherwise. A certificate whose CA chose another string type renders differently;
/// give such a value as `#hex` (what the filter reports in its issuer header) to match it.
/// The attributes of a multi-valued RDN are put in DER's order, as a certificate holds them.
pub fn parse_dn(text: &str) -> Result<DnText, DnTextError> {
    if text.len() > MAX_DN_TEXT_BYTES {
        return Err(dn_error(
            MAX_DN_TEXT_BYTES,
            "the DN is longer than 4096 bytes",
        ));
    }
    let bytes = text.as_bytes();
    let first = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    if first == bytes.len() {
        return Err(dn_error(0, "the DN is empty"));
    }
    let slash_form = bytes.get(first) == Some(&b'/');
    let rdns = split_rdns(text, if slash_form { first + 1 } else { first }, slash_form)?;
    let attribute_count: usize = rdns.iter().map(Vec::len).sum();
    if attribute_count > MAX_DN_ATTRIBUTES {
        return Err(dn_error(0, "the DN has more than 64 attributes"));
    }
    let mut parsed = Vec::with_capacity(rdns.len());
    for rdn in &rdns {
        let mut attributes = Vec::with_capacity(rdn.len());
        for raw in rdn {
            attributes.push(parse_attribute(text, *raw)?);
        }
        parsed.push(attributes);
    }
    if slash_form {
        parsed.reverse();
    }
    // The slash form says its order; only a comma list can be in the wrong one.
    let country_first = !slash_form && looks_least_specific_first(&parsed);
    let rendered = parsed
        .iter_mut()
        .map(|rdn| {
            // DER orders a SET OF by the encodings, shorter ones padded with zeros.
            rdn.sort_by(|a, b| compare_set_members(&a.der, &b.der));
            let parts: Vec<&str> = rdn.iter().map(|a| a.rendered.as_str()).collect();
            parts.join("+")
        })
        .collect();
    Ok(DnText {
        rdns: rendered,
        country_first,
    })
}

/// A parsed attribute: its RFC 4514 rendering and its DER `AttributeTypeAndValue`.
#[derive(Debug, Clone)]
struct ParsedAttribute {
    oid: ObjectIdentifier,
    rendered: String,
    der: Vec<u8>,
}

fn looks_least_specific_first(rdns: &[Vec<ParsedAttribute>]) -> bool {
    let is_top = |rdn: &Vec<ParsedAttribute>| {
        rdn.len() == 1
            && rdn
                .iter()
                .all(|a| a.oid == OID_COUNTRY || a.oid == OID_DOMAIN_COMPONENT)
    };
    rdns.len() >= 2 && rdns.first().is_some_and(is_top) && !rdns.last().is_some_and(is_top)
}

fn compare_set_members(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let len = a.len().max(b.len());
    let padded = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    (0..len)
        .map(|i| padded(a, i).cmp(&padded(b, i)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Splits the text from `start` into RDNs of attributes, honouring escapes and quotes.
fn split_rdns(
    text: &str,
    start: usize,
    slash_form: bool,
) -> Result<Vec<Vec<RawAttribute>>, DnTextError> {
    let bytes = text.as_bytes();
    let mut rdns: Vec<Vec<RawAttribute>> = Vec::new();
    let mut rdn: Vec<RawAttribute> = Vec::new();
    let mut attribute_start = start;
    let mut equals: Option<usize> = None;
    let mut in_quotes = false;
    // Only a value's first non-space character opens a quoted value.
    let mut at_value_start = false;
    let mut i = start;
    let finish = |rdn: &mut Vec<RawAttribute>,
                  attribute_start: usize,
                  equals: Option<usize>,
                  end: usize|
     -> Result<(), DnTextError> {
        let equals = equals.ok_or(dn_error(attribute_start, "an attribute has no `=`"))?;
        rdn.push(RawAttribute {
            start: attribute_start,
            equals,
            end,
        });
        Ok(())
    };
    while i < bytes.len() {
        let byte = bytes.get(i).copied().unwrap_or(0);
        if byte == b'\\' {
            if i + 1 >= bytes.len() {
                return Err(dn_error(i, "the DN ends inside an escape"));
            }
            at_value_start = false;
            i += 2;
            continue;
        }
        if in_quotes {
            if byte == b'"' {
                in_quotes = false;
            }
            i += 1;
            continue;
        }
        if at_value_start && byte != b' ' && byte != b'\t' {
            at_value_start = false;
            if byte == b'"' {
                in_quotes = true;
                i += 1;
                continue;
            }
        }
        match byte {
            b'=' if equals.is_none() => {
                equals = Some(i);
                at_value_start = true;
            }
            b'+' => {
                finish(&mut rdn, attribute_start, equals, i)?;
                attribute_start = i + 1;
                equals = None;
            }
            b',' | b';' if !slash_form => {
                finish(&mut rdn, attribute_start, equals, i)?;
                rdns.push(std::mem::take(&mut rdn));
                attribute_start = i + 1;
                equals = None;
            }
            b'/' if slash_form => {
                finish(&mut rdn, attribute_start, equals, i)?;
                rdns.push(std::mem::take(&mut rdn));
                attribute_start = i + 1;
                equals = None;
            }
            _ => {}
        }
        i += 1;
    }
    if in_quotes {
        return Err(dn_error(bytes.len(), "a quoted value is not closed"));
    }
    finish(&mut rdn, attribute_start, equals, bytes.len())?;
    rdns.push(rdn);
    Ok(rdns)
}

fn parse_attribute(text: &str, raw: RawAttribute) -> Result<ParsedAttribute, DnTextError> {
    let type_text = text
        .get(raw.start..raw.equals)
        .ok_or(dn_error(raw.start, "an attribute type is not text"))?;
    let oid = attribute_type(type_text, raw.start)?;
    let value_start = raw.equals + 1;
    let value = decode_value(text, value_start, raw.end)?;
    let name = short_name(&oid);
    let (rendered_value, value_der) = match value {
        Value::Der(der) => {
            let any = AnyRef::from_der(&der)
                .map_err(|_| dn_error(value_start, "a `#` value is not one DER element"))?;
            let canonical = any
                .to_der()
                .map_err(|_| dn_error(value_start, "a `#` value does not re-encode"))?;
            let mut rendered = String::new();
            match name.and_then(|_| string_value(any)) {
                Some(text) => escape_value(&text, &mut rendered),
                None => {
                    rendered.push('#');
                    rendered.push_str(&hex_lower(&canonical));
                }
            }
            (rendered, canonical)
        }
        Value::Text(value) => {
            let der = AnyRef::new(string_tag(&oid, &value), value.as_bytes())
                .and_then(|any| any.to_der())
                .map_err(|_| dn_error(value_start, "a value is too long"))?;
            let mut rendered = String::new();
            if name.is_some() {
                escape_value(&value, &mut rendered);
            } else {
                rendered.push('#');
                rendered.push_str(&hex_lower(&der));
            }
            (rendered, der)
        }
    };
    let mut rendered = String::with_capacity(rendered_value.len() + 8);
    match name {
        Some(name) => rendered.push_str(name),
        None => super::push_dotted_oid(&oid, &mut rendered),
    }
    rendered.push('=');
    rendered.push_str(&rendered_value);
    let der =
        attribute_der(&oid, &value_der).ok_or(dn_error(raw.start, "an attribute is too long"))?;
    Ok(ParsedAttribute { oid, rendered, der })
}

/// The DER of `SEQUENCE { type, value }`, by which a multi-valued RDN is ordered.
fn attribute_der(oid: &ObjectIdentifier, value_der: &[u8]) -> Option<Vec<u8>> {
    let oid_der = AnyRef::new(Tag::ObjectIdentifier, oid.as_bytes())
        .and_then(|a| a.to_der())
        .ok()?;
    let mut content = oid_der;
    content.extend_from_slice(value_der);
    AnyRef::new(Tag::Sequence, &content)
        .and_then(|a| a.to_der())
        .ok()
}

/// The string type a CA most likely chose for a value given as text.
fn string_tag(oid: &ObjectIdentifier, value: &str) -> Tag {
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

fn attribute_type(text: &str, at: usize) -> Result<ObjectIdentifier, DnTextError> {
    let offset = text.len() - text.trim_start().len();
    let at = at + offset;
    let name = text.trim();
    if name.is_empty() {
        return Err(dn_error(at, "an attribute type is empty"));
    }
    let dotted = name
        .get(..4)
        .filter(|prefix| prefix.eq_ignore_ascii_case("oid."))
        .and_then(|_| name.get(4..))
        .unwrap_or(name);
    if dotted.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        if !dotted.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(dn_error(at, "an attribute type is not a dotted OID"));
        }
        // No leading zeros in an arc (two spellings of one OID would render alike but hide a
        // typo), and every arc within 32 bits (`ObjectIdentifier::new` does not check).
        if dotted.split('.').any(|arc| {
            arc.is_empty() || (arc.len() > 1 && arc.starts_with('0')) || arc.parse::<u32>().is_err()
        }) {
            return Err(dn_error(at, "an attribute type is not a dotted OID"));
        }
        return ObjectIdentifier::new(dotted)
            .map_err(|_| dn_error(at, "an attribute type is not a valid OID"));
    }
    TYPE_KEYWORDS
        .iter()
        .find(|(keyword, _)| keyword.eq_ignore_ascii_case(name))
        .and_then(|(_, oid)| ObjectIdentifier::new(oid).ok())
        .ok_or(dn_error(
            at,
            "an attribute type is not one this parser knows; give it as a dotted OID",
        ))
}

enum Value {
    /// A string value, unescaped.
    Text(String),
    /// A `#hex` value: the BER/DER of the value.
    Der(Vec<u8>),
}

/// Reads the value between `start` and `end`: leading and trailing spaces that are not
/// escaped are dropped; `\XX` is a byte, `\c` the character `c`.
fn decode_value(text: &str, start: usize, end: usize) -> Result<Value, DnTextError> {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < end && bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
        i += 1;
    }
    if bytes.get(i) == Some(&b'#') && i < end {
        let hex = text
            .get(i + 1..end)
            .ok_or(dn_error(i, "a `#` value is not hex"))?
            .trim_end();
        if hex.is_empty() || hex.len() % 2 != 0 {
            return Err(dn_error(
                i,
                "a `#` value needs an even number of hex digits",
            ));
        }
        let mut der = Vec::with_capacity(hex.len() / 2);
        for pair in hex.as_bytes().chunks_exact(2) {
            match (
                pair.first().copied().and_then(hex_value),
                pair.get(1).copied().and_then(hex_value),
            ) {
                (Some(high), Some(low)) => der.push(high << 4 | low),
                _ => return Err(dn_error(i, "a `#` value is not hex")),
            }
        }
        return Ok(Value::Der(der));
    }
    let mut out: Vec<u8> = Vec::with_capacity(end.saturating_sub(i));
    // Bytes up to here are kept even if spaces: they were escaped or inside quotes.
    let mut kept = 0;
    let mut quoted = false;
    if bytes.get(i) == Some(&b'"') && i < end {
        quoted = true;
        i += 1;
    }
    while i < end {
        let byte = bytes.get(i).copied().unwrap_or(0);
        match byte {
            b'\\' => {
                let next = bytes.get(i + 1).copied().filter(|_| i + 1 < end);
                let next = next.ok_or(dn_error(i, "the value ends inside an escape"))?;
                match (
                    hex_value(next),
                    bytes
                        .get(i + 2)
                        .copied()
                        .filter(|_| i + 2 < end)
                        .and_then(hex_value),
                ) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 3;
                    }
                    _ if next.is_ascii() && !next.is_ascii_alphanumeric() => {
                        out.push(next);
                        i += 2;
                    }
                    _ => {
                        return Err(dn_error(
                            i,
                            "`\\` must be followed by two hex digits or a special character",
                        ))
                    }
                }
                kept = out.len();
            }
            b'"' if quoted => {
                let rest = text.get(i + 1..end).unwrap_or("");
                if !rest.trim().is_empty() {
                    return Err(dn_error(i + 1, "text after a quoted value"));
                }
                kept = out.len();
                break;
            }
            _ => {
                out.push(byte);
                if quoted || byte != b' ' && byte != b'\t' {
                    kept = out.len();
                }
                i += 1;
            }
        }
    }
    out.truncate(kept);
    String::from_utf8(out)
        .map(Value::Text)
        .map_err(|_| dn_error(start, "a value is not UTF-8 once unescaped"))
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

    // ---- the text parser ----

    /// Escapes `value` for RFC 4514 text the way a person might: specials and edge spaces.
    fn escape_for_text(value: &str) -> String {
        let mut out = String::new();
        escape_value(value, &mut out);
        out
    }

    /// Every byte as `\XX`.
    fn escape_every_byte(value: &str) -> String {
        value.bytes().map(|b| format!("\\{b:02X}")).collect()
    }

    /// The attributes of a name in encoded order: (dotted OID, value text or `#hex`).
    fn attributes_of(name: &Name) -> Vec<Vec<(String, String, bool)>> {
        name.0
            .iter()
            .map(|rdn| {
                rdn.0
                    .iter()
                    .map(|atv| {
                        let any = AnyRef::from(&atv.value);
                        let oid = atv.oid.to_string();
                        match string_value(any) {
                            Some(text) => (oid, text.into_owned(), true),
                            None => (oid, hex_lower(&atv.value.to_der().unwrap()), false),
                        }
                    })
                    .collect()
            })
            .collect()
    }

    const LONG_NAMES: [(&str, &str); 7] = [
        ("2.5.4.3", "commonName"),
        ("2.5.4.6", "countryName"),
        ("2.5.4.10", "organizationName"),
        ("2.5.4.11", "organizationalUnitName"),
        ("0.9.2342.19200300.100.1.1", "userId"),
        ("1.2.840.113549.1.9.1", "emailAddress"),
        ("2.5.4.7", "localityName"),
    ];

    /// How [`spell`] writes a name.
    struct Style<'a> {
        type_of: fn(&str) -> String,
        value_of: fn(&str) -> String,
        rdn_separator: &'a str,
        equals: &'a str,
        plus: &'a str,
        least_specific_first: bool,
        reverse_within: bool,
    }

    /// Writes a name's RDNs with a choice of type spelling, value spelling and separators.
    fn spell(rdns: &[Vec<(String, String, bool)>], style: Style<'_>) -> String {
        let Style {
            type_of,
            value_of,
            rdn_separator,
            equals,
            plus,
            least_specific_first,
            reverse_within,
        } = style;
        let mut ordered: Vec<&Vec<(String, String, bool)>> = rdns.iter().collect();
        if !least_specific_first {
            ordered.reverse();
        }
        ordered
            .iter()
            .map(|rdn| {
                let mut parts: Vec<String> = rdn
                    .iter()
                    .map(|(oid, value, is_text)| {
                        let value = if *is_text {
                            value_of(value)
                        } else {
                            format!("#{value}")
                        };
                        format!("{}{equals}{value}", type_of(oid))
                    })
                    .collect();
                if reverse_within {
                    parts.reverse();
                }
                parts.join(plus)
            })
            .collect::<Vec<_>>()
            .join(rdn_separator)
    }

    fn short_or_oid(oid: &str) -> String {
        short_name(&ObjectIdentifier::new_unwrap(oid))
            .map_or_else(|| oid.to_string(), str::to_string)
    }

    fn long_or_oid(oid: &str) -> String {
        LONG_NAMES
            .iter()
            .find(|(o, _)| *o == oid)
            .map_or_else(|| short_or_oid(oid), |(_, n)| n.to_string())
    }

    /// Several spellings of one name, each of which must parse to `expected`.
    fn spellings(name: &Name) -> Vec<(&'static str, String)> {
        let rdns = attributes_of(name);
        let quoted = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
        let slashed = |v: &str| v.replace('/', "\\/").replace('+', "\\+");
        let lower = |o: &str| short_or_oid(o).to_ascii_lowercase();
        let dotted = |o: &str| o.to_string();
        let prefixed = |o: &str| format!("OID.{o}");
        let every = |v: &str| escape_every_byte(v);
        let style = |type_of: fn(&str) -> String, value_of: fn(&str) -> String| Style {
            type_of,
            value_of,
            rdn_separator: ",",
            equals: "=",
            plus: "+",
            least_specific_first: false,
            reverse_within: false,
        };
        let mut out = vec![
            (
                "as rendered",
                spell(&rdns, style(short_or_oid, escape_for_text)),
            ),
            (
                "spaces around = , +",
                spell(
                    &rdns,
                    Style {
                        rdn_separator: " , ",
                        equals: " = ",
                        plus: " + ",
                        ..style(short_or_oid, escape_for_text)
                    },
                ),
            ),
            (
                "lower-case types",
                spell(
                    &rdns,
                    Style {
                        rdn_separator: ", ",
                        ..style(lower, escape_for_text)
                    },
                ),
            ),
            ("dotted OIDs", spell(&rdns, style(dotted, escape_for_text))),
            (
                "OID. prefix",
                spell(&rdns, style(prefixed, escape_for_text)),
            ),
            (
                "long names",
                spell(
                    &rdns,
                    Style {
                        rdn_separator: ";",
                        reverse_within: true,
                        ..style(long_or_oid, escape_for_text)
                    },
                ),
            ),
            (
                "every byte escaped",
                spell(&rdns, style(short_or_oid, every)),
            ),
            (
                "quoted",
                spell(
                    &rdns,
                    Style {
                        rdn_separator: ", ",
                        ..style(short_or_oid, quoted)
                    },
                ),
            ),
            (
                "multi-valued in another order",
                spell(
                    &rdns,
                    Style {
                        reverse_within: true,
                        ..style(short_or_oid, escape_for_text)
                    },
                ),
            ),
            (
                "slash form",
                format!(
                    "/{}",
                    spell(
                        &rdns,
                        Style {
                            rdn_separator: "/",
                            least_specific_first: true,
                            ..style(short_or_oid, slashed)
                        }
                    )
                ),
            ),
        ];
        let top = |oid: &str| oid == "2.5.4.6" || oid == "0.9.2342.19200300.100.1.25";
        let first_is_top = rdns
            .first()
            .is_some_and(|r| r.len() == 1 && r.iter().all(|a| top(&a.0)));
        let last_is_top = rdns
            .last()
            .is_some_and(|r| r.len() == 1 && r.iter().all(|a| top(&a.0)));
        if rdns.len() >= 2 && first_is_top && !last_is_top {
            // OpenSSL's default one-line output.
            let oneline = Style {
                rdn_separator: ", ",
                equals: " = ",
                plus: " + ",
                least_specific_first: true,
                ..style(short_or_oid, escape_for_text)
            };
            out.push(("OpenSSL one-line, reversed", spell(&rdns, oneline)));
        }
        out
    }

    #[test]
    fn every_spelling_of_every_test_pki_name_parses_to_the_der_rendering() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/pki");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            let text = std::fs::read(&path).unwrap();
            for der in crate::certificate::pem::decode_certificate_pem_chain(&text).unwrap() {
                let facts = crate::certificate::CertificateFacts::from_der(&der).unwrap();
                let certificate = <x509_cert::Certificate as der::Decode>::from_der(&der).unwrap();
                let names = [
                    (&certificate.tbs_certificate.issuer, &facts.issuer_dn),
                    (&certificate.tbs_certificate.subject, &facts.subject_dn),
                ];
                for (name, rendered) in names {
                    for (how, text) in spellings(name) {
                        let parsed =
                            parse_dn(&text).unwrap_or_else(|e| panic!("{how}: {text:?}: {e}"));
                        let reversed = how.ends_with("reversed");
                        let meant = if reversed {
                            parsed.reversed()
                        } else {
                            parsed.canonical()
                        };
                        assert_eq!(&meant, rendered, "{} ({how}): {text:?}", path.display());
                        assert_eq!(
                            parsed.country_first(),
                            reversed,
                            "{} ({how}): {text:?}",
                            path.display()
                        );
                        checked += 1;
                    }
                }
            }
        }
        // Eleven certificate files, two names each, ten or more spellings each.
        assert!(checked >= 12 * 2 * 10, "only {checked} spellings checked");
    }

    #[test]
    fn the_issue_spellings_of_a_cac_issuer_agree() {
        let expected = "CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US";
        for text in [
            expected,
            "CN=DOD ID CA-59, OU=PKI, OU=DoD, O=U.S. Government, C=US",
            "cn = DOD ID CA-59 , ou = PKI , ou = DoD , o = U.S. Government , c = US",
            "/C=US/O=U.S. Government/OU=DoD/OU=PKI/CN=DOD ID CA-59",
            "2.5.4.3=DOD ID CA-59,2.5.4.11=PKI,2.5.4.11=DoD,2.5.4.10=U.S. Government,2.5.4.6=US",
            "CN=DOD\\20ID\\20CA-59,OU=PKI,OU=DoD,O=U.S.\\ Government,C=US",
            "CN=#130C444F442049442043412D3539,OU=PKI,OU=DoD,O=U.S. Government,C=US",
            "  CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US  ",
        ] {
            assert_eq!(canonical_dn(text).as_deref(), Ok(expected), "{text:?}");
            assert!(!parse_dn(text).unwrap().country_first(), "{text:?}");
        }
        // OpenSSL's default output is taken as written, and flagged.
        let oneline =
            parse_dn("C = US, O = U.S. Government, OU = DoD, OU = PKI, CN = DOD ID CA-59").unwrap();
        assert_eq!(
            oneline.canonical(),
            "C=US,O=U.S. Government,OU=DoD,OU=PKI,CN=DOD ID CA-59"
        );
        assert!(oneline.country_first());
        assert_eq!(oneline.reversed(), expected);
        // A CA that really encodes its name country-first is named in the slash form.
        let slash = parse_dn("/CN=DOD ID CA-59/OU=PKI/OU=DoD/O=U.S. Government/C=US").unwrap();
        assert_eq!(slash.canonical(), oneline.canonical());
        assert!(!slash.country_first());
    }

    #[test]
    fn values_keep_what_matters() {
        // Inner spaces stay; escaped edge spaces stay; `=` needs no escape; UTF-8 passes.
        assert_eq!(canonical_dn("CN=a  b").as_deref(), Ok("CN=a  b"));
        assert_eq!(canonical_dn("CN=\\ a\\ ").as_deref(), Ok("CN=\\ a\\ "));
        assert_eq!(canonical_dn("CN=a=b").as_deref(), Ok("CN=a=b"));
        assert_eq!(canonical_dn("CN=J\\C3\\A9").as_deref(), Ok("CN=J\u{e9}"));
        assert_eq!(
            canonical_dn("O=\"Example, Inc.\"").as_deref(),
            Ok("O=Example\\, Inc.")
        );
        assert_eq!(canonical_dn("CN=\\#1").as_deref(), Ok("CN=\\#1"));
        assert_eq!(canonical_dn("CN=").as_deref(), Ok("CN="));
        assert_eq!(
            canonical_dn("SERIALNUMBER=1234").as_deref(),
            Ok("2.5.4.5=#130431323334")
        );
        assert_eq!(
            canonical_dn("E=a@b.mil").as_deref(),
            Ok("1.2.840.113549.1.9.1=#16076140622e6d696c")
        );
        // A non-string value under a named type stays hex, as the DER renderer writes it.
        assert_eq!(canonical_dn("CN=#0402DEAD").as_deref(), Ok("CN=#0402dead"));
    }

    #[test]
    fn unreadable_dns_say_where() {
        let cases: [(&str, &str); 14] = [
            ("", "the DN is empty"),
            ("   ", "the DN is empty"),
            ("x", "an attribute has no `=`"),
            ("CN=a,x", "an attribute has no `=`"),
            ("CN=a,", "an attribute has no `=`"),
            ("=a", "an attribute type is empty"),
            (
                "FOO=a",
                "an attribute type is not one this parser knows; give it as a dotted OID",
            ),
            ("2.5.04.3=a", "an attribute type is not a dotted OID"),
            ("2.5.4294967296=a", "an attribute type is not a dotted OID"),
            (
                "CN=\\zz",
                "`\\` must be followed by two hex digits or a special character",
            ),
            ("CN=a\\", "the DN ends inside an escape"),
            ("CN=#abc", "a `#` value needs an even number of hex digits"),
            ("CN=#0c05ab", "a `#` value is not one DER element"),
            ("CN=\"open", "a quoted value is not closed"),
        ];
        for (text, problem) in cases {
            assert_eq!(
                canonical_dn(text).map_err(|e| e.problem),
                Err(problem),
                "{text:?}"
            );
        }
        assert_eq!(canonical_dn("CN=a,FOO=b").unwrap_err().at, 5);
        assert_eq!(
            canonical_dn("CN=\\ff").map_err(|e| e.problem),
            Err("a value is not UTF-8 once unescaped")
        );
        assert!(canonical_dn("CN=a,".repeat(64).trim_end_matches(',')).is_ok());
        let too_many = vec!["CN=a"; 65].join(",");
        assert_eq!(
            canonical_dn(&too_many).map_err(|e| e.problem),
            Err("the DN has more than 64 attributes")
        );
        let too_long = format!("CN={}", "a".repeat(MAX_DN_TEXT_BYTES));
        assert_eq!(
            canonical_dn(&too_long).map_err(|e| e.problem),
            Err("the DN is longer than 4096 bytes")
        );
        // Short to type, long to render (a fuzzing finding): `E=` becomes an OID and `#` hex.
        let expands = vec![format!("E={}", "a".repeat(40)); 64].join("+");
        assert!(expands.len() <= MAX_DN_TEXT_BYTES);
        assert_eq!(
            canonical_dn(&expands).map_err(|e| e.problem),
            Err("the DN's canonical form is longer than 4096 bytes")
        );
    }

    #[test]
    fn random_text_never_panics_and_renderings_are_fixed_points() {
        let alphabet: &[&str] = &[
            "CN", "cn", "O", "OU", "C", "DC", "UID", "2.5.4.3", "1.2.3", "OID.", "=", "=", ",",
            ";", "+", "/", "\\", "\\2c", "\\ff", "\\", "\"", "#", "0c", "03", "61", " ", " ", "a",
            "Z", "\u{e9}", "\t", "\u{0}",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if let Ok(rendered) = canonical_dn(&text) {
                accepted += 1;
                assert_eq!(
                    canonical_dn(&rendered).as_ref(),
                    Ok(&rendered),
                    "{text:?} -> {rendered:?}"
                );
            }
        }
        assert!(
            accepted > 100,
            "only {accepted} random DNs parsed: the generator tests too little"
        );
    }
}
