//! The CRL reader held to x509-cert's owned decoder of the whole `CertificateList`, for the
//! `crl` fuzz target (feature `x509-reference`) and the unit tests. Not used otherwise: the
//! owned decoder copies every entry into the heap.

use super::{crl_der, Crl, CrlLimits, RevokedSerials};
use crate::certificate::CaCertificate;
use der::{Decode, Reader, SliceReader};
use std::sync::OnceLock;
use x509_cert::crl::CertificateList;

/// The test PKI's issuing CA, whose committed CRLs seed the fuzzer: what it signs (or a
/// fuzzer's copy of its signed bytes) reaches the verifier and the serial set.
const ISSUING_CA: &[u8] = include_bytes!("../../../tests/pki/piv-issuing-ca.pem");

/// Its complete CRL number 10, the base deltas are folded onto.
const BASE_CRL: &[u8] = include_bytes!("../../tests/vectors/crl/p256-piv-issuing-ca-number-10.crl.der");

fn issuing_ca() -> Option<&'static CaCertificate> {
    static CA: OnceLock<Option<CaCertificate>> = OnceLock::new();
    CA.get_or_init(|| CaCertificate::from_pem(ISSUING_CA).ok()).as_ref()
}

/// `data` as DER or PEM through the reader, x509-cert's decoder, the verifier and the serial
/// set. Never panics on its own account; panics (for the fuzzer) when the reader accepts
/// what x509-cert refuses, reads other entries, serials or dates than it does, or the serial
/// set loses a serial.
pub fn exercise(data: &[u8]) {
    let limits = CrlLimits::default();
    if let Ok(der) = crl_der(data, &limits) {
        compare(&der, &limits);
    }
}

fn full_decode(der: &[u8]) -> Result<CertificateList, der::Error> {
    let mut reader = SliceReader::new(der)?;
    let list = CertificateList::decode(&mut reader)?;
    reader.finish(list)
}

// A disagreement between the reader and x509-cert is a finding: the fuzzer needs it to crash.
#[allow(clippy::panic)]
fn compare(der: &[u8], limits: &CrlLimits) {
    let Ok(crl) = Crl::from_der(der, limits) else {
        return;
    };
    let entries: Vec<_> = crl.entries().collect();
    assert_eq!(entries.len(), crl.entry_count(), "iteration read another number of entries than the check");
    let list = match full_decode(der) {
        Ok(list) => list,
        Err(e) => panic!("the reader accepted a CRL x509-cert refuses: {e}"),
    };
    let tbs = &list.tbs_cert_list;
    let seconds = |t: &x509_cert::time::Time| i64::try_from(t.to_unix_duration().as_secs()).ok();
    assert_eq!(Some(crl.this_update()), seconds(&tbs.this_update), "thisUpdate");
    assert_eq!(crl.next_update(), tbs.next_update.as_ref().and_then(seconds), "nextUpdate");
    let theirs = tbs.revoked_certificates.as_deref().unwrap_or_default();
    assert_eq!(entries.len(), theirs.len(), "number of entries");
    for (ours, theirs) in entries.iter().zip(theirs) {
        assert_eq!(ours.serial.der_content(), theirs.serial_number.as_bytes(), "serial");
        assert_eq!(Some(ours.revocation_date), seconds(&theirs.revocation_date), "revocationDate");
    }
    let Some(ca) = issuing_ca() else { return };
    let Ok(verified) = crl.verify(ca) else { return };
    if verified.is_delta() {
        let Ok(base) = Crl::from_der(BASE_CRL, limits).and_then(|base| base.verify(ca)) else { return };
        let Ok(mut serials) = RevokedSerials::from_complete(&base) else { return };
        if serials.apply_delta(&verified).is_ok() {
            assert_eq!(serials.number(), verified.number(), "a folded delta leaves the set at its number");
        }
    } else if let Ok(serials) = RevokedSerials::from_complete(&verified) {
        assert!(serials.len() <= entries.len(), "the set holds more serials than the CRL");
        for entry in &entries {
            assert!(serials.contains(entry.serial), "the set lost serial {}", entry.serial);
        }
    }
}
