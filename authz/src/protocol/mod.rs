//! What each gateway forwards, turned into one [`Check`], and the verdict rendered the way
//! that gateway acts on it.
//!
//! Every header a protocol believes is one its gateway sets itself, overwriting whatever the
//! client sent under that name (the shipped configurations under `gateways/` do, and say
//! how). The service still counts every spelling of each (any case, `_` as `-`): two of them
//! mean the gateway did not overwrite one, and the request is refused.

pub mod envoy_grpc;
pub mod envoy_http;
pub mod nginx;
pub mod traefik;

use crate::check::{Check, Verdict};
use certbind_shared::decision::headers::folded_eq;
use certbind_shared::decision::outcome::{Denial, Reason};
use std::net::IpAddr;

/// The protocols, by the path they are served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// NGINX `auth_request`, on `/auth/nginx`.
    Nginx,
    /// Traefik `forwardAuth`, on `/auth/traefik`.
    Traefik,
    /// Envoy `ext_authz` over HTTP: the original path follows `/auth/envoy`.
    EnvoyHttp,
    /// Envoy `ext_authz` over gRPC (`envoy.service.auth.v3.Authorization/Check`).
    EnvoyGrpc,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [Protocol::Nginx, Protocol::Traefik, Protocol::EnvoyHttp, Protocol::EnvoyGrpc];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Nginx => "nginx",
            Protocol::Traefik => "traefik",
            Protocol::EnvoyHttp => "envoy_http",
            Protocol::EnvoyGrpc => "envoy_grpc",
        }
    }
}

/// An HTTP request to the service as hyper delivered it, for the HTTP protocols.
#[derive(Debug, Clone, Default)]
pub struct HttpCheck {
    pub method: String,
    /// The request target, as sent.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The TCP peer: the gateway.
    pub peer: Option<IpAddr>,
}

/// An HTTP answer to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The one value of a header the gateway sets, in any spelling. `Err`: more than one.
fn single<'a>(headers: &'a [(String, Vec<u8>)], folded: &str) -> Result<Option<&'a [u8]>, ()> {
    let mut found = None;
    for (name, value) in headers {
        if folded_eq(name, folded) {
            if found.is_some() {
                return Err(());
            }
            found = Some(value.as_slice());
        }
    }
    Ok(found)
}

/// The request's own method and target, from the headers the gateway names them in, with the
/// forwarded headers minus those (and minus any pseudo-header, which no HTTP/1.1 request can
/// carry and which the decision reads as the request's own).
fn forwarded<'a>(
    http: &'a HttpCheck,
    uri_header: &str,
    method_header: &str,
    also_consumed: &[&str],
) -> Result<Check<'a>, Reason> {
    let uri = single(&http.headers, uri_header).map_err(|_| Reason::InvalidPath)?.ok_or(Reason::InvalidPath)?;
    let method = single(&http.headers, method_header).map_err(|_| Reason::InvalidPath)?.unwrap_or(b"GET");
    let mut headers = Vec::with_capacity(http.headers.len() + 2);
    headers.push((":method", method));
    headers.push((":path", uri));
    for (name, value) in &http.headers {
        let consumed = folded_eq(name, uri_header)
            || folded_eq(name, method_header)
            || also_consumed.iter().any(|c| folded_eq(name, c))
            || name.starts_with(':');
        if !consumed {
            headers.push((name.as_str(), value.as_slice()));
        }
    }
    Ok(Check { headers, peer: http.peer, ..Default::default() })
}

/// The problem+json refusal as the filter answers it.
pub fn problem(denial: &Denial) -> HttpAnswer {
    HttpAnswer {
        status: denial.status(),
        headers: denial.headers().into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
        body: denial.body().into_bytes(),
    }
}

/// 200 with the identity headers for the gateway to copy onto the request.
fn allowed(set: &[(&'static str, String)]) -> HttpAnswer {
    HttpAnswer {
        status: 200,
        headers: set.iter().map(|(n, v)| (n.to_string(), v.clone())).collect(),
        body: Vec::new(),
    }
}

/// A reason by its stable name.
pub fn reason_named(name: &str) -> Option<Reason> {
    Reason::ALL.iter().copied().find(|r| r.as_str() == name)
}

/// A check the protocol could not even form is refused as the decision would refuse it.
pub fn refused(reason: Reason) -> Verdict {
    Verdict::Deny(Denial { reason })
}
