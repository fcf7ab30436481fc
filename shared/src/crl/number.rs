//! CRL numbers (RFC 5280 §5.2.3–4): what orders a CA's CRLs and ties a delta to its base.

use std::fmt;

/// A CRL Number or a delta CRL's base CRL number (RFC 5280 §5.2.3–4): a non-negative integer
/// of at most 20 octets, held as 20 big-endian octets so that numbers order as integers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CrlNumber([u8; 20]);

impl CrlNumber {
    /// From big-endian magnitude octets (leading zeros allowed); `None` past 20 octets.
    pub fn from_be_bytes(bytes: &[u8]) -> Option<Self> {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let significant = bytes.get(start..)?;
        let mut octets = [0u8; 20];
        octets.get_mut(20usize.checked_sub(significant.len())?..)?.copy_from_slice(significant);
        Some(CrlNumber(octets))
    }

    /// The magnitude without leading zero octets (one zero octet for zero).
    pub fn to_be_bytes(&self) -> Vec<u8> {
        let start = self.0.iter().position(|&b| b != 0).unwrap_or(19);
        self.0.get(start..).unwrap_or_default().to_vec()
    }

    /// The number when it fits 128 bits (every CA's does in practice).
    pub fn as_u128(&self) -> Option<u128> {
        let (high, low) = self.0.split_at(4);
        if high.iter().any(|&b| b != 0) {
            return None;
        }
        let mut octets = [0u8; 16];
        octets.copy_from_slice(low);
        Some(u128::from_be_bytes(octets))
    }
}

impl From<u64> for CrlNumber {
    fn from(value: u64) -> Self {
        let mut octets = [0u8; 20];
        octets[12..].copy_from_slice(&value.to_be_bytes());
        CrlNumber(octets)
    }
}

/// Decimal, by long division of the 160-bit value.
impl fmt::Display for CrlNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut value = self.0;
        let mut digits = [0u8; 49];
        let mut len = 0;
        loop {
            let mut remainder = 0u32;
            for octet in value.iter_mut() {
                let current = (remainder << 8) | u32::from(*octet);
                *octet = (current / 10) as u8;
                remainder = current % 10;
            }
            if let Some(digit) = digits.get_mut(len) {
                *digit = b'0' + remainder as u8;
            }
            len += 1;
            if value.iter().all(|&b| b == 0) || len == digits.len() {
                break;
            }
        }
        let text: String = digits.iter().take(len).rev().map(|&d| char::from(d)).collect();
        f.write_str(&text)
    }
}

impl fmt::Debug for CrlNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CrlNumber({self})")
    }
}
