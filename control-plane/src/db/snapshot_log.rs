//! `snapshot_log`: what each version of `snapshot_state` was. Every change the filter sees
//! writes its [`Change`]s here in its own transaction; every signature takes a version of its
//! own and records it here too. A snapshot service reads the versions it did not make itself
//! (another replica's, the command line's, a hand-over a cancelled request never made) from
//! here, and signs only versions it claimed, so no version is ever signed twice.

use super::{Backend, Db, DbResult, Tx};
use crate::domain::change::{decode_changes, encode_changes, Change};
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

/// The PostgreSQL channel every commit the other replicas act on is announced on: a change
/// (they fold it) and a stored signed snapshot (they serve it). The payload is the version.
pub const CHANNEL: &str = "certbind_snapshot";

/// Announces `version` on [`CHANNEL`] when the transaction commits (PostgreSQL; nothing on
/// SQLite, whose replicas are the processes on one file and look every second).
pub(crate) async fn notify(db: &Db, tx: &mut Tx, version: i64) -> sqlx::Result<()> {
    if db.backend() == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(version.to_string()).execute(&mut **tx).await?;
    }
    Ok(())
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

/// A version taken for a signature, and the version it follows (the last one committed
/// before it: what the snapshot signed under it holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub version: i64,
    pub previous: i64,
}

/// Takes a new version for a signature, in a transaction of its own, and prunes old rows.
/// The content of the snapshot signed under it is the content at `previous`.
///
/// `at_least` raises the version past the stored one: a service loading everything claims at
/// least the Unix time in milliseconds, so that after a restore from an older backup (or on a
/// fresh database) it still signs above every version proxies hold. The log row of a claim
/// that skips versions names the one it follows.
pub async fn claim(db: &Db, at_least: i64) -> DbResult<Claim> {
    let mut tx = db.begin().await?;
    let now = crate::time::now_rfc3339();
    let lock = if db.backend() == Backend::Postgres { " FOR UPDATE" } else { "" };
    let previous: i64 = sqlx::query(&format!("SELECT version FROM snapshot_state WHERE id = 1{lock}"))
        .fetch_one(&mut *tx)
        .await?
        .try_get("version")?;
    let version = previous.saturating_add(1).max(at_least);
    sqlx::query("UPDATE snapshot_state SET version = $1, updated_at = $2 WHERE id = 1")
        .bind(version)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    let skipped = (version != previous + 1).then_some(previous);
    sqlx::query("INSERT INTO snapshot_log (version, kind, changes, at, previous) VALUES ($1, 'signature', '[]', $2, $3)")
        .bind(version)
        .bind(&now)
        .bind(skipped)
        .execute(&mut *tx)
        .await?;
    // Rows, not version numbers, are what is kept (a claim may skip billions of versions);
    // finding the cut walks the index, so it is done now and then.
    if version % 64 == 0 || skipped.is_some() {
        sqlx::query(
            "DELETE FROM snapshot_log WHERE version < \
             (SELECT version FROM snapshot_log ORDER BY version DESC LIMIT 1 OFFSET $1)",
        )
        .bind(RETAINED_VERSIONS)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Claim { version, previous })
}

/// The log's rows for versions in `(after, upto]`, in order, each with the version it
/// follows. A version with no row (pruned, or written before the log existed) is missing
/// from the answer: the caller follows the chain of `previous` versions and compares.
pub async fn read(db: &Db, after: i64, upto: i64) -> DbResult<Vec<(i64, i64, LogEntry)>> {
    let rows = sqlx::query(
        "SELECT version, previous, kind, changes FROM snapshot_log WHERE version > $1 AND version <= $2 ORDER BY version",
    )
    .bind(after)
    .bind(upto)
    .fetch_all(db.reader())
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i64 = row.try_get("version")?;
        let previous: Option<i64> = row.try_get("previous")?;
        let kind: String = row.try_get("kind")?;
        let entry = match kind.as_str() {
            "signature" => LogEntry::Signature,
            _ => {
                let text: String = row.try_get("changes")?;
                decode_changes(&text).map_or(LogEntry::Unreadable, LogEntry::Changes)
            }
        };
        entries.push((version, previous.unwrap_or(version - 1), entry));
    }
    Ok(entries)
}
