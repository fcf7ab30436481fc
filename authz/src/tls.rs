//! How the service reaches a control plane that serves HTTPS: rustls (the `ring` provider)
//! trusting only the CA bundle given with `--control-plane-ca`, the name checked being the host
//! of the configuration's `snapshot.control_plane.authority` (a DNS name or an IP address, as
//! the control plane's certificate names it). Without a bundle the service fetches over plain
//! HTTP, which is for a control plane on loopback only: the proxy credential travels in every
//! fetch.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Largest CA bundle read: every federal CA fits in well under 1 MiB; more is a wrong file.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// A TLS client for the control plane.
#[derive(Clone)]
pub struct ControlPlaneTls {
    connector: TlsConnector,
}

impl ControlPlaneTls {
    /// Trusts the certificates of the PEM bundle at `path`, and nothing else.
    pub fn from_ca_file(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let len = std::fs::metadata(path).map_err(|e| format!("control plane CA {shown}: {e}"))?.len();
        if len > MAX_CA_FILE_BYTES {
            return Err(format!("control plane CA {shown} is {len} bytes, more than the {MAX_CA_FILE_BYTES}-byte limit"));
        }
        let pem = std::fs::read(path).map_err(|e| format!("control plane CA {shown}: {e}"))?;
        Self::from_ca_pem(&pem).map_err(|e| format!("control plane CA {shown}: {e}"))
    }

    /// Trusts the certificates of a PEM bundle.
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, String> {
        let certificates = rustls_pemfile::certs(&mut BufReader::new(pem))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not PEM certificates: {e}"))?;
        if certificates.is_empty() {
            return Err("holds no CERTIFICATE block".into());
        }
        let mut roots = RootCertStore::empty();
        for certificate in certificates {
            roots.add(certificate).map_err(|e| format!("a certificate rustls cannot trust: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ControlPlaneTls { connector: TlsConnector::from(Arc::new(config)) })
    }

    /// The TLS session over `stream`, the server's certificate checked for `host`.
    pub async fn connect(&self, stream: TcpStream, host: &str) -> Result<TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_string()).map_err(|_| format!("{host:?} is not a DNS name or an IP address"))?;
        self.connector.connect(name, stream).await.map_err(|e| format!("TLS with {host}: {e}"))
    }
}

/// The host of an `authority` (`host[:port]`, `[v6]:port`): the name the certificate must carry.
pub fn authority_host(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_checked_is_the_authority_host() {
        assert_eq!(authority_host("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(authority_host("cp.example.mil:443"), "cp.example.mil");
        assert_eq!(authority_host("cp.example.mil"), "cp.example.mil");
        assert_eq!(authority_host("[::1]:8443"), "::1");
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        assert_eq!(ControlPlaneTls::from_ca_pem(b"").err().as_deref(), Some("holds no CERTIFICATE block"));
        let key_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(ControlPlaneTls::from_ca_pem(key_only).err().as_deref(), Some("holds no CERTIFICATE block"));
    }

    #[test]
    fn the_test_pki_root_is_a_bundle() {
        let pem = include_bytes!("../../tests/pki/root-ca.pem");
        assert!(ControlPlaneTls::from_ca_pem(pem).is_ok());
    }
}
