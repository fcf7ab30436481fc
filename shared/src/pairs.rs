//! The proxy-wasm wire format for header maps (and other lists of pairs): the filter reads its
//! request headers in it, and the wasm test host speaks it to the guest.
//!
//! ```text
//! u32 count | count × (u32 key_len, u32 value_len) | count × (key bytes, 0, value bytes, 0)
//! ```
//! All integers little-endian. An empty byte string stands for an empty map, as in the SDK.

use std::fmt;

/// Largest number of pairs accepted from the guest. Envoy caps a request at 100 headers by
/// default; 64 Ki leaves room for any real map while stopping a corrupt count from driving a
/// huge allocation.
pub const MAX_PAIRS: usize = 64 * 1024;

/// Why a guest-supplied serialized map was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairsError {
    /// Fewer than 4 bytes: no count.
    MissingCount { len: usize },
    /// The count is larger than [`MAX_PAIRS`].
    TooManyPairs { count: u64 },
    /// The size table or the data ends before pair `index` is complete.
    Truncated { index: usize },
    /// Key or value `index` is not followed by its NUL terminator.
    MissingTerminator { index: usize },
    /// Bytes remain after the last pair.
    TrailingBytes { extra: usize },
}

impl fmt::Display for PairsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingCount { len } => write!(f, "serialized map of {len} bytes has no pair count"),
            Self::TooManyPairs { count } => {
                write!(f, "serialized map declares {count} pairs (limit {MAX_PAIRS})")
            }
            Self::Truncated { index } => write!(f, "serialized map truncated in pair {index}"),
            Self::MissingTerminator { index } => {
                write!(f, "serialized map pair {index} lacks its NUL terminator")
            }
            Self::TrailingBytes { extra } => {
                write!(f, "serialized map has {extra} trailing bytes after the last pair")
            }
        }
    }
}

impl std::error::Error for PairsError {}

/// A (name, value) pair as raw bytes.
pub type BytePair = (Vec<u8>, Vec<u8>);

/// Number of bytes [`serialize_into`] writes for these pairs, or `None` if it exceeds `u32`.
pub fn serialized_len<'a, I>(pairs: I) -> Option<usize>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut total: usize = 4;
    for (key, value) in pairs {
        total = total.checked_add(8)?.checked_add(key.len())?.checked_add(value.len())?.checked_add(2)?;
    }
    u32::try_from(total).ok().map(|_| total)
}

/// Appends the serialized form of `pairs` to `out`. Sizes above `u32::MAX` are a caller bug
/// (check with [`serialized_len`]); they are reported as `None` and `out` is left unchanged.
pub fn serialize_into<'a, I>(pairs: I, out: &mut Vec<u8>) -> Option<()>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let total = serialized_len(pairs.clone())?;
    let count = pairs.clone().into_iter().count();
    out.reserve(total);
    out.extend_from_slice(&u32::try_from(count).ok()?.to_le_bytes());
    for (key, value) in pairs.clone() {
        // Lengths fit: the whole serialization fits in u32.
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    Some(())
}

/// Serializes string pairs (test convenience).
pub fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    // Test maps are tiny; a map too large for u32 cannot be built in a test.
    let _ = serialize_into(pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())), &mut out);
    out
}

/// Parses a serialized map, strictly: exact sizes, NUL terminators, no trailing bytes.
pub fn deserialize(bytes: &[u8]) -> Result<Vec<BytePair>, PairsError> {
    let mut pairs = Vec::new();
    for_each_pair(bytes, |key, value| pairs.push((key.to_vec(), value.to_vec())))?;
    Ok(pairs)
}

/// Parses a serialized map into `String` pairs, replacing invalid UTF-8 (test convenience).
pub fn deserialize_lossy(bytes: &[u8]) -> Result<Vec<(String, String)>, PairsError> {
    let mut pairs = Vec::new();
    for_each_pair(bytes, |key, value| {
        pairs.push((String::from_utf8_lossy(key).into_owned(), String::from_utf8_lossy(value).into_owned()))
    })?;
    Ok(pairs)
}

/// Validates a serialized map and calls `visit` for each pair, without copying.
pub fn for_each_pair<'a>(bytes: &'a [u8], mut visit: impl FnMut(&'a [u8], &'a [u8])) -> Result<(), PairsError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let count = read_u32_at(bytes, 0).ok_or(PairsError::MissingCount { len: bytes.len() })?;
    let count_usize = usize::try_from(count).map_err(|_| PairsError::TooManyPairs { count: u64::from(count) })?;
    if count_usize > MAX_PAIRS {
        return Err(PairsError::TooManyPairs { count: u64::from(count) });
    }
    // count <= MAX_PAIRS, so this cannot overflow.
    let mut data = 4 + count_usize * 8;
    if data > bytes.len() {
        return Err(PairsError::Truncated { index: 0 });
    }
    for index in 0..count_usize {
        let sizes = 4 + index * 8;
        let key_len = read_u32_at(bytes, sizes).ok_or(PairsError::Truncated { index })?;
        let value_len = read_u32_at(bytes, sizes + 4).ok_or(PairsError::Truncated { index })?;
        let key = take(bytes, &mut data, key_len, index)?;
        let value = take(bytes, &mut data, value_len, index)?;
        visit(key, value);
    }
    if data != bytes.len() {
        return Err(PairsError::TrailingBytes { extra: bytes.len() - data });
    }
    Ok(())
}

/// Takes `len` bytes plus the NUL after them from `bytes[*cursor..]`.
fn take<'a>(bytes: &'a [u8], cursor: &mut usize, len: u32, index: usize) -> Result<&'a [u8], PairsError> {
    let len = usize::try_from(len).map_err(|_| PairsError::Truncated { index })?;
    let end = cursor.checked_add(len).ok_or(PairsError::Truncated { index })?;
    let item = bytes.get(*cursor..end).ok_or(PairsError::Truncated { index })?;
    match bytes.get(end) {
        Some(0) => {}
        Some(_) => return Err(PairsError::MissingTerminator { index }),
        None => return Err(PairsError::Truncated { index }),
    }
    *cursor = end + 1;
    Ok(item)
}

fn read_u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(word))
}

/// Fuzz property (`fuzz/fuzz_targets/header_map.rs`): whatever parses re-encodes to the very
/// same bytes, so the reader accepts exactly the encoder's output. Panics when that fails.
#[cfg(any(test, feature = "fuzzing"))]
pub fn round_trip(data: &[u8]) {
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
    if for_each_pair(data, |key, value| pairs.push((key, value))).is_err() {
        return;
    }
    if data.is_empty() {
        assert!(pairs.is_empty());
        return;
    }
    let mut again = Vec::new();
    assert!(serialize_into(pairs.iter().copied(), &mut again).is_some(), "a parsed map does not re-encode");
    assert_eq!(again, data, "a parsed map re-encodes differently");
}

/// Fuzzing entry: headers as a host hands them over in pairs of bytes of any content (Envoy's
/// dynamic modules), read from `data` as length-prefixed chunks, name then value: serialized
/// in the map format, they parse back to the very same pairs, in order.
#[cfg(any(test, feature = "fuzzing"))]
pub fn pairs_round_trip(data: &[u8]) {
    let mut chunks = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        chunks.push(chunk);
        rest = tail;
    }
    let handed: Vec<(&[u8], &[u8])> = chunks.chunks_exact(2).map(|pair| (pair[0], pair[1])).collect();
    let mut serialized = Vec::new();
    assert!(serialize_into(handed.iter().copied(), &mut serialized).is_some(), "a small map does not serialize");
    let mut parsed: Vec<(&[u8], &[u8])> = Vec::new();
    assert!(for_each_pair(&serialized, |key, value| parsed.push((key, value))).is_ok(), "a serialized map does not parse");
    assert_eq!(parsed, handed, "a serialized map parses to other pairs");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_handed_over_come_back_the_same() {
        pairs_round_trip(b"");
        pairs_round_trip(b"\x05:path\x02/a\x00\x03\xff\x00a");
        // A last chunk without its value is no pair; a length past the end takes what is left.
        pairs_round_trip(b"\x01a\x01b\x01c");
        pairs_round_trip(b"\x01a\x09bc");
    }

    type BorrowedPair<'a> = (&'a [u8], &'a [u8]);

    fn pairs_of(bytes: &[u8]) -> Result<Vec<BorrowedPair<'_>>, PairsError> {
        let mut pairs = Vec::new();
        for_each_pair(bytes, |k, v| pairs.push((k, v)))?;
        Ok(pairs)
    }

    #[test]
    fn a_map_reads_back_as_written_values_as_raw_bytes() {
        let mut bytes = Vec::new();
        let written: [(&[u8], &[u8]); 3] = [(b":path", b"/a"), (b"x-bin", b"caf\xe9\x00"), (b"empty", b"")];
        serialize_into(written.iter().copied(), &mut bytes).unwrap();
        assert_eq!(pairs_of(&bytes).unwrap(), written.to_vec());
        round_trip(&bytes);
        assert_eq!(pairs_of(&[]).unwrap(), Vec::<BorrowedPair<'_>>::new());
    }

    #[test]
    fn damaged_maps_are_refused_with_what_and_where() {
        let bytes = serialize(&[("a", "1"), ("bb", "22")]);
        assert_eq!(pairs_of(&bytes[..3]), Err(PairsError::MissingCount { len: 3 }));
        assert_eq!(pairs_of(&bytes[..bytes.len() - 1]), Err(PairsError::Truncated { index: 1 }));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(pairs_of(&trailing), Err(PairsError::TrailingBytes { extra: 1 }));
        let mut unterminated = bytes.clone();
        // The NUL after the first key ("a") sits right after the size table.
        unterminated[4 + 2 * 8 + 1] = b'x';
        assert_eq!(pairs_of(&unterminated), Err(PairsError::MissingTerminator { index: 0 }));
        let huge = (MAX_PAIRS as u32 + 1).to_le_bytes();
        assert_eq!(pairs_of(&huge), Err(PairsError::TooManyPairs { count: MAX_PAIRS as u64 + 1 }));
        // A size that runs past the end is refused, not read.
        let mut long = bytes.clone();
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pairs_of(&long), Err(PairsError::Truncated { index: 0 }));
    }
}
