//! The end-to-end benchmark's floor for the dynamic module: Envoy's dynamic-module filter
//! with certbind's ABI module (its hooks, their panic guards, one state per stream) and
//! nothing done per request. certbind's module is measured against it through a real Envoy.

#[allow(dead_code)]
#[path = "../../../../native/src/abi/mod.rs"]
mod abi;

mod shim {
    use crate::abi::{self, CalloutAnswer, Config, Filter};
    pub use certbind_filter::http::Verdict;
    use std::ffi::CStr;

    pub struct NativeConfig;
    pub struct NativeFilter;

    pub fn program_init() -> &'static CStr {
        abi::ABI_VERSION
    }

    pub fn config_new(_config: Config, _name: &[u8], _bytes: &[u8]) -> Option<NativeConfig> {
        Some(NativeConfig)
    }

    pub fn config_scheduled(_config: Config, _native: &NativeConfig, _event: u64) {}

    pub fn callout_done(_config: Config, _native: &NativeConfig, _id: u64, _answer: Option<CalloutAnswer<'_>>) {}

    pub fn filter_new(_native: &NativeConfig) -> NativeFilter {
        NativeFilter
    }

    pub fn request_headers(_filter: &Filter, _state: &mut NativeFilter) -> Verdict {
        Verdict::Continue
    }

    pub fn request_trailers(_filter: &Filter, _state: &mut NativeFilter) -> Verdict {
        Verdict::Continue
    }

    pub fn fail_closed(filter: &Filter) -> Verdict {
        filter.send_response(503, &[], b"", "noop_failed");
        Verdict::Responded
    }
}
