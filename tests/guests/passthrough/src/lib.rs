//! The benchmark's baseline guest: per request it makes the host calls certbind's filter makes
//! on a bound card's `mtls` request forwarded by a trusted hop — all request headers in one
//! call, the peer address, the time, the hop's certificate header removed, seven identity-sized
//! headers added, one counter — and nothing else. What certbind costs beyond this is its own
//! work.
//!
//! Given configuration bytes other than `{}`, it also hashes them with SHA-256 on every
//! request (the benchmark passes a certificate's DER): the price of the one hash a cold
//! certificate needs, inside the VM.

#[cfg(target_arch = "wasm32")]
#[path = "../../like_identity.rs"]
mod like_identity;

#[cfg(target_arch = "wasm32")]
mod guest {
    use crate::like_identity::LIKE_IDENTITY;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::{Action, ContextType, MapType, MetricType};
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
            self.counter = hostcalls::define_metric(MetricType::Counter, "passthrough.requests").unwrap_or(0);
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
            let headers = self.get_http_request_headers_bytes();
            let peer = self.get_property(vec!["source", "address"]).unwrap_or_default();
            let now = self.get_current_time();
            let stamp = format!("{:?}", now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
            let hashed: Vec<u8> = if self.to_hash.is_empty() {
                Vec::new()
            } else {
                Sha256::digest(self.to_hash.as_slice()).iter().flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]).collect()
            };
            let read = headers.len().to_string();
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "x-forwarded-client-cert");
            let seen = [peer.as_slice(), read.as_bytes(), stamp.as_bytes(), hashed.as_slice()].concat();
            let _ = hostcalls::add_map_value_bytes(MapType::HttpRequestHeaders, "x-passthrough", &seen);
            for (name, value) in LIKE_IDENTITY {
                let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
            }
            let _ = hostcalls::increment_metric(self.counter, 1);
            Action::Continue
        }
    }
}
