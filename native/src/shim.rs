//! The module's side of each hook, over the safe handles of [`crate::abi`].
//!
//! One configuration holds one snapshot for the whole process. Its [`SnapshotSource`] (the
//! wasm filter's: long-poll, pinned keys, rollback, freeze, expiry, deltas, last good kept)
//! runs on Envoy's main thread: a ticker thread wakes it every [`TICK_MS`] through the
//! configuration's scheduler, and it fetches with Envoy's own HTTP callout to the configured
//! cluster (TLS and all, as Envoy's cluster is set up). Each snapshot it puts in force is
//! handed to the workers as one `Arc`, swapped under a lock: N workers decide with one copy,
//! fetched and verified once. Each worker thread builds its own [`Engine`] (its caches are
//! per thread) from the configuration's policy at its first request.

use crate::abi::{self, Attribute, CalloutAnswer, Config, Filter, HeaderMap, LogLevel, Scheduler};
use certbind_filter::config::{self, IdentitySource};
use certbind_filter::host::{HeaderBlock, Host, HostError};
use certbind_filter::http::{self, IdentityAt, Verdict};
use certbind_filter::metrics::Metrics;
use certbind_filter::root::{unavailable_message, TICK_MS};
use certbind_filter::snapshot::{
    BodyChunks, FetchResponse, Level, LocalSharedData, RootHost, SnapshotMetrics, SnapshotSource,
};
use certbind_shared::clock;
use certbind_shared::decision::config::PolicyConfig;
use certbind_shared::decision::Engine;
use certbind_shared::identity::{IdentityData, StaticIdentity};
use certbind_shared::snapshot::{SnapshotError, SnapshotView};
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::ffi::CStr;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// The scheduled event that runs the snapshot source's tick.
const TICK_EVENT: u64 = 1;

/// Engines a worker thread keeps for configurations it served: past this many, the oldest is
/// dropped (a configuration replaced by a newer one no longer sends requests).
const ENGINES_PER_THREAD: usize = 4;

/// Distinguishes configurations in the per-thread state.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

pub fn program_init() -> &'static CStr {
    // A panic is caught at the hook and the request refused; log why first, at the level
    // operators alert on.
    std::panic::set_hook(Box::new(|info| {
        abi::log(LogLevel::Critical, &format!("certbind: panic: {info}"))
    }));
    #[cfg(feature = "test-hooks")]
    if let Some(version) = test_hooks::abi_version() {
        return version;
    }
    abi::ABI_VERSION
}

/// One filter configuration (one `dynamic_module_config` filter in a listener).
pub struct NativeConfig {
    shared: Arc<Shared>,
    ticker: Option<Ticker>,
}

/// What every worker's requests read.
struct Shared {
    generation: u64,
    policy: PolicyConfig,
    metrics: Metrics,
    identity: SharedIdentity,
    /// Set once a request has been refused for want of identity data and that was logged.
    unavailable_logged: AtomicBool,
}

enum SharedIdentity {
    Development(StaticIdentity),
    Snapshot {
        /// The snapshot in force, as the main thread last put it.
        held: RwLock<Option<Arc<SnapshotView>>>,
        /// The control plane's cluster, for the log line.
        cluster: Option<String>,
    },
}

/// One stream's state.
pub struct NativeFilter {
    shared: Arc<Shared>,
}

/// The snapshot source and what it owns, on the main thread.
struct MainState {
    source: SnapshotSource,
    data: LocalSharedData,
    published: Option<u64>,
}

thread_local! {
    /// Main thread: each snapshot configuration's source (it holds `Rc`s: it never leaves the
    /// thread that created it, which is where Envoy runs every configuration hook).
    static SOURCES: RefCell<HashMap<u64, MainState>> = RefCell::new(HashMap::new());
    /// Worker threads: the engine of each configuration served, by generation.
    static ENGINES: RefCell<Vec<(u64, Engine)>> = const { RefCell::new(Vec::new()) };
}

/// Wakes the main thread every tick until dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<Scheduler>>,
}

impl Ticker {
    fn start(scheduler: Scheduler) -> Option<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("certbind-tick".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_millis(TICK_MS))
                {
                    scheduler.commit(TICK_EVENT);
                }
                scheduler
            })
            .ok()?;
        Some(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // Closing the channel wakes the thread at once; its scheduler is deleted here, after
        // its last commit.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            drop(thread.join());
        }
    }
}

impl Drop for NativeConfig {
    fn drop(&mut self) {
        drop(self.ticker.take());
        let generation = self.shared.generation;
        // On the main thread, where the source lives (elsewhere there is nothing to remove).
        let _ = SOURCES.try_with(|sources| {
            sources
                .try_borrow_mut()
                .map(|mut sources| sources.remove(&generation))
        });
    }
}

fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

fn define(config: Config, name: &str, gauge: bool) -> Option<u32> {
    config
        .define(name, gauge)
        .and_then(|id| u32::try_from(id).ok())
}

/// [`RootHost`] on the main thread: Envoy's clock and callouts, the configuration's metrics,
/// and shared data of the process's own (one source per configuration per process).
struct MainHost<'a> {
    config: Config,
    data: &'a LocalSharedData,
}

impl RootHost for MainHost<'_> {
    fn now_ms(&self) -> i64 {
        clock::now_millis()
    }

    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(self.data.get(key))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError> {
        Ok(self.data.set(key, value, cas))
    }

    fn dispatch(
        &self,
        upstream: &str,
        headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        let id = self
            .config
            .http_callout(upstream, headers, timeout_ms)
            .map_err(|code| {
                HostError(format!(
                    "Envoy did not start the callout to cluster {upstream:?} (result {code})"
                ))
            })?;
        u32::try_from(id).map_err(|_| HostError(format!("callout id {id} out of range")))
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        abi::log(level, message);
    }

    fn random_u64(&self) -> u64 {
        random_u64()
    }

    fn increment(&self, metric: Option<u32>) {
        if let Some(id) = metric {
            self.config.increment_counter(id as usize);
        }
    }

    fn record(&self, metric: Option<u32>, value: u64) {
        if let Some(id) = metric {
            self.config.set_gauge(id as usize, value);
        }
    }
}

/// Hands the held snapshot to the workers when it changed.
fn publish(shared: &Shared, state: &mut MainState) {
    let SharedIdentity::Snapshot { held, .. } = &shared.identity else {
        return;
    };
    let version = state.source.held_version();
    if version == state.published {
        return;
    }
    // A view is cheap to clone: it shares the bytes and what was read from them.
    let view = state.source.held().map(|view| Arc::new((*view).clone()));
    if let Ok(mut held) = held.write() {
        *held = view;
        state.published = version;
        shared.unavailable_logged.store(false, Ordering::Relaxed);
    }
}

/// Validates the configuration (a refusal names the member), defines the metrics, and for a
/// snapshot configuration starts its source. `None`: Envoy refuses the configuration.
pub fn config_new(config: Config, _name: &[u8], bytes: &[u8]) -> Option<NativeConfig> {
    let configured = match config::parse(bytes) {
        Ok(configured) => configured,
        Err(e) => {
            abi::log(
                LogLevel::Critical,
                &format!("certbind: configuration refused: {e}"),
            );
            return None;
        }
    };
    let metrics = Metrics::define(|name| define(config, name, false));
    let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
    let (identity, state) = match configured.identity {
        IdentitySource::Development(data) => {
            abi::log(
                LogLevel::Warn,
                "certbind: deciding with development_identity from the plugin configuration: unsigned, not for production",
            );
            (SharedIdentity::Development(data), None)
        }
        IdentitySource::Snapshot(mut settings) => {
            let signed = settings.signed.take();
            let has_control_plane = settings.control_plane.is_some();
            let cluster = settings.control_plane.as_ref().map(|cp| cp.cluster.clone());
            let metrics = SnapshotMetrics::define(|name, gauge| define(config, name, gauge));
            let mut state = MainState {
                source: SnapshotSource::new(settings, metrics, random_u64()).alone(),
                data: LocalSharedData::default(),
                published: None,
            };
            let host = MainHost {
                config,
                data: &state.data,
            };
            if let Some(bytes) = signed {
                match state.source.load_configured(&host, bytes) {
                    Ok(()) => {}
                    // Authentic but stale: a control plane may bring a newer one.
                    Err(e @ SnapshotError::Expired { .. }) if has_control_plane => abi::log(
                        LogLevel::Warn,
                        &format!("certbind: the configured snapshot is not used: {e}"),
                    ),
                    Err(e) => {
                        abi::log(
                            LogLevel::Critical,
                            &format!(
                                "certbind: configuration refused: snapshot.signed_base64: {e}"
                            ),
                        );
                        return None;
                    }
                }
            }
            if state.source.held_version().is_none() {
                abi::log(
                    LogLevel::Warn,
                    "certbind: no identity snapshot yet; requests that need identity data are refused with 503 until one verifies",
                );
            }
            (
                SharedIdentity::Snapshot {
                    held: RwLock::new(None),
                    cluster,
                },
                Some(state),
            )
        }
    };
    let shared = Arc::new(Shared {
        generation,
        policy: configured.policy,
        metrics,
        identity,
        unavailable_logged: AtomicBool::new(false),
    });
    let mut ticker = None;
    if let Some(mut state) = state {
        let Some(started) = config.scheduler().and_then(Ticker::start) else {
            abi::log(
                LogLevel::Critical,
                "certbind: configuration refused: cannot schedule the snapshot source's ticks",
            );
            return None;
        };
        ticker = Some(started);
        publish(&shared, &mut state);
        SOURCES.with(|sources| sources.borrow_mut().insert(generation, state));
    }
    abi::log(LogLevel::Info, "certbind: configured");
    Some(NativeConfig { shared, ticker })
}

/// Runs `act` on the configuration's snapshot source, then hands what it holds to the workers.
fn with_source(
    config: Config,
    native: &NativeConfig,
    act: impl FnOnce(&mut SnapshotSource, &MainHost<'_>),
) {
    let generation = native.shared.generation;
    let _ = SOURCES.try_with(|sources| {
        let Ok(mut sources) = sources.try_borrow_mut() else {
            return;
        };
        let Some(state) = sources.get_mut(&generation) else {
            return;
        };
        let host = MainHost {
            config,
            data: &state.data,
        };
        act(&mut state.source, &host);
        publish(&native.shared, state);
    });
}

pub fn config_scheduled(config: Config, native: &NativeConfig, event: u64) {
    if event == TICK_EVENT {
        with_source(config, native, |source, host| source.on_tick(host));
    }
}

/// A fetch's answer (`None`: the callout failed: reset, timeout, no upstream).
pub fn callout_done(config: Config, native: &NativeConfig, id: u64, answer: Option<CalloutAnswer<'_>>) {
    let Ok(token) = u32::try_from(id) else { return };
    let header = |name: &[u8]| {
        answer
            .as_ref()?
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::to_string)
    };
    let status = header(b":status").and_then(|s| s.parse::<u32>().ok());
    let content_type = header(b"content-type");
    let body = BodyChunks::new(answer.as_ref().map_or(&[], |answer| answer.body));
    let response = match status {
        None => FetchResponse::Failed,
        Some(status) => FetchResponse::Answer { status, content_type, body: &body },
    };
    with_source(config, native, |source, host| source.on_response(host, token, response));
}

pub fn filter_new(native: &NativeConfig) -> NativeFilter {
    NativeFilter {
        shared: Arc::clone(&native.shared),
    }
}

/// [`Host`] over one stream.
struct NativeHost<'a> {
    filter: &'a Filter,
}

fn attribute_for(path: &[&str]) -> Option<Attribute> {
    Some(match path {
        ["source", "address"] => Attribute::SourceAddress,
        ["connection", "sha256_peer_certificate_digest"] => {
            Attribute::ConnectionSha256PeerCertificateDigest
        }
        ["connection", "subject_peer_certificate"] => Attribute::ConnectionSubjectPeerCertificate,
        ["connection", "uri_san_peer_certificate"] => Attribute::ConnectionUriSanPeerCertificate,
        ["connection", "dns_san_peer_certificate"] => Attribute::ConnectionDnsSanPeerCertificate,
        // Envoy's dynamic modules have no attribute for the whole certificate: the request
        // path then decides with the digest, subject and SANs, as under an Envoy without it.
        _ => return None,
    })
}

impl Host for NativeHost<'_> {
    fn request_headers(&self) -> Result<HeaderBlock<'_>, HostError> {
        let headers = self
            .filter
            .headers(HeaderMap::Request)
            .ok_or_else(|| HostError("no request header map".into()))?;
        Ok(HeaderBlock::from_byte_pairs(headers))
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        self.filter
            .remove_header(HeaderMap::Request, name.as_bytes())
            .then_some(())
            .ok_or_else(|| HostError("remove a request header: refused".into()))
    }

    fn add_request_header(&self, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.filter
            .add_header(HeaderMap::Request, name.as_bytes(), value)
            .then_some(())
            .ok_or_else(|| HostError("add a request header: refused".into()))
    }

    fn request_trailers(&self) -> Result<HeaderBlock<'_>, HostError> {
        match self.filter.headers(HeaderMap::RequestTrailers) {
            Some(trailers) => Ok(HeaderBlock::from_byte_pairs(trailers)),
            None => Ok(HeaderBlock::default()),
        }
    }

    fn remove_request_trailer(&self, name: &str) -> Result<(), HostError> {
        self.filter
            .remove_header(HeaderMap::RequestTrailers, name.as_bytes())
            .then_some(())
            .ok_or_else(|| HostError("remove a request trailer: refused".into()))
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        attribute_for(path).and_then(|attribute| self.filter.attribute(attribute))
    }

    fn now(&self) -> i64 {
        clock::now_seconds()
    }

    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        self.filter
            .send_response(status, headers, body, "certbind_refused");
        Ok(())
    }

    fn increment_counter(&self, metric_id: u32) {
        self.filter.increment_counter(metric_id as usize);
    }

    fn log_warn(&self, message: &str) {
        abi::log(LogLevel::Warn, message);
    }

    fn log_info(&self, message: &str) {
        abi::log(LogLevel::Info, message);
    }
}

/// The identity data one request holds on to: the snapshot in force when it arrived, whatever
/// the main thread puts in force meanwhile.
enum RequestIdentity<'a> {
    Development(&'a StaticIdentity),
    Snapshot {
        held: Option<Arc<SnapshotView>>,
        cluster: Option<&'a str>,
        logged: &'a AtomicBool,
    },
}

impl Shared {
    fn for_request(&self) -> RequestIdentity<'_> {
        match &self.identity {
            SharedIdentity::Development(data) => RequestIdentity::Development(data),
            SharedIdentity::Snapshot { held, cluster } => RequestIdentity::Snapshot {
                // A poisoned lock (a panic while swapping) holds nothing: fail closed.
                held: held.read().ok().and_then(|held| held.clone()),
                cluster: cluster.as_deref(),
                logged: &self.unavailable_logged,
            },
        }
    }
}

impl IdentityAt for RequestIdentity<'_> {
    fn identity_at(&self, now: i64) -> Option<&dyn IdentityData> {
        match self {
            RequestIdentity::Development(data) => Some(*data),
            RequestIdentity::Snapshot { held, .. } => held
                .as_deref()
                .filter(|view| !view.is_expired(now))
                .map(|view| view as &dyn IdentityData),
        }
    }

    fn note_unavailable(&self, now: i64, log: &dyn Fn(&str)) {
        let RequestIdentity::Snapshot {
            held,
            cluster,
            logged,
        } = self
        else {
            return;
        };
        if !logged.swap(true, Ordering::Relaxed) {
            log(&unavailable_message(now, held.as_deref(), *cluster));
        }
    }
}

/// Runs `decide` with this thread's engine for the configuration, built at its first request.
fn with_engine<T>(shared: &Shared, decide: impl FnOnce(&mut Engine) -> T) -> Option<T> {
    ENGINES
        .try_with(|engines| {
            let mut engines = engines.try_borrow_mut().ok()?;
            let index = match engines
                .iter()
                .position(|(generation, _)| *generation == shared.generation)
            {
                Some(index) => index,
                None => {
                    let engine = Engine::new(shared.policy.clone()).ok()?;
                    if engines.len() >= ENGINES_PER_THREAD {
                        engines.remove(0);
                    }
                    engines.push((shared.generation, engine));
                    engines.len() - 1
                }
            };
            engines.get_mut(index).map(|(_, engine)| decide(engine))
        })
        .ok()
        .flatten()
}

pub fn request_headers(filter: &Filter, state: &mut NativeFilter) -> Verdict {
    #[cfg(feature = "test-hooks")]
    test_hooks::maybe_panic(filter);
    let host = NativeHost { filter };
    let shared = &state.shared;
    let identity = shared.for_request();
    with_engine(shared, |engine| {
        http::on_request_headers(&host, engine, &identity, &shared.metrics)
    })
    .unwrap_or_else(|| http::refuse_unconfigured(&host, &shared.metrics))
}

pub fn request_trailers(filter: &Filter, state: &mut NativeFilter) -> Verdict {
    let host = NativeHost { filter };
    let shared = &state.shared;
    with_engine(shared, |engine| {
        http::on_request_trailers(&host, engine, &shared.metrics)
    })
    .unwrap_or_else(|| http::refuse_unconfigured(&host, &shared.metrics))
}

/// After a panic: 503 `identity_unavailable`, with nothing of the stream's state.
pub fn fail_closed(filter: &Filter) -> Verdict {
    http::refuse_unconfigured(&NativeHost { filter }, &Metrics::default())
}

#[cfg(feature = "test-hooks")]
mod test_hooks {
    use super::*;
    use std::ffi::CString;
    use std::sync::OnceLock;

    /// The ABI version to report instead of the real one, from CERTBIND_TEST_ABI_VERSION.
    pub fn abi_version() -> Option<&'static CStr> {
        static VERSION: OnceLock<Option<CString>> = OnceLock::new();
        VERSION
            .get_or_init(|| {
                std::env::var("CERTBIND_TEST_ABI_VERSION")
                    .ok()
                    .and_then(|v| CString::new(v).ok())
            })
            .as_deref()
    }

    /// Panics in the request path when the request asks for it.
    #[allow(clippy::panic)]
    pub fn maybe_panic(filter: &Filter) {
        let asked = filter.headers(HeaderMap::Request).is_some_and(|headers| {
            headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(b"x-certbind-test-panic"))
        });
        if asked {
            panic!("x-certbind-test-panic");
        }
    }
}
