//! A DER writer for CRLs and a synthetic CA that signs them, for benchmarks and tests: CRLs
//! of any size and shape, built far faster than a general encoder would. The CA's P-256 key
//! is derived from a public seed: never register it anywhere real.

use crate::certificate::ca::KeyIdentifierSource;
use crate::certificate::{CaCertificate, KeyIdentifier};
use crate::Fingerprint;
use p256::ecdsa::signature::Signer as _;
use sha2::{Digest, Sha256};

/// Appends a DER header: `tag`, then `len` in its shortest form.
pub fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let octets = len.to_be_bytes();
        let skip = octets.iter().position(|&b| b != 0).unwrap_or(octets.len() - 1);
        let significant = octets.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

/// One TLV.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    push_header(&mut out, tag, value.len());
    out.extend_from_slice(value);
    out
}

/// A SEQUENCE of the concatenated `parts`.
pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A non-negative INTEGER of the big-endian magnitude `magnitude`.
pub fn integer(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude.iter().position(|&b| b != 0).unwrap_or(magnitude.len().saturating_sub(1));
    let significant = magnitude.get(start..).unwrap_or(&[0]);
    let mut content = Vec::with_capacity(significant.len() + 1);
    if significant.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(significant);
    tlv(0x02, &content)
}

/// (year, month, day) of a day count since 1970-01-01 (the proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A time as RFC 5280 §4.1.2.5 encodes it: UTCTime through 2049, GeneralizedTime after.
pub fn time(unix: i64) -> Vec<u8> {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    let seconds = unix.rem_euclid(86_400);
    let clock = format!("{month:02}{day:02}{:02}{:02}{:02}Z", seconds / 3600, seconds / 60 % 60, seconds % 60);
    if (1950..2050).contains(&year) {
        tlv(0x17, format!("{:02}{clock}", year % 100).as_bytes())
    } else {
        generalized_time(unix)
    }
}

pub fn generalized_time(unix: i64) -> Vec<u8> {
    let (year, month, day) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    tlv(0x18, format!("{year:04}{month:02}{day:02}{:02}{:02}{:02}Z", s / 3600, s / 60 % 60, s % 60).as_bytes())
}

/// An Extension of the OID whose DER contents are `oid`, its value `value` (the DER the
/// OCTET STRING wraps).
pub fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let critical = if critical { tlv(0x01, &[0xff]) } else { Vec::new() };
    sequence(&[&tlv(0x06, oid), &critical, &tlv(0x04, value)])
}

/// id-ce OID contents (2.5.29.n).
pub fn id_ce(n: u8) -> [u8; 3] {
    [0x55, 0x1d, n]
}

pub fn crl_number_extension(number: u64) -> Vec<u8> {
    extension(&id_ce(20), false, &integer(&number.to_be_bytes()))
}

pub fn delta_indicator_extension(base: u64) -> Vec<u8> {
    extension(&id_ce(27), true, &integer(&base.to_be_bytes()))
}

pub fn authority_key_identifier_extension(key: &KeyIdentifier) -> Vec<u8> {
    extension(&id_ce(35), false, &sequence(&[&tlv(0x80, key.as_bytes())]))
}

/// A reasonCode entry extension.
pub fn reason_extension(code: u8) -> Vec<u8> {
    extension(&id_ce(21), false, &tlv(0x0a, &[code]))
}

/// One revoked entry: serial (big-endian magnitude), date, extensions.
pub fn entry(serial: &[u8], revocation_date: i64, extensions: &[Vec<u8>]) -> Vec<u8> {
    let extensions = if extensions.is_empty() { Vec::new() } else { tlv(0x30, &extensions.concat()) };
    sequence(&[&integer(serial), &time(revocation_date), &extensions])
}

/// The 16-byte serial of synthetic entry `i`: distinct for every `i`, top bit clear.
pub fn synthetic_serial(i: u64) -> [u8; 16] {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut serial = [0u8; 16];
    serial[..8].copy_from_slice(&((mix(i) | 0x4000_0000_0000_0000) & 0x7fff_ffff_ffff_ffff).to_be_bytes());
    serial[8..].copy_from_slice(&i.to_be_bytes());
    serial
}

/// `count` revoked entries back to back, as the contents of revokedCertificates: 16-byte
/// serials, one date, and a keyCompromise reasonCode on every fourth (as real CRLs carry
/// reasons on some entries). Written directly into one buffer, about 45 bytes an entry.
pub fn synthetic_entries(count: u64, revocation_date: i64) -> Vec<u8> {
    let date = time(revocation_date);
    let reason = tlv(0x30, &reason_extension(1));
    let mut out = Vec::with_capacity(count as usize * 48);
    for i in 0..count {
        let serial = integer(&synthetic_serial(i));
        let with_reason = i % 4 == 0;
        let len = serial.len() + date.len() + if with_reason { reason.len() } else { 0 };
        push_header(&mut out, 0x30, len);
        out.extend_from_slice(&serial);
        out.extend_from_slice(&date);
        if with_reason {
            out.extend_from_slice(&reason);
        }
    }
    out
}

/// The fields of a TBSCertList, as DER pieces.
#[derive(Debug, Clone)]
pub struct TbsParts {
    /// The version field whole (`integer(&[1])` for v2); empty for a v1 CRL.
    pub version: Vec<u8>,
    pub algorithm: Vec<u8>,
    pub issuer: Vec<u8>,
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// The contents of revokedCertificates; `None` leaves the field out.
    pub entries: Option<Vec<u8>>,
    /// Each a whole Extension; empty leaves crlExtensions out.
    pub extensions: Vec<Vec<u8>>,
    /// Bytes after the last field (a reader must refuse them).
    pub trailing: Vec<u8>,
}

impl TbsParts {
    pub fn encode(&self) -> Vec<u8> {
        let next = self.next_update.map(time).unwrap_or_default();
        let entries = self.entries.as_ref().map(|e| tlv(0x30, e)).unwrap_or_default();
        let extensions =
            if self.extensions.is_empty() { Vec::new() } else { tlv(0xa0, &tlv(0x30, &self.extensions.concat())) };
        let this = time(self.this_update);
        let fields: [&[u8]; 8] =
            [&self.version, &self.algorithm, &self.issuer, &this, &next, &entries, &extensions, &self.trailing];
        let len = fields.iter().map(|f| f.len()).sum();
        let mut out = Vec::with_capacity(len + 6);
        push_header(&mut out, 0x30, len);
        for field in fields {
            out.extend_from_slice(field);
        }
        out
    }
}

/// A Name of one RDN per `(OID contents, PrintableString)` pair, least specific first.
pub fn name(attributes: &[(&[u8], &str)]) -> Vec<u8> {
    let rdns: Vec<Vec<u8>> = attributes
        .iter()
        .map(|(oid, value)| tlv(0x31, &sequence(&[&tlv(0x06, oid), &tlv(0x13, value.as_bytes())])))
        .collect();
    tlv(0x30, &rdns.concat())
}

/// ecdsa-with-SHA256, parameters absent.
pub fn ecdsa_with_sha256() -> Vec<u8> {
    sequence(&[&tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])])
}

/// A CertificateList of `tbs` with the given algorithm and signature bytes.
pub fn certificate_list(tbs: &[u8], algorithm: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0);
    bits.extend_from_slice(signature);
    let bit_string = tlv(0x03, &bits);
    let len = tbs.len() + algorithm.len() + bit_string.len();
    let mut out = Vec::with_capacity(len + 6);
    push_header(&mut out, 0x30, len);
    out.extend_from_slice(tbs);
    out.extend_from_slice(algorithm);
    out.extend_from_slice(&bit_string);
    out
}

/// A CA with a P-256 key derived from a public seed.
pub struct SyntheticCa {
    key: p256::ecdsa::SigningKey,
    name: Vec<u8>,
    certificate: CaCertificate,
}

impl SyntheticCa {
    /// `common_name` names it; two CAs of one name and different seeds share a DN, not a key.
    pub fn new(seed: &str, common_name: &str) -> Option<Self> {
        let secret = Sha256::digest(format!("certbind synthetic CRL signer {seed}"));
        let key = p256::ecdsa::SigningKey::from_slice(&secret).ok()?;
        let spki_der = crate::snapshot::p256_spki_der(key.verifying_key().to_encoded_point(false).as_bytes()).ok()?;
        let name = name(&[(&[0x55, 0x04, 0x06], "US"), (&[0x55, 0x04, 0x0a], "certbind"), (&[0x55, 0x04, 0x03], common_name)]);
        let certificate = CaCertificate {
            fingerprint: Fingerprint::of_der(&spki_der),
            key_identifier: KeyIdentifier::of_spki(&spki_der),
            key_identifier_source: KeyIdentifierSource::SpkiSha256,
            subject_dn: crate::certificate::ca::name_text(name.get(2..).unwrap_or_default()).ok()?,
            subject_der: name.clone(),
            spki_der,
            is_ca: true,
            may_sign_crls: true,
            authority_key_identifier: None,
            not_before: 0,
            not_after: i64::from(i32::MAX),
            crl_urls: Vec::new(),
        };
        Some(SyntheticCa { key, name, certificate })
    }

    /// A real CA that signs with its own P-256 `key` (as a test PKI's issuing CA does): its
    /// CRLs name `certificate`'s subject and key identifier, so a registered copy of that CA
    /// takes them. `None` when the key is not the certificate's.
    pub fn with_key(key: p256::ecdsa::SigningKey, certificate: CaCertificate) -> Option<Self> {
        let spki_der = crate::snapshot::p256_spki_der(key.verifying_key().to_encoded_point(false).as_bytes()).ok()?;
        if spki_der != certificate.spki_der {
            return None;
        }
        Some(SyntheticCa { key, name: certificate.subject_der.clone(), certificate })
    }

    /// Its facts, as if read from its certificate.
    pub fn certificate(&self) -> &CaCertificate {
        &self.certificate
    }

    pub fn name_der(&self) -> &[u8] {
        &self.name
    }

    /// A v2 TBSCertList of this CA with a CRL Number, an AKI, and `entries` (contents).
    pub fn tbs_parts(&self, number: u64, this_update: i64, next_update: Option<i64>, entries: Vec<u8>) -> TbsParts {
        TbsParts {
            version: integer(&[1]),
            algorithm: ecdsa_with_sha256(),
            issuer: self.name.clone(),
            this_update,
            next_update,
            entries: Some(entries),
            extensions: vec![
                authority_key_identifier_extension(&self.certificate.key_identifier),
                crl_number_extension(number),
            ],
            trailing: Vec::new(),
        }
    }

    /// The CertificateList of `tbs`, signed with ECDSA P-256 / SHA-256.
    pub fn sign(&self, tbs: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::Signature = self.key.sign(tbs);
        certificate_list(tbs, &ecdsa_with_sha256(), signature.to_der().as_bytes())
    }

    /// A signed complete CRL of `count` synthetic entries, valid for a week from `this_update`.
    pub fn synthetic_crl(&self, number: u64, count: u64, this_update: i64) -> Vec<u8> {
        let parts = self.tbs_parts(number, this_update, Some(this_update + 7 * 86_400), synthetic_entries(count, this_update - 86_400));
        self.sign(&parts.encode())
    }
}
