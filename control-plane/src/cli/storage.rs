//! What every command that opens the database shares: an org or user named by id or name,
//! and storage errors as messages.

use crate::db::{self, Db};
use anyhow::Context;

/// Turns a storage error into a command-line error.
pub fn stored(e: db::DbError) -> anyhow::Error {
    match e {
        db::DbError::Database(inner) => anyhow::Error::new(inner).context("database"),
        other => anyhow::anyhow!("{other}"),
    }
}

pub async fn find_org(db: &Db, id_or_name: &str) -> anyhow::Result<db::Org> {
    db::orgs::find(db, id_or_name)
        .await
        .map_err(stored)?
        .with_context(|| format!("--org: no org with id or name {id_or_name:?} (create it with `certbind org create NAME`)"))
}

pub async fn find_user(db: &Db, org: &db::Org, id_or_name: &str) -> anyhow::Result<db::User> {
    if let Some(user) = db::users::get(db, &org.id, id_or_name).await.map_err(stored)? {
        return Ok(user);
    }
    db::users::find_by_name(db, &org.id, id_or_name)
        .await
        .map_err(stored)?
        .with_context(|| format!("--user: no user with id or name {id_or_name:?} in org {:?}", org.name))
}
