//! Traefik's `X-Forwarded-Tls-Client-Cert` (middleware `passTLSClientCert` with `pem: true`):
//! the verified chain, leaf first, each certificate's base64 DER without PEM delimiters or line
//! breaks, joined by `,`. Traefik before v3 also URL-escaped each certificate (`+` `/` `=` as
//! `%2B` `%2F` `%3D`); both forms are accepted. A literal `+` stays `+`: base64 has no spaces.

use super::SourceError;
use crate::certificate::pem::MAX_CHAIN_CERTIFICATES;
use crate::certificate::{CertificateError, MAX_CERTIFICATE_DER};
use crate::encoding::{base64_decode, percent_decode, PercentError};

/// The leaf certificate's DER, from a value of at most `limit` bytes.
pub fn parse(value: &str, limit: usize) -> Result<Vec<u8>, SourceError> {
    parse_chain(value, limit)?
        .into_iter()
        .next()
        .ok_or_else(|| SourceError::Malformed("empty certificate header".to_owned()))
}

/// Every certificate of the header, leaf first, as DER.
pub fn parse_chain(value: &str, limit: usize) -> Result<Vec<Vec<u8>>, SourceError> {
    if value.len() > limit {
        return Err(SourceError::Oversized { len: value.len(), limit });
    }
    let mut certificates = Vec::new();
    let mut offset = 0;
    for element in value.split(',') {
        if certificates.len() == MAX_CHAIN_CERTIFICATES {
            return Err(SourceError::Malformed(format!(
                "more than {MAX_CHAIN_CERTIFICATES} certificates in the header"
            )));
        }
        let element_start = offset;
        offset += element.len() + 1;
        // HTTP list syntax allows spaces and tabs around each member.
        let leading = element.len() - element.trim_start_matches([' ', '\t']).len();
        let trimmed = element.trim_matches([' ', '\t']);
        let start = element_start + leading;
        if trimmed.is_empty() {
            return Err(SourceError::Malformed(format!(
                "empty certificate at byte {start}"
            )));
        }
        // The decoded text is never longer than the header, which is already capped.
        let base64 =
            percent_decode(trimmed.as_bytes(), limit).map_err(|e| match e {
                PercentError::BadEscape { at } => {
                    SourceError::Malformed(format!("bad percent escape at byte {}", start + at))
                }
                PercentError::TooLong { limit } => {
                    SourceError::Malformed(format!("certificate longer than {limit} bytes"))
                }
            })?;
        let der = base64_decode(&base64).ok_or_else(|| {
            SourceError::Malformed(format!("certificate at byte {start} is not base64"))
        })?;
        if der.len() > MAX_CERTIFICATE_DER {
            return Err(CertificateError::TooLarge {
                len: der.len(),
                limit: MAX_CERTIFICATE_DER,
            }
            .into());
        }
        certificates.push(der);
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::pem::decode_certificate_pem;
    use crate::encoding::base64_encode;
    use crate::source::DEFAULT_MAX_HEADER_BYTES;

    fn parse(value: &str) -> Result<Vec<u8>, SourceError> {
        super::parse(value, DEFAULT_MAX_HEADER_BYTES)
    }

    fn parse_chain(value: &str) -> Result<Vec<Vec<u8>>, SourceError> {
        super::parse_chain(value, DEFAULT_MAX_HEADER_BYTES)
    }

    const SERVICE_PEM: &str = include_str!("../../../tests/pki/service.pem");
    const ISSUING_PEM: &str = include_str!("../../../tests/pki/piv-issuing-ca.pem");

    fn der(pem: &str) -> Vec<u8> {
        decode_certificate_pem(pem.as_bytes()).unwrap()
    }

    /// What Go's url.QueryEscape does to base64 text.
    fn query_escape(text: &str) -> String {
        text.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    }

    #[test]
    fn plain_and_escaped_chains_decode_leaf_first() {
        let leaf = der(SERVICE_PEM);
        let issuing = der(ISSUING_PEM);
        let plain = format!("{},{}", base64_encode(&leaf), base64_encode(&issuing));
        assert_eq!(parse(&plain).unwrap(), leaf);
        assert_eq!(
            parse_chain(&plain).unwrap(),
            vec![leaf.clone(), issuing.clone()]
        );
        let escaped = format!(
            "{},{}",
            query_escape(&base64_encode(&leaf)),
            query_escape(&base64_encode(&issuing))
        );
        assert_ne!(escaped, plain);
        assert_eq!(parse_chain(&escaped).unwrap(), vec![leaf.clone(), issuing]);
        assert_eq!(parse(&format!(" {} ", base64_encode(&leaf))).unwrap(), leaf);
    }

    #[test]
    fn malformed_values_map_to_exact_errors() {
        let leaf = base64_encode(&der(SERVICE_PEM));
        let cases: Vec<(String, SourceError)> = vec![
            (
                String::new(),
                SourceError::Malformed("empty certificate at byte 0".into()),
            ),
            (
                format!("{leaf},"),
                SourceError::Malformed(format!("empty certificate at byte {}", leaf.len() + 1)),
            ),
            (
                format!(",{leaf}"),
                SourceError::Malformed("empty certificate at byte 0".into()),
            ),
            (
                format!("{leaf}, ,{leaf}"),
                SourceError::Malformed(format!("empty certificate at byte {}", leaf.len() + 2)),
            ),
            (
                "MII%zz".into(),
                SourceError::Malformed("bad percent escape at byte 3".into()),
            ),
            (
                format!("{leaf}, -----BEGIN"),
                SourceError::Malformed(format!(
                    "certificate at byte {} is not base64",
                    leaf.len() + 2
                )),
            ),
            (
                leaf[1..].to_string(),
                SourceError::Malformed("certificate at byte 0 is not base64".into()),
            ),
            (
                "a".repeat(DEFAULT_MAX_HEADER_BYTES + 1),
                SourceError::Oversized {
                    len: DEFAULT_MAX_HEADER_BYTES + 1,
                    limit: DEFAULT_MAX_HEADER_BYTES,
                },
            ),
            (
                base64_encode(&vec![0u8; MAX_CERTIFICATE_DER + 3]),
                SourceError::Certificate(CertificateError::TooLarge {
                    len: MAX_CERTIFICATE_DER + 3,
                    limit: MAX_CERTIFICATE_DER,
                }),
            ),
            (
                ["MAA="; MAX_CHAIN_CERTIFICATES + 1].join(","),
                SourceError::Malformed("more than 8 certificates in the header".into()),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(parse(&value), Err(expected), "{:?}", value.get(..40));
        }
    }
}
