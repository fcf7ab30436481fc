//! The revoked entries: `SEQUENCE { userCertificate CertificateSerialNumber, revocationDate
//! Time, crlEntryExtensions Extensions OPTIONAL }`, read one at a time off the borrowed DER.

use super::walk::{self, Der};
use super::extensions::{entry_extensions, ReasonCode};
use super::limits::{MAX_ENTRY_EXTENSIONS, MAX_SERIAL_LEN};
use super::CrlError;
use crate::certificate::serial_hex;
use crate::identity::normalize_serial;
use std::fmt;

/// A revoked serial, borrowed: its DER INTEGER content, the minimal two's complement
/// encoding, so equal serials have equal bytes (the bytes [`crate::certificate`]'s
/// `serial_hex` reads from a certificate).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial<'a>(&'a [u8]);

impl<'a> Serial<'a> {
    /// From DER INTEGER content octets as a certificate carries them.
    pub fn from_der_content(content: &'a [u8]) -> Self {
        Serial(content)
    }

    pub fn der_content(&self) -> &'a [u8] {
        self.0
    }

    /// RFC 5280 forbids negative serials, but CAs have issued them; they are kept, not refused.
    pub fn is_negative(&self) -> bool {
        self.0.first().is_some_and(|b| b & 0x80 != 0)
    }

    /// The serial as revocations are keyed: [`normalize_serial`] of the certificate facts'
    /// `serial_hex` (lowercase hex, no leading zeros, `-` for a negative one).
    pub fn to_hex(&self) -> String {
        normalize_serial(&serial_hex(self.0))
    }
}

impl fmt::Display for Serial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

/// One revoked certificate. Nothing here is allocated: the serial borrows the CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokedEntry<'a> {
    pub serial: Serial<'a>,
    /// Seconds since the Unix epoch.
    pub revocation_date: i64,
    pub reason: Option<ReasonCode>,
    pub invalidity_date: Option<i64>,
}

/// Reads entry number `index` off `reader`. `delta` says whether the CRL is a delta CRL, the
/// only kind that may carry removeFromCRL.
pub(super) fn read_entry<'a>(reader: &mut Der<'a>, index: usize, delta: bool) -> Result<RevokedEntry<'a>, CrlError> {
    let entry = reader.expect(walk::SEQUENCE, "revokedCertificates entry")?;
    let mut fields = entry.contents();
    let serial = fields.expect(walk::INTEGER, "userCertificate")?;
    let content = serial.integer("userCertificate")?;
    if content.len() > MAX_SERIAL_LEN || (content.len() == MAX_SERIAL_LEN && content.first() != Some(&0)) {
        return Err(CrlError::SerialTooLong { at: serial.at, len: content.len() });
    }
    let revocation_date = fields.next("revocationDate")?.time("revocationDate")?;
    let extensions = match fields.optional(walk::SEQUENCE, "crlEntryExtensions")? {
        Some(list) => entry_extensions(list, MAX_ENTRY_EXTENSIONS, index)?,
        None => Default::default(),
    };
    fields.finish("revokedCertificates entry")?;
    if extensions.reason == Some(ReasonCode::RemoveFromCrl) && !delta {
        return Err(CrlError::RemoveFromCrlInCompleteCrl { at: entry.at, entry: index });
    }
    Ok(RevokedEntry {
        serial: Serial(content),
        revocation_date,
        reason: extensions.reason,
        invalidity_date: extensions.invalidity_date,
    })
}

/// The entries of a CRL that [`super::Crl::from_der`] has read through once already: each is
/// read again, by the same function from the same bytes, so none can fail now.
#[derive(Debug, Clone)]
pub struct RevokedEntries<'a> {
    pub(super) reader: Der<'a>,
    pub(super) next_index: usize,
    pub(super) count: usize,
    pub(super) delta: bool,
}

impl<'a> Iterator for RevokedEntries<'a> {
    type Item = RevokedEntry<'a>;

    fn next(&mut self) -> Option<RevokedEntry<'a>> {
        if self.reader.is_empty() {
            return None;
        }
        match read_entry(&mut self.reader, self.next_index, self.delta) {
            Ok(entry) => {
                self.next_index += 1;
                Some(entry)
            }
            // Unreachable after the first read; stop rather than loop.
            Err(_) => {
                self.reader = Der::new(&[]);
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count.saturating_sub(self.next_index);
        (left, Some(left))
    }
}

impl ExactSizeIterator for RevokedEntries<'_> {}
