//! The blocklist: certificates refused whatever they are bound to, named by fingerprint or by
//! issuer and serial.

use super::{commit_change, new_id, Actor, AuditRecord, BlocklistEntry, Db, Page, Visibility};
use crate::error::{ApiError, ApiResult};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, org_id, fingerprint, issuer_dn, serial, reason, created_at";

fn from_row(row: &AnyRow) -> sqlx::Result<BlocklistEntry> {
    Ok(BlocklistEntry {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        fingerprint: row.try_get("fingerprint")?,
        issuer_dn: row.try_get("issuer_dn")?,
        serial: row.try_get("serial")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

/// What is blocked, validated and canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockTarget {
    Fingerprint(String),
    Serial { issuer_dn: String, serial: String },
}

pub async fn add(db: &Db, actor: &Actor, target: BlockTarget, reason: Option<String>) -> ApiResult<(BlocklistEntry, i64)> {
    let (fingerprint, issuer_dn, serial) = match target {
        BlockTarget::Fingerprint(fp) => (Some(fp), None, None),
        BlockTarget::Serial { issuer_dn, serial } => (None, Some(issuer_dn), Some(serial)),
    };
    let entry = BlocklistEntry {
        id: new_id(),
        org_id: actor.org_id.clone(),
        fingerprint,
        issuer_dn,
        serial,
        reason,
        created_at: crate::time::now_rfc3339(),
    };
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO blocklist ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
    ))
    .bind(&entry.id)
    .bind(&entry.org_id)
    .bind(&entry.fingerprint)
    .bind(&entry.issuer_dn)
    .bind(&entry.serial)
    .bind(&entry.reason)
    .bind(&entry.created_at)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict("this certificate is already on the org's blocklist"));
    }
    let record = AuditRecord {
        actor,
        action: "blocklist.add",
        target: entry.id.clone(),
        detail: serde_json::json!({
            "fingerprint": entry.fingerprint, "issuer_dn": entry.issuer_dn,
            "serial": entry.serial, "reason": entry.reason,
        }),
    };
    let version = commit_change(tx, record, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((entry, version))
}

pub async fn get(db: &Db, org_id: &str, id: &str) -> ApiResult<Option<BlocklistEntry>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM blocklist WHERE id = $1 AND org_id = $2"))
        .bind(id)
        .bind(org_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, org_id: &str, cursor: Option<&str>, limit: i64) -> ApiResult<Page<BlocklistEntry>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM blocklist WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(org_id)
    .bind(cursor.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let entries = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(entries, limit, |e| e.id.clone()))
}

pub async fn remove(db: &Db, actor: &Actor, id: &str) -> ApiResult<(BlocklistEntry, i64)> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!("DELETE FROM blocklist WHERE id = $1 AND org_id = $2 RETURNING {COLUMNS}"))
        .bind(id)
        .bind(&actor.org_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(entry) = row.as_ref().map(from_row).transpose()? else {
        return Err(ApiError::not_found(format!("no blocklist entry {id:?} in this org")));
    };
    let record = AuditRecord { actor, action: "blocklist.remove", target: entry.id.clone(), detail: serde_json::json!({}) };
    let version = commit_change(tx, record, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((entry, version))
}
