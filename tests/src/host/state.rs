//! What the host keeps between calls: the per-VM state behind `Store<HostState>`, and the data
//! shared between VMs ([`SharedData`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use wasmtime::{Memory, TypedFunc};

/// Result codes of the proxy-wasm ABI (0.2.1), as returned to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

impl Status {
    /// The value as the wasm `i32` the guest receives.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Log levels of the ABI; `proxy_log` and `proxy_get_log_level` use these numbers.
pub mod log_level {
    pub const TRACE: u32 = 0;
    pub const DEBUG: u32 = 1;
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
    pub const CRITICAL: u32 = 5;
}

/// Most log lines kept before older ones are dropped: a benchmark running millions of requests
/// through a filter that logs must not grow without bound.
pub const MAX_KEPT_LOGS: usize = 16 * 1024;

macro_rules! host_calls {
    ($($variant:ident => $name:literal,)*) => {
        /// Every import the host implements, for per-call accounting.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum HostCall { $($variant,)* }

        impl HostCall {
            /// All host calls, in declaration order.
            pub const ALL: &'static [HostCall] = &[$(HostCall::$variant,)*];

            /// The import's field name (`proxy_log`, `fd_write`, …).
            pub fn name(self) -> &'static str {
                match self { $(HostCall::$variant => $name,)* }
            }
        }
    };
}

host_calls! {
    Log => "proxy_log",
    GetLogLevel => "proxy_get_log_level",
    GetCurrentTime => "proxy_get_current_time_nanoseconds",
    SetTickPeriod => "proxy_set_tick_period_milliseconds",
    GetBufferBytes => "proxy_get_buffer_bytes",
    SetBufferBytes => "proxy_set_buffer_bytes",
    GetHeaderMapPairs => "proxy_get_header_map_pairs",
    SetHeaderMapPairs => "proxy_set_header_map_pairs",
    GetHeaderMapValue => "proxy_get_header_map_value",
    AddHeaderMapValue => "proxy_add_header_map_value",
    ReplaceHeaderMapValue => "proxy_replace_header_map_value",
    RemoveHeaderMapValue => "proxy_remove_header_map_value",
    GetProperty => "proxy_get_property",
    SetProperty => "proxy_set_property",
    GetSharedData => "proxy_get_shared_data",
    SetSharedData => "proxy_set_shared_data",
    RegisterSharedQueue => "proxy_register_shared_queue",
    ResolveSharedQueue => "proxy_resolve_shared_queue",
    EnqueueSharedQueue => "proxy_enqueue_shared_queue",
    DequeueSharedQueue => "proxy_dequeue_shared_queue",
    ContinueStream => "proxy_continue_stream",
    CloseStream => "proxy_close_stream",
    SendLocalResponse => "proxy_send_local_response",
    HttpCall => "proxy_http_call",
    SetEffectiveContext => "proxy_set_effective_context",
    Done => "proxy_done",
    CallForeignFunction => "proxy_call_foreign_function",
    DefineMetric => "proxy_define_metric",
    GetMetric => "proxy_get_metric",
    RecordMetric => "proxy_record_metric",
    IncrementMetric => "proxy_increment_metric",
    FdWrite => "fd_write",
    FdRead => "fd_read",
    FdClose => "fd_close",
    FdSeek => "fd_seek",
    FdFdstatGet => "fd_fdstat_get",
    FdPrestatGet => "fd_prestat_get",
    FdPrestatDirName => "fd_prestat_dir_name",
    ClockTimeGet => "clock_time_get",
    ClockResGet => "clock_res_get",
    RandomGet => "random_get",
    EnvironGet => "environ_get",
    EnvironSizesGet => "environ_sizes_get",
    ArgsGet => "args_get",
    ArgsSizesGet => "args_sizes_get",
    ProcExit => "proc_exit",
    SchedYield => "sched_yield",
    Unimplemented => "(unimplemented import)",
}

const HOST_CALL_KINDS: usize = HostCall::ALL.len();

/// How many times each import was invoked: the cost model of a real proxy, where every call
/// crosses the VM boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCallCounts {
    total: u64,
    by_call: [u32; HOST_CALL_KINDS],
}

impl Default for HostCallCounts {
    fn default() -> Self {
        Self { total: 0, by_call: [0; HOST_CALL_KINDS] }
    }
}

impl HostCallCounts {
    pub(crate) fn record(&mut self, call: HostCall) {
        self.total = self.total.saturating_add(1);
        if let Some(count) = self.by_call.get_mut(call as usize) {
            *count = count.saturating_add(1);
        }
    }

    /// Calls of every kind.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Calls of one kind.
    pub fn get(&self, call: HostCall) -> u32 {
        self.by_call.get(call as usize).copied().unwrap_or(0)
    }

    /// Calls of the import with this field name (`"proxy_get_property"`); 0 if unknown.
    pub fn by_name(&self, name: &str) -> u32 {
        HostCall::ALL.iter().find(|call| call.name() == name).map_or(0, |call| self.get(*call))
    }

    /// The kinds that were called at least once, with their counts.
    pub fn nonzero(&self) -> Vec<(&'static str, u32)> {
        HostCall::ALL
            .iter()
            .filter_map(|call| {
                let count = self.get(*call);
                (count > 0).then_some((call.name(), count))
            })
            .collect()
    }
}

/// Header map whose entry buffers are reused from request to request, so that a warm
/// host copies headers in without allocating. Names are stored lowercased, as Envoy's codecs
/// and `LowerCaseString` do.
#[derive(Debug, Default)]
pub struct HeaderMap {
    slots: Vec<(Vec<u8>, Vec<u8>)>,
    len: usize,
}

impl HeaderMap {
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends an entry (the name is lowercased).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        self.add_with_case(name, value, false);
    }

    /// Appends an entry; with `as_written` the name keeps its case, as NGINX with
    /// ngx_wasm_module hands names to filters.
    pub fn add_with_case(&mut self, name: &[u8], value: &[u8], as_written: bool) {
        if self.len == self.slots.len() {
            self.slots.push((Vec::new(), Vec::new()));
        }
        if let Some((slot_name, slot_value)) = self.slots.get_mut(self.len) {
            slot_name.clear();
            slot_name.extend_from_slice(name);
            if !as_written {
                slot_name.make_ascii_lowercase();
            }
            slot_value.clear();
            slot_value.extend_from_slice(value);
            self.len += 1;
        }
    }

    /// First value of `name` (case-insensitive), like Envoy's `getHeaderMapValue`.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value)
    }

    /// Removes every entry named `name` (case-insensitive), keeping the others' order.
    pub fn remove(&mut self, name: &[u8]) {
        let mut kept = 0;
        for read in 0..self.len {
            let matches = self.slots.get(read).is_some_and(|(key, _)| key.eq_ignore_ascii_case(name));
            if !matches {
                // Swapping (not dropping) keeps the removed entry's buffers for reuse.
                self.slots.swap(kept, read);
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// Replaces every entry named `name` by one entry at the end, as Envoy's `setCopy` does.
    pub fn replace(&mut self, name: &[u8], value: &[u8]) {
        self.remove(name);
        self.add(name, value);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.slots.iter().take(self.len).map(|(key, value)| (key.as_slice(), value.as_slice()))
    }

    /// The entries as strings (invalid UTF-8 replaced).
    pub fn to_string_pairs(&self) -> Vec<(String, String)> {
        self.iter().map(|(key, value)| (text(key), text(value))).collect()
    }
}

/// Bytes as text: valid UTF-8 is copied as is (the common, fast case), invalid sequences are
/// replaced.
pub(crate) fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Property values by ABI path (segments separated by NUL), with reusable buffers.
#[derive(Debug, Default)]
pub struct PropertyStore {
    slots: Vec<(Vec<u8>, Vec<u8>)>,
    len: usize,
}

impl PropertyStore {
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Sets the property at `path`. A path without NUL bytes is taken as dot-separated
    /// (`source.address`); one containing NUL bytes is used as the ABI path as is.
    pub fn set(&mut self, path: &[u8], value: &[u8]) {
        let dotted = !path.contains(&0);
        let existing = self.slots.iter().take(self.len).position(|(key, _)| same_path(key, path, dotted));
        let index = match existing {
            Some(index) => index,
            None => {
                if self.len == self.slots.len() {
                    self.slots.push((Vec::new(), Vec::new()));
                }
                let index = self.len;
                if let Some((key, _)) = self.slots.get_mut(index) {
                    key.clear();
                    key.extend(path.iter().map(|&byte| if dotted && byte == b'.' { 0 } else { byte }));
                }
                self.len += 1;
                index
            }
        };
        if let Some((_, slot_value)) = self.slots.get_mut(index) {
            slot_value.clear();
            slot_value.extend_from_slice(value);
        }
    }

    /// The value at the ABI path `path` (NUL-separated, as the guest sends it).
    pub fn get(&self, path: &[u8]) -> Option<&[u8]> {
        self.slots.iter().take(self.len).find(|(key, _)| key == path).map(|(_, value)| value.as_slice())
    }
}

/// Whether the stored NUL-separated `key` names the same path as `path`.
fn same_path(key: &[u8], path: &[u8], path_is_dotted: bool) -> bool {
    key.len() == path.len() && key.iter().zip(path).all(|(&k, &p)| k == p || (path_is_dotted && k == 0 && p == b'.'))
}

/// A metric the guest defined with `proxy_define_metric`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    /// Counter or gauge value.
    pub value: i64,
    /// Values recorded into a histogram.
    pub samples: Vec<u64>,
}

/// Metric types of the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

impl MetricKind {
    pub fn from_abi(value: i32) -> Option<Self> {
        match value {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }
}

/// A `proxy_http_call` the guest dispatched and the test has not answered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingHttpCall {
    pub token: u32,
    /// Context that was current when the call was dispatched (the root context for calls made
    /// outside a request).
    pub context_id: u32,
    /// Upstream (Envoy cluster) name.
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub timeout_ms: u32,
}

/// The response to an HTTP callout while `proxy_on_http_call_response` runs.
#[derive(Debug, Default)]
pub(crate) struct CallResponse {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
}

/// A response the filter produced itself with `proxy_send_local_response`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    /// Extra response headers, names lowercased as Envoy stores them.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The `response_code_details` string (empty when the guest gave none).
    pub details: String,
    /// gRPC status the guest passed (-1 for none).
    pub grpc_status: i32,
}

impl LocalResponse {
    /// First value of a response header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Which host callback is running, to decide which maps and buffers exist right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    /// `proxy_on_vm_start` / `proxy_on_configure`: the plugin configuration is readable.
    Starting,
    /// Any callback of the active HTTP context: its request headers are readable.
    Request,
    /// `proxy_on_http_call_response`: the callout response is readable.
    HttpCallResponse,
    /// `proxy_on_tick`, `proxy_on_queue_ready`.
    Root,
}

/// Deterministic generator behind WASI `random_get` (SplitMix64): runs are reproducible, and
/// nothing in the filter may rely on this randomness for security inside tests anyway.
#[derive(Clone, Debug)]
pub(crate) struct DeterministicRandom {
    state: u64,
}

impl DeterministicRandom {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            for (byte, random) in chunk.iter_mut().zip(word) {
                *byte = random;
            }
        }
    }
}

/// Seed used by [`DeterministicRandom`] unless a test sets another.
pub const DEFAULT_RANDOM_SEED: u64 = 0x6365_7274_6269_6e64; // "certbind"

/// Everything the host functions read and write, one per VM (`Store<HostState>`).
pub struct HostState {
    pub(crate) memory: Option<Memory>,
    pub(crate) allocator: Option<TypedFunc<i32, i32>>,
    pub(crate) root_context_id: u32,
    pub(crate) active_http_context: Option<u32>,
    pub(crate) effective_context: u32,
    pub(crate) phase: Phase,

    pub(crate) request_headers: HeaderMap,
    pub(crate) request_trailers: HeaderMap,
    pub(crate) request_properties: PropertyStore,
    pub(crate) host_properties: PropertyStore,
    pub(crate) vm_configuration: Vec<u8>,
    pub(crate) plugin_configuration: Vec<u8>,
    pub(crate) call_response: Option<CallResponse>,

    pub(crate) local_response: Option<LocalResponse>,
    pub(crate) extra_local_responses: Vec<u32>,
    pub(crate) continue_stream_calls: u32,
    pub(crate) close_stream_calls: u32,
    pub(crate) done_calls: u32,

    pub(crate) logs: VecDeque<(u32, String)>,
    pub(crate) dropped_logs: u64,
    pub(crate) log_level: u32,
    /// Critical lines logged during the current guest call, quoted in trap errors.
    pub(crate) critical_in_call: Vec<String>,

    pub(crate) now_nanos: u64,
    pub(crate) random: DeterministicRandom,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) shared: SharedData,
    pub(crate) tick_period_ms: u32,

    pub(crate) known_upstreams: Option<Vec<String>>,
    pub(crate) next_http_call_token: u32,
    pub(crate) new_http_calls: Vec<PendingHttpCall>,
    /// Dispatched and not yet answered: token → dispatching context.
    pub(crate) outstanding_http_calls: HashMap<u32, u32>,

    pub(crate) calls: HostCallCounts,
    pub(crate) lifetime_calls: u64,
    pub(crate) exit_code: Option<i32>,
    /// Reused buffer for data on its way into guest memory.
    pub(crate) scratch: Vec<u8>,
}

impl HostState {
    pub(crate) fn new(shared: SharedData, now_nanos: u64) -> Self {
        Self {
            memory: None,
            allocator: None,
            root_context_id: 0,
            active_http_context: None,
            effective_context: 0,
            phase: Phase::Idle,
            request_headers: HeaderMap::default(),
            request_trailers: HeaderMap::default(),
            request_properties: PropertyStore::default(),
            host_properties: PropertyStore::default(),
            vm_configuration: Vec::new(),
            plugin_configuration: Vec::new(),
            call_response: None,
            local_response: None,
            extra_local_responses: Vec::new(),
            continue_stream_calls: 0,
            close_stream_calls: 0,
            done_calls: 0,
            logs: VecDeque::new(),
            dropped_logs: 0,
            log_level: log_level::TRACE,
            critical_in_call: Vec::new(),
            now_nanos,
            random: DeterministicRandom::new(DEFAULT_RANDOM_SEED),
            metrics: Vec::new(),
            shared,
            tick_period_ms: 0,
            known_upstreams: None,
            next_http_call_token: 1,
            new_http_calls: Vec::new(),
            outstanding_http_calls: HashMap::new(),
            calls: HostCallCounts::default(),
            lifetime_calls: 0,
            exit_code: None,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn record_call(&mut self, call: HostCall) {
        self.calls.record(call);
        self.lifetime_calls = self.lifetime_calls.saturating_add(1);
    }

    pub(crate) fn push_log(&mut self, level: u32, message: String) {
        if level < self.log_level {
            return;
        }
        if level >= log_level::CRITICAL {
            self.critical_in_call.push(message.clone());
        }
        if self.logs.len() >= MAX_KEPT_LOGS {
            self.logs.pop_front();
            self.dropped_logs = self.dropped_logs.saturating_add(1);
        }
        self.logs.push_back((level, message));
    }

    pub(crate) fn metric_by_id(&mut self, id: i32) -> Option<&mut Metric> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.metrics.get_mut(index)
    }
}

/// A `proxy_set_shared_data` whose compare-and-swap value no longer matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CasMismatch {
    /// The CAS value the writer passed.
    pub given: u32,
    /// The CAS value the entry has.
    pub current: u32,
}

#[derive(Debug)]
struct SharedStore {
    entries: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    next_cas: u32,
    queues: Vec<SharedQueue>,
}

#[derive(Debug)]
struct SharedQueue {
    name: Vec<u8>,
    items: VecDeque<Vec<u8>>,
}

impl Default for SharedStore {
    fn default() -> Self {
        Self { entries: HashMap::new(), next_cas: 1, queues: Vec::new() }
    }
}

impl SharedStore {
    /// Next CAS value; never 0, which means "no CAS" on the ABI.
    fn take_cas(&mut self) -> u32 {
        let cas = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        cas
    }
}

/// Key/value data and queues shared by every VM (worker) holding a clone, like Envoy's
/// process-wide shared data. Semantics follow Envoy: every write gets a fresh non-zero CAS
/// value; a write with `cas != 0` to an existing key succeeds only if `cas` matches that key's
/// current CAS value (a write with `cas != 0` to a missing key succeeds, as in Envoy).
#[derive(Clone, Debug, Default)]
pub struct SharedData {
    inner: Arc<Mutex<SharedStore>>,
}

impl SharedData {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SharedStore> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Value and CAS of `key`.
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.get_bytes(key.as_bytes())
    }

    pub(crate) fn get_bytes(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.lock().entries.get(key).cloned()
    }

    /// Copies the value of `key` into `out` and returns its CAS, without allocating when warm.
    pub(crate) fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Option<u32> {
        let store = self.lock();
        let (value, cas) = store.entries.get(key)?;
        out.clear();
        out.extend_from_slice(value);
        Some(*cas)
    }

    /// Writes `key`; returns the entry's new CAS value.
    pub fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<u32, CasMismatch> {
        self.set_bytes(key.as_bytes(), value, cas)
    }

    pub(crate) fn set_bytes(&self, key: &[u8], value: &[u8], cas: u32) -> Result<u32, CasMismatch> {
        let mut store = self.lock();
        if let Some((_, current)) = store.entries.get(key) {
            if cas != 0 && cas != *current {
                return Err(CasMismatch { given: cas, current: *current });
            }
        }
        let new_cas = store.take_cas();
        store.entries.insert(key.to_vec(), (value.to_vec(), new_cas));
        Ok(new_cas)
    }

    /// Keys currently set (sorted), for assertions.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            self.lock().entries.keys().map(|key| String::from_utf8_lossy(key).into_owned()).collect();
        keys.sort();
        keys
    }

    /// Token of the queue `name`, created on first registration (tokens start at 1).
    pub fn register_queue(&self, name: &[u8]) -> u32 {
        let mut store = self.lock();
        if let Some(index) = store.queues.iter().position(|queue| queue.name == name) {
            return queue_token(index);
        }
        store.queues.push(SharedQueue { name: name.to_vec(), items: VecDeque::new() });
        queue_token(store.queues.len() - 1)
    }

    /// Token of an existing queue.
    pub fn resolve_queue(&self, name: &[u8]) -> Option<u32> {
        self.lock().queues.iter().position(|queue| queue.name == name).map(queue_token)
    }

    /// Appends to a queue; `false` if the token is unknown.
    pub fn enqueue(&self, token: u32, item: &[u8]) -> bool {
        let mut store = self.lock();
        match queue_index(token).and_then(|index| store.queues.get_mut(index)) {
            Some(queue) => {
                queue.items.push_back(item.to_vec());
                true
            }
            None => false,
        }
    }

    /// Pops from a queue: `Err(Status::NotFound)` for an unknown token, `Ok(None)` when empty.
    pub fn dequeue(&self, token: u32) -> Result<Option<Vec<u8>>, Status> {
        let mut store = self.lock();
        let queue = queue_index(token).and_then(|index| store.queues.get_mut(index)).ok_or(Status::NotFound)?;
        Ok(queue.items.pop_front())
    }
}

fn queue_token(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX - 1).saturating_add(1)
}

fn queue_index(token: u32) -> Option<usize> {
    usize::try_from(token.checked_sub(1)?).ok()
}
