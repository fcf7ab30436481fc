//! One check: the request as the gateway described it, decided by the filter's engine.

use crate::metrics::Registry;
use certbind_filter::metrics::Metrics;
use certbind_shared::certificate::CertificateFacts;
use certbind_shared::decision::cache::FactsCache;
use certbind_shared::decision::config::PolicyConfig;
use certbind_shared::decision::extract::connection_pem_der;
use certbind_shared::decision::outcome::{Denial, Notice, Outcome, Reason};
use certbind_shared::decision::{ConnectionDigest, Engine, RequestHeader, RequestInput};
use certbind_shared::identity::{IdentityData, StaticIdentity};
use certbind_shared::snapshot::SnapshotView;
use certbind_shared::Fingerprint;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

/// A request as its gateway forwarded it, in the filter's terms: the headers the decision
/// reads (with `:path` and `:method` as the gateway named them), the TCP peer that vouches
/// for forwarded certificate headers, and the connection's certificate when the protocol
/// carries it (Envoy's gRPC check request). It borrows from what the protocol received: a
/// check request carries the whole certificate, often twice (XFCC), and is never copied.
#[derive(Debug, Clone, Default)]
pub struct Check<'a> {
    pub headers: Vec<RequestHeader<'a>>,
    pub peer: Option<IpAddr>,
    /// The connection's certificate, PEM (plain or URL-encoded), exactly as the gateway sent
    /// it. Its SHA-256 is the connection digest the decision cross-checks against.
    pub connection_certificate: Option<&'a [u8]>,
}

/// What the gateway is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request through with these identity headers set, after removing every inbound
    /// header named in `remove` (identity headers the client sent, in the spelling it used).
    /// `notice`, if any, is counted beside the allowed request (a CA failing open).
    Allow { set: Vec<(&'static str, String)>, remove: Vec<String>, notice: Option<Notice> },
    Deny(Denial),
}

impl Verdict {
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Verdict::Allow { .. } => None,
            Verdict::Deny(denial) => Some(denial.reason),
        }
    }
}

/// Where identity data comes from, readable from every request thread.
pub enum IdentitySource {
    /// The verified snapshot, replaced whole by the snapshot thread ([`crate::snapshot`]).
    Snapshot(RwLock<Option<Arc<SnapshotView>>>),
    /// Unsigned inline data: development and tests only.
    Development(Arc<StaticIdentity>),
}

/// The identity data one request decides with: a handle that stays the same for the whole
/// request, whatever arrives meanwhile.
enum Held {
    Snapshot(Option<Arc<SnapshotView>>),
    Development(Arc<StaticIdentity>),
}

impl Held {
    fn at(&self, now: i64) -> Option<&dyn IdentityData> {
        match self {
            Held::Development(data) => Some(data.as_ref()),
            Held::Snapshot(view) => view.as_deref().filter(|v| !v.is_expired(now)).map(|v| v as &dyn IdentityData),
        }
    }
}

/// One thread's decision state: an engine with its caches, and the connection certificates
/// it has seen, by their exact text (apart from the engine's header-keyed facts, which hold
/// what a header source's own parser read from other bytes).
struct Worker {
    engine: Engine,
    connection_certificates: FactsCache,
}

impl Worker {
    fn new(engine: Engine) -> Self {
        let policy = engine.policy();
        let connection_certificates = FactsCache::new(policy.facts_cache_capacity, policy.facts_cache_bytes);
        Worker { engine, connection_certificates }
    }
}

/// [`Authorizer::cache_bytes`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheBytes {
    pub workers: usize,
    pub facts: usize,
    pub connection_certificates: usize,
    pub connection_entries: usize,
}

/// The filter's decision, shared by every request thread: workers (each an engine with its
/// caches) are taken from a pool for one check and put back, so threads never wait on each
/// other's decision, only on a push or pop.
pub struct Authorizer {
    policy: PolicyConfig,
    workers: Mutex<Vec<Worker>>,
    identity: IdentitySource,
    metrics: Metrics,
    registry: Arc<Registry>,
}

impl Authorizer {
    /// `engine` was built from `policy` by the configuration; more are built from `policy`
    /// as threads need them.
    pub fn new(policy: PolicyConfig, engine: Engine, identity: IdentitySource, registry: Arc<Registry>) -> Self {
        let metrics = Metrics::define(|name| Some(registry.counter(name)));
        Authorizer { policy, workers: Mutex::new(vec![Worker::new(engine)]), identity, metrics, registry }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// What the idle workers' certificate caches hold, as each cache counts it: the engine's
    /// facts (by digest or header) and the connection certificates kept by their exact text.
    /// Each is bounded per worker by the policy's `facts_cache_bytes`.
    pub fn cache_bytes(&self) -> CacheBytes {
        let workers = self.workers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        workers.iter().fold(CacheBytes::default(), |sum, w| CacheBytes {
            workers: sum.workers + 1,
            facts: sum.facts + w.engine.caches().facts.bytes(),
            connection_certificates: sum.connection_certificates + w.connection_certificates.bytes(),
            connection_entries: sum.connection_entries + w.connection_certificates.len(),
        })
    }

    pub fn identity(&self) -> &IdentitySource {
        &self.identity
    }

    /// Puts `view` in force (the snapshot thread's call); `None` when nothing is held.
    pub fn hold(&self, view: Option<Arc<SnapshotView>>) {
        if let IdentitySource::Snapshot(lock) = &self.identity {
            match lock.write() {
                Ok(mut held) => *held = view,
                Err(poisoned) => *poisoned.into_inner() = view,
            }
        }
    }

    /// The version of the snapshot in force, if any.
    pub fn held_version(&self) -> Option<u64> {
        match &self.identity {
            IdentitySource::Snapshot(lock) => lock.read().ok().and_then(|h| h.as_ref().map(|v| v.version())),
            IdentitySource::Development(_) => None,
        }
    }

    fn held(&self) -> Option<Held> {
        match &self.identity {
            IdentitySource::Development(data) => Some(Held::Development(Arc::clone(data))),
            IdentitySource::Snapshot(lock) => lock.read().ok().map(|held| Held::Snapshot(held.clone())),
        }
    }

    fn take_worker(&self) -> Option<Worker> {
        let pooled = self.workers.lock().ok().and_then(|mut pool| pool.pop());
        pooled.or_else(|| Engine::new(self.policy.clone()).ok().map(Worker::new))
    }

    fn return_worker(&self, worker: Worker) {
        if let Ok(mut pool) = self.workers.lock() {
            pool.push(worker);
        }
    }

    /// Decides `check` at `now` (Unix seconds). Fails closed: anything that stops the decision
    /// (no engine, a poisoned lock) is `identity_unavailable`.
    pub fn check(&self, check: &Check<'_>, now: i64) -> Verdict {
        self.count(self.decide(check, now))
    }

    fn decide(&self, check: &Check<'_>, now: i64) -> Verdict {
        let unavailable = || Verdict::Deny(Denial { reason: Reason::IdentityUnavailable });
        let (Some(held), Some(mut worker)) = (self.held(), self.take_worker()) else { return unavailable() };
        let pem = check.connection_certificate;
        let digest = match pem.map(|pem| connection_digest(&mut worker.connection_certificates, pem)).transpose() {
            Ok(digest) => digest,
            Err(reason) => {
                self.return_worker(worker);
                return Verdict::Deny(Denial { reason });
            }
        };
        let input = RequestInput {
            headers: &check.headers,
            peer: check.peer,
            connection_digest: digest.as_ref().map(|d| ConnectionDigest::Fingerprint(d.fingerprint)),
            connection_certificate: pem,
            now,
            ..Default::default()
        };
        let outcome = worker.engine.evaluate(&input, held.at(now));
        let verdict = match outcome {
            Outcome::Allow { set, notice } => {
                let mut remove: Vec<String> = Vec::new();
                for (name, _) in &check.headers {
                    if !name.starts_with(':')
                        && worker.engine.is_identity_header(name)
                        && !remove.iter().any(|r| r.eq_ignore_ascii_case(name))
                    {
                        remove.push((*name).to_string());
                    }
                }
                Verdict::Allow { set, remove, notice }
            }
            Outcome::Deny(denial) => Verdict::Deny(denial),
        };
        if let (Some(pem), Some(Digest { fingerprint, der: Some(der) })) = (pem, &digest) {
            remember_connection_certificate(&mut worker, pem, fingerprint, der);
        }
        self.return_worker(worker);
        verdict
    }
}

/// The connection certificate's SHA-256, and its DER when it was decoded for this check
/// (not found by its text).
struct Digest {
    fingerprint: Fingerprint,
    der: Option<Vec<u8>>,
}

/// The digest of the connection's certificate. A warm check finds it by the certificate's
/// exact text (the whole text is compared, so no other bytes can stand for it); a cold one
/// decodes and hashes it. Text that does not decode to one certificate is refused as the
/// filter refuses a malformed `connection.peer_certificate`.
fn connection_digest(seen: &mut FactsCache, pem: &[u8]) -> Result<Digest, Reason> {
    if let Some(facts) = seen.get_header(pem) {
        return Ok(Digest { fingerprint: facts.fingerprint, der: None });
    }
    let der = connection_pem_der(pem).map_err(|_| Reason::MalformedClientCert)?;
    Ok(Digest { fingerprint: Fingerprint::of_der(&der), der: Some(der) })
}

/// After a cold check, keeps the certificate's facts under its exact text, so that the next
/// check with the same bytes skips decoding and hashing. The facts are the ones the decision
/// cached under the digest (the connection source) or, when it keeps none there (an XFCC
/// source cross-checked against the connection), parsed here; a certificate that does not
/// parse is not kept and is decoded again next time.
fn remember_connection_certificate(worker: &mut Worker, pem: &[u8], fingerprint: &Fingerprint, der: &[u8]) {
    let facts = match worker.engine.caches_mut().facts.get_certificate(fingerprint, b"") {
        Some(facts) => facts,
        None => match CertificateFacts::from_der(der) {
            Ok(facts) => Arc::new(facts),
            Err(_) => return,
        },
    };
    if facts.fingerprint == *fingerprint {
        worker.connection_certificates.insert_header(pem, facts);
    }
}

impl Authorizer {
    /// Counts a verdict reached before the decision (a check the protocol could not form).
    pub fn count(&self, verdict: Verdict) -> Verdict {
        let outcome = match &verdict {
            Verdict::Allow { notice, .. } => Outcome::Allow { set: Vec::new(), notice: *notice },
            Verdict::Deny(denial) => Outcome::Deny(denial.clone()),
        };
        for id in self.metrics.counters_for(&outcome) {
            self.registry.increment(id);
        }
        if let Outcome::Deny(denial) = &outcome {
            eprintln!("[info] {}", denial.log_line());
        }
        verdict
    }
}
