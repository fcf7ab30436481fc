//! The proxy, as the filter sees it: the few calls the request path makes ([`Host`]) and the
//! root-level ones the snapshot machinery makes ([`RootHost`]), behind traits so both can be
//! tested natively with doubles. Each artefact implements them over its own ABI, in the
//! `abi` module of its crate (`filter/src/abi.rs`, `native/src/abi/`): the one module of each
//! that holds `unsafe`.

use certbind_shared::decision::RequestHeader;
use certbind_shared::pairs;
use std::fmt;

/// A host call that did not succeed. The request path fails closed on any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The request's headers as the proxy hands them over, kept as they came: the request path
/// borrows every name and value from them rather than allocating two strings per header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBlock<'a> {
    form: HeaderForm<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HeaderForm<'a> {
    /// Serialized in one buffer, the proxy-wasm map format (read by [`certbind_shared::pairs`]).
    Serialized(Vec<u8>),
    /// Pairs of bytes borrowed from the proxy's own map (Envoy's dynamic modules, whose
    /// buffers stay valid for the hook that reads them).
    Pairs(Vec<(&'a [u8], &'a [u8])>),
}

impl Default for HeaderBlock<'_> {
    fn default() -> Self {
        HeaderBlock { form: HeaderForm::Pairs(Vec::new()) }
    }
}

impl<'a> HeaderBlock<'a> {
    pub fn from_serialized(serialized: Vec<u8>) -> Self {
        HeaderBlock { form: HeaderForm::Serialized(serialized) }
    }

    /// The proxy's form of `headers` (test doubles, which hold theirs as pairs).
    pub fn from_pairs(headers: &[(String, Vec<u8>)]) -> Result<Self, HostError> {
        let mut serialized = Vec::new();
        pairs::serialize_into(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())), &mut serialized)
            .ok_or_else(|| HostError("request header map too large to serialize".into()))?;
        Ok(HeaderBlock::from_serialized(serialized))
    }

    /// Headers a host hands over as byte pairs it keeps alive meanwhile (Envoy's dynamic
    /// modules), borrowed as they are.
    pub fn from_byte_pairs(headers: Vec<(&'a [u8], &'a [u8])>) -> Self {
        HeaderBlock { form: HeaderForm::Pairs(headers) }
    }

    /// Every header in the proxy's order. A map that does not parse exactly, or a name that
    /// is not UTF-8 (no HTTP codec passes one), is an error, and the request is refused.
    pub fn pairs<'s>(&'s self) -> Result<Vec<RequestHeader<'s>>, HostError> {
        let mut headers = Vec::with_capacity(16);
        let mut bad_name = None;
        let mut take = |name: &'s [u8], value: &'s [u8]| match std::str::from_utf8(name) {
            Ok(name) => headers.push((name, value)),
            Err(_) => {
                // The pair's index in the map: every pair before it was pushed.
                bad_name.get_or_insert(headers.len());
            }
        };
        match &self.form {
            HeaderForm::Serialized(serialized) => pairs::for_each_pair(serialized, take).map_err(|e| HostError(format!("request header map: {e}")))?,
            HeaderForm::Pairs(pairs) => pairs.iter().for_each(|&(name, value)| take(name, value)),
        }
        match bad_name {
            Some(index) => Err(HostError(format!("request header map: the name of pair {index} is not UTF-8"))),
            None => Ok(headers),
        }
    }
}

pub trait Host {
    /// All request headers in one call: every call crosses the VM boundary.
    fn request_headers(&self) -> Result<HeaderBlock<'_>, HostError>;
    /// Removes every value of one request header (the proxy compares names without case).
    /// One call per name: far cheaper in the proxy than replacing the whole map.
    fn remove_request_header(&self, name: &str) -> Result<(), HostError>;
    /// Adds one request header value after the others.
    fn add_request_header(&self, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// The request's trailers (HTTP/2 and gRPC; HTTP/1.1 chunked where the proxy passes them),
    /// in the same serialized form.
    fn request_trailers(&self) -> Result<HeaderBlock<'_>, HostError>;
    /// Removes every value of one request trailer.
    fn remove_request_trailer(&self, name: &str) -> Result<(), HostError>;
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Seconds since the Unix epoch, from the proxy's clock.
    fn now(&self) -> i64;
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError>;
    fn increment_counter(&self, metric_id: u32);
    fn log_warn(&self, message: &str);
    /// One line at the proxy's info level (a refusal, with its reason and detail).
    fn log_info(&self, _message: &str) {}
}

/// Severity of a log line, mapped to the proxy's levels by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// The root-level calls the snapshot machinery makes.
pub trait RootHost {
    /// Milliseconds since the Unix epoch, from the proxy's clock.
    fn now_ms(&self) -> i64;
    /// A shared-data value and its compare-and-swap token; `(None, None)` when absent.
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Writes a shared-data value. `cas`: only if the value is still the one read with that
    /// token. `Ok(false)`: someone wrote in between.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError>;
    /// Starts an HTTP callout; returns its token.
    fn dispatch(&self, upstream: &str, headers: &[(&str, &str)], timeout_ms: u64) -> Result<u32, HostError>;
    fn log(&self, level: Level, message: &str);
    fn random_u64(&self) -> u64;
    fn increment(&self, metric: Option<u32>);
    fn record(&self, metric: Option<u32>, value: u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_block_lends_its_names_and_values_in_order() {
        let owned = vec![(":path".to_string(), b"/a".to_vec()), ("x-raw".to_string(), vec![0xff, 0x00, b'a'])];
        let block = HeaderBlock::from_pairs(&owned).unwrap();
        assert_eq!(block.pairs().unwrap(), vec![(":path", &b"/a"[..]), ("x-raw", &[0xff, 0x00, b'a'][..])]);
        assert_eq!(HeaderBlock::default().pairs().unwrap(), Vec::<RequestHeader<'_>>::new());
    }

    #[test]
    fn byte_pairs_come_back_as_handed_over_and_a_name_that_is_not_utf8_is_refused() {
        let handed: [(&[u8], &[u8]); 3] = [(b":path", b"/a"), (b"x-raw", &[0xff, 0x00]), (b"x-raw", b"")];
        let block = HeaderBlock::from_byte_pairs(handed.to_vec());
        assert_eq!(block.pairs().unwrap(), vec![(":path", &b"/a"[..]), ("x-raw", &[0xff, 0x00][..]), ("x-raw", &b""[..])]);
        let bad: [(&[u8], &[u8]); 3] = [(b"ok", b"1"), (b"caf\xe9", b"2"), (b"\xff", b"3")];
        let error = HeaderBlock::from_byte_pairs(bad.to_vec()).pairs().unwrap_err();
        assert_eq!(error.0, "request header map: the name of pair 1 is not UTF-8");
        assert_eq!(HeaderBlock::from_byte_pairs(Vec::new()).pairs().unwrap(), Vec::<RequestHeader<'_>>::new());
        assert_eq!(HeaderBlock::default().pairs().unwrap(), Vec::<RequestHeader<'_>>::new());
    }

    #[test]
    fn a_damaged_map_or_a_name_that_is_not_utf8_is_an_error() {
        let mut serialized = Vec::new();
        let written: [(&[u8], &[u8]); 2] = [(b"ok", b"1"), (b"caf\xe9", b"2")];
        pairs::serialize_into(written.iter().copied(), &mut serialized).unwrap();
        let error = HeaderBlock::from_serialized(serialized.clone()).pairs().unwrap_err();
        assert_eq!(error.0, "request header map: the name of pair 1 is not UTF-8");
        serialized.pop();
        let error = HeaderBlock::from_serialized(serialized).pairs().unwrap_err();
        assert_eq!(error.0, "request header map: serialized map truncated in pair 1");
    }
}
