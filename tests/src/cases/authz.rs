//! Runs a case through the authorization service, for each protocol: the request as that
//! protocol's gateway would forward it, decided by a library call or over the wire (HTTP to
//! the service's HTTP listener, gRPC to its `Authorization` service), and the answer turned
//! back into what the client and the upstream would see under the shipped gateway recipes.
//!
//! Envoy's gRPC check carries everything the filter reads from Envoy (peer, connection
//! certificate, headers), so every case runs through it as written. The HTTP protocols carry
//! no connection: a case written for XFCC set by this Envoy (`this_proxy`) runs there with its
//! certificate in the header the gateway sets from its own connection (the policy's source
//! becomes that header, believed from the gateway), provided the case's certificate header is
//! the connection's own. Cases that forge the connection-level facts (another element, another
//! digest) have no counterpart a gateway would forward and are not run there; [`convert`]
//! says which.

use super::fixtures::{cert, ALL_CERTS};
use super::{Case, LocalResponse, Observed};
use certbind_authz::protocol::{envoy_http, nginx, traefik, HttpAnswer, HttpCheck, Protocol};
use certbind_authz::server::Service;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address::PortSpecifier, Address, HeaderMap, HeaderValue, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::{attribute_context, AttributeContext};
use serde_json::{json, Value};
use std::net::IpAddr;

/// The gateway's address as the service sees it: loopback, trusted by converted policies.
pub const GATEWAY: &str = "127.0.0.1";

/// The header each HTTP protocol's recipe puts the certificate in.
pub fn certificate_header(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Nginx => "ssl-client-cert",
        Protocol::Traefik => "x-forwarded-tls-client-cert",
        Protocol::EnvoyHttp | Protocol::EnvoyGrpc => "x-forwarded-client-cert",
    }
}

/// A case as `protocol` runs it: the configuration and the gateway's request to the service,
/// or `None` when the case has no counterpart there.
pub struct Converted {
    pub config: Value,
    pub grpc: Option<CheckRequest>,
    pub http: Option<HttpCheck>,
}

fn is_this_proxy(config: &Value) -> bool {
    let source = &config["policy"]["certificate_source"];
    source["kind"] == "xfcc" && source["trust"] == "this_proxy"
}

/// The fixture certificate with this digest.
fn certificate_with_digest(digest: &str) -> Option<&'static super::fixtures::TestCert> {
    ALL_CERTS.iter().map(|name| cert(name)).find(|c| c.hex() == digest)
}

fn split_peer(peer: &str) -> Option<(String, u32)> {
    let (host, port) = peer.rsplit_once(':')?;
    // Envoy's check request carries the port as a number: a spelling the filter refuses
    // (sign, leading zero, out of range) has no counterpart there.
    let number: u16 = port.parse().ok()?;
    (number.to_string() == port).then(|| (host.trim_start_matches('[').trim_end_matches(']').to_string(), u32::from(number)))
}

pub fn convert(case: &Case, protocol: Protocol) -> Option<Converted> {
    let request = &case.request;
    if !request.properties.is_empty() || request.names_as_written {
        // NGINX-hosted filter cases (ngx properties, names as written): a wasm host's facts.
        return None;
    }
    // A pseudo-header among the headers: no HTTP/1.1 gateway forwards one, and Envoy's check
    // request carries one of each kind, from its own fields.
    if request.headers.iter().any(|(n, _)| n.starts_with(':')) {
        return None;
    }
    // Trailers follow the body, after an authorization hook has answered: no check request
    // carries them, so stripping them is the gateway's own (or the filter's) work.
    if !request.trailers.is_empty() {
        return None;
    }
    // A value with leading or trailing blanks: HTTP/1.1 parsing drops them (RFC 9110 §5.5), so
    // no check request over HTTP carries what the filter was handed.
    let padded = |v: &str| v.starts_with([' ', '\t']) || v.ends_with([' ', '\t']);
    if protocol != Protocol::EnvoyGrpc && request.headers.iter().any(|(_, v)| padded(v)) {
        return None;
    }
    match protocol {
        Protocol::EnvoyGrpc => grpc_request(case).map(|grpc| Converted { config: case.config.clone(), grpc: Some(grpc), http: None }),
        _ => http_request(case, protocol),
    }
}

fn grpc_request(case: &Case) -> Option<CheckRequest> {
    let request = &case.request;
    // Envoy sends the connection's whole certificate: cases of a filter that was given only
    // the digest, or a certificate that is not the digest's, have no counterpart.
    let connection_source = case.config["policy"]["certificate_source"]["kind"] == "connection";
    let certificate = match (&request.connection_certificate, request.connection_digest.as_deref()) {
        (Some(pem), Some(digest)) => {
            let der = certbind_shared::certificate::pem::decode_certificate_pem(pem.as_bytes()).ok()?;
            if certbind_shared::Fingerprint::of_der(&der).to_hex() != digest.to_ascii_lowercase() {
                return None;
            }
            Some(pem.clone())
        }
        (Some(_), None) => return None,
        (None, Some(digest)) if !digest.is_empty() => {
            if connection_source {
                return None;
            }
            Some(certificate_with_digest(digest)?.pem.clone())
        }
        _ => None,
    };
    let (host, port) = split_peer(&request.peer)?;
    let mut headers = vec![
        HeaderValue { key: ":method".into(), value: "GET".into(), raw_value: Vec::new() },
        HeaderValue { key: ":path".into(), value: request.path.clone(), raw_value: Vec::new() },
        HeaderValue { key: ":authority".into(), value: "api.certbind.test".into(), raw_value: Vec::new() },
    ];
    headers.extend(request.headers.iter().map(|(n, v)| HeaderValue {
        key: n.to_ascii_lowercase(),
        value: String::new(),
        raw_value: v.clone().into_bytes(),
    }));
    let http = attribute_context::HttpRequest {
        method: "GET".into(),
        path: request.path.clone(),
        header_map: Some(HeaderMap { headers }),
        ..Default::default()
    };
    let source = attribute_context::Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: host,
                port_specifier: Some(PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        // Envoy's `source.certificate`: URL-encoded PEM.
        certificate: certificate.map(|pem| certbind_shared::source::testing::percent_encode(pem.as_bytes())).unwrap_or_default(),
        ..Default::default()
    };
    Some(CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(source),
            request: Some(attribute_context::Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    })
}

fn http_request(case: &Case, protocol: Protocol) -> Option<Converted> {
    let request = &case.request;
    // A target with control characters never leaves an HTTP/1.1 gateway as a header value.
    if !is_this_proxy(&case.config) || request.path.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    // Envoy's HTTP check puts the path in its own request target, where a space or a
    // fragment cannot stand (Envoy's codec refuses such a request before any filter).
    if protocol == Protocol::EnvoyHttp && request.path.contains([' ', '#']) {
        return None;
    }
    let xfcc: Vec<&(String, String)> =
        request.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-client-cert")).collect();
    // The connection's certificate, as the gateway would put it in its header.
    let connection = match request.connection_digest.as_deref().filter(|d| !d.is_empty()) {
        None if xfcc.is_empty() => None,
        Some(digest) => {
            let certificate = certificate_with_digest(digest)?;
            if xfcc.len() != 1 || xfcc[0].1 != certificate.xfcc() {
                return None;
            }
            Some(certificate)
        }
        None => return None,
    };
    let header = certificate_header(protocol);
    let mut config = case.config.clone();
    config["policy"]["certificate_source"] = match protocol {
        Protocol::Nginx => json!({"kind": "nginx_escaped", "header": header}),
        Protocol::Traefik => json!({"kind": "traefik", "header": header}),
        _ => json!({"kind": "xfcc", "trust": "trusted_proxies"}),
    };
    config["policy"]["trusted_proxies"] = json!([format!("{GATEWAY}/32")]);
    // What the client sent, less the header the gateway sets (it overwrites the name,
    // whatever the case), then the gateway's own headers.
    let own = match protocol {
        Protocol::Nginx => vec![header, nginx::URI_HEADER, nginx::METHOD_HEADER, nginx::VERIFY_HEADER],
        Protocol::Traefik => vec![header, traefik::URI_HEADER, traefik::METHOD_HEADER],
        _ => vec![header],
    };
    let mut headers: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .filter(|(n, _)| !own.iter().any(|o| n.eq_ignore_ascii_case(o)))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone().into_bytes()))
        .collect();
    headers.push(("host".into(), b"api.certbind.test".to_vec()));
    let target;
    match protocol {
        Protocol::Nginx => {
            headers.push((nginx::URI_HEADER.into(), request.path.clone().into_bytes()));
            headers.push((nginx::METHOD_HEADER.into(), b"GET".to_vec()));
            let verify = if connection.is_some() { "SUCCESS" } else { "NONE" };
            headers.push((nginx::VERIFY_HEADER.into(), verify.as_bytes().to_vec()));
            target = nginx::PATH.into();
            // `$ssl_client_escaped_cert` is empty without a certificate.
            headers.push((header.into(), connection.map(|c| c.nginx_escaped()).unwrap_or_default().into_bytes()));
        }
        Protocol::Traefik => {
            headers.push((traefik::URI_HEADER.into(), request.path.clone().into_bytes()));
            headers.push((traefik::METHOD_HEADER.into(), b"GET".to_vec()));
            target = traefik::PATH.into();
            if let Some(c) = connection {
                headers.push((header.into(), c.traefik().into_bytes()));
            }
        }
        _ => {
            target = format!("{}{}", envoy_http::PATH, request.path);
            if let Some(c) = connection {
                headers.push((header.into(), c.xfcc().into_bytes()));
            }
        }
    }
    let peer: IpAddr = GATEWAY.parse().ok()?;
    Some(Converted {
        config,
        grpc: None,
        http: Some(HttpCheck { method: "GET".into(), target, headers, peer: Some(peer) }),
    })
}

/// The upstream's headers after an allow: the client's, less what the gateway removes, plus
/// what the service set.
fn upstream(case: &Case, set: &[(String, String)], remove: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut forwarded: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"GET".to_vec()),
        (":path".into(), case.request.path.clone().into_bytes()),
    ];
    forwarded.extend(
        case.request
            .headers
            .iter()
            .filter(|(n, _)| {
                !remove.iter().any(|r| r.eq_ignore_ascii_case(n)) && !set.iter().any(|(s, _)| s.eq_ignore_ascii_case(n))
            })
            .map(|(n, v)| (n.clone(), v.clone().into_bytes())),
    );
    forwarded.extend(set.iter().map(|(n, v)| (n.clone(), v.clone().into_bytes())));
    forwarded
}

fn local(answer: &HttpAnswer) -> LocalResponse {
    (answer.status, answer.headers.clone(), answer.body.clone())
}

/// What the client and upstream see after an HTTP protocol's answer.
pub fn observe_http(case: &Case, protocol: Protocol, answer: &HttpAnswer) -> Observed {
    if answer.status != 200 {
        let response = match protocol {
            // The recipe's error_page fetches the refusal by its reason.
            Protocol::Nginx => {
                let reason = answer.headers.iter().find(|(n, _)| n == nginx::REASON_HEADER).map_or("", |(_, v)| v.as_str());
                local(&nginx::problem_for(reason))
            }
            _ => local(answer),
        };
        return Observed { local_response: Some(response), forwarded: Vec::new(), forwarded_trailers: Vec::new() };
    }
    let mut set = Vec::new();
    let mut remove: Vec<String> = Vec::new();
    for (name, value) in &answer.headers {
        if name == envoy_http::REMOVE_HEADER {
            remove.extend(value.split(',').map(str::to_string));
        } else if name.starts_with("x-dm-") {
            set.push((name.clone(), value.clone()));
        }
    }
    if protocol != Protocol::EnvoyHttp {
        // NGINX's recipe sets (or clears) each identity header and the certificate headers;
        // Traefik's authResponseHeadersRegex removes every inbound header it matches.
        remove.extend(case.request.headers.iter().map(|(n, _)| n.clone()).filter(|n| identity_name(n)));
    }
    Observed { local_response: None, forwarded: upstream(case, &set, &remove), forwarded_trailers: Vec::new() }
}

/// Names the NGINX and Traefik recipes clear on the way to the upstream.
fn identity_name(name: &str) -> bool {
    let folded = name.to_ascii_lowercase().replace('_', "-");
    folded.starts_with("x-dm-")
        || ["x-forwarded-client-cert", "ssl-client-cert", "x-forwarded-tls-client-cert", "client-cert"].contains(&folded.as_str())
}

pub fn observe_grpc(case: &Case, response: &CheckResponse) -> Result<Observed, String> {
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            let set: Vec<(String, String)> =
                ok.headers.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect();
            Ok(Observed { local_response: None, forwarded: upstream(case, &set, &ok.headers_to_remove), forwarded_trailers: Vec::new() })
        }
        Some(HttpResponse::DeniedResponse(denied)) => {
            let status = denied.status.as_ref().map_or(403, |s| s.code);
            let headers =
                denied.headers.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect();
            let status = u16::try_from(status).map_err(|_| format!("status {status}"))?;
            Ok(Observed { local_response: Some((status, headers, denied.body.clone().into_bytes())), forwarded: Vec::new(), forwarded_trailers: Vec::new() })
        }
        Some(HttpResponse::ErrorResponse(_)) | None => Err("no OK or denied response in the check response".into()),
    }
}

/// Runs `case` through `protocol` as a library call. `Ok(None)`: not run there.
pub fn run(case: &Case, protocol: Protocol) -> Result<Option<Observed>, String> {
    let Some(converted) = convert(case, protocol) else { return Ok(None) };
    let service = Service::from_config(converted.config.to_string().as_bytes())?;
    let now = case.request.now;
    match (converted.grpc, converted.http) {
        (Some(grpc), _) => observe_grpc(case, &service.grpc_check(&grpc, now)).map(Some),
        (None, Some(http)) => Ok(Some(observe_http(case, protocol, &service.route(&http, now)))),
        (None, None) => Ok(None),
    }
}

/// Runs `case` through `protocol` over the wire: a service listening on loopback, asked over
/// HTTP/1.1 or gRPC as the gateway asks it. `Ok(None)`: not run there.
pub async fn run_over_the_wire(case: &Case, protocol: Protocol) -> Result<Option<Observed>, String> {
    let Some(converted) = convert(case, protocol) else { return Ok(None) };
    if case.request.now != super::fixtures::NOW {
        return Err(format!("the wire runs at the fixtures' time, not {}", case.request.now));
    }
    let service = Service::from_config(converted.config.to_string().as_bytes())?.with_clock(|| super::fixtures::NOW);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    match (converted.grpc, converted.http) {
        (Some(grpc), _) => {
            let server = tokio::spawn(service.serve_grpc(listener));
            let answer = async {
                let mut client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
                    format!("http://{addr}"),
                )
                .await
                .map_err(|e| e.to_string())?;
                client.check(grpc).await.map(tonic::Response::into_inner).map_err(|e| e.to_string())
            }
            .await;
            server.abort();
            observe_grpc(case, &answer?).map(Some)
        }
        (None, Some(http)) => {
            let server = tokio::spawn(service.serve_http(listener));
            let answer = http_over_the_wire(addr, &http).await;
            server.abort();
            Ok(Some(observe_http(case, protocol, &answer?)))
        }
        (None, None) => Ok(None),
    }
}

async fn http_over_the_wire(addr: std::net::SocketAddr, http: &HttpCheck) -> Result<HttpAnswer, String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut request = hyper::Request::builder().method(http.method.as_str()).uri(http.target.as_str());
    for (name, value) in &http.headers {
        request = request.header(name.as_str(), value.as_slice());
    }
    let request = request.body(http_body_util::Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "content-length" | "date"))
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
    Ok(HttpAnswer { status, headers, body })
}
