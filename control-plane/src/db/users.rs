//! Users: the people cards are bound to, each in one org.

use super::error::{or_race, Race};
use super::{commit_change, new_id, Actor, AuditRecord, Db, DbError, DbResult, Page, User, Visibility};
use crate::domain::Owner;
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, org_id, name, email, created_at";

fn from_row(row: &AnyRow) -> sqlx::Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn create(db: &Db, actor: &Actor, name: &str, email: Option<&str>) -> DbResult<User> {
    let user = User {
        id: new_id(),
        org_id: actor.org_id.clone(),
        name: name.to_string(),
        email: email.map(str::to_string),
        created_at: crate::time::now_rfc3339(),
    };
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO users (id, org_id, name, email, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&user.id)
        .bind(&user.org_id)
        .bind(&user.name)
        .bind(&user.email)
        .bind(&user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| or_race(e, Race::Unique, || DbError::conflict(format!("a user named {name:?} already exists in this org"))))?;
    let changed = Owner::Org(user.org_id.clone());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action: "user.create",
        target: user.id.clone(),
        detail: serde_json::json!({ "name": user.name, "email": user.email }),
    };
    commit_change(db, tx, record, Visibility::Internal).await?;
    Ok(user)
}

pub async fn get(db: &Db, org_id: &str, id: &str) -> DbResult<Option<User>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND org_id = $2"))
        .bind(id)
        .bind(org_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// A user of `org_id` by name (the command line accepts a name or an id).
pub async fn find_by_name(db: &Db, org_id: &str, name: &str) -> DbResult<Option<User>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE name = $1 AND org_id = $2"))
        .bind(name)
        .bind(org_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, org_id: &str, cursor: Option<&str>, limit: i64) -> DbResult<Page<User>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM users WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(org_id)
    .bind(cursor.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let users = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(users, limit, |u| u.id.clone()))
}

/// Deletes a user who has no card bindings left (revoke them first: a revocation is a
/// deliberate, audited act of its own). A binding made while the user is deleted loses to
/// the delete (the bind answers 404) or wins (the delete answers 409), on both databases.
pub async fn delete(db: &Db, actor: &Actor, id: &str) -> DbResult<User> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND org_id = $2"))
        .bind(id)
        .bind(&actor.org_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(user) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no user {id:?} in this org")));
    };
    let bound = |n: i64| DbError::conflict(format!("user {id:?} still has {n} card binding(s); revoke them first"));
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM smart_card_links WHERE user_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    if count > 0 {
        return Err(bound(count));
    }
    sqlx::query("DELETE FROM users WHERE id = $1 AND org_id = $2")
        .bind(id)
        .bind(&actor.org_id)
        .execute(&mut *tx)
        .await
        // A binding committed after the count: the foreign key keeps the user.
        .map_err(|e| or_race(e, Race::ForeignKey, || bound(1)))?;
    let changed = Owner::Org(user.org_id.clone());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action: "user.delete",
        target: user.id.clone(),
        detail: serde_json::json!({ "name": user.name }),
    };
    commit_change(db, tx, record, Visibility::Internal).await?;
    Ok(user)
}

/// Whether `user_id` names a user of `org_id`, inside a write transaction (so the check and
/// the insert that depends on it see the same data).
pub(crate) async fn exists_in_org(tx: &mut super::Tx, org_id: &str, user_id: &str) -> sqlx::Result<bool> {
    let row = sqlx::query("SELECT 1 AS one FROM users WHERE id = $1 AND org_id = $2")
        .bind(user_id)
        .bind(org_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}
