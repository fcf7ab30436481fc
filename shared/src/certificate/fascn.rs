//! PIV FASC-N (SP 800-73-4, TIG SCEPACS): 25 bytes of 5-bit BCD characters with odd parity.
//!
//! The 200 bits hold 40 characters. Each character is four data bits, least significant bit
//! first, followed by an odd-parity bit. The layout is
//! `SS agency(4) FS system(4) FS credential(6) FS CS FS ICI FS PI(10) OC OI(4) POA ES LRC`,
//! where the LRC is the exclusive OR of the data bits of the 39 characters before it.

use super::CertificateError;

/// A FASC-N is exactly 200 bits.
pub const FASCN_LEN: usize = 25;

const CHARACTERS: usize = 40;
const START_SENTINEL: u8 = 0xB;
const FIELD_SEPARATOR: u8 = 0xD;
const END_SENTINEL: u8 = 0xF;

/// What each of the 40 characters must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Digit,
    Start,
    Separator,
    End,
    Lrc,
}

/// The character layout, built once from the field widths.
const LAYOUT: [Slot; CHARACTERS] = {
    use Slot::{Digit as D, End as E, Lrc as L, Separator as F, Start as S};
    [
        S, D, D, D, D, F, D, D, D, D, F, D, D, D, D, D, D, F, D, F, D, F, D, D, D, D, D, D, D, D,
        D, D, D, D, D, D, D, D, E, L,
    ]
};

/// The 5-bit character at `index` (0..40) of `bytes`, as (data value, parity ok).
fn character(bytes: &[u8; FASCN_LEN], index: usize) -> (u8, bool) {
    let mut code: u8 = 0;
    for bit in 0..5 {
        let position = index * 5 + bit;
        let byte = bytes[position / 8];
        let set = (byte >> (7 - position % 8)) & 1;
        code |= set << bit;
    }
    let data = code & 0x0f;
    let parity_ok = code.count_ones() % 2 == 1;
    (data, parity_ok)
}

/// Decodes a FASC-N to its 32 digits: agency code, system code, credential number, CS, ICI,
/// PI, OC, OI and POA, in that order. Refuses a wrong length, a parity error, a sentinel or
/// separator out of place, a non-decimal digit, and a wrong LRC.
pub fn decode_fascn(bytes: &[u8]) -> Result<String, CertificateError> {
    let bytes: &[u8; FASCN_LEN] = bytes
        .try_into()
        .map_err(|_| CertificateError::Field("FASC-N is not 25 bytes"))?;
    let mut digits = String::with_capacity(32);
    let mut lrc: u8 = 0;
    for (index, slot) in LAYOUT.iter().enumerate() {
        let (value, parity_ok) = character(bytes, index);
        if !parity_ok {
            return Err(CertificateError::Field(
                "FASC-N character fails its parity check",
            ));
        }
        match slot {
            Slot::Digit => {
                if value > 9 {
                    return Err(CertificateError::Field("FASC-N digit is not decimal"));
                }
                digits.push(char::from(b'0' + value));
            }
            Slot::Start if value != START_SENTINEL => {
                return Err(CertificateError::Field(
                    "FASC-N does not begin with its start sentinel",
                ));
            }
            Slot::Separator if value != FIELD_SEPARATOR => {
                return Err(CertificateError::Field(
                    "FASC-N field separator out of place",
                ));
            }
            Slot::End if value != END_SENTINEL => {
                return Err(CertificateError::Field("FASC-N end sentinel out of place"));
            }
            Slot::Lrc if value != lrc => {
                return Err(CertificateError::Field("FASC-N LRC does not match"));
            }
            _ => {}
        }
        lrc ^= value;
    }
    Ok(digits)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::encoding::hex_decode;

    /// Encodes the 32 digits the way a card issuer would; the inverse of `decode_fascn`, used
    /// to build malformed variants.
    pub(crate) fn encode_fascn(digits: &str) -> [u8; FASCN_LEN] {
        let mut values = Vec::new();
        let mut digit_iter = digits.bytes().map(|d| d - b'0');
        for slot in LAYOUT {
            values.push(match slot {
                Slot::Digit => digit_iter.next().unwrap(),
                Slot::Start => START_SENTINEL,
                Slot::Separator => FIELD_SEPARATOR,
                Slot::End => END_SENTINEL,
                Slot::Lrc => values.iter().fold(0, |acc, v| acc ^ v),
            });
        }
        let mut out = [0u8; FASCN_LEN];
        for (index, value) in values.iter().enumerate() {
            let parity = u8::from(value.count_ones() & 1 == 0);
            let code = value | (parity << 4);
            for bit in 0..5 {
                let position = index * 5 + bit;
                out[position / 8] |= ((code >> bit) & 1) << (7 - position % 8);
            }
        }
        out
    }

    /// yubico-piv-tool's default CHUID FASC-N, a published vector: agency 9999, system 9999,
    /// credential 999999, CS 0, ICI 1, PI 0000000000, OC 3, OI 0000, POA 1.
    const YUBICO_DEFAULT_FASCN: &str = "D4E739DA739CED39CE739D836858210842108421C84210C3EB";

    /// The FASC-N in tests/pki/piv-auth.pem (written by envoy/pki/gen-test-pki.sh).
    const TEST_PKI_JANE_FASCN: &str = "D4E739DA739CED39CE739DA1685A08C92ADE0A6184108CA3F3";

    #[test]
    fn published_and_fixture_vectors_decode_to_their_digits() {
        let yubico = hex_decode(YUBICO_DEFAULT_FASCN).unwrap();
        assert_eq!(
            decode_fascn(&yubico).unwrap(),
            "99999999999999010000000000300001"
        );
        let jane = hex_decode(TEST_PKI_JANE_FASCN).unwrap();
        assert_eq!(
            decode_fascn(&jane).unwrap(),
            "99999999999999111234567890112232"
        );
    }

    #[test]
    fn encoder_reproduces_the_published_vector() {
        let encoded = encode_fascn("99999999999999010000000000300001");
        assert_eq!(encoded.to_vec(), hex_decode(YUBICO_DEFAULT_FASCN).unwrap());
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let good = encode_fascn("12345678901234567890123456789012");
        assert_eq!(
            decode_fascn(&good).unwrap(),
            "12345678901234567890123456789012"
        );
        for bit in 0..FASCN_LEN * 8 {
            let mut flipped = good;
            flipped[bit / 8] ^= 1 << (7 - bit % 8);
            assert_eq!(
                decode_fascn(&flipped),
                Err(CertificateError::Field(
                    "FASC-N character fails its parity check"
                )),
                "bit {bit}"
            );
        }
    }

    /// Rewrites character `index` to `value` with correct parity, leaving the LRC alone.
    fn set_character(bytes: &mut [u8; FASCN_LEN], index: usize, value: u8) {
        let parity = u8::from(value.count_ones() & 1 == 0);
        let code = value | (parity << 4);
        for bit in 0..5 {
            let position = index * 5 + bit;
            let mask = 1 << (7 - position % 8);
            if (code >> bit) & 1 == 1 {
                bytes[position / 8] |= mask;
            } else {
                bytes[position / 8] &= !mask;
            }
        }
    }

    #[test]
    fn structural_errors_are_named() {
        let good = encode_fascn("99999999999999111234567890112232");
        let cases: [(usize, u8, &str); 6] = [
            (0, 0x1, "FASC-N does not begin with its start sentinel"),
            (5, 0x1, "FASC-N field separator out of place"),
            (38, 0xD, "FASC-N end sentinel out of place"),
            (1, 0xC, "FASC-N digit is not decimal"),
            (39, 0x0, "FASC-N LRC does not match"),
            (30, 0x7, "FASC-N LRC does not match"),
        ];
        for (index, value, expected) in cases {
            let mut bad = good;
            set_character(&mut bad, index, value);
            assert_eq!(
                decode_fascn(&bad),
                Err(CertificateError::Field(expected)),
                "char {index}"
            );
        }
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let good = encode_fascn("99999999999999111234567890112232");
        for len in [0, 24, 26] {
            let mut bytes = good.to_vec();
            bytes.resize(len, 0);
            assert_eq!(
                decode_fascn(&bytes),
                Err(CertificateError::Field("FASC-N is not 25 bytes"))
            );
        }
    }
}
