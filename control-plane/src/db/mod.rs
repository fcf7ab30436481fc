//! Storage: one query layer over SQLite (the default, a file beside the service) and
//! PostgreSQL (when `DATABASE_URL` names one).
//!
//! Queries go through `sqlx::Any` with `$N` placeholders, which both drivers accept, so each
//! query is written once. Every change runs in one transaction that also writes its audit row
//! and, when the filter sees the change, bumps `snapshot_state.version`: the version is
//! committed with its change, and the row lock it takes orders concurrent writers, so
//! committed versions strictly increase (`commit.rs`).
//!
//! Here: the pools and their options, the org quotas, whose rules a caller reads, ids and
//! column readers. Each table's queries are in a file of its own.

pub mod audit;
pub mod blocklist;
pub mod cas;
pub mod claims;
mod commit;
pub mod constraints;
pub mod crls;
pub mod domains;
pub mod error;
pub mod issuers;
pub mod mapping_rules;
mod migrate;
pub mod orgs;
pub mod proxies;
pub mod signed_snapshots;
pub mod smartcards;
pub mod snapshot_data;
pub mod snapshot_log;
pub mod thumbprints;
pub mod tokens;
pub mod users;

use anyhow::Context;
use certbind_shared::encoding::ulid_render;
use certbind_shared::Fingerprint;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use std::time::Duration;

pub use commit::{commit_change, Actor, AuditRecord, Visibility};
pub use error::{DbError, DbResult};
pub use crate::domain::records::*;

/// How long a request waits for a database connection by default: under a burst of writes,
/// the queue a request may wait in; with the database unreachable, how soon it answers 503.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The database used when nothing is configured: a file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://certbind.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Which backend a URL names, or `None` for a scheme we do not speak.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub url: String,
    /// Connections for PostgreSQL; SQLite always writes through one connection.
    pub max_connections: u32,
    /// How long a request waits for a connection before failing: with the database
    /// unreachable, how long a write takes to fail with 503.
    pub acquire_timeout: Duration,
    /// What one org may hold of the rules the snapshot carries.
    pub quotas: Quotas,
}

impl DbOptions {
    pub fn new(url: impl Into<String>) -> Self {
        DbOptions {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            quotas: Quotas::default(),
        }
    }
}

/// What one org may hold of each kind of rule the snapshot carries, checked in the change's
/// transaction. Every org's rules go into the one snapshot every proxy loads, so without a
/// bound one org could grow it past what the format holds and stop publication for all.
/// Platform rules (written by super-admins) are not counted. Card bindings are not bounded:
/// they are what the snapshot is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Token issuer registrations.
    pub issuers: u64,
    /// Bytes of all of the org's issuers' JWKS documents together.
    pub jwks_bytes: u64,
    /// Blocklist entries: blocked fingerprints and revoked serials.
    pub blocklist_entries: u64,
    /// SAN mapping rules.
    pub mapping_rules: u64,
    /// Thumbprint mappings.
    pub thumbprint_mappings: u64,
    /// Identity constraints.
    pub constraints: u64,
}

impl Default for Quotas {
    /// Far above what one organisation's administration needs, far below what would crowd
    /// the snapshot (the format holds 16 384 issuers and 128 MiB in all).
    fn default() -> Self {
        Quotas {
            issuers: 32,
            jwks_bytes: 1024 * 1024,
            blocklist_entries: 100_000,
            mapping_rules: 1_000,
            thumbprint_mappings: 100_000,
            constraints: 1_000,
        }
    }
}

/// Cheap to clone: pools are shared handles.
#[derive(Clone, Debug)]
pub struct Db {
    /// Every write transaction. For SQLite a single connection: SQLite admits one writer at a
    /// time anyway, and queueing writers in the pool (fair, in-process) is faster and never
    /// times out the way competing `BEGIN IMMEDIATE`s polling a file lock do under load.
    write: AnyPool,
    /// Reads. For SQLite a separate pool, so reads never queue behind writes (WAL lets them
    /// run beside the writer).
    read: AnyPool,
    backend: Backend,
    quotas: Quotas,
    /// PostgreSQL's URL, for the connection that listens for other replicas' commits.
    listen_url: Option<ListenUrl>,
}

/// A database URL kept for connecting again; printed without its password.
#[derive(Clone)]
pub struct ListenUrl(String);

impl ListenUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ListenUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl Db {
    /// Connects (creating a SQLite file on first use) without running migrations.
    pub async fn connect(options: &DbOptions) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(&options.url).with_context(|| {
            format!(
                "database URL must start with sqlite:, postgres:// or postgresql:// (got {:?})",
                redact_url(&options.url)
            )
        })?;
        let db = match backend {
            Backend::Sqlite => {
                // Created private before SQLite opens it: SQLite gives its WAL and shared-memory
                // files the database file's mode.
                if let Some(path) = sqlite_file_path(&options.url) {
                    crate::private_files::ensure_file(std::path::Path::new(path))?;
                }
                let url = sqlite_url_creating_file(&options.url);
                let write = sqlite_pool(1, options.acquire_timeout).connect(&url).await;
                let write = write.with_context(|| format!("opening SQLite database {url}"))?;
                let read = sqlite_pool(4, options.acquire_timeout).connect(&url).await;
                let read = read.with_context(|| format!("opening SQLite database {url}"))?;
                Db { write, read, backend, quotas: options.quotas, listen_url: None }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(options.max_connections.max(1))
                    .acquire_timeout(options.acquire_timeout)
                    .connect(&options.url)
                    .await
                    .with_context(|| format!("connecting to PostgreSQL at {}", redact_url(&options.url)))?;
                let listen_url = Some(ListenUrl(options.url.clone()));
                Db { write: pool.clone(), read: pool, backend, quotas: options.quotas, listen_url }
            }
        };
        Ok(db)
    }

    /// Connects and brings the schema up to date.
    pub async fn open(options: &DbOptions) -> anyhow::Result<Db> {
        let db = Db::connect(options).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Brings the schema and the stored rows up to date ([`migrate`]).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        migrate::run(self).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where to listen for other replicas' commits (`snapshot_log::CHANNEL`): PostgreSQL only.
    pub fn listen_url(&self) -> Option<&ListenUrl> {
        self.listen_url.as_ref()
    }

    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The write pool, for single statements that need no transaction of their own.
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`IMMEDIATE`), so
    /// another process writing the same file (the CLI beside a running server) waits on the
    /// busy timeout instead of failing half-way through.
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.write.begin().await,
        }
    }

    /// Starts a change the filter sees. Such changes run one at a time: on PostgreSQL the
    /// transaction locks the `snapshot_state` row first (SQLite's write lock does the same),
    /// so the checks a change makes before writing (a fingerprint bound in another org, a
    /// rule another owner claims) cannot be raced by another change, and versions are
    /// committed in the order the changes ran.
    pub async fn begin_change(&self) -> sqlx::Result<Tx> {
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT version FROM snapshot_state WHERE id = 1 FOR UPDATE").fetch_one(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// True when a trivial query answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.read).await.is_ok()
    }

    /// The version of the last committed change the filter sees.
    pub async fn snapshot_version(&self) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT version FROM snapshot_state WHERE id = 1").fetch_one(&self.read).await?;
        row.try_get::<i64, _>("version")
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

pub type Tx = Transaction<'static, Any>;

fn sqlite_pool(max_connections: u32, acquire_timeout: Duration) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // WAL: readers do not block the writer. synchronous=FULL: a commit is on disk
                // (WAL fsynced) before it is acknowledged, so a crash loses nothing answered.
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;",
                )
                .await?;
                Ok(())
            })
        })
}

/// Adds `mode=rwc` (create if missing) unless the URL already says which mode it wants.
fn sqlite_url_creating_file(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// The file a SQLite URL opens, when the control plane would create it: not for
/// `:memory:` or a URL that names its own open mode.
fn sqlite_file_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') || url.contains("mode=") {
        return None;
    }
    Some(path)
}

/// A URL safe to print: the password, if any, replaced.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Whose rules a caller reads: its own org's, and the platform's for a super-admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub org_id: String,
    pub platform: bool,
}

impl Viewer {
    /// `(org_id = $n OR ($n+1 = 1 AND org_id IS NULL))`, to bind with [`Viewer::bind`].
    pub(crate) fn predicate(first: usize) -> String {
        format!("(org_id = ${first} OR (${} = 1 AND org_id IS NULL))", first + 1)
    }

    pub(crate) fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        query.bind(self.org_id.as_str()).bind(i32::from(self.platform))
    }
}

/// A new identifier: 48 bits of milliseconds then 80 random bits, in Crockford base32 (26
/// characters, the ULID layout). Sorts by creation time, which keyset pagination relies on.
pub fn new_id() -> String {
    let millis = u128::try_from(certbind_shared::clock::now_millis()).unwrap_or(0);
    let random: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    let value = ((millis & ((1u128 << 48) - 1)) << 80) | random;
    // The same spelling the snapshot reads back from a ULID's bits.
    ulid_render(&value.to_be_bytes()).iter().map(|&c| char::from(c)).collect()
}

/// Reads an `INTEGER` 0/1 column, by name or position, as a bool (SQLite has no boolean type).
pub(crate) fn get_flag<I: sqlx::ColumnIndex<AnyRow>>(row: &AnyRow, column: I) -> sqlx::Result<bool> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

/// Reads a fingerprint column (stored as its canonical hex): a value that is not one is the
/// database's error.
pub(crate) fn get_fingerprint<I: sqlx::ColumnIndex<AnyRow>>(row: &AnyRow, column: I) -> sqlx::Result<Fingerprint> {
    let text: String = row.try_get(column)?;
    Fingerprint::from_canonical_hex(&text).map_err(error::decode_error)
}

/// Reads a fingerprint column that may be `NULL`.
pub(crate) fn get_optional_fingerprint<I: sqlx::ColumnIndex<AnyRow>>(row: &AnyRow, column: I) -> sqlx::Result<Option<Fingerprint>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| Fingerprint::from_canonical_hex(&t).map_err(error::decode_error)).transpose()
}

/// Values bound to a query built at run time (filters that may or may not be present).
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

/// A `WHERE` clause built piece by piece with `$N` placeholders.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Filter {
    /// Adds `column op $N`. `column` and `op` come from code, never from input.
    pub fn push(&mut self, column: &'static str, op: &'static str, value: Param) {
        self.params.push(value);
        self.clauses.push(format!("{column} {op} ${}", self.params.len()));
    }

    pub fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// The next placeholder number, for a clause after the filter (e.g. `LIMIT`).
    pub fn next_placeholder(&self) -> usize {
        self.params.len() + 1
    }

    pub fn bind<'q>(
        &'q self,
        mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        for p in &self.params {
            query = match p {
                Param::Text(s) => query.bind(s.as_str()),
                Param::Int(i) => query.bind(*i),
            };
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_named_by_scheme() {
        assert_eq!(Backend::of_url("sqlite://certbind.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of_url("postgresql://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of_url("mysql://u@h/db"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://cb:secret@localhost:5432/cb"), "postgres://cb:***@localhost:5432/cb");
        assert_eq!(redact_url("postgres://cb@localhost/cb"), "postgres://cb@localhost/cb");
        assert_eq!(redact_url("sqlite://certbind.db"), "sqlite://certbind.db");
    }

    #[test]
    fn sqlite_urls_create_their_file() {
        assert_eq!(sqlite_url_creating_file("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(sqlite_url_creating_file("sqlite://a.db?cache=shared"), "sqlite://a.db?cache=shared&mode=rwc");
        assert_eq!(sqlite_url_creating_file("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_file_path("sqlite://certbind.db"), Some("certbind.db"));
        assert_eq!(sqlite_file_path("sqlite:///var/lib/certbind/db.sqlite?cache=shared"), Some("/var/lib/certbind/db.sqlite"));
        assert_eq!(sqlite_file_path("sqlite:a.db"), Some("a.db"));
        assert_eq!(sqlite_file_path("sqlite::memory:"), None);
        assert_eq!(sqlite_file_path("sqlite://a.db?mode=ro"), None);
        assert_eq!(sqlite_file_path("postgres://u@h/db"), None);
    }

    #[test]
    fn ids_are_26_crockford_characters_in_creation_order() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert_eq!(a.len(), 26);
        assert!(a.chars().all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)), "{a}");
        assert!(a < b, "{a} < {b}");
    }

    #[test]
    fn filters_number_their_placeholders() {
        let mut f = Filter::default();
        f.push("org_id", "=", Param::Text("o".into()));
        f.push("enabled", "=", Param::Int(1));
        assert_eq!(f.where_sql(), "WHERE org_id = $1 AND enabled = $2");
        assert_eq!(f.next_placeholder(), 3);
    }
}
