//! HTTPS for `certbind serve`: rustls (the `ring` provider), the certificate chain and key read
//! from PEM files and read again when either file changes, so a renewed certificate is served
//! without a restart; optionally a CA bundle whose client certificates every connection must
//! present (the proxies'). Plain HTTP is served only when asked for (`--plain-http`), with a
//! warning: the proxy credential travels in every snapshot fetch.

use crate::config::TlsSettings;
use anyhow::Context as _;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Largest PEM file read: a chain of a few certificates and a key fits in a few KiB; a CA
/// bundle of every federal CA in well under 1 MiB. Anything larger is a wrong file.
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;
/// How often the certificate and key files are checked for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);
/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path).with_context(|| format!("tls: {what} {}", path.display()))?.len();
    if len > MAX_PEM_FILE_BYTES {
        anyhow::bail!("tls: {what} {} is {len} bytes, more than the {MAX_PEM_FILE_BYTES}-byte limit", path.display());
    }
    std::fs::read(path).with_context(|| format!("tls: {what} {}", path.display()))
}

fn certificates(path: &Path, what: &str) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let pem = read_pem(path, what)?;
    let chain = rustls_pemfile::certs(&mut BufReader::new(pem.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls: {what} {}: not PEM certificates", path.display()))?;
    if chain.is_empty() {
        anyhow::bail!("tls: {what} {} holds no CERTIFICATE block", path.display());
    }
    Ok(chain)
}

/// The chain and key of `settings`, checked to belong together.
fn certified_key(settings: &TlsSettings) -> anyhow::Result<CertifiedKey> {
    let chain = certificates(&settings.certificate_file, "certificate_file")?;
    let key_pem = read_pem(&settings.key_file, "key_file")?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_pem.as_slice()))
        .with_context(|| format!("tls: key_file {}: not a PEM private key", settings.key_file.display()))?
        .with_context(|| format!("tls: key_file {} holds no PRIVATE KEY block", settings.key_file.display()))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("tls: key_file {}: a key rustls cannot sign with", settings.key_file.display()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().context("tls: key_file is not the key of certificate_file's first certificate")?;
    Ok(certified)
}

/// What identifies a version of the files: modification time and length of each.
fn stamp(settings: &TlsSettings) -> Vec<Option<(SystemTime, u64)>> {
    [&settings.certificate_file, &settings.key_file]
        .iter()
        .map(|path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

/// The served certificate, replaced when its files change.
#[derive(Debug)]
pub struct ReloadingCertificate {
    settings: TlsSettings,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl ReloadingCertificate {
    pub fn load(settings: &TlsSettings) -> anyhow::Result<Self> {
        let stamp = stamp(settings);
        let current = certified_key(settings)?;
        Ok(ReloadingCertificate { settings: settings.clone(), current: RwLock::new(Arc::new(current)), stamp: Mutex::new(stamp) })
    }

    /// Reads the files again if either changed since the last read: `Ok(true)` when a new
    /// pair is served. A pair that does not load (a half-written file, a key of another
    /// certificate) is an error and the previous pair stays; it is tried again on the next
    /// change.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let now = stamp(&self.settings);
        {
            let mut held = self.stamp.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *held == now {
                return Ok(false);
            }
            *held = now;
        }
        let fresh = certified_key(&self.settings)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
        Ok(true)
    }

    /// Checks the files every [`RELOAD_CHECK`] until dropped with the task.
    pub async fn watch(self: Arc<Self>) {
        let mut every = tokio::time::interval(RELOAD_CHECK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match self.reload_if_changed() {
                Ok(true) => tracing::info!(file = %self.settings.certificate_file.display(), "tls: certificate reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "tls: the changed certificate does not load; serving the previous one"),
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

/// The rustls configuration of `settings`, serving `certificate`.
pub fn server_config(settings: &TlsSettings, certificate: Arc<ReloadingCertificate>) -> anyhow::Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("tls: protocol versions")?;
    let builder = match &settings.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(path, "client_ca_file")? {
                roots.add(certificate).with_context(|| format!("tls: client_ca_file {}: a certificate is unusable", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .with_context(|| format!("tls: client_ca_file {}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The HTTPS listener's state: its acceptor and the certificate it serves.
pub struct TlsServer {
    acceptor: tokio_rustls::TlsAcceptor,
    certificate: Arc<ReloadingCertificate>,
}

impl TlsServer {
    /// Reads the files: an error here stops `serve` before it says it listens.
    pub fn new(settings: &TlsSettings) -> anyhow::Result<Self> {
        let certificate = Arc::new(ReloadingCertificate::load(settings)?);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(settings, certificate.clone())?));
        Ok(TlsServer { acceptor, certificate })
    }

    /// Serves `router` on `listener` until `shutdown` completes, then lets the open
    /// connections finish (long-polls included, up to their own timeout).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        router: axum::Router,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        use hyper_util::rt::TokioIo;
        use hyper_util::service::TowerToHyperService;

        let watcher = tokio::spawn(self.certificate.clone().watch());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "tls: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let acceptor = self.acceptor.clone();
            // With the peer's address, which failed authentications are logged with.
            let service = TowerToHyperService::new(router.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer))));
            let connection_watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "tls: handshake refused"),
                    Err(_) => return tracing::debug!(%peer, "tls: handshake timed out"),
                };
                let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
                if let Err(e) = connection_watcher.watch(connection).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        watcher.abort();
        graceful.shutdown().await;
        Ok(())
    }
}
