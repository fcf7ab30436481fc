//! The CRL reader on arbitrary bytes, DER or PEM: it must never panic, never accept what
//! x509-cert's full decoder refuses, and read the same entries, serials and dates as it does
//! (`certbind_shared::crl::reference`). Seeded with the committed CRL vectors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certbind_shared::crl::reference::exercise(data));
