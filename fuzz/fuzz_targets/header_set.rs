//! A whole request header set (`:path` first, then `name:value` lines) through the decision:
//! never panics, and the outcome does not depend on how the names are cased or spelled.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certbind_shared::decision::fuzzing::header_set(data));
