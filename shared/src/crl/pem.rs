//! CRLs as PEM text, read as OpenSSL's `PEM_read_bio_X509_CRL` reads them: the first
//! `-----BEGIN X509 CRL-----` line (other text and other PEM blocks before it are skipped),
//! base64 lines up to `-----END X509 CRL-----`, and anything after that line ignored. Unlike
//! a certificate in a header, a CRL is an upload or a download that tools annotate freely
//! (`openssl crl -text` writes the decoded text above the block).

use super::{CrlError, CrlLimits};
use crate::encoding::base64_decode;
use std::borrow::Cow;

const BEGIN: &[u8] = b"-----BEGIN X509 CRL-----";
const END: &[u8] = b"-----END X509 CRL-----";

/// The DER of `bytes`: as given when they start like a DER SEQUENCE, else decoded from PEM.
pub fn crl_der<'a>(bytes: &'a [u8], limits: &CrlLimits) -> Result<Cow<'a, [u8]>, CrlError> {
    if bytes.first() == Some(&0x30) {
        Ok(Cow::Borrowed(bytes))
    } else {
        decode_crl_pem(bytes, limits).map(Cow::Owned)
    }
}

/// Lines of `text`, each without its line break (LF or CRLF) and trailing blanks.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n').map(|line| {
        let end = line.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\r')).map_or(0, |i| i + 1);
        line.get(..end).unwrap_or_default()
    })
}

/// The DER of the first X509 CRL block in `text`.
pub fn decode_crl_pem(text: &[u8], limits: &CrlLimits) -> Result<Vec<u8>, CrlError> {
    let max = limits.max_pem_bytes();
    if text.len() > max {
        return Err(CrlError::TooLarge { len: text.len(), limit: max });
    }
    let mut lines = lines(text).skip_while(|line| *line != BEGIN);
    if lines.next().is_none() {
        return Err(CrlError::Pem("no -----BEGIN X509 CRL----- line"));
    }
    let mut body = Vec::with_capacity(text.len());
    let mut ended = false;
    for line in lines {
        if line == END {
            ended = true;
            break;
        }
        if line.contains(&b':') {
            return Err(CrlError::Pem("PEM headers are not accepted in a CRL"));
        }
        body.extend(line.iter().copied().filter(|b| !matches!(b, b' ' | b'\t' | b'\r')));
    }
    if !ended {
        return Err(CrlError::Pem("no -----END X509 CRL----- line"));
    }
    if body.is_empty() {
        return Err(CrlError::Pem("empty CRL body"));
    }
    let der = base64_decode(&body).ok_or(CrlError::Pem("body is not valid base64"))?;
    if der.len() > limits.max_der_bytes {
        return Err(CrlError::TooLarge { len: der.len(), limit: limits.max_der_bytes });
    }
    Ok(der)
}

/// PEM text of a CRL, 64 base64 characters a line, as OpenSSL writes it.
pub fn encode_crl_pem(der: &[u8]) -> String {
    crate::encoding::pem_block("X509 CRL", der)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CrlLimits {
        CrlLimits::default()
    }

    #[test]
    fn text_around_the_block_is_skipped_as_openssl_does() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let pem = encode_crl_pem(&der);
        assert_eq!(pem, "-----BEGIN X509 CRL-----\nMAMCAQU=\n-----END X509 CRL-----\n");
        let annotated = format!(
            "Certificate Revocation List (CRL):\n  Version 2 (0x1)\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n{}trailing text\n",
            pem.replace('\n', "\r\n")
        );
        assert_eq!(decode_crl_pem(annotated.as_bytes(), &limits()).unwrap(), der);
        assert_eq!(crl_der(annotated.as_bytes(), &limits()).unwrap().into_owned(), der);
        assert!(matches!(crl_der(&der, &limits()).unwrap(), Cow::Borrowed(_)));
        let wrapped = "-----BEGIN X509 CRL-----  \nMA\n MC AQU=\t\n-----END X509 CRL-----";
        assert_eq!(decode_crl_pem(wrapped.as_bytes(), &limits()).unwrap(), der);
    }

    #[test]
    fn broken_pem_is_refused_with_its_reason() {
        let cases: [(&str, CrlError); 7] = [
            ("", CrlError::Pem("no -----BEGIN X509 CRL----- line")),
            ("-----BEGIN CERTIFICATE-----\nMAMCAQU=\n-----END CERTIFICATE-----\n", CrlError::Pem("no -----BEGIN X509 CRL----- line")),
            ("x -----BEGIN X509 CRL-----\nMAMCAQU=\n-----END X509 CRL-----\n", CrlError::Pem("no -----BEGIN X509 CRL----- line")),
            ("-----BEGIN X509 CRL-----\nMAMCAQU=\n", CrlError::Pem("no -----END X509 CRL----- line")),
            ("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n", CrlError::Pem("empty CRL body")),
            ("-----BEGIN X509 CRL-----\nMAMCAQ=\n-----END X509 CRL-----\n", CrlError::Pem("body is not valid base64")),
            (
                "-----BEGIN X509 CRL-----\nProc-Type: 4,ENCRYPTED\nMAMCAQU=\n-----END X509 CRL-----\n",
                CrlError::Pem("PEM headers are not accepted in a CRL"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(decode_crl_pem(text.as_bytes(), &limits()), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn pem_is_capped_before_and_after_decoding() {
        let small = CrlLimits { max_der_bytes: 3, max_entries: 1 };
        let pem = encode_crl_pem(&[0x30, 0x02, 0x05, 0x00]);
        assert_eq!(decode_crl_pem(pem.as_bytes(), &small), Err(CrlError::TooLarge { len: 4, limit: 3 }));
        let huge = vec![b' '; small.max_pem_bytes() + 1];
        assert_eq!(
            decode_crl_pem(&huge, &small),
            Err(CrlError::TooLarge { len: small.max_pem_bytes() + 1, limit: small.max_pem_bytes() })
        );
    }
}
