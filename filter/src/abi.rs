//! The proxy-wasm artefact's side of the ABI, all of it: the module's entry point, the
//! [`Host`] and [`RootHost`] calls over the proxy-wasm host calls, and the root and HTTP
//! contexts the proxy drives, each handing over to the request path ([`crate::http`]) and the
//! snapshot source ([`crate::snapshot`]). Built for `wasm32` only; everything it calls is
//! tested natively through the traits.

use crate::config::{self, IdentitySource};
use crate::host::{HeaderBlock, Host, HostError, Level, RootHost};
use crate::http::{self, Verdict};
use crate::metrics::Metrics;
use crate::root::{Identity, TICK_MS};
use crate::snapshot::{FetchResponse, ResponseBody, SnapshotMetrics, SnapshotSource};
use certbind_shared::clock;
use certbind_shared::decision::Engine;
use certbind_shared::snapshot::SnapshotError;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // A panic aborts the VM and the proxy then fails requests closed; log why first, at
    // the level operators alert on.
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("certbind: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| Box::new(CertbindRoot::new()));
}}

/// [`Host`] over the proxy-wasm ABI.
pub struct ProxyHost;

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
        hostcalls::get_current_time().ok().map_or(0, clock::unix_seconds)
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

/// [`RootHost`] over the proxy-wasm ABI.
pub struct ProxyRootHost;

impl RootHost for ProxyRootHost {
    fn now_ms(&self) -> i64 {
        hostcalls::get_current_time().ok().map_or(0, clock::unix_millis)
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

struct Shared {
    engine: RefCell<Engine>,
    identity: RefCell<Identity>,
    metrics: Metrics,
    /// Set once a request has been refused for want of identity data and that was logged.
    unavailable_logged: Cell<bool>,
}

#[derive(Default)]
pub struct CertbindRoot {
    shared: Option<Rc<Shared>>,
}

impl CertbindRoot {
    pub fn new() -> Self {
        CertbindRoot::default()
    }

    fn with_source(&self, act: impl FnOnce(&mut SnapshotSource)) {
        let Some(shared) = &self.shared else { return };
        let Ok(mut identity) = shared.identity.try_borrow_mut() else { return };
        if let Identity::Snapshot(source) = &mut *identity {
            let before = source.held_version();
            act(source);
            if source.held_version() != before {
                shared.unavailable_logged.set(false);
            }
        }
    }
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// The body of the callout response being delivered, read on demand.
struct CalloutBody {
    len: usize,
}

impl ResponseBody for CalloutBody {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, start: usize, len: usize) -> Option<Vec<u8>> {
        if len == 0 {
            return Some(Vec::new());
        }
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, start, len).ok().flatten()
    }
}

fn define(name: &str, gauge: bool) -> Option<u32> {
    let kind = if gauge { MetricType::Gauge } else { MetricType::Counter };
    hostcalls::define_metric(kind, name).ok()
}

impl Context for CertbindRoot {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        // A failed callout comes with no headers, and then there is no header map to read.
        let status = if num_headers == 0 {
            None
        } else {
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|s| s.parse::<u32>().ok())
        };
        let content_type = match status {
            None => None,
            Some(_) => hostcalls::get_map_value(MapType::HttpCallResponseHeaders, "content-type").ok().flatten(),
        };
        let body = CalloutBody { len: body_size };
        let response = match status {
            None => FetchResponse::Failed,
            Some(status) => FetchResponse::Answer { status, content_type, body: &body },
        };
        self.with_source(|source| source.on_response(&ProxyRootHost, token, response));
    }
}

impl RootContext for CertbindRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                log(LogLevel::Critical, "certbind: configuration refused: configuration: missing");
                return false;
            }
            Err(status) => {
                log(LogLevel::Critical, &format!("certbind: cannot read configuration: {status:?}"));
                return false;
            }
        };
        let configured = match config::parse(&bytes) {
            Ok(configured) => configured,
            Err(e) => {
                log(LogLevel::Critical, &format!("certbind: configuration refused: {e}"));
                return false;
            }
        };
        let metrics = Metrics::define(|name| define(name, false));
        let identity = match configured.identity {
            IdentitySource::Development(data) => {
                log(
                    LogLevel::Warn,
                    "certbind: deciding with development_identity from the plugin configuration: unsigned, not for production",
                );
                Identity::Development(Rc::new(data))
            }
            IdentitySource::Snapshot(mut settings) => {
                let signed = settings.signed.take();
                let has_control_plane = settings.control_plane.is_some();
                let host = ProxyRootHost;
                let mut source =
                    SnapshotSource::new(settings, SnapshotMetrics::define(define), host.random_u64());
                if let Some(bytes) = signed {
                    match source.load_configured(&host, bytes) {
                        Ok(()) => {}
                        // Authentic but stale: a control plane may bring a newer one.
                        Err(e @ SnapshotError::Expired { .. }) if has_control_plane => log(
                            LogLevel::Warn,
                            &format!("certbind: the configured snapshot is not used: {e}"),
                        ),
                        Err(e) => {
                            log(
                                LogLevel::Critical,
                                &format!("certbind: configuration refused: snapshot.signed_base64: {e}"),
                            );
                            return false;
                        }
                    }
                }
                if source.held_version().is_none() {
                    log(
                        LogLevel::Warn,
                        "certbind: no identity snapshot yet; requests that need identity data are refused with 503 until one verifies",
                    );
                }
                // Adopt what another worker already published, before the first tick.
                source.catch_up(&host);
                Identity::Snapshot(Box::new(source))
            }
        };
        self.shared = Some(Rc::new(Shared {
            engine: RefCell::new(configured.engine),
            identity: RefCell::new(identity),
            metrics,
            unavailable_logged: Cell::new(false),
        }));
        let _ = hostcalls::set_tick_period(Duration::from_millis(TICK_MS));
        log(LogLevel::Info, "certbind: configured");
        true
    }

    fn on_tick(&mut self) {
        self.with_source(|source| source.on_tick(&ProxyRootHost));
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(CertbindHttp { shared: self.shared.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct CertbindHttp {
    shared: Option<Rc<Shared>>,
}

impl Context for CertbindHttp {}

impl HttpContext for CertbindHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let host = ProxyHost;
        let Some(shared) = &self.shared else {
            // Unconfigured: refuse everything rather than pass requests unchecked.
            return to_action(http::refuse_unconfigured(&host, &Metrics::default()));
        };
        let Ok(mut engine) = shared.engine.try_borrow_mut() else {
            return to_action(http::refuse_unconfigured(&host, &shared.metrics));
        };
        // The handle is taken out and the borrow dropped before deciding.
        let identity = match shared.identity.try_borrow() {
            Ok(identity) => identity.for_request(&shared.unavailable_logged),
            Err(_) => return to_action(http::refuse_unconfigured(&host, &shared.metrics)),
        };
        to_action(http::on_request_headers(&host, &mut engine, &identity, &shared.metrics))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let host = ProxyHost;
        let Some(shared) = &self.shared else {
            return to_action(http::refuse_unconfigured(&host, &Metrics::default()));
        };
        let Ok(engine) = shared.engine.try_borrow() else {
            return to_action(http::refuse_unconfigured(&host, &shared.metrics));
        };
        to_action(http::on_request_trailers(&host, &engine, &shared.metrics))
    }
}

fn to_action(verdict: Verdict) -> Action {
    match verdict {
        Verdict::Continue => Action::Continue,
        Verdict::Responded => Action::Pause,
    }
}
