//! The proxy-wasm serialized header map the filter reads its request headers from: whatever
//! parses re-encodes to the very same bytes, and nothing else parses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certbind_shared::pairs::round_trip(data));
