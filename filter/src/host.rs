//! The proxy, as the filter sees it: the few calls it makes, behind a trait so the request
//! path can be tested natively with a double. [`ProxyHost`] implements it over proxy-wasm.

use std::fmt;

/// A host call that did not succeed. The request path fails closed on any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Headers = Vec<(String, Vec<u8>)>;

pub trait Host {
    /// All request headers in one call: every call crosses the VM boundary.
    fn request_headers(&self) -> Result<Headers, HostError>;
    /// Removes every value of one request header (the proxy compares names without case).
    /// One call per name: far cheaper in the proxy than replacing the whole map.
    fn remove_request_header(&self, name: &str) -> Result<(), HostError>;
    /// Adds one request header value after the others.
    fn add_request_header(&self, name: &str, value: &[u8]) -> Result<(), HostError>;
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Seconds since the Unix epoch, from the proxy's clock.
    fn now(&self) -> i64;
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError>;
    fn increment_counter(&self, metric_id: u32);
    fn log_warn(&self, message: &str);
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

    impl Host for ProxyHost {
        fn request_headers(&self) -> Result<Headers, HostError> {
            hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(|s| err("get request headers", s))
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
        fn request_headers(&self) -> Result<Headers, HostError> {
            Err(HostError("not running inside a proxy".into()))
        }
        fn remove_request_header(&self, _: &str) -> Result<(), HostError> {
            Err(HostError("not running inside a proxy".into()))
        }
        fn add_request_header(&self, _: &str, _: &[u8]) -> Result<(), HostError> {
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
