//! Envoy's `x-forwarded-client-cert` (XFCC) header.
//!
//! The value is a `,`-separated list of elements, one per proxy hop; the last element is the
//! nearest hop. Each element is a `;`-separated list of `Key=value` pairs. Keys are
//! case-insensitive: `By`, `URI` and `DNS` may repeat; `Hash`, `Cert`, `Chain` and `Subject`
//! may appear once. Envoy double-quotes `Cert`, `Chain` and `Subject`; inside quotes a
//! backslash escapes the byte after it (`Subject` is an RFC 2253 DN, which writes a quote as
//! `\"` and a backslash as `\\`), and `\"` stands for a quote in the value. `URI` and `DNS` are
//! written unquoted, so a SAN holding `,` or `;` changes the element structure: which element
//! to believe is the caller's decision, made on the element count. `Cert` and `Chain` are URL-encoded PEM. Envoy emits no other keys, so any
//! other key is refused rather than skipped.

use std::borrow::Cow;

use super::{is_ows, skip_ows, SourceError};
use crate::certificate::pem::{
    decode_certificate_pem_chain, decode_single_certificate_pem, MAX_PEM_BYTES,
};
use crate::encoding::{find_stop, hex_decode, percent_decode, word_has_byte, word_has_byte_below, PercentError};
use crate::fingerprint::Fingerprint;

/// Most elements accepted. Each hop that forwards the header appends one; real meshes have a
/// handful, and a long list only costs parsing.
pub const MAX_XFCC_ELEMENTS: usize = 32;

/// One hop's element. Values are borrowed from the header unless unescaping changed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XfccElement<'a> {
    pub by: Vec<Cow<'a, str>>,
    pub hash: Option<Cow<'a, str>>,
    /// Raw, still URL-encoded PEM; see [`XfccElement::cert_der`].
    pub cert: Option<Cow<'a, str>>,
    /// Raw, still URL-encoded PEM chain; see [`XfccElement::chain_der`].
    pub chain: Option<Cow<'a, str>>,
    pub subject: Option<Cow<'a, str>>,
    pub uri: Vec<Cow<'a, str>>,
    pub dns: Vec<Cow<'a, str>>,
}

/// Parses a whole XFCC value of at most `limit` bytes. The last element of the result is the
/// nearest hop.
pub fn parse(value: &str, limit: usize) -> Result<Vec<XfccElement<'_>>, SourceError> {
    if value.len() > limit {
        return Err(SourceError::Oversized { len: value.len(), limit });
    }
    let bytes = value.as_bytes();
    let mut pos = skip_ows(bytes, 0);
    if pos == bytes.len() {
        return Err(malformed("empty XFCC value", pos));
    }
    let mut elements = Vec::new();
    loop {
        if elements.len() == MAX_XFCC_ELEMENTS {
            return Err(SourceError::Malformed(format!(
                "more than {MAX_XFCC_ELEMENTS} XFCC elements"
            )));
        }
        let (element, next) = parse_element(value, pos)?;
        elements.push(element);
        match bytes.get(next) {
            None => return Ok(elements),
            Some(b',') => {
                pos = skip_ows(bytes, next + 1);
                if pos == bytes.len() {
                    return Err(malformed("trailing ',' in XFCC", next));
                }
            }
            Some(_) => return Err(malformed("unexpected character in XFCC", next)),
        }
    }
}

impl XfccElement<'_> {
    /// The DER of `Cert=`: percent-decoded, then exactly one PEM certificate.
    /// `Ok(None)` when the element has no `Cert`.
    pub fn cert_der(&self) -> Result<Option<Vec<u8>>, SourceError> {
        let Some(cert) = &self.cert else {
            return Ok(None);
        };
        let pem = percent_decode(cert.as_bytes(), MAX_PEM_BYTES).map_err(percent_error)?;
        Ok(Some(decode_single_certificate_pem(&pem)?))
    }

    /// The DER of every certificate in `Chain=` (leaf first, as Envoy writes it).
    pub fn chain_der(&self) -> Result<Option<Vec<Vec<u8>>>, SourceError> {
        let Some(chain) = &self.chain else {
            return Ok(None);
        };
        let pem = percent_decode(chain.as_bytes(), MAX_PEM_BYTES).map_err(percent_error)?;
        Ok(Some(decode_certificate_pem_chain(&pem)?))
    }

    /// Checks `Hash=` (SHA-256, hex of either case) against `der`. An element without `Hash`
    /// passes: Envoy only writes it when configured to.
    pub fn hash_matches(&self, der: &[u8]) -> Result<(), SourceError> {
        self.hash_matches_fingerprint(&Fingerprint::of_der(der))
    }

    /// As [`XfccElement::hash_matches`], for a caller that already has the certificate's
    /// SHA-256 (so it is computed once per certificate, not twice).
    pub fn hash_matches_fingerprint(&self, fingerprint: &Fingerprint) -> Result<(), SourceError> {
        let Some(hash) = &self.hash else {
            return Ok(());
        };
        let digest = hex_decode(hash)
            .filter(|d| d.len() == 32)
            .ok_or_else(|| SourceError::Malformed("XFCC Hash is not 64 hex digits".to_owned()))?;
        if digest == fingerprint.0 {
            Ok(())
        } else {
            Err(SourceError::HashMismatch)
        }
    }
}

fn malformed(what: &str, at: usize) -> SourceError {
    SourceError::Malformed(format!("{what} at byte {at}"))
}

fn percent_error(error: PercentError) -> SourceError {
    match error {
        PercentError::BadEscape { at } => malformed("bad percent escape in XFCC certificate", at),
        PercentError::TooLong { limit } => {
            SourceError::Malformed(format!("XFCC certificate longer than {limit} bytes"))
        }
    }
}

/// Parses the element starting at `start`; returns it and the position of the `,` that ends
/// it, or the end of the value.
fn parse_element(value: &str, start: usize) -> Result<(XfccElement<'_>, usize), SourceError> {
    let bytes = value.as_bytes();
    let mut element = XfccElement::default();
    let mut pos = start;
    loop {
        let key_start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_alphanumeric) {
            pos += 1;
        }
        let key = value.get(key_start..pos).unwrap_or_default();
        if key.is_empty() {
            return Err(malformed("missing XFCC key", key_start));
        }
        if bytes.get(pos) != Some(&b'=') {
            return Err(malformed("XFCC key without '='", pos));
        }
        let (text, after_value) = parse_value(value, pos + 1)?;
        element.set(key, text, key_start)?;
        pos = after_value;
        match bytes.get(pos) {
            Some(b';') => pos += 1,
            Some(b',') | None => return Ok((element, pos)),
            Some(&byte) if is_ows(byte) => {
                // Whitespace may only precede the `,` between elements (list syntax).
                let after = skip_ows(bytes, pos);
                return match bytes.get(after) {
                    Some(b',') | None => Ok((element, after)),
                    Some(_) => Err(malformed("whitespace inside an XFCC element", pos)),
                };
            }
            Some(_) => return Err(malformed("unexpected character after an XFCC value", pos)),
        }
    }
}

fn is_forbidden_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

/// Bytes a quoted value's scan must look at: the quote, the escape and forbidden controls.
const STOPS_QUOTED: [bool; 256] = stop_table(b"\"\\");
/// Bytes an unquoted value's scan must look at: its terminators, whitespace, a stray quote
/// and forbidden controls.
const STOPS_UNQUOTED: [bool; 256] = stop_table(b";, \t\"");

/// How many bytes from `pos` on are not in `stops`, a word at a time: every byte in either
/// table is a control, DEL, or one of `"`, `\\`, `;`, `,`, space.
fn skip_ordinary(bytes: &[u8], pos: usize, stops: &[bool; 256]) -> usize {
    let may_stop = |word: u64| {
        word_has_byte_below(word, 0x21)
            || word_has_byte(word, 0x7f)
            || word_has_byte(word, b'"')
            || word_has_byte(word, b'\\')
            || word_has_byte(word, b';')
            || word_has_byte(word, b',')
    };
    bytes.get(pos..).map_or(0, |rest| find_stop(rest, may_stop, |b| stops[usize::from(b)]))
}

const fn stop_table(specials: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte < 0x20 && byte != 0x09) || byte == 0x7f;
        byte += 1;
    }
    let mut i = 0;
    while i < specials.len() {
        table[specials[i] as usize] = true;
        i += 1;
    }
    table
}

/// Parses a value starting at `start`; returns it and the position just after it.
fn parse_value(value: &str, start: usize) -> Result<(Cow<'_, str>, usize), SourceError> {
    let bytes = value.as_bytes();
    if bytes.get(start) == Some(&b'"') {
        let content_start = start + 1;
        let mut pos = content_start;
        let mut escaped = false;
        loop {
            // Skip ordinary bytes in one step: a URL-encoded certificate is kilobytes of them.
            pos += skip_ordinary(bytes, pos, &STOPS_QUOTED);
            match bytes.get(pos) {
                None => return Err(malformed("unterminated quoted XFCC value", start)),
                Some(b'\\') => match bytes.get(pos + 1) {
                    Some(b'"') => {
                        escaped = true;
                        pos += 2;
                    }
                    // Any other escaped byte is kept as written, backslash and all.
                    Some(&next) if !is_forbidden_control(next) => pos += 2,
                    Some(_) => return Err(malformed("control character in XFCC value", pos + 1)),
                    None => return Err(malformed("unterminated quoted XFCC value", start)),
                },
                Some(b'"') => break,
                Some(&byte) if is_forbidden_control(byte) => {
                    return Err(malformed("control character in XFCC value", pos));
                }
                Some(_) => pos += 1,
            }
        }
        let raw = value.get(content_start..pos).unwrap_or_default();
        let text = if escaped {
            Cow::Owned(raw.replace("\\\"", "\""))
        } else {
            Cow::Borrowed(raw)
        };
        Ok((text, pos + 1))
    } else {
        let mut pos = start;
        loop {
            pos += skip_ordinary(bytes, pos, &STOPS_UNQUOTED);
            match bytes.get(pos) {
                None | Some(b';' | b',') => break,
                Some(&byte) if is_ows(byte) => break,
                Some(b'"') => return Err(malformed("quote inside an unquoted XFCC value", pos)),
                Some(&byte) if is_forbidden_control(byte) => {
                    return Err(malformed("control character in XFCC value", pos));
                }
                Some(_) => pos += 1,
            }
        }
        Ok((
            Cow::Borrowed(value.get(start..pos).unwrap_or_default()),
            pos,
        ))
    }
}

impl<'a> XfccElement<'a> {
    fn set(&mut self, key: &str, text: Cow<'a, str>, at: usize) -> Result<(), SourceError> {
        let single = |slot: &mut Option<Cow<'a, str>>, text| {
            if slot.is_some() {
                return Err(malformed("XFCC key repeated in one element", at));
            }
            *slot = Some(text);
            Ok(())
        };
        if key.eq_ignore_ascii_case("by") {
            self.by.push(text);
        } else if key.eq_ignore_ascii_case("uri") {
            self.uri.push(text);
        } else if key.eq_ignore_ascii_case("dns") {
            self.dns.push(text);
        } else if key.eq_ignore_ascii_case("hash") {
            single(&mut self.hash, text)?;
        } else if key.eq_ignore_ascii_case("cert") {
            single(&mut self.cert, text)?;
        } else if key.eq_ignore_ascii_case("chain") {
            single(&mut self.chain, text)?;
        } else if key.eq_ignore_ascii_case("subject") {
            single(&mut self.subject, text)?;
        } else {
            return Err(malformed("unknown XFCC key", at));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::pem::encode_certificate_pem;
    use crate::source::DEFAULT_MAX_HEADER_BYTES;

    fn parse(value: &str) -> Result<Vec<XfccElement<'_>>, SourceError> {
        super::parse(value, DEFAULT_MAX_HEADER_BYTES)
    }
    use crate::certificate::CertificateError;

    const PIV_AUTH_PEM: &str = include_str!("../../../tests/pki/piv-auth.pem");
    const CA_BUNDLE_PEM: &str = include_str!("../../../tests/pki/ca-bundle.pem");
    /// `openssl x509 -in tests/pki/piv-auth.pem -noout -fingerprint -sha256`, colons removed.
    const PIV_AUTH_SHA256: &str =
        "88385f9ffede1a99ec5317726375bb6ff317a5c3061d92a0695a24753a46d049";

    fn b(s: &str) -> Cow<'_, str> {
        Cow::Borrowed(s)
    }

    /// Percent-encodes every byte outside the URL-unreserved set, as Envoy does for `Cert=`.
    fn url_encode(text: &str) -> String {
        text.bytes()
            .map(|c| match c {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(c).to_string()
                }
                _ => format!("%{c:02X}"),
            })
            .collect()
    }

    // The three examples in Envoy's documentation of x-forwarded-client-cert, verbatim.
    const ENVOY_EXAMPLE_1: &str = "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";URI=http://testclient.lyft.com";
    const ENVOY_EXAMPLE_2: &str = "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=http://frontend.lyft.com";
    const ENVOY_EXAMPLE_3: &str = "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com";

    #[test]
    fn envoy_documented_examples_parse_to_the_documented_fields() {
        assert_eq!(
            parse(ENVOY_EXAMPLE_1).unwrap(),
            vec![XfccElement {
                by: vec![b("http://frontend.lyft.com")],
                hash: Some(b(
                    "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688"
                )),
                subject: Some(b("/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client")),
                uri: vec![b("http://testclient.lyft.com")],
                ..Default::default()
            }]
        );
        assert_eq!(
            parse(ENVOY_EXAMPLE_2).unwrap(),
            vec![
                XfccElement {
                    by: vec![b("http://frontend.lyft.com")],
                    hash: Some(b(
                        "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688"
                    )),
                    uri: vec![b("http://testclient.lyft.com")],
                    ..Default::default()
                },
                XfccElement {
                    by: vec![b("http://backend.lyft.com")],
                    hash: Some(b(
                        "9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e"
                    )),
                    uri: vec![b("http://frontend.lyft.com")],
                    ..Default::default()
                },
            ]
        );
        assert_eq!(
            parse(ENVOY_EXAMPLE_3).unwrap(),
            vec![XfccElement {
                by: vec![b("http://frontend.lyft.com")],
                hash: Some(b(
                    "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688"
                )),
                subject: Some(b("/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client")),
                uri: vec![b("http://testclient.lyft.com")],
                dns: vec![b("lyft.com"), b("www.lyft.com")],
                ..Default::default()
            }]
        );
    }

    #[test]
    fn quoting_escapes_case_and_empty_values() {
        let parsed = parse(
            r#"by="spiffe://a;b,c=d";SUBJECT="CN=say \"hi\",O=x";uRi=;Dns="";dns=a=b, hash=AB"#,
        )
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                XfccElement {
                    by: vec![b("spiffe://a;b,c=d")],
                    subject: Some(Cow::Owned("CN=say \"hi\",O=x".to_owned())),
                    uri: vec![b("")],
                    dns: vec![b(""), b("a=b")],
                    ..Default::default()
                },
                XfccElement {
                    hash: Some(b("AB")),
                    ..Default::default()
                },
            ]
        );
        assert!(
            matches!(parsed[0].by[0], Cow::Borrowed(_)),
            "no escape, no copy"
        );
        // A backslash before anything but a quote is kept as it is (RFC 2253 subjects use it).
        let subject = parse(r#"Subject="CN=Doe\, Jane""#).unwrap();
        assert_eq!(subject[0].subject, Some(b(r"CN=Doe\, Jane")));
    }

    #[test]
    fn a_backslash_inside_quotes_escapes_the_next_byte() {
        // Envoy writes the RFC 2253 subject as is: a value ending in '\' arrives as '\\'
        // before the closing quote, and must not swallow it.
        let parsed = parse(r#"Subject="CN=trailing\\";Hash=aa,By=b"#).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].subject, Some(b(r"CN=trailing\\")));
        assert_eq!(parsed[0].hash, Some(b("aa")));
        // An escaped quote stays inside the value; an escaped comma does not split elements.
        let quoted = parse(r#"Subject="CN=a\"b\,c";URI=x"#).unwrap();
        assert_eq!(quoted.len(), 1);
        assert_eq!(quoted[0].subject, Some(Cow::Owned(r#"CN=a"b\,c"#.to_owned())));
        // A lone backslash at the very end leaves the value unterminated.
        assert_eq!(
            parse(r#"Subject="CN=x\"#),
            Err(SourceError::Malformed("unterminated quoted XFCC value at byte 8".to_owned()))
        );
        assert_eq!(
            parse("Subject=\"CN=x\\\u{1}\""),
            Err(SourceError::Malformed("control character in XFCC value at byte 14".to_owned()))
        );
    }

    #[test]
    fn repeated_by_uri_dns_accumulate_and_single_keys_refuse_repeats() {
        let parsed = parse("By=a;By=b;URI=u1;URI=u2;DNS=d").unwrap();
        assert_eq!(parsed[0].by, vec![b("a"), b("b")]);
        assert_eq!(parsed[0].uri, vec![b("u1"), b("u2")]);
        for (value, at) in [
            ("Hash=aa;Hash=bb", 8),
            ("Cert=x;cert=y", 7),
            ("Chain=x;CHAIN=y", 8),
            ("Subject=\"a\";Subject=\"b\"", 12),
        ] {
            assert_eq!(
                parse(value),
                Err(SourceError::Malformed(format!(
                    "XFCC key repeated in one element at byte {at}"
                ))),
                "{value}"
            );
        }
        // The same key in different elements is fine: they are different hops.
        assert_eq!(parse("Hash=aa,Hash=bb").unwrap().len(), 2);
    }

    #[test]
    fn malformed_values_name_what_and_where() {
        let cases: [(&str, &str); 14] = [
            ("", "empty XFCC value at byte 0"),
            ("  ", "empty XFCC value at byte 2"),
            ("By=a,", "trailing ',' in XFCC at byte 4"),
            ("By=a,,By=b", "missing XFCC key at byte 5"),
            ("By=a;", "missing XFCC key at byte 5"),
            (";By=a", "missing XFCC key at byte 0"),
            ("By", "XFCC key without '=' at byte 2"),
            ("By:a", "XFCC key without '=' at byte 2"),
            ("Foo=bar", "unknown XFCC key at byte 0"),
            ("By=a;X-Forwarded=b", "XFCC key without '=' at byte 6"),
            ("Subject=\"open", "unterminated quoted XFCC value at byte 8"),
            (
                "Subject=\"a\"b",
                "unexpected character after an XFCC value at byte 11",
            ),
            ("By=a\"b", "quote inside an unquoted XFCC value at byte 4"),
            ("By=a b", "whitespace inside an XFCC element at byte 4"),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse(value),
                Err(SourceError::Malformed(expected.to_owned())),
                "{value:?}"
            );
        }
        assert_eq!(
            parse("By=a\r\nX: y"),
            Err(SourceError::Malformed(
                "control character in XFCC value at byte 4".to_owned()
            ))
        );
        assert_eq!(
            parse("Subject=\"a\u{0}\""),
            Err(SourceError::Malformed(
                "control character in XFCC value at byte 10".to_owned()
            ))
        );
    }

    #[test]
    fn whitespace_between_elements_is_list_syntax() {
        let parsed = parse(" By=a , By=b\t").unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].by, vec![b("b")]);
    }

    #[test]
    fn size_and_element_caps() {
        let oversized = "a".repeat(DEFAULT_MAX_HEADER_BYTES + 1);
        assert_eq!(
            parse(&oversized),
            Err(SourceError::Oversized {
                len: DEFAULT_MAX_HEADER_BYTES + 1,
                limit: DEFAULT_MAX_HEADER_BYTES
            })
        );
        let at_cap = vec!["By=x"; MAX_XFCC_ELEMENTS].join(",");
        assert_eq!(parse(&at_cap).unwrap().len(), MAX_XFCC_ELEMENTS);
        let over_cap = vec!["By=x"; MAX_XFCC_ELEMENTS + 1].join(",");
        assert_eq!(
            parse(&over_cap),
            Err(SourceError::Malformed(
                "more than 32 XFCC elements".to_owned()
            ))
        );
    }

    #[test]
    fn cert_decodes_and_hash_checks_against_it() {
        let header = format!(
            "By=spiffe://certbind.test/envoy;Hash={PIV_AUTH_SHA256};Cert=\"{}\";Subject=\"CN=Jane Q. Doe\"",
            url_encode(PIV_AUTH_PEM)
        );
        let elements = parse(&header).unwrap();
        let der = elements[0].cert_der().unwrap().unwrap();
        assert_eq!(encode_certificate_pem(&der), PIV_AUTH_PEM);
        assert_eq!(elements[0].hash_matches(&der), Ok(()));

        let uppercase_header = header.replace(PIV_AUTH_SHA256, &PIV_AUTH_SHA256.to_uppercase());
        let uppercase = parse(&uppercase_header).unwrap();
        assert_eq!(uppercase[0].hash_matches(&der), Ok(()));

        let other_hash = PIV_AUTH_SHA256.replace("88385f", "88385e");
        let mismatched_header = header.replace(PIV_AUTH_SHA256, &other_hash);
        let mismatched = parse(&mismatched_header).unwrap();
        assert_eq!(
            mismatched[0].hash_matches(&der),
            Err(SourceError::HashMismatch)
        );

        let short = parse("Hash=abcd").unwrap();
        assert_eq!(
            short[0].hash_matches(&der),
            Err(SourceError::Malformed(
                "XFCC Hash is not 64 hex digits".to_owned()
            ))
        );
        let no_hash = parse("By=a").unwrap();
        assert_eq!(no_hash[0].hash_matches(&der), Ok(()));
        assert_eq!(no_hash[0].cert_der(), Ok(None));
        assert_eq!(no_hash[0].chain_der(), Ok(None));
    }

    #[test]
    fn unquoted_cert_and_chain_decode() {
        let header = format!(
            "Cert={};Chain={}",
            url_encode(PIV_AUTH_PEM),
            url_encode(CA_BUNDLE_PEM)
        );
        let element = &parse(&header).unwrap()[0];
        assert!(element.cert_der().unwrap().is_some());
        assert_eq!(element.chain_der().unwrap().unwrap().len(), 2);
    }

    #[test]
    fn broken_cert_values_map_to_their_errors() {
        let bad_escape = parse("Cert=%2").unwrap();
        assert_eq!(
            bad_escape[0].cert_der(),
            Err(SourceError::Malformed(
                "bad percent escape in XFCC certificate at byte 0".to_owned()
            ))
        );
        let empty = parse("Cert=").unwrap();
        assert_eq!(
            empty[0].cert_der(),
            Err(SourceError::Certificate(CertificateError::Pem(
                "no -----BEGIN CERTIFICATE----- block"
            )))
        );
        let chain_header = format!("Cert={}", url_encode(CA_BUNDLE_PEM));
        let chain_as_cert = parse(&chain_header).unwrap();
        assert_eq!(
            chain_as_cert[0].cert_der(),
            Err(SourceError::Certificate(CertificateError::Pem(
                "more than one certificate where one is expected"
            )))
        );
        let trailing_header = format!("Cert={}junk", url_encode(PIV_AUTH_PEM));
        let trailing = parse(&trailing_header).unwrap();
        assert_eq!(
            trailing[0].cert_der(),
            Err(SourceError::Certificate(CertificateError::Pem(
                "text after -----END CERTIFICATE-----"
            )))
        );
    }
}
