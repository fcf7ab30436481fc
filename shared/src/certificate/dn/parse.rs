//! Distinguished names read from text as people write them (RFC 4514 and the spellings
//! OpenSSL, Windows and older tools use), rendered the way [`super::format`] renders the same
//! name from DER, so that a DN typed into the control plane compares byte for byte with the one
//! the filter reads from a certificate.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Encode, Tag};
use std::borrow::Cow;

use super::display;
use super::format::{escape_value, short_name, string_tag, string_value, OID_DOMAIN_COMPONENT};
use crate::certificate::push_dotted_oid;
use crate::encoding::{hex_lower, hex_value};

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
    /// The same RDNs in the display form.
    display_rdns: Vec<String>,
    country_first: bool,
}

impl DnText {
    /// The name as [`format_name`] renders it from a certificate.
    pub fn canonical(&self) -> String {
        self.rdns.join(",")
    }

    /// The name for people to read (see [`super::display_dn`]); never compared.
    pub fn display(&self) -> String {
        self.display_rdns.join(",")
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

/// The display form of a DN in the matching form (what the control plane stores and the
/// filter compares). A text that is not in the matching form is answered as it is.
pub fn display_dn(matching: &str) -> Cow<'_, str> {
    // Only types without a short name are written as `#hex`: without a `#` there is nothing
    // to name, and most names take this path.
    if !matching.contains('#') {
        return Cow::Borrowed(matching);
    }
    match parse_dn(matching) {
        Ok(dn) if dn.canonical() == matching => Cow::Owned(dn.display()),
        _ => Cow::Borrowed(matching),
    }
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
    for rdn in &mut parsed {
        // DER orders a SET OF by the encodings, shorter ones padded with zeros.
        rdn.sort_by(|a, b| compare_set_members(&a.der, &b.der));
    }
    let join = |part: fn(&ParsedAttribute) -> &str| -> Vec<String> {
        parsed.iter().map(|rdn| rdn.iter().map(part).collect::<Vec<_>>().join("+")).collect()
    };
    Ok(DnText {
        rdns: join(|a| a.rendered.as_str()),
        display_rdns: join(|a| a.display.as_str()),
        country_first,
    })
}

/// A parsed attribute: its RFC 4514 rendering, its display form and its DER
/// `AttributeTypeAndValue`.
#[derive(Debug, Clone)]
struct ParsedAttribute {
    oid: ObjectIdentifier,
    rendered: String,
    display: String,
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
        None => push_dotted_oid(&oid, &mut rendered),
    }
    rendered.push('=');
    rendered.push_str(&rendered_value);
    let mut display = String::with_capacity(rendered.len());
    AnyRef::from_der(&value_der)
        .and_then(|value| display::push_attribute(&oid, value, &mut display))
        .map_err(|_| dn_error(value_start, "a value does not re-encode"))?;
    let der =
        attribute_der(&oid, &value_der).ok_or(dn_error(raw.start, "an attribute is too long"))?;
    Ok(ParsedAttribute { oid, rendered, display, der })
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
