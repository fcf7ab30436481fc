//! The proxy, as the filter sees it: the few calls it makes, behind a trait so the request
//! path can be tested natively with a double. [`ProxyHost`] implements it over proxy-wasm.

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

/// [`Host`] over the proxy-wasm ABI.
pub struct ProxyHost;

/// [`crate::snapshot::RootHost`] over the proxy-wasm ABI.
pub struct ProxyRootHost;

#[cfg(target_arch = "wasm32")]
mod proxy {
    use super::*;
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::{LogLevel, MapType};
    use std::time::UNIX_EPOCH;

    fn err(what: &str, status: proxy_wasm::types::Status) -> HostError {
        HostError(format!("{what}: {status:?}"))
    }

    #[link(wasm_import_module = "env")]
    extern "C" {
        // The SDK's reader of this call copies every name and value into its own allocation
        // and panics on a map it cannot parse; the filter takes the buffer whole instead.
        fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    }

    /// One header map, whole, as the host serialized it.
    fn header_map(map_type: MapType, what: &str) -> Result<HeaderBlock<'_>, HostError> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: both out-pointers are valid locals for the call to write.
        let status = unsafe { proxy_get_header_map_pairs(map_type as u32, &mut data, &mut size) };
        if status != 0 {
            return Err(HostError(format!("get {what}: status {status}")));
        }
        if data.is_null() {
            return Ok(HeaderBlock::default());
        }
        // SAFETY: the host wrote `size` bytes into memory it took from this module's
        // `proxy_on_memory_allocate` (the SDK's: a leaked `Vec<u8>` with capacity `size`),
        // and ownership passes to the caller, as in the SDK's own reader of this call.
        let serialized = unsafe { Vec::from_raw_parts(data, size, size) };
        Ok(HeaderBlock::from_serialized(serialized))
    }

    impl Host for ProxyHost {
        fn request_headers(&self) -> Result<HeaderBlock<'_>, HostError> {
            header_map(MapType::HttpRequestHeaders, "request headers")
        }

        fn request_trailers(&self) -> Result<HeaderBlock<'_>, HostError> {
            header_map(MapType::HttpRequestTrailers, "request trailers")
        }

        fn remove_request_trailer(&self, name: &str) -> Result<(), HostError> {
            hostcalls::remove_map_value(MapType::HttpRequestTrailers, name).map_err(|s| err("remove a request trailer", s))
        }

        fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
            hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).map_err(|s| err("remove a request header", s))
        }

        fn add_request_header(&self, name: &str, value: &[u8]) -> Result<(), HostError> {
            hostcalls::add_map_value_bytes(MapType::HttpRequestHeaders, name, value)
                .map_err(|s| err("add a request header", s))
        }

        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            hostcalls::get_property(path.to_vec()).ok().flatten()
        }

        fn now(&self) -> i64 {
            hostcalls::get_current_time()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok())
                .unwrap_or(0)
        }

        fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
            hostcalls::send_http_response(status, headers.to_vec(), Some(body))
                .map_err(|s| err("send local response", s))
        }

        fn increment_counter(&self, metric_id: u32) {
            let _ = hostcalls::increment_metric(metric_id, 1);
        }

        fn log_warn(&self, message: &str) {
            let _ = hostcalls::log(LogLevel::Warn, message);
        }

        fn log_info(&self, message: &str) {
            let _ = hostcalls::log(LogLevel::Info, message);
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod root_proxy {
    use super::{HostError, ProxyRootHost};
    use crate::snapshot::{Level, RootHost};
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::{LogLevel, Status};
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::time::{Duration, UNIX_EPOCH};

    impl RootHost for ProxyRootHost {
        fn now_ms(&self) -> i64 {
            hostcalls::get_current_time()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .unwrap_or(0)
        }

        fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
            hostcalls::get_shared_data(key).map_err(|s| HostError(format!("get shared data: {s:?}")))
        }

        fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError> {
            match hostcalls::set_shared_data(key, Some(value), cas) {
                Ok(()) => Ok(true),
                Err(Status::CasMismatch) => Ok(false),
                Err(s) => Err(HostError(format!("set shared data: {s:?}"))),
            }
        }

        fn dispatch(&self, upstream: &str, headers: &[(&str, &str)], timeout_ms: u64) -> Result<u32, HostError> {
            hostcalls::dispatch_http_call(upstream, headers.to_vec(), None, Vec::new(), Duration::from_millis(timeout_ms))
                .map_err(|s| HostError(format!("{s:?}")))
        }

        fn log(&self, level: Level, message: &str) {
            let level = match level {
                Level::Info => LogLevel::Info,
                Level::Warn => LogLevel::Warn,
                Level::Error => LogLevel::Error,
            };
            let _ = hostcalls::log(level, message);
        }

        fn random_u64(&self) -> u64 {
            // std seeds hash keys from the host's `random_get`: random enough for worker ids
            // and jitter, and no extra dependency.
            RandomState::new().build_hasher().finish()
        }

        fn increment(&self, metric: Option<u32>) {
            if let Some(id) = metric {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }

        fn record(&self, metric: Option<u32>, value: u64) {
            if let Some(id) = metric {
                let _ = hostcalls::record_metric(id, value);
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod proxy {
    use super::*;

    /// Outside a proxy there is nothing to call: every operation fails, so anything that
    /// reaches it by mistake fails closed.
    impl Host for ProxyHost {
        fn request_headers(&self) -> Result<HeaderBlock<'_>, HostError> {
            Err(HostError("not running inside a proxy".into()))
        }
        fn remove_request_header(&self, _: &str) -> Result<(), HostError> {
            Err(HostError("not running inside a proxy".into()))
        }
        fn add_request_header(&self, _: &str, _: &[u8]) -> Result<(), HostError> {
            Err(HostError("not running inside a proxy".into()))
        }
        fn request_trailers(&self) -> Result<HeaderBlock<'_>, HostError> {
            Err(HostError("not running inside a proxy".into()))
        }
        fn remove_request_trailer(&self, _: &str) -> Result<(), HostError> {
            Err(HostError("not running inside a proxy".into()))
        }
        fn property(&self, _: &[&str]) -> Option<Vec<u8>> {
            None
        }
        fn now(&self) -> i64 {
            0
        }
        fn send_response(&self, _: u32, _: &[(&str, &str)], _: &[u8]) -> Result<(), HostError> {
            Err(HostError("not running inside a proxy".into()))
        }
        fn increment_counter(&self, _: u32) {}
        fn log_warn(&self, _: &str) {}
    }
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
