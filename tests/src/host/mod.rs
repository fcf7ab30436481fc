//! A headless proxy-wasm host (ABI 0.2.1) on wasmtime.
//!
//! One [`FilterHost`] is one VM, like one Envoy worker thread: one `Store`, one instance, reused
//! for every request. The engine and the compiled module are shared process-wide, so creating
//! many hosts compiles the filter once. [`SharedData`] can be shared between hosts to simulate
//! several workers.
//!
//! Lifecycle, as Envoy drives it:
//! - [`FilterHost::configure`]: `_initialize` (WASI reactor; `main(0, 0)` too if exported, or
//!   `_start` for a command module), `proxy_on_context_create(root, 0)`,
//!   `proxy_on_vm_start(root, vm_config_size)` (first time only), then
//!   `proxy_on_configure(root, plugin_config_size)`;
//! - [`FilterHost::request`]: `proxy_on_context_create(ctx, root)`,
//!   `proxy_on_request_headers(ctx, header_count, end_of_stream)`, `proxy_on_done(ctx)`,
//!   `proxy_on_log(ctx)`, `proxy_on_delete(ctx)`.
//!
//! Properties are returned the way Envoy serializes them: strings and bytes raw, booleans as
//! one byte (0 or 1), integers as 8-byte little-endian, timestamps and durations as 8-byte
//! little-endian nanoseconds — see [`property`]. Time is frozen at the wall-clock time the host
//! was created until a test sets or advances it. WASI `random_get` is deterministic.
//!
//! Compiling the filter takes seconds (far longer in an unoptimised test build), so the
//! compiled code of modules of 64 KiB or more is also kept on disk in `target/wasm/cwasm/`,
//! named after a hash of the module; a later test process loads it in milliseconds. wasmtime
//! refuses an artifact from an incompatible version or configuration, which is then recompiled.
//!
//! A guest that traps (including a panic, an out-of-bounds pointer passed to a host call, a
//! malformed serialized map, `proc_exit`, an import this host does not implement, or a call
//! that runs past the deadline) makes the call return `Err` with the reason; like Envoy, the VM
//! is then considered failed and refuses further calls. The host never panics on guest input.

pub mod abi;
pub mod memory;
pub use certbind_shared::pairs;
mod state;
pub mod wasi;

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use wasmtime::{Config, Engine, ExternType, InstancePre, Linker, Module, Store, Trap, TypedFunc};

pub use state::{
    log_level, CasMismatch, HeaderMap, HostCall, HostCallCounts, LocalResponse, Metric, MetricKind, PendingHttpCall,
    PropertyStore, SharedData, Status, DEFAULT_RANDOM_SEED, MAX_KEPT_LOGS,
};
use state::{HostState, Phase};

/// Context id of the plugin's root context (Envoy numbers contexts from 1).
pub const ROOT_CONTEXT_ID: u32 = 1;

/// How often the background thread advances the engine's epoch.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Default bound on one guest call: generous (a cold RSA verification takes milliseconds), but
/// a runaway guest still ends with an error instead of hanging the test run.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(10);

/// Where the `.wasm` comes from.
#[derive(Clone, Debug)]
pub enum WasmSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

impl From<&Path> for WasmSource {
    fn from(path: &Path) -> Self {
        Self::Path(path.to_path_buf())
    }
}

impl From<PathBuf> for WasmSource {
    fn from(path: PathBuf) -> Self {
        Self::Path(path)
    }
}

impl From<&str> for WasmSource {
    /// A path (not module text).
    fn from(path: &str) -> Self {
        Self::Path(PathBuf::from(path))
    }
}

impl From<Vec<u8>> for WasmSource {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(bytes)
    }
}

impl From<&[u8]> for WasmSource {
    fn from(bytes: &[u8]) -> Self {
        Self::Bytes(bytes.to_vec())
    }
}

/// What `proxy_on_request_headers` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// Property values encoded as Envoy encodes them for `proxy_get_property`.
pub mod property {
    /// Strings are returned raw (no terminator).
    pub fn string(value: &str) -> Vec<u8> {
        value.as_bytes().to_vec()
    }

    /// Booleans are one byte: 1 for true, 0 for false (C++ `bool` copied as is).
    pub fn boolean(value: bool) -> Vec<u8> {
        vec![u8::from(value)]
    }

    /// Signed integers (ports, sizes) are 8 bytes little-endian.
    pub fn int64(value: i64) -> Vec<u8> {
        value.to_le_bytes().to_vec()
    }

    /// Unsigned integers (`connection.id`) are 8 bytes little-endian.
    pub fn uint64(value: u64) -> Vec<u8> {
        value.to_le_bytes().to_vec()
    }

    /// Timestamps are 8-byte little-endian nanoseconds since the Unix epoch.
    pub fn timestamp_nanos(nanos: i64) -> Vec<u8> {
        int64(nanos)
    }
}

/// One request as the proxy hands it to the filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// Request headers, pseudo-headers included; names are lowercased on the way in, as
    /// Envoy's codecs do.
    pub headers: Vec<(String, String)>,
    /// Properties for `proxy_get_property`, by dotted path (`source.address`) or ABI path
    /// (segments joined by NUL), with values encoded as [`property`] does.
    pub properties: HashMap<String, Vec<u8>>,
    pub end_of_stream: bool,
    /// Hand header names to the filter as written instead of lowercased, as NGINX with
    /// ngx_wasm_module does.
    pub names_as_written: bool,
    /// Request trailers: when any are set, the headers phase is not the end of the stream and
    /// `proxy_on_request_trailers` follows it (unless the filter answered).
    pub trailers: Vec<(String, String)>,
}

impl Default for HttpRequest {
    fn default() -> Self {
        Self { headers: Vec::new(), properties: HashMap::new(), end_of_stream: true, names_as_written: false, trailers: Vec::new() }
    }
}

impl HttpRequest {
    /// A request with `:method`, `:path`, `:scheme: https` and `:authority: certbind.test`.
    pub fn new(method: &str, path: &str) -> Self {
        Self::default()
            .header(":method", method)
            .header(":path", path)
            .header(":scheme", "https")
            .header(":authority", "certbind.test")
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// Appends a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets a property (raw bytes, see [`property`] for encodings).
    pub fn property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Self {
        self.properties.insert(path.to_string(), value.into());
        self
    }

    /// Sets a string property.
    pub fn property_str(self, path: &str, value: &str) -> Self {
        self.property(path, property::string(value))
    }

    /// Sets a boolean property (one byte).
    pub fn property_bool(self, path: &str, value: bool) -> Self {
        self.property(path, property::boolean(value))
    }

    /// Sets an integer property (8 bytes little-endian).
    pub fn property_int(self, path: &str, value: i64) -> Self {
        self.property(path, property::int64(value))
    }

    /// `source.address` (`ip:port`), the direct peer.
    pub fn source_address(self, address: &str) -> Self {
        self.property_str("source.address", address)
    }

    /// Header names reach the filter as written (NGINX), not lowercased (Envoy).
    pub fn names_as_written(mut self, as_written: bool) -> Self {
        self.names_as_written = as_written;
        self
    }

    pub fn end_of_stream(mut self, end_of_stream: bool) -> Self {
        self.end_of_stream = end_of_stream;
        self
    }

    /// Appends a request trailer.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.push((name.to_string(), value.to_string()));
        self
    }
}

/// What happened to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResult {
    pub action: Action,
    /// The response the filter sent itself, if any.
    pub local_response: Option<LocalResponse>,
    /// Request headers after the filter ran (what the upstream would receive).
    pub request_headers: Vec<(String, String)>,
    /// Request trailers after the filter ran.
    pub request_trailers: Vec<(String, String)>,
    /// Imports invoked during the request's whole lifecycle: each is one VM-boundary crossing
    /// in a real proxy.
    pub host_calls: u64,
    /// The same, by import.
    pub host_call_counts: HostCallCounts,
    /// `proxy_continue_stream` calls made during the request.
    pub continue_stream_calls: u32,
    /// `proxy_close_stream` calls made during the request.
    pub close_stream_calls: u32,
}

impl HttpResult {
    /// First value of a request header after the filter ran (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request_headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// Every value of a request header after the filter ran.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.request_headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// Status of the local response, if the filter sent one.
    pub fn status(&self) -> Option<u32> {
        self.local_response.as_ref().map(|response| response.status)
    }
}

/// `proxy_on_http_call_response(context, token, headers, body_size, trailers)`.
type HttpCallResponseFunc = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The guest functions the host calls, looked up once.
struct Exports {
    initialize: Option<TypedFunc<(), ()>>,
    start: Option<TypedFunc<(), ()>>,
    main: Option<TypedFunc<(i32, i32), i32>>,
    on_context_create: TypedFunc<(i32, i32), ()>,
    on_vm_start: Option<TypedFunc<(i32, i32), i32>>,
    on_configure: Option<TypedFunc<(i32, i32), i32>>,
    on_request_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    on_request_trailers: Option<TypedFunc<(i32, i32), i32>>,
    on_done: Option<TypedFunc<i32, i32>>,
    on_log: Option<TypedFunc<i32, ()>>,
    on_delete: Option<TypedFunc<i32, ()>>,
    on_tick: Option<TypedFunc<i32, ()>>,
    on_queue_ready: Option<TypedFunc<(i32, i32), ()>>,
    on_http_call_response: Option<HttpCallResponseFunc>,
}

/// A proxy-wasm VM running one filter module.
pub struct FilterHost {
    store: Store<HostState>,
    module: Module,
    /// Shared so a call can borrow a function while the store is borrowed mutably (cloning
    /// a `TypedFunc` per call costs more than the call).
    exports: Arc<Exports>,
    vm_started: bool,
    configured: bool,
    failed: Option<String>,
    next_context_id: u32,
    deadline_ticks: u64,
}

impl FilterHost {
    /// Loads a filter with its own, unshared shared-data store.
    pub fn load(wasm: impl Into<WasmSource>) -> anyhow::Result<Self> {
        Self::with_shared_data(wasm, SharedData::new())
    }

    /// Loads the certbind filter this crate's build script compiled.
    pub fn load_filter() -> anyhow::Result<Self> {
        Self::load(Path::new(crate::FILTER_WASM))
    }

    /// Loads a filter whose shared data (and queues) are `shared`: give several hosts clones of
    /// one [`SharedData`] to simulate several workers of one proxy.
    pub fn with_shared_data(wasm: impl Into<WasmSource>, shared: SharedData) -> anyhow::Result<Self> {
        let bytes = match wasm.into() {
            WasmSource::Path(path) => {
                std::fs::read(&path).with_context(|| format!("reading the filter module {}", path.display()))?
            }
            WasmSource::Bytes(bytes) => bytes,
        };
        let engine = engine()?;
        let (module, pre) = compiled(engine, &bytes)?;
        let mut store = Store::new(engine, HostState::new(shared, wall_clock_nanos()));
        store.epoch_deadline_trap();
        let deadline_ticks = ticks_for(DEFAULT_CALL_DEADLINE);
        store.set_epoch_deadline(deadline_ticks);
        let instance = pre.instantiate(&mut store).map_err(anyhow::Error::from).context("instantiating the filter")?;

        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| anyhow!("the filter exports no memory named `memory`"))?;
        let allocator = match instance.get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate") {
            Ok(func) => func,
            Err(_) => instance
                .get_typed_func::<i32, i32>(&mut store, "malloc")
                .map_err(anyhow::Error::from)
                .context("the filter exports neither proxy_on_memory_allocate nor malloc")?,
        };
        let has_abi_version = module
            .exports()
            .any(|export| export.name() == "proxy_abi_version_0_2_1" || export.name() == "proxy_abi_version_0_2_0");
        if !has_abi_version {
            bail!("the filter exports no proxy_abi_version_0_2_1 (or 0_2_0) marker: not a proxy-wasm 0.2 module");
        }

        macro_rules! optional {
            ($name:literal) => {
                match module.get_export($name) {
                    Some(_) => Some(
                        instance
                            .get_typed_func(&mut store, $name)
                            .map_err(anyhow::Error::from)
                            .with_context(|| format!("the filter's `{}` export has the wrong signature", $name))?,
                    ),
                    None => None,
                }
            };
        }
        let exports = Exports {
            initialize: optional!("_initialize"),
            start: optional!("_start"),
            main: optional!("main"),
            on_context_create: optional!("proxy_on_context_create")
                .ok_or_else(|| anyhow!("the filter exports no proxy_on_context_create"))?,
            on_vm_start: optional!("proxy_on_vm_start"),
            on_configure: optional!("proxy_on_configure"),
            on_request_headers: optional!("proxy_on_request_headers"),
            on_request_trailers: optional!("proxy_on_request_trailers"),
            on_done: optional!("proxy_on_done"),
            on_log: optional!("proxy_on_log"),
            on_delete: optional!("proxy_on_delete"),
            on_tick: optional!("proxy_on_tick"),
            on_queue_ready: optional!("proxy_on_queue_ready"),
            on_http_call_response: optional!("proxy_on_http_call_response"),
        };

        let state = store.data_mut();
        state.memory = Some(memory);
        state.allocator = Some(allocator);
        state.root_context_id = ROOT_CONTEXT_ID;
        state.effective_context = ROOT_CONTEXT_ID;
        for (path, value) in [("plugin_name", "certbind"), ("plugin_root_id", ""), ("plugin_vm_id", "")] {
            state.host_properties.set(path.as_bytes(), value.as_bytes());
        }
        Ok(Self {
            store,
            module,
            exports: Arc::new(exports),
            vm_started: false,
            configured: false,
            failed: None,
            next_context_id: ROOT_CONTEXT_ID + 1,
            deadline_ticks,
        })
    }

    /// The module's imports as (module, name) pairs.
    pub fn imports(&self) -> Vec<(String, String)> {
        self.module.imports().map(|import| (import.module().to_string(), import.name().to_string())).collect()
    }

    /// The module's exported function names.
    pub fn exported_functions(&self) -> Vec<String> {
        self.module
            .exports()
            .filter(|export| matches!(export.ty(), ExternType::Func(_)))
            .map(|export| export.name().to_string())
            .collect()
    }

    /// A handle on this host's shared data (clone it into other hosts).
    pub fn shared_data(&self) -> SharedData {
        self.store.data().shared.clone()
    }

    /// VM configuration given to `proxy_on_vm_start` (empty unless set before the VM starts).
    pub fn set_vm_configuration(&mut self, configuration: &[u8]) {
        self.store.data_mut().vm_configuration = configuration.to_vec();
    }

    /// Bounds every later guest call (the bound is approximate: 10 ms resolution).
    pub fn set_call_deadline(&mut self, deadline: Duration) {
        self.deadline_ticks = ticks_for(deadline);
    }

    /// The reason the VM stopped, once a guest call has failed.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Runs the module's initialisation and creates and starts the root context. Called by
    /// [`configure`](Self::configure) when needed.
    pub fn start_vm(&mut self) -> anyhow::Result<()> {
        if self.vm_started {
            return Ok(());
        }
        self.store.data_mut().phase = Phase::Starting;
        let result = self.start_vm_inner();
        self.store.data_mut().phase = Phase::Idle;
        result?;
        self.vm_started = true;
        Ok(())
    }

    fn start_vm_inner(&mut self) -> anyhow::Result<()> {
        let exports = Arc::clone(&self.exports);
        if let Some(initialize) = exports.initialize.as_ref() {
            self.call_guest("_initialize", |store| initialize.call(store, ()))?;
            if let Some(main) = exports.main.as_ref() {
                self.call_guest("main", |store| main.call(store, (0, 0)))?;
            }
        } else if let Some(start) = exports.start.as_ref() {
            // A command module ends `_start` with proc_exit(0); that is a normal start.
            match self.call_guest("_start", |store| start.call(store, ())) {
                Ok(()) => {}
                Err(_) if self.store.data().exit_code == Some(0) => self.failed = None,
                Err(err) => return Err(err),
            }
        }
        let root = ROOT_CONTEXT_ID as i32;
        let create = &exports.on_context_create;
        self.call_guest("proxy_on_context_create(root)", |store| create.call(store, (root, 0)))?;
        if let Some(on_vm_start) = exports.on_vm_start.as_ref() {
            let size = guest_size(self.store.data().vm_configuration.len())?;
            let started = self.call_guest("proxy_on_vm_start", |store| on_vm_start.call(store, (root, size)))?;
            if started == 0 {
                let reason = "proxy_on_vm_start returned false".to_string();
                self.failed = Some(reason.clone());
                bail!(reason);
            }
        }
        Ok(())
    }

    /// Delivers the plugin configuration: returns what `proxy_on_configure` returned (`false`
    /// means the proxy refuses the configuration; the filter's log says why).
    pub fn configure(&mut self, plugin_configuration: &[u8]) -> anyhow::Result<bool> {
        let exports = Arc::clone(&self.exports);
        self.start_vm()?;
        let Some(on_configure) = exports.on_configure.as_ref() else {
            self.configured = true;
            return Ok(true);
        };
        let size = guest_size(plugin_configuration.len())?;
        let state = self.store.data_mut();
        state.plugin_configuration = plugin_configuration.to_vec();
        state.phase = Phase::Starting;
        let root = ROOT_CONTEXT_ID as i32;
        let result = self.call_guest("proxy_on_configure", |store| on_configure.call(store, (root, size)));
        self.store.data_mut().phase = Phase::Idle;
        let accepted = result? != 0;
        self.configured = accepted;
        Ok(accepted)
    }

    /// Runs one request through a fresh HTTP context (request headers phase).
    pub fn request(&mut self, request: &HttpRequest) -> anyhow::Result<HttpResult> {
        if !self.configured {
            bail!("the filter has no accepted configuration: call configure() first (and check it returned true)");
        }
        let context = self.next_context_id;
        self.next_context_id = self.next_context_id.checked_add(1).unwrap_or(ROOT_CONTEXT_ID + 1);

        let state = self.store.data_mut();
        state.calls = HostCallCounts::default();
        state.local_response = None;
        state.extra_local_responses.clear();
        state.continue_stream_calls = 0;
        state.close_stream_calls = 0;
        state.request_headers.clear();
        for (name, value) in &request.headers {
            state.request_headers.add_with_case(name.as_bytes(), value.as_bytes(), request.names_as_written);
        }
        state.request_trailers.clear();
        for (name, value) in &request.trailers {
            state.request_trailers.add_with_case(name.as_bytes(), value.as_bytes(), request.names_as_written);
        }
        state.request_properties.clear();
        for (path, value) in &request.properties {
            state.request_properties.set(path.as_bytes(), value);
        }
        state.active_http_context = Some(context);
        state.effective_context = context;
        state.phase = Phase::Request;
        let header_count = guest_size(state.request_headers.len())?;
        let trailer_count = guest_size(state.request_trailers.len())?;
        let end_of_stream = request.end_of_stream && request.trailers.is_empty();

        let outcome = self.run_request(context, header_count, end_of_stream, trailer_count);

        let state = self.store.data_mut();
        state.phase = Phase::Idle;
        state.active_http_context = None;
        state.effective_context = ROOT_CONTEXT_ID;
        let action = outcome?;
        if !state.extra_local_responses.is_empty() {
            let first = state.local_response.as_ref().map_or(0, |response| response.status);
            bail!(
                "the filter sent {} local responses in one request (statuses {first} then {:?})",
                state.extra_local_responses.len() + 1,
                state.extra_local_responses
            );
        }
        Ok(HttpResult {
            action,
            local_response: state.local_response.take(),
            request_headers: state.request_headers.to_string_pairs(),
            request_trailers: state.request_trailers.to_string_pairs(),
            host_calls: state.calls.total(),
            host_call_counts: state.calls,
            continue_stream_calls: state.continue_stream_calls,
            close_stream_calls: state.close_stream_calls,
        })
    }

    fn run_request(&mut self, context: u32, header_count: i32, end_of_stream: bool, trailer_count: i32) -> anyhow::Result<Action> {
        let exports = Arc::clone(&self.exports);
        let (context, root) = (context as i32, ROOT_CONTEXT_ID as i32);
        let create = &exports.on_context_create;
        self.call_guest("proxy_on_context_create", |store| create.call(store, (context, root)))?;
        let action = match exports.on_request_headers.as_ref() {
            Some(on_request_headers) => {
                let code = self.call_guest("proxy_on_request_headers", |store| {
                    on_request_headers.call(store, (context, header_count, i32::from(end_of_stream)))
                })?;
                match code {
                    0 => Action::Continue,
                    1 => Action::Pause,
                    other => {
                        let reason = format!("proxy_on_request_headers returned unknown action {other}");
                        self.failed = Some(reason.clone());
                        bail!(reason);
                    }
                }
            }
            None => Action::Continue,
        };
        // The trailers follow headers that went on; a proxy passes none after a local answer.
        let answered = self.store.data().local_response.is_some();
        let action = match exports.on_request_trailers.as_ref() {
            Some(on_request_trailers) if action == Action::Continue && trailer_count > 0 && !answered => {
                let code = self.call_guest("proxy_on_request_trailers", |store| on_request_trailers.call(store, (context, trailer_count)))?;
                match code {
                    0 => Action::Continue,
                    1 => Action::Pause,
                    other => {
                        let reason = format!("proxy_on_request_trailers returned unknown action {other}");
                        self.failed = Some(reason.clone());
                        bail!(reason);
                    }
                }
            }
            _ => action,
        };
        if let Some(on_done) = exports.on_done.as_ref() {
            self.call_guest("proxy_on_done", |store| on_done.call(store, context))?;
        }
        if let Some(on_log) = exports.on_log.as_ref() {
            self.call_guest("proxy_on_log", |store| on_log.call(store, context))?;
        }
        if let Some(on_delete) = exports.on_delete.as_ref() {
            self.call_guest("proxy_on_delete", |store| on_delete.call(store, context))?;
        }
        Ok(action)
    }

    /// Calls `proxy_on_tick` on the root context (what the proxy does every tick period).
    pub fn tick(&mut self) -> anyhow::Result<()> {
        let exports = Arc::clone(&self.exports);
        self.ensure_started()?;
        let Some(on_tick) = exports.on_tick.as_ref() else { return Ok(()) };
        self.store.data_mut().phase = Phase::Root;
        let root = ROOT_CONTEXT_ID as i32;
        let result = self.call_guest("proxy_on_tick", |store| on_tick.call(store, root));
        self.store.data_mut().phase = Phase::Idle;
        result
    }

    /// The period the filter asked for with `proxy_set_tick_period_milliseconds` (0 = none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    /// Calls `proxy_on_queue_ready(root, token)`.
    pub fn notify_queue_ready(&mut self, token: u32) -> anyhow::Result<()> {
        let exports = Arc::clone(&self.exports);
        self.ensure_started()?;
        let Some(on_queue_ready) = exports.on_queue_ready.as_ref() else { return Ok(()) };
        self.store.data_mut().phase = Phase::Root;
        let root = ROOT_CONTEXT_ID as i32;
        let result = self.call_guest("proxy_on_queue_ready", |store| on_queue_ready.call(store, (root, token as i32)));
        self.store.data_mut().phase = Phase::Idle;
        result
    }

    /// HTTP callouts dispatched since the last call (each stays answerable until answered).
    pub fn take_http_calls(&mut self) -> Vec<PendingHttpCall> {
        std::mem::take(&mut self.store.data_mut().new_http_calls)
    }

    /// Restricts `proxy_http_call` to these upstream (cluster) names: others get
    /// `BadArgument`, as Envoy answers for an unknown cluster. `None` accepts any name.
    pub fn set_known_upstreams(&mut self, upstreams: Option<Vec<String>>) {
        self.store.data_mut().known_upstreams = upstreams;
    }

    /// Answers callout `token`: `proxy_on_http_call_response(root, token, headers, body, 0)`.
    /// Include `:status` in `headers`, as Envoy does.
    pub fn respond_http_call(&mut self, token: u32, headers: &[(&str, &str)], body: &[u8]) -> anyhow::Result<()> {
        self.respond_http_call_with_trailers(token, headers, body, &[])
    }

    /// Like [`respond_http_call`](Self::respond_http_call), with response trailers.
    pub fn respond_http_call_with_trailers(
        &mut self,
        token: u32,
        headers: &[(&str, &str)],
        body: &[u8],
        trailers: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let exports = Arc::clone(&self.exports);
        self.ensure_started()?;
        if self.store.data_mut().outstanding_http_calls.remove(&token).is_none() {
            bail!("no outstanding HTTP callout with token {token}");
        }
        let Some(on_response) = exports.on_http_call_response.as_ref() else { return Ok(()) };
        let state = self.store.data_mut();
        let (header_count, body_size, trailer_count) = abi::install_call_response(state, headers, body, trailers);
        state.phase = Phase::HttpCallResponse;
        let args = (ROOT_CONTEXT_ID as i32, token as i32, header_count as i32, body_size as i32, trailer_count as i32);
        let result = self.call_guest("proxy_on_http_call_response", |store| on_response.call(store, args));
        let state = self.store.data_mut();
        state.phase = Phase::Idle;
        state.call_response = None;
        result
    }

    /// Fails callout `token` the way Envoy reports a failed or timed-out call: a response
    /// callback with no headers, no body and no trailers.
    pub fn fail_http_call(&mut self, token: u32) -> anyhow::Result<()> {
        let exports = Arc::clone(&self.exports);
        self.ensure_started()?;
        if self.store.data_mut().outstanding_http_calls.remove(&token).is_none() {
            bail!("no outstanding HTTP callout with token {token}");
        }
        let Some(on_response) = exports.on_http_call_response.as_ref() else { return Ok(()) };
        self.store.data_mut().phase = Phase::Root;
        let args = (ROOT_CONTEXT_ID as i32, token as i32, 0, 0, 0);
        let result = self.call_guest("proxy_on_http_call_response", |store| on_response.call(store, args));
        self.store.data_mut().phase = Phase::Idle;
        result
    }

    /// Log lines (level, message) captured since the last call, oldest first: `proxy_log`
    /// and the guest's stdout (info) / stderr (error).
    pub fn take_logs(&mut self) -> Vec<(u32, String)> {
        self.store.data_mut().logs.drain(..).collect()
    }

    /// Log lines dropped because more than [`MAX_KEPT_LOGS`] were waiting.
    pub fn dropped_logs(&self) -> u64 {
        self.store.data().dropped_logs
    }

    /// Level reported by `proxy_get_log_level`; lines below it are discarded (default trace).
    pub fn set_log_level(&mut self, level: u32) {
        self.store.data_mut().log_level = level;
    }

    /// Sets the clock read by `proxy_get_current_time_nanoseconds` and WASI `clock_time_get`.
    pub fn set_time_nanos(&mut self, nanos: u64) {
        self.store.data_mut().now_nanos = nanos;
    }

    /// Moves the clock forward.
    pub fn advance_time(&mut self, by: Duration) {
        let state = self.store.data_mut();
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        state.now_nanos = state.now_nanos.saturating_add(by);
    }

    pub fn time_nanos(&self) -> u64 {
        self.store.data().now_nanos
    }

    /// Reseeds the generator behind WASI `random_get` (default [`DEFAULT_RANDOM_SEED`]).
    pub fn set_random_seed(&mut self, seed: u64) {
        self.store.data_mut().random = state::DeterministicRandom::new(seed);
    }

    /// Size of the guest's linear memory in bytes: what the VM holds from the host, at its
    /// high-water mark (wasm memory grows and never shrinks).
    pub fn memory_bytes(&self) -> usize {
        self.store.data().memory.map_or(0, |memory| memory.data_size(&self.store))
    }

    /// Value of the counter or gauge `name`.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.store
            .data()
            .metrics
            .iter()
            .find(|metric| metric.name == name && metric.kind != MetricKind::Histogram)
            .map(|metric| metric.value)
    }

    /// Samples recorded into the histogram `name`.
    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        self.store
            .data()
            .metrics
            .iter()
            .find(|metric| metric.name == name && metric.kind == MetricKind::Histogram)
            .map(|metric| metric.samples.clone())
    }

    /// Every metric the filter defined, in definition order.
    pub fn metrics(&self) -> Vec<Metric> {
        self.store.data().metrics.clone()
    }

    /// Sets a VM-wide property (returned when the request does not set the same path).
    pub fn set_property(&mut self, path: &str, value: &[u8]) {
        self.store.data_mut().host_properties.set(path.as_bytes(), value);
    }

    /// Every import invoked since the host was created.
    pub fn total_host_calls(&self) -> u64 {
        self.store.data().lifetime_calls
    }

    /// Times the guest called `proxy_done`.
    pub fn done_calls(&self) -> u32 {
        self.store.data().done_calls
    }

    fn ensure_started(&mut self) -> anyhow::Result<()> {
        if !self.vm_started {
            bail!("the VM has not started: call configure() first");
        }
        Ok(())
    }

    /// Runs one guest entry point under the deadline; a trap fails the VM for good.
    fn call_guest<R>(
        &mut self,
        what: &str,
        call: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> anyhow::Result<R> {
        if let Some(reason) = &self.failed {
            bail!("the VM failed earlier and runs no more guest code: {reason}");
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().critical_in_call.clear();
        match call(&mut self.store) {
            Ok(value) => Ok(value),
            Err(err) => {
                let interrupted = err.downcast_ref::<Trap>() == Some(&Trap::Interrupt);
                let err = anyhow::Error::from(err);
                let mut reason = format!("{what} failed: {err:#}");
                if interrupted {
                    reason.push_str(&format!(
                        " (the call ran past its deadline of about {} ms)",
                        self.deadline_ticks.saturating_mul(EPOCH_TICK.as_millis() as u64)
                    ));
                }
                let critical = &self.store.data().critical_in_call;
                if !critical.is_empty() {
                    reason.push_str("; the guest logged: ");
                    reason.push_str(&critical.join(" | "));
                }
                self.failed = Some(reason.clone());
                Err(anyhow!(reason))
            }
        }
    }
}

fn guest_size(len: usize) -> anyhow::Result<i32> {
    u32::try_from(len).map(|len| len as i32).map_err(|_| anyhow!("{len} bytes do not fit 32-bit guest sizes"))
}

fn ticks_for(deadline: Duration) -> u64 {
    let ticks = deadline.as_millis() / EPOCH_TICK.as_millis().max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

fn wall_clock_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// The process-wide engine, with epoch interruption driven by one background thread.
fn engine() -> anyhow::Result<&'static Engine> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|err| format!("{:#}", anyhow::Error::from(err)))?;
        let ticker = engine.clone();
        // If the thread cannot start, deadlines just never fire; nothing else depends on it.
        let _ = std::thread::Builder::new().name("wasm-epoch-ticker".into()).spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            ticker.increment_epoch();
        });
        Ok(engine)
    });
    engine.as_ref().map_err(|err| anyhow!("creating the wasmtime engine: {err}"))
}

struct CachedModule {
    hash: u64,
    bytes: Vec<u8>,
    module: Module,
    pre: InstancePre<HostState>,
}

/// Compiles `bytes` once per process (concurrent callers wait for the first compilation).
fn compiled(engine: &Engine, bytes: &[u8]) -> anyhow::Result<(Module, InstancePre<HostState>)> {
    static CACHE: Mutex<Vec<CachedModule>> = Mutex::new(Vec::new());
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    let hash = hasher.finish();
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(hit) = cache.iter().find(|entry| entry.hash == hash && entry.bytes == bytes) {
        return Ok((hit.module.clone(), hit.pre.clone()));
    }
    let module = match load_precompiled(engine, hash, bytes.len()) {
        Some(module) => module,
        None => {
            let module =
                Module::new(engine, bytes).map_err(anyhow::Error::from).context("compiling the filter module")?;
            store_precompiled(&module, hash, bytes.len());
            module
        }
    };
    let pre = link(engine, &module)?;
    cache.push(CachedModule { hash, bytes: bytes.to_vec(), module: module.clone(), pre: pre.clone() });
    Ok((module, pre))
}

/// Directory of compiled modules kept between test processes: compiling the filter takes
/// seconds (much longer in an unoptimised test build), loading the compiled code milliseconds.
const PRECOMPILED_DIR: Option<&str> = option_env!("CERTBIND_WASM_CACHE_DIR");

fn precompiled_path(hash: u64, len: usize) -> Option<PathBuf> {
    PRECOMPILED_DIR.map(|dir| Path::new(dir).join(format!("{hash:016x}-{len}.cwasm")))
}

/// Modules smaller than this compile fast enough not to be worth a file.
const PRECOMPILE_MIN_BYTES: usize = 64 * 1024;

/// Compiled modules kept; older ones are deleted (each filter change adds one).
const PRECOMPILED_KEPT: usize = 4;

fn load_precompiled(engine: &Engine, hash: u64, len: usize) -> Option<Module> {
    if len < PRECOMPILE_MIN_BYTES {
        return None;
    }
    let path = precompiled_path(hash, len)?;
    if !path.is_file() {
        return None;
    }
    // SAFETY: the file is one this function's counterpart wrote with `Module::serialize`, in
    // the build's own target directory, named after the hash and length of the module it was
    // compiled from. wasmtime checks that it was produced by a compatible version and
    // configuration and refuses it otherwise, in which case the module is compiled anew.
    unsafe { Module::deserialize_file(engine, &path) }.ok()
}

/// Best effort: a cache that cannot be written only costs the next process a compilation.
fn store_precompiled(module: &Module, hash: u64, len: usize) {
    if len < PRECOMPILE_MIN_BYTES {
        return;
    }
    let (Some(path), Ok(bytes)) = (precompiled_path(hash, len), module.serialize()) else { return };
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    // Write under a unique name, then rename: concurrent test processes never see half a file.
    let partial = dir.join(format!("{hash:016x}-{len}.{}.partial", std::process::id()));
    if std::fs::write(&partial, bytes).is_ok() && std::fs::rename(&partial, &path).is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    prune_precompiled(dir);
}

fn prune_precompiled(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .filter_map(|path| Some((std::fs::metadata(&path).ok()?.modified().ok()?, path)))
        .collect();
    files.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, stale) in files.iter().skip(PRECOMPILED_KEPT) {
        let _ = std::fs::remove_file(stale);
    }
}

/// Links the host functions; any other function import becomes a trap naming itself, so a
/// module loads even if it imports something it never calls.
fn link(engine: &Engine, module: &Module) -> anyhow::Result<InstancePre<HostState>> {
    let mut linker: Linker<HostState> = Linker::new(engine);
    abi::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
    wasi::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
    let implemented: HashSet<(&str, &str)> = abi::IMPLEMENTED
        .iter()
        .map(|name| (abi::MODULE, *name))
        .chain(wasi::IMPLEMENTED.iter().map(|name| (wasi::MODULE, *name)))
        .collect();
    for import in module.imports() {
        if implemented.contains(&(import.module(), import.name())) {
            continue;
        }
        let ExternType::Func(func_type) = import.ty() else {
            bail!(
                "the filter imports `{}::{}`, which is not a function; this host provides none",
                import.module(),
                import.name()
            );
        };
        let description = format!("{}::{}", import.module(), import.name());
        linker
            .func_new(import.module(), import.name(), func_type, move |mut caller, _, _| {
                caller.data_mut().record_call(HostCall::Unimplemented);
                Err(wasmtime::format_err!("the guest called `{description}`, which this host does not implement"))
            })
            .map_err(anyhow::Error::from)?;
    }
    linker.instantiate_pre(module).map_err(anyhow::Error::from).context("linking the filter's imports")
}
