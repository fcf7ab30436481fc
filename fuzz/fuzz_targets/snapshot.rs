//! The snapshot reader on arbitrary bytes, and on damage to the committed format-3 vector:
//! header, digests, every record check, lookups, and the encoder's agreement with the reader
//! (`certbind_shared::snapshot::exercise`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certbind_shared::snapshot::exercise::snapshot_bytes(data));
