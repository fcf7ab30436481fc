//! Headers as Envoy's dynamic modules hand them over, pairs of bytes of any content: serialized
//! for the request path (the module's adapter), they parse back to the very same pairs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certbind_shared::pairs::pairs_round_trip(data));
