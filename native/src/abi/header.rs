//! The declarations of Envoy 1.40's dynamic-module ABI that certbind uses, written from the
//! ABI header of that release (`source/extensions/dynamic_modules/abi/abi.h`, ABI version
//! `v0.2.0`): the pointer types, the `repr(C)` structs and enums, the constants, and the
//! callbacks (`envoy_dynamic_module_callback_*`) the module calls back. Nothing here is called
//! outside [`super`], which wraps each callback in a safe handle.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

/// The ABI version Envoy 1.40 compares with `envoy_dynamic_module_on_program_init`'s answer
/// (it logs "Dynamic module ABI version v0.2.0 matched." when they agree).
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

pub(super) type filter_envoy_ptr = *mut c_void;
pub(super) type filter_module_ptr = *const c_void;
pub(super) type config_envoy_ptr = *mut c_void;
pub(super) type config_module_ptr = *const c_void;
pub(super) type scheduler_ptr = *mut c_void;

/// A buffer Envoy owns (`envoy_dynamic_module_type_envoy_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub(super) ptr: *const c_char,
    pub(super) length: usize,
}

/// A buffer the module owns (`envoy_dynamic_module_type_module_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct ModuleBuffer {
    pub(super) ptr: *const c_char,
    pub(super) length: usize,
}

impl ModuleBuffer {
    pub(super) fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    pub(super) const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// A header the module owns (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
pub(super) struct ModuleHttpHeader {
    pub(super) key_ptr: *const c_char,
    pub(super) key_length: usize,
    pub(super) value_ptr: *const c_char,
    pub(super) value_length: usize,
}

/// `headers` as the ABI takes them: pointers into the caller's strings, valid while they are.
pub(super) fn module_headers(headers: &[(&str, &str)]) -> Vec<ModuleHttpHeader> {
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
    pub(super) key_ptr: *const c_char,
    pub(super) key_length: usize,
    pub(super) value_ptr: *const c_char,
    pub(super) value_length: usize,
}

// envoy_dynamic_module_type_http_header_type
pub(super) const REQUEST_HEADER: u32 = 0;
pub(super) const REQUEST_TRAILER: u32 = 1;

// envoy_dynamic_module_type_on_http_filter_request_headers_status (and the trailers' and
// the bodies' statuses, whose first two members are the same).
pub(super) const STATUS_CONTINUE: u32 = 0;
pub(super) const STATUS_STOP_ITERATION: u32 = 1;

// envoy_dynamic_module_type_metrics_result
pub(super) const METRICS_SUCCESS: u32 = 0;
// envoy_dynamic_module_type_http_callout_init_result
pub(super) const CALLOUT_INIT_SUCCESS: u32 = 0;
// envoy_dynamic_module_type_http_callout_result
pub(super) const CALLOUT_SUCCESS: u32 = 0;

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
    pub(super) fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    pub(super) fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: filter_envoy_ptr,
        header_type: u32,
    ) -> usize;
    pub(super) fn envoy_dynamic_module_callback_http_get_headers(
        filter: filter_envoy_ptr,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;
    pub(super) fn envoy_dynamic_module_callback_http_set_header(
        filter: filter_envoy_ptr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub(super) fn envoy_dynamic_module_callback_http_add_header(
        filter: filter_envoy_ptr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub(super) fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: filter_envoy_ptr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    pub(super) fn envoy_dynamic_module_callback_http_send_response(
        filter: filter_envoy_ptr,
        status_code: u32,
        headers_vector: *mut ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    pub(super) fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: filter_envoy_ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: config_envoy_ptr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: config_envoy_ptr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        gauge_id: *mut usize,
    ) -> u32;
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: config_envoy_ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: config_envoy_ptr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: config_envoy_ptr,
        callout_id: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: config_envoy_ptr,
    ) -> scheduler_ptr;
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: scheduler_ptr,
        event_id: u64,
    );
    pub(super) fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: scheduler_ptr);
}
