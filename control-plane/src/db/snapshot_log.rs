//! `snapshot_log`: what each version of `snapshot_state` was. Every change the filter sees
//! writes its [`Change`]s here in its own transaction; every signature takes a version of its
//! own and records it here too. A snapshot service reads the versions it did not make itself
//! (another replica's, the command line's, a hand-over a cancelled request never made) from
//! here, and signs only versions it claimed, so no version is ever signed twice.

use super::{bump_version, Db, DbResult, Tx};
use crate::snapshot::change::{decode_changes, encode_changes, Change};
use sqlx::Row;

/// Log rows kept behind the newest: minutes of heavy writing, days of ordinary use. A
/// service further behind than this rebuilds from the tables.
pub const RETAINED_VERSIONS: i64 = 100_000;

/// One version, as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// A change the filter sees.
    Changes(Vec<Change>),
    /// A signed snapshot: nothing changed.
    Signature,
    /// A row this build cannot read (a newer build wrote it): rebuild from the tables.
    Unreadable,
}

/// Records the changes committed at `version`, in the change's transaction.
pub(crate) async fn append(tx: &mut Tx, version: i64, changes: &[Change], now: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO snapshot_log (version, kind, changes, at) VALUES ($1, 'change', $2, $3)")
        .bind(version)
        .bind(encode_changes(changes))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes a new version for a signature, in a transaction of its own, and prunes old rows.
/// The content of the snapshot signed under it is the content at `version - 1`.
pub async fn claim(db: &Db) -> DbResult<i64> {
    let mut tx = db.begin().await?;
    let now = crate::time::now_rfc3339();
    let version = bump_version(&mut tx, &now).await?;
    sqlx::query("INSERT INTO snapshot_log (version, kind, changes, at) VALUES ($1, 'signature', '[]', $2)")
        .bind(version)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM snapshot_log WHERE version < $1")
        .bind(version - RETAINED_VERSIONS)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(version)
}

/// The log's rows for versions in `(after, upto]`, in order. A version with no row (pruned,
/// or written before the log existed) is missing from the answer: the caller compares.
pub async fn read(db: &Db, after: i64, upto: i64) -> DbResult<Vec<(i64, LogEntry)>> {
    let rows = sqlx::query("SELECT version, kind, changes FROM snapshot_log WHERE version > $1 AND version <= $2 ORDER BY version")
        .bind(after)
        .bind(upto)
        .fetch_all(db.reader())
        .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i64 = row.try_get("version")?;
        let kind: String = row.try_get("kind")?;
        let entry = match kind.as_str() {
            "signature" => LogEntry::Signature,
            _ => {
                let text: String = row.try_get("changes")?;
                decode_changes(&text).map_or(LogEntry::Unreadable, LogEntry::Changes)
            }
        };
        entries.push((version, entry));
    }
    Ok(entries)
}
