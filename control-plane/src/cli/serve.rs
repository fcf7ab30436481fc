//! `certbind serve`: the API over HTTPS (or plain HTTP), with the snapshot service and the
//! CRL poller, until a signal stops it.

use super::key::open_signer;
use super::snapshot::store_settings;
use crate::app::app;
use crate::config::{Config, Listener};
use crate::db::Db;
use crate::snapshot::{NoSnapshots, SnapshotService, StoreService};
use crate::state::AppState;
use anyhow::Context;
use std::io::Write;
use std::sync::Arc;

/// The snapshot service for this configuration: none without a signer.
async fn snapshot_service(config: &Config, db: &Db) -> anyhow::Result<Arc<dyn SnapshotService>> {
    if config.signer.is_none() {
        tracing::warn!("no PKCS#11 signer configured: the admin API runs, snapshots are not served");
        return Ok(Arc::new(NoSnapshots::default()));
    }
    let signer = open_signer(config).await?;
    tracing::info!(key_id = signer.key_id(), "signing snapshots");
    let service = StoreService::start(db.clone(), signer, store_settings(config)).await?;
    Ok(service)
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener_kind = config.listener.clone().context(
        "configuration: no TLS certificate: set [tls] certificate_file and key_file (or CERTBIND_TLS_CERTIFICATE_FILE and \
         CERTBIND_TLS_KEY_FILE), or pass --plain-http to serve without TLS",
    )?;
    let db = Db::open(&config.db_options()).await?;
    let snapshots = snapshot_service(&config, &db).await?;
    let state = AppState::new(db.clone(), snapshots, config.limits());
    let poller = config.crl_fetch.clone().map(|settings| {
        crate::revocation::poller::spawn(db.clone(), state.snapshots.clone(), state.crl.clone(), settings)
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("listen: no local address")?;
    let tls = match &listener_kind {
        Listener::Https(settings) => Some(crate::tls::TlsServer::new(settings)?),
        Listener::PlainHttp => None,
    };
    let scheme = match &tls {
        Some(_) => "https",
        None => {
            tracing::warn!(
                "serving plain HTTP (--plain-http): admin tokens and proxy credentials cross the network unencrypted; \
                 configure [tls] unless a TLS hop of your own is in front"
            );
            "http"
        }
    };
    tracing::info!(%addr, database = db.backend().name(), scheme, "certbind control plane listening");
    // A line on stdout, so scripts and tests that ask for port 0 learn the port.
    println!("certbind listening on {scheme}://{addr}");
    let _ = std::io::stdout().flush();
    match tls {
        Some(tls) => tls.serve(listener, app(state), shutdown_signal()).await?,
        None => {
            // With the peer's address, which failed authentications are logged with.
            let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, service).with_graceful_shutdown(shutdown_signal()).await.context("serving HTTP")?;
        }
    }
    if let Some(poller) = poller {
        poller.abort();
    }
    db.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
