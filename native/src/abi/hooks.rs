//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`): each turns Envoy's pointers into
//! the handles of [`super`], catches any panic ([`guard`]) so that none unwinds into Envoy, and
//! hands over to the crate's `shim`.

use super::header::*;
use super::{envoy_bytes, log, CalloutAnswer, Config, Filter, LogLevel};
use crate::shim;
use certbind_filter::http::Verdict;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

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
