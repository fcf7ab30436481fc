//! One request: read what the decision needs in as few host calls as possible, decide, then
//! forward with trusted identity headers or answer with the problem+json refusal.

use crate::host::{Host, HostError};
use crate::metrics::Metrics;
use certbind_shared::decision::outcome::{Denial, Outcome, Reason};
use certbind_shared::decision::{ConnectionDigest, Engine, RequestHeader, RequestInput};
use certbind_shared::identity::IdentityData;

/// The identity data a request decides with, asked for at the request's own time: a held
/// snapshot stops answering the moment it expires.
pub trait IdentityAt {
    fn identity_at(&self, now: i64) -> Option<&dyn IdentityData>;
    /// Told when a request found no identity data, so the first such refusal is explained in
    /// the log. `log` writes a warning.
    fn note_unavailable(&self, _now: i64, _log: &dyn Fn(&str)) {}
}

/// Identity data that is always there (or never): the development identity, tests.
pub struct FixedIdentity<'a>(pub Option<&'a dyn IdentityData>);

impl IdentityAt for FixedIdentity<'_> {
    fn identity_at(&self, _now: i64) -> Option<&dyn IdentityData> {
        self.0
    }
}

/// What the proxy should do next with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// The filter answered itself; the request stops here.
    Responded,
}

fn text_property<H: Host>(host: &H, path: &[&str]) -> Option<String> {
    host.property(path).and_then(|v| String::from_utf8(v).ok())
}

/// Envoy hands SAN lists as a string list property; each entry is its own value.
fn list_property<H: Host>(host: &H, path: &[&str]) -> Vec<String> {
    match host.property(path) {
        None => Vec::new(),
        Some(bytes) => bytes
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| std::str::from_utf8(s).ok().map(str::to_string))
            .collect(),
    }
}

pub fn on_request_headers<H: Host>(
    host: &H,
    engine: &mut Engine,
    identity: &dyn IdentityAt,
    metrics: &Metrics,
) -> Verdict {
    let block = host.request_headers();
    let headers = match block.as_ref().map_err(HostError::clone).and_then(|block| block.pairs()) {
        Ok(h) => h,
        Err(e) => {
            host.log_warn(&format!("certbind: cannot read request headers ({e}); refusing"));
            return refuse(host, metrics, &Outcome::deny(Reason::IdentityUnavailable));
        }
    };
    // The TCP peer, from the one property that names it for this proxy (see the policy's
    // `proxy`); read only when forwarded headers may be believed.
    let peer = engine
        .policy()
        .peer_property()
        .and_then(|property| text_property(host, property.path()).and_then(|text| property.parse(&text)));
    let digest_text = if engine.needs_connection_digest() {
        text_property(host, &["connection", "sha256_peer_certificate_digest"])
    } else {
        None
    };
    let digest = digest_text.as_deref().map(|text| ConnectionDigest::Hex(text).parsed());
    // The connection's whole certificate, only when its facts are not cached yet.
    let certificate = if engine.needs_connection_certificate(digest) {
        host.property(&["connection", "peer_certificate"])
    } else {
        None
    };
    let (subject, uri_sans, dns_sans) = if certificate.is_none() && engine.needs_connection_certificate(digest) {
        (
            text_property(host, &["connection", "subject_peer_certificate"]),
            list_property(host, &["connection", "uri_san_peer_certificate"]),
            list_property(host, &["connection", "dns_san_peer_certificate"]),
        )
    } else {
        (None, Vec::new(), Vec::new())
    };
    let now = host.now();
    let identity = identity.identity_at(now).or_else(|| {
        identity.note_unavailable(now, &|message| host.log_warn(message));
        None
    });
    let input = RequestInput {
        headers: &headers,
        peer,
        connection_digest: digest,
        connection_certificate: certificate.as_deref(),
        connection_subject: subject.as_deref(),
        connection_uri_sans: &uri_sans,
        connection_dns_sans: &dns_sans,
        now,
    };
    let outcome = engine.evaluate(&input, identity);
    match &outcome {
        Outcome::Allow { set, .. } => {
            if let Err(e) = forward(host, engine, &headers, set) {
                host.log_warn(&format!("certbind: cannot rewrite request headers ({e}); refusing"));
                return refuse(host, metrics, &Outcome::deny(Reason::IdentityUnavailable));
            }
            for id in metrics.counters_for(&outcome) {
                host.increment_counter(id);
            }
            Verdict::Continue
        }
        Outcome::Deny(_) => refuse(host, metrics, &outcome),
    }
}

/// Strips every identity header the client sent (each name once, with all its values), then
/// adds the ones the decision set. Per-header calls: a proxy rewrites only what changes.
fn forward<H: Host>(host: &H, engine: &Engine, headers: &[RequestHeader<'_>], set: &[(&'static str, String)]) -> Result<(), HostError> {
    let mut removed: Vec<&str> = Vec::new();
    for &(name, _) in headers {
        if engine.is_identity_header(name) && !removed.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            host.remove_request_header(name)?;
            removed.push(name);
        }
    }
    for (name, value) in set {
        host.add_request_header(name, value.as_bytes())?;
    }
    Ok(())
}

/// Request trailers reach the upstream after the headers were judged, and gRPC servers read
/// them as metadata: every trailer the engine strips ([`Engine::strips_trailer`]: the identity
/// headers stripped from headers, and credentials, which RFC 9110 §6.5.1 keeps out of
/// trailers) is removed. A map the filter cannot read or change stops the request.
pub fn on_request_trailers<H: Host>(host: &H, engine: &Engine, metrics: &Metrics) -> Verdict {
    let stripped = host.request_trailers().and_then(|block| {
        let trailers = block.pairs()?;
        let mut removed: Vec<&str> = Vec::new();
        for &(name, _) in &trailers {
            if engine.strips_trailer(name) && !removed.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                host.remove_request_trailer(name)?;
                removed.push(name);
            }
        }
        Ok(())
    });
    match stripped {
        Ok(()) => Verdict::Continue,
        Err(e) => {
            host.log_warn(&format!("certbind: cannot rewrite request trailers ({e}); refusing"));
            refuse(host, metrics, &Outcome::deny(Reason::IdentityUnavailable))
        }
    }
}

fn refuse<H: Host>(host: &H, metrics: &Metrics, outcome: &Outcome) -> Verdict {
    let denial = match outcome {
        Outcome::Deny(d) => d.clone(),
        Outcome::Allow { .. } => Denial { reason: Reason::IdentityUnavailable },
    };
    for id in metrics.counters_for(&Outcome::Deny(denial.clone())) {
        host.increment_counter(id);
    }
    host.log_info(&denial.log_line());
    let headers = denial.headers();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    if let Err(e) = host.send_response(u32::from(denial.status()), &headers, denial.body().as_bytes()) {
        host.log_warn(&format!("certbind: cannot send the refusal ({e})"));
    }
    Verdict::Responded
}

/// Used when no valid configuration is held: every request is refused (503).
pub fn refuse_unconfigured<H: Host>(host: &H, metrics: &Metrics) -> Verdict {
    refuse(host, metrics, &Outcome::deny(Reason::IdentityUnavailable))
}
