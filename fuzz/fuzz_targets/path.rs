//! A `:path` as any client could send it: canonicalisation never panics and returns a canonical
//! path (a fixed point, no empty or dot segments, no refused escapes).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certbind_shared::decision::fuzzing::path(data));
