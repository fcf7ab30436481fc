//! Proxy credentials: what a filter sends to fetch the snapshot. They read the snapshot and
//! nothing else, belong to no org (a proxy serves every org's routes), and are made and
//! revoked from the command line. Stored, like admin tokens, only as their SHA-256.

use super::tokens::{generate_secret, hash_token, MAX_TOKEN_LEN};
use super::{commit_change, new_id, Actor, AuditRecord, Db, DbError, DbResult, Page, ProxyCredential, Visibility};
use crate::domain::Owner;
use sqlx::any::AnyRow;
use sqlx::Row;

/// Every proxy credential starts with this: a secret scanner, a person, and the admin API
/// (which refuses it by name) can tell one from an admin token.
pub const PROXY_PREFIX: &str = "cbp_";

const COLUMNS: &str = "id, label, created_at, last_used_at, last_fetch_at, last_fetch_version";

fn from_row(row: &AnyRow) -> sqlx::Result<ProxyCredential> {
    Ok(ProxyCredential {
        id: row.try_get("id")?,
        label: row.try_get("label")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        last_fetch_at: row.try_get("last_fetch_at")?,
        last_fetch_version: row.try_get("last_fetch_version")?,
    })
}

/// Creates a credential; returns its record and the secret, which is never stored.
pub async fn create(db: &Db, actor: &Actor, label: Option<&str>) -> DbResult<(ProxyCredential, String)> {
    let secret = generate_secret(PROXY_PREFIX);
    let credential = ProxyCredential {
        id: new_id(),
        label: label.map(str::to_string),
        created_at: crate::time::now_rfc3339(),
        last_used_at: None,
        last_fetch_at: None,
        last_fetch_version: None,
    };
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO proxy_credentials (id, token_hash, label, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&credential.id)
        .bind(hash_token(&secret))
        .bind(&credential.label)
        .bind(&credential.created_at)
        .execute(&mut *tx)
        .await?;
    let record = AuditRecord {
        actor,
        changed: &Owner::Platform,
        action: "proxy_credential.create",
        target: credential.id.clone(),
        detail: serde_json::json!({ "label": credential.label }),
    };
    commit_change(db, tx, record, Visibility::Internal).await?;
    Ok((credential, secret))
}

/// The credential a bearer secret names, if any.
pub async fn lookup(db: &Db, secret: &str) -> DbResult<Option<ProxyCredential>> {
    if secret.len() > MAX_TOKEN_LEN || !secret.starts_with(PROXY_PREFIX) {
        return Ok(None);
    }
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM proxy_credentials WHERE token_hash = $1"))
        .bind(hash_token(secret))
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, cursor: Option<&str>, limit: i64) -> DbResult<Page<ProxyCredential>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM proxy_credentials WHERE id > $1 ORDER BY id LIMIT $2"))
        .bind(cursor.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(db.reader())
        .await?;
    let credentials = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(credentials, limit, |c| c.id.clone()))
}

pub async fn delete(db: &Db, actor: &Actor, id: &str) -> DbResult<ProxyCredential> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!("DELETE FROM proxy_credentials WHERE id = $1 RETURNING {COLUMNS}"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(credential) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no proxy credential {id:?}")));
    };
    let record = AuditRecord {
        actor,
        changed: &Owner::Platform,
        action: "proxy_credential.delete",
        target: credential.id.clone(),
        detail: serde_json::json!({ "label": credential.label }),
    };
    commit_change(db, tx, record, Visibility::Internal).await?;
    Ok(credential)
}

/// One answered snapshot fetch: which credential, when, and the version it holds since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub credential_id: String,
    pub at: String,
    pub version: i64,
}

/// Records answered fetches, all in one transaction (a revoke answers every waiting proxy at
/// once: one commit for all of them, not one each).
pub async fn record_fetches(db: &Db, fetches: &[Fetch]) -> DbResult<()> {
    let mut tx = db.begin().await?;
    for fetch in fetches {
        sqlx::query("UPDATE proxy_credentials SET last_used_at = $1, last_fetch_at = $1, last_fetch_version = $2 WHERE id = $3")
            .bind(&fetch.at)
            .bind(fetch.version)
            .bind(&fetch.credential_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// How many credentials fetched since `since` hold each version, newest first, at most
/// `limit` versions.
pub async fn versions_held(db: &Db, since: &str, limit: i64) -> DbResult<Vec<(i64, i64)>> {
    let rows = sqlx::query(
        "SELECT last_fetch_version AS version, COUNT(*) AS proxies FROM proxy_credentials \
         WHERE last_fetch_at >= $1 AND last_fetch_version IS NOT NULL \
         GROUP BY last_fetch_version ORDER BY last_fetch_version DESC LIMIT $2",
    )
    .bind(since)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter().map(|row| Ok((row.try_get("version")?, row.try_get("proxies")?))).collect()
}
