//! `certbind serve` over HTTPS: certificates made by OpenSSL, a real rustls client. The server
//! refuses to start with neither TLS nor `--plain-http`; serves the configured certificate;
//! serves a renewed one without a restart, and keeps the old one while the files disagree;
//! with a client CA, accepts only connections that present a certificate of that CA.

mod common;

use common::http1;
use common::process::{run, Server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A P-256 CA `name`.pem / `name`.key.
fn ca(dir: &Path, name: &str) {
    openssl(dir, &[
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-keyout", &format!("{name}.key"), "-out", &format!("{name}.pem"), "-subj", &format!("/CN={name}"),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]);
}

/// A leaf `name`.pem / `name`.key issued by CA `issuer` with the extensions `extensions`.
fn leaf(dir: &Path, name: &str, issuer: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    openssl(dir, &[
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", &format!("{name}.key"),
        "-out", &format!("{name}.csr"), "-subj", &format!("/CN={name}"),
    ]);
    openssl(dir, &[
        "x509", "-req", "-in", &format!("{name}.csr"), "-CA", &format!("{issuer}.pem"), "-CAkey", &format!("{issuer}.key"),
        "-CAcreateserial", "-days", "2", "-out", &format!("{name}.pem"), "-extfile", &format!("{name}.ext"),
    ]);
}

const SERVER_EXTENSIONS: &str = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n";
const CLIENT_EXTENSIONS: &str = "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n";

fn pem_certificates(path: &Path) -> Vec<pki_types::CertificateDer<'static>> {
    let pem = std::fs::read(path).unwrap();
    rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<_, _>>().unwrap()
}

fn pem_key(path: &Path) -> pki_types::PrivateKeyDer<'static> {
    let pem = std::fs::read(path).unwrap();
    rustls_pemfile::private_key(&mut pem.as_slice()).unwrap().unwrap()
}

/// Replaces `to` with `from` as a certificate manager does: a copy, then a rename.
fn install(dir: &Path, from: &str, to: &str) {
    let staged = dir.join(format!("{to}.new"));
    std::fs::copy(dir.join(from), &staged).unwrap();
    std::fs::rename(staged, dir.join(to)).unwrap();
}

/// `GET /healthz` over TLS, trusting `roots`, presenting `client` (certificate, key) if given:
/// the certificate the server presented and its answer's status line.
async fn get(addr: SocketAddr, roots: &Path, client: Option<(&Path, &Path)>) -> std::io::Result<(Vec<u8>, String)> {
    let mut store = rustls::RootCertStore::empty();
    for certificate in pem_certificates(roots) {
        store.add(certificate).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((certificate, key)) => builder.with_client_auth_cert(pem_certificates(certificate), pem_key(key)).unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp)).await??;
    let presented = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await??;
    let status = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string();
    Ok((presented, status))
}

fn der(path: &Path) -> Vec<u8> {
    pem_certificates(path).remove(0).to_vec()
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A server CA with two server certificates (`first`, `second`), a client CA with a
    /// client certificate (`proxy`), and a client certificate of the server CA (`stranger`).
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        ca(path, "server-ca");
        leaf(path, "first", "server-ca", SERVER_EXTENSIONS);
        leaf(path, "second", "server-ca", SERVER_EXTENSIONS);
        ca(path, "proxies-ca");
        leaf(path, "proxy", "proxies-ca", CLIENT_EXTENSIONS);
        leaf(path, "stranger", "server-ca", CLIENT_EXTENSIONS);
        install(path, "first.pem", "serving.pem");
        install(path, "first.key", "serving.key");
        Pki { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CERTBIND_TLS_CERTIFICATE_FILE".into(), self.file("serving.pem").display().to_string()),
            ("CERTBIND_TLS_KEY_FILE".into(), self.file("serving.key").display().to_string()),
        ]
    }
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn serve_refuses_to_start_with_neither_tls_nor_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &[], &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--plain-http") && stderr.contains("certificate_file"), "{stderr}");
    // Both at once is a contradiction.
    let pki = Pki::new();
    let env = pki.env();
    let out = run(dir.path(), &borrowed(&env), &["serve", "--plain-http", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one"));
}

#[tokio::test]
async fn plain_http_is_served_when_asked_for_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.scheme, "http");
    assert_eq!(http1(server.addr, "GET", "/healthz", &[], &[]).await.unwrap().status, 200);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("serving plain HTTP (--plain-http)"), "{log}");
}

#[tokio::test]
async fn https_serves_its_certificate_and_a_renewed_one_without_a_restart() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let env = pki.env();
    let server = Server::start_with(work.path(), &borrowed(&env), &[]);
    assert_eq!(server.scheme, "https");
    let roots = pki.file("server-ca.pem");
    let (presented, status) = get(server.addr, &roots, None).await.unwrap();
    assert_eq!((presented, status.as_str()), (der(&pki.file("first.pem")), "HTTP/1.1 200 OK"));
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    assert!(http1(server.addr, "GET", "/healthz", &[], &[]).await.is_err());

    // A new key whose certificate is not there yet: the old pair is served meanwhile.
    install(pki.dir.path(), "second.key", "serving.key");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(get(server.addr, &roots, None).await.unwrap().0, der(&pki.file("first.pem")));
    // Its certificate arrives: served within a few seconds, no restart.
    install(pki.dir.path(), "second.pem", "serving.pem");
    let started = Instant::now();
    loop {
        let (presented, status) = get(server.addr, &roots, None).await.unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK");
        if presented == der(&pki.file("second.pem")) {
            break;
        }
        assert_eq!(presented, der(&pki.file("first.pem")));
        assert!(started.elapsed() < Duration::from_secs(15), "the renewed certificate was not served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(work.path().join("serve.log")).unwrap();
    assert!(log.contains("serving the previous one") && log.contains("certificate reloaded"), "{log}");
}

#[tokio::test]
async fn with_a_client_ca_only_its_certificates_connect() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let mut env = pki.env();
    env.push(("CERTBIND_TLS_CLIENT_CA_FILE".into(), pki.file("proxies-ca.pem").display().to_string()));
    let server = Server::start_with(work.path(), &borrowed(&env), &[]);
    let roots = pki.file("server-ca.pem");
    let proxy = (pki.file("proxy.pem"), pki.file("proxy.key"));
    let (_, status) = get(server.addr, &roots, Some((&proxy.0, &proxy.1))).await.unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    // No certificate, or one of another CA: no answer. (On TLS 1.3 the client learns of the
    // refusal when it reads.)
    assert!(get(server.addr, &roots, None).await.is_err());
    let stranger = (pki.file("stranger.pem"), pki.file("stranger.key"));
    assert!(get(server.addr, &roots, Some((&stranger.0, &stranger.1))).await.is_err());
}
