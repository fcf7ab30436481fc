//! A TLV reader over borrowed DER that knows where it is.
//!
//! Like the certificate walk's reader, with two differences a CRL needs: lengths of up to
//! four octets (a CRL may be hundreds of megabytes), and every TLV carries its offset from the
//! start of the CRL so that an error can say where it is. Tags are single octets: nothing in a
//! CertificateList uses the high-tag-number form, so it is refused.

use super::CrlError;
use der::asn1::ObjectIdentifier;

pub(super) const BOOLEAN: u8 = 0x01;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const NULL: u8 = 0x05;
pub(super) const OID: u8 = 0x06;
pub(super) const ENUMERATED: u8 = 0x0a;
pub(super) const UTC_TIME: u8 = 0x17;
pub(super) const GENERALIZED_TIME: u8 = 0x18;
pub(super) const SEQUENCE: u8 = 0x30;

/// A context-specific tag `[n]`, constructed or primitive.
pub(super) const fn context(n: u8, constructed: bool) -> u8 {
    0x80 | if constructed { 0x20 } else { 0 } | n
}

pub(super) fn malformed(at: usize, field: &'static str, problem: &'static str) -> CrlError {
    CrlError::Malformed { at, field, problem }
}

/// One TLV: its tag, its value, its whole encoding, and where each starts.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tlv<'a> {
    pub tag: u8,
    pub at: usize,
    pub value: &'a [u8],
    pub value_at: usize,
    pub encoded: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A reader over this TLV's value.
    pub fn contents(&self) -> Der<'a> {
        Der { rest: self.value, at: self.value_at }
    }

    /// The value as a DER INTEGER's content (non-empty, minimal two's complement).
    pub fn integer(&self, field: &'static str) -> Result<&'a [u8], CrlError> {
        match self.value {
            [] => Err(malformed(self.at, field, "empty INTEGER")),
            [0x00, next, ..] if *next < 0x80 => Err(malformed(self.at, field, "INTEGER not in its shortest form")),
            [0xff, next, ..] if *next >= 0x80 => Err(malformed(self.at, field, "INTEGER not in its shortest form")),
            value => Ok(value),
        }
    }

    /// The value as a DER BOOLEAN.
    pub fn boolean(&self, field: &'static str) -> Result<bool, CrlError> {
        match self.value {
            [0x00] => Ok(false),
            [0xff] => Ok(true),
            _ => Err(malformed(self.at, field, "not a DER BOOLEAN")),
        }
    }

    /// The value as an OBJECT IDENTIFIER, checked as `der` checks one.
    pub fn oid(&self, field: &'static str) -> Result<ObjectIdentifier, CrlError> {
        ObjectIdentifier::from_bytes(self.value).map_err(|_| malformed(self.at, field, "not a valid OBJECT IDENTIFIER"))
    }

    /// A time (UTCTime or GeneralizedTime) in seconds since the Unix epoch, read by the
    /// decoder x509-cert uses, so both read the same instants.
    pub fn time(&self, field: &'static str) -> Result<i64, CrlError> {
        use der::Decode as _;
        let time = x509_cert::time::Time::from_der(self.encoded)
            .map_err(|_| malformed(self.at, field, "not a valid UTCTime or GeneralizedTime"))?;
        i64::try_from(time.to_unix_duration().as_secs()).map_err(|_| malformed(self.at, field, "time out of range"))
    }

    /// A GeneralizedTime only (invalidityDate, RFC 5280 §5.3.2).
    pub fn generalized_time(&self, field: &'static str) -> Result<i64, CrlError> {
        if self.tag != GENERALIZED_TIME {
            return Err(CrlError::UnexpectedTag { at: self.at, field, expected: GENERALIZED_TIME, found: self.tag });
        }
        self.time(field)
    }

    /// A BIT STRING's bits, which must be whole octets (signatures and keys are).
    pub fn octet_bits(&self, field: &'static str) -> Result<&'a [u8], CrlError> {
        match self.value.split_first() {
            Some((0, bits)) => Ok(bits),
            Some(_) => Err(malformed(self.at, field, "BIT STRING does not hold whole octets")),
            None => Err(malformed(self.at, field, "empty BIT STRING")),
        }
    }
}

/// Reads TLVs off a slice that starts `at` bytes into the CRL.
#[derive(Clone, Copy, Debug)]
pub(super) struct Der<'a> {
    rest: &'a [u8],
    at: usize,
}

impl<'a> Der<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes, at: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Where the next TLV starts.
    pub fn offset(&self) -> usize {
        self.at
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    pub fn next(&mut self, field: &'static str) -> Result<Tlv<'a>, CrlError> {
        let at = self.at;
        let error = |problem| malformed(at, field, problem);
        let (&tag, after_tag) = self.rest.split_first().ok_or_else(|| error("truncated: missing"))?;
        if tag & 0x1f == 0x1f {
            return Err(error("high-tag-number form"));
        }
        let (&first, after_first) = after_tag.split_first().ok_or_else(|| error("truncated length"))?;
        let (len, after_len) = match first {
            short @ 0..=0x7f => (usize::from(short), after_first),
            0x80 => return Err(error("indefinite length")),
            0x81..=0x84 => {
                let octets = usize::from(first & 0x7f);
                let (digits, rest) = after_first.split_at_checked(octets).ok_or_else(|| error("truncated length"))?;
                let len = digits.iter().fold(0usize, |len, &digit| (len << 8) | usize::from(digit));
                if digits.first() == Some(&0) || len < 0x80 {
                    return Err(error("length not in its shortest form"));
                }
                (len, rest)
            }
            _ => return Err(error("length of more than four octets")),
        };
        if after_len.len() < len {
            return Err(error("value runs past its enclosing element"));
        }
        let header_len = self.rest.len() - after_len.len();
        let (value, rest) = after_len.split_at(len);
        let encoded = self.rest.get(..header_len + len).ok_or_else(|| error("truncated"))?;
        self.rest = rest;
        self.at += header_len + len;
        Ok(Tlv { tag, at, value, value_at: at + header_len, encoded })
    }

    /// The next TLV, which must have `tag` (checked before its length: a wrong type is the
    /// clearer message).
    pub fn expect(&mut self, tag: u8, field: &'static str) -> Result<Tlv<'a>, CrlError> {
        match self.peek_tag() {
            Some(found) if found != tag => Err(CrlError::UnexpectedTag { at: self.at, field, expected: tag, found }),
            _ => self.next(field),
        }
    }

    /// The next TLV if it has `tag` (an OPTIONAL field), else nothing is read.
    pub fn optional(&mut self, tag: u8, field: &'static str) -> Result<Option<Tlv<'a>>, CrlError> {
        if self.peek_tag() == Some(tag) {
            self.next(field).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The element being read must end here.
    pub fn finish(&self, field: &'static str) -> Result<(), CrlError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CrlError::Trailing { at: self.at, field, len: self.rest.len() })
        }
    }
}
