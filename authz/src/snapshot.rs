//! The snapshot, kept current by the filter's own machinery
//! ([`certbind_filter::snapshot::SnapshotSource`]: long-poll, pinned keys, rollback, freeze,
//! expiry, deltas, last good kept) over a native [`RootHost`]: one thread of the process
//! fetches, verifies and holds; each verified snapshot is handed whole to the request threads
//! through the [`Authorizer`].
//!
//! The host's "shared data" is a map of this thread's own: the process is one worker, so it
//! always holds the lease, and what the source publishes there is what it reads back when a
//! large refused snapshot made it let go of the held one.

use crate::check::Authorizer;
use crate::metrics::Registry;
use crate::tls::{authority_host, ControlPlaneTls};
use certbind_filter::config::SnapshotSettings;
use certbind_filter::host::HostError;
use certbind_filter::root::TICK_MS;
use certbind_filter::snapshot::{
    BodyBytes, FetchResponse, Level, LocalSharedData, RootHost, SnapshotMetrics, SnapshotSource,
};
use certbind_shared::snapshot::{SnapshotError, MAX_SNAPSHOT_BYTES};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// What a fetch brought back, sent from its task to the snapshot loop.
enum Fetched {
    Failed(String),
    Answer { status: u32, content_type: Option<String>, body: Vec<u8> },
}

/// [`RootHost`] natively: the clock, a shared-data map, fetches as tokio tasks on this thread.
struct NativeRootHost {
    shared: LocalSharedData,
    next_token: Cell<u32>,
    answers: mpsc::UnboundedSender<(u32, Fetched)>,
    registry: Arc<Registry>,
    /// HTTPS to the control plane; plain HTTP when `None`.
    tls: Option<ControlPlaneTls>,
}

impl RootHost for NativeRootHost {
    fn now_ms(&self) -> i64 {
        certbind_shared::clock::now_millis()
    }

    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(self.shared.get(key))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, HostError> {
        Ok(self.shared.set(key, value, cas))
    }

    fn dispatch(&self, upstream: &str, headers: &[(&str, &str)], timeout_ms: u64) -> Result<u32, HostError> {
        let token = self.next_token.get().wrapping_add(1);
        self.next_token.set(token);
        let mut request = hyper::Request::builder();
        let mut authority = None;
        for (name, value) in headers {
            match *name {
                ":method" => request = request.method(*value),
                ":path" => request = request.uri(*value),
                ":authority" => authority = Some(value.to_string()),
                _ => request = request.header(*name, *value),
            }
        }
        if let Some(authority) = &authority {
            request = request.header(hyper::header::HOST, authority.as_str());
        }
        let request = request.body(Empty::<bytes::Bytes>::new()).map_err(|e| HostError(e.to_string()))?;
        let upstream = upstream.to_string();
        // The certificate must name the host the request is addressed to.
        let host = authority_host(authority.as_deref().unwrap_or(&upstream)).to_string();
        let tls = self.tls.clone();
        let answers = self.answers.clone();
        tokio::task::spawn_local(async move {
            let fetch = fetch(&upstream, tls.as_ref().map(|tls| (tls, host.as_str())), request);
            let fetched = match tokio::time::timeout(Duration::from_millis(timeout_ms), fetch).await {
                Ok(fetched) => fetched,
                Err(_) => Fetched::Failed("timed out".into()),
            };
            let _ = answers.send((token, fetched));
        });
        Ok(token)
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        eprintln!("[{level}] {message}");
    }

    fn random_u64(&self) -> u64 {
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    }

    fn increment(&self, metric: Option<u32>) {
        if let Some(id) = metric {
            self.registry.increment(id);
        }
    }

    fn record(&self, metric: Option<u32>, value: u64) {
        if let Some(id) = metric {
            self.registry.record(id, value);
        }
    }
}

/// One GET to the control plane, over a connection of its own (one fetch is open at a time):
/// TLS with the certificate checked for the host when `tls` is given.
async fn fetch(upstream: &str, tls: Option<(&ControlPlaneTls, &str)>, request: hyper::Request<Empty<bytes::Bytes>>) -> Fetched {
    let stream = match tokio::net::TcpStream::connect(upstream).await {
        Ok(stream) => stream,
        Err(e) => return Fetched::Failed(format!("connect {upstream}: {e}")),
    };
    let sender = match tls {
        Some((tls, host)) => match tls.connect(stream, host).await {
            Ok(stream) => handshake(TokioIo::new(stream)).await,
            Err(e) => return Fetched::Failed(e),
        },
        None => handshake(TokioIo::new(stream)).await,
    };
    let mut sender = match sender {
        Ok(sender) => sender,
        Err(e) => return Fetched::Failed(e),
    };
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(e) => return Fetched::Failed(e.to_string()),
    };
    let status = u32::from(response.status().as_u16());
    let content_type =
        response.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    // Nothing larger than the largest snapshot is read: the source refuses it anyway.
    match Limited::new(response.into_body(), MAX_SNAPSHOT_BYTES).collect().await {
        Ok(body) => Fetched::Answer { status, content_type, body: body.to_bytes().to_vec() },
        Err(e) => Fetched::Failed(format!("reading the body: {e}")),
    }
}

/// An HTTP/1.1 client connection over `io`, driven on this thread.
async fn handshake<T>(io: TokioIo<T>) -> Result<hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::task::spawn_local(connection);
    Ok(sender)
}

/// Starts the snapshot thread for `authorizer`. Returns once a snapshot given in the
/// configuration (`signed_base64`) has been checked: its refusal is the configuration's. The
/// thread ends when the authorizer is dropped.
pub fn start(settings: SnapshotSettings, authorizer: &Arc<Authorizer>, tls: Option<ControlPlaneTls>) -> Result<(), String> {
    let weak = Arc::downgrade(authorizer);
    let registry = Arc::clone(authorizer.registry());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("certbind-snapshot".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start the snapshot thread: {e}")));
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, run(settings, weak, registry, tls, ready_tx));
        })
        .map_err(|e| format!("cannot start the snapshot thread: {e}"))?;
    ready_rx.recv().map_err(|_| "the snapshot thread stopped".to_string())?
}

async fn run(
    mut settings: SnapshotSettings,
    authorizer: Weak<Authorizer>,
    registry: Arc<Registry>,
    tls: Option<ControlPlaneTls>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let (answers, mut incoming) = mpsc::unbounded_channel();
    let host = NativeRootHost {
        shared: LocalSharedData::default(),
        next_token: Cell::new(0),
        answers,
        registry: Arc::clone(&registry),
        tls,
    };
    let metrics = SnapshotMetrics::define(|name, gauge| Some(if gauge { registry.gauge(name) } else { registry.counter(name) }));
    let signed = settings.signed.take();
    let has_control_plane = settings.control_plane.is_some();
    let mut source = SnapshotSource::new(settings, metrics, host.random_u64());
    if let Some(bytes) = signed {
        match source.load_configured(&host, bytes) {
            Ok(()) => {}
            // Authentic but stale: the control plane may bring a newer one.
            Err(e @ SnapshotError::Expired { .. }) if has_control_plane => {
                host.log(Level::Warn, &format!("certbind: the configured snapshot is not used: {e}"))
            }
            Err(e) => {
                let _ = ready.send(Err(format!("snapshot.signed_base64: {e}")));
                return;
            }
        }
    }
    let mut published = None;
    publish(&source, &authorizer, &mut published);
    if ready.send(Ok(())).is_err() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => source.on_tick(&host),
            Some((token, fetched)) = incoming.recv() => {
                let body;
                let response = match fetched {
                    Fetched::Failed(why) => {
                        host.log(Level::Info, &format!("certbind: snapshot fetch failed: {why}"));
                        FetchResponse::Failed
                    }
                    Fetched::Answer { status, content_type, body: bytes } => {
                        body = BodyBytes(bytes);
                        FetchResponse::Answer { status, content_type, body: &body }
                    }
                };
                source.on_response(&host, token, response);
            }
        }
        if !publish(&source, &authorizer, &mut published) {
            return;
        }
    }
}

/// Hands the held snapshot to the request threads when it changed; false once the
/// authorizer is gone.
fn publish(source: &SnapshotSource, authorizer: &Weak<Authorizer>, published: &mut Option<u64>) -> bool {
    let Some(authorizer) = authorizer.upgrade() else { return false };
    let held = source.held_version();
    if held != *published || authorizer.held_version() != held {
        // A view is cheap to clone: it shares the bytes and what was read from them.
        authorizer.hold(source.held().map(|view| Arc::new((*view).clone())));
        *published = held;
    }
    true
}
