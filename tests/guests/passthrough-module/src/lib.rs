//! The end-to-end benchmark's baseline for the dynamic module: per request it makes the calls
//! certbind's module makes on a bound card's `mtls` request forwarded by a trusted hop — every
//! request header, the peer address, the time, the hop's certificate header removed, seven
//! identity-sized headers added, one counter — over certbind's own ABI module, and nothing
//! else. What certbind's module costs beyond this is its own work.

#[allow(dead_code)]
#[path = "../../../../native/src/abi.rs"]
mod abi;

mod shim {
    use crate::abi::{self, Attribute, CalloutAnswer, Config, Filter, HeaderMap};
    pub use certbind_filter::http::Verdict;
    use std::ffi::CStr;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Six headers the size of certbind's other identity headers for a bound PIV card (the
    /// seventh, `x-passthrough`, carries what the module read), as the pass-through guest sets.
    const LIKE_IDENTITY: [(&str, &str); 6] = [
        ("x-passthrough-fingerprint", "3f1c9a7e5b2d4068a1c3e5f7092b4d6f8a0c2e4f6a8b0d2f4a6c8e0b2d4f6a8c"),
        ("x-passthrough-subject", "CN=DOE.JANE.Q.1234567890,OU=PKI,OU=DoD,O=U.S. Government,C=US"),
        ("x-passthrough-issuer", "CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US"),
        ("x-passthrough-serial", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
        ("x-passthrough-user", "01JD7Q3M6K2T9V4X8B5N1C0R7Z"),
        ("x-passthrough-principal", "auth:account:user:01JD7Q3M6K2T9V4X8B5N1C0R7Z"),
    ];

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
