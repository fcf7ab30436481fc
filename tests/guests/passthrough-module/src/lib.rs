//! The end-to-end benchmark's baseline for the dynamic module: per request it makes the calls
//! certbind's module makes on a bound card's `mtls` request forwarded by a trusted hop — every
//! request header, the peer address, the time, the hop's certificate header removed, seven
//! identity-sized headers added, one counter — over certbind's own ABI module, and nothing
//! else. What certbind's module costs beyond this is its own work.

#[allow(dead_code)]
#[path = "../../../../native/src/abi/mod.rs"]
mod abi;

#[path = "../../like_identity.rs"]
mod like_identity;

mod shim {
    use crate::abi::{self, Attribute, CalloutAnswer, Config, Filter, HeaderMap};
    use crate::like_identity::LIKE_IDENTITY;
    pub use certbind_filter::http::Verdict;
    use std::ffi::CStr;
    use std::time::{SystemTime, UNIX_EPOCH};

    pub struct NativeConfig {
        counter: Option<usize>,
    }

    pub struct NativeFilter {
        counter: Option<usize>,
    }

    pub fn program_init() -> &'static CStr {
        abi::ABI_VERSION
    }

    pub fn config_new(config: Config, _name: &[u8], _bytes: &[u8]) -> Option<NativeConfig> {
        Some(NativeConfig { counter: config.define("passthrough.requests", false) })
    }

    pub fn config_scheduled(_config: Config, _native: &NativeConfig, _event: u64) {}

    pub fn callout_done(_config: Config, _native: &NativeConfig, _id: u64, _answer: Option<CalloutAnswer<'_>>) {}

    pub fn filter_new(native: &NativeConfig) -> NativeFilter {
        NativeFilter { counter: native.counter }
    }

    pub fn request_headers(filter: &Filter, state: &mut NativeFilter) -> Verdict {
        let read = filter.headers(HeaderMap::Request).map_or(0, |headers| headers.len());
        let peer = filter.attribute(Attribute::SourceAddress).unwrap_or_default();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        filter.remove_header(HeaderMap::Request, b"x-forwarded-client-cert");
        let seen = [peer.as_slice(), read.to_string().as_bytes(), now.to_string().as_bytes()].concat();
        filter.add_header(HeaderMap::Request, b"x-passthrough", &seen);
        for (name, value) in LIKE_IDENTITY {
            filter.add_header(HeaderMap::Request, name.as_bytes(), value.as_bytes());
        }
        if let Some(id) = state.counter {
            filter.increment_counter(id);
        }
        Verdict::Continue
    }

    pub fn request_trailers(_filter: &Filter, _state: &mut NativeFilter) -> Verdict {
        Verdict::Continue
    }

    pub fn fail_closed(filter: &Filter) -> Verdict {
        filter.send_response(503, &[], b"", "passthrough_failed");
        Verdict::Responded
    }
}
