//! Bringing a database up to date: the schema (sqlx's migrations, one set per backend), then
//! the rows an older release stored in a form this one no longer reads.

use super::error::{self, DbResult};
use super::{commit_change, Actor, AuditRecord, Backend, Db, Visibility};
use crate::domain::Owner;
use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::Row;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

pub(super) async fn run(db: &Db) -> anyhow::Result<()> {
    let migrator = match db.backend() {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    accept_reworded(db, migrator).await.context("updating the checksums of reworded migrations")?;
    migrator.run(db.writer()).await.context("running database migrations")?;
    canonicalize_stored_dns(db).await.context("putting stored issuer DNs in canonical form")?;
    Ok(())
}

/// A migration whose text changed after it was released without changing what it does (a
/// comment reworded): the SHA-384 sqlx recorded for the released text.
struct Reworded {
    backend: Backend,
    version: i64,
    released_checksum: &'static str,
}

/// sqlx refuses to start on a database whose applied migration's checksum is not the shipped
/// file's. For these migrations, and only for their released text, the recorded checksum is
/// brought up to date first; any other difference is still refused.
const REWORDED: &[Reworded] = &[
    Reworded {
        backend: Backend::Sqlite,
        version: 1,
        released_checksum: "93764b8e8fd51811ca45aa542d830fb65abd523cd1e05389f439e979d150828dcf92677e5daba91f193eeecce34e10ba",
    },
    Reworded {
        backend: Backend::Postgres,
        version: 1,
        released_checksum: "9ea3fb35fa691d4f1009e9abe1fded1c20ac6885be3a4b4905e7af5ffabdf4912de155da6aa19e7820fd2c87443d2216",
    },
];

async fn accept_reworded(db: &Db, migrator: &Migrator) -> anyhow::Result<()> {
    let exists = match db.backend() {
        Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    };
    let tables: i64 = sqlx::query(exists).fetch_one(db.reader()).await?.try_get(0)?;
    if tables == 0 {
        return Ok(());
    }
    for reworded in REWORDED.iter().filter(|r| r.backend == db.backend()) {
        let Some(current) = migrator.iter().find(|m| m.version == reworded.version) else { continue };
        let released = certbind_shared::encoding::hex_decode(reworded.released_checksum).context("a released checksum")?;
        sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = $3")
            .bind(current.checksum.to_vec())
            .bind(reworded.version)
            .bind(released)
            .execute(db.writer())
            .await?;
    }
    Ok(())
}

/// Issuer DNs stored before they were parsed (revoked serials, allowed-issuer constraints)
/// are put in the canonical form the filter compares with; one that does not parse is left
/// as it is and logged (it matches no certificate, as before). A row whose canonical form
/// another row of the same owner already has is dropped. Cheap when there is nothing to do.
async fn canonicalize_stored_dns(db: &Db) -> DbResult<()> {
    use crate::domain::change::{Change, ConstraintRecord, RevokedSerialRecord};
    use certbind_shared::certificate::dn::canonical_dn;
    use certbind_shared::snapshot::ConstraintKind;
    let revoked = sqlx::query("SELECT id, org_id, issuer_dn, serial FROM blocklist WHERE issuer_dn IS NOT NULL")
        .fetch_all(db.reader())
        .await?;
    let allowed = sqlx::query("SELECT id, org_id, value FROM identity_constraints WHERE kind = 'allowed_issuer_dn'")
        .fetch_all(db.reader())
        .await?;
    let mut fixes: Vec<(&'static str, String, String, Vec<Change>)> = Vec::new();
    for row in &revoked {
        let (id, owner, dn, serial): (String, Option<String>, String, String) =
            (row.try_get("id")?, row.try_get("org_id")?, row.try_get("issuer_dn")?, row.try_get("serial")?);
        match canonical_dn(&dn) {
            Ok(canonical) if canonical != dn => {
                let owner = Owner::from_column(owner);
                let changes = vec![
                    Change::UnrevokeSerial(RevokedSerialRecord { owner: owner.clone(), issuer_dn: dn, serial: serial.clone() }),
                    Change::RevokeSerial(RevokedSerialRecord { owner, issuer_dn: canonical.clone(), serial }),
                ];
                fixes.push(("blocklist", id, canonical, changes));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(id, error = %e, "a revoked serial's issuer DN does not parse; it matches no certificate"),
        }
    }
    for row in &allowed {
        let (id, owner, dn): (String, Option<String>, String) = (row.try_get("id")?, row.try_get("org_id")?, row.try_get("value")?);
        match canonical_dn(&dn) {
            Ok(canonical) if canonical != dn => {
                let owner = Owner::from_column(owner);
                let kind = ConstraintKind::AllowedIssuerDn;
                let changes = vec![
                    Change::RemoveConstraint(ConstraintRecord { owner: owner.clone(), kind, value: dn }),
                    Change::AddConstraint(ConstraintRecord { owner, kind, value: canonical.clone() }),
                ];
                fixes.push(("identity_constraints", id, canonical, changes));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(id, error = %e, "an allowed-issuer constraint does not parse; it matches no certificate"),
        }
    }
    for (table, id, canonical, changes) in fixes {
        if let Some(e) = changes.iter().filter(|c| c.adds()).find_map(|c| crate::snapshot::validate_change(c).err()) {
            // Left as it is: a full build quarantines the row, and an admin can delete it.
            tracing::warn!(id, error = %e, "a stored issuer DN's canonical form cannot go into the snapshot; left unchanged");
            continue;
        }
        let mut tx = db.begin_change().await?;
        let column = if table == "blocklist" { "issuer_dn" } else { "value" };
        let updated = sqlx::query(&format!("UPDATE {table} SET {column} = $1 WHERE id = $2")).bind(&canonical).bind(&id).execute(&mut *tx).await;
        if let Err(e) = updated {
            if error::race_of(&e) != Some(error::Race::Unique) {
                return Err(e.into());
            }
            // The canonical row exists already: this spelling of it goes.
            drop(tx);
            tx = db.begin_change().await?;
            sqlx::query(&format!("DELETE FROM {table} WHERE id = $1")).bind(&id).execute(&mut *tx).await?;
        }
        let actor = Actor::service("migration");
        let record = AuditRecord {
            actor: &actor,
            changed: &Owner::Platform,
            action: "migration.canonical_dn",
            target: id,
            detail: serde_json::json!({ "table": table, "issuer_dn": canonical }),
        };
        commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?;
    }
    Ok(())
}
