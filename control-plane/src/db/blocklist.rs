//! The blocklist: certificates refused whatever they are bound to, named by fingerprint or by
//! issuer and serial. An org's entries apply to certificates of that org; the platform's to
//! every certificate.

use super::error::{or_race, Race};
use super::{commit_change, get_optional_fingerprint, new_id, Actor, AuditRecord, BlocklistEntry, Db, DbError, DbResult, Page, Tx, Viewer, Visibility};
use crate::domain::Owner;
use crate::domain::change::{Change, Committed, RevokedSerialRecord};
use certbind_shared::Fingerprint;
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, org_id, fingerprint, issuer_dn, serial, reason, created_at";

fn from_row(row: &AnyRow) -> sqlx::Result<BlocklistEntry> {
    Ok(BlocklistEntry {
        id: row.try_get("id")?,
        owner: Owner::from_column(row.try_get("org_id")?),
        fingerprint: get_optional_fingerprint(row, "fingerprint")?,
        issuer_dn: row.try_get("issuer_dn")?,
        serial: row.try_get("serial")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

/// What is blocked, validated and canonical: a fingerprint as 64 lowercase hex digits, an
/// issuer DN in the certificate walk's RFC 4514 rendering, a serial normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockTarget {
    Fingerprint(Fingerprint),
    Serial { issuer_dn: String, serial: String },
}

/// The snapshot change an entry makes (`blocked`) or undoes.
fn change_of(entry: &BlocklistEntry, blocked: bool) -> Vec<Change> {
    let owner = entry.owner.clone();
    match (&entry.fingerprint, &entry.issuer_dn, &entry.serial) {
        (Some(fingerprint), _, _) if blocked => vec![Change::Block { owner, fingerprint: *fingerprint }],
        (Some(fingerprint), _, _) => vec![Change::Unblock { owner, fingerprint: *fingerprint }],
        (None, Some(issuer_dn), Some(serial)) => {
            let (issuer_dn, serial) = (issuer_dn.clone(), serial.clone());
            if blocked {
                vec![Change::RevokeSerial(RevokedSerialRecord { owner, issuer_dn, serial })]
            } else {
                vec![Change::UnrevokeSerial(RevokedSerialRecord { owner, issuer_dn, serial })]
            }
        }
        _ => Vec::new(),
    }
}

pub async fn add(
    db: &Db,
    actor: &Actor,
    owner: Owner,
    target: BlockTarget,
    reason: Option<String>,
) -> DbResult<Committed<BlocklistEntry>> {
    let (fingerprint, issuer_dn, serial) = match target {
        BlockTarget::Fingerprint(fp) => (Some(fp), None, None),
        BlockTarget::Serial { issuer_dn, serial } => (None, Some(issuer_dn), Some(serial)),
    };
    let entry = BlocklistEntry {
        id: new_id(),
        owner,
        fingerprint,
        issuer_dn,
        serial,
        reason,
        created_at: crate::time::now_rfc3339(),
    };
    let mut tx = db.begin_change().await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO blocklist ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
    ))
    .bind(&entry.id)
    .bind(entry.owner.org_id())
    .bind(entry.fingerprint.map(|f| f.to_hex()))
    .bind(&entry.issuer_dn)
    .bind(&entry.serial)
    .bind(&entry.reason)
    .bind(&entry.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| or_race(e, Race::ForeignKey, || DbError::not_found("the org no longer exists")))?;
    if inserted.rows_affected() == 0 {
        let whose = if entry.owner.is_platform() { "platform's" } else { "org's" };
        return Err(DbError::conflict(format!("this certificate is already on the {whose} blocklist")));
    }
    let record = AuditRecord {
        actor,
        changed: &entry.owner,
        action: "blocklist.add",
        target: entry.id.clone(),
        detail: serde_json::json!({
            "fingerprint": entry.fingerprint, "issuer_dn": entry.issuer_dn,
            "serial": entry.serial, "reason": entry.reason,
        }),
    };
    let changes = change_of(&entry, true);
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: entry, version, changes })
}

pub async fn get(db: &Db, viewer: &Viewer, id: &str) -> DbResult<Option<BlocklistEntry>> {
    let sql = format!("SELECT {COLUMNS} FROM blocklist WHERE id = $1 AND {}", Viewer::predicate(2));
    let row = viewer.bind(sqlx::query(&sql).bind(id)).fetch_optional(db.reader()).await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, viewer: &Viewer, cursor: Option<&str>, limit: i64) -> DbResult<Page<BlocklistEntry>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM blocklist WHERE {} AND id > $3 ORDER BY id LIMIT $4",
        Viewer::predicate(1)
    );
    let rows = viewer.bind(sqlx::query(&sql)).bind(cursor.unwrap_or("")).bind(limit + 1).fetch_all(db.reader()).await?;
    let entries = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(entries, limit, |e| e.id.clone()))
}

pub async fn remove(db: &Db, actor: &Actor, viewer: &Viewer, id: &str) -> DbResult<Committed<BlocklistEntry>> {
    let mut tx = db.begin_change().await?;
    let sql = format!("DELETE FROM blocklist WHERE id = $1 AND {} RETURNING {COLUMNS}", Viewer::predicate(2));
    let row = viewer.bind(sqlx::query(&sql).bind(id)).fetch_optional(&mut *tx).await?;
    let Some(entry) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no blocklist entry {id:?} in this org")));
    };
    let record = AuditRecord {
        actor,
        changed: &entry.owner,
        action: "blocklist.remove",
        target: entry.id.clone(),
        detail: serde_json::json!({
            "fingerprint": entry.fingerprint, "issuer_dn": entry.issuer_dn, "serial": entry.serial,
        }),
    };
    let changes = change_of(&entry, false);
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: entry, version, changes })
}

/// The entry, if any, that refuses a certificate of `org_id` (its own or the platform's).
pub(crate) async fn applicable(
    tx: &mut Tx,
    org_id: &str,
    fingerprint: &Fingerprint,
    issuer_dn: &str,
    serial: &str,
) -> sqlx::Result<Option<BlocklistEntry>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM blocklist WHERE (org_id IS NULL OR org_id = $1) \
         AND (fingerprint = $2 OR (issuer_dn = $3 AND serial = $4)) ORDER BY id LIMIT 1"
    ))
    .bind(org_id)
    .bind(fingerprint.to_hex())
    .bind(issuer_dn)
    .bind(serial)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(from_row).transpose()
}
