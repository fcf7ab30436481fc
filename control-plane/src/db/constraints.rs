//! Identity constraints an org places on certificates: allowed issuers, required policy
//! OIDs, allowed SAN email domains.

use super::{commit_change, new_id, Actor, AuditRecord, Db, IdentityConstraint, Page, Visibility};
use crate::error::{ApiError, ApiResult};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, org_id, kind, value, created_at";

/// The kinds the table's CHECK admits.
pub const KINDS: [&str; 3] = ["allowed_issuer_dn", "required_policy_oid", "san_email_domain"];

fn from_row(row: &AnyRow) -> sqlx::Result<IdentityConstraint> {
    Ok(IdentityConstraint {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        kind: row.try_get("kind")?,
        value: row.try_get("value")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn create(db: &Db, actor: &Actor, kind: &str, value: &str) -> ApiResult<(IdentityConstraint, i64)> {
    let constraint = IdentityConstraint {
        id: new_id(),
        org_id: actor.org_id.clone(),
        kind: kind.to_string(),
        value: value.to_string(),
        created_at: crate::time::now_rfc3339(),
    };
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO identity_constraints ({COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
    ))
    .bind(&constraint.id)
    .bind(&constraint.org_id)
    .bind(&constraint.kind)
    .bind(&constraint.value)
    .bind(&constraint.created_at)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("this {kind} constraint already exists in this org")));
    }
    let audit = AuditRecord {
        actor,
        action: "constraint.create",
        target: constraint.id.clone(),
        detail: serde_json::json!({ "kind": constraint.kind, "value": constraint.value }),
    };
    let version = commit_change(tx, audit, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((constraint, version))
}

pub async fn get(db: &Db, org_id: &str, id: &str) -> ApiResult<Option<IdentityConstraint>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM identity_constraints WHERE id = $1 AND org_id = $2"))
        .bind(id)
        .bind(org_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, org_id: &str, cursor: Option<&str>, limit: i64) -> ApiResult<Page<IdentityConstraint>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM identity_constraints WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(org_id)
    .bind(cursor.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let constraints = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(constraints, limit, |c| c.id.clone()))
}

pub async fn delete(db: &Db, actor: &Actor, id: &str) -> ApiResult<(IdentityConstraint, i64)> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!("DELETE FROM identity_constraints WHERE id = $1 AND org_id = $2 RETURNING {COLUMNS}"))
        .bind(id)
        .bind(&actor.org_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(constraint) = row.as_ref().map(from_row).transpose()? else {
        return Err(ApiError::not_found(format!("no constraint {id:?} in this org")));
    };
    let audit = AuditRecord {
        actor,
        action: "constraint.delete",
        target: constraint.id.clone(),
        detail: serde_json::json!({ "kind": constraint.kind, "value": constraint.value }),
    };
    let version = commit_change(tx, audit, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((constraint, version))
}
