//! Fetches each registered CA's CRL from its HTTP distribution points and hands it to
//! [`super::ingest`], the path an upload takes.
//!
//! - Conditional GET (`If-None-Match`, `If-Modified-Since`): an unchanged CRL costs a 304.
//! - A timeout on the whole exchange, and a body cap (the CRL size cap) read as it streams.
//! - Scheduled from the CRL held: half-way to its nextUpdate, within `[min_interval,
//!   max_interval]`, less up to a fifth at random so that replicas and CAs spread out; after a
//!   failure, `min_interval` doubled per failure in a row up to `max_interval`, jittered too.
//! - `http:` only: a CRL is signed by its CA, so the transport adds no integrity, and the DoD
//!   and Federal PKIs publish over plain HTTP. `ldap:` and `https:` points are refused when
//!   a CA is registered (see [`super::distribution_point::check_crl_url`]).

use super::distribution_point::HttpTarget;
use super::ingest::{ingest, CrlSource, IngestError};
use crate::db::crls::{self, DueFetch, FetchResult};
use crate::db::{Actor, Db};
use crate::snapshot::SnapshotService;
use certbind_shared::clock;
use certbind_shared::crl::CrlLimits;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The poller's schedule and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollerSettings {
    /// How often due distribution points are looked for.
    pub tick: Duration,
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// For one whole fetch: connect, request, body.
    pub timeout: Duration,
    pub limits: CrlLimits,
}

impl Default for PollerSettings {
    fn default() -> Self {
        PollerSettings {
            tick: Duration::from_secs(5),
            min_interval: Duration::from_secs(60),
            max_interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(60),
            limits: CrlLimits::default(),
        }
    }
}

/// Counters the poller and the upload route share, for `/metrics`.
#[derive(Debug, Default)]
pub struct CrlCounters {
    /// CRLs refused for a CRL number below the one held.
    pub replays_refused: AtomicU64,
    /// Fetches by outcome.
    pub fetches_updated: AtomicU64,
    pub fetches_unchanged: AtomicU64,
    pub fetches_failed: AtomicU64,
}

impl CrlCounters {
    /// Counts what an ingestion's refusal says about the source.
    pub fn refused(&self, error: &IngestError) {
        if matches!(error, IngestError::Replay { .. }) {
            self.replays_refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What one fetch got.
#[derive(Debug)]
enum Fetched {
    NotModified,
    Body { bytes: Vec<u8>, etag: Option<String>, last_modified: Option<String> },
}

fn header(response: &hyper::Response<Incoming>, name: hyper::header::HeaderName) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned).filter(|v| v.len() <= 1024)
}

/// One conditional GET, the body capped at `max_bytes`.
async fn fetch(due: &DueFetch, max_bytes: usize) -> Result<Fetched, String> {
    let target = HttpTarget::parse(&due.url)?;
    let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", target.host, target.port))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let host = if target.port == 80 { target.host.clone() } else { format!("{}:{}", target.host, target.port) };
    let mut request = hyper::Request::get(target.path.as_str())
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, concat!("certbind/", env!("CARGO_PKG_VERSION")))
        .header(hyper::header::ACCEPT, "application/pkix-crl, application/x-pkcs7-crl, */*");
    if let Some(etag) = &due.etag {
        request = request.header(hyper::header::IF_NONE_MATCH, etag.as_str());
    }
    if let Some(modified) = &due.last_modified {
        request = request.header(hyper::header::IF_MODIFIED_SINCE, modified.as_str());
    }
    let request = request
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let result = async {
        let mut response = sender.send_request(request).await.map_err(|e| format!("HTTP request: {e}"))?;
        let status = response.status();
        if status == hyper::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            let location = header(&response, hyper::header::LOCATION).map(|l| format!(" (to {l}; redirects are not followed)"));
            return Err(format!("the server answered {status}{}", location.unwrap_or_default()));
        }
        let etag = header(&response, hyper::header::ETAG);
        let last_modified = header(&response, hyper::header::LAST_MODIFIED);
        let mut bytes = Vec::new();
        let body = response.body_mut();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
            if let Some(data) = frame.data_ref() {
                if bytes.len().saturating_add(data.len()) > max_bytes {
                    return Err(format!("the CRL is larger than the {max_bytes}-byte limit"));
                }
                bytes.extend_from_slice(data);
            }
        }
        Ok(Fetched::Body { bytes, etag, last_modified })
    }
    .await;
    driver.abort();
    result
}

/// When to fetch again after a success, given the CRL's nextUpdate.
pub fn next_after_success(now: i64, next_update: Option<i64>, settings: &PollerSettings, jitter: f64) -> i64 {
    let min = settings.min_interval.as_secs() as i64;
    let max = settings.max_interval.as_secs().max(settings.min_interval.as_secs()) as i64;
    let half_way = next_update.map_or(max, |next| next.saturating_sub(now) / 2);
    let interval = half_way.clamp(min, max);
    now + jittered(interval, min, jitter)
}

/// When to try again after `failures` failures in a row.
pub fn next_after_failure(now: i64, failures: i64, settings: &PollerSettings, jitter: f64) -> i64 {
    let min = settings.min_interval.as_secs().max(1) as i64;
    let max = settings.max_interval.as_secs().max(settings.min_interval.as_secs()) as i64;
    let shift = u32::try_from(failures.clamp(0, 30)).unwrap_or(30);
    let backoff = min.saturating_mul(1i64 << shift).min(max);
    now + jittered(backoff, min.min(backoff), jitter)
}

/// `interval` less up to a fifth (`jitter` in `[0, 1)`), never below `floor`.
fn jittered(interval: i64, floor: i64, jitter: f64) -> i64 {
    let cut = (interval as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as i64;
    (interval - cut).max(floor).max(1)
}

/// Fetches one distribution point and records the outcome.
pub async fn poll_one(
    db: &Db,
    snapshots: &dyn SnapshotService,
    counters: &CrlCounters,
    settings: &PollerSettings,
    due: &DueFetch,
) -> FetchResult {
    let now = clock::now_seconds();
    let jitter: f64 = rand::random();
    let max_bytes = settings.limits.max_pem_bytes();
    let fetched = tokio::time::timeout(settings.timeout, fetch(due, max_bytes))
        .await
        .unwrap_or_else(|_| Err(format!("no complete answer within {} seconds", settings.timeout.as_secs())));
    let failed = |error: String, result: &'static str| FetchResult {
        result,
        error: Some(error),
        etag: None,
        last_modified: None,
        next_attempt_at: next_after_failure(now, due.failures + 1, settings, jitter),
    };
    let outcome = match fetched {
        Err(error) => failed(error, "failed"),
        Ok(Fetched::NotModified) => {
            let next_update = crls::held(db, &due.key_id).await.ok().flatten().and_then(|h| h.next_update);
            FetchResult {
                result: "unchanged",
                error: None,
                etag: None,
                last_modified: None,
                next_attempt_at: next_after_success(now, next_update, settings, jitter),
            }
        }
        Ok(Fetched::Body { bytes, etag, last_modified }) => {
            let actor = Actor::service("crl-poller");
            let source = CrlSource::Fetch { url: due.url.clone() };
            match ingest(db, &actor, bytes, source, settings.limits, now).await {
                Ok(committed) => {
                    let changed = committed.value.changed;
                    let next_update = crls::held(db, &due.key_id).await.ok().flatten().and_then(|h| h.next_update);
                    if changed {
                        snapshots.committed(committed.version, committed.changes);
                    }
                    FetchResult {
                        result: if changed { "updated" } else { "unchanged" },
                        error: None,
                        etag,
                        last_modified,
                        next_attempt_at: next_after_success(now, next_update, settings, jitter),
                    }
                }
                Err(error) => {
                    counters.refused(&error);
                    failed(error.to_string(), "refused")
                }
            }
        }
    };
    let counter = match outcome.result {
        "updated" => &counters.fetches_updated,
        "unchanged" => &counters.fetches_unchanged,
        _ => &counters.fetches_failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Some(error) = &outcome.error {
        tracing::warn!(ca = %due.key_id, url = %due.url, error = %error, "CRL fetch failed");
    }
    if let Err(e) = crls::record_fetch(db, &due.key_id, &due.url, &outcome).await {
        tracing::error!(ca = %due.key_id, url = %due.url, error = %e, "cannot record a CRL fetch");
    }
    outcome
}

/// Fetches whatever is due, once.
pub async fn poll_due(db: &Db, snapshots: &dyn SnapshotService, counters: &CrlCounters, settings: &PollerSettings) -> usize {
    let due = match crls::due_fetches(db, clock::now_seconds(), 64).await {
        Ok(due) => due,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the CRL distribution points due");
            return 0;
        }
    };
    for point in &due {
        poll_one(db, snapshots, counters, settings, point).await;
    }
    due.len()
}

/// Runs the poller until the runtime stops.
pub fn spawn(db: Db, snapshots: Arc<dyn SnapshotService>, counters: Arc<CrlCounters>, settings: PollerSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            poll_due(&db, snapshots.as_ref(), &counters, &settings).await;
            // Looked at no less often than the shortest interval asks for.
            tokio::time::sleep(settings.tick.min(settings.min_interval)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_next_update_and_back_off() {
        let settings = PollerSettings { min_interval: Duration::from_secs(60), max_interval: Duration::from_secs(3600), ..PollerSettings::default() };
        // Half-way to a nextUpdate 20 minutes ahead; no jitter, then the full fifth.
        assert_eq!(next_after_success(1_000, Some(2_200), &settings, 0.0), 1_600);
        assert_eq!(next_after_success(1_000, Some(2_200), &settings, 0.999_999), 1_000 + 600 - 119);
        // Far ahead: the maximum; past: the minimum.
        assert_eq!(next_after_success(0, Some(1_000_000), &settings, 0.0), 3_600);
        assert_eq!(next_after_success(1_000, Some(500), &settings, 0.5), 1_060);
        assert_eq!(next_after_success(0, None, &settings, 0.0), 3_600);
        assert_eq!(next_after_failure(0, 1, &settings, 0.0), 120);
        assert_eq!(next_after_failure(0, 3, &settings, 0.0), 480);
        assert_eq!(next_after_failure(0, 40, &settings, 0.0), 3_600);
    }
}
