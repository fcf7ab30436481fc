//! Everything the filter needs, read in one consistent transaction: the input of a full
//! snapshot build.

use super::{get_flag, Backend, Db};
use futures_util::TryStreamExt;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRow {
    /// Canonical lowercase hex.
    pub fingerprint: String,
    pub user_id: String,
    pub org_id: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerRow {
    pub issuer: String,
    pub audiences: Option<String>,
    /// The JWKS JSON document as stored.
    pub jwks: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintRow {
    pub org_id: String,
    pub kind: String,
    pub value: String,
}

/// The identity data at one version. Every list is sorted by its key, so two loads of the
/// same data compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityRows {
    /// `snapshot_state.version` in the same transaction as the rows.
    pub version: i64,
    pub bindings: Vec<BindingRow>,
    /// Blocked fingerprints (canonical hex), all orgs, deduplicated.
    pub blocked_fingerprints: Vec<String>,
    /// Blocked (issuer DN, serial) pairs, all orgs, deduplicated.
    pub revoked_serials: Vec<(String, String)>,
    /// (fingerprint, principal).
    pub thumbprint_mappings: Vec<(String, String)>,
    /// (san kind, lowercase domain), deduplicated.
    pub san_rules: Vec<(String, String)>,
    pub issuers: Vec<IssuerRow>,
    pub constraints: Vec<ConstraintRow>,
}

/// Reads the identity data and its version in one read-only transaction.
pub async fn load(db: &Db) -> sqlx::Result<IdentityRows> {
    let mut bindings = Vec::new();
    let mut rows = load_streaming(db, &mut bindings).await?;
    rows.bindings = bindings;
    Ok(rows)
}

/// Where [`load_streaming`] hands the bindings.
pub trait BindingSink {
    /// Called once, before the first binding, with their number and everything else.
    fn start(&mut self, bindings: usize, rest: &IdentityRows);
    fn push(&mut self, row: BindingRow);
}

impl BindingSink for Vec<BindingRow> {
    fn start(&mut self, bindings: usize, _rest: &IdentityRows) {
        self.reserve_exact(bindings);
    }

    fn push(&mut self, row: BindingRow) {
        Vec::push(self, row);
    }
}

/// [`load`], handing each binding to `sink` in ascending fingerprint order (byte order of the
/// canonical hex) instead of collecting them; the returned rows have no bindings. Everything
/// else is read first, so the sink learns the number of bindings and the rest of the data
/// before the first binding arrives.
pub async fn load_streaming(db: &Db, sink: &mut impl BindingSink) -> sqlx::Result<IdentityRows> {
    let (begin, by_fingerprint) = match db.backend() {
        // A deferred SQLite transaction reads one WAL snapshot from its first SELECT on.
        Backend::Sqlite => ("BEGIN", "ORDER BY fingerprint"),
        // Byte order whatever the database's locale.
        Backend::Postgres => ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "ORDER BY fingerprint COLLATE \"C\""),
    };
    let mut tx = db.reader().begin_with(begin).await?;
    let version: i64 =
        sqlx::query("SELECT version FROM snapshot_state WHERE id = 1").fetch_one(&mut *tx).await?.try_get("version")?;
    let mut rows = IdentityRows { version, ..Default::default() };

    for row in sqlx::query(
        "SELECT DISTINCT fingerprint FROM blocklist WHERE fingerprint IS NOT NULL ORDER BY fingerprint",
    )
    .fetch_all(&mut *tx)
    .await?
    {
        rows.blocked_fingerprints.push(row.try_get("fingerprint")?);
    }
    for row in sqlx::query(
        "SELECT DISTINCT issuer_dn, serial FROM blocklist WHERE serial IS NOT NULL ORDER BY issuer_dn, serial",
    )
    .fetch_all(&mut *tx)
    .await?
    {
        rows.revoked_serials.push((row.try_get("issuer_dn")?, row.try_get("serial")?));
    }
    for row in sqlx::query("SELECT fingerprint, principal FROM thumbprint_mappings ORDER BY fingerprint")
        .fetch_all(&mut *tx)
        .await?
    {
        rows.thumbprint_mappings.push((row.try_get("fingerprint")?, row.try_get("principal")?));
    }
    for row in sqlx::query("SELECT DISTINCT san_kind, domain FROM mapping_rules ORDER BY san_kind, domain")
        .fetch_all(&mut *tx)
        .await?
    {
        rows.san_rules.push((row.try_get("san_kind")?, row.try_get("domain")?));
    }
    for row in sqlx::query("SELECT issuer, audiences, jwks FROM token_issuers ORDER BY issuer").fetch_all(&mut *tx).await? {
        rows.issuers.push(IssuerRow {
            issuer: row.try_get("issuer")?,
            audiences: row.try_get("audiences")?,
            jwks: row.try_get("jwks")?,
        });
    }
    for row in sqlx::query("SELECT org_id, kind, value FROM identity_constraints ORDER BY org_id, kind, value")
        .fetch_all(&mut *tx)
        .await?
    {
        rows.constraints.push(ConstraintRow {
            org_id: row.try_get("org_id")?,
            kind: row.try_get("kind")?,
            value: row.try_get("value")?,
        });
    }

    let count: i64 = sqlx::query("SELECT COUNT(*) FROM smart_card_links").fetch_one(&mut *tx).await?.try_get(0)?;
    sink.start(usize::try_from(count).unwrap_or(0), &rows);
    // Streamed, and read by column position: a million rows must not sit in memory.
    let query = format!("SELECT fingerprint, user_id, org_id, enabled FROM smart_card_links {by_fingerprint}");
    let mut bindings = sqlx::query(&query).fetch(&mut *tx);
    while let Some(row) = bindings.try_next().await? {
        sink.push(BindingRow {
            fingerprint: row.try_get(0)?,
            user_id: row.try_get(1)?,
            org_id: row.try_get(2)?,
            enabled: get_flag(&row, 3)?,
        });
    }
    drop(bindings);
    tx.commit().await?;
    Ok(rows)
}
