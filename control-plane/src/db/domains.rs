//! Domains a super-admin assigned to an org. An org admin's SAN mapping rule must name one of
//! them, or a subdomain of one: SAN claims are then approved, not first-come, so an org cannot
//! claim another's addresses before it does.

use super::{commit_change, Actor, AuditRecord, Db, DbError, DbResult, Tx, Visibility};
use crate::domain::records::OrgDomain;
use crate::domain::Owner;
use sqlx::Row;

/// Assigns `domain` (lowercase, checked by the caller) to an existing org.
pub async fn assign(db: &Db, actor: &Actor, org_id: &str, domain: &str) -> DbResult<OrgDomain> {
    let assigned = OrgDomain { org_id: org_id.to_string(), domain: domain.to_string(), created_at: crate::time::now_rfc3339() };
    let mut tx = db.begin().await?;
    let org = sqlx::query("SELECT 1 AS one FROM orgs WHERE id = $1").bind(org_id).fetch_optional(&mut *tx).await?;
    if org.is_none() {
        return Err(DbError::not_found(format!("no org {org_id:?}")));
    }
    let inserted = sqlx::query("INSERT INTO org_domains (org_id, domain, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(&assigned.org_id)
        .bind(&assigned.domain)
        .bind(&assigned.created_at)
        .execute(&mut *tx)
        .await?;
    if inserted.rows_affected() == 0 {
        return Err(DbError::conflict(format!("{domain:?} is already assigned to this org")));
    }
    commit(db, tx, actor, "org_domain.assign", &assigned).await?;
    Ok(assigned)
}

/// Takes an assignment back. SAN rules made under it stay (a super-admin deletes those).
pub async fn unassign(db: &Db, actor: &Actor, org_id: &str, domain: &str) -> DbResult<OrgDomain> {
    let mut tx = db.begin().await?;
    let row = sqlx::query("SELECT org_id, domain, created_at FROM org_domains WHERE org_id = $1 AND domain = $2")
        .bind(org_id)
        .bind(domain)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| DbError::not_found(format!("{domain:?} is not assigned to org {org_id:?}")))?;
    let assigned = from_row(&row)?;
    sqlx::query("DELETE FROM org_domains WHERE org_id = $1 AND domain = $2").bind(org_id).bind(domain).execute(&mut *tx).await?;
    commit(db, tx, actor, "org_domain.unassign", &assigned).await?;
    Ok(assigned)
}

/// Audits an assignment's change in the org's log and commits it.
async fn commit(db: &Db, tx: Tx, actor: &Actor, action: &'static str, assigned: &OrgDomain) -> DbResult<()> {
    let changed = Owner::Org(assigned.org_id.clone());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action,
        target: assigned.domain.clone(),
        detail: serde_json::json!({ "domain": assigned.domain }),
    };
    commit_change(db, tx, record, Visibility::Internal).await?;
    Ok(())
}

fn from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<OrgDomain> {
    Ok(OrgDomain { org_id: row.try_get("org_id")?, domain: row.try_get("domain")?, created_at: row.try_get("created_at")? })
}

/// The org's domains, in order (an org has a handful: no paging).
pub async fn list(db: &Db, org_id: &str) -> DbResult<Vec<OrgDomain>> {
    let rows = sqlx::query("SELECT org_id, domain, created_at FROM org_domains WHERE org_id = $1 ORDER BY domain")
        .bind(org_id)
        .fetch_all(db.reader())
        .await?;
    rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>().map_err(DbError::from)
}

/// Whether `domain` is one of the org's assigned domains or a subdomain of one.
pub async fn covers(tx: &mut Tx, org_id: &str, domain: &str) -> DbResult<bool> {
    let rows = sqlx::query("SELECT domain FROM org_domains WHERE org_id = $1").bind(org_id).fetch_all(&mut **tx).await?;
    for row in rows {
        let assigned: String = row.try_get("domain")?;
        if domain == assigned || domain.strip_suffix(assigned.as_str()).is_some_and(|head| head.ends_with('.')) {
            return Ok(true);
        }
    }
    Ok(false)
}
