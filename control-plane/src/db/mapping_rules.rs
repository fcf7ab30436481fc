//! Identity mapping rules: which SAN kind (email or UPN) in which domain may name a principal
//! when a certificate has no binding and no thumbprint mapping.

use super::{commit_change, new_id, Actor, AuditRecord, Db, MappingRule, Page, Visibility};
use crate::error::{ApiError, ApiResult};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, org_id, san_kind, domain, created_at";

fn from_row(row: &AnyRow) -> sqlx::Result<MappingRule> {
    Ok(MappingRule {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        san_kind: row.try_get("san_kind")?,
        domain: row.try_get("domain")?,
        created_at: row.try_get("created_at")?,
    })
}

/// `san_kind` is `email` or `upn`; `domain` lowercase (validated by the caller).
pub async fn create(db: &Db, actor: &Actor, san_kind: &str, domain: &str) -> ApiResult<(MappingRule, i64)> {
    let rule = MappingRule {
        id: new_id(),
        org_id: actor.org_id.clone(),
        san_kind: san_kind.to_string(),
        domain: domain.to_string(),
        created_at: crate::time::now_rfc3339(),
    };
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO mapping_rules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
    ))
    .bind(&rule.id)
    .bind(&rule.org_id)
    .bind(&rule.san_kind)
    .bind(&rule.domain)
    .bind(&rule.created_at)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("a {san_kind} rule for {domain:?} already exists in this org")));
    }
    let audit = AuditRecord {
        actor,
        action: "mapping_rule.create",
        target: rule.id.clone(),
        detail: serde_json::json!({ "san_kind": rule.san_kind, "domain": rule.domain }),
    };
    let version = commit_change(tx, audit, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((rule, version))
}

pub async fn get(db: &Db, org_id: &str, id: &str) -> ApiResult<Option<MappingRule>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM mapping_rules WHERE id = $1 AND org_id = $2"))
        .bind(id)
        .bind(org_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, org_id: &str, cursor: Option<&str>, limit: i64) -> ApiResult<Page<MappingRule>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM mapping_rules WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(org_id)
    .bind(cursor.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let rules = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rules, limit, |r| r.id.clone()))
}

pub async fn delete(db: &Db, actor: &Actor, id: &str) -> ApiResult<(MappingRule, i64)> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!("DELETE FROM mapping_rules WHERE id = $1 AND org_id = $2 RETURNING {COLUMNS}"))
        .bind(id)
        .bind(&actor.org_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(rule) = row.as_ref().map(from_row).transpose()? else {
        return Err(ApiError::not_found(format!("no mapping rule {id:?} in this org")));
    };
    let audit = AuditRecord {
        actor,
        action: "mapping_rule.delete",
        target: rule.id.clone(),
        detail: serde_json::json!({ "san_kind": rule.san_kind, "domain": rule.domain }),
    };
    let version = commit_change(tx, audit, Visibility::Snapshot).await?.unwrap_or_default();
    Ok((rule, version))
}
