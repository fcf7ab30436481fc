//! Headers in pairs of bytes of any content, as Envoy's dynamic modules hand them over:
//! serialized in the proxy-wasm map format (the form the request path reads from the wasm host
//! and from test doubles), they parse back to the very same pairs. The dynamic module itself
//! lends the request path Envoy's pairs as they are.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certbind_shared::pairs::pairs_round_trip(data));
