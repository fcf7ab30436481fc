//! Envoy's XFCC header on arbitrary text: the grammar, then each element's Cert/Chain decoding
//! and the Hash check, as the filter runs them.
#![no_main]

use certbind_shared::source::xfcc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for element in xfcc::parse(text, 96 * 1024).unwrap_or_default() {
        let _ = element.chain_der();
        if let Ok(Some(der)) = element.cert_der() {
            let _ = element.hash_matches(&der);
        }
    }
});
