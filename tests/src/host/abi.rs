//! The proxy-wasm ABI 0.2.1 host functions (`env` module), modelled on Envoy's behaviour
//! (proxy-wasm-cpp-host `exports.cc` and Envoy's `Context`):
//!
//! - header maps: names lowercased; a lookup returns the first value; `replace` removes every
//!   entry of the name and appends one; only the request headers exist while a request runs,
//!   only the callout's response headers/trailers while `proxy_on_http_call_response` runs
//!   (an absent map reads as empty and refuses changes with `BadArgument`);
//! - buffers: VM configuration always, plugin configuration during start/configure, the callout
//!   body during `proxy_on_http_call_response`; reads are clamped to the buffer;
//! - data returned to the guest is allocated with the guest's `proxy_on_memory_allocate` (or
//!   `malloc`); an empty value is returned as (null, 0) without allocating, as Envoy does;
//! - a pointer or length outside guest memory, or a malformed serialized map, traps (Envoy
//!   would return `InvalidMemoryAccess`, which the Rust SDK turns into a panic anyway).

use wasmtime::{bail, format_err, Caller, Linker, Result};

use super::memory::{self, addr};
use super::pairs;
use super::state::{
    CallResponse, HostCall, HostState, LocalResponse, Metric, MetricKind, PendingHttpCall, Phase, Status,
};

pub const MODULE: &str = "env";

/// Most histogram samples kept per metric (older ones are dropped): bounded memory in benches.
const MAX_HISTOGRAM_SAMPLES: usize = 64 * 1024;

/// Every `env` function this host implements, by field name.
pub const IMPLEMENTED: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_send_local_response",
    "proxy_http_call",
    "proxy_set_effective_context",
    "proxy_done",
    "proxy_call_foreign_function",
    "proxy_define_metric",
    "proxy_get_metric",
    "proxy_record_metric",
    "proxy_increment_metric",
];

pub(crate) fn count(caller: &mut Caller<'_, HostState>, call: HostCall) {
    caller.data_mut().record_call(call);
}

/// The guest's memory and the host state, borrowed together.
pub(crate) fn memory_and_state<'a>(caller: &'a mut Caller<'_, HostState>) -> Result<(&'a mut [u8], &'a mut HostState)> {
    let memory = caller.data().memory.ok_or_else(|| format_err!("the guest exports no memory named `memory`"))?;
    Ok(memory.data_and_store_mut(caller))
}

/// Copies `state.scratch` into a fresh guest allocation and stores its address and size at
/// `ptr_out` / `size_out`. Empty data is returned as (0, 0) without allocating.
fn return_scratch(caller: &mut Caller<'_, HostState>, ptr_out: i32, size_out: i32) -> Result<()> {
    let len = caller.data().scratch.len();
    let len32 = u32::try_from(len).map_err(|_| format_err!("a {len}-byte value does not fit 32-bit guest memory"))?;
    let mut guest_ptr = 0u32;
    if len > 0 {
        let allocator = caller
            .data()
            .allocator
            .clone()
            .ok_or_else(|| format_err!("the guest exports neither proxy_on_memory_allocate nor malloc"))?;
        guest_ptr = addr(allocator.call(&mut *caller, len32 as i32)?);
        if guest_ptr == 0 {
            bail!("the guest allocator returned null for {len} bytes");
        }
        let (mem, state) = memory_and_state(caller)?;
        memory::write(mem, guest_ptr, &state.scratch)?;
    }
    let (mem, _) = memory_and_state(caller)?;
    memory::write_u32(mem, addr(ptr_out), guest_ptr)?;
    memory::write_u32(mem, addr(size_out), len32)?;
    Ok(())
}

/// Runs `lookup` with the (cleared) scratch buffer taken out of the state, then puts it back.
fn fill_scratch(state: &mut HostState, lookup: impl FnOnce(&HostState, &mut Vec<u8>) -> Status) -> Status {
    let mut scratch = std::mem::take(&mut state.scratch);
    scratch.clear();
    let status = lookup(state, &mut scratch);
    state.scratch = scratch;
    status
}

/// Fills the scratch buffer with `fill` and returns it to the guest.
fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    ptr_out: i32,
    size_out: i32,
    fill: impl FnOnce(&HostState, &mut Vec<u8>),
) -> Result<()> {
    fill_scratch(caller.data_mut(), |state, out| {
        fill(state, out);
        Status::Ok
    });
    return_scratch(caller, ptr_out, size_out)
}

/// Which header map a `map_type` names right now.
enum MapSlot {
    RequestHeaders,
    RequestTrailers,
    CallResponseHeaders,
    CallResponseTrailers,
    /// A valid map type that does not exist in the current callback.
    Absent,
}

fn map_slot(state: &HostState, map_type: i32) -> Option<MapSlot> {
    let slot = match map_type {
        0 if state.phase == Phase::Request => MapSlot::RequestHeaders,
        1 if state.phase == Phase::Request => MapSlot::RequestTrailers,
        6 if state.call_response.is_some() => MapSlot::CallResponseHeaders,
        7 if state.call_response.is_some() => MapSlot::CallResponseTrailers,
        0..=7 => MapSlot::Absent,
        _ => return None,
    };
    Some(slot)
}

fn map_ref<'a>(state: &'a HostState, slot: &MapSlot) -> Option<&'a super::state::HeaderMap> {
    match slot {
        MapSlot::RequestHeaders => Some(&state.request_headers),
        MapSlot::RequestTrailers => Some(&state.request_trailers),
        MapSlot::CallResponseHeaders => state.call_response.as_ref().map(|response| &response.headers),
        MapSlot::CallResponseTrailers => state.call_response.as_ref().map(|response| &response.trailers),
        MapSlot::Absent => None,
    }
}

/// Only the request headers and trailers can be changed (callout responses are read-only, as
/// in Envoy).
fn map_mut(state: &mut HostState, map_type: i32) -> std::result::Result<&mut super::state::HeaderMap, Status> {
    match map_slot(state, map_type) {
        Some(MapSlot::RequestHeaders) => Ok(&mut state.request_headers),
        Some(MapSlot::RequestTrailers) => Ok(&mut state.request_trailers),
        Some(_) => Err(Status::BadArgument),
        None => Err(Status::BadArgument),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    add_general(linker)?;
    add_header_maps(linker)?;
    add_properties_and_shared(linker)?;
    add_stream_control(linker)?;
    add_metrics(linker)?;
    Ok(())
}

fn add_general(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_log",
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            count(&mut caller, HostCall::Log);
            let Ok(level) = u32::try_from(level) else { return Ok(Status::BadArgument.code()) };
            if level > super::state::log_level::CRITICAL {
                return Ok(Status::BadArgument.code());
            }
            let (mem, state) = memory_and_state(&mut caller)?;
            let message = lossy(memory::read(mem, addr(ptr), addr(len))?);
            state.push_log(level, message);
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(MODULE, "proxy_get_log_level", |mut caller: Caller<'_, HostState>, out: i32| -> Result<i32> {
        count(&mut caller, HostCall::GetLogLevel);
        let (mem, state) = memory_and_state(&mut caller)?;
        memory::write_u32(mem, addr(out), state.log_level)?;
        Ok(Status::Ok.code())
    })?;
    linker.func_wrap(
        MODULE,
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, HostState>, out: i32| -> Result<i32> {
            count(&mut caller, HostCall::GetCurrentTime);
            let (mem, state) = memory_and_state(&mut caller)?;
            memory::write_u64(mem, addr(out), state.now_nanos)?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_set_tick_period_milliseconds",
        |mut caller: Caller<'_, HostState>, period: i32| -> i32 {
            count(&mut caller, HostCall::SetTickPeriod);
            caller.data_mut().tick_period_ms = addr(period);
            Status::Ok.code()
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         buffer_type: i32,
         start: i32,
         max_size: i32,
         ptr_out: i32,
         size_out: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::GetBufferBytes);
            let (start, max_size) = (addr(start), addr(max_size));
            let Some(end) = start.checked_add(max_size) else { return Ok(Status::BadArgument.code()) };
            let state = caller.data();
            let buffer: Option<&[u8]> = match buffer_type {
                4 => state.call_response.as_ref().map(|response| response.body.as_slice()),
                6 => Some(&state.vm_configuration),
                7 if state.phase == Phase::Starting => Some(&state.plugin_configuration),
                0..=8 => None,
                _ => return Ok(Status::BadArgument.code()),
            };
            let Some(buffer) = buffer else { return Ok(Status::NotFound.code()) };
            // Clamp to the buffer as Envoy does; a start past the end reads nothing.
            let start = usize::try_from(start).unwrap_or(usize::MAX).min(buffer.len());
            let end = usize::try_from(end).unwrap_or(usize::MAX).min(buffer.len());
            let (start, end) = (start, end.max(start));
            return_bytes(&mut caller, ptr_out, size_out, |state, out| {
                let buffer: &[u8] = match buffer_type {
                    4 => state.call_response.as_ref().map_or(&[], |response| response.body.as_slice()),
                    6 => &state.vm_configuration,
                    _ => &state.plugin_configuration,
                };
                out.extend_from_slice(buffer.get(start..end).unwrap_or(&[]));
            })?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         buffer_type: i32,
         _start: i32,
         _size: i32,
         data: i32,
         data_len: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::SetBufferBytes);
            if !(0..=8).contains(&buffer_type) {
                return Ok(Status::BadArgument.code());
            }
            let (mem, _) = memory_and_state(&mut caller)?;
            memory::read(mem, addr(data), addr(data_len))?;
            // No body or call-data buffer is exposed by this host, so none can be written.
            Ok(Status::NotFound.code())
        },
    )?;
    Ok(())
}

fn add_header_maps(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, HostState>, map_type: i32, ptr_out: i32, size_out: i32| -> Result<i32> {
            count(&mut caller, HostCall::GetHeaderMapPairs);
            let Some(slot) = map_slot(caller.data(), map_type) else { return Ok(Status::BadArgument.code()) };
            let mut too_large = false;
            return_bytes(&mut caller, ptr_out, size_out, |state, out| {
                // An absent or empty map is returned as no data, as Envoy does.
                if let Some(map) = map_ref(state, &slot).filter(|map| !map.is_empty()) {
                    too_large = pairs::serialize_into(map.iter(), out).is_none();
                }
            })?;
            if too_large {
                bail!("header map too large to serialize for the guest");
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_set_header_map_pairs",
        |mut caller: Caller<'_, HostState>, map_type: i32, ptr: i32, len: i32| -> Result<i32> {
            count(&mut caller, HostCall::SetHeaderMapPairs);
            let (mem, state) = memory_and_state(&mut caller)?;
            let serialized = memory::read(mem, addr(ptr), addr(len))?;
            // Validate fully before touching the map, so a bad map changes nothing.
            pairs::for_each_pair(serialized, |_, _| {})
                .map_err(|err| format_err!("proxy_set_header_map_pairs: {err}"))?;
            let map = match map_mut(state, map_type) {
                Ok(map) => map,
                Err(status) => return Ok(status.code()),
            };
            map.clear();
            pairs::for_each_pair(serialized, |key, value| map.add(key, value))
                .map_err(|err| format_err!("proxy_set_header_map_pairs: {err}"))?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         ptr_out: i32,
         size_out: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::GetHeaderMapValue);
            let (mem, state) = memory_and_state(&mut caller)?;
            let key = memory::read(mem, addr(key_ptr), addr(key_len))?;
            let status = fill_scratch(state, |state, out| {
                let Some(slot) = map_slot(state, map_type) else { return Status::BadArgument };
                let Some(map) = map_ref(state, &slot) else { return Status::BadArgument };
                let Some(value) = map.get(key) else { return Status::NotFound };
                out.extend_from_slice(value);
                Status::Ok
            });
            if status != Status::Ok {
                return Ok(status.code());
            }
            return_scratch(&mut caller, ptr_out, size_out)?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_add_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::AddHeaderMapValue);
            let (mem, state) = memory_and_state(&mut caller)?;
            let key = memory::read(mem, addr(key_ptr), addr(key_len))?;
            let value = memory::read(mem, addr(value_ptr), addr(value_len))?;
            match map_mut(state, map_type) {
                Ok(map) => {
                    map.add(key, value);
                    Ok(Status::Ok.code())
                }
                Err(status) => Ok(status.code()),
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_replace_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: i32,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::ReplaceHeaderMapValue);
            let (mem, state) = memory_and_state(&mut caller)?;
            let key = memory::read(mem, addr(key_ptr), addr(key_len))?;
            let value = memory::read(mem, addr(value_ptr), addr(value_len))?;
            match map_mut(state, map_type) {
                Ok(map) => {
                    map.replace(key, value);
                    Ok(Status::Ok.code())
                }
                Err(status) => Ok(status.code()),
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_remove_header_map_value",
        |mut caller: Caller<'_, HostState>, map_type: i32, key_ptr: i32, key_len: i32| -> Result<i32> {
            count(&mut caller, HostCall::RemoveHeaderMapValue);
            let (mem, state) = memory_and_state(&mut caller)?;
            let key = memory::read(mem, addr(key_ptr), addr(key_len))?;
            match map_mut(state, map_type) {
                Ok(map) => {
                    map.remove(key);
                    Ok(Status::Ok.code())
                }
                Err(status) => Ok(status.code()),
            }
        },
    )?;
    Ok(())
}

fn add_properties_and_shared(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_get_property",
        |mut caller: Caller<'_, HostState>, path_ptr: i32, path_len: i32, ptr_out: i32, size_out: i32| -> Result<i32> {
            count(&mut caller, HostCall::GetProperty);
            let (mem, state) = memory_and_state(&mut caller)?;
            let path = memory::read(mem, addr(path_ptr), addr(path_len))?;
            let status = fill_scratch(state, |state, out| {
                let in_request = state.active_http_context.is_some();
                let value = in_request
                    .then(|| state.request_properties.get(path))
                    .flatten()
                    .or_else(|| state.host_properties.get(path));
                let Some(value) = value else { return Status::NotFound };
                out.extend_from_slice(value);
                Status::Ok
            });
            if status != Status::Ok {
                return Ok(status.code());
            }
            return_scratch(&mut caller, ptr_out, size_out)?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_set_property",
        |mut caller: Caller<'_, HostState>,
         path_ptr: i32,
         path_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::SetProperty);
            let (mem, state) = memory_and_state(&mut caller)?;
            let path = memory::read(mem, addr(path_ptr), addr(path_len))?;
            let value = memory::read(mem, addr(value_ptr), addr(value_len))?;
            // Per-request (filter state) while a request runs, VM-wide otherwise.
            if state.active_http_context.is_some() {
                state.request_properties.set(path, value);
            } else {
                state.host_properties.set(path, value);
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_get_shared_data",
        |mut caller: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         ptr_out: i32,
         size_out: i32,
         cas_out: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::GetSharedData);
            let (mem, state) = memory_and_state(&mut caller)?;
            let key = memory::read(mem, addr(key_ptr), addr(key_len))?;
            let mut scratch = std::mem::take(&mut state.scratch);
            let found = state.shared.get_into(key, &mut scratch);
            state.scratch = scratch;
            let Some(cas) = found else { return Ok(Status::NotFound.code()) };
            return_scratch(&mut caller, ptr_out, size_out)?;
            let (mem, _) = memory_and_state(&mut caller)?;
            memory::write_u32(mem, addr(cas_out), cas)?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_set_shared_data",
        |mut caller: Caller<'_, HostState>,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32,
         cas: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::SetSharedData);
            let (mem, state) = memory_and_state(&mut caller)?;
            let key = memory::read(mem, addr(key_ptr), addr(key_len))?;
            let value = memory::read(mem, addr(value_ptr), addr(value_len))?;
            match state.shared.set_bytes(key, value, addr(cas)) {
                Ok(_) => Ok(Status::Ok.code()),
                Err(_) => Ok(Status::CasMismatch.code()),
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_register_shared_queue",
        |mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32, token_out: i32| -> Result<i32> {
            count(&mut caller, HostCall::RegisterSharedQueue);
            let (mem, state) = memory_and_state(&mut caller)?;
            let name = memory::read(mem, addr(name_ptr), addr(name_len))?;
            let token = state.shared.register_queue(name);
            memory::write_u32(mem, addr(token_out), token)?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_resolve_shared_queue",
        |mut caller: Caller<'_, HostState>,
         vm_id_ptr: i32,
         vm_id_len: i32,
         name_ptr: i32,
         name_len: i32,
         token_out: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::ResolveSharedQueue);
            let (mem, state) = memory_and_state(&mut caller)?;
            // Every host here shares one VM id, so the id only needs to be readable.
            memory::read(mem, addr(vm_id_ptr), addr(vm_id_len))?;
            let name = memory::read(mem, addr(name_ptr), addr(name_len))?;
            let Some(token) = state.shared.resolve_queue(name) else { return Ok(Status::NotFound.code()) };
            memory::write_u32(mem, addr(token_out), token)?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_enqueue_shared_queue",
        |mut caller: Caller<'_, HostState>, token: i32, value_ptr: i32, value_len: i32| -> Result<i32> {
            count(&mut caller, HostCall::EnqueueSharedQueue);
            let (mem, state) = memory_and_state(&mut caller)?;
            let value = memory::read(mem, addr(value_ptr), addr(value_len))?;
            if state.shared.enqueue(addr(token), value) {
                Ok(Status::Ok.code())
            } else {
                Ok(Status::NotFound.code())
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_dequeue_shared_queue",
        |mut caller: Caller<'_, HostState>, token: i32, ptr_out: i32, size_out: i32| -> Result<i32> {
            count(&mut caller, HostCall::DequeueSharedQueue);
            let item = match caller.data().shared.dequeue(addr(token)) {
                Ok(Some(item)) => item,
                Ok(None) => return Ok(Status::Empty.code()),
                Err(status) => return Ok(status.code()),
            };
            return_bytes(&mut caller, ptr_out, size_out, |_, out| out.extend_from_slice(&item))?;
            Ok(Status::Ok.code())
        },
    )?;
    Ok(())
}

fn add_stream_control(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(MODULE, "proxy_continue_stream", |mut caller: Caller<'_, HostState>, stream: i32| -> i32 {
        count(&mut caller, HostCall::ContinueStream);
        if !(0..=3).contains(&stream) {
            return Status::BadArgument.code();
        }
        let state = caller.data_mut();
        state.continue_stream_calls = state.continue_stream_calls.saturating_add(1);
        Status::Ok.code()
    })?;
    linker.func_wrap(MODULE, "proxy_close_stream", |mut caller: Caller<'_, HostState>, stream: i32| -> i32 {
        count(&mut caller, HostCall::CloseStream);
        if !(0..=3).contains(&stream) {
            return Status::BadArgument.code();
        }
        let state = caller.data_mut();
        state.close_stream_calls = state.close_stream_calls.saturating_add(1);
        Status::Ok.code()
    })?;
    linker.func_wrap(
        MODULE,
        "proxy_send_local_response",
        |mut caller: Caller<'_, HostState>,
         status: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         grpc_status: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::SendLocalResponse);
            let (mem, state) = memory_and_state(&mut caller)?;
            let details = lossy(memory::read(mem, addr(details_ptr), addr(details_len))?);
            let body = memory::read(mem, addr(body_ptr), addr(body_len))?.to_vec();
            let headers = pairs::deserialize_lossy(memory::read(mem, addr(headers_ptr), addr(headers_len))?)
                .map_err(|err| format_err!("proxy_send_local_response headers: {err}"))?
                .into_iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value))
                .collect();
            if state.active_http_context.is_none() {
                return Ok(Status::BadArgument.code());
            }
            let response = LocalResponse { status: addr(status), headers, body, details, grpc_status };
            if state.local_response.is_some() {
                state.extra_local_responses.push(response.status);
            } else {
                state.local_response = Some(response);
            }
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_http_call",
        |mut caller: Caller<'_, HostState>,
         upstream_ptr: i32,
         upstream_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         body_ptr: i32,
         body_len: i32,
         trailers_ptr: i32,
         trailers_len: i32,
         timeout_ms: i32,
         token_out: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::HttpCall);
            let (mem, state) = memory_and_state(&mut caller)?;
            let upstream = lossy(memory::read(mem, addr(upstream_ptr), addr(upstream_len))?);
            let headers = pairs::deserialize_lossy(memory::read(mem, addr(headers_ptr), addr(headers_len))?)
                .map_err(|err| format_err!("proxy_http_call headers: {err}"))?;
            let body = memory::read(mem, addr(body_ptr), addr(body_len))?.to_vec();
            let trailers = pairs::deserialize_lossy(memory::read(mem, addr(trailers_ptr), addr(trailers_len))?)
                .map_err(|err| format_err!("proxy_http_call trailers: {err}"))?;
            // Check the token slot before dispatching, as Envoy does.
            memory::write_u32(mem, addr(token_out), 0)?;
            // Envoy refuses a call without these pseudo-headers, or to an unknown cluster.
            let has = |name: &str| headers.iter().any(|(key, _)| key.eq_ignore_ascii_case(name));
            if !(has(":method") && has(":path") && has(":authority")) {
                return Ok(Status::BadArgument.code());
            }
            if let Some(known) = &state.known_upstreams {
                if !known.contains(&upstream) {
                    return Ok(Status::BadArgument.code());
                }
            }
            let token = state.next_http_call_token;
            state.next_http_call_token = token.wrapping_add(1).max(1);
            let context_id = match state.phase {
                Phase::Request => state.active_http_context.unwrap_or(state.root_context_id),
                _ => state.root_context_id,
            };
            state.outstanding_http_calls.insert(token, context_id);
            state.new_http_calls.push(PendingHttpCall {
                token,
                context_id,
                upstream,
                headers,
                body,
                trailers,
                timeout_ms: addr(timeout_ms),
            });
            memory::write_u32(mem, addr(token_out), token)?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_set_effective_context",
        |mut caller: Caller<'_, HostState>, context: i32| -> i32 {
            count(&mut caller, HostCall::SetEffectiveContext);
            let state = caller.data_mut();
            let context = addr(context);
            if context == state.root_context_id || Some(context) == state.active_http_context {
                state.effective_context = context;
                Status::Ok.code()
            } else {
                Status::BadArgument.code()
            }
        },
    )?;
    linker.func_wrap(MODULE, "proxy_done", |mut caller: Caller<'_, HostState>| -> i32 {
        count(&mut caller, HostCall::Done);
        let state = caller.data_mut();
        state.done_calls = state.done_calls.saturating_add(1);
        Status::Ok.code()
    })?;
    linker.func_wrap(
        MODULE,
        "proxy_call_foreign_function",
        |mut caller: Caller<'_, HostState>,
         name_ptr: i32,
         name_len: i32,
         args_ptr: i32,
         args_len: i32,
         _results_out: i32,
         _results_size_out: i32|
         -> Result<i32> {
            count(&mut caller, HostCall::CallForeignFunction);
            let (mem, _) = memory_and_state(&mut caller)?;
            memory::read(mem, addr(name_ptr), addr(name_len))?;
            memory::read(mem, addr(args_ptr), addr(args_len))?;
            // No foreign functions are registered in this host.
            Ok(Status::NotFound.code())
        },
    )?;
    Ok(())
}

fn add_metrics(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "proxy_define_metric",
        |mut caller: Caller<'_, HostState>, kind: i32, name_ptr: i32, name_len: i32, id_out: i32| -> Result<i32> {
            count(&mut caller, HostCall::DefineMetric);
            let Some(kind) = MetricKind::from_abi(kind) else { return Ok(Status::BadArgument.code()) };
            let (mem, state) = memory_and_state(&mut caller)?;
            let name = lossy(memory::read(mem, addr(name_ptr), addr(name_len))?);
            // Defining the same metric again yields the same id (one stat per name, as in Envoy).
            let index = match state.metrics.iter().position(|metric| metric.name == name && metric.kind == kind) {
                Some(index) => index,
                None => {
                    state.metrics.push(Metric { name, kind, value: 0, samples: Vec::new() });
                    state.metrics.len() - 1
                }
            };
            let id = u32::try_from(index + 1).map_err(|_| format_err!("too many metrics defined"))?;
            memory::write_u32(mem, addr(id_out), id)?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_get_metric",
        |mut caller: Caller<'_, HostState>, id: i32, out: i32| -> Result<i32> {
            count(&mut caller, HostCall::GetMetric);
            let (mem, state) = memory_and_state(&mut caller)?;
            let Some(metric) = state.metric_by_id(id) else { return Ok(Status::NotFound.code()) };
            if metric.kind == MetricKind::Histogram {
                return Ok(Status::BadArgument.code());
            }
            let value = metric.value as u64;
            memory::write_u64(mem, addr(out), value)?;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_record_metric",
        |mut caller: Caller<'_, HostState>, id: i32, value: i64| -> i32 {
            count(&mut caller, HostCall::RecordMetric);
            let Some(metric) = caller.data_mut().metric_by_id(id) else { return Status::NotFound.code() };
            // The ABI value is a u64 carried in an i64.
            let unsigned = value as u64;
            match metric.kind {
                MetricKind::Counter => {
                    metric.value = metric.value.saturating_add(i64::try_from(unsigned).unwrap_or(i64::MAX))
                }
                MetricKind::Gauge => metric.value = i64::try_from(unsigned).unwrap_or(i64::MAX),
                MetricKind::Histogram => {
                    if metric.samples.len() >= MAX_HISTOGRAM_SAMPLES {
                        metric.samples.remove(0);
                    }
                    metric.samples.push(unsigned);
                }
            }
            Status::Ok.code()
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proxy_increment_metric",
        |mut caller: Caller<'_, HostState>, id: i32, offset: i64| -> i32 {
            count(&mut caller, HostCall::IncrementMetric);
            let Some(metric) = caller.data_mut().metric_by_id(id) else { return Status::NotFound.code() };
            match metric.kind {
                // Envoy counters only go up.
                MetricKind::Counter if offset > 0 => {
                    metric.value = metric.value.saturating_add(offset);
                    Status::Ok.code()
                }
                MetricKind::Gauge => {
                    metric.value = metric.value.saturating_add(offset);
                    Status::Ok.code()
                }
                MetricKind::Counter | MetricKind::Histogram => Status::BadArgument.code(),
            }
        },
    )?;
    Ok(())
}

/// Installs a callout response for the duration of `proxy_on_http_call_response`.
pub(crate) fn install_call_response(
    state: &mut HostState,
    headers: &[(&str, &str)],
    body: &[u8],
    trailers: &[(&str, &str)],
) -> (u32, u32, u32) {
    let mut response = CallResponse::default();
    for (name, value) in headers {
        response.headers.add(name.as_bytes(), value.as_bytes());
    }
    for (name, value) in trailers {
        response.trailers.add(name.as_bytes(), value.as_bytes());
    }
    response.body.extend_from_slice(body);
    let counts = (
        u32::try_from(response.headers.len()).unwrap_or(u32::MAX),
        u32::try_from(response.body.len()).unwrap_or(u32::MAX),
        u32::try_from(response.trailers.len()).unwrap_or(u32::MAX),
    );
    state.call_response = Some(response);
    counts
}
