//! Admin tokens: 256-bit random bearer secrets, stored only as their SHA-256.

use super::{commit_change, get_flag, new_id, Actor, AdminToken, AuditRecord, Db, DbError, DbResult, Page, Visibility};
use crate::domain::Owner;
use certbind_shared::encoding::{base64url_encode, hex_lower};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

/// Every admin token starts with this, so secret scanners and people can recognise one.
pub const TOKEN_PREFIX: &str = "cbt_";

/// Longest `Authorization` token looked up; real ones are 47 characters.
pub const MAX_TOKEN_LEN: usize = 128;

const COLUMNS: &str = "id, org_id, super_admin, label, created_at, last_used_at";

fn from_row(row: &AnyRow) -> sqlx::Result<AdminToken> {
    Ok(AdminToken {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        super_admin: get_flag(row, "super_admin")?,
        label: row.try_get("label")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex_lower(&Sha256::digest(token.as_bytes()))
}

/// A new secret: `prefix` and 256 random bits in base64url.
pub(crate) fn generate_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", base64url_encode(&bytes))
}

/// Creates a token in `org_id`; returns its record and the secret, which is never stored.
pub async fn create(
    db: &Db,
    actor: &Actor,
    org_id: &str,
    super_admin: bool,
    label: Option<&str>,
) -> DbResult<(AdminToken, String)> {
    let secret = generate_secret(TOKEN_PREFIX);
    let token = AdminToken {
        id: new_id(),
        org_id: org_id.to_string(),
        super_admin,
        label: label.map(str::to_string),
        created_at: crate::time::now_rfc3339(),
        last_used_at: None,
    };
    let mut tx = db.begin().await?;
    let org_exists = sqlx::query("SELECT 1 AS one FROM orgs WHERE id = $1").bind(org_id).fetch_optional(&mut *tx).await?;
    if org_exists.is_none() {
        return Err(DbError::not_found(format!("no org {org_id:?}")));
    }
    sqlx::query(
        "INSERT INTO admin_tokens (id, org_id, token_hash, super_admin, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&token.id)
    .bind(&token.org_id)
    .bind(hash_token(&secret))
    .bind(i32::from(super_admin))
    .bind(&token.label)
    .bind(&token.created_at)
    .execute(&mut *tx)
    .await?;
    let changed = Owner::Org(org_id.to_string());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action: "token.create",
        target: token.id.clone(),
        detail: serde_json::json!({ "org_id": org_id, "super_admin": super_admin, "label": token.label }),
    };
    commit_change(db, tx, record, Visibility::Internal).await?;
    Ok((token, secret))
}

/// The token a bearer secret names, if any.
pub async fn lookup(db: &Db, secret: &str) -> DbResult<Option<AdminToken>> {
    Ok(lookup_with_org_state(db, secret).await?.map(|(token, _)| token))
}

/// [`lookup`], with whether the token's org is disabled (its tokens are then refused), in
/// one query.
pub async fn lookup_with_org_state(db: &Db, secret: &str) -> DbResult<Option<(AdminToken, bool)>> {
    if secret.len() > MAX_TOKEN_LEN || !secret.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, (SELECT disabled_at FROM orgs WHERE orgs.id = admin_tokens.org_id) AS org_disabled_at \
         FROM admin_tokens WHERE token_hash = $1"
    ))
    .bind(hash_token(secret))
    .fetch_optional(db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let disabled = row.try_get::<Option<String>, _>("org_disabled_at")?.is_some();
    Ok(Some((from_row(&row)?, disabled)))
}

pub async fn list(db: &Db, org_id: &str, cursor: Option<&str>, limit: i64) -> DbResult<Page<AdminToken>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM admin_tokens WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(org_id)
    .bind(cursor.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let tokens = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(tokens, limit, |t| t.id.clone()))
}

/// Deletes a token of the actor's org. A super-admin token is deleted only by a super-admin
/// (an ordinary admin must not be able to lock the org's super-admin out).
pub async fn delete(db: &Db, actor: &Actor, id: &str) -> DbResult<AdminToken> {
    let org_id = actor.org_id.clone();
    delete_in(db, actor, &org_id, id).await
}

/// Deletes a token of `org_id`: the actor's own org, or any org for a super-admin (a
/// leaked or departed admin's token is revoked without a token of that org).
pub async fn delete_in(db: &Db, actor: &Actor, org_id: &str, id: &str) -> DbResult<AdminToken> {
    if org_id != actor.org_id && !actor.super_admin {
        return Err(DbError::Forbidden("only a super-admin token can delete another org's tokens".into()));
    }
    let mut tx = db.begin().await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM admin_tokens WHERE id = $1 AND org_id = $2"))
        .bind(id)
        .bind(org_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(token) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no admin token {id:?} in this org")));
    };
    if token.super_admin && !actor.super_admin {
        return Err(DbError::Forbidden("only a super-admin token can delete a super-admin token".into()));
    }
    let deleted = sqlx::query("DELETE FROM admin_tokens WHERE id = $1").bind(id).execute(&mut *tx).await?;
    if deleted.rows_affected() == 0 {
        return Err(DbError::not_found(format!("no admin token {id:?} in this org")));
    }
    let changed = Owner::Org(token.org_id.clone());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action: "token.delete",
        target: token.id.clone(),
        detail: serde_json::json!({ "super_admin": token.super_admin }),
    };
    commit_change(db, tx, record, Visibility::Internal).await?;
    Ok(token)
}

/// Records that a token was used (called at most once a minute per token, off the request
/// path: see `http::usage`).
pub async fn touch(db: &Db, id: &str, at: &str) -> DbResult<()> {
    sqlx::query("UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2").bind(at).bind(id).execute(db.writer()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_carry_256_bits_and_hash_to_64_hex() {
        let a = generate_secret(TOKEN_PREFIX);
        let b = generate_secret(TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        // SHA-256("abc"), a published test vector.
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
