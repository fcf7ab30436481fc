//! Table-driven cases: one request, one configuration, one expected outcome. The same table
//! runs natively (the filter's request path over a recording host) and through the compiled
//! `.wasm` under the wasmtime host, and both must agree with the expectation.

pub mod fixtures;
pub mod native;
pub mod table;
pub mod wasm;

use serde_json::Value;

/// One request as the proxy would present it.
#[derive(Debug, Clone)]
pub struct CaseRequest {
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// `source.address`.
    pub peer: String,
    /// `connection.sha256_peer_certificate_digest`; `None` when the connection had no certificate.
    pub connection_digest: Option<String>,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Forwarded. Each header must have exactly this value (`Some`) or be absent (`None`).
    Allow(Vec<(&'static str, Option<String>)>),
    /// Answered by the filter with this status and reason.
    Deny { status: u16, reason: &'static str },
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub config: Value,
    pub request: CaseRequest,
    pub expect: Expect,
}

/// What a runner saw.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The filter's own answer: status, headers, body.
    pub local_response: Option<(u16, Vec<(String, String)>, Vec<u8>)>,
    /// The request headers after the filter, when it let the request through.
    pub forwarded: Vec<(String, Vec<u8>)>,
}

/// Headers no client may smuggle through: after the filter, each is either absent or set by
/// the filter itself.
const SPOOFABLE: &[&str] = &[
    "x-forwarded-client-cert",
    "ssl-client-cert",
    "x-forwarded-tls-client-cert",
    "client-cert",
    "x-dm-smartcard-fingerprint",
    "x-dm-smartcard-subject",
    "x-dm-user-id",
    "x-dm-org-id",
    "x-dm-principal",
];

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Compares what a runner saw with the case's expectation; `Err` says what differs.
pub fn check(case: &Case, seen: &Observed) -> Result<(), String> {
    match (&case.expect, &seen.local_response) {
        (Expect::Deny { status, reason }, Some((got_status, headers, body))) => {
            if got_status != status {
                return Err(format!("status {got_status}, expected {status}"));
            }
            let body: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
            if body["reason"] != *reason {
                return Err(format!("reason {}, expected {reason}", body["reason"]));
            }
            if header(headers, "content-type") != Some("application/problem+json") {
                return Err("content-type is not application/problem+json".into());
            }
            if header(headers, "cache-control") != Some("no-store") {
                return Err("cache-control is not no-store".into());
            }
            if (*status == 401) != header(headers, "www-authenticate").is_some() {
                return Err("www-authenticate must be present exactly on 401".into());
            }
            let text = body.to_string();
            for cert_detail in certificate_details(&case.request) {
                if text.contains(&cert_detail) {
                    return Err(format!("body echoes certificate detail {cert_detail:?}"));
                }
            }
            Ok(())
        }
        (Expect::Deny { status, reason }, None) => Err(format!("forwarded, expected {status} {reason}")),
        (Expect::Allow(_), Some((status, _, body))) => {
            Err(format!("answered {status} {}, expected to forward", String::from_utf8_lossy(body)))
        }
        (Expect::Allow(expected), None) => {
            let forwarded: Vec<(String, String)> = seen
                .forwarded
                .iter()
                .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            for (name, value) in expected {
                let got = header(&forwarded, name);
                if got != value.as_deref() {
                    return Err(format!("header {name}: got {got:?}, expected {value:?}"));
                }
            }
            for name in SPOOFABLE {
                let count = forwarded.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count();
                let inbound = header(&case.request.headers, name);
                let outbound = header(&forwarded, name);
                if count > 1 || (inbound.is_some() && outbound == inbound && !expected.iter().any(|(n, _)| n == name)) {
                    return Err(format!("inbound {name} reached the upstream"));
                }
            }
            Ok(())
        }
    }
}

/// Strings that identify the request's certificate; none may appear in a refusal.
fn certificate_details(request: &CaseRequest) -> Vec<String> {
    request
        .connection_digest
        .iter()
        .cloned()
        .chain(fixtures::ALL_CERTS.iter().map(|name| fixtures::cert(name).hex()))
        .collect()
}
