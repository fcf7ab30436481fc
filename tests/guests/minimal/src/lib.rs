//! The end-to-end benchmark's floor: per request it reads one header and adds four, the
//! least any proxy-wasm filter that sets identity headers pays for entering the VM and
//! crossing the host boundary. certbind is measured against it through a real Envoy.

#[cfg(target_arch = "wasm32")]
mod guest {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType};

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(Root));
    }}

    struct Root;

    impl Context for Root {}

    impl RootContext for Root {
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Request))
        }
    }

    struct Request;

    impl Context for Request {}

    impl HttpContext for Request {
        fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
            let seen = self.get_http_request_header_bytes("x-forwarded-client-cert").map_or(0, |v| v.len());
            let length = seen.to_string();
            self.add_http_request_header("x-minimal-a", &length);
            self.add_http_request_header("x-minimal-b", "b");
            self.add_http_request_header("x-minimal-c", "c");
            self.add_http_request_header("x-minimal-d", "d");
            Action::Continue
        }
    }
}
