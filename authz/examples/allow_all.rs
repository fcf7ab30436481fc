//! The floor any external authorizer pays, for the end-to-end benchmark: a service that
//! answers every check "allowed" with nothing else to do, over the same HTTP and gRPC
//! transport as certbind-authz (hyper, tonic), so that the gateway's subrequest or check call
//! is all that is measured. Never a deployment: it lets everything through.
//!
//!     allow_all HTTP_ADDR GRPC_ADDR [THREADS]

use certbind_authz::protocol::HttpAnswer;
use certbind_authz::server::{bind, serve_grpc_with, serve_http_with};
use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse};
use envoy_types::pb::google::rpc;
use std::net::SocketAddr;
use std::process::ExitCode;

struct AllowAll;

#[tonic::async_trait]
impl Authorization for AllowAll {
    async fn check(&self, _: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(CheckResponse {
            status: Some(rpc::Status { code: 0, ..Default::default() }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            ..Default::default()
        }))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addresses: Option<(SocketAddr, SocketAddr)> = match (args.first(), args.get(1)) {
        (Some(http), Some(grpc)) => http.parse().ok().zip(grpc.parse().ok()),
        _ => None,
    };
    let Some((http, grpc)) = addresses else {
        eprintln!("usage: allow_all HTTP_ADDR GRPC_ADDR [THREADS]");
        return ExitCode::FAILURE;
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.get(2).and_then(|t| t.parse::<usize>().ok()) {
        runtime.worker_threads(threads.max(1));
    }
    let Ok(runtime) = runtime.enable_all().build() else {
        eprintln!("allow_all: cannot start");
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let (Ok(http_listener), Ok(grpc_listener)) = (bind(http).await, bind(grpc).await) else {
            eprintln!("allow_all: cannot listen on {http} and {grpc}");
            return ExitCode::FAILURE;
        };
        eprintln!("[info] allow_all: HTTP on {http}, gRPC on {grpc}");
        tokio::spawn(serve_grpc_with(AllowAll, grpc_listener));
        serve_http_with(http_listener, |_| HttpAnswer { status: 200, headers: Vec::new(), body: Vec::new() }).await;
        ExitCode::SUCCESS
    })
}
