//! Orgs: the unit of isolation. Managed by super-admin tokens and the command line.
//!
//! An org can be disabled and, once disabled, deleted:
//!
//! - **Disabled**: its admin tokens are refused (403) and nothing it owns can be changed, by
//!   anyone, until it is enabled again. In the snapshot, every claim it makes stays exactly as
//!   it was — its bindings, thumbprint mappings, SAN rules, blocklist and revocations — so no
//!   other org's certificate resolves differently; but its own constraints are replaced by
//!   [`disabled_constraint`](super::snapshot_data::disabled_constraint), which no certificate meets, so the filter refuses every
//!   certificate that resolves into the org (`certificate_not_allowed`, 403) on every route,
//!   and with them every token its issuers vouch for. Enabling it puts its constraints back.
//! - **Deleted**: every row it owns goes (users, bindings, admin tokens, rules, issuers,
//!   assigned domains) and so does its part of the snapshot: its cards are then certificates
//!   no org claims. Its audit log stays, filed under its id.

use super::snapshot_data::{disabled_constraint, load_rules, IdentityRows};
use super::{commit_change, new_id, Actor, AuditRecord, Db, DbError, DbResult, Org, Page, Tx, Visibility};
use crate::domain::Owner;
use crate::domain::change::{Change, Committed, IssuerRecord, MappingRecord};
use certbind_shared::Fingerprint;
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, name, created_at, disabled_at, allow_card_authentication";

fn from_row(row: &AnyRow) -> sqlx::Result<Org> {
    let disabled_at: Option<String> = row.try_get("disabled_at")?;
    Ok(Org {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        enabled: disabled_at.is_none(),
        disabled_at,
        allow_card_authentication: super::get_flag(row, "allow_card_authentication")?,
    })
}

/// Creates an org. `actor` is `None` for the very first org (created from the command line
/// before any org exists to attribute it to): the audit row is then filed under the new org.
pub async fn create(db: &Db, actor: Option<&Actor>, name: &str) -> DbResult<Org> {
    let org = Org {
        id: new_id(),
        name: name.to_string(),
        created_at: crate::time::now_rfc3339(),
        enabled: true,
        disabled_at: None,
        allow_card_authentication: false,
    };
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
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM orgs WHERE id = $1")).bind(id).fetch_optional(db.reader()).await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Finds an org by id or, failing that, by name (the command line accepts either).
pub async fn find(db: &Db, id_or_name: &str) -> DbResult<Option<Org>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM orgs WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1"))
        .bind(id_or_name)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, cursor: Option<&str>, limit: i64) -> DbResult<Page<Org>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM orgs WHERE id > $1 ORDER BY id LIMIT $2"))
        .bind(cursor.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(db.reader())
        .await?;
    let orgs = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(orgs, limit, |o| o.id.clone()))
}

/// The org's own constraints as the snapshot carries them while it is enabled.
async fn own_constraints(tx: &mut Tx, org_id: &str) -> sqlx::Result<Vec<Change>> {
    let mut rows = IdentityRows::default();
    load_rules(tx, Some(org_id), &mut rows).await?;
    Ok(rows.rules.into_iter().filter(|c| matches!(c, Change::AddConstraint(_))).collect())
}

/// The change that takes a rule out again.
fn removal(add: Change) -> Option<Change> {
    Some(match add {
        Change::Block { owner, fingerprint } => Change::Unblock { owner, fingerprint },
        Change::RevokeSerial(revoked) => Change::UnrevokeSerial(revoked),
        Change::MapPrincipal(MappingRecord { owner, fingerprint, .. }) => Change::UnmapPrincipal { owner, fingerprint },
        Change::AddSanRule(rule) => Change::RemoveSanRule(rule),
        Change::AddConstraint(constraint) => Change::RemoveConstraint(constraint),
        Change::UpsertIssuer(IssuerRecord { owner, issuer, .. }) => Change::RemoveIssuer { owner, issuer },
        _ => return None,
    })
}

/// Disables or enables an org (see the module's documentation). Setting the state it has is
/// a no-op that still answers the org (version 0, no changes).
pub async fn set_enabled(db: &Db, actor: &Actor, id: &str, enabled: bool) -> DbResult<Committed<Org>> {
    let mut tx = db.begin_change().await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM orgs WHERE id = $1")).bind(id).fetch_optional(&mut *tx).await?;
    let Some(mut org) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no org {id:?}")));
    };
    if org.enabled == enabled {
        return Ok(Committed { value: org, version: 0, changes: Vec::new() });
    }
    let own = own_constraints(&mut tx, id).await?;
    let marker = disabled_constraint(id);
    let changes: Vec<Change> = if enabled {
        removal(marker).into_iter().chain(own).collect()
    } else {
        own.into_iter().filter_map(removal).chain([marker]).collect()
    };
    org.disabled_at = (!enabled).then(crate::time::now_rfc3339);
    org.enabled = enabled;
    sqlx::query("UPDATE orgs SET disabled_at = $1 WHERE id = $2").bind(&org.disabled_at).bind(id).execute(&mut *tx).await?;
    let changed = Owner::Org(org.id.clone());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action: if enabled { "org.enable" } else { "org.disable" },
        target: org.id.clone(),
        detail: serde_json::json!({ "name": org.name }),
    };
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: org, version, changes })
}

/// Whether `org_id` allows Card Authentication certificates to be bound, read in `tx`.
pub(crate) async fn allows_card_authentication(tx: &mut Tx, org_id: &str) -> sqlx::Result<bool> {
    let row = sqlx::query("SELECT allow_card_authentication FROM orgs WHERE id = $1").bind(org_id).fetch_optional(&mut **tx).await?;
    row.map_or(Ok(false), |row| super::get_flag(&row, "allow_card_authentication"))
}

/// Lets the org bind PIV Card Authentication certificates, or stops it. Bindings made while
/// it was allowed stay: the filter decides on every request whether a route admits them.
/// Setting what it is already is a no-op that still answers the org.
///
/// It runs as a change (one at a time with binds): a bind reads the allowance under that lock,
/// so a revocation cannot commit between a bind's check and the bind's own commit.
pub async fn set_allow_card_authentication(db: &Db, actor: &Actor, id: &str, allow: bool) -> DbResult<Org> {
    let mut tx = db.begin_change().await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM orgs WHERE id = $1")).bind(id).fetch_optional(&mut *tx).await?;
    let Some(mut org) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no org {id:?}")));
    };
    if org.allow_card_authentication == allow {
        return Ok(org);
    }
    sqlx::query("UPDATE orgs SET allow_card_authentication = $1 WHERE id = $2")
        .bind(i32::from(allow))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    org.allow_card_authentication = allow;
    let changed = Owner::Org(org.id.clone());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action: "org.card_authentication",
        target: org.id.clone(),
        detail: serde_json::json!({ "allow_card_authentication": allow }),
    };
    commit_change(db, tx, record, Visibility::Internal).await?;
    Ok(org)
}

/// Deletes a disabled org and every row it owns (see the module's documentation); its audit
/// log stays. An enabled org is refused (409): disabling first is the confirmation.
pub async fn delete(db: &Db, actor: &Actor, id: &str) -> DbResult<Committed<Org>> {
    let mut tx = db.begin_change().await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM orgs WHERE id = $1")).bind(id).fetch_optional(&mut *tx).await?;
    let Some(org) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no org {id:?}")));
    };
    if org.enabled {
        return Err(DbError::conflict("disable the org first (PATCH with {\"enabled\": false}); only a disabled org is deleted"));
    }
    // What the snapshot holds of the org: its rules but its own constraints (the marker stands
    // in for them), and its bindings.
    let mut rules = IdentityRows::default();
    load_rules(&mut tx, Some(id), &mut rules).await?;
    let mut changes: Vec<Change> = rules
        .rules
        .into_iter()
        .filter(|c| !matches!(c, Change::AddConstraint(_)))
        .chain([disabled_constraint(id)])
        .filter_map(removal)
        .collect();
    let bindings = sqlx::query("SELECT fingerprint FROM smart_card_links WHERE org_id = $1 ORDER BY fingerprint")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    let bound = bindings.len();
    for row in bindings {
        let text: String = row.try_get("fingerprint")?;
        if let Ok(fingerprint) = Fingerprint::from_canonical_hex(&text) {
            changes.push(Change::RemoveBinding { fingerprint });
        }
    }
    // Children first: every table that names the org by foreign key.
    for table in [
        "smart_card_links",
        "users",
        "admin_tokens",
        "blocklist",
        "token_issuers",
        "mapping_rules",
        "thumbprint_mappings",
        "identity_constraints",
        "org_domains",
    ] {
        sqlx::query(&format!("DELETE FROM {table} WHERE org_id = $1")).bind(id).execute(&mut *tx).await?;
    }
    sqlx::query("DELETE FROM orgs WHERE id = $1").bind(id).execute(&mut *tx).await?;
    let changed = Owner::Org(org.id.clone());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action: "org.delete",
        target: org.id.clone(),
        detail: serde_json::json!({ "name": org.name, "bindings": bound }),
    };
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: org, version, changes })
}
