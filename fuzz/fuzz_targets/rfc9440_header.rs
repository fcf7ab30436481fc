//! RFC 9440 `Client-Cert` and `Client-Cert-Chain` headers.
#![no_main]

use certbind_shared::source::rfc9440;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = rfc9440::parse_client_cert(text, 96 * 1024);
    let _ = rfc9440::parse_client_cert_chain(text, 96 * 1024);
});
