//! Certificate headers set by an nginx tier: `$ssl_client_escaped_cert` (URL-encoded PEM) and
//! the older `$ssl_client_cert` (PEM with every line after the first prefixed by a tab, which
//! may arrive unfolded into spaces).

use super::SourceError;
use crate::certificate::pem::{decode_single_certificate_pem, MAX_PEM_BYTES};
use crate::encoding::{percent_decode, PercentError};

fn check_size(value: &str, limit: usize) -> Result<(), SourceError> {
    if value.len() > limit {
        return Err(SourceError::Oversized { len: value.len(), limit });
    }
    Ok(())
}

/// The leaf DER from a `$ssl_client_escaped_cert` value of at most `limit` bytes.
pub fn parse_escaped(value: &str, limit: usize) -> Result<Vec<u8>, SourceError> {
    check_size(value, limit)?;
    let pem = percent_decode(value.as_bytes(), MAX_PEM_BYTES).map_err(|e| match e {
        PercentError::BadEscape { at } => SourceError::Malformed(format!(
            "bad percent escape in certificate header at byte {at}"
        )),
        PercentError::TooLong { limit } => {
            SourceError::Malformed(format!("certificate header longer than {limit} bytes"))
        }
    })?;
    Ok(decode_single_certificate_pem(&pem)?)
}

/// The leaf DER from a legacy `$ssl_client_cert` value. The PEM reader already tolerates the
/// tabs and spaces this form adds between lines; what remains is to refuse anything that is
/// not a single PEM certificate.
pub fn parse_legacy(value: &str, limit: usize) -> Result<Vec<u8>, SourceError> {
    check_size(value, limit)?;
    Ok(decode_single_certificate_pem(value.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::pem::decode_certificate_pem;
    use crate::certificate::CertificateError;
    use crate::source::DEFAULT_MAX_HEADER_BYTES;

    fn parse_escaped(value: &str) -> Result<Vec<u8>, SourceError> {
        super::parse_escaped(value, DEFAULT_MAX_HEADER_BYTES)
    }

    fn parse_legacy(value: &str) -> Result<Vec<u8>, SourceError> {
        super::parse_legacy(value, DEFAULT_MAX_HEADER_BYTES)
    }

    const CAC_PEM: &str = include_str!("../../../tests/pki/cac.pem");
    const CA_BUNDLE_PEM: &str = include_str!("../../../tests/pki/ca-bundle.pem");

    fn cac_der() -> Vec<u8> {
        decode_certificate_pem(CAC_PEM.as_bytes()).unwrap()
    }

    /// nginx escapes with `ngx_escape_uri(..., NGX_ESCAPE_URI_COMPONENT)`: everything but
    /// unreserved characters becomes %XX.
    fn nginx_escape(text: &str) -> String {
        text.bytes()
            .map(|c| match c {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(c).to_string()
                }
                _ => format!("%{c:02X}"),
            })
            .collect()
    }

    #[test]
    fn escaped_cert_decodes_to_the_leaf() {
        assert_eq!(parse_escaped(&nginx_escape(CAC_PEM)).unwrap(), cac_der());
        // Lowercase hex escapes decode too.
        let lowercase_escapes = ["%0A", "%20", "%2B", "%2F", "%3D"]
            .iter()
            .fold(nginx_escape(CAC_PEM), |text, escape| {
                text.replace(escape, &escape.to_lowercase())
            });
        assert_ne!(lowercase_escapes, nginx_escape(CAC_PEM));
        assert_eq!(parse_escaped(&lowercase_escapes).unwrap(), cac_der());
    }

    #[test]
    fn legacy_tab_folded_and_unfolded_forms_decode() {
        let folded = CAC_PEM.trim_end().replace('\n', "\n\t");
        assert_eq!(parse_legacy(&folded).unwrap(), cac_der());
        let unfolded = CAC_PEM.trim_end().replace('\n', " ");
        assert_eq!(parse_legacy(&unfolded).unwrap(), cac_der());
        let unfolded_with_tabs = CAC_PEM.trim_end().replace('\n', " \t");
        assert_eq!(parse_legacy(&unfolded_with_tabs).unwrap(), cac_der());
    }

    #[test]
    fn malformed_values_map_to_exact_errors() {
        let oversized = "%41".repeat(DEFAULT_MAX_HEADER_BYTES / 3 + 1);
        assert_eq!(
            parse_escaped(&oversized),
            Err(SourceError::Oversized {
                len: oversized.len(),
                limit: DEFAULT_MAX_HEADER_BYTES
            })
        );
        assert_eq!(
            parse_legacy(&oversized),
            Err(SourceError::Oversized {
                len: oversized.len(),
                limit: DEFAULT_MAX_HEADER_BYTES
            })
        );
        assert_eq!(
            parse_escaped("-----BEGIN%20CERTIFICATE%2"),
            Err(SourceError::Malformed(
                "bad percent escape in certificate header at byte 24".to_owned()
            ))
        );
        assert_eq!(
            parse_escaped(&nginx_escape(CA_BUNDLE_PEM)),
            Err(SourceError::Certificate(CertificateError::Pem(
                "more than one certificate where one is expected"
            )))
        );
        assert_eq!(
            parse_legacy(&nginx_escape(CAC_PEM)),
            Err(SourceError::Certificate(CertificateError::Pem(
                "text before -----BEGIN CERTIFICATE-----"
            )))
        );
        assert_eq!(
            parse_legacy(&format!("{} trailing", CAC_PEM.trim_end())),
            Err(SourceError::Certificate(CertificateError::Pem(
                "text after -----END CERTIFICATE-----"
            )))
        );
        assert_eq!(
            parse_legacy(""),
            Err(SourceError::Certificate(CertificateError::Pem(
                "no -----BEGIN CERTIFICATE----- block"
            )))
        );
    }
}
