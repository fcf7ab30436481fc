//! Test harness: a fresh database per test (a SQLite file in a temporary directory, or a new
//! database on the PostgreSQL server named by `CERTBIND_TEST_POSTGRES_URL`), two orgs with
//! their tokens and users, and one way to send requests either through `oneshot` or over a
//! real socket.
#![allow(dead_code)]

pub mod process;
pub mod synthetic_ca;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use certbind_control_plane::app::app;
use certbind_control_plane::state::{AppState, Limits};
use certbind_control_plane::snapshot::{NoSnapshots, SnapshotService};
use certbind_control_plane::db::{self, Actor, Db, DbOptions, Org, User};
use certbind_control_plane::signer::{Signer, SoftwareSigner};
use http_body_util::BodyExt;
use serde_json::Value;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

pub const POSTGRES_URL_VAR: &str = "CERTBIND_TEST_POSTGRES_URL";
/// Set (to anything) in CI: a missing PostgreSQL URL then fails the PostgreSQL variants
/// instead of skipping them.
pub const REQUIRE_POSTGRES_VAR: &str = "CERTBIND_TEST_REQUIRE_POSTGRES";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `Router::oneshot`, no socket.
    Oneshot,
    /// `axum::serve` on 127.0.0.1 and a plain HTTP/1.1 client.
    Socket,
}

/// Writes straight to the process's stderr, past the test harness's capture, so a skipped
/// PostgreSQL variant is seen in every run's output.
pub fn shout(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// The PostgreSQL server URL, or `None` after saying loudly that the test is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var_os(REQUIRE_POSTGRES_VAR).is_some() {
                panic!("{REQUIRE_POSTGRES_VAR} is set but {POSTGRES_URL_VAR} is not: start a server with scripts/postgres-test.sh");
            }
            shout(&format!(
                "SKIPPED {test} [postgres]: {POSTGRES_URL_VAR} is not set (scripts/postgres-test.sh starts a server and sets it)"
            ));
            None
        }
    }
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    pub store: Store,
    dir: Option<tempfile::TempDir>,
    postgres_admin_url: Option<String>,
    postgres_name: Option<String>,
}

/// `postgres://u:p@h:port/db?x` with the database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part_end = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    format!("{}/{}{}", &base[..host_part_end], name, query)
}

impl TestDb {
    pub async fn new(store: Store, test: &str) -> Option<TestDb> {
        match store {
            Store::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("certbind.db").display());
                Some(TestDb { url, store, dir: Some(dir), postgres_admin_url: None, postgres_name: None })
            }
            Store::Postgres => Some(TestDb::postgres_on(&postgres_url(test)?).await),
        }
    }

    /// A fresh database on the PostgreSQL server `admin_url` names.
    pub async fn postgres_on(admin_url: &str) -> TestDb {
        let name = format!("cbt_{}", db::new_id().to_ascii_lowercase());
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", db::redact_url(admin_url)));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("CREATE DATABASE");
        let _ = sqlx::Connection::close(conn).await;
        TestDb {
            url: with_database(admin_url, &name),
            store: Store::Postgres,
            dir: None,
            postgres_admin_url: Some(admin_url.to_string()),
            postgres_name: Some(name),
        }
    }

    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// Opened with a minute's wait for a connection: the load tests queue thousands of
    /// requests on one pool, and the outage tests set their own.
    pub async fn open(&self) -> Db {
        let options = DbOptions { acquire_timeout: std::time::Duration::from_secs(60), ..DbOptions::new(self.url.clone()) };
        Db::open(&options).await.expect("opening the test database")
    }

    /// Drops a PostgreSQL test database (SQLite's goes with its directory).
    pub async fn drop_database(&self) {
        if let (Some(admin), Some(name)) = (&self.postgres_admin_url, &self.postgres_name) {
            if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
                let _ = sqlx::Connection::close(conn).await;
            }
        }
    }
}

/// One org of the fixture with its admin token and a user.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub org: Org,
    pub token: String,
    pub user: User,
}

/// A response, whichever way it travelled.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The snapshot version a change reported.
    pub fn version(&self) -> i64 {
        self.header("certbind-snapshot-version")
            .unwrap_or_else(|| panic!("no certbind-snapshot-version header: {} {}", self.status, self.text()))
            .parse()
            .expect("numeric version")
    }

    /// Asserts an RFC 9457 problem with this status, and returns it.
    #[track_caller]
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "body: {}", self.text());
        let p = self.json();
        assert_eq!(p["status"], status);
        assert!(p["type"].as_str().is_some_and(|t| t.starts_with("urn:certbind:problem:")), "{p}");
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        assert!(p["detail"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        p
    }
}

pub struct TestApp {
    pub db: Db,
    pub state: AppState,
    pub router: Router,
    pub transport: Transport,
    pub test_db: TestDb,
    /// Org "acme": a super-admin token.
    pub a: Tenant,
    /// Org "globex": an ordinary token.
    pub b: Tenant,
    /// A proxy credential: reads the snapshot, nothing else.
    pub proxy: String,
    server: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
}

impl TestApp {
    pub async fn start(store: Store, transport: Transport, test: &str) -> Option<TestApp> {
        Self::start_with(store, transport, test, Arc::new(NoSnapshots::default()), Limits::default()).await
    }

    pub async fn start_with(
        store: Store,
        transport: Transport,
        test: &str,
        snapshots: Arc<dyn SnapshotService>,
        limits: Limits,
    ) -> Option<TestApp> {
        let test_db = TestDb::new(store, test).await?;
        let db = test_db.open().await;
        Some(Self::start_on(test_db, db, transport, snapshots, limits).await)
    }

    /// Starts on a database already open (for snapshot services that need it first).
    pub async fn start_on(
        test_db: TestDb,
        db: Db,
        transport: Transport,
        snapshots: Arc<dyn SnapshotService>,
        limits: Limits,
    ) -> TestApp {
        let a = tenant(&db, "acme", true, "alice").await;
        let b = tenant(&db, "globex", false, "bob").await;
        let (_, proxy) = db::proxies::create(&db, &Actor::service("test"), Some("edge-1")).await.expect("proxy credential");
        let state = AppState::new(db.clone(), snapshots, limits);
        let router = app(state.clone());
        let server = match transport {
            Transport::Oneshot => None,
            Transport::Socket => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("addr");
                let router = router.clone();
                let handle = tokio::spawn(async move {
                    let _ = axum::serve(listener, router).await;
                });
                Some((addr, handle))
            }
        };
        TestApp { db, state, router, transport, test_db, a, b, proxy, server }
    }

    /// Assigns `domain` to `org_id` as the super-admin, so that org's admins may create SAN
    /// mapping rules for it.
    pub async fn assign_domain(&self, org_id: &str, domain: &str) {
        let path = format!("/api/v1/admin/orgs/{org_id}/domains");
        let r = self.post(&path, &self.a.token, &serde_json::json!({ "domain": domain })).await;
        assert_eq!(r.status, 201, "assigning {domain}: {}", r.text());
    }

    pub async fn finish(self) {
        if let Some((_, handle)) = &self.server {
            handle.abort();
        }
        self.db.close().await;
        self.test_db.drop_database().await;
    }

    /// Sends a request the way this app's transport goes.
    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        match &self.server {
            None => oneshot(&self.router, method, path, headers, body).await,
            Some((addr, _)) => http1(*addr, method, path, headers, &body).await.expect("HTTP request over the socket"),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        self.send("GET", path, &[("authorization", &auth)], Vec::new()).await
    }

    /// Where the app listens, with [`Transport::Socket`].
    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(|(addr, _)| *addr)
    }

    /// `GET` of a snapshot route with the proxy credential and `headers`.
    pub async fn snapshot(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let auth = format!("Bearer {}", self.proxy);
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.send("GET", path, &all, Vec::new()).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        self.send("DELETE", path, &[("authorization", &auth)], Vec::new()).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.json_request("POST", path, token, body).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.json_request("PATCH", path, token, body).await
    }

    pub async fn json_request(&self, method: &str, path: &str, token: &str, body: &Value) -> Resp {
        let auth = format!("Bearer {token}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        self.send(method, path, &headers, serde_json::to_vec(body).expect("JSON")).await
    }

    /// Every row of every table, as text, sorted: two dumps are equal iff nothing changed.
    pub async fn dump(&self) -> Vec<String> {
        dump_tables(&self.db).await
    }
}

pub async fn dump_tables(db: &Db) -> Vec<String> {
    use sqlx::{Column, Row};
    let tables = [
        "orgs",
        "users",
        "smart_card_links",
        "admin_tokens",
        "proxy_credentials",
        "blocklist",
        "token_issuers",
        "mapping_rules",
        "thumbprint_mappings",
        "identity_constraints",
        "audit_log",
        "snapshot_state",
        "snapshot_log",
        "certificate_authorities",
        "certificate_authority_crls",
        "crl_fetches",
    ];
    let mut out = Vec::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT * FROM {table}")).fetch_all(db.reader()).await.expect("dump");
        for row in rows {
            let mut line = format!("{table}:");
            for (i, column) in row.columns().iter().enumerate() {
                // Bookkeeping written after the request, off its path.
                if column.name() == "last_used_at" {
                    continue;
                }
                let text = row
                    .try_get::<Option<String>, _>(i)
                    .ok()
                    .flatten()
                    .or_else(|| row.try_get::<Option<i64>, _>(i).ok().flatten().map(|n| n.to_string()))
                    .unwrap_or_else(|| "NULL".into());
                line.push_str(&format!(" {}={text}", column.name()));
            }
            out.push(line);
        }
    }
    out.sort();
    out
}

async fn tenant(db: &Db, name: &str, super_admin: bool, user: &str) -> Tenant {
    let org = db::orgs::create(db, None, name).await.expect("org");
    let actor = Actor::cli(org.id.clone());
    let (_, token) = db::tokens::create(db, &actor, &org.id, super_admin, Some("test")).await.expect("token");
    let user = db::users::create(db, &actor, user, None).await.expect("user");
    Tenant { org, token, user }
}

pub async fn oneshot(router: &Router, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
    let mut request = Request::builder().method(Method::from_bytes(method.as_bytes()).expect("method")).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body)).expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
    Resp { status, headers, body }
}

/// A minimal HTTP/1.1 client (one request per connection), enough for the tests and able to
/// send what a well-behaved client library would refuse to.
pub async fn http1(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::other(format!("malformed response: {:?}", String::from_utf8_lossy(&raw))))
}

fn parse_response(raw: &[u8]) -> Option<Resp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            axum::http::HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            axum::http::HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    if headers.get("transfer-encoding").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked")) {
        rest = dechunk(&rest)?;
    }
    Some(Resp { status: StatusCode::from_u16(status).ok()?, headers, body: rest })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A test certificate and what OpenSSL says about it (tests/vectors/make-vectors.sh).
pub struct Vector {
    pub pem: &'static str,
    pub facts: Value,
}

pub fn cac_doe() -> Vector {
    Vector {
        pem: include_str!("../vectors/cac-doe.pem"),
        facts: serde_json::from_str(include_str!("../vectors/cac-doe.facts.json")).expect("facts"),
    }
}

pub fn cac_roe() -> Vector {
    Vector {
        pem: include_str!("../vectors/cac-roe.pem"),
        facts: serde_json::from_str(include_str!("../vectors/cac-roe.facts.json")).expect("facts"),
    }
}

/// The DN of the DoD issuing CA most fixtures name.
pub const DOD_CA: &str = "CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US";

/// A JWKS of one P-256 key (RFC 7517 appendix A.1's), as an issuer registration takes it.
pub fn ec_jwks() -> Value {
    serde_json::json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
    }]})
}

/// A deterministic fingerprint for test number `n` (64 lowercase hex digits).
pub fn fingerprint(n: u64) -> String {
    use sha2::Digest;
    certbind_shared::encoding::hex_lower(&sha2::Sha256::digest(n.to_be_bytes()))
}

/// The field form of the bind body for `user_id` with fingerprint `fp`.
pub fn bind_body(user_id: &str, fp: &str) -> Value {
    serde_json::json!({
        "user_id": user_id,
        "fingerprint": fp,
        "subject_dn": "CN=DOE.JOHN.A.1234567890,OU=USA,OU=PKI,OU=DoD,O=U.S. Government,C=US",
        "issuer_dn": "CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US",
        "serial": "0x12abcdef",
        "not_before": "2025-01-15T00:00:00Z",
        "not_after": "2028-01-15T00:00:00Z",
        "label": "Primary CAC"
    })
}

/// Runs each listed `async fn name(app: &TestApp)` on SQLite and PostgreSQL, through
/// `oneshot` and over a socket: four tests per scenario, in modules named after the variant.
#[macro_export]
macro_rules! on_every_store_and_transport {
    ($($name:ident),* $(,)?) => {
        $crate::on_every_store_and_transport!(@variant sqlite_oneshot, Sqlite, Oneshot, $($name),*);
        $crate::on_every_store_and_transport!(@variant sqlite_socket, Sqlite, Socket, $($name),*);
        $crate::on_every_store_and_transport!(@variant postgres_oneshot, Postgres, Oneshot, $($name),*);
        $crate::on_every_store_and_transport!(@variant postgres_socket, Postgres, Socket, $($name),*);
    };
    (@variant $module:ident, $store:ident, $transport:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let test = concat!(stringify!($module), "::", stringify!($name));
                    let Some(app) = $crate::common::TestApp::start(
                        $crate::common::Store::$store, $crate::common::Transport::$transport, test,
                    ).await else { return };
                    super::$name(&app).await;
                    app.finish().await;
                }
            )*
        }
    };
}

/// Runs each listed `async fn name(store: Store, test: &str)` on SQLite and PostgreSQL.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Store::Sqlite, concat!("sqlite::", stringify!($name))).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let test = concat!("postgres::", stringify!($name));
                    if $crate::common::postgres_url(test).is_none() { return }
                    super::$name($crate::common::Store::Postgres, test).await;
                }
            )*
        }
    };
}

/// A software signer from the key whose every byte is `seed`: each test file its own key,
/// the same in every run.
#[allow(dead_code)]
pub fn signer(seed: u8) -> Arc<dyn Signer> {
    Arc::new(SoftwareSigner::from_secret(&[seed; 32]).expect("a valid P-256 scalar"))
}
