//! nginx's `$ssl_client_escaped_cert` and legacy `$ssl_client_cert` header forms.
#![no_main]

use certbind_shared::source::nginx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = nginx::parse_escaped(text, 96 * 1024);
    let _ = nginx::parse_legacy(text, 96 * 1024);
});
