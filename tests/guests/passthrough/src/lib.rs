//! The benchmark's baseline guest: per request it makes the host calls certbind's filter makes
//! on a forwarded `mtls` request — all request headers in one call, the connection's digest,
//! the time, the whole header map written back with one header added, one counter — and
//! nothing else. What certbind costs beyond this is its own work.

#[cfg(target_arch = "wasm32")]
mod guest {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, MetricType};

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(Root { counter: 0 }));
    }}

    struct Root {
        counter: u32,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            self.counter = proxy_wasm::hostcalls::define_metric(MetricType::Counter, "passthrough.requests").unwrap_or(0);
            true
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Request { counter: self.counter }))
        }
    }

    struct Request {
        counter: u32,
    }

    impl Context for Request {}

    impl HttpContext for Request {
        fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
            let mut headers = self.get_http_request_headers_bytes();
            let digest = self.get_property(vec!["connection", "sha256_peer_certificate_digest"]).unwrap_or_default();
            let now = self.get_current_time();
            let stamp = format!("{:?}", now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
            headers.push(("x-passthrough".to_string(), [digest.as_slice(), stamp.as_bytes()].concat()));
            let view: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
            self.set_http_request_headers_bytes(view);
            let _ = proxy_wasm::hostcalls::increment_metric(self.counter, 1);
            Action::Continue
        }
    }
}
