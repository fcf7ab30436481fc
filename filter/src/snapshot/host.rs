//! What the snapshot machinery reads through its host ([`crate::host::RootHost`]): the
//! response bodies of its fetches, and shared data for a host that is one process.

/// The body of a fetch's response, read from the proxy only when and as the snapshot
/// machinery decides: after the held snapshot has been let go, a chunk at a time, into the
/// worker's one snapshot buffer (see [`super::RELEASE_FIRST_BYTES`]).
pub trait ResponseBody {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `len` bytes from `start`; `None` if the proxy cannot hand them over.
    fn read(&self, start: usize, len: usize) -> Option<Vec<u8>>;
}

/// A body read whole, by a host that receives it so (a native fetch).
pub struct BodyBytes(pub Vec<u8>);

impl ResponseBody for BodyBytes {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read(&self, start: usize, len: usize) -> Option<Vec<u8>> {
        self.0.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
    }
}

/// A body a host hands over in chunks, read where they are (Envoy's callout answer to a
/// dynamic module): no copy of the whole body beside the snapshot read from it.
pub struct BodyChunks<'a> {
    chunks: &'a [&'a [u8]],
    len: usize,
}

impl<'a> BodyChunks<'a> {
    pub fn new(chunks: &'a [&'a [u8]]) -> Self {
        BodyChunks { chunks, len: chunks.iter().map(|c| c.len()).sum() }
    }
}

impl ResponseBody for BodyChunks<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, start: usize, len: usize) -> Option<Vec<u8>> {
        let end = start.checked_add(len).filter(|end| *end <= self.len)?;
        let mut out = Vec::with_capacity(len);
        let mut offset = 0;
        for chunk in self.chunks {
            if offset >= end {
                break;
            }
            let next = offset + chunk.len();
            if next > start {
                let from = start.saturating_sub(offset);
                out.extend_from_slice(chunk.get(from..(end - offset).min(chunk.len()))?);
            }
            offset = next;
        }
        Some(out)
    }
}

/// What came back from a fetch.
pub enum FetchResponse<'a> {
    /// The callout failed: no connection, reset, timeout.
    Failed,
    Answer { status: u32, content_type: Option<String>, body: &'a dyn ResponseBody },
}

/// The proxy's shared data, for a host that is one process with one snapshot source: a map
/// of the source's own thread. The source always holds the lease there, and what it publishes
/// is what it reads back when a large refused snapshot made it let go of the held one.
#[derive(Debug, Default)]
pub struct LocalSharedData {
    values: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
}

impl LocalSharedData {
    /// [`crate::host::RootHost::shared_get`] over the map.
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.values.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    /// [`crate::host::RootHost::shared_set`] over the map: `false` when `cas` is not the value's token.
    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut values = self.values.borrow_mut();
        let current = values.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return false;
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        values.insert(key.to_string(), (value.to_vec(), next));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_in_chunks_hands_out_the_ranges_a_whole_one_would() {
        let whole = BodyBytes(b"abcdefghij".to_vec());
        let pieces: [&[u8]; 5] = [b"abc", b"", b"d", b"efgh", b"ij"];
        let chunks = BodyChunks::new(&pieces);
        assert_eq!(chunks.len(), 10);
        for start in 0..=11 {
            for len in 0..=11 {
                assert_eq!(chunks.read(start, len), whole.read(start, len), "{start}+{len}");
            }
        }
        assert_eq!(chunks.read(usize::MAX, 2), None);
        assert!(BodyChunks::new(&[]).is_empty());
    }

    #[test]
    fn local_shared_data_writes_only_over_the_value_it_was_read_with() {
        let data = LocalSharedData::default();
        assert_eq!(data.get("k"), (None, None));
        assert!(data.set("k", b"one", None));
        let (value, cas) = data.get("k");
        assert_eq!(value.as_deref(), Some(&b"one"[..]));
        assert!(data.set("k", b"two", cas));
        // The token read with "one" is spent: a writer that read before "two" loses.
        assert!(!data.set("k", b"three", cas));
        assert_eq!(data.get("k").0.as_deref(), Some(&b"two"[..]));
        // A token for a key that does not exist yet is never current.
        assert!(!data.set("absent", b"x", Some(1)));
    }

    #[test]
    fn a_whole_body_hands_out_exactly_the_ranges_it_has() {
        let body = BodyBytes(b"abcdef".to_vec());
        assert_eq!(body.len(), 6);
        assert_eq!(body.read(1, 3).as_deref(), Some(&b"bcd"[..]));
        assert_eq!(body.read(6, 0).as_deref(), Some(&b""[..]));
        assert_eq!(body.read(4, 3), None);
        assert_eq!(body.read(usize::MAX, 2), None);
    }
}
