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

/// A FASC-N's fields, each the digits the card carries (leading zeros kept), as SP 800-73-4
/// and the TIG SCEPACS name them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fascn {
    /// All 32 digits, as [`decode_fascn`] gives them and a FASC-N constraint names them.
    pub digits: String,
    pub agency_code: String,
    pub system_code: String,
    pub credential_number: String,
    /// CS: the credential series (the major system change).
    pub credential_series: String,
    /// ICI: the individual credential issue (1 for the first card, 2 after a lost one, …).
    pub individual_credential_issue: String,
    /// PI: the person identifier, stable across the holder's cards.
    pub person_identifier: String,
    /// OC: 1 federal government, 2 state government, 3 commercial enterprise, 4 foreign
    /// government.
    pub organizational_category: String,
    /// OI: the organization, by the category's code list (for OC 1, NIST SP 800-87's agency
    /// codes).
    pub organizational_identifier: String,
    /// POA: 1 employee, 2 civil, 3 executive staff, 4 uniformed service, 5 contractor, 6
    /// organizational affiliate, 7 organizational beneficiary.
    pub association_category: String,
}

/// The widths of the 32 digits' fields, in order.
const FIELD_WIDTHS: [usize; 9] = [4, 4, 6, 1, 1, 10, 1, 4, 1];

impl Fascn {
    /// The fields of the 32 digits [`decode_fascn`] gave; `None` for anything else.
    pub fn from_digits(digits: &str) -> Option<Fascn> {
        if digits.len() != FIELD_WIDTHS.iter().sum::<usize>() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut fields = FIELD_WIDTHS.iter().scan(0usize, |start, width| {
            let field = digits.get(*start..*start + width).map(str::to_owned);
            *start += width;
            field
        });
        let mut next = || fields.next();
        Some(Fascn {
            digits: digits.to_owned(),
            agency_code: next()?,
            system_code: next()?,
            credential_number: next()?,
            credential_series: next()?,
            individual_credential_issue: next()?,
            person_identifier: next()?,
            organizational_category: next()?,
            organizational_identifier: next()?,
            association_category: next()?,
        })
    }
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

    #[test]
    fn fields_of_the_fixture_card() {
        let jane = Fascn::from_digits("99999999999999111234567890112232").unwrap();
        let fields = [
            &jane.agency_code,
            &jane.system_code,
            &jane.credential_number,
            &jane.credential_series,
            &jane.individual_credential_issue,
            &jane.person_identifier,
            &jane.organizational_category,
            &jane.organizational_identifier,
            &jane.association_category,
        ];
        assert_eq!(fields, ["9999", "9999", "999999", "1", "1", "1234567890", "1", "1223", "2"]);
        assert_eq!(jane.digits, "99999999999999111234567890112232");
        let yubico = Fascn::from_digits("99999999999999010000000000300001").unwrap();
        assert_eq!(
            (yubico.credential_series.as_str(), yubico.person_identifier.as_str(), yubico.organizational_category.as_str()),
            ("0", "0000000000", "3")
        );
        for bad in ["", "9999999999999911123456789011223", "999999999999991112345678901122321", "9999999999999911123456789011223x"] {
            assert_eq!(Fascn::from_digits(bad), None, "{bad}");
        }
    }
}
