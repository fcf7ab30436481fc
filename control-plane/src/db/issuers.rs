//! Trusted bearer-token issuers and their signing keys (JWKS), for proof of possession.

use super::orgs::conflict_or_internal;
use super::{commit_change, new_id, Actor, AuditRecord, Db, Page, TokenIssuer, Visibility};
use crate::error::{ApiError, ApiResult};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, org_id, issuer, audiences, jwks, created_at, updated_at";

fn from_row(row: &AnyRow) -> sqlx::Result<TokenIssuer> {
    let audiences: Option<String> = row.try_get("audiences")?;
    let jwks: String = row.try_get("jwks")?;
    let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
    Ok(TokenIssuer {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        issuer: row.try_get("issuer")?,
        audiences: audiences.map(|a| serde_json::from_str(&a)).transpose().map_err(decode)?,
        jwks: serde_json::from_str(&jwks).map_err(decode)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn create(
    db: &Db,
    actor: &Actor,
    issuer: &str,
    audiences: Option<Vec<String>>,
    jwks: serde_json::Value,
) -> ApiResult<(TokenIssuer, i64)> {
    let now = crate::time::now_rfc3339();
    let record = TokenIssuer {
        id: new_id(),
        org_id: actor.org_id.clone(),
        issuer: issuer.to_string(),
        audiences,
        jwks,
        created_at: now.clone(),
        updated_at: now,
    };
    let mut tx = db.begin().await?;
    sqlx::query(&format!("INSERT INTO token_issuers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
        .bind(&record.id)
        .bind(&record.org_id)
        .bind(&record.issuer)
        .bind(record.audiences.as_ref().map(|a| serde_json::Value::from(a.clone()).to_string()))
        .bind(record.jwks.to_string())
        .bind(&record.created_at)
        .bind(&record.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or_internal(e, || format!("issuer {issuer:?} is already registered")))?;
    let audit = AuditRecord {
        actor,
        action: "issuer.create",
        target: record.id.clone(),
        detail: serde_json::json!({ "issuer": record.issuer, "audiences": record.audiences }),
    };
    let version = commit_change(tx, audit, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((record, version))
}

pub async fn get(db: &Db, org_id: &str, id: &str) -> ApiResult<Option<TokenIssuer>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM token_issuers WHERE id = $1 AND org_id = $2"))
        .bind(id)
        .bind(org_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, org_id: &str, cursor: Option<&str>, limit: i64) -> ApiResult<Page<TokenIssuer>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM token_issuers WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(org_id)
    .bind(cursor.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let issuers = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(issuers, limit, |i| i.id.clone()))
}

/// Replaces an issuer's keys and/or audiences (key rotation at the issuer).
pub async fn update(
    db: &Db,
    actor: &Actor,
    id: &str,
    audiences: Option<Option<Vec<String>>>,
    jwks: Option<serde_json::Value>,
) -> ApiResult<(TokenIssuer, i64)> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!(
        "UPDATE token_issuers SET \
           audiences = CASE WHEN $3 = 1 THEN $4 ELSE audiences END, \
           jwks = COALESCE($5, jwks), updated_at = $6 \
         WHERE id = $1 AND org_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&actor.org_id)
    .bind(i32::from(audiences.is_some()))
    .bind(audiences.clone().flatten().map(|a| serde_json::Value::from(a).to_string()))
    .bind(jwks.as_ref().map(|j| j.to_string()))
    .bind(crate::time::now_rfc3339())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(issuer) = row.as_ref().map(from_row).transpose()? else {
        return Err(ApiError::not_found(format!("no issuer {id:?} in this org")));
    };
    let audit = AuditRecord {
        actor,
        action: "issuer.update",
        target: issuer.id.clone(),
        detail: serde_json::json!({ "audiences_changed": audiences.is_some(), "jwks_changed": jwks.is_some() }),
    };
    let version = commit_change(tx, audit, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((issuer, version))
}

pub async fn delete(db: &Db, actor: &Actor, id: &str) -> ApiResult<(TokenIssuer, i64)> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!("DELETE FROM token_issuers WHERE id = $1 AND org_id = $2 RETURNING {COLUMNS}"))
        .bind(id)
        .bind(&actor.org_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(issuer) = row.as_ref().map(from_row).transpose()? else {
        return Err(ApiError::not_found(format!("no issuer {id:?} in this org")));
    };
    let audit = AuditRecord {
        actor,
        action: "issuer.delete",
        target: issuer.id.clone(),
        detail: serde_json::json!({ "issuer": issuer.issuer }),
    };
    let version = commit_change(tx, audit, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((issuer, version))
}
