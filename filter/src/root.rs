//! The root context: one per worker. It validates the plugin configuration (a refused
//! configuration is refused by the proxy, with a log line naming the field), defines the
//! counters, and hands each request context the shared engine and identity data.

#[cfg(target_arch = "wasm32")]
pub use wasm::CertbindRoot;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use crate::config;
    use crate::host::ProxyHost;
    use crate::http::{self, Verdict};
    use crate::metrics::Metrics;
    use certbind_shared::decision::Engine;
    use certbind_shared::identity::{IdentityData, StaticIdentity};
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType};
    use std::cell::RefCell;
    use std::rc::Rc;

    struct Shared {
        engine: RefCell<Engine>,
        identity: Option<StaticIdentity>,
        metrics: Metrics,
    }

    #[derive(Default)]
    pub struct CertbindRoot {
        shared: Option<Rc<Shared>>,
    }

    impl CertbindRoot {
        pub fn new() -> Self {
            CertbindRoot::default()
        }
    }

    fn log(level: LogLevel, message: &str) {
        let _ = hostcalls::log(level, message);
    }

    impl Context for CertbindRoot {}

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
            match config::parse(&bytes) {
                Ok(configured) => {
                    let metrics = Metrics::define(|name| hostcalls::define_metric(MetricType::Counter, name).ok());
                    self.shared = Some(Rc::new(Shared {
                        engine: RefCell::new(configured.engine),
                        identity: configured.identity,
                        metrics,
                    }));
                    log(LogLevel::Info, "certbind: configured");
                    true
                }
                Err(e) => {
                    log(LogLevel::Critical, &format!("certbind: configuration refused: {e}"));
                    false
                }
            }
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
            let identity = shared.identity.as_ref().map(|i| i as &dyn IdentityData);
            to_action(http::on_request_headers(&host, &mut engine, identity, &shared.metrics))
        }
    }

    fn to_action(verdict: Verdict) -> Action {
        match verdict {
            Verdict::Continue => Action::Continue,
            Verdict::Responded => Action::Pause,
        }
    }
}
