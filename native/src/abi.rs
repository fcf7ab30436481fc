//! Envoy 1.40's dynamic-module ABI, as far as certbind uses it: the event hooks Envoy calls
//! (`envoy_dynamic_module_on_*`) and the callbacks the module calls back
//! (`envoy_dynamic_module_callback_*`), declared from the ABI header of that release
//! (`source/extensions/dynamic_modules/abi/abi.h`, ABI version `v0.2.0`).
//!
//! Every `unsafe` of the module is here. Each hook turns Envoy's pointers into the safe
//! handles below, catches any panic ([`guard`]) and hands over to [`crate::shim`]; nothing
//! beyond this file sees a raw pointer. tests/e2e/test_native.py checks that every callback the
//! built module imports is exported by the Envoy binary the project runs, and that Envoy reports
//! the version below as matched.
//!
//! The benchmark's baseline modules (tests/guests/noop-module, tests/guests/passthrough-module)
//! are built over this very file, each with a `shim` of its own that provides what this one
//! calls (`program_init`, `config_new`, `config_scheduled`, `callout_done`, `filter_new`,
//! `request_headers`, `request_trailers`, `fail_closed`, `NativeConfig`, `NativeFilter`): what
//! they cost is what the ABI and its guards cost certbind.
#![allow(non_camel_case_types)]

use crate::shim;
use certbind_filter::http::Verdict;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The ABI version Envoy 1.40 compares with `envoy_dynamic_module_on_program_init`'s answer
/// (it logs "Dynamic module ABI version v0.2.0 matched." when they agree).
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

type filter_envoy_ptr = *mut c_void;
type filter_module_ptr = *const c_void;
type config_envoy_ptr = *mut c_void;
type config_module_ptr = *const c_void;
type scheduler_ptr = *mut c_void;

/// A buffer Envoy owns (`envoy_dynamic_module_type_envoy_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

/// A buffer the module owns (`envoy_dynamic_module_type_module_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// A header the module owns (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
struct ModuleHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

/// `headers` as the ABI takes them: pointers into the caller's strings, valid while they are.
fn module_headers(headers: &[(&str, &str)]) -> Vec<ModuleHttpHeader> {
    headers
        .iter()
        .map(|(name, value)| ModuleHttpHeader {
            key_ptr: name.as_ptr().cast(),
            key_length: name.len(),
            value_ptr: value.as_ptr().cast(),
            value_length: value.len(),
        })
        .collect()
}

/// A header in one of Envoy's header maps (`envoy_dynamic_module_type_envoy_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    key_ptr: *const c_char,
    key_length: usize,
    value_ptr: *const c_char,
    value_length: usize,
}

// envoy_dynamic_module_type_http_header_type
const REQUEST_HEADER: u32 = 0;
const REQUEST_TRAILER: u32 = 1;

// envoy_dynamic_module_type_on_http_filter_request_headers_status (and the trailers' and
// the bodies' statuses, whose first two members are the same).
const STATUS_CONTINUE: u32 = 0;
const STATUS_STOP_ITERATION: u32 = 1;

// envoy_dynamic_module_type_metrics_result
const METRICS_SUCCESS: u32 = 0;
// envoy_dynamic_module_type_http_callout_init_result
const CALLOUT_INIT_SUCCESS: u32 = 0;
// envoy_dynamic_module_type_http_callout_result
const CALLOUT_SUCCESS: u32 = 0;

/// Severity of a line in Envoy's `dynamic_modules` log (`envoy_dynamic_module_type_log_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// The connection attributes the request path reads (`envoy_dynamic_module_type_attribute_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Attribute {
    SourceAddress = 24,
    ConnectionSubjectPeerCertificate = 33,
    ConnectionDnsSanPeerCertificate = 35,
    ConnectionUriSanPeerCertificate = 37,
    ConnectionSha256PeerCertificateDigest = 38,
}

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: filter_envoy_ptr,
        header_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: filter_envoy_ptr,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: filter_envoy_ptr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: filter_envoy_ptr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: filter_envoy_ptr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: filter_envoy_ptr,
        status_code: u32,
        headers_vector: *mut ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: filter_envoy_ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: config_envoy_ptr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: config_envoy_ptr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        gauge_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: config_envoy_ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: config_envoy_ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: config_envoy_ptr,
        callout_id: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: config_envoy_ptr,
    ) -> scheduler_ptr;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: scheduler_ptr,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: scheduler_ptr);
}

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

/// Runs `body`, catching a panic: the module must never unwind into Envoy (which would abort
/// the proxy). A panic is logged and `fallback` answers instead; should that panic too,
/// `otherwise` is returned.
fn guard<T>(what: &str, body: impl FnOnce() -> T, fallback: impl FnOnce() -> T, otherwise: T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            let _ = catch_unwind(|| {
                log(
                    LogLevel::Critical,
                    &format!("certbind: panic in {what}; failing closed"),
                )
            });
            catch_unwind(AssertUnwindSafe(fallback)).unwrap_or(otherwise)
        }
    }
}

/// Hands `value` to Envoy as the opaque pointer of a configuration or a stream, until its
/// destroy hook gives it to [`take_back`].
fn hand_over<T>(value: T) -> *const c_void {
    Box::into_raw(Box::new(value)).cast_const().cast::<c_void>()
}

/// Drops what [`hand_over`] gave Envoy, now that Envoy destroys it (`what`: for the log,
/// should dropping it panic).
fn take_back<T>(what: &str, ptr: *const c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: the destroy hooks pass only pointers `hand_over::<T>` made for the same `T` (the
    // configuration's or the stream's), and Envoy destroys each once, after its last hook.
    let value = unsafe { Box::from_raw(ptr.cast::<T>().cast_mut()) };
    guard(what, move || drop(value), || (), ());
}

/// The module's configuration behind `config_module_ptr`.
fn config_ref<'a>(ptr: config_module_ptr) -> Option<&'a shim::NativeConfig> {
    // SAFETY: a non-null `config_module_ptr` is the `Box<NativeConfig>` leaked by
    // `on_http_filter_config_new`, which Envoy keeps until `on_http_filter_config_destroy`;
    // it is only read through `&` (its mutable parts are behind locks).
    unsafe { ptr.cast::<shim::NativeConfig>().as_ref() }
}

/// The module's stream state behind `filter_module_ptr`.
fn filter_mut<'a>(ptr: filter_module_ptr) -> Option<&'a mut shim::NativeFilter> {
    // SAFETY: a non-null `filter_module_ptr` is the `Box<NativeFilter>` leaked by
    // `on_http_filter_new`; Envoy calls one stream's hooks on one thread, one at a time, until
    // `on_http_filter_destroy`, so this is the only reference.
    unsafe { ptr.cast::<shim::NativeFilter>().cast_mut().as_mut() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guard(
        "program init",
        || shim::program_init().as_ptr(),
        std::ptr::null,
        std::ptr::null(),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: config_envoy_ptr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> config_module_ptr {
    let config_bytes = envoy_bytes(config.ptr, config.length);
    let name = envoy_bytes(name.ptr, name.length);
    guard(
        "configuration",
        || match shim::config_new(Config { ptr: config_envoy }, name, config_bytes) {
            Some(config) => hand_over(config),
            None => std::ptr::null(),
        },
        std::ptr::null,
        std::ptr::null(),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: config_module_ptr) {
    take_back::<shim::NativeConfig>("configuration teardown", config);
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: config_envoy_ptr,
    config: config_module_ptr,
    event_id: u64,
) {
    let Some(native) = config_ref(config) else {
        return;
    };
    guard(
        "scheduled event",
        || shim::config_scheduled(Config { ptr: config_envoy }, native, event_id),
        || (),
        (),
    );
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: config_envoy_ptr,
    config: config_module_ptr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    let Some(native) = config_ref(config) else {
        return;
    };
    let answered = result == CALLOUT_SUCCESS && !headers.is_null();
    let headers: &[EnvoyHttpHeader] = if answered && headers_size > 0 {
        // SAFETY: Envoy hands `headers_size` headers at `headers`, valid until this hook returns.
        unsafe { std::slice::from_raw_parts(headers, headers_size) }
    } else {
        &[]
    };
    let chunks: &[EnvoyBuffer] = if answered && !body_chunks.is_null() && body_chunks_size > 0 {
        // SAFETY: as for the headers: `body_chunks_size` buffers at `body_chunks`.
        unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) }
    } else {
        &[]
    };
    let headers: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|h| {
            (
                envoy_bytes(h.key_ptr, h.key_length),
                envoy_bytes(h.value_ptr, h.value_length),
            )
        })
        .collect();
    let chunks: Vec<&[u8]> = chunks
        .iter()
        .map(|c| envoy_bytes(c.ptr, c.length))
        .collect();
    guard(
        "snapshot fetch answer",
        || {
            shim::callout_done(
                Config { ptr: config_envoy },
                native,
                callout_id,
                answered.then_some(CalloutAnswer { headers: &headers, body: &chunks }),
            )
        },
        || (),
        (),
    );
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: config_module_ptr,
    _filter: filter_envoy_ptr,
) -> filter_module_ptr {
    let Some(native) = config_ref(config) else {
        return std::ptr::null();
    };
    guard(
        "new stream",
        || hand_over(shim::filter_new(native)),
        std::ptr::null,
        std::ptr::null(),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: filter_module_ptr) {
    take_back::<shim::NativeFilter>("stream teardown", filter);
}

/// A request hook: the stream's state, the shim's verdict, and 503 `identity_unavailable` if
/// anything panics (or the state is missing).
fn request_hook(
    what: &str,
    envoy: filter_envoy_ptr,
    state: filter_module_ptr,
    run: impl FnOnce(&Filter, &mut shim::NativeFilter) -> Verdict,
) -> u32 {
    let filter = Filter { ptr: envoy };
    let verdict = match filter_mut(state) {
        Some(state) => guard(
            what,
            || run(&filter, state),
            || shim::fail_closed(&filter),
            Verdict::Responded,
        ),
        None => guard(
            what,
            || shim::fail_closed(&filter),
            || Verdict::Responded,
            Verdict::Responded,
        ),
    };
    match verdict {
        Verdict::Continue => STATUS_CONTINUE,
        Verdict::Responded => STATUS_STOP_ITERATION,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: filter_envoy_ptr,
    state: filter_module_ptr,
    _end_of_stream: bool,
) -> u32 {
    request_hook("request headers", envoy, state, shim::request_headers)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: filter_envoy_ptr,
    state: filter_module_ptr,
) -> u32 {
    request_hook("request trailers", envoy, state, shim::request_trailers)
}

// The hooks certbind has no use for, which Envoy requires all the same: each lets the stream
// go on. Nothing certbind does starts a stream-level callout, stream or scheduled event.
macro_rules! continue_hooks {
    ($($name:ident($($arg:ty),*);)*) => {
        $(
            #[no_mangle]
            pub extern "C" fn $name($(_: $arg),*) -> u32 {
                STATUS_CONTINUE
            }
        )*
    };
}

macro_rules! idle_hooks {
    ($($name:ident($($arg:ty),*);)*) => {
        $(
            #[no_mangle]
            pub extern "C" fn $name($(_: $arg),*) {}
        )*
    };
}

continue_hooks! {
    envoy_dynamic_module_on_http_filter_request_body(filter_envoy_ptr, filter_module_ptr, bool);
    envoy_dynamic_module_on_http_filter_response_headers(filter_envoy_ptr, filter_module_ptr, bool);
    envoy_dynamic_module_on_http_filter_response_body(filter_envoy_ptr, filter_module_ptr, bool);
    envoy_dynamic_module_on_http_filter_response_trailers(filter_envoy_ptr, filter_module_ptr);
}

idle_hooks! {
    envoy_dynamic_module_on_http_filter_stream_complete(filter_envoy_ptr, filter_module_ptr);
    envoy_dynamic_module_on_http_filter_http_callout_done(
        filter_envoy_ptr, filter_module_ptr, u64, u32, *const EnvoyHttpHeader, usize, *const EnvoyBuffer, usize
    );
    envoy_dynamic_module_on_http_filter_http_stream_headers(
        filter_envoy_ptr, filter_module_ptr, u64, *const EnvoyHttpHeader, usize, bool
    );
    envoy_dynamic_module_on_http_filter_http_stream_data(
        filter_envoy_ptr, filter_module_ptr, u64, *const EnvoyBuffer, usize, bool
    );
    envoy_dynamic_module_on_http_filter_http_stream_trailers(
        filter_envoy_ptr, filter_module_ptr, u64, *const EnvoyHttpHeader, usize
    );
    envoy_dynamic_module_on_http_filter_http_stream_complete(filter_envoy_ptr, filter_module_ptr, u64);
    envoy_dynamic_module_on_http_filter_http_stream_reset(filter_envoy_ptr, filter_module_ptr, u64, u32);
    envoy_dynamic_module_on_http_filter_scheduled(filter_envoy_ptr, filter_module_ptr, u64);
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(filter_envoy_ptr, filter_module_ptr);
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(filter_envoy_ptr, filter_module_ptr);
}
