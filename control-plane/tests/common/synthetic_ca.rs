//! A CA certificate for a `SyntheticCa`, written with the shared crate's DER writer and signed
//! with the CA's own key: v3, basicConstraints cA, keyUsage keyCertSign and cRLSign, valid
//! from a month ago for ten years, no SubjectKeyIdentifier (its key identifier is then the
//! SHA-256 of its SubjectPublicKeyInfo, which the CA's CRLs name in their AKI). Used by the
//! tests and the CRL benchmark.

use certbind_shared::crl::testing::{ecdsa_with_sha256, extension, integer, sequence, time, tlv, SyntheticCa};
use certbind_shared::encoding::pem_block;

/// The certificate of `ca` under the subject `subject_der` (the CA's own name, or another
/// CA's, to make a twin of one DN), as PEM.
pub fn ca_certificate_pem(ca: &SyntheticCa, subject_der: &[u8], now: i64) -> String {
    const DAY: i64 = 86_400;
    let basic = extension(&[0x55, 0x1d, 0x13], true, &sequence(&[&tlv(0x01, &[0xff])]));
    let usage = extension(&[0x55, 0x1d, 0x0f], true, &tlv(0x03, &[0x01, 0x06]));
    let tbs = sequence(&[
        &tlv(0xa0, &integer(&[2])),
        &integer(&[0x01, 0x23]),
        &ecdsa_with_sha256(),
        subject_der,
        &sequence(&[&time(now - 30 * DAY), &time(now + 3650 * DAY)]),
        subject_der,
        &ca.certificate().spki_der,
        &tlv(0xa3, &sequence(&[&basic, &usage])),
    ]);
    pem_block("CERTIFICATE", &ca.sign(&tbs))
}
