//! Reading the audit log (writing happens in [`super::commit_change`]).

use super::error::decode_error;
use super::{AuditEntry, Db, DbResult, Filter, Page, Param};
use sqlx::any::AnyRow;
use sqlx::Row;

fn from_row(row: &AnyRow) -> sqlx::Result<AuditEntry> {
    let detail: String = row.try_get("detail")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        detail: serde_json::from_str(&detail).map_err(decode_error)?,
        snapshot_version: row.try_get("snapshot_version")?,
        at: row.try_get("at")?,
    })
}

/// Newest first. `org_id` is an org's id, or `""` for the platform's log. `cursor` is the id
/// of the last entry of the previous page.
pub async fn list(
    db: &Db,
    org_id: &str,
    action: Option<&str>,
    cursor: Option<i64>,
    limit: i64,
) -> DbResult<Page<AuditEntry>> {
    let mut f = Filter::default();
    f.push("org_id", "=", Param::Text(org_id.to_string()));
    if let Some(cursor) = cursor {
        f.push("id", "<", Param::Int(cursor));
    }
    if let Some(action) = action {
        f.push("action", "=", Param::Text(action.to_string()));
    }
    let sql = format!(
        "SELECT id, org_id, actor, action, target, detail, snapshot_version, at FROM audit_log {} \
         ORDER BY id DESC LIMIT ${}",
        f.where_sql(),
        f.next_placeholder()
    );
    let rows = f.bind(sqlx::query(&sql)).bind(limit + 1).fetch_all(db.reader()).await?;
    let entries = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(entries, limit, |e| e.id.to_string()))
}
