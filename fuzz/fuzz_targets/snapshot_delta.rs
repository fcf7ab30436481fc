//! Delta chains applied to the committed format-3 vector: arbitrary bytes, and damage to the
//! committed delta (`certbind_shared::snapshot::exercise::delta_chain`). Whatever applies
//! must verify as the snapshot its signed header names.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certbind_shared::snapshot::exercise::delta_chain(data));
