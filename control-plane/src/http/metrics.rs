//! `/metrics`: Prometheus text exposition, written by hand (a few counters do not need a
//! metrics library).

use crate::state::AppState;
use certbind_shared::clock;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Counts every routed request by its route template and final status.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let response = next.run(request).await;
    state.metrics.count(&method, &route, response.status().as_u16());
    response
}

/// Escapes a label value per the exposition format.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A proxy credential counts as active while its last answered fetch is this recent: twice
/// the longest long-poll, so a proxy that keeps polling never drops out.
const ACTIVE_PROXY: std::time::Duration = std::time::Duration::from_secs(120);

/// Versions listed at most by `certbind_proxies`: a fleet holds a handful at a time.
const MAX_PROXY_VERSIONS: i64 = 32;

/// How many proxy credentials hold which version (from the database: the same on every
/// replica), and the long-polls waiting on this one.
async fn render_fleet(state: &AppState, out: &mut String) {
    let _ = writeln!(out, "# HELP certbind_snapshot_long_polls Snapshot long-polls waiting on this replica.");
    let _ = writeln!(out, "# TYPE certbind_snapshot_long_polls gauge");
    let _ = writeln!(out, "certbind_snapshot_long_polls {}", state.fleet.waiting_now());
    let since = crate::time::format_epoch(clock::now_seconds() - ACTIVE_PROXY.as_secs() as i64);
    match crate::db::proxies::versions_held(&state.db, &since, MAX_PROXY_VERSIONS).await {
        Ok(held) => {
            let _ = writeln!(out, "# HELP certbind_proxies Proxy credentials answered in the last two minutes, by the snapshot version they hold (newest versions).");
            let _ = writeln!(out, "# TYPE certbind_proxies gauge");
            for (version, proxies) in held {
                let _ = writeln!(out, "certbind_proxies{{version=\"{version}\"}} {proxies}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the proxies' versions for /metrics"),
    }
}

pub async fn render(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP certbind_http_requests_total HTTP requests by route template and status.");
    let _ = writeln!(out, "# TYPE certbind_http_requests_total counter");
    for ((method, route, status), n) in state.metrics.request_counts() {
        let _ = writeln!(
            out,
            "certbind_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
            label(&method),
            label(&route)
        );
    }
    let _ = writeln!(out, "# HELP certbind_auth_failures_total Requests refused for their credential, by the credential the route wants (admin token or proxy credential) and reason (missing or invalid).");
    let _ = writeln!(out, "# TYPE certbind_auth_failures_total counter");
    for (credential, reason, n) in state.metrics.auth_failures.all() {
        let _ = writeln!(out, "certbind_auth_failures_total{{credential=\"{credential}\",reason=\"{reason}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP certbind_binds_total Card bindings created.");
    let _ = writeln!(out, "# TYPE certbind_binds_total counter");
    let _ = writeln!(out, "certbind_binds_total {}", state.metrics.binds.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP certbind_revokes_total Card bindings revoked.");
    let _ = writeln!(out, "# TYPE certbind_revokes_total counter");
    let _ = writeln!(out, "certbind_revokes_total {}", state.metrics.revokes.load(Ordering::Relaxed));
    if let Ok(version) = state.db.snapshot_version().await {
        let _ = writeln!(out, "# HELP certbind_identity_version Version of the last committed identity change.");
        let _ = writeln!(out, "# TYPE certbind_identity_version gauge");
        let _ = writeln!(out, "certbind_identity_version {version}");
    }
    let m = &state.metrics;
    let _ = writeln!(out, "# HELP certbind_snapshot_answers_total Snapshot answers with a body, by kind (delta chain or full snapshot).");
    let _ = writeln!(out, "# TYPE certbind_snapshot_answers_total counter");
    let _ = writeln!(out, "certbind_snapshot_answers_total{{kind=\"delta\"}} {}", m.deltas_served.load(Ordering::Relaxed));
    let _ = writeln!(out, "certbind_snapshot_answers_total{{kind=\"full\"}} {}", m.full_snapshots_served.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP certbind_snapshot_bytes_total Bytes of snapshot answers, by kind.");
    let _ = writeln!(out, "# TYPE certbind_snapshot_bytes_total counter");
    let _ = writeln!(out, "certbind_snapshot_bytes_total{{kind=\"delta\"}} {}", m.delta_bytes_served.load(Ordering::Relaxed));
    let _ = writeln!(out, "certbind_snapshot_bytes_total{{kind=\"full\"}} {}", m.full_bytes_served.load(Ordering::Relaxed));
    let served = state.snapshots.latest().map(|s| s.version).unwrap_or(0);
    let _ = writeln!(out, "# HELP certbind_snapshot_version Version of the signed snapshot being served (0: none).");
    let _ = writeln!(out, "# TYPE certbind_snapshot_version gauge");
    let _ = writeln!(out, "certbind_snapshot_version {served}");
    let left_out = state.snapshots.left_out();
    let _ = writeln!(out, "# HELP certbind_snapshot_rejected_changes_total Committed changes left out of the snapshot because they cannot be encoded (alert on any).");
    let _ = writeln!(out, "# TYPE certbind_snapshot_rejected_changes_total counter");
    let _ = writeln!(out, "certbind_snapshot_rejected_changes_total {}", left_out.rejected_changes);
    let _ = writeln!(out, "# HELP certbind_snapshot_quarantined_rows Stored rows the last full snapshot build left out because they cannot be encoded (alert on any).");
    let _ = writeln!(out, "# TYPE certbind_snapshot_quarantined_rows gauge");
    let _ = writeln!(out, "certbind_snapshot_quarantined_rows {}", left_out.quarantined_rows);
    render_fleet(&state, &mut out).await;
    render_revocation(&state, &mut out).await;
    let mut response = out.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// Per CA: its CRL's number, thisUpdate, nextUpdate, entries, age and freshness, and each
/// distribution point's last fetch; so a stale or failing CA shows at a glance
/// (`certbind_ca_crl_fresh == 0`, `certbind_ca_crl_fetch_failures > 0`).
async fn render_revocation(state: &AppState, out: &mut String) {
    let c = &state.crl;
    let _ = writeln!(out, "# HELP certbind_crl_replays_refused_total CRLs refused for a CRL number below the one held (a replayed older CRL).");
    let _ = writeln!(out, "# TYPE certbind_crl_replays_refused_total counter");
    let _ = writeln!(out, "certbind_crl_replays_refused_total {}", c.replays_refused.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP certbind_crl_fetches_total CRL distribution point fetches, by result.");
    let _ = writeln!(out, "# TYPE certbind_crl_fetches_total counter");
    for (result, n) in [("updated", &c.fetches_updated), ("unchanged", &c.fetches_unchanged), ("failed", &c.fetches_failed)] {
        let _ = writeln!(out, "certbind_crl_fetches_total{{result=\"{result}\"}} {}", n.load(Ordering::Relaxed));
    }
    let cas = match crate::db::cas::all(&state.db).await {
        Ok(cas) => cas,
        Err(e) => {
            tracing::error!(error = %e, "metrics: cannot read the CAs");
            return;
        }
    };
    let epoch = |t: &Option<String>| t.as_deref().and_then(crate::time::parse_rfc3339);
    let mut gauges: BTreeMap<&str, (&str, Vec<String>)> = BTreeMap::new();
    let mut gauge = |name: &'static str, help: &'static str, line: String| {
        gauges.entry(name).or_insert_with(|| (help, Vec::new())).1.push(line);
    };
    for ca in &cas {
        let labels = format!("ca=\"{}\",subject=\"{}\"", label(&ca.key_id), label(&ca.subject_dn));
        let fresh = ca.crl.as_ref().is_some_and(|crl| crl.status == "fresh");
        gauge("certbind_ca_crl_fresh", "1 while the CA holds a CRL within nextUpdate plus its grace period, else 0.", format!("{{{labels}}} {}", u8::from(fresh)));
        gauge("certbind_ca_require_fresh_crl", "1 when the CA's certificates are refused without a fresh CRL.", format!("{{{labels}}} {}", u8::from(ca.policy.require_fresh_crl)));
        if let Some(crl) = &ca.crl {
            gauge("certbind_ca_crl_number", "CRL number of the last CRL folded in.", format!("{{{labels}}} {}", crl.crl_number));
            gauge("certbind_ca_crl_entries", "Revoked serials held for the CA.", format!("{{{labels}}} {}", crl.entries));
            gauge("certbind_ca_crl_age_seconds", "Seconds since the held CRL's thisUpdate.", format!("{{{labels}}} {}", crl.age_seconds));
            if let Some(t) = epoch(&Some(crl.this_update.clone())) {
                gauge("certbind_ca_crl_this_update_seconds", "The held CRL's thisUpdate, Unix seconds.", format!("{{{labels}}} {t}"));
            }
            if let Some(t) = epoch(&crl.next_update) {
                gauge("certbind_ca_crl_next_update_seconds", "The held CRL's nextUpdate, Unix seconds.", format!("{{{labels}}} {t}"));
            }
        }
        for fetch in &ca.fetches {
            let labels = format!("ca=\"{}\",url=\"{}\"", label(&ca.key_id), label(&fetch.url));
            let ok = matches!(fetch.last_result.as_deref(), Some("updated" | "unchanged"));
            gauge("certbind_ca_crl_fetch_ok", "1 when the distribution point's last fetch succeeded, else 0.", format!("{{{labels}}} {}", u8::from(ok)));
            gauge("certbind_ca_crl_fetch_failures", "Failed fetches in a row.", format!("{{{labels}}} {}", fetch.failures));
            if let Some(t) = epoch(&fetch.last_attempt_at) {
                gauge("certbind_ca_crl_last_fetch_seconds", "When the distribution point was last fetched, Unix seconds.", format!("{{{labels}}} {t}"));
            }
        }
    }
    for (name, (help, lines)) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for line in lines {
            let _ = writeln!(out, "{name}{line}");
        }
    }
}
