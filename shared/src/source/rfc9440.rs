//! RFC 9440 `Client-Cert` and `Client-Cert-Chain`: structured-field byte sequences
//! (RFC 8941 section 3.3.5), `:` base64 DER `:`. `Client-Cert` is one item without parameters;
//! `Client-Cert-Chain` is a list of them, separated by `,` with optional whitespace.

use super::{skip_ows, SourceError};
use crate::certificate::pem::MAX_CHAIN_CERTIFICATES;
use crate::certificate::{CertificateError, MAX_CERTIFICATE_DER};
use crate::encoding::base64_decode;

fn malformed(what: &str, at: usize) -> SourceError {
    SourceError::Malformed(format!("{what} at byte {at}"))
}

fn check_size(value: &str, limit: usize) -> Result<(), SourceError> {
    if value.len() > limit {
        return Err(SourceError::Oversized { len: value.len(), limit });
    }
    Ok(())
}

/// Parses the byte sequence starting at `start`; returns its bytes and the position after the
/// closing `:`.
fn byte_sequence(value: &str, start: usize) -> Result<(Vec<u8>, usize), SourceError> {
    let bytes = value.as_bytes();
    match bytes.get(start) {
        Some(b':') => {}
        None => return Err(malformed("missing byte sequence", start)),
        Some(_) => return Err(malformed("expected ':' opening a byte sequence", start)),
    }
    let content_start = start + 1;
    let mut pos = content_start;
    loop {
        match bytes.get(pos) {
            None => return Err(malformed("unterminated byte sequence", start)),
            Some(b':') => break,
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=') => pos += 1,
            Some(_) => return Err(malformed("character outside base64 in byte sequence", pos)),
        }
    }
    let text = bytes.get(content_start..pos).unwrap_or_default();
    if text.is_empty() {
        return Err(malformed("empty byte sequence", start));
    }
    // RFC 8941: parsers should not fail on missing '=' padding, so restore it; padding that is
    // present must be exactly right.
    let der = if text.contains(&b'=') {
        base64_decode(text)
    } else {
        let mut padded = text.to_vec();
        padded.resize(text.len().div_ceil(4) * 4, b'=');
        base64_decode(&padded)
    }
    .ok_or_else(|| malformed("byte sequence is not valid base64", start))?;
    if der.len() > MAX_CERTIFICATE_DER {
        return Err(CertificateError::TooLarge {
            len: der.len(),
            limit: MAX_CERTIFICATE_DER,
        }
        .into());
    }
    Ok((der, pos + 1))
}

/// The DER of a `Client-Cert` value of at most `limit` bytes.
pub fn parse_client_cert(value: &str, limit: usize) -> Result<Vec<u8>, SourceError> {
    check_size(value, limit)?;
    let bytes = value.as_bytes();
    let (der, after) = byte_sequence(value, skip_ows(bytes, 0))?;
    match bytes.get(after) {
        None => Ok(der),
        Some(b';') => Err(malformed("Client-Cert takes no parameters", after)),
        Some(_) if skip_ows(bytes, after) == bytes.len() => Ok(der),
        Some(_) => Err(malformed("unexpected text after the byte sequence", after)),
    }
}

/// Every certificate of a `Client-Cert-Chain` value, in the order given.
pub fn parse_client_cert_chain(value: &str, limit: usize) -> Result<Vec<Vec<u8>>, SourceError> {
    check_size(value, limit)?;
    let bytes = value.as_bytes();
    let mut pos = skip_ows(bytes, 0);
    let mut certificates = Vec::new();
    loop {
        if certificates.len() == MAX_CHAIN_CERTIFICATES {
            return Err(SourceError::Malformed(format!(
                "more than {MAX_CHAIN_CERTIFICATES} certificates in Client-Cert-Chain"
            )));
        }
        let (der, after) = byte_sequence(value, pos)?;
        certificates.push(der);
        pos = skip_ows(bytes, after);
        match bytes.get(pos) {
            None => return Ok(certificates),
            Some(b',') => {
                pos = skip_ows(bytes, pos + 1);
                if pos == bytes.len() {
                    return Err(malformed("trailing ',' in Client-Cert-Chain", pos));
                }
            }
            Some(b';') => {
                return Err(malformed(
                    "Client-Cert-Chain members take no parameters",
                    pos,
                ))
            }
            Some(_) => return Err(malformed("expected ',' between byte sequences", pos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::pem::decode_certificate_pem;
    use crate::encoding::base64_encode;
    use crate::source::DEFAULT_MAX_HEADER_BYTES;

    fn parse_client_cert(value: &str) -> Result<Vec<u8>, SourceError> {
        super::parse_client_cert(value, DEFAULT_MAX_HEADER_BYTES)
    }

    fn parse_client_cert_chain(value: &str) -> Result<Vec<Vec<u8>>, SourceError> {
        super::parse_client_cert_chain(value, DEFAULT_MAX_HEADER_BYTES)
    }

    const PIV_AUTH_PEM: &str = include_str!("../../../tests/pki/piv-auth.pem");
    const ISSUING_PEM: &str = include_str!("../../../tests/pki/piv-issuing-ca.pem");

    fn der(pem: &str) -> Vec<u8> {
        decode_certificate_pem(pem.as_bytes()).unwrap()
    }

    #[test]
    fn client_cert_and_chain_decode() {
        let leaf = der(PIV_AUTH_PEM);
        let issuing = der(ISSUING_PEM);
        let item = format!(":{}:", base64_encode(&leaf));
        assert_eq!(parse_client_cert(&item).unwrap(), leaf);
        assert_eq!(parse_client_cert(&format!("  {item} ")).unwrap(), leaf);
        let unpadded = format!(":{}:", base64_encode(&leaf).trim_end_matches('='));
        assert_eq!(parse_client_cert(&unpadded).unwrap(), leaf);

        let chain = format!(":{}:, :{}:", base64_encode(&leaf), base64_encode(&issuing));
        assert_eq!(
            parse_client_cert_chain(&chain).unwrap(),
            vec![leaf.clone(), issuing.clone()]
        );
        let tight = format!(":{}:,:{}:", base64_encode(&leaf), base64_encode(&issuing));
        assert_eq!(
            parse_client_cert_chain(&tight).unwrap(),
            vec![leaf.clone(), issuing]
        );
        assert_eq!(parse_client_cert_chain(&item).unwrap(), vec![leaf]);
    }

    #[test]
    fn malformed_client_cert_values_map_to_exact_errors() {
        let cases: Vec<(String, SourceError)> = vec![
            (
                String::new(),
                SourceError::Malformed("missing byte sequence at byte 0".into()),
            ),
            (
                "  ".into(),
                SourceError::Malformed("missing byte sequence at byte 2".into()),
            ),
            (
                "MAA=".into(),
                SourceError::Malformed("expected ':' opening a byte sequence at byte 0".into()),
            ),
            (
                ":MAA=".into(),
                SourceError::Malformed("unterminated byte sequence at byte 0".into()),
            ),
            (
                "::".into(),
                SourceError::Malformed("empty byte sequence at byte 0".into()),
            ),
            (
                ":MA A=:".into(),
                SourceError::Malformed(
                    "character outside base64 in byte sequence at byte 3".into(),
                ),
            ),
            (
                ":MA-_:".into(),
                SourceError::Malformed(
                    "character outside base64 in byte sequence at byte 3".into(),
                ),
            ),
            (
                ":MAA:;a=1".into(),
                SourceError::Malformed("Client-Cert takes no parameters at byte 5".into()),
            ),
            (
                ":MAA: x".into(),
                SourceError::Malformed("unexpected text after the byte sequence at byte 5".into()),
            ),
            (
                ":MAA=:,:MAA=:".into(),
                SourceError::Malformed("unexpected text after the byte sequence at byte 6".into()),
            ),
            (
                ":MA=:".into(),
                SourceError::Malformed("byte sequence is not valid base64 at byte 0".into()),
            ),
            (
                ":M:".into(),
                SourceError::Malformed("byte sequence is not valid base64 at byte 0".into()),
            ),
            (
                ":M=AA:".into(),
                SourceError::Malformed("byte sequence is not valid base64 at byte 0".into()),
            ),
            (
                format!(":{}:", "A".repeat(DEFAULT_MAX_HEADER_BYTES)),
                SourceError::Oversized {
                    len: DEFAULT_MAX_HEADER_BYTES + 2,
                    limit: DEFAULT_MAX_HEADER_BYTES,
                },
            ),
            (
                format!(":{}:", base64_encode(&vec![0u8; MAX_CERTIFICATE_DER + 1])),
                SourceError::Certificate(CertificateError::TooLarge {
                    len: MAX_CERTIFICATE_DER + 1,
                    limit: MAX_CERTIFICATE_DER,
                }),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_client_cert(&value),
                Err(expected),
                "{:?}",
                value.get(..40)
            );
        }
    }

    #[test]
    fn malformed_chains_map_to_exact_errors() {
        let cases: Vec<(String, SourceError)> = vec![
            (
                String::new(),
                SourceError::Malformed("missing byte sequence at byte 0".into()),
            ),
            (
                ":MAA=:,".into(),
                SourceError::Malformed("trailing ',' in Client-Cert-Chain at byte 7".into()),
            ),
            (
                ":MAA=:, ".into(),
                SourceError::Malformed("trailing ',' in Client-Cert-Chain at byte 8".into()),
            ),
            (
                ":MAA=:,,:MAA=:".into(),
                SourceError::Malformed("expected ':' opening a byte sequence at byte 7".into()),
            ),
            (
                ":MAA=: :MAA=:".into(),
                SourceError::Malformed("expected ',' between byte sequences at byte 7".into()),
            ),
            (
                ":MAA=:;a".into(),
                SourceError::Malformed(
                    "Client-Cert-Chain members take no parameters at byte 6".into(),
                ),
            ),
            (
                [":MAA=:"; MAX_CHAIN_CERTIFICATES + 1].join(","),
                SourceError::Malformed("more than 8 certificates in Client-Cert-Chain".into()),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_client_cert_chain(&value), Err(expected), "{value:?}");
        }
        assert_eq!(
            parse_client_cert_chain(&[":MAA=:"; MAX_CHAIN_CERTIFICATES].join(","))
                .unwrap()
                .len(),
            8
        );
    }
}
