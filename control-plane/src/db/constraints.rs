//! Identity constraints an owner places on certificates: allowed issuers, required policy
//! OIDs, allowed SAN email domains. An org's apply to certificates of that org; the
//! platform's to every certificate.

use super::error::{or_race, Race};
use super::{commit_change, new_id, Actor, AuditRecord, Db, DbError, DbResult, IdentityConstraint, Page, Viewer, Visibility};
use crate::domain::Owner;
use crate::domain::change::{Change, Committed, ConstraintRecord};
use certbind_shared::snapshot::ConstraintKind;
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, org_id, kind, value, created_at";

/// The kinds the table's CHECK admits.
pub const KINDS: [&str; 4] = ["allowed_issuer_dn", "required_policy_oid", "san_email_domain", "require_fresh_crl"];

fn from_row(row: &AnyRow) -> sqlx::Result<IdentityConstraint> {
    Ok(IdentityConstraint {
        id: row.try_get("id")?,
        owner: Owner::from_column(row.try_get("org_id")?),
        kind: row.try_get("kind")?,
        value: row.try_get("value")?,
        created_at: row.try_get("created_at")?,
    })
}

fn change_of(constraint: &IdentityConstraint, added: bool) -> Vec<Change> {
    let Some(kind) = ConstraintKind::from_name(&constraint.kind) else { return Vec::new() };
    let (owner, value) = (constraint.owner.clone(), constraint.value.clone());
    if added {
        vec![Change::AddConstraint(ConstraintRecord { owner, kind, value })]
    } else {
        vec![Change::RemoveConstraint(ConstraintRecord { owner, kind, value })]
    }
}

pub async fn create(db: &Db, actor: &Actor, owner: Owner, kind: &str, value: &str) -> DbResult<Committed<IdentityConstraint>> {
    let constraint = IdentityConstraint {
        id: new_id(),
        owner,
        kind: kind.to_string(),
        value: value.to_string(),
        created_at: crate::time::now_rfc3339(),
    };
    let mut tx = db.begin_change().await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO identity_constraints ({COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
    ))
    .bind(&constraint.id)
    .bind(constraint.owner.org_id())
    .bind(&constraint.kind)
    .bind(&constraint.value)
    .bind(&constraint.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| or_race(e, Race::ForeignKey, || DbError::not_found("the org no longer exists")))?;
    if inserted.rows_affected() == 0 {
        return Err(DbError::conflict(format!("this {kind} constraint already exists")));
    }
    let audit = AuditRecord {
        actor,
        changed: &constraint.owner,
        action: "constraint.create",
        target: constraint.id.clone(),
        detail: serde_json::json!({ "kind": constraint.kind, "value": constraint.value }),
    };
    let changes = change_of(&constraint, true);
    let version = commit_change(db, tx, audit, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: constraint, version, changes })
}

pub async fn get(db: &Db, viewer: &Viewer, id: &str) -> DbResult<Option<IdentityConstraint>> {
    let sql = format!("SELECT {COLUMNS} FROM identity_constraints WHERE id = $1 AND {}", Viewer::predicate(2));
    let row = viewer.bind(sqlx::query(&sql).bind(id)).fetch_optional(db.reader()).await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, viewer: &Viewer, cursor: Option<&str>, limit: i64) -> DbResult<Page<IdentityConstraint>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM identity_constraints WHERE {} AND id > $3 ORDER BY id LIMIT $4",
        Viewer::predicate(1)
    );
    let rows = viewer.bind(sqlx::query(&sql)).bind(cursor.unwrap_or("")).bind(limit + 1).fetch_all(db.reader()).await?;
    let constraints = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(constraints, limit, |c| c.id.clone()))
}

pub async fn delete(db: &Db, actor: &Actor, viewer: &Viewer, id: &str) -> DbResult<Committed<IdentityConstraint>> {
    let mut tx = db.begin_change().await?;
    let sql = format!("DELETE FROM identity_constraints WHERE id = $1 AND {} RETURNING {COLUMNS}", Viewer::predicate(2));
    let row = viewer.bind(sqlx::query(&sql).bind(id)).fetch_optional(&mut *tx).await?;
    let Some(constraint) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no constraint {id:?} in this org")));
    };
    let audit = AuditRecord {
        actor,
        changed: &constraint.owner,
        action: "constraint.delete",
        target: constraint.id.clone(),
        detail: serde_json::json!({ "kind": constraint.kind, "value": constraint.value }),
    };
    let changes = change_of(&constraint, false);
    let version = commit_change(db, tx, audit, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: constraint, version, changes })
}

