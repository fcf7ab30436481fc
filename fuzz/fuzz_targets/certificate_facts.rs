//! Certificate facts from arbitrary bytes, read as DER and, failing that, as PEM (the seed
//! corpus is the PEM test PKI, so both paths start from real certificates). The request
//! path's borrowed walk must never accept what x509-cert's full decoder refuses, and must
//! read the same facts from what both accept. A PEM file read as OpenSSL reads one (text
//! around the blocks ignored) must give every certificate the strict framing gives, and the
//! facts of a card must be derivable from whatever facts are read.
#![no_main]

use certbind_shared::certificate::{pem, reference, CardFacts, CardFact, CertificateFacts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(facts) = CertificateFacts::from_der(data) {
        match reference::facts_by_full_decode(data) {
            Ok(expected) => assert_eq!(facts, expected, "the walk and x509-cert read different facts"),
            Err(e) => panic!("the walk accepted a certificate x509-cert refuses: {e}"),
        }
    }
    if let Ok(facts) = CertificateFacts::from_pem(data) {
        let _ = CardFacts::of(&facts);
        for fact in CardFact::ALL {
            let _ = fact.value(&facts);
        }
    }
    if let Ok(strict) = pem::decode_certificate_pem_chain(data) {
        assert_eq!(pem::decode_certificate_pem_file(data).ok(), Some(strict), "the file reader refused or changed a strict PEM");
    }
});
