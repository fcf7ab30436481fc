//! The benchmark's baseline guest: per request it makes the host calls certbind's filter makes
//! on a forwarded `mtls` request — all request headers in one call, the connection's digest,
//! the time, the whole header map written back with one header added, one counter — and
//! nothing else. What certbind costs beyond this is its own work.
//!
//! Given configuration bytes other than `{}`, it also hashes them with SHA-256 on every
//! request (the benchmark passes a certificate's DER): the price of the one hash a cold
//! certificate needs, inside the VM.

#[cfg(target_arch = "wasm32")]
mod guest {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, MetricType};
    use sha2::{Digest, Sha256};
    use std::rc::Rc;

    const HEX: &[u8; 16] = b"0123456789abcdef";

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(Root { counter: 0, to_hash: Rc::new(Vec::new()) }));
    }}

    struct Root {
        counter: u32,
        to_hash: Rc<Vec<u8>>,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            self.counter = proxy_wasm::hostcalls::define_metric(MetricType::Counter, "passthrough.requests").unwrap_or(0);
            let configuration = self.get_plugin_configuration().unwrap_or_default();
            if configuration != b"{}" {
                self.to_hash = Rc::new(configuration);
            }
            true
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Request { counter: self.counter, to_hash: Rc::clone(&self.to_hash) }))
        }
    }

    struct Request {
        counter: u32,
        to_hash: Rc<Vec<u8>>,
    }

    impl Context for Request {}

    impl HttpContext for Request {
        fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
            let mut headers = self.get_http_request_headers_bytes();
            let digest = self.get_property(vec!["connection", "sha256_peer_certificate_digest"]).unwrap_or_default();
            let now = self.get_current_time();
            let stamp = format!("{:?}", now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
            let hashed: Vec<u8> = if self.to_hash.is_empty() {
                Vec::new()
            } else {
                Sha256::digest(self.to_hash.as_slice()).iter().flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]).collect()
            };
            headers.push(("x-passthrough".to_string(), [digest.as_slice(), stamp.as_bytes(), hashed.as_slice()].concat()));
            let view: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
            self.set_http_request_headers_bytes(view);
            let _ = proxy_wasm::hostcalls::increment_metric(self.counter, 1);
            Action::Continue
        }
    }
}
