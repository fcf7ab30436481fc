//! Certificate headers as proxies write them, for tests and benchmarks of every crate: one
//! encoder, so no test reads a header its proxy could not have sent.

/// Percent-encodes everything but RFC 3986 unreserved characters, as Envoy encodes XFCC's
/// `Cert` and NGINX `$ssl_client_escaped_cert`.
pub fn percent_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// The XFCC element Envoy writes for the client certificate `pem` whose SHA-256 is `hex`: the
/// two fields the filter reads.
pub fn xfcc_element(hex: &str, pem: &str) -> String {
    format!("Hash={hex};Cert=\"{}\"", percent_encode(pem.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_characters_pass_and_the_decoder_reverses_it() {
        assert_eq!(percent_encode(b"A-z._~ \n/+=\xff"), "A-z._~%20%0A%2F%2B%3D%FF");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(crate::encoding::percent_decode(percent_encode(&all).as_bytes(), 1024).unwrap(), all);
    }
}
