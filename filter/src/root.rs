//! The root context: one per worker. It validates the plugin configuration (a refused
//! configuration is refused by the proxy, with a log line naming the member), defines the
//! counters, keeps the identity snapshot current on each tick, and hands each request context
//! the engine and the identity data in force when the request arrives.

use crate::http::IdentityAt;
use crate::snapshot::SnapshotSource;
use certbind_shared::identity::{IdentityData, StaticIdentity};
use certbind_shared::snapshot::SnapshotView;
use std::cell::Cell;
use std::rc::Rc;

/// How often each worker looks at the shared snapshot head, and the fetching worker at its
/// fetch: a change reaches every worker within this much of the fetching one.
pub const TICK_MS: u64 = 200;

/// Where a worker's identity data comes from.
pub enum Identity {
    Snapshot(Box<SnapshotSource>),
    Development(Rc<StaticIdentity>),
}

impl Identity {
    /// What one request decides with: a handle that stays the same for the whole request,
    /// however the worker's snapshot changes meanwhile (old or new, never a mix).
    pub fn for_request<'a>(&self, logged: &'a Cell<bool>) -> RequestIdentity<'a> {
        match self {
            Identity::Development(data) => RequestIdentity::Development(Rc::clone(data)),
            Identity::Snapshot(source) => {
                RequestIdentity::Snapshot { held: source.held(), cluster: source.cluster(), logged }
            }
        }
    }
}

/// The identity data one request holds on to.
pub enum RequestIdentity<'a> {
    Development(Rc<StaticIdentity>),
    Snapshot {
        held: Option<Rc<SnapshotView>>,
        /// The control plane's cluster, for the log line.
        cluster: Option<Rc<str>>,
        /// Whether "no identity data" has been logged since the last snapshot arrived.
        logged: &'a Cell<bool>,
    },
}

impl IdentityAt for RequestIdentity<'_> {
    fn identity_at(&self, now: i64) -> Option<&dyn IdentityData> {
        match self {
            RequestIdentity::Development(data) => Some(data.as_ref()),
            RequestIdentity::Snapshot { held, .. } => {
                held.as_deref().filter(|view| !view.is_expired(now)).map(|view| view as &dyn IdentityData)
            }
        }
    }

    fn note_unavailable(&self, now: i64, log: &dyn Fn(&str)) {
        let RequestIdentity::Snapshot { held, cluster, logged } = self else { return };
        if logged.replace(true) {
            return;
        }
        log(&unavailable_message(now, held.as_deref(), cluster.as_deref()));
    }
}

/// The warning for the first request refused for want of identity data since the last
/// snapshot arrived: why there is none (`held`: the snapshot held, expired).
pub fn unavailable_message(now: i64, held: Option<&SnapshotView>, cluster: Option<&str>) -> String {
    let why = match held {
        Some(view) => format!("snapshot version {} expired at {}", view.version(), view.expires_at()),
        None => match cluster {
            Some(cluster) => format!("no snapshot has verified yet (control plane cluster {cluster:?})"),
            None => "no snapshot has verified".to_string(),
        },
    };
    format!("certbind: no identity data at {now}: {why}; requests that need it are refused with 503 identity_unavailable")
}

#[cfg(target_arch = "wasm32")]
pub use wasm::CertbindRoot;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::{Identity, TICK_MS};
    use crate::config::{self, IdentitySource};
    use crate::host::{ProxyHost, ProxyRootHost};
    use crate::http::{self, Verdict};
    use crate::metrics::Metrics;
    use crate::snapshot::{FetchResponse, ResponseBody, RootHost, SnapshotMetrics, SnapshotSource};
    use certbind_shared::decision::Engine;
    use certbind_shared::snapshot::SnapshotError;
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::Duration;

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
}
