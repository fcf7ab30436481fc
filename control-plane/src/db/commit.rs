//! Finishing a change: who made it (the audit row), whether the filter sees it (a new
//! snapshot version, the changes logged under it, checked against what the snapshot encodes
//! and the org's quotas), and the commit.

use super::{snapshot_log, Backend, Db, DbError, DbResult, Tx};
use crate::domain::Owner;
use sqlx::Row;

/// Who made a change, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The org of the actor's token (the CLI: the org it works on; the service: none).
    pub org_id: String,
    /// `token:<id>` for an admin token, `cli` for the command line.
    pub name: String,
    /// A super-admin token, or the command line (whoever runs it owns the database).
    pub super_admin: bool,
}

impl Actor {
    pub fn cli(org_id: impl Into<String>) -> Self {
        Actor { org_id: org_id.into(), name: "cli".into(), super_admin: true }
    }

    /// The service itself (re-signing, migrations): platform changes.
    pub fn service(name: &str) -> Self {
        Actor { org_id: String::new(), name: name.into(), super_admin: true }
    }
}

/// The audit row a change writes.
pub struct AuditRecord<'a> {
    pub actor: &'a Actor,
    /// Whose data changed: the row is filed there, and also in the actor's org when that
    /// differs (a super-admin working on another org, or on platform rules).
    pub changed: &'a Owner,
    pub action: &'static str,
    pub target: String,
    pub detail: serde_json::Value,
}

/// Whether a change touches what the filter sees, and so needs a new snapshot version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility<'a> {
    /// Bindings, blocklist, issuers, mapping rules, constraints: the changes, written to the
    /// snapshot log under the new version.
    Snapshot(&'a [crate::domain::change::Change]),
    /// Orgs, users, tokens: audited, not in the snapshot.
    Internal,
}

/// Whether `org_id` is disabled, read in `tx` (see `super::orgs`).
async fn org_is_disabled(tx: &mut Tx, org_id: &str) -> sqlx::Result<bool> {
    let row = sqlx::query("SELECT disabled_at FROM orgs WHERE id = $1").bind(org_id).fetch_optional(&mut **tx).await?;
    Ok(match row {
        Some(row) => row.try_get::<Option<String>, _>("disabled_at")?.is_some(),
        None => false,
    })
}

/// Finishes a change: bumps the snapshot version and logs the changes when the filter sees
/// them, writes the audit row(s), commits. Returns the version the change was committed at,
/// if it bumped one.
///
/// A change the filter sees is checked first, still inside the transaction: every change
/// against what the snapshot can encode (422, nothing stored), and the changed org's quotas
/// (422 `quota-exceeded`). So nothing the API accepts can later fail to encode.
pub async fn commit_change(db: &Db, mut tx: Tx, record: AuditRecord<'_>, visibility: Visibility<'_>) -> DbResult<Option<i64>> {
    let now = crate::time::now_rfc3339();
    // Nothing of a disabled org changes but its state: its snapshot part is held as disabling
    // left it (see `orgs`).
    if let Owner::Org(org) = record.changed {
        if !record.action.starts_with("org.") && org_is_disabled(&mut tx, org).await? {
            return Err(DbError::Forbidden(format!("the org {org:?} is disabled: enable it before changing what it holds")));
        }
    }
    let version = match visibility {
        Visibility::Snapshot(changes) => {
            // Only what goes in is checked: taking out a row that cannot be encoded (one a full
            // build quarantines) must stay possible.
            for change in changes.iter().filter(|c| c.adds()) {
                crate::snapshot::validate::validate_change(change).map_err(|e| {
                    DbError::invalid(crate::snapshot::validate::field_of(change, &e), format!("cannot go into the snapshot: {e}"))
                })?;
            }
            if let Owner::Org(org) = record.changed {
                check_quotas(db, &mut tx, org, record.action, changes).await?;
            }
            let version = bump_version(&mut tx, &now).await?;
            snapshot_log::append(&mut tx, version, changes, &now).await?;
            snapshot_log::notify(db, &mut tx, version).await?;
            Some(version)
        }
        Visibility::Internal => None,
    };
    let detail = record.detail.to_string();
    let mut orgs = vec![record.changed.key()];
    if record.actor.org_id != record.changed.key() {
        orgs.push(record.actor.org_id.as_str());
    }
    for org in orgs {
        sqlx::query(
            "INSERT INTO audit_log (org_id, actor, action, target, detail, snapshot_version, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(org)
        .bind(&record.actor.name)
        .bind(record.action)
        .bind(&record.target)
        .bind(&detail)
        .bind(version)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(version)
}

/// Refuses the change when, with it, `org` holds more of a kind of rule than its quota. Runs
/// after the change's own writes, in its transaction (changes run one at a time, see
/// [`Db::begin_change`]), so the counts include it and cannot be raced. Only a change that
/// adds a row is held to a count (an org over a lowered quota can still replace and remove
/// rules); JWKS bytes are checked whenever a JWKS is written.
async fn check_quotas(
    db: &Db,
    tx: &mut Tx,
    org: &str,
    action: &str,
    changes: &[crate::domain::change::Change],
) -> DbResult<()> {
    use crate::domain::change::Change;
    let quotas = db.quotas();
    let mut kinds: Vec<(&str, &str, u64, &str)> = Vec::new();
    // A change that replaces a row (a canonical spelling for a stored one) adds nothing.
    if changes.iter().any(|c| !c.adds()) {
        return Ok(());
    }
    for change in changes {
        let kind = match change {
            Change::Block { .. } | Change::RevokeSerial(_) => {
                ("blocklist", "COUNT(*)", quotas.blocklist_entries, "blocklist entries (CERTBIND_QUOTA_BLOCKLIST_ENTRIES)")
            }
            Change::AddSanRule(_) => {
                ("mapping_rules", "COUNT(*)", quotas.mapping_rules, "SAN mapping rules (CERTBIND_QUOTA_MAPPING_RULES)")
            }
            Change::MapPrincipal(_) => (
                "thumbprint_mappings",
                "COUNT(*)",
                quotas.thumbprint_mappings,
                "thumbprint mappings (CERTBIND_QUOTA_THUMBPRINT_MAPPINGS)",
            ),
            Change::AddConstraint(_) => {
                ("identity_constraints", "COUNT(*)", quotas.constraints, "identity constraints (CERTBIND_QUOTA_CONSTRAINTS)")
            }
            Change::UpsertIssuer(_) => {
                if action != "issuer.update" {
                    kinds.push(("token_issuers", "COUNT(*)", quotas.issuers, "token issuer registrations (CERTBIND_QUOTA_ISSUERS)"));
                }
                let bytes = match db.backend() {
                    Backend::Postgres => "COALESCE(SUM(OCTET_LENGTH(jwks)), 0)",
                    Backend::Sqlite => "COALESCE(SUM(LENGTH(CAST(jwks AS BLOB))), 0)",
                };
                ("token_issuers", bytes, quotas.jwks_bytes, "bytes of JWKS documents (CERTBIND_QUOTA_JWKS_BYTES)")
            }
            _ => continue,
        };
        kinds.push(kind);
    }
    kinds.dedup();
    for (table, measure, quota, what) in kinds {
        let held: i64 = sqlx::query(&format!("SELECT CAST({measure} AS BIGINT) AS held FROM {table} WHERE org_id = $1"))
            .bind(org)
            .fetch_one(&mut **tx)
            .await?
            .try_get("held")?;
        if u64::try_from(held).unwrap_or(0) > quota {
            return Err(DbError::QuotaExceeded(format!(
                "the org may hold at most {quota} {what}; this change would make it {held}: remove some first, or ask \
                 the operator to raise the quota"
            )));
        }
    }
    Ok(())
}

/// `snapshot_state.version + 1`, in `tx` (which then holds the row until it ends).
pub(crate) async fn bump_version(tx: &mut Tx, now: &str) -> sqlx::Result<i64> {
    let row = sqlx::query("UPDATE snapshot_state SET version = version + 1, updated_at = $1 WHERE id = 1 RETURNING version")
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
    row.try_get::<i64, _>("version")
}

