//! Envoy `ext_authz` over gRPC (`envoy.service.auth.v3.Authorization/Check`). The check
//! request carries what the filter reads from Envoy's properties: the downstream peer
//! (`source.address`), the connection's certificate (`source.certificate`, URL-encoded PEM,
//! with `include_peer_certificate: true`), and the request's headers — each value on its own
//! with `encode_raw_headers: true`, else joined by commas in one map — so the policy's
//! certificate source may be `connection` or `xfcc` with `this_proxy`, as in the filter.
//!
//! The OK answer sets the identity headers (overwriting) and removes every inbound identity
//! header; a refusal carries the filter's status, headers and body.

use crate::check::{Check, Verdict};
use certbind_shared::decision::outcome::Reason;
use envoy_types::ext_authz::v3::pb::{
    Address, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::google::rpc;
use std::net::IpAddr;

/// gRPC status codes Envoy acts on: OK lets the request through, PERMISSION_DENIED refuses.
const GRPC_OK: i32 = 0;
const GRPC_PERMISSION_DENIED: i32 = 7;

pub fn check(request: &CheckRequest) -> Result<Check<'_>, Reason> {
    let attributes = request.attributes.as_ref().ok_or(Reason::InvalidPath)?;
    let http = attributes.request.as_ref().and_then(|r| r.http.as_ref()).ok_or(Reason::InvalidPath)?;
    let mut headers = Vec::with_capacity(http.headers.len() + 2);
    headers.push((":method", http.method.as_bytes()));
    headers.push((":path", http.path.as_bytes()));
    match &http.header_map {
        Some(map) => {
            // The pseudo-headers are the request's own, given above from their fields.
            for header in map.headers.iter().filter(|h| !h.key.starts_with(':')) {
                let value = if header.raw_value.is_empty() { header.value.as_bytes() } else { header.raw_value.as_slice() };
                headers.push((header.key.as_str(), value));
            }
        }
        None => headers.extend(
            http.headers.iter().filter(|(n, _)| !n.starts_with(':')).map(|(n, v)| (n.as_str(), v.as_bytes())),
        ),
    }
    let source = attributes.source.as_ref();
    let peer = source.and_then(|s| s.address.as_ref()).and_then(|a| a.address.as_ref()).and_then(|address| match address {
        // An address Envoy took from a header carries port 0 and is never believed.
        Address::SocketAddress(socket) => match socket.port_specifier {
            Some(PortSpecifier::PortValue(port)) if port != 0 => socket.address.parse::<IpAddr>().ok(),
            _ => None,
        },
        _ => None,
    });
    // The certificate exactly as Envoy sent it: the authorizer decodes and hashes it, or
    // finds its digest by these very bytes when it checked them before.
    let connection_certificate = source.map(|s| s.certificate.as_bytes()).filter(|c| !c.is_empty());
    Ok(Check { headers, peer, connection_certificate })
}

fn header(key: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue { key: key.to_string(), value: value.to_string(), raw_value: Vec::new() }),
        append: None,
        append_action: action.into(),
        keep_empty_value: false,
    }
}

pub fn answer(verdict: &Verdict) -> CheckResponse {
    match verdict {
        Verdict::Allow { set, remove, .. } => CheckResponse {
            status: Some(rpc::Status { code: GRPC_OK, ..Default::default() }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: set.iter().map(|(n, v)| header(n, v, HeaderAppendAction::OverwriteIfExistsOrAdd)).collect(),
                headers_to_remove: remove
                    .iter()
                    .filter(|name| !set.iter().any(|(s, _)| s.eq_ignore_ascii_case(name)))
                    .map(|name| name.to_ascii_lowercase())
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        },
        Verdict::Deny(denial) => CheckResponse {
            status: Some(rpc::Status { code: GRPC_PERMISSION_DENIED, ..Default::default() }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus { code: i32::from(denial.status()) }),
                headers: denial
                    .headers()
                    .iter()
                    .map(|(n, v)| header(n, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
                    .collect(),
                body: denial.body(),
            })),
            ..Default::default()
        },
    }
}
