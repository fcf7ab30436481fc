//! PEM framing of a single certificate, strict about what surrounds it.
//!
//! Accepted: one or more `-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----` blocks
//! with nothing but whitespace (space, tab, CR, LF) around and between them and inside the
//! base64 body. Refused: explanatory text, other labels, PEM headers, broken base64, and bodies
//! larger than a certificate may be. Files an administrator gives are read as OpenSSL reads
//! them instead, text around the blocks ignored ([`decode_certificate_pem_file`]).

use super::{CertificateError, MAX_CERTIFICATE_DER};

/// Largest PEM text accepted: a chain of [`MAX_CHAIN_CERTIFICATES`] ordinary (2–3 KiB)
/// certificates fits with room to spare; a single certificate at the DER cap needs ~22 KiB.
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// Most certificates accepted in one chain. Real chains are leaf, one or two intermediates and
/// perhaps a root; eight bounds the work without refusing any real deployment.
pub const MAX_CHAIN_CERTIFICATES: usize = 8;

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

fn is_pem_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_space(text: &[u8]) -> &[u8] {
    let start = text
        .iter()
        .position(|&b| !is_pem_space(b))
        .unwrap_or(text.len());
    text.get(start..).unwrap_or_default()
}

/// Every certificate of a PEM chain, in the order given, as DER.
pub fn decode_certificate_pem_chain(text: &[u8]) -> Result<Vec<Vec<u8>>, CertificateError> {
    if text.len() > MAX_PEM_BYTES {
        return Err(CertificateError::TooLarge {
            len: text.len(),
            limit: MAX_PEM_BYTES,
        });
    }
    let mut rest = skip_space(text);
    if rest.is_empty() {
        return Err(CertificateError::Pem(
            "no -----BEGIN CERTIFICATE----- block",
        ));
    }
    let mut certificates = Vec::new();
    while !rest.is_empty() {
        if certificates.len() == MAX_CHAIN_CERTIFICATES {
            return Err(CertificateError::Pem(
                "more certificates than a chain may hold",
            ));
        }
        rest =
            rest.strip_prefix(BEGIN)
                .ok_or(CertificateError::Pem(if certificates.is_empty() {
                    "text before -----BEGIN CERTIFICATE-----"
                } else {
                    "text after -----END CERTIFICATE-----"
                }))?;
        let (der, body_len) = decode_body_to_end(rest)?;
        let after_body = rest.get(body_len..).unwrap_or_default();
        rest = after_body.get(END.len()..).unwrap_or_default();
        certificates.push(der);
        rest = skip_space(rest);
    }
    Ok(certificates)
}

/// The first certificate of a PEM text that may carry a chain after it.
pub fn decode_certificate_pem(text: &[u8]) -> Result<Vec<u8>, CertificateError> {
    decode_certificate_pem_chain(text)?
        .into_iter()
        .next()
        .ok_or(CertificateError::Pem(
            "no -----BEGIN CERTIFICATE----- block",
        ))
}

/// Exactly one certificate: for fields documented to hold the client certificate alone
/// (XFCC `Cert=`, nginx `$ssl_client_escaped_cert`), where a second block is a sign of
/// tampering or misconfiguration.
pub fn decode_single_certificate_pem(text: &[u8]) -> Result<Vec<u8>, CertificateError> {
    let mut certificates = decode_certificate_pem_chain(text)?;
    if certificates.len() != 1 {
        return Err(CertificateError::Pem(
            "more than one certificate where one is expected",
        ));
    }
    certificates.pop().ok_or(CertificateError::Pem(
        "no -----BEGIN CERTIFICATE----- block",
    ))
}

/// Every certificate of a PEM file as OpenSSL reads one (`openssl x509 -in`, `PEM_read`): text
/// outside the blocks — the `Bag Attributes`, `subject=` and `issuer=` lines `openssl pkcs12
/// -nokeys` writes before each certificate, comments, a trailing signature line — is ignored,
/// so a file an operator exported can be given as it is. For text an administrator supplies,
/// never for a header a proxy forwards (those stay [`decode_certificate_pem_chain`]'s strict
/// framing). Still refused: more than [`MAX_PEM_BYTES`], more than [`MAX_CHAIN_CERTIFICATES`]
/// blocks, anything but base64 and whitespace inside a block (PEM headers too), a block with
/// another label (a private key has no place beside the certificate) and no certificate.
/// A block begins only at the start of a line, as OpenSSL reads it.
pub fn decode_certificate_pem_file(text: &[u8]) -> Result<Vec<Vec<u8>>, CertificateError> {
    if text.len() > MAX_PEM_BYTES {
        return Err(CertificateError::TooLarge {
            len: text.len(),
            limit: MAX_PEM_BYTES,
        });
    }
    let mut certificates = Vec::new();
    let mut rest = text;
    while let Some(at) = next_block(rest) {
        let block = rest.get(at..).unwrap_or_default();
        let Some(body) = block.strip_prefix(BEGIN) else {
            return Err(CertificateError::Pem(
                "holds a PEM block other than CERTIFICATE (a private key?): send the certificate alone",
            ));
        };
        if certificates.len() == MAX_CHAIN_CERTIFICATES {
            return Err(CertificateError::Pem(
                "more certificates than a chain may hold",
            ));
        }
        let (der, body_len) = decode_body_to_end(body)?;
        certificates.push(der);
        rest = body.get(body_len + END.len()..).unwrap_or_default();
    }
    if certificates.is_empty() {
        return Err(CertificateError::Pem(
            "no -----BEGIN CERTIFICATE----- block",
        ));
    }
    Ok(certificates)
}

/// Where the next `-----BEGIN ` is that only spaces and tabs separate from the start of its
/// line (or of `text`, which begins where the last block ended): OpenSSL's line start, and
/// whatever the strict framing accepts too (indented blocks, a block right after an END).
fn next_block(text: &[u8]) -> Option<usize> {
    const BEGIN_ANY: &[u8] = b"-----BEGIN ";
    let mut at_line_start = true;
    for (at, &byte) in text.iter().enumerate() {
        if at_line_start && byte == b'-' && text.get(at..).is_some_and(|rest| rest.starts_with(BEGIN_ANY)) {
            return Some(at);
        }
        at_line_start = match byte {
            b'\n' => true,
            b' ' | b'\t' | b'\r' => at_line_start,
            _ => false,
        };
    }
    None
}

/// What a byte of a PEM body is: a base64 digit's value (0–63), or one of these.
const PEM_SPACE: u8 = 0xfe;
const PEM_PAD: u8 = 0xfd;
const NOT_BASE64: u8 = 0xff;

/// Standard base64 digits, PEM whitespace and `=`, looked up in one step per byte.
const PEM_BODY_BYTES: [u8; 256] = {
    let mut table = [NOT_BASE64; 256];
    let digits = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < digits.len() {
        table[digits[i] as usize] = i as u8;
        i += 1;
    }
    table[b' ' as usize] = PEM_SPACE;
    table[b'\t' as usize] = PEM_SPACE;
    table[b'\r' as usize] = PEM_SPACE;
    table[b'\n' as usize] = PEM_SPACE;
    table[b'=' as usize] = PEM_PAD;
    table
};

/// The three bytes four base64 digits (values 0–63) spell.
fn group_bytes([a, b, c, d]: [u8; 4]) -> [u8; 3] {
    [(a << 2) | (b >> 4), (b << 4) | (c >> 2), (c << 6) | d]
}

/// Decodes a PEM body in one pass: whitespace anywhere is skipped, anything else must be
/// standard base64 in whole four-digit groups, `=` padding only to complete the last group,
/// and the bits padding leaves over must be zero (base64's canonical form, so one DER has
/// exactly one body).
#[cfg(test)]
fn decode_body(body: &[u8]) -> Result<Vec<u8>, CertificateError> {
    let mut text = body.to_vec();
    text.extend_from_slice(END);
    decode_body_to_end(&text).map(|(der, _)| der)
}

/// [`decode_body`] over the text up to the END line, found in the same pass (scanning for it
/// separately cost as much as decoding). Returns the DER and where the END line starts. The
/// problems are reported in a fixed order whatever their position: no END line, a character
/// outside base64, an empty body, broken base64, then size.
fn decode_body_to_end(text: &[u8]) -> Result<(Vec<u8>, usize), CertificateError> {
    let mut der = Vec::with_capacity(text.len() / 4 * 3);
    let mut group = [0u8; 4];
    let (mut filled, mut padding, mut digits) = (0usize, 0usize, 0usize);
    let (mut outside, mut invalid) = (false, false);
    let mut rest = text;
    let end_at = loop {
        // Whole groups of four digits, the bulk of every line, in one step each.
        if let ([a, b, c, d, ..], 0, 0) = (rest, filled, padding) {
            let (a, b, c, d) = (
                PEM_BODY_BYTES[usize::from(*a)],
                PEM_BODY_BYTES[usize::from(*b)],
                PEM_BODY_BYTES[usize::from(*c)],
                PEM_BODY_BYTES[usize::from(*d)],
            );
            if (a | b | c | d) < 64 {
                der.extend_from_slice(&group_bytes([a, b, c, d]));
                digits += 4;
                rest = rest.get(4..).unwrap_or_default();
                continue;
            }
        }
        let Some((&byte, after)) = rest.split_first() else {
            return Err(CertificateError::Pem("no -----END CERTIFICATE----- line"));
        };
        if byte == b'-' && rest.starts_with(END) {
            break text.len() - rest.len();
        }
        rest = after;
        match PEM_BODY_BYTES[usize::from(byte)] {
            PEM_SPACE => {}
            NOT_BASE64 => outside = true,
            // Padding completes a group holding two or three digits, and nothing follows it.
            PEM_PAD if filled < 2 || filled + padding >= 4 => invalid = true,
            PEM_PAD => padding += 1,
            _ if padding > 0 => invalid = true,
            value => {
                group[filled] = value;
                filled += 1;
                digits += 1;
                if filled == 4 {
                    der.extend_from_slice(&group_bytes(group));
                    filled = 0;
                }
            }
        }
    };
    if outside {
        return Err(CertificateError::Pem("character outside base64 in the body"));
    }
    if digits == 0 {
        return Err(CertificateError::Pem("empty certificate body"));
    }
    const INVALID: CertificateError = CertificateError::Pem("body is not valid base64");
    // A padded last group yields the bytes its digits fill; the bits left over must be zero.
    let last = group_bytes(group);
    match (invalid, filled, padding) {
        (false, 0, 0) => {}
        (false, 2, 2) if group[1] & 0x0f == 0 => der.extend_from_slice(&last[..1]),
        (false, 3, 1) if group[2] & 0x03 == 0 => der.extend_from_slice(&last[..2]),
        _ => return Err(INVALID),
    }
    if der.len() > MAX_CERTIFICATE_DER {
        return Err(CertificateError::TooLarge { len: der.len(), limit: MAX_CERTIFICATE_DER });
    }
    Ok((der, end_at))
}

/// PEM text of one certificate, 64 base64 characters a line, LF line ends.
pub fn encode_certificate_pem(der: &[u8]) -> String {
    crate::encoding::pem_block("CERTIFICATE", der)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body as the base64 crate reads it once whitespace is removed: the reference.
    fn reference_body(body: &[u8]) -> Option<Vec<u8>> {
        let compact: Vec<u8> = body.iter().copied().filter(|b| !is_pem_space(*b)).collect();
        if compact.is_empty() {
            return None;
        }
        crate::encoding::base64_decode(&compact)
    }

    /// Same bytes as the base64 crate, or refused where it refuses, on bodies drawn from
    /// digits, whitespace, `=` and a few foreign bytes, in every length up to a few groups.
    #[test]
    fn body_decoder_agrees_with_the_base64_crate() {
        let alphabet = b"AQgw+/09Zz==  \n\r\t-.%\x00";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let (mut decoded, mut refused) = (0, 0);
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 14) as usize;
            let body: Vec<u8> =
                (0..len).map(|i| alphabet[((state >> (4 + 4 * i)) % alphabet.len() as u64) as usize]).collect();
            match (decode_body(&body), reference_body(&body)) {
                (Ok(ours), Some(theirs)) => {
                    assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&body));
                    decoded += 1;
                }
                (Err(_), None) => refused += 1,
                (ours, theirs) => panic!("{:?}: ours {ours:?}, base64 {theirs:?}", String::from_utf8_lossy(&body)),
            }
        }
        assert!(decoded > 1000 && refused > 1000, "decoded {decoded}, refused {refused}");
        // A real certificate's body, wrapped at 64 columns.
        let pem = include_str!("../../../tests/pki/piv-auth.pem");
        let body = pem.trim().strip_prefix("-----BEGIN CERTIFICATE-----").unwrap().strip_suffix("-----END CERTIFICATE-----").unwrap();
        assert_eq!(decode_body(body.as_bytes()).ok(), reference_body(body.as_bytes()));
    }

    const PIV_AUTH_PEM: &str = include_str!("../../../tests/pki/piv-auth.pem");
    const CA_BUNDLE_PEM: &str = include_str!("../../../tests/pki/ca-bundle.pem");
    const ROOT_PEM: &str = include_str!("../../../tests/pki/root-ca.pem");
    const ISSUING_PEM: &str = include_str!("../../../tests/pki/piv-issuing-ca.pem");

    fn piv_der() -> Vec<u8> {
        decode_certificate_pem(PIV_AUTH_PEM.as_bytes()).unwrap()
    }

    #[test]
    fn encode_then_decode_is_identity_and_matches_openssl_layout() {
        let der = piv_der();
        let encoded = encode_certificate_pem(&der);
        assert_eq!(
            encoded, PIV_AUTH_PEM,
            "openssl writes the same 64-column layout"
        );
        assert_eq!(decode_certificate_pem(encoded.as_bytes()).unwrap(), der);
    }

    #[test]
    fn whitespace_variants_decode_to_the_same_der() {
        let der = piv_der();
        let crlf = PIV_AUTH_PEM.replace('\n', "\r\n");
        let tab_folded = PIV_AUTH_PEM.trim_end().replace('\n', "\n\t");
        let one_line = PIV_AUTH_PEM.replace('\n', " ");
        let padded = format!(" \n\t{PIV_AUTH_PEM}\n\n  ");
        for text in [crlf, tab_folded, one_line, padded] {
            assert_eq!(decode_certificate_pem(text.as_bytes()).unwrap(), der);
        }
    }

    #[test]
    fn chains_decode_in_order_and_single_refuses_them() {
        let chain = decode_certificate_pem_chain(CA_BUNDLE_PEM.as_bytes()).unwrap();
        let root = decode_certificate_pem(ROOT_PEM.as_bytes()).unwrap();
        let issuing = decode_certificate_pem(ISSUING_PEM.as_bytes()).unwrap();
        assert_eq!(chain, vec![root.clone(), issuing]);
        assert_eq!(
            decode_certificate_pem(CA_BUNDLE_PEM.as_bytes()).unwrap(),
            root
        );
        assert_eq!(
            decode_single_certificate_pem(CA_BUNDLE_PEM.as_bytes()),
            Err(CertificateError::Pem(
                "more than one certificate where one is expected"
            ))
        );
        assert_eq!(
            decode_single_certificate_pem(ROOT_PEM.as_bytes()).unwrap(),
            root
        );
    }

    #[test]
    fn malformed_pem_is_refused_with_its_reason() {
        let body_start = PIV_AUTH_PEM.find('\n').unwrap() + 1;
        let cases: Vec<(String, CertificateError)> = vec![
            (
                String::new(),
                CertificateError::Pem("no -----BEGIN CERTIFICATE----- block"),
            ),
            (
                " \r\n\t".into(),
                CertificateError::Pem("no -----BEGIN CERTIFICATE----- block"),
            ),
            (
                format!("subject=CN=x\n{PIV_AUTH_PEM}"),
                CertificateError::Pem("text before -----BEGIN CERTIFICATE-----"),
            ),
            (
                format!("{PIV_AUTH_PEM}trailing"),
                CertificateError::Pem("text after -----END CERTIFICATE-----"),
            ),
            (
                PIV_AUTH_PEM.replace("BEGIN CERTIFICATE", "BEGIN X509 CERTIFICATE"),
                CertificateError::Pem("text before -----BEGIN CERTIFICATE-----"),
            ),
            (
                PIV_AUTH_PEM.replace("-----END CERTIFICATE-----\n", ""),
                CertificateError::Pem("no -----END CERTIFICATE----- line"),
            ),
            (
                PIV_AUTH_PEM.replace("END CERTIFICATE", "END CERT"),
                CertificateError::Pem("no -----END CERTIFICATE----- line"),
            ),
            (
                format!("{}{PIV_AUTH_PEM}", &PIV_AUTH_PEM[..body_start]),
                CertificateError::Pem("character outside base64 in the body"),
            ),
            (
                format!(
                    "{}Proc-Type: 4,ENCRYPTED\n{}",
                    &PIV_AUTH_PEM[..body_start],
                    &PIV_AUTH_PEM[body_start..]
                ),
                CertificateError::Pem("character outside base64 in the body"),
            ),
            (
                format!(
                    "{}%{}",
                    &PIV_AUTH_PEM[..body_start],
                    &PIV_AUTH_PEM[body_start..]
                ),
                CertificateError::Pem("character outside base64 in the body"),
            ),
            (
                format!(
                    "{}A{}",
                    &PIV_AUTH_PEM[..body_start],
                    &PIV_AUTH_PEM[body_start..]
                ),
                CertificateError::Pem("body is not valid base64"),
            ),
            (
                "-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n".into(),
                CertificateError::Pem("empty certificate body"),
            ),
            (
                "-----BEGIN CERTIFICATE-----\nQQ=\n-----END CERTIFICATE-----\n".into(),
                CertificateError::Pem("body is not valid base64"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                decode_certificate_pem_chain(text.as_bytes()),
                Err(expected),
                "{text:?}"
            );
        }
    }

    #[test]
    fn size_and_count_caps_hold() {
        let huge = " ".repeat(MAX_PEM_BYTES + 1);
        assert_eq!(
            decode_certificate_pem(huge.as_bytes()),
            Err(CertificateError::TooLarge {
                len: MAX_PEM_BYTES + 1,
                limit: MAX_PEM_BYTES
            })
        );
        let oversized_der = vec![0x30u8; MAX_CERTIFICATE_DER + 1];
        assert_eq!(
            decode_certificate_pem(encode_certificate_pem(&oversized_der).as_bytes()),
            Err(CertificateError::TooLarge {
                len: MAX_CERTIFICATE_DER + 1,
                limit: MAX_CERTIFICATE_DER
            })
        );
        let small = encode_certificate_pem(&[0x30, 0x00]);
        let at_cap = small.repeat(MAX_CHAIN_CERTIFICATES);
        assert_eq!(
            decode_certificate_pem_chain(at_cap.as_bytes())
                .unwrap()
                .len(),
            MAX_CHAIN_CERTIFICATES
        );
        let over_cap = small.repeat(MAX_CHAIN_CERTIFICATES + 1);
        assert_eq!(
            decode_certificate_pem_chain(over_cap.as_bytes()),
            Err(CertificateError::Pem(
                "more certificates than a chain may hold"
            ))
        );
    }

    const JANE: &str = include_str!("../../../tests/pki/piv-auth.pem");
    const CAC: &str = include_str!("../../../tests/pki/cac.pem");

    /// `openssl pkcs12 -nokeys` output: bag attributes and OpenSSL's subject and issuer lines
    /// before each block.
    fn bagged(pem: &str, name: &str) -> String {
        format!(
            "Bag Attributes\n    friendlyName: {name}\n    localKeyID: CE 00 E4 42 0F 0A 79 74 \n\
             subject=C = US, O = U.S. Government, CN = {name}\nissuer=C = US, O = certbind, CN = CA\n{pem}"
        )
    }

    #[test]
    fn a_file_is_read_as_openssl_reads_it() {
        let jane = decode_certificate_pem(JANE.as_bytes()).unwrap();
        let cac = decode_certificate_pem(CAC.as_bytes()).unwrap();
        let file = |text: &str| decode_certificate_pem_file(text.as_bytes());
        assert_eq!(file(&bagged(JANE, "Jane")), Ok(vec![jane.clone()]));
        assert_eq!(file(JANE), Ok(vec![jane.clone()]));
        assert_eq!(file(&format!("{}trailing words, and no newline", bagged(JANE, "Jane"))), Ok(vec![jane.clone()]));
        assert_eq!(file(&bagged(JANE, "Jane").replace('\n', "\r\n")), Ok(vec![jane.clone()]));
        // A chain as pkcs12 writes one: each block behind its own attributes.
        assert_eq!(file(&format!("{}{}", bagged(JANE, "Jane"), bagged(CAC, "CAC"))), Ok(vec![jane.clone(), cac]));
        // The strict reader, for forwarded headers, still refuses the text.
        assert_eq!(
            decode_certificate_pem_chain(bagged(JANE, "Jane").as_bytes()),
            Err(CertificateError::Pem("text before -----BEGIN CERTIFICATE-----"))
        );
    }

    #[test]
    fn a_file_still_refuses_what_is_not_one_certificate_block() {
        let file = |text: &str| decode_certificate_pem_file(text.as_bytes());
        let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            file(&format!("{}{key}", bagged(JANE, "Jane"))),
            Err(CertificateError::Pem("holds a PEM block other than CERTIFICATE (a private key?): send the certificate alone"))
        );
        let mut garbled = JANE.to_owned();
        garbled.insert_str(JANE.find('\n').unwrap() + 10, "<garbage>");
        assert_eq!(file(&garbled), Err(CertificateError::Pem("character outside base64 in the body")));
        let header = JANE.replacen("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1);
        assert_eq!(file(&header), Err(CertificateError::Pem("character outside base64 in the body")));
        let no_block = "Bag Attributes\n  see -----BEGIN CERTIFICATE----- below\n";
        // What the strict framing accepts, the file reader reads alike: indented blocks, and
        // one right after another's END.
        let indented = format!("  \t{}", JANE.trim_end().replace("-----END CERTIFICATE-----", "-----END CERTIFICATE----- ") + JANE);
        assert_eq!(file(&indented), decode_certificate_pem_chain(indented.as_bytes()));
        assert_eq!(file(&indented).map(|c| c.len()), Ok(2));
        assert_eq!(file(no_block), Err(CertificateError::Pem("no -----BEGIN CERTIFICATE----- block")));
        assert_eq!(file(""), Err(CertificateError::Pem("no -----BEGIN CERTIFICATE----- block")));
        let unterminated = JANE.replace("-----END CERTIFICATE-----", "");
        assert_eq!(file(&unterminated), Err(CertificateError::Pem("no -----END CERTIFICATE----- line")));
        let padded = format!("{}{}", "x".repeat(MAX_PEM_BYTES), JANE);
        assert_eq!(file(&padded), Err(CertificateError::TooLarge { len: padded.len(), limit: MAX_PEM_BYTES }));
        let many = bagged(JANE, "Jane").repeat(MAX_CHAIN_CERTIFICATES + 1);
        assert_eq!(file(&many), Err(CertificateError::Pem("more certificates than a chain may hold")));
    }
}
