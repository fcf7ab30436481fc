//! The tests of DN text: rendering from DER, parsing from text, and the two agreeing.

use super::format::{escape_value, short_name, string_value};
use super::*;
use crate::certificate::borrowed::NameRef;
use crate::encoding::hex_lower;
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Any, Encode, Tag};
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
                shown(rendered);
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

/// A fixed pseudo-random sequence: the same cases on every run.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[test]
fn random_text_never_panics_and_renderings_are_fixed_points() {
    let alphabet: &[&str] = &[
        "CN", "cn", "O", "OU", "C", "DC", "UID", "2.5.4.3", "1.2.3", "OID.", "=", "=", ",",
        ";", "+", "/", "\\", "\\2c", "\\ff", "\\", "\"", "#", "0c", "03", "61", " ", " ", "a",
        "Z", "\u{e9}", "\t", "\u{0}",
    ];
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
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
            let shown = display_dn(&rendered);
            assert_eq!(canonical_dn(&shown).as_ref(), Ok(&rendered), "{text:?} -> {shown:?}");
        }
    }
    assert!(
        accepted > 100,
        "only {accepted} random DNs parsed: the generator tests too little"
    );
}

/// The display form of `matching`, checked to read back to it.
fn shown(matching: &str) -> String {
    let shown = display_dn(matching).into_owned();
    assert_eq!(canonical_dn(&shown).as_deref(), Ok(matching), "{shown:?} does not read back");
    shown
}

#[test]
fn the_display_form_names_what_the_matching_form_writes_as_oids() {
    // What `openssl x509 -subject` shows of a PIV card's subject, typed as people would.
    // (A multi-valued RDN is shown in DER's order, as the matching form has it.)
    let matching = canonical_dn("CN=Jane Doe+serialNumber=PI1234,emailAddress=jane@example.mil,OU=People,O=Example,C=US").unwrap();
    assert!(matching.contains("2.5.4.5=#") && matching.contains("1.2.840.113549.1.9.1=#"), "{matching}");
    assert_eq!(shown(&matching), "serialNumber=PI1234+CN=Jane Doe,emailAddress=jane@example.mil,OU=People,O=Example,C=US");

    // Values that need escaping are escaped as in the matching form.
    let matching = canonical_dn("serialNumber=\\ a\\,b\\+c\\ ,title=#0c03c3a9e9").unwrap();
    assert_eq!(shown(&matching), "serialNumber=\\ a\\,b\\+c\\ ,title=#0c03c3a9e9");
}

#[test]
fn the_display_form_keeps_hex_where_text_would_name_another_value() {
    // An emailAddress a CA wrote as a UTF8String: as text it would read back as an IA5String.
    let utf8_email = format!("1.2.840.113549.1.9.1=#0c{:02x}{}", 3, hex_lower(b"a@b"));
    assert_eq!(shown(&utf8_email), format!("emailAddress=#0c03{}", hex_lower(b"a@b")));
    // A serialNumber as a BMPString, and one as a PrintableString holding what a
    // PrintableString may not: kept as hex, under its name.
    assert_eq!(shown("2.5.4.5=#1e020041"), "serialNumber=#1e020041");
    assert_eq!(shown("2.5.4.5=#130140"), "serialNumber=#130140");
    // A type without a name stays a dotted OID, and a non-string value stays hex.
    assert_eq!(shown("1.2.3.4=#13024142"), "1.2.3.4=#13024142");
    assert_eq!(shown("2.5.4.5=#020101"), "serialNumber=#020101");
    // Names the matching form already writes are shown as they are; text not in the
    // matching form is answered unchanged.
    assert_eq!(shown("CN=\\#1,O=Example"), "CN=\\#1,O=Example");
    assert_eq!(display_dn("serialNumber=1"), "serialNumber=1");
    assert_eq!(display_dn("not a DN #"), "not a DN #");
}

#[test]
fn random_named_values_are_displayed_as_text_that_reads_back() {
    let types = ["serialNumber", "E", "title", "SN", "GN", "CN", "DC", "1.2.3", "pseudonym"];
    let values = ["a", "Z", "1", "@", " ", "+", ",", "\\2c", "\\00", "\u{e9}", "#", "-", "'", "\\\\", "\\\""];
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let mut named = 0;
    for _ in 0..5_000 {
        let attributes = 1 + next() % 3;
        let mut text = String::new();
        for index in 0..attributes {
            if index > 0 {
                text.push(if next().is_multiple_of(3) { '+' } else { ',' });
            }
            text.push_str(types[(next() % types.len() as u64) as usize]);
            text.push('=');
            for _ in 0..1 + next() % 5 {
                text.push_str(values[(next() % values.len() as u64) as usize]);
            }
        }
        let Ok(matching) = canonical_dn(&text) else { continue };
        let displayed = shown(&matching);
        if displayed != matching {
            named += 1;
        }
    }
    assert!(named > 1_000, "only {named} names were displayed differently: the generator tests too little");
}
