//! Envoy 1.40's dynamic-module ABI, as far as certbind uses it: the declarations ([`header`],
//! from the ABI header of that release), the safe handles the rest of the module works with
//! ([`Filter`], [`Config`], [`Scheduler`], [`log`]), and the event hooks Envoy calls
//! (`envoy_dynamic_module_on_*`, in [`hooks`]).
//!
//! Every `unsafe` of the module is in this directory. Each hook turns Envoy's pointers into the
//! safe handles below, catches any panic and hands over to the crate's `shim`; nothing beyond
//! this module sees a raw pointer. tests/e2e/test_native.py checks that every callback the
//! built module imports is exported by the Envoy binary the project runs, and that Envoy reports
//! [`ABI_VERSION`] as matched.
//!
//! The benchmark's baseline modules (tests/guests/noop-module, tests/guests/passthrough-module)
//! are built over this very module, each with a `shim` of its own that provides what the hooks
//! call (`program_init`, `config_new`, `config_scheduled`, `callout_done`, `filter_new`,
//! `request_headers`, `request_trailers`, `fail_closed`, `NativeConfig`, `NativeFilter`): what
//! they cost is what the ABI and its guards cost certbind.

mod header;
mod hooks;

use header::*;
pub use header::{Attribute, EnvoyBuffer, EnvoyHttpHeader, LogLevel, ABI_VERSION};
use std::ffi::c_char;

/// Writes one line to Envoy's `dynamic_modules` log. Envoy's logger may be called from any
/// thread.
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the buffer points into `message`, alive for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::of(message.as_bytes())) }
}

/// Borrowed bytes of Envoy's: valid until the hook that handed them over returns.
fn envoy_bytes<'a>(ptr: *const c_char, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        return &[];
    }
    // SAFETY: Envoy hands over `length` readable bytes at `ptr`, which stay valid and
    // unchanged until the current hook returns (abi.h: "owned by Envoy … valid until the end
    // of the current event hook"); every caller keeps them no longer than that.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), length) }
}

/// Which header map of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMap {
    Request,
    RequestTrailers,
}

impl HeaderMap {
    fn id(self) -> u32 {
        match self {
            HeaderMap::Request => REQUEST_HEADER,
            HeaderMap::RequestTrailers => REQUEST_TRAILER,
        }
    }
}

/// One stream of the HTTP filter chain, for the length of one hook.
pub struct Filter {
    ptr: filter_envoy_ptr,
}

impl Filter {
    /// Every header of `map` in Envoy's order, borrowed from Envoy's map; `None` when the
    /// stream has no such map.
    pub fn headers(&self, map: HeaderMap) -> Option<Vec<(&[u8], &[u8])>> {
        // SAFETY: `ptr` is the stream Envoy passed to the running hook.
        let count =
            unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.ptr, map.id()) };
        let empty = EnvoyHttpHeader {
            key_ptr: std::ptr::null(),
            key_length: 0,
            value_ptr: std::ptr::null(),
            value_length: 0,
        };
        let mut raw = vec![empty; count];
        if count > 0 {
            // SAFETY: `raw` has room for the `count` headers Envoy just counted in this map, on
            // this thread, with nothing changing the map in between.
            let ok = unsafe {
                envoy_dynamic_module_callback_http_get_headers(self.ptr, map.id(), raw.as_mut_ptr())
            };
            if !ok {
                return None;
            }
        }
        Some(
            raw.iter()
                .map(|h| {
                    (
                        envoy_bytes(h.key_ptr, h.key_length),
                        envoy_bytes(h.value_ptr, h.value_length),
                    )
                })
                .collect(),
        )
    }

    /// Removes every value of `name` from `map`.
    pub fn remove_header(&self, map: HeaderMap, name: &[u8]) -> bool {
        // SAFETY: the key points into `name` for the call; a null value removes the header.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                map.id(),
                ModuleBuffer::of(name),
                ModuleBuffer::NULL,
            )
        }
    }

    /// Adds one value of `name` to `map`, after the others.
    pub fn add_header(&self, map: HeaderMap, name: &[u8], value: &[u8]) -> bool {
        // SAFETY: both buffers point into live slices for the call; Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.ptr,
                map.id(),
                ModuleBuffer::of(name),
                ModuleBuffer::of(value),
            )
        }
    }

    /// A string attribute of the stream, copied.
    pub fn attribute(&self, attribute: Attribute) -> Option<Vec<u8>> {
        let mut result = EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        // SAFETY: `result` is a live local for Envoy to write.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.ptr,
                attribute as u32,
                &mut result,
            )
        };
        ok.then(|| envoy_bytes(result.ptr, result.length).to_vec())
    }

    /// Answers the request locally.
    pub fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8], details: &str) {
        let mut raw = module_headers(headers);
        // SAFETY: every pointer refers to `headers`, `body` or `details`, alive for the call;
        // Envoy copies what it keeps.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                status,
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details.as_bytes()),
            )
        }
    }

    pub fn increment_counter(&self, id: usize) -> bool {
        // SAFETY: no labels; `id` came from this stream's configuration.
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.ptr,
                id,
                std::ptr::null_mut(),
                0,
                1,
            ) == METRICS_SUCCESS
        }
    }
}

/// The filter configuration on Envoy's side, while it lives. Its calls are made on the main
/// thread (configuration, scheduled events, callout answers), as Envoy requires.
#[derive(Clone, Copy)]
pub struct Config {
    ptr: config_envoy_ptr,
}

impl Config {
    /// Defines a counter (`gauge`: a gauge); only while the configuration is being created.
    pub fn define(&self, name: &str, gauge: bool) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: `ptr` is the configuration being created by the running hook; the name
        // points into `name` for the call; `id` is a live local.
        let result = unsafe {
            if gauge {
                envoy_dynamic_module_callback_http_filter_config_define_gauge(
                    self.ptr,
                    ModuleBuffer::of(name.as_bytes()),
                    std::ptr::null_mut(),
                    0,
                    &mut id,
                )
            } else {
                envoy_dynamic_module_callback_http_filter_config_define_counter(
                    self.ptr,
                    ModuleBuffer::of(name.as_bytes()),
                    std::ptr::null_mut(),
                    0,
                    &mut id,
                )
            }
        };
        (result == METRICS_SUCCESS).then_some(id)
    }

    pub fn increment_counter(&self, id: usize) {
        // SAFETY: `ptr` is a live configuration (the caller runs in one of its hooks); no labels.
        let _ = unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.ptr,
                id,
                std::ptr::null_mut(),
                0,
                1,
            )
        };
    }

    pub fn set_gauge(&self, id: usize, value: u64) {
        // SAFETY: as for `increment_counter`.
        let _ = unsafe {
            envoy_dynamic_module_callback_http_filter_config_set_gauge(
                self.ptr,
                id,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
    }

    /// Starts a request to `cluster`; its answer arrives in
    /// `envoy_dynamic_module_on_http_filter_config_http_callout_done` with the returned id.
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: `ptr` is a live configuration and this runs on the main thread (a hook of
        // the configuration's); the buffers point into live slices, copied by Envoy; `id` is
        // a live local.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.ptr,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::NULL,
                timeout_ms,
            )
        };
        if result == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }

    /// A handle that wakes the configuration on the main thread from any thread.
    pub fn scheduler(&self) -> Option<Scheduler> {
        // SAFETY: `ptr` is the configuration being created by the running hook.
        let ptr =
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.ptr) };
        (!ptr.is_null()).then_some(Scheduler { ptr })
    }
}

/// Posts events to the configuration's `on_http_filter_config_scheduled` on the main thread.
pub struct Scheduler {
    ptr: scheduler_ptr,
}

// SAFETY: Envoy's configuration scheduler exists to be committed from other threads (abi.h:
// "schedule an event to be executed on the main thread"); it posts to the main dispatcher,
// which is thread-safe. Deleting it (on drop) happens once, from whichever thread drops it.
unsafe impl Send for Scheduler {}
// SAFETY: `commit` takes `&self` and Envoy's commit is safe to call concurrently.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    pub fn commit(&self, event: u64) {
        // SAFETY: `ptr` came from `scheduler_new` and is deleted only on drop.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.ptr, event)
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: deleted once; no commit can follow, as this is the handle's end.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.ptr) }
    }
}

/// A configuration-level callout's answer as Envoy hands it over: its headers and its body's
/// chunks.
pub struct CalloutAnswer<'a> {
    pub headers: &'a [(&'a [u8], &'a [u8])],
    pub body: &'a [&'a [u8]],
}
