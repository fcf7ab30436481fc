//! Certificate facts from arbitrary bytes, read as DER and, failing that, as PEM (the seed
//! corpus is the PEM test PKI, so both paths start from real certificates). The request
//! path's borrowed walk must never accept what x509-cert's full decoder refuses, and must
//! read the same facts from what both accept.
#![no_main]

use certbind_shared::certificate::{reference, CertificateFacts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(facts) = CertificateFacts::from_der(data) {
        match reference::facts_by_full_decode(data) {
            Ok(expected) => assert_eq!(facts, expected, "the walk and x509-cert read different facts"),
            Err(e) => panic!("the walk accepted a certificate x509-cert refuses: {e}"),
        }
    }
    let _ = CertificateFacts::from_pem(data);
});
