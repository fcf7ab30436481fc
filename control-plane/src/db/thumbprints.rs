//! Explicit thumbprint mappings: a certificate fingerprint → a principal name, for service
//! certificates that belong to no user.

use super::{commit_change, Actor, AuditRecord, Db, Page, ThumbprintMapping, Visibility};
use crate::error::{ApiError, ApiResult};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "fingerprint, org_id, principal, created_at";

fn from_row(row: &AnyRow) -> sqlx::Result<ThumbprintMapping> {
    Ok(ThumbprintMapping {
        fingerprint: row.try_get("fingerprint")?,
        org_id: row.try_get("org_id")?,
        principal: row.try_get("principal")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn create(db: &Db, actor: &Actor, fingerprint: &str, principal: &str) -> ApiResult<(ThumbprintMapping, i64)> {
    let mapping = ThumbprintMapping {
        fingerprint: fingerprint.to_string(),
        org_id: actor.org_id.clone(),
        principal: principal.to_string(),
        created_at: crate::time::now_rfc3339(),
    };
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO thumbprint_mappings ({COLUMNS}) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
    ))
    .bind(&mapping.fingerprint)
    .bind(&mapping.org_id)
    .bind(&mapping.principal)
    .bind(&mapping.created_at)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("fingerprint {fingerprint} is already mapped")));
    }
    let audit = AuditRecord {
        actor,
        action: "thumbprint_mapping.create",
        target: mapping.fingerprint.clone(),
        detail: serde_json::json!({ "principal": mapping.principal }),
    };
    let version = commit_change(tx, audit, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((mapping, version))
}

pub async fn get(db: &Db, org_id: &str, fingerprint: &str) -> ApiResult<Option<ThumbprintMapping>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM thumbprint_mappings WHERE fingerprint = $1 AND org_id = $2"))
        .bind(fingerprint)
        .bind(org_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, org_id: &str, cursor: Option<&str>, limit: i64) -> ApiResult<Page<ThumbprintMapping>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM thumbprint_mappings WHERE org_id = $1 AND fingerprint > $2 ORDER BY fingerprint LIMIT $3"
    ))
    .bind(org_id)
    .bind(cursor.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let mappings = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(mappings, limit, |m| m.fingerprint.clone()))
}

pub async fn delete(db: &Db, actor: &Actor, fingerprint: &str) -> ApiResult<(ThumbprintMapping, i64)> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!(
        "DELETE FROM thumbprint_mappings WHERE fingerprint = $1 AND org_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(fingerprint)
    .bind(&actor.org_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(mapping) = row.as_ref().map(from_row).transpose()? else {
        return Err(ApiError::not_found(format!("no thumbprint mapping {fingerprint} in this org")));
    };
    let audit = AuditRecord {
        actor,
        action: "thumbprint_mapping.delete",
        target: mapping.fingerprint.clone(),
        detail: serde_json::json!({ "principal": mapping.principal }),
    };
    let version = commit_change(tx, audit, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((mapping, version))
}
