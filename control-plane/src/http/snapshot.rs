//! `GET /api/v1/snapshot` and `/api/v1/snapshot/keys`: what every filter fetches.
//!
//! The snapshot is served only to a proxy credential: it names every org's users and cards.
//! Its keys are public. A filter polls with `?wait=N&after_version=V` (or `If-None-Match`):
//! the request is held until a newer snapshot is signed or N seconds (capped) pass, so a
//! revocation reaches every proxy within seconds without a storm of requests.
//!
//! A caller that holds a version (`after_version`, or `If-None-Match: "N"`) and accepts
//! `application/vnd.certbind.snapshot-delta` gets the delta chain from it when one is kept
//! and worth it (`snapshot::deltas`); otherwise, and always on a first fetch, the full
//! snapshot (`application/vnd.certbind.snapshot`).

use super::{ApiQuery, Proxy, SNAPSHOT_VERSION_HEADER};
use crate::state::AppState;
use crate::snapshot::ServedSnapshot;
use axum::http::HeaderName;
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub const SNAPSHOT_CONTENT_TYPE: &str = "application/vnd.certbind.snapshot";
pub const DELTA_CONTENT_TYPE: &str = "application/vnd.certbind.snapshot-delta";

/// The version served, beside the ETag, for clients that would rather not parse one.
pub const X_SNAPSHOT_VERSION: HeaderName = HeaderName::from_static("x-certbind-snapshot-version");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    /// Seconds to wait for a newer snapshot.
    pub wait: Option<u64>,
    pub after_version: Option<u64>,
}

/// Whether the caller already holds `snapshot`, or a newer one (signed by another replica:
/// the ETag is the version, which names one byte string whichever replica serves it).
fn caller_holds(snapshot: &ServedSnapshot, after_version: Option<u64>, if_none_match: Option<&str>) -> bool {
    let by_version = after_version.is_some_and(|v| snapshot.version <= v);
    let by_etag = if_none_match.is_some_and(|inm| {
        inm.split(',').map(str::trim).any(|t| t == "*" || etag_version(t).is_some_and(|v| snapshot.version <= v))
    });
    by_version || by_etag
}

/// The version a strong ETag of ours names (`"N"`).
fn etag_version(tag: &str) -> Option<u64> {
    tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

fn not_modified(snapshot: &ServedSnapshot) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    set_common_headers(response.headers_mut(), snapshot);
    response
}

fn set_common_headers(headers: &mut HeaderMap, snapshot: &ServedSnapshot) {
    if let Ok(etag) = HeaderValue::from_str(&snapshot.etag()) {
        headers.insert(header::ETAG, etag);
    }
    if let Ok(version) = HeaderValue::from_str(&snapshot.version.to_string()) {
        headers.insert(SNAPSHOT_VERSION_HEADER, version.clone());
        headers.insert(X_SNAPSHOT_VERSION, version);
    }
    // Caches must revalidate: a revoked binding must not be served from a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

fn full(snapshot: &ServedSnapshot) -> Response {
    let mut response = (StatusCode::OK, snapshot.bytes.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SNAPSHOT_CONTENT_TYPE));
    set_common_headers(headers, snapshot);
    response
}

/// What the caller asked for, and what it holds.
#[derive(Debug, Clone, Default)]
struct Ask {
    after_version: Option<u64>,
    if_none_match: Option<String>,
    /// `Accept` names the delta type (with a q-value above 0).
    accepts_delta: bool,
}

impl Ask {
    fn of(headers: &HeaderMap, after_version: Option<u64>) -> Ask {
        let if_none_match = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
        let accepts_delta = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| accepts(item, DELTA_CONTENT_TYPE));
        Ask { after_version, if_none_match, accepts_delta }
    }

    /// The version the caller holds: `after_version`, else a version-shaped `If-None-Match`.
    fn held(&self) -> Option<u64> {
        self.after_version.or_else(|| {
            let inm = self.if_none_match.as_deref()?;
            let mut versions = inm.split(',').filter_map(|t| etag_version(t.trim()));
            let first = versions.next()?;
            // Several: the caller holds one of them, and only one can be the base of a chain.
            versions.next().is_none().then_some(first)
        })
    }
}

/// Whether one `Accept` item names `media_type` without refusing it (`q=0`).
fn accepts(item: &str, media_type: &str) -> bool {
    let mut parts = item.split(';').map(str::trim);
    if !parts.next().is_some_and(|t| t.eq_ignore_ascii_case(media_type)) {
        return false;
    }
    !parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)))
}

/// The answer for a caller that does not hold `snapshot`: the delta chain from the version it
/// holds when it accepts one and one is kept, the full snapshot otherwise.
fn newer(state: &AppState, ask: &Ask, snapshot: &ServedSnapshot) -> Response {
    let chain = if ask.accepts_delta { ask.held().and_then(|held| state.snapshots.delta(held, snapshot)) } else { None };
    match chain {
        Some(bytes) => {
            state.metrics.deltas_served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            state.metrics.delta_bytes_served.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let mut response = (StatusCode::OK, bytes).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(DELTA_CONTENT_TYPE));
            set_common_headers(headers, snapshot);
            response
        }
        None => {
            state.metrics.full_snapshots_served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            state.metrics.full_bytes_served.fetch_add(snapshot.bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            full(snapshot)
        }
    }
}

fn latest_or_unavailable(state: &AppState) -> ApiResult<Arc<ServedSnapshot>> {
    state
        .snapshots
        .latest()
        .ok_or_else(|| ApiError::Unavailable("no signed snapshot yet: is a signing key configured (`certbind key init`)?".into()))
}

pub async fn latest(
    State(state): State<AppState>,
    proxy: Proxy,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<SnapshotQuery>,
) -> ApiResult<Response> {
    let ask = Ask::of(&headers, q.after_version);
    let answer = answer(&state, &ask, q.wait).await?;
    // What the proxy holds now: what was served, or (304) what it held.
    let held = match answer.status() {
        StatusCode::OK => answer.headers().get(X_SNAPSHOT_VERSION).and_then(|v| v.to_str().ok()?.parse().ok()),
        _ => ask.held(),
    };
    if let Some(held) = held {
        state.fleet.fetched(&state.db, &proxy.credential.id, held);
    }
    Ok(answer)
}

/// The snapshot answer for `ask`, after waiting up to `wait` seconds for a newer one.
async fn answer(state: &AppState, ask: &Ask, wait: Option<u64>) -> ApiResult<Response> {
    let holds = |snapshot: &ServedSnapshot| caller_holds(snapshot, ask.after_version, ask.if_none_match.as_deref());
    let wait = Duration::from_secs(wait.unwrap_or(0)).min(state.limits.max_long_poll);
    let mut versions = state.snapshots.subscribe();
    let snapshot = latest_or_unavailable(&state)?;
    if !holds(&snapshot) {
        return Ok(newer(&state, &ask, &snapshot));
    }
    if let Some(held) = ask.held().filter(|held| *held > snapshot.version) {
        state.snapshots.served_elsewhere(held);
    }
    if wait.is_zero() {
        return Ok(not_modified(&snapshot));
    }
    let deadline = tokio::time::Instant::now() + wait;
    let _waiting = state.fleet.waiting();
    loop {
        // `changed` also wakes for versions the caller already holds; check and go on waiting.
        match tokio::time::timeout_at(deadline, versions.changed()).await {
            Ok(Ok(())) => {
                let snapshot = latest_or_unavailable(&state)?;
                if !holds(&snapshot) {
                    return Ok(newer(&state, &ask, &snapshot));
                }
            }
            // The service went away (shutting down) or time is up: answer with what we have.
            Ok(Err(_)) | Err(_) => {
                let snapshot = latest_or_unavailable(&state)?;
                if !holds(&snapshot) {
                    return Ok(newer(&state, &ask, &snapshot));
                }
                return Ok(not_modified(&snapshot));
            }
        }
    }
}

pub async fn keys(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.snapshots.public_keys())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_holds_a_version_by_number_or_etag() {
        let s = ServedSnapshot { version: 7, bytes: Default::default() };
        assert!(caller_holds(&s, Some(7), None));
        assert!(caller_holds(&s, Some(9), None));
        assert!(!caller_holds(&s, Some(6), None));
        assert!(caller_holds(&s, None, Some("\"7\"")));
        assert!(caller_holds(&s, None, Some("\"3\", \"7\"")));
        assert!(!caller_holds(&s, None, Some("\"6\"")));
        // A newer version, served by another replica.
        assert!(caller_holds(&s, None, Some("\"8\"")));
        assert!(!caller_holds(&s, None, Some("W/\"8\"")));
        assert!(!caller_holds(&s, None, None));
    }

    #[test]
    fn a_delta_is_asked_for_by_accept_and_the_held_version() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.certbind.snapshot-delta, application/vnd.certbind.snapshot"));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"41\""));
        let ask = Ask::of(&headers, None);
        assert!(ask.accepts_delta);
        assert_eq!(ask.held(), Some(41));
        assert_eq!(Ask::of(&headers, Some(40)).held(), Some(40));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.certbind.snapshot-delta;q=0, */*"));
        assert!(!Ask::of(&headers, None).accepts_delta);
        headers.insert(header::ACCEPT, HeaderValue::from_static("Application/Vnd.Certbind.Snapshot-Delta ; q=0.5"));
        assert!(Ask::of(&headers, None).accepts_delta);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.certbind.snapshot"));
        assert!(!Ask::of(&headers, None).accepts_delta);
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"3\", \"4\""));
        assert_eq!(Ask::of(&headers, None).held(), None);
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"3\""));
        assert_eq!(Ask::of(&headers, None).held(), None);
    }
}
