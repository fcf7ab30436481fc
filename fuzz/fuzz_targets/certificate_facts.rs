//! Certificate facts from arbitrary bytes, read as DER and, failing that, as PEM (the seed
//! corpus is the PEM test PKI, so both paths start from real certificates).
#![no_main]

use certbind_shared::certificate::CertificateFacts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = CertificateFacts::from_der(data).or_else(|_| CertificateFacts::from_pem(data));
});
