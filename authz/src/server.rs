//! The service: its configuration, the HTTP endpoints (the HTTP protocols, `/metrics`,
//! `/healthz`, `/readyz`) and the gRPC `Authorization` service.

use crate::check::{Authorizer, IdentitySource, Verdict};
use crate::metrics::Registry;
use crate::protocol::{envoy_grpc, envoy_http, nginx, refused, traefik, HttpAnswer, HttpCheck, Protocol};
use certbind_filter::config::{self, IdentitySource as Configured};
use certbind_shared::clock;
use certbind_shared::decision::headers::fold_name;
use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer, CheckRequest, CheckResponse};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The configured service: the authorizer and what the protocols need of the policy.
#[derive(Clone)]
pub struct Service {
    authorizer: Arc<Authorizer>,
    /// Seconds since the Unix epoch: the system clock, or a test's.
    clock: fn() -> i64,
    /// The policy's certificate header, folded (the NGINX protocol drops it when the
    /// certificate did not verify).
    source_header: Option<String>,
}

impl Service {
    /// From the filter's configuration document. A snapshot given in it is verified before
    /// this returns; fetching from the control plane starts in the background.
    pub fn from_config(json: &[u8]) -> Result<Service, String> {
        Self::from_config_with(json, None)
    }

    /// The same, fetching the snapshot over HTTPS with `tls` (plain HTTP without).
    pub fn from_config_with(json: &[u8], tls: Option<crate::tls::ControlPlaneTls>) -> Result<Service, String> {
        let configured = config::parse(json).map_err(|e| format!("configuration refused: {e}"))?;
        let source_header = configured.policy.certificate_source.header().map(fold_name);
        let registry = Arc::new(Registry::new());
        let (identity, snapshot) = match configured.identity {
            Configured::Development(data) => {
                eprintln!("[warn] certbind: deciding with development_identity from the configuration: unsigned, not for production");
                (IdentitySource::Development(Arc::new(data)), None)
            }
            Configured::Snapshot(settings) => (IdentitySource::Snapshot(Default::default()), Some(settings)),
        };
        let authorizer = Arc::new(Authorizer::new(configured.policy, configured.engine, identity, registry));
        if let Some(settings) = snapshot {
            if settings.control_plane.is_some() && tls.is_none() {
                eprintln!("[warn] certbind-authz: fetching the snapshot over plain HTTP (no --control-plane-ca): keep the control plane on loopback, the proxy credential travels in every fetch");
            }
            crate::snapshot::start(settings, &authorizer, tls).map_err(|e| format!("configuration refused: {e}"))?;
            if authorizer.held_version().is_none() {
                eprintln!("[warn] certbind: no identity snapshot yet; checks that need identity data are refused with 503 until one verifies");
            }
        }
        Ok(Service { authorizer, clock: clock::now_seconds, source_header })
    }

    /// The same service deciding at the time `clock` tells (tests replaying fixed dates).
    pub fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    pub fn authorizer(&self) -> &Arc<Authorizer> {
        &self.authorizer
    }

    /// Decides one HTTP check for `protocol` (not [`Protocol::EnvoyGrpc`]) at `now`.
    pub fn http_check(&self, protocol: Protocol, http: &HttpCheck, now: i64) -> HttpAnswer {
        let check = match protocol {
            Protocol::Nginx => nginx::check(http, self.source_header.as_deref()),
            Protocol::Traefik => traefik::check(http),
            Protocol::EnvoyHttp | Protocol::EnvoyGrpc => envoy_http::check(http),
        };
        let verdict = match check {
            Ok(check) => self.authorizer.check(&check, now),
            Err(reason) => self.authorizer.count(refused(reason)),
        };
        match protocol {
            Protocol::Nginx => nginx::answer(&verdict),
            Protocol::Traefik => traefik::answer(&verdict),
            Protocol::EnvoyHttp | Protocol::EnvoyGrpc => envoy_http::answer(&verdict),
        }
    }

    /// Decides one gRPC check request at `now`.
    pub fn grpc_check(&self, request: &CheckRequest, now: i64) -> CheckResponse {
        let verdict = match envoy_grpc::check(request) {
            Ok(check) => self.authorizer.check(&check, now),
            Err(reason) => self.authorizer.count(refused(reason)),
        };
        envoy_grpc::answer(&verdict)
    }

    /// Everything served over HTTP, by path.
    pub fn route(&self, http: &HttpCheck, now: i64) -> HttpAnswer {
        let path = http.target.split('?').next().unwrap_or("");
        let text = |status: u16, body: String, content_type: &str| HttpAnswer {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into_bytes(),
        };
        match path {
            nginx::PATH => self.http_check(Protocol::Nginx, http, now),
            traefik::PATH => self.http_check(Protocol::Traefik, http, now),
            "/healthz" => text(200, "ok\n".into(), "text/plain"),
            "/readyz" => match self.authorizer.identity() {
                IdentitySource::Snapshot(_) if self.authorizer.held_version().is_none() => {
                    text(503, "no identity snapshot\n".into(), "text/plain")
                }
                _ => text(200, "ready\n".into(), "text/plain"),
            },
            "/metrics" => text(200, self.authorizer.registry().render(), "text/plain; version=0.0.4"),
            _ => {
                if let Some(reason) = path.strip_prefix(nginx::PROBLEM_PREFIX) {
                    nginx::problem_for(reason)
                } else if path.starts_with(envoy_http::PATH) {
                    self.http_check(Protocol::EnvoyHttp, http, now)
                } else {
                    text(404, "not found\n".into(), "text/plain")
                }
            }
        }
    }

    /// Serves HTTP on `listener` until the process ends.
    pub async fn serve_http(self, listener: TcpListener) {
        serve_http_with(listener, move |http| self.route(http, (self.clock)())).await
    }

    /// Serves the gRPC `Authorization` service on `listener` until the process ends.
    pub async fn serve_grpc(self, listener: TcpListener) -> Result<(), String> {
        serve_grpc_with(self, listener).await
    }
}

/// Serves HTTP/1.1 on `listener` until the process ends, each request answered by `answer`
/// (the service's routes; a benchmark's trivial authorizer over the same transport).
pub async fn serve_http_with<F>(listener: TcpListener, answer: F)
where
    F: Fn(&HttpCheck) -> HttpAnswer + Clone + Send + Sync + 'static,
{
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let answered = answer(&http_check_of(&request, peer.ip()));
                async move { Ok::<_, std::convert::Infallible>(response_of(answered)) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), handler).await;
        });
    }
}

/// Serves `authorization` as the gRPC `Authorization` service on `listener` until the process
/// ends.
pub async fn serve_grpc_with<A: Authorization>(authorization: A, listener: TcpListener) -> Result<(), String> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(authorization))
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| e.to_string())
}

fn http_check_of(request: &hyper::Request<Incoming>, peer: IpAddr) -> HttpCheck {
    HttpCheck {
        method: request.method().as_str().to_string(),
        target: request.uri().path_and_query().map_or_else(|| request.uri().path().to_string(), |p| p.as_str().to_string()),
        headers: request.headers().iter().map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec())).collect(),
        peer: Some(peer),
    }
}

fn response_of(answer: HttpAnswer) -> hyper::Response<Full<bytes::Bytes>> {
    let mut response = hyper::Response::new(Full::new(bytes::Bytes::from(answer.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(answer.status).unwrap_or(hyper::StatusCode::SERVICE_UNAVAILABLE);
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) =
            (hyper::header::HeaderName::from_bytes(name.as_bytes()), hyper::header::HeaderValue::from_str(&value))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

#[tonic::async_trait]
impl Authorization for Service {
    async fn check(&self, request: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.grpc_check(request.get_ref(), (self.clock)())))
    }
}

/// Binds `addr` (a test binds port 0 and reads the port back).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

impl Verdict {
    /// The status an HTTP gateway relays for this verdict (200 for an allow).
    pub fn status(&self) -> u16 {
        match self {
            Verdict::Allow { .. } => 200,
            Verdict::Deny(denial) => denial.status(),
        }
    }
}
