//! Small, strict text codecs for untrusted input: hex, base64 (standard and url-safe) and
//! percent-decoding. Every decoder rejects what it does not understand instead of skipping it.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// Lowercase hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// One hexadecimal digit's value, either case.
pub(crate) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether two byte strings are equal, in time that depends only on their lengths: every
/// word is compared, with no early exit, so it serves secrets (cached bearer tokens) as well
/// as plain bytes (certificate headers). Word-wise because in wasm32 both the `memcmp` behind
/// `==` on slices and `subtle`'s byte-wise comparison walk one byte at a time, which makes
/// comparing a 3 KiB certificate header cost microseconds.
pub fn same_bytes_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let word = |c: &[u8]| c.try_into().map(u64::from_ne_bytes).unwrap_or(0);
    let tail = a_words.remainder().iter().zip(b_words.remainder()).fold(0u64, |acc, (x, y)| acc | u64::from(x ^ y));
    let difference = a_words.zip(b_words).fold(tail, |acc, (x, y)| acc | (word(x) ^ word(y)));
    bool::from(subtle::ConstantTimeEq::ct_eq(&difference, &0u64))
}

/// Decodes hex of either case. `None` on an odd length or a non-hex digit.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((hex_value(pair[0])? << 4) | hex_value(pair[1])?))
        .collect()
}

/// Unpadded base64url, as JOSE uses it (`x5t#S256`, JWT segments).
pub fn base64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// [`base64url_encode`] of a SHA-256 digest into a buffer of its own: no allocation, for a
/// comparison made on every request.
pub fn base64url_digest(digest: &[u8; 32]) -> [u8; 43] {
    let mut out = [0u8; 43];
    // 32 bytes are exactly 43 characters unpadded; a failure would leave zeros, which no
    // base64url text equals.
    let _ = URL_SAFE_NO_PAD.encode_slice(digest, &mut out);
    out
}

/// Unpadded base64url. Padding, whitespace and the standard alphabet's `+/` are refused.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Standard base64 with padding (PEM bodies, RFC 9440 byte sequences, Traefik's header).
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

pub fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A PEM block of `der` labelled `label` (`CERTIFICATE`, `X509 CRL`): 64 base64 characters a
/// line, LF line ends, as OpenSSL writes it.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    let body = base64_encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Where the first byte satisfying `stops` lies in `bytes` (its length if none), checking
/// eight bytes per step with `word_may_stop`, which must be true of any word holding such a
/// byte (false positives only cost a byte-wise look at that word). Long header values —
/// a URL-encoded certificate is kilobytes — are mostly bytes that stop nothing, and in wasm a
/// byte-at-a-time loop over them was a visible part of a cold request.
pub(crate) fn find_stop(bytes: &[u8], word_may_stop: impl Fn(u64) -> bool, stops: impl Fn(u8) -> bool) -> usize {
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in words.by_ref() {
        let value = word.try_into().map(u64::from_le_bytes).unwrap_or(u64::MAX);
        if word_may_stop(value) {
            if let Some(at) = word.iter().position(|&b| stops(b)) {
                return offset + at;
            }
        }
        offset += 8;
    }
    offset + words.remainder().iter().position(|&b| stops(b)).unwrap_or(words.remainder().len())
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether some byte of `word` equals `byte` (exact).
pub(crate) fn word_has_byte(word: u64, byte: u8) -> bool {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

/// Whether some byte of `word` is below `limit` (exact for `limit` up to 128).
pub(crate) fn word_has_byte_below(word: u64, limit: u8) -> bool {
    word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGHS != 0
}

/// Length of a ULID in its text form.
pub const ULID_TEXT_LEN: usize = 26;

/// Crockford's base32 alphabet, as ULIDs spell it (no I, L, O, U).
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The 128 bits of a ULID in its canonical spelling (26 characters of Crockford base32,
/// uppercase, the first at most `7`), big-endian so byte order is time order. `None` for any
/// other text, including lowercase: only a spelling [`ulid_render`] gives back exactly is
/// accepted, so storing the bits loses nothing.
pub fn ulid_bits(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    if bytes.len() != ULID_TEXT_LEN || bytes.first().is_none_or(|first| *first > b'7') {
        return None;
    }
    let mut value: u128 = 0;
    for c in bytes {
        let digit = CROCKFORD.iter().position(|a| a == c)?;
        value = (value << 5) | u128::try_from(digit).ok()?;
    }
    Some(value.to_be_bytes())
}

/// The canonical text of a ULID's 128 bits; every 16 bytes have one.
pub fn ulid_render(bits: &[u8; 16]) -> [u8; ULID_TEXT_LEN] {
    let value = u128::from_be_bytes(*bits);
    let mut out = [0u8; ULID_TEXT_LEN];
    for (i, slot) in out.iter_mut().rev().enumerate() {
        // Masked to five bits, so the index is always inside the alphabet.
        *slot = CROCKFORD[((value >> (5 * i)) & 31) as usize];
    }
    out
}

/// Why a percent-encoded value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentError {
    /// A `%` not followed by two hex digits, at this byte offset.
    BadEscape { at: usize },
    /// The decoded bytes are longer than the caller allows.
    TooLong { limit: usize },
}

/// Percent-decodes `input` (`+` stays `+`: these values are not form-encoded).
/// The output never exceeds `limit` bytes.
pub fn percent_decode(input: &[u8], limit: usize) -> Result<Vec<u8>, PercentError> {
    let mut out = Vec::with_capacity(input.len().min(limit));
    let mut rest = input;
    while !rest.is_empty() {
        // Copy the run up to the next escape in one go: a byte-at-a-time loop is what made
        // decoding a URL-encoded certificate cost microseconds in wasm.
        let run = find_stop(rest, |word| word_has_byte(word, b'%'), |b| b == b'%');
        let (plain, after) = rest.split_at(run);
        if out.len() + plain.len() > limit {
            return Err(PercentError::TooLong { limit });
        }
        out.extend_from_slice(plain);
        let Some(escape) = after.get(..3) else {
            if after.is_empty() {
                break;
            }
            return Err(PercentError::BadEscape { at: input.len() - after.len() });
        };
        let (Some(hi), Some(lo)) = (escape.get(1).copied().and_then(hex_value), escape.get(2).copied().and_then(hex_value))
        else {
            return Err(PercentError::BadEscape { at: input.len() - after.len() });
        };
        if out.len() >= limit {
            return Err(PercentError::TooLong { limit });
        }
        out.push((hi << 4) | lo);
        rest = after.get(3..).unwrap_or_default();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_constant_time_compares_every_byte() {
        let a: Vec<u8> = (0..=255u8).cycle().take(3001).collect();
        assert!(same_bytes_constant_time(&a, &a.clone()));
        for at in [0, 7, 8, 300, 1500, 2999, 3000] {
            for flip in [0x01, 0x80] {
                let mut b = a.clone();
                b[at] ^= flip;
                assert!(!same_bytes_constant_time(&a, &b), "difference {flip:#x} at {at} missed");
            }
        }
        assert!(!same_bytes_constant_time(&a, &a[..3000]));
        assert!(same_bytes_constant_time(b"", b""));
    }

    #[test]
    fn hex_round_trip_and_rejects_odd_or_foreign_digits() {
        assert_eq!(hex_lower(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(hex_decode("00ABff"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn base64url_refuses_padding_and_standard_alphabet() {
        assert_eq!(base64url_decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(base64url_decode("+/8="), None);
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
    }

    /// The byte-at-a-time definition the run-copying decoder must agree with.
    fn reference_percent_decode(input: &[u8], limit: usize) -> Result<Vec<u8>, PercentError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            let byte = if input[i] == b'%' {
                match (input.get(i + 1).copied().and_then(hex_value), input.get(i + 2).copied().and_then(hex_value)) {
                    (Some(hi), Some(lo)) => {
                        i += 3;
                        (hi << 4) | lo
                    }
                    _ => return Err(PercentError::BadEscape { at: i }),
                }
            } else {
                i += 1;
                input[i - 1]
            };
            if out.len() >= limit {
                return Err(PercentError::TooLong { limit });
            }
            out.push(byte);
        }
        Ok(out)
    }

    #[test]
    fn percent_decode_agrees_with_the_byte_at_a_time_definition() {
        let alphabet = b"%%0aF-z+";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 12) as usize;
            let input: Vec<u8> = (0..len).map(|i| alphabet[((state >> (5 + 4 * i)) % 8) as usize]).collect();
            let limit = ((state >> 60) % 8) as usize;
            assert_eq!(percent_decode(&input, limit), reference_percent_decode(&input, limit), "{input:?} limit {limit}");
        }
    }

    #[test]
    fn percent_decode_reports_bad_escapes_and_limits() {
        assert_eq!(percent_decode(b"a%20b+c", 100).unwrap(), b"a b+c".to_vec());
        assert_eq!(percent_decode(b"ab%2", 100), Err(PercentError::BadEscape { at: 2 }));
        assert_eq!(percent_decode(b"%zz", 100), Err(PercentError::BadEscape { at: 0 }));
        assert_eq!(percent_decode(b"abcd", 3), Err(PercentError::TooLong { limit: 3 }));
    }

    #[test]
    fn word_tests_find_every_position_and_value() {
        for at in 0..8 {
            for value in 0..=255u8 {
                let mut word = [b'a'; 8];
                word[at] = value;
                let word = u64::from_le_bytes(word);
                assert_eq!(word_has_byte(word, b'%'), value == b'%', "{value:#x} at {at}");
                assert_eq!(word_has_byte_below(word, 0x20), value < 0x20, "{value:#x} at {at}");
            }
        }
        let text: Vec<u8> = (0..100u8).map(|i| if i == 77 { b'%' } else { b'x' }).collect();
        for start in 0..100 {
            let found = find_stop(&text[start..], |w| word_has_byte(w, b'%'), |b| b == b'%');
            assert_eq!(found, if start <= 77 { 77 - start } else { 100 - start });
        }
    }

    #[test]
    fn ulid_bits_round_trip_only_the_canonical_spelling() {
        let text = "01HV4ABCDEFGHJKMNPQRSTVWXY";
        let bits = ulid_bits(text).unwrap();
        assert_eq!(ulid_render(&bits), *text.as_bytes());
        assert_eq!(ulid_render(&[0xff; 16]), *b"7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        assert_eq!(ulid_bits("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"), Some([0xff; 16]));
        assert_eq!(ulid_bits("00000000000000000000000000"), Some([0; 16]));
        // Above 128 bits, lowercase, letters Crockford leaves out, wrong lengths.
        assert_eq!(ulid_bits("8ZZZZZZZZZZZZZZZZZZZZZZZZZ"), None);
        assert_eq!(ulid_bits("01hv4abcdefghjkmnpqrstvwxy"), None);
        assert_eq!(ulid_bits("01HV4ABCDEFGHJKMNPQRSTVWXI"), None);
        assert_eq!(ulid_bits("01HV4ABCDEFGHJKMNPQRSTVWX"), None);
        assert_eq!(ulid_bits("user-1"), None);
    }
}
