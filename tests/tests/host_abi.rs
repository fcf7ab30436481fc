//! Tests of the headless proxy-wasm host itself: against the real filter `.wasm` built by this
//! crate's build script, against tiny hand-assembled guests that misbehave on purpose, and of
//! the host's building blocks (bounds-checked memory, pair serialization, header maps, shared
//! data).

use certbind_tests::host::memory::{self, MemoryAccessError};
use certbind_tests::host::pairs::{self, PairsError};
use certbind_tests::host::{
    abi, log_level, wasi, Action, CasMismatch, FilterHost, HeaderMap, HostCall, HttpRequest, SharedData,
};
use std::time::Duration;
use wasmtime::{Engine, Memory, MemoryType, Store};

/// The smallest configuration the filter accepts: certificate from this proxy's XFCC, mTLS.
/// The smallest configuration the filter accepts with identity data (empty, given inline):
/// certificate from this proxy's XFCC, mTLS everywhere.
const MINIMAL_CONFIG: &str =
    r#"{"policy":{"certificate_source":{"kind":"xfcc","trust":"this_proxy"},"default_mode":"mtls"},"development_identity":{}}"#;

/// Imports the proxy-wasm SDK declares for gRPC, which certbind never calls: they are linked as
/// traps (loading succeeds; a call would fail the VM with a clear error).
const UNUSED_SDK_IMPORTS: &[&str] =
    &["proxy_grpc_call", "proxy_grpc_stream", "proxy_grpc_send", "proxy_grpc_cancel", "proxy_grpc_close", "proxy_get_status"];

fn configured_filter() -> FilterHost {
    let mut host = FilterHost::load_filter().unwrap();
    assert!(host.configure(MINIMAL_CONFIG.as_bytes()).unwrap(), "logs: {:?}", host.take_logs());
    host
}

// ---------------------------------------------------------------------------------------------
// The real filter.

#[test]
fn filter_imports_only_what_the_host_implements() {
    let host = FilterHost::load_filter().unwrap();
    let imports = host.imports();
    assert!(!imports.is_empty());
    let unimplemented: Vec<_> = imports
        .iter()
        .filter(|(module, name)| {
            let name = name.as_str();
            let known = if module == abi::MODULE {
                abi::IMPLEMENTED.contains(&name) || UNUSED_SDK_IMPORTS.contains(&name)
            } else {
                module == wasi::MODULE && wasi::IMPLEMENTED.contains(&name)
            };
            !known
        })
        .collect();
    assert_eq!(unimplemented, Vec::<&(String, String)>::new());
    let exports = host.exported_functions();
    for required in ["proxy_abi_version_0_2_1", "proxy_on_memory_allocate", "proxy_on_context_create", "_initialize"] {
        assert!(exports.iter().any(|name| name == required), "missing export {required}: {exports:?}");
    }
}

#[test]
fn minimal_configuration_is_accepted_and_defines_counters() {
    let mut host = FilterHost::load_filter().unwrap();
    assert!(host.configure(MINIMAL_CONFIG.as_bytes()).unwrap());
    let logs = host.take_logs();
    assert!(logs.contains(&(log_level::INFO, "certbind: configured".to_string())), "{logs:?}");
    assert_eq!(host.metric("certbind.requests.allowed"), Some(0));
    assert_eq!(host.metric("certbind.requests.denied.certificate_missing"), Some(0));
}

#[test]
fn invalid_configuration_is_refused_with_the_field_named() {
    let mut host = FilterHost::load_filter().unwrap();
    let config = r#"{"policy":{"certificate_source":{"kind":"xfcc","trust":"trusted_proxies"},"default_mode":"mtls"}}"#;
    assert!(!host.configure(config.as_bytes()).unwrap());
    let logs = host.take_logs();
    let refusal = logs
        .iter()
        .find(|(level, message)| *level == log_level::CRITICAL && message.contains("configuration refused"))
        .unwrap_or_else(|| panic!("no critical refusal logged: {logs:?}"));
    assert!(refusal.1.contains("policy.trusted_proxies"), "{refusal:?}");
    // A refused configuration gets no requests.
    let err = host.request(&HttpRequest::get("/")).unwrap_err();
    assert!(err.to_string().contains("no accepted configuration"), "{err:#}");
}

#[test]
fn malformed_json_configuration_is_refused() {
    let mut host = FilterHost::load_filter().unwrap();
    assert!(!host.configure(b"{not json").unwrap());
    let logs = host.take_logs();
    assert!(
        logs.iter().any(|(level, message)| *level == log_level::CRITICAL && message.contains("configuration")),
        "{logs:?}"
    );
}

#[test]
fn request_without_certificate_round_trips_to_a_401_problem() {
    let mut host = configured_filter();
    let result = host
        .request(&HttpRequest::get("/api/things").source_address("10.0.0.1:5555"))
        .unwrap();
    assert_eq!(result.action, Action::Pause);
    let response = result.local_response.as_ref().unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(response.header("content-type"), Some("application/problem+json"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert!(response.header("www-authenticate").is_some(), "{response:?}");
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["reason"], "certificate_missing");
    assert_eq!(host.metric("certbind.requests.denied.certificate_missing"), Some(1));

    // Every import invoked is counted, and the counts add up.
    let counts = &result.host_call_counts;
    assert!(result.host_calls > 0);
    let summed: u64 = counts.nonzero().iter().map(|(_, n)| u64::from(*n)).sum();
    assert_eq!(summed, result.host_calls);
    assert_eq!(counts.get(HostCall::SendLocalResponse), 1);
    assert_eq!(counts.by_name("proxy_get_header_map_pairs"), counts.get(HostCall::GetHeaderMapPairs));
    assert!(counts.get(HostCall::GetHeaderMapPairs) >= 1);
}

#[test]
fn requests_reuse_one_vm_and_counters_accumulate() {
    let mut host = configured_filter();
    for _ in 0..50 {
        let result = host.request(&HttpRequest::get("/")).unwrap();
        assert_eq!(result.status(), Some(401));
    }
    assert_eq!(host.metric("certbind.requests.denied.certificate_missing"), Some(50));
    assert!(host.failure().is_none());
}

#[test]
fn request_before_configure_is_an_error() {
    let mut host = FilterHost::load_filter().unwrap();
    let err = host.request(&HttpRequest::get("/")).unwrap_err();
    assert!(err.to_string().contains("configure"), "{err:#}");
}

#[test]
fn hosts_share_compiled_module_and_shared_data() {
    let shared = SharedData::new();
    let first = FilterHost::with_shared_data(certbind_tests::FILTER_WASM, shared.clone()).unwrap();
    let second = FilterHost::with_shared_data(certbind_tests::FILTER_WASM, shared.clone()).unwrap();
    first.shared_data().set("snapshot", b"v1", 0).unwrap();
    assert_eq!(second.shared_data().get("snapshot"), Some((b"v1".to_vec(), 1)));
    assert_eq!(shared.keys(), vec!["snapshot".to_string()]);
}

#[test]
fn time_is_settable() {
    let mut host = FilterHost::load_filter().unwrap();
    host.set_time_nanos(1_700_000_000_000_000_000);
    host.advance_time(Duration::from_secs(2));
    assert_eq!(host.time_nanos(), 1_700_000_002_000_000_000);
}

// ---------------------------------------------------------------------------------------------
// Misbehaving guests, assembled by hand (the real filter cannot be made to misbehave).

/// A minimal WebAssembly binary encoder: enough for a module with function imports, functions,
/// one memory and exports.
pub mod guest {
    pub const I32: u8 = 0x7f;
    pub const I64: u8 = 0x7e;
    /// Data segments start here; addresses below are scratch words for returned pointers.
    pub const DATA_START: u32 = 1024;
    /// Where the test allocator puts every allocation (one value at a time is enough here).
    pub const ALLOCATION: i64 = 32 * 1024;

    pub struct Module {
        types: Vec<(Vec<u8>, Vec<u8>)>,
        imports: Vec<(String, String, u32)>,
        /// (type index, body, export name); function indices follow the imports.
        functions: Vec<(u32, Vec<u8>, String)>,
        /// Active data segments (address, bytes).
        data: Vec<(u32, Vec<u8>)>,
        next_data: u32,
    }

    fn uleb(mut value: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn sleb(mut value: i64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
            out.push(if done { byte } else { byte | 0x80 });
            if done {
                return;
            }
        }
    }

    fn name(text: &str, out: &mut Vec<u8>) {
        uleb(text.len() as u64, out);
        out.extend_from_slice(text.as_bytes());
    }

    fn section(id: u8, count: usize, body: Vec<u8>, out: &mut Vec<u8>) {
        let mut content = Vec::new();
        uleb(count as u64, &mut content);
        content.extend(body);
        out.push(id);
        uleb(content.len() as u64, out);
        out.extend(content);
    }

    /// Instruction helpers.
    /// `i32.const`; values above `i32::MAX` are addresses, encoded as their i32 bit pattern.
    pub fn i32_const(value: i64) -> Vec<u8> {
        let mut out = vec![0x41];
        sleb(i64::from(value as u32 as i32), &mut out);
        out
    }
    pub fn call(function: u32) -> Vec<u8> {
        let mut out = vec![0x10];
        uleb(u64::from(function), &mut out);
        out
    }
    /// `i64.const`.
    pub fn i64_const(value: i64) -> Vec<u8> {
        let mut out = vec![0x42];
        sleb(value, &mut out);
        out
    }
    /// `i32.load` of the word at a constant address.
    pub fn load(address: i64) -> Vec<u8> {
        let mut out = i32_const(address);
        out.extend([0x28, 0x02, 0x00]);
        out
    }
    /// `local.get`.
    pub fn local(index: u32) -> Vec<u8> {
        vec![0x20, index as u8]
    }
    pub const END: u8 = 0x0b;
    pub const DROP: u8 = 0x1a;
    pub const UNREACHABLE: u8 = 0x00;
    /// `loop br 0 end`: spins forever.
    pub const SPIN: [u8; 5] = [0x03, 0x40, 0x0c, 0x00, 0x0b];

    impl Module {
        /// A module with memory, an allocator answering `allocation`, the ABI marker and
        /// `proxy_on_context_create`.
        pub fn proxy(allocation: i64) -> Self {
            let mut module =
                Module { types: Vec::new(), imports: Vec::new(), functions: Vec::new(), data: Vec::new(), next_data: DATA_START };
            let mut allocate = i32_const(allocation);
            allocate.push(0x0b);
            module.function("proxy_on_memory_allocate", &[I32], &[I32], allocate);
            module.function("proxy_abi_version_0_2_1", &[], &[], vec![0x0b]);
            module.function("proxy_on_context_create", &[I32, I32], &[], vec![0x0b]);
            module
        }

        /// Places `bytes` in the module's data (from [`DATA_START`] on); returns the
        /// `i32.const` instructions for its address and length.
        pub fn bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
            let address = self.next_data;
            self.data.push((address, bytes.to_vec()));
            self.next_data += bytes.len() as u32;
            [i32_const(i64::from(address)), i32_const(bytes.len() as i64)].concat()
        }

        fn type_index(&mut self, params: &[u8], results: &[u8]) -> u32 {
            let signature = (params.to_vec(), results.to_vec());
            match self.types.iter().position(|t| *t == signature) {
                Some(index) => index as u32,
                None => {
                    self.types.push(signature);
                    (self.types.len() - 1) as u32
                }
            }
        }

        /// Declares an import; returns its function index (imports are numbered first).
        pub fn import(&mut self, module: &str, field: &str, params: &[u8], results: &[u8]) -> u32 {
            let type_index = self.type_index(params, results);
            self.imports.push((module.to_string(), field.to_string(), type_index));
            (self.imports.len() - 1) as u32
        }

        /// Adds an exported function whose body is `code` (ending with `end`).
        pub fn function(&mut self, export: &str, params: &[u8], results: &[u8], code: Vec<u8>) {
            let type_index = self.type_index(params, results);
            self.functions.push((type_index, code, export.to_string()));
        }

        pub fn encode(&self) -> Vec<u8> {
            let mut out = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
            let mut types = Vec::new();
            for (params, results) in &self.types {
                types.push(0x60);
                uleb(params.len() as u64, &mut types);
                types.extend(params);
                uleb(results.len() as u64, &mut types);
                types.extend(results);
            }
            section(1, self.types.len(), types, &mut out);
            if !self.imports.is_empty() {
                let mut imports = Vec::new();
                for (module, field, type_index) in &self.imports {
                    name(module, &mut imports);
                    name(field, &mut imports);
                    imports.push(0x00);
                    uleb(u64::from(*type_index), &mut imports);
                }
                section(2, self.imports.len(), imports, &mut out);
            }
            let mut functions = Vec::new();
            for (type_index, _, _) in &self.functions {
                uleb(u64::from(*type_index), &mut functions);
            }
            section(3, self.functions.len(), functions, &mut out);
            // One memory of one page (64 KiB), no maximum.
            section(5, 1, vec![0x00, 0x01], &mut out);
            let mut exports = Vec::new();
            name("memory", &mut exports);
            exports.extend([0x02, 0x00]);
            for (position, (_, _, export)) in self.functions.iter().enumerate() {
                name(export, &mut exports);
                exports.push(0x00); // function
                uleb((self.imports.len() + position) as u64, &mut exports);
            }
            section(7, self.functions.len() + 1, exports, &mut out);
            let mut code = Vec::new();
            for (_, body, _) in &self.functions {
                let mut function = vec![0x00]; // no locals
                function.extend(body);
                uleb(function.len() as u64, &mut code);
                code.extend(function);
            }
            section(10, self.functions.len(), code, &mut out);
            if !self.data.is_empty() {
                let mut data = Vec::new();
                for (address, bytes) in &self.data {
                    data.push(0x00); // active, memory 0
                    data.extend(i32_const(i64::from(*address)));
                    data.push(0x0b);
                    uleb(bytes.len() as u64, &mut data);
                    data.extend(bytes);
                }
                section(11, self.data.len(), data, &mut out);
            }
            out
        }
    }

    /// `proxy_on_configure` running `code`, then returning true.
    pub fn configure_body(code: &[Vec<u8>]) -> Vec<u8> {
        let mut body: Vec<u8> = code.concat();
        body.extend(i32_const(1));
        body.push(0x0b);
        body
    }
}

use guest::{
    call, configure_body, i32_const, i64_const, load, local, Module, ALLOCATION, DROP, END, I32, I64, SPIN, UNREACHABLE,
};

fn load_guest(module: &Module) -> FilterHost {
    FilterHost::load(module.encode()).unwrap()
}

#[test]
fn a_well_behaved_guest_reads_its_configuration() {
    let mut module = Module::proxy(1024);
    let get_buffer = module.import("env", "proxy_get_buffer_bytes", &[I32; 5], &[I32]);
    // proxy_get_buffer_bytes(PluginConfiguration, 0, 100, &ptr @ 0, &size @ 4); return status == 0
    let mut body = [i32_const(7), i32_const(0), i32_const(100), i32_const(0), i32_const(4), call(get_buffer)].concat();
    body.push(0x45); // i32.eqz: status Ok → 1
    body.push(0x0b);
    module.function("proxy_on_configure", &[I32, I32], &[I32], body);
    let mut host = load_guest(&module);
    assert!(host.configure(b"{\"k\":1}").unwrap());
    assert_eq!(host.total_host_calls(), 1);
}

#[test]
fn out_of_bounds_pointer_from_guest_traps_and_fails_the_vm() {
    let mut module = Module::proxy(1024);
    let log = module.import("env", "proxy_log", &[I32; 3], &[I32]);
    let body = configure_body(&[i32_const(2), i32_const(0xFFFF_FFF0), i32_const(64), call(log), vec![DROP]]);
    module.function("proxy_on_configure", &[I32, I32], &[I32], body);
    let mut host = load_guest(&module);
    let err = host.configure(b"").unwrap_err().to_string();
    assert!(err.contains("proxy_on_configure failed"), "{err}");
    assert!(err.contains("guest memory access out of bounds: 64 bytes at 0xfffffff0"), "{err}");
    let again = host.configure(b"").unwrap_err().to_string();
    assert!(again.contains("failed earlier"), "{again}");
    assert!(host.failure().is_some());
}

#[test]
fn allocation_outside_memory_traps() {
    // The guest's allocator hands back an address past the end of its memory; the host must
    // refuse to write the returned value there.
    let mut module = Module::proxy(0xFFFF_0000);
    let get_buffer = module.import("env", "proxy_get_buffer_bytes", &[I32; 5], &[I32]);
    let body = configure_body(&[
        i32_const(7),
        i32_const(0),
        i32_const(100),
        i32_const(0),
        i32_const(4),
        call(get_buffer),
        vec![DROP],
    ]);
    module.function("proxy_on_configure", &[I32, I32], &[I32], body);
    let mut host = load_guest(&module);
    let err = host.configure(b"configuration").unwrap_err().to_string();
    assert!(err.contains("guest memory access out of bounds: 13 bytes at 0xffff0000"), "{err}");
}

#[test]
fn malformed_serialized_map_traps() {
    let mut module = Module::proxy(1024);
    let set_pairs = module.import("env", "proxy_set_header_map_pairs", &[I32; 3], &[I32]);
    // Three bytes cannot even hold the pair count.
    let body = configure_body(&[i32_const(0), i32_const(0), i32_const(3), call(set_pairs), vec![DROP]]);
    module.function("proxy_on_configure", &[I32, I32], &[I32], body);
    let mut host = load_guest(&module);
    let err = host.configure(b"").unwrap_err().to_string();
    assert!(err.contains("serialized map of 3 bytes has no pair count"), "{err}");
}

#[test]
fn unimplemented_import_loads_and_traps_only_when_called() {
    let mut module = Module::proxy(1024);
    let grpc_cancel = module.import("env", "proxy_grpc_cancel", &[I32], &[I32]);
    let body = configure_body(&[i32_const(1), call(grpc_cancel), vec![DROP]]);
    module.function("proxy_on_configure", &[I32, I32], &[I32], body);
    let mut host = load_guest(&module);
    let err = host.configure(b"").unwrap_err().to_string();
    assert!(err.contains("`env::proxy_grpc_cancel`, which this host does not implement"), "{err}");
}

#[test]
fn guest_trap_is_reported_not_panicked() {
    let mut module = Module::proxy(1024);
    module.function("proxy_on_configure", &[I32, I32], &[I32], vec![UNREACHABLE, 0x0b]);
    let mut host = load_guest(&module);
    let err = host.configure(b"").unwrap_err().to_string();
    assert!(err.contains("proxy_on_configure failed"), "{err}");
    assert!(err.contains("unreachable"), "{err}");
}

#[test]
fn runaway_guest_is_stopped_by_the_deadline() {
    let mut module = Module::proxy(1024);
    let mut body = SPIN.to_vec();
    body.extend(i32_const(1));
    body.push(0x0b);
    module.function("proxy_on_configure", &[I32, I32], &[I32], body);
    let mut host = load_guest(&module);
    host.set_call_deadline(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let err = host.configure(b"").unwrap_err().to_string();
    assert!(err.contains("deadline"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn module_without_abi_marker_is_refused() {
    let mut module = Module::proxy(1024);
    module.function("proxy_on_configure", &[I32, I32], &[I32], configure_body(&[]));
    let mut bytes = module.encode();
    // Rename the marker export: "proxy_abi_version_0_2_1" → "proxy_abi_version_9_9_9".
    let marker = b"proxy_abi_version_0_2_1";
    let at = bytes.windows(marker.len()).position(|w| w == marker).unwrap();
    bytes[at + marker.len() - 5..at + marker.len()].copy_from_slice(b"9_9_9");
    let err = FilterHost::load(bytes).err().unwrap().to_string();
    assert!(err.contains("proxy_abi_version_0_2_1"), "{err}");
}

#[test]
fn garbage_bytes_are_an_error_not_a_panic() {
    let err = FilterHost::load(b"\0asm not really".to_vec()).err().unwrap();
    assert!(format!("{err:#}").contains("compiling the filter module"), "{err:#}");
}

/// A configured guest whose `proxy_on_request_headers` runs `code` and continues.
fn request_guest(build: impl FnOnce(&mut Module) -> Vec<Vec<u8>>) -> FilterHost {
    let mut module = Module::proxy(ALLOCATION);
    let code = build(&mut module);
    let mut body = code.concat();
    body.extend(i32_const(0));
    body.push(END);
    module.function("proxy_on_request_headers", &[I32, I32, I32], &[I32], body);
    let mut host = load_guest(&module);
    assert!(host.configure(b"").unwrap());
    host
}

fn pairs_of(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn guest_reads_headers_properties_and_whole_map() {
    let mut host = request_guest(|m| {
        let get_value = m.import("env", "proxy_get_header_map_value", &[I32; 5], &[I32]);
        let get_property = m.import("env", "proxy_get_property", &[I32; 4], &[I32]);
        let get_pairs = m.import("env", "proxy_get_header_map_pairs", &[I32; 3], &[I32]);
        let log = m.import("env", "proxy_log", &[I32; 3], &[I32]);
        let key = m.bytes(b"X-In");
        let path = m.bytes(b"source\0address");
        let log_returned = |ptr, size| [i32_const(2), load(ptr), load(size), call(log), vec![DROP]].concat();
        vec![
            i32_const(0), key, i32_const(0), i32_const(4), call(get_value), vec![DROP], log_returned(0, 4),
            path, i32_const(8), i32_const(12), call(get_property), vec![DROP], log_returned(8, 12),
            i32_const(0), i32_const(16), i32_const(20), call(get_pairs), vec![DROP], log_returned(16, 20),
        ]
    });
    let request = HttpRequest::get("/p").header("x-in", "v-in").source_address("10.0.0.1:5555");
    let result = host.request(&request).unwrap();
    assert_eq!(result.action, Action::Continue);
    assert_eq!(result.host_calls, 6);
    let logs = host.take_logs();
    assert_eq!(logs[0], (log_level::INFO, "v-in".to_string()));
    assert_eq!(logs[1], (log_level::INFO, "10.0.0.1:5555".to_string()));
    assert_eq!(
        pairs::deserialize_lossy(logs[2].1.as_bytes()).unwrap(),
        pairs_of(&[(":method", "GET"), (":path", "/p"), (":scheme", "https"), (":authority", "certbind.test"), ("x-in", "v-in")])
    );
}

#[test]
fn missing_values_answer_not_found() {
    // The action returned is the status of the last call: NotFound (1) reads as Pause.
    let mut host = request_guest(|m| {
        let get_property = m.import("env", "proxy_get_property", &[I32; 4], &[I32]);
        let path = m.bytes(b"connection\0mtls");
        vec![path, i32_const(8), i32_const(12), call(get_property), vec![DROP]]
    });
    assert!(host.request(&HttpRequest::get("/")).is_ok());
    let mut host = request_guest(|m| {
        let get_value = m.import("env", "proxy_get_header_map_value", &[I32; 5], &[I32]);
        let key = m.bytes(b"x-absent");
        // Return the status instead of 0: wrap in a block that leaves it on the stack.
        vec![i32_const(0), key, i32_const(0), i32_const(4), call(get_value), vec![0x0f]] // return
    });
    assert_eq!(host.request(&HttpRequest::get("/")).unwrap().action, Action::Pause);
}

#[test]
fn guest_rewrites_request_headers_like_envoy() {
    let mut host = request_guest(|m| {
        let replace = m.import("env", "proxy_replace_header_map_value", &[I32; 5], &[I32]);
        let remove = m.import("env", "proxy_remove_header_map_value", &[I32; 3], &[I32]);
        let add = m.import("env", "proxy_add_header_map_value", &[I32; 5], &[I32]);
        let (user, alice, spoof, added, one) =
            (m.bytes(b"x-dm-user"), m.bytes(b"alice"), m.bytes(b"X-Spoof"), m.bytes(b"X-Added"), m.bytes(b"1"));
        vec![
            i32_const(0), user, alice, call(replace), vec![DROP],
            i32_const(0), spoof, call(remove), vec![DROP],
            i32_const(0), added, one, call(add), vec![DROP],
        ]
    });
    let request = HttpRequest::new("POST", "/")
        .header("X-DM-User", "mallory")
        .header("x-spoof", "a")
        .header("X-Spoof", "b");
    let result = host.request(&request).unwrap();
    assert_eq!(
        result.request_headers,
        pairs_of(&[
            (":method", "POST"),
            (":path", "/"),
            (":scheme", "https"),
            (":authority", "certbind.test"),
            ("x-dm-user", "alice"),
            ("x-added", "1"),
        ])
    );
    assert_eq!(result.header("X-DM-USER"), Some("alice"));
}

#[test]
fn guest_replaces_the_whole_map() {
    let mut host = request_guest(|m| {
        let set_pairs = m.import("env", "proxy_set_header_map_pairs", &[I32; 3], &[I32]);
        let map = m.bytes(&pairs::serialize(&[(":path", "/rewritten"), ("X-DM-Principal", "p")]));
        vec![i32_const(0), map, call(set_pairs), vec![DROP]]
    });
    let result = host.request(&HttpRequest::get("/").header("x-dm-principal", "forged")).unwrap();
    assert_eq!(result.request_headers, pairs_of(&[(":path", "/rewritten"), ("x-dm-principal", "p")]));
}

fn local_response_guest(times: usize) -> FilterHost {
    request_guest(|m| {
        let send = m.import("env", "proxy_send_local_response", &[I32; 8], &[I32]);
        let details = m.bytes(b"denied_by_test");
        let body = m.bytes(b"{\"reason\":\"x\"}");
        let headers = m.bytes(&pairs::serialize(&[("Content-Type", "application/problem+json")]));
        let one = [i32_const(403), details, body, headers, i32_const(-1), call(send), vec![DROP]].concat();
        vec![one; times]
    })
}

#[test]
fn local_response_is_recorded_whole() {
    let mut host = local_response_guest(1);
    let result = host.request(&HttpRequest::get("/")).unwrap();
    let response = result.local_response.unwrap();
    assert_eq!(
        response,
        certbind_tests::host::LocalResponse {
            status: 403,
            headers: pairs_of(&[("content-type", "application/problem+json")]),
            body: b"{\"reason\":\"x\"}".to_vec(),
            details: "denied_by_test".to_string(),
            grpc_status: -1,
        }
    );
    // The next request starts clean.
    assert_eq!(host.request(&HttpRequest::get("/")).unwrap().status(), Some(403));
}

#[test]
fn two_local_responses_in_one_request_are_an_error() {
    let mut host = local_response_guest(2);
    let err = host.request(&HttpRequest::get("/")).unwrap_err().to_string();
    assert!(err.contains("2 local responses"), "{err}");
}

fn callout_guest() -> FilterHost {
    let mut m = Module::proxy(ALLOCATION);
    let set_tick = m.import("env", "proxy_set_tick_period_milliseconds", &[I32], &[I32]);
    let http_call = m.import("env", "proxy_http_call", &[I32; 10], &[I32]);
    let get_buffer = m.import("env", "proxy_get_buffer_bytes", &[I32; 5], &[I32]);
    let get_value = m.import("env", "proxy_get_header_map_value", &[I32; 5], &[I32]);
    let log = m.import("env", "proxy_log", &[I32; 3], &[I32]);
    let upstream = m.bytes(b"control-plane");
    let headers = m.bytes(&pairs::serialize(&[(":method", "GET"), (":path", "/snapshot"), (":authority", "cp")]));
    let status_key = m.bytes(b":status");
    let log_returned = |ptr, size| [i32_const(2), load(ptr), load(size), call(log), vec![DROP]].concat();
    m.function("proxy_on_configure", &[I32, I32], &[I32], configure_body(&[i32_const(1000), call(set_tick), vec![DROP]]));
    let tick = [
        upstream,
        headers,
        i32_const(0),
        i32_const(0),
        i32_const(0),
        i32_const(0),
        i32_const(5000),
        i32_const(0),
        call(http_call),
        vec![DROP, END],
    ]
    .concat();
    m.function("proxy_on_tick", &[I32], &[], tick);
    let on_response = [
        i32_const(6), status_key, i32_const(8), i32_const(12), call(get_value), vec![DROP], log_returned(8, 12),
        // proxy_get_buffer_bytes(HttpCallResponseBody, 0, body_size (param 3), &ptr, &size)
        i32_const(4), i32_const(0), local(3), i32_const(16), i32_const(20), call(get_buffer), vec![DROP],
        log_returned(16, 20),
        vec![END],
    ]
    .concat();
    m.function("proxy_on_http_call_response", &[I32; 5], &[], on_response);
    let mut host = load_guest(&m);
    assert!(host.configure(b"").unwrap());
    host
}

#[test]
fn ticks_dispatch_http_callouts_that_tests_answer() {
    let mut host = callout_guest();
    assert_eq!(host.tick_period_ms(), 1000);
    host.tick().unwrap();
    let calls = host.take_http_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.upstream, "control-plane");
    assert_eq!(call.headers, pairs_of(&[(":method", "GET"), (":path", "/snapshot"), (":authority", "cp")]));
    assert_eq!((call.body.len(), call.trailers.len(), call.timeout_ms), (0, 0, 5000));
    assert_eq!(call.context_id, certbind_tests::host::ROOT_CONTEXT_ID);
    host.take_logs();
    host.respond_http_call(call.token, &[(":status", "200")], b"snapshot-bytes").unwrap();
    assert_eq!(
        host.take_logs(),
        vec![(log_level::INFO, "200".to_string()), (log_level::INFO, "snapshot-bytes".to_string())]
    );
    let err = host.respond_http_call(call.token, &[], b"").unwrap_err().to_string();
    assert!(err.contains("no outstanding HTTP callout"), "{err}");
    assert!(host.take_http_calls().is_empty());
}

#[test]
fn failed_callout_delivers_an_empty_response() {
    let mut host = callout_guest();
    host.tick().unwrap();
    let token = host.take_http_calls()[0].token;
    host.take_logs();
    host.fail_http_call(token).unwrap();
    // No response headers and no body: both values the guest logs are empty.
    assert_eq!(host.take_logs(), vec![(log_level::INFO, String::new()), (log_level::INFO, String::new())]);
    let err = host.fail_http_call(token).unwrap_err().to_string();
    assert!(err.contains("no outstanding HTTP callout"), "{err}");
}

#[test]
fn callout_to_an_unknown_upstream_is_refused() {
    let mut host = callout_guest();
    host.set_known_upstreams(Some(vec!["somewhere-else".to_string()]));
    host.tick().unwrap();
    assert!(host.take_http_calls().is_empty());
}

fn shared_data_guest(shared: &SharedData) -> FilterHost {
    let mut m = Module::proxy(ALLOCATION);
    let get = m.import("env", "proxy_get_shared_data", &[I32; 5], &[I32]);
    let set = m.import("env", "proxy_set_shared_data", &[I32; 5], &[I32]);
    let log = m.import("env", "proxy_log", &[I32; 3], &[I32]);
    let (peer, mine, value) = (m.bytes(b"peer"), m.bytes(b"mine"), m.bytes(b"from-guest"));
    let body = configure_body(&[
        peer, i32_const(8), i32_const(12), i32_const(16), call(get), vec![DROP],
        i32_const(2), load(8), load(12), call(log), vec![DROP],
        mine, value, i32_const(0), call(set), vec![DROP],
    ]);
    m.function("proxy_on_configure", &[I32, I32], &[I32], body);
    FilterHost::with_shared_data(m.encode(), shared.clone()).unwrap()
}

#[test]
fn guests_share_data_through_the_abi() {
    let shared = SharedData::new();
    let peer_cas = shared.set("peer", b"hello worker", 0).unwrap();
    let mut first = shared_data_guest(&shared);
    assert!(first.configure(b"").unwrap());
    assert_eq!(first.take_logs(), vec![(log_level::INFO, "hello worker".to_string())]);
    let (value, cas) = shared.get("mine").unwrap();
    assert_eq!(value, b"from-guest");
    assert_ne!(cas, peer_cas);
    let mut second = shared_data_guest(&shared);
    assert!(second.configure(b"").unwrap());
    assert_ne!(shared.get("mine").unwrap().1, cas, "every write takes a new CAS value");
}

#[test]
fn metrics_follow_envoy_rules() {
    let mut m = Module::proxy(ALLOCATION);
    let define = m.import("env", "proxy_define_metric", &[I32; 4], &[I32]);
    let increment = m.import("env", "proxy_increment_metric", &[I32, I64], &[I32]);
    let record = m.import("env", "proxy_record_metric", &[I32, I64], &[I32]);
    let (counter, gauge, histogram) = (m.bytes(b"c"), m.bytes(b"g"), m.bytes(b"h"));
    let body = configure_body(&[
        i32_const(0), counter.clone(), i32_const(0), call(define), vec![DROP],
        // Defining it again yields the same id.
        i32_const(0), counter, i32_const(4), call(define), vec![DROP],
        load(0), i64_const(5), call(increment), vec![DROP],
        load(4), i64_const(2), call(increment), vec![DROP],
        // Counters never go down: refused with BadArgument.
        load(0), i64_const(-1), call(increment), vec![DROP],
        i32_const(1), gauge, i32_const(8), call(define), vec![DROP],
        load(8), i64_const(-3), call(increment), vec![DROP],
        i32_const(2), histogram, i32_const(12), call(define), vec![DROP],
        load(12), i64_const(250), call(record), vec![DROP],
    ]);
    m.function("proxy_on_configure", &[I32, I32], &[I32], body);
    let mut host = load_guest(&m);
    assert!(host.configure(b"").unwrap());
    assert_eq!(host.metric("c"), Some(7));
    assert_eq!(host.metric("g"), Some(-3));
    assert_eq!(host.histogram("h"), Some(vec![250]));
    assert_eq!(host.metrics().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Building blocks.

fn one_page_memory() -> (Store<()>, Memory) {
    let mut store = Store::new(&Engine::default(), ());
    let memory = Memory::new(&mut store, MemoryType::new(1, Some(1))).unwrap();
    (store, memory)
}

const PAGE: usize = 64 * 1024;

#[test]
fn memory_access_inside_bounds_works() {
    let (mut store, memory) = one_page_memory();
    let data = memory.data_mut(&mut store);
    memory::write(data, 100, b"hello").unwrap();
    assert_eq!(memory::read(data, 100, 5).unwrap(), b"hello");
    memory::write_u32(data, PAGE as u32 - 4, 0xdead_beef).unwrap();
    assert_eq!(memory::read_u32(data, PAGE as u32 - 4).unwrap(), 0xdead_beef);
    // Zero bytes at the very end are in bounds.
    assert_eq!(memory::read(data, PAGE as u32, 0).unwrap(), b"");
}

#[test]
fn memory_access_outside_bounds_is_an_error() {
    let (mut store, memory) = one_page_memory();
    let data = memory.data_mut(&mut store);
    assert_eq!(
        memory::read(data, PAGE as u32 - 2, 4).unwrap_err(),
        MemoryAccessError { ptr: PAGE as u32 - 2, len: 4, memory_size: PAGE }
    );
    assert_eq!(
        memory::write(data, PAGE as u32, b"x").unwrap_err(),
        MemoryAccessError { ptr: PAGE as u32, len: 1, memory_size: PAGE }
    );
    assert_eq!(
        memory::read(data, PAGE as u32 + 1, 0).unwrap_err(),
        MemoryAccessError { ptr: PAGE as u32 + 1, len: 0, memory_size: PAGE }
    );
    // ptr + len wraps a u32: still refused, no overflow.
    assert_eq!(
        memory::read(data, u32::MAX, u32::MAX).unwrap_err(),
        MemoryAccessError { ptr: u32::MAX, len: u64::from(u32::MAX), memory_size: PAGE }
    );
    assert_eq!(
        memory::write_u64(data, u32::MAX - 3, 1).unwrap_err(),
        MemoryAccessError { ptr: u32::MAX - 3, len: 8, memory_size: PAGE }
    );
    // Nothing was written by the refused calls.
    assert!(memory::read(data, PAGE as u32 - 8, 8).unwrap().iter().all(|b| *b == 0));
}

#[test]
fn memory_range_rejects_overflowing_lengths() {
    assert_eq!(
        memory::guest_range(PAGE, 8, u64::MAX).unwrap_err(),
        MemoryAccessError { ptr: 8, len: u64::MAX, memory_size: PAGE }
    );
    assert_eq!(memory::guest_range(PAGE, 8, 8).unwrap(), 8..16);
}

/// `[(":method", "GET"), ("x-empty", "")]` in the ABI's map encoding, written out by hand.
const SERIALIZED_TWO_PAIRS: &[u8] = &[
    2, 0, 0, 0, // count
    7, 0, 0, 0, 3, 0, 0, 0, // ":method", "GET"
    7, 0, 0, 0, 0, 0, 0, 0, // "x-empty", ""
    b':', b'm', b'e', b't', b'h', b'o', b'd', 0, b'G', b'E', b'T', 0, //
    b'x', b'-', b'e', b'm', b'p', b't', b'y', 0, 0,
];

#[test]
fn pairs_serialize_to_the_abi_layout() {
    assert_eq!(pairs::serialize(&[(":method", "GET"), ("x-empty", "")]), SERIALIZED_TWO_PAIRS);
    assert_eq!(pairs::serialize(&[]), vec![0, 0, 0, 0]);
    assert_eq!(pairs::serialized_len([(&b"ab"[..], &b"c"[..])]), Some(4 + 8 + 2 + 1 + 2));
}

#[test]
fn pairs_round_trip() {
    let original: Vec<(String, String)> = vec![
        (":path".into(), "/a?b=c".into()),
        ("x-forwarded-client-cert".into(), "By=spiffe://x;Hash=ab;Cert=\"%2D%2D\"".into()),
        ("empty".into(), String::new()),
    ];
    let borrowed: Vec<(&str, &str)> = original.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let bytes = pairs::serialize(&borrowed);
    assert_eq!(pairs::deserialize_lossy(&bytes).unwrap(), original);
    assert_eq!(pairs::deserialize(&[]).unwrap(), Vec::new());
    assert_eq!(pairs::deserialize(&[0, 0, 0, 0]).unwrap(), Vec::new());
}

#[test]
fn malformed_pairs_are_refused_with_the_reason() {
    assert_eq!(pairs::deserialize(&[1, 0, 0]).unwrap_err(), PairsError::MissingCount { len: 3 });
    assert_eq!(
        pairs::deserialize(&[0xff, 0xff, 0xff, 0xff]).unwrap_err(),
        PairsError::TooManyPairs { count: u64::from(u32::MAX) }
    );
    // The count promises a size table that is not there.
    assert_eq!(pairs::deserialize(&[2, 0, 0, 0, 1, 0, 0, 0]).unwrap_err(), PairsError::Truncated { index: 0 });
    // Value bytes run past the end.
    let mut truncated = SERIALIZED_TWO_PAIRS.to_vec();
    truncated.truncate(truncated.len() - 3);
    assert_eq!(pairs::deserialize(&truncated).unwrap_err(), PairsError::Truncated { index: 1 });
    // A terminator replaced by data.
    let mut unterminated = SERIALIZED_TWO_PAIRS.to_vec();
    unterminated[27] = b'!'; // the NUL after ":method"
    assert_eq!(pairs::deserialize(&unterminated).unwrap_err(), PairsError::MissingTerminator { index: 0 });
    let mut trailing = SERIALIZED_TWO_PAIRS.to_vec();
    trailing.extend_from_slice(b"zz");
    assert_eq!(pairs::deserialize(&trailing).unwrap_err(), PairsError::TrailingBytes { extra: 2 });
}

#[test]
fn header_map_follows_envoy_semantics() {
    let mut map = HeaderMap::default();
    map.add(b"X-Dm-User", b"mallory");
    map.add(b":path", b"/");
    map.add(b"x-dm-user", b"eve");
    assert_eq!(map.get(b"X-DM-USER"), Some(&b"mallory"[..]), "first value, case-insensitive");
    map.replace(b"X-DM-User", b"alice");
    let entries: Vec<(&[u8], &[u8])> = map.iter().collect();
    assert_eq!(entries, vec![(&b":path"[..], &b"/"[..]), (&b"x-dm-user"[..], &b"alice"[..])]);
    map.remove(b"x-dm-user");
    assert_eq!(map.to_string_pairs(), vec![(":path".to_string(), "/".to_string())]);
    map.clear();
    assert!(map.is_empty());
    map.add(b"A", b"1");
    assert_eq!(map.to_string_pairs(), vec![("a".to_string(), "1".to_string())]);
}

#[test]
fn shared_data_compare_and_swap() {
    let shared = SharedData::new();
    assert_eq!(shared.get("k"), None);
    let first = shared.set("k", b"one", 0).unwrap();
    assert_eq!(shared.get("k"), Some((b"one".to_vec(), first)));
    let second = shared.set("k", b"two", first).unwrap();
    assert_ne!(second, first);
    assert_eq!(shared.set("k", b"stale", first).unwrap_err(), CasMismatch { given: first, current: second });
    assert_eq!(shared.get("k"), Some((b"two".to_vec(), second)));
    // cas 0 always writes.
    let third = shared.set("k", b"three", 0).unwrap();
    assert_eq!(shared.get("k"), Some((b"three".to_vec(), third)));
    // A CAS on a key that does not exist yet succeeds, as in Envoy.
    assert!(shared.set("fresh", b"x", 12345).is_ok());
    // Clones are the same store.
    let other_worker = shared.clone();
    assert_eq!(other_worker.get("fresh").map(|(value, _)| value), Some(b"x".to_vec()));
}

#[test]
fn shared_queues_are_fifo() {
    let shared = SharedData::new();
    assert!(!shared.enqueue(1, b"nobody registered"));
    assert_eq!(shared.dequeue(1), Err(certbind_tests::host::Status::NotFound));
    let token = shared.register_queue(b"revocations");
    assert_eq!(shared.register_queue(b"revocations"), token);
    assert_eq!(shared.resolve_queue(b"revocations"), Some(token));
    assert_eq!(shared.resolve_queue(b"other"), None);
    assert!(shared.enqueue(token, b"first"));
    assert!(shared.enqueue(token, b"second"));
    assert_eq!(shared.dequeue(token), Ok(Some(b"first".to_vec())));
    assert_eq!(shared.dequeue(token), Ok(Some(b"second".to_vec())));
    assert_eq!(shared.dequeue(token), Ok(None));
}
