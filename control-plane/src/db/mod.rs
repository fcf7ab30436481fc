//! Storage: one query layer over SQLite (the default, a file beside the service) and
//! PostgreSQL (when `DATABASE_URL` names one).
//!
//! Queries go through `sqlx::Any` with `$N` placeholders, which both drivers accept, so each
//! query is written once. Every change runs in one transaction that also writes its audit row
//! and, when the filter sees the change, bumps `snapshot_state.version`: the version is
//! committed with its change, and the row lock it takes orders concurrent writers, so
//! committed versions strictly increase.

pub mod audit;
pub mod blocklist;
pub mod cas;
pub mod claims;
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

use crate::domain::Owner;
use anyhow::Context;
use certbind_shared::encoding::ulid_render;
use certbind_shared::Fingerprint;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use std::time::Duration;

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

/// Who made a change, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The org of the actor's token (the CLI: the org it works on; the service: none).
    pub org_id: String,
    /// `token:<id>` for an admin token, `cli` for the command line.
    pub name: String,
    /// A super-admin token, or the command line (whoever runs it owns the database).
    pub super_admin: bool,
}

impl Actor {
    pub fn cli(org_id: impl Into<String>) -> Self {
        Actor { org_id: org_id.into(), name: "cli".into(), super_admin: true }
    }

    /// The service itself (re-signing, migrations): platform changes.
    pub fn service(name: &str) -> Self {
        Actor { org_id: String::new(), name: name.into(), super_admin: true }
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

/// The audit row a change writes.
pub struct AuditRecord<'a> {
    pub actor: &'a Actor,
    /// Whose data changed: the row is filed there, and also in the actor's org when that
    /// differs (a super-admin working on another org, or on platform rules).
    pub changed: &'a Owner,
    pub action: &'static str,
    pub target: String,
    pub detail: serde_json::Value,
}

/// Whether a change touches what the filter sees, and so needs a new snapshot version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility<'a> {
    /// Bindings, blocklist, issuers, mapping rules, constraints: the changes, written to the
    /// snapshot log under the new version.
    Snapshot(&'a [crate::domain::change::Change]),
    /// Orgs, users, tokens: audited, not in the snapshot.
    Internal,
}

/// Finishes a change: bumps the snapshot version and logs the changes when the filter sees
/// them, writes the audit row(s), commits. Returns the version the change was committed at,
/// if it bumped one.
///
/// A change the filter sees is checked first, still inside the transaction: every change
/// against what the snapshot can encode (422, nothing stored), and the changed org's quotas
/// (422 `quota-exceeded`). So nothing the API accepts can later fail to encode.
pub async fn commit_change(db: &Db, mut tx: Tx, record: AuditRecord<'_>, visibility: Visibility<'_>) -> DbResult<Option<i64>> {
    let now = crate::time::now_rfc3339();
    // Nothing of a disabled org changes but its state: its snapshot part is held as disabling
    // left it (see `orgs`).
    if let Owner::Org(org) = record.changed {
        if !record.action.starts_with("org.") && orgs::is_disabled(&mut tx, org).await? {
            return Err(DbError::Forbidden(format!("the org {org:?} is disabled: enable it before changing what it holds")));
        }
    }
    let version = match visibility {
        Visibility::Snapshot(changes) => {
            // Only what goes in is checked: taking out a row that cannot be encoded (one a full
            // build quarantines) must stay possible.
            for change in changes.iter().filter(|c| c.adds()) {
                crate::snapshot::validate::validate_change(change).map_err(|e| {
                    DbError::invalid(crate::snapshot::validate::field_of(change, &e), format!("cannot go into the snapshot: {e}"))
                })?;
            }
            if let Owner::Org(org) = record.changed {
                check_quotas(db, &mut tx, org, record.action, changes).await?;
            }
            let version = bump_version(&mut tx, &now).await?;
            snapshot_log::append(&mut tx, version, changes, &now).await?;
            snapshot_log::notify(db, &mut tx, version).await?;
            Some(version)
        }
        Visibility::Internal => None,
    };
    let detail = record.detail.to_string();
    let mut orgs = vec![record.changed.key()];
    if record.actor.org_id != record.changed.key() {
        orgs.push(record.actor.org_id.as_str());
    }
    for org in orgs {
        sqlx::query(
            "INSERT INTO audit_log (org_id, actor, action, target, detail, snapshot_version, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(org)
        .bind(&record.actor.name)
        .bind(record.action)
        .bind(&record.target)
        .bind(&detail)
        .bind(version)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(version)
}

/// Refuses the change when, with it, `org` holds more of a kind of rule than its quota. Runs
/// after the change's own writes, in its transaction (changes run one at a time, see
/// [`Db::begin_change`]), so the counts include it and cannot be raced. Only a change that
/// adds a row is held to a count (an org over a lowered quota can still replace and remove
/// rules); JWKS bytes are checked whenever a JWKS is written.
async fn check_quotas(
    db: &Db,
    tx: &mut Tx,
    org: &str,
    action: &str,
    changes: &[crate::domain::change::Change],
) -> DbResult<()> {
    use crate::domain::change::Change;
    let quotas = db.quotas();
    let mut kinds: Vec<(&str, &str, u64, &str)> = Vec::new();
    // A change that replaces a row (a canonical spelling for a stored one) adds nothing.
    if changes.iter().any(|c| !c.adds()) {
        return Ok(());
    }
    for change in changes {
        let kind = match change {
            Change::Block { .. } | Change::RevokeSerial(_) => {
                ("blocklist", "COUNT(*)", quotas.blocklist_entries, "blocklist entries (CERTBIND_QUOTA_BLOCKLIST_ENTRIES)")
            }
            Change::AddSanRule(_) => {
                ("mapping_rules", "COUNT(*)", quotas.mapping_rules, "SAN mapping rules (CERTBIND_QUOTA_MAPPING_RULES)")
            }
            Change::MapPrincipal(_) => (
                "thumbprint_mappings",
                "COUNT(*)",
                quotas.thumbprint_mappings,
                "thumbprint mappings (CERTBIND_QUOTA_THUMBPRINT_MAPPINGS)",
            ),
            Change::AddConstraint(_) => {
                ("identity_constraints", "COUNT(*)", quotas.constraints, "identity constraints (CERTBIND_QUOTA_CONSTRAINTS)")
            }
            Change::UpsertIssuer(_) => {
                if action != "issuer.update" {
                    kinds.push(("token_issuers", "COUNT(*)", quotas.issuers, "token issuer registrations (CERTBIND_QUOTA_ISSUERS)"));
                }
                let bytes = match db.backend() {
                    Backend::Postgres => "COALESCE(SUM(OCTET_LENGTH(jwks)), 0)",
                    Backend::Sqlite => "COALESCE(SUM(LENGTH(CAST(jwks AS BLOB))), 0)",
                };
                ("token_issuers", bytes, quotas.jwks_bytes, "bytes of JWKS documents (CERTBIND_QUOTA_JWKS_BYTES)")
            }
            _ => continue,
        };
        kinds.push(kind);
    }
    kinds.dedup();
    for (table, measure, quota, what) in kinds {
        let held: i64 = sqlx::query(&format!("SELECT CAST({measure} AS BIGINT) AS held FROM {table} WHERE org_id = $1"))
            .bind(org)
            .fetch_one(&mut **tx)
            .await?
            .try_get("held")?;
        if u64::try_from(held).unwrap_or(0) > quota {
            return Err(DbError::QuotaExceeded(format!(
                "the org may hold at most {quota} {what}; this change would make it {held}: remove some first, or ask \
                 the operator to raise the quota"
            )));
        }
    }
    Ok(())
}

/// `snapshot_state.version + 1`, in `tx` (which then holds the row until it ends).
pub(crate) async fn bump_version(tx: &mut Tx, now: &str) -> sqlx::Result<i64> {
    let row = sqlx::query("UPDATE snapshot_state SET version = version + 1, updated_at = $1 WHERE id = 1 RETURNING version")
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
    row.try_get::<i64, _>("version")
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
