//! Table-driven cases: one request, one configuration, one expected outcome. The same table
//! runs natively (the filter's request path over a recording host) and through the compiled
//! `.wasm` under the wasmtime host, and both must agree with the expectation.

pub mod adversarial;
pub mod authz;
pub mod fixtures;
pub mod native;
pub mod table;
pub mod wasm;

use serde_json::Value;

/// One request as the proxy would present it.
#[derive(Debug, Clone, Default)]
pub struct CaseRequest {
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// `source.address`.
    pub peer: String,
    /// `connection.sha256_peer_certificate_digest`; `None` when the connection had no certificate.
    pub connection_digest: Option<String>,
    /// `connection.peer_certificate`, for the connection source.
    pub connection_certificate: Option<String>,
    /// Other string properties (`ngx.realip_remote_addr` under NGINX).
    pub properties: Vec<(String, String)>,
    /// Header names reach the filter as written (NGINX) rather than lowercased (Envoy).
    pub names_as_written: bool,
    /// Request trailers, handed to the filter after the headers when it lets them through.
    pub trailers: Vec<(String, String)>,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Forwarded. Each header must have exactly this value (`Some`) or be absent (`None`).
    Allow(Vec<(&'static str, Option<String>)>),
    /// Answered by the filter with this status and reason; `detail` is the sub-reason the
    /// operator sees in the log line and the counters (`none` for a reason without any),
    /// never the client.
    Deny { status: u16, reason: &'static str, detail: &'static str },
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub config: Value,
    pub request: CaseRequest,
    pub expect: Expect,
    /// Inbound headers that must not reach the upstream in any spelling (checked when the
    /// request is forwarded).
    pub strip_expected: Vec<String>,
}

/// The filter's own answer: status, headers, body.
pub type LocalResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// What a runner saw.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The filter's own answer: status, headers, body.
    pub local_response: Option<LocalResponse>,
    /// The request headers after the filter, when it let the request through.
    pub forwarded: Vec<(String, Vec<u8>)>,
    /// The request trailers after the filter.
    pub forwarded_trailers: Vec<(String, Vec<u8>)>,
    /// The refusals by reason and detail the request was counted as (`certbind_denied_total`),
    /// where the runner can see the counters.
    pub denied_counted: Option<Vec<(String, String)>>,
    /// The lines the filter logged, where the runner can see them.
    pub logs: Option<Vec<String>>,
}

impl Observed {
    /// What was decided: the refusal's status and body, or `None` when the request went on.
    pub fn decision(&self) -> Option<(u16, &[u8])> {
        self.local_response.as_ref().map(|(status, _, body)| (*status, body.as_slice()))
    }
}

/// The (reason, detail) pairs of `certbind.denied_total` counter names.
pub fn denied_of<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    names
        .into_iter()
        .filter_map(certbind_filter::metrics::labelled)
        .map(|(_, [(_, reason), (_, detail)])| (reason.to_owned(), detail.to_owned()))
        .collect()
}

/// Two runners of one case decided alike; `Err` names each one's decision.
pub fn same_decision(left: (&str, &Observed), right: (&str, &Observed)) -> Result<(), String> {
    let ((left_name, left), (right_name, right)) = (left, right);
    if left.decision() == right.decision() {
        return Ok(());
    }
    let show = |seen: &Observed| format!("{:?}", seen.decision().map(|(s, b)| (s, String::from_utf8_lossy(b).into_owned())));
    Err(format!("{left_name} decided {}, {right_name} {}", show(left), show(right)))
}

/// The cases, each name once: a failure must name one case.
pub fn uniquely_named<'a>(cases: impl IntoIterator<Item = &'a Case>) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for case in cases {
        if !names.insert(case.name.as_str()) {
            return Err(format!("two cases are named {:?}", case.name));
        }
    }
    Ok(())
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
    "x-dm-token-issuer",
    "x-dm-token-owner",
];

/// Header names compared as every hop might read them: any case, `_` as `-`.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

fn fold(byte: u8) -> u8 {
    if byte == b'_' {
        b'-'
    } else {
        byte.to_ascii_lowercase()
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Whether an inbound header reached the upstream with its value: in any spelling of the
/// name, unless the expectation sets that very header.
fn smuggled<'a>(case: &'a Case, forwarded: &[(String, String)]) -> Option<&'a str> {
    case.request.headers.iter().find_map(|(name, value)| {
        let identity = SPOOFABLE.iter().any(|s| same_name(name, s)) || fold_prefix(name, "x-dm-");
        let expected_here = matches!(&case.expect, Expect::Allow(e) if e.iter().any(|(n, v)| same_name(n, name) && v.is_some()));
        let reached = forwarded.iter().any(|(n, v)| same_name(n, name) && v == value);
        (identity && !expected_here && reached).then_some(name.as_str())
    })
}

fn fold_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && name.bytes().zip(prefix.bytes()).all(|(x, y)| fold(x) == y)
}

/// The counting and the log line of the outcome: exactly the expected (reason, detail) counted,
/// and logged, for a refusal; none for a request that went on.
fn check_counted(case: &Case, seen: &Observed) -> Result<(), String> {
    let expected: Vec<(String, String)> = match &case.expect {
        Expect::Deny { reason, detail, .. } => vec![((*reason).to_owned(), (*detail).to_owned())],
        Expect::Allow(_) => Vec::new(),
    };
    if let Some(counted) = &seen.denied_counted {
        if *counted != expected {
            return Err(format!("counted as refused {counted:?}, expected {expected:?}"));
        }
    }
    if let Some(logs) = &seen.logs {
        let refusals: Vec<&String> = logs.iter().filter(|line| line.starts_with("certbind: refused ")).collect();
        let wanted: Vec<String> = match &case.expect {
            Expect::Deny { status, reason, detail } => vec![format!("certbind: refused {status} {reason} (detail {detail})")],
            Expect::Allow(_) => Vec::new(),
        };
        if refusals.iter().map(|l| l.as_str()).ne(wanted.iter().map(String::as_str)) {
            return Err(format!("logged {refusals:?}, expected {wanted:?}"));
        }
    }
    Ok(())
}

/// Compares what a runner saw with the case's expectation; `Err` says what differs.
pub fn check(case: &Case, seen: &Observed) -> Result<(), String> {
    check_counted(case, seen)?;
    match (&case.expect, &seen.local_response) {
        (Expect::Deny { status, reason, detail }, Some((got_status, headers, body))) => {
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
            // The detail is the operator's: the client's answer is the reason's alone.
            if *detail != certbind_shared::decision::outcome::NO_DETAIL && text.contains(detail) {
                return Err(format!("body names the detail {detail:?}"));
            }
            for cert_detail in certificate_details(&case.request) {
                if text.contains(&cert_detail) {
                    return Err(format!("body echoes certificate detail {cert_detail:?}"));
                }
            }
            Ok(())
        }
        (Expect::Deny { status, reason, .. }, None) => Err(format!("forwarded, expected {status} {reason}")),
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
                let count = forwarded.iter().filter(|(n, _)| same_name(n, name)).count();
                if count > 1 {
                    return Err(format!("{name} reached the upstream {count} times"));
                }
            }
            if let Some(name) = smuggled(case, &forwarded) {
                return Err(format!("inbound {name} reached the upstream"));
            }
            for (name, value) in &case.request.headers {
                let must_go = case.strip_expected.iter().any(|s| s == name);
                if must_go && forwarded.iter().any(|(n, v)| same_name(n, name) && v == value) {
                    return Err(format!("{name} should have been stripped"));
                }
            }
            check_trailers(case, seen)
        }
    }
}

/// Trailers a client may not smuggle: identity headers and credentials (RFC 9110 §6.5.1).
fn trailer_must_go(case: &Case, name: &str) -> bool {
    SPOOFABLE.iter().any(|s| same_name(name, s))
        || fold_prefix(name, "x-dm-")
        || same_name(name, "authorization")
        || same_name(name, "cookie")
        || case.strip_expected.iter().any(|s| s == name)
}

/// Every hostile trailer is gone, every other one reached the upstream unchanged.
fn check_trailers(case: &Case, seen: &Observed) -> Result<(), String> {
    for (name, value) in &case.request.trailers {
        let reached = seen.forwarded_trailers.iter().any(|(n, v)| same_name(n, name) && v == value.as_bytes());
        match (trailer_must_go(case, name), reached) {
            (true, true) => return Err(format!("trailer {name} reached the upstream")),
            (false, false) => return Err(format!("trailer {name} was removed")),
            _ => {}
        }
    }
    Ok(())
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
