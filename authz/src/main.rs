//! `certbind-authz`: the authorization service. See the crate documentation.

use certbind_authz::server::{bind, Service};
use certbind_authz::tls::ControlPlaneTls;
use clap::Parser;
use std::net::SocketAddr;
use std::process::ExitCode;

/// The filter's decisions for gateways that ask an external service: NGINX auth_request
/// (/auth/nginx), Traefik forwardAuth (/auth/traefik), Envoy ext_authz over HTTP
/// (/auth/envoy) and gRPC.
#[derive(Parser)]
#[command(name = "certbind-authz", version)]
struct Args {
    /// The filter's configuration document (JSON: policy and snapshot).
    #[arg(long, env = "CERTBIND_AUTHZ_CONFIG")]
    config: std::path::PathBuf,
    /// HTTP listen address. Keep it where only the gateways reach it: the service believes
    /// forwarded certificate headers from the policy's trusted_proxies only.
    #[arg(long, env = "CERTBIND_AUTHZ_LISTEN", default_value = "127.0.0.1:9191")]
    listen: SocketAddr,
    /// gRPC listen address for Envoy ext_authz (off unless given).
    #[arg(long, env = "CERTBIND_AUTHZ_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,
    /// The CA bundle (PEM) the control plane's HTTPS certificate must chain to: the snapshot is
    /// then fetched over TLS, the certificate checked for the host of
    /// `snapshot.control_plane.authority`. Without it the fetch is plain HTTP, for a control
    /// plane on loopback only (the proxy credential travels in every fetch).
    #[arg(long, env = "CERTBIND_AUTHZ_CONTROL_PLANE_CA")]
    control_plane_ca: Option<std::path::PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, env = "CERTBIND_AUTHZ_THREADS")]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json = match std::fs::read(&args.config) {
        Ok(json) => json,
        Err(e) => {
            eprintln!("certbind-authz: cannot read {}: {e}", args.config.display());
            return ExitCode::FAILURE;
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("certbind-authz: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let tls = match &args.control_plane_ca {
            Some(path) => match ControlPlaneTls::from_ca_file(path) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    eprintln!("certbind-authz: {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let service = match Service::from_config_with(&json, tls) {
            Ok(service) => service,
            Err(e) => {
                eprintln!("certbind-authz: {e}");
                return ExitCode::FAILURE;
            }
        };
        let http = match bind(args.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("certbind-authz: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        eprintln!("[info] certbind-authz: HTTP on {}", args.listen);
        if let Some(addr) = args.grpc_listen {
            let grpc = match bind(addr).await {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("certbind-authz: cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            eprintln!("[info] certbind-authz: gRPC on {addr}");
            let grpc_service = service.clone();
            tokio::spawn(async move {
                if let Err(e) = grpc_service.serve_grpc(grpc).await {
                    eprintln!("[error] certbind-authz: gRPC server stopped: {e}");
                }
            });
        }
        tokio::select! {
            _ = service.serve_http(http) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        ExitCode::SUCCESS
    })
}
