//! `signed_snapshots`: the signed bytes of the newest snapshot versions. The service that
//! claimed a version (`snapshot_log::claim`) stores what it signed under it; every other
//! service on the database serves those bytes for that version rather than signing its own,
//! so a proxy sees one byte string per version, whichever replica answers.

use super::{Db, DbResult};
use sqlx::Row;

/// Rows kept: a service further behind than this serves the newest and skips the rest (its
/// proxies then get a full snapshot instead of a delta). Each row is a whole snapshot.
pub const RETAINED_SNAPSHOTS: i64 = 8;

/// Stores the bytes signed under `version` (claimed by this service: no other row can exist
/// for it) and prunes all but the newest rows.
pub async fn store(db: &Db, version: i64, bytes: &[u8]) -> DbResult<()> {
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO signed_snapshots (version, bytes, signed_at) VALUES ($1, $2, $3)")
        .bind(version)
        .bind(bytes.to_vec())
        .bind(crate::time::now_rfc3339())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM signed_snapshots WHERE version < \
         (SELECT version FROM signed_snapshots ORDER BY version DESC LIMIT 1 OFFSET $1)",
    )
    .bind(RETAINED_SNAPSHOTS - 1)
    .execute(&mut *tx)
    .await?;
    super::snapshot_log::notify(db, &mut tx, version).await?;
    tx.commit().await?;
    Ok(())
}

/// The stored versions above `after`, oldest first (without their bytes: a cheap check).
pub async fn versions_after(db: &Db, after: i64) -> DbResult<Vec<i64>> {
    let rows = sqlx::query("SELECT version FROM signed_snapshots WHERE version > $1 ORDER BY version")
        .bind(after)
        .fetch_all(db.reader())
        .await?;
    rows.iter().map(|row| row.try_get("version").map_err(Into::into)).collect()
}

/// The bytes stored for `version`, if it is still kept.
pub async fn bytes(db: &Db, version: i64) -> DbResult<Option<Vec<u8>>> {
    let row = sqlx::query("SELECT bytes FROM signed_snapshots WHERE version = $1").bind(version).fetch_optional(db.reader()).await?;
    Ok(match row {
        Some(row) => Some(row.try_get("bytes")?),
        None => None,
    })
}
