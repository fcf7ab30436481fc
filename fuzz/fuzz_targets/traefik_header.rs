//! Traefik's `X-Forwarded-Tls-Client-Cert` header.
#![no_main]

use certbind_shared::source::traefik;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = traefik::parse_chain(text, 96 * 1024);
});
