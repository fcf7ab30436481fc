//! Orgs: the unit of isolation. Managed by super-admin tokens and the command line.

use super::{commit_change, new_id, Actor, AuditRecord, Db, DbError, DbResult, Org, Owner, Page, Visibility};
use sqlx::any::AnyRow;
use sqlx::Row;

fn from_row(row: &AnyRow) -> sqlx::Result<Org> {
    Ok(Org { id: row.try_get("id")?, name: row.try_get("name")?, created_at: row.try_get("created_at")? })
}

/// Creates an org. `actor` is `None` for the very first org (created from the command line
/// before any org exists to attribute it to): the audit row is then filed under the new org.
pub async fn create(db: &Db, actor: Option<&Actor>, name: &str) -> DbResult<Org> {
    let org = Org { id: new_id(), name: name.to_string(), created_at: crate::time::now_rfc3339() };
    let mut tx = db.begin().await?;
    let inserted = sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(&org.id)
        .bind(&org.name)
        .bind(&org.created_at)
        .execute(&mut *tx)
        .await?;
    if inserted.rows_affected() == 0 {
        return Err(DbError::conflict(format!("an org named {name:?} already exists")));
    }
    let own = Actor::cli(org.id.clone());
    let actor = actor.unwrap_or(&own);
    let changed = Owner::Org(org.id.clone());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action: "org.create",
        target: org.id.clone(),
        detail: serde_json::json!({ "name": org.name }),
    };
    commit_change(db, tx, record, Visibility::Internal).await?;
    Ok(org)
}

pub async fn get(db: &Db, id: &str) -> DbResult<Option<Org>> {
    let row = sqlx::query("SELECT id, name, created_at FROM orgs WHERE id = $1")
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Finds an org by id or, failing that, by name (the command line accepts either).
pub async fn find(db: &Db, id_or_name: &str) -> DbResult<Option<Org>> {
    let row = sqlx::query("SELECT id, name, created_at FROM orgs WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1")
        .bind(id_or_name)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, cursor: Option<&str>, limit: i64) -> DbResult<Page<Org>> {
    let rows = sqlx::query("SELECT id, name, created_at FROM orgs WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(cursor.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(db.reader())
        .await?;
    let orgs = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(orgs, limit, |o| o.id.clone()))
}
