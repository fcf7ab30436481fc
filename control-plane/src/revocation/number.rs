//! CRL numbers as stored: decimal text, as operators and `openssl crl -text` show them.

use certbind_shared::crl::CrlNumber;

/// Reads back a [`CrlNumber`]'s decimal `Display`; `None` for anything else or past 20 octets.
pub fn parse_decimal(text: &str) -> Option<CrlNumber> {
    if text.is_empty() || text.len() > 49 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut octets = [0u8; 21];
    for digit in text.bytes().map(|b| u32::from(b - b'0')) {
        let mut carry = digit;
        for octet in octets.iter_mut().rev() {
            let value = u32::from(*octet) * 10 + carry;
            *octet = (value & 0xff) as u8;
            carry = value >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    CrlNumber::from_be_bytes(&octets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_numbers_read_back() {
        for n in [0u64, 1, 9, 10, 255, 256, 65_535, u64::MAX] {
            assert_eq!(parse_decimal(&CrlNumber::from(n).to_string()), Some(CrlNumber::from(n)), "{n}");
        }
        let largest = CrlNumber::from_be_bytes(&[0xff; 20]).unwrap();
        assert_eq!(parse_decimal(&largest.to_string()), Some(largest));
        // One past 2^160 - 1.
        assert_eq!(parse_decimal("1461501637330902918203684832716283019655932542976"), None);
        assert_eq!(parse_decimal(""), None);
        assert_eq!(parse_decimal("-1"), None);
        assert_eq!(parse_decimal("1e3"), None);
    }
}
