//! Trusted bearer-token issuers and their signing keys (JWKS), for proof of possession.
//! Registered per owner: two orgs may trust the same `iss`, each with its own keys and
//! audiences; an org's registration applies to tokens presented with its certificates.

use super::error::{decode_error, or_race, Race};
use super::{commit_change, new_id, Actor, AuditRecord, Db, DbError, DbResult, Page, TokenIssuer, Viewer, Visibility};
use crate::domain::Owner;
use crate::domain::change::{Change, Committed, IssuerRecord};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, org_id, issuer, audiences, jwks, created_at, updated_at";

fn from_row(row: &AnyRow) -> sqlx::Result<TokenIssuer> {
    let audiences: Option<String> = row.try_get("audiences")?;
    let jwks: String = row.try_get("jwks")?;
    Ok(TokenIssuer {
        id: row.try_get("id")?,
        owner: Owner::from_column(row.try_get("org_id")?),
        issuer: row.try_get("issuer")?,
        audiences: audiences.map(|a| serde_json::from_str(&a)).transpose().map_err(decode_error)?,
        jwks: serde_json::from_str(&jwks).map_err(decode_error)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn upsert(issuer: &TokenIssuer) -> Vec<Change> {
    vec![Change::UpsertIssuer(IssuerRecord {
        owner: issuer.owner.clone(),
        issuer: issuer.issuer.clone(),
        audiences: issuer.audiences.clone().unwrap_or_default(),
        jwks_json: issuer.jwks.to_string().into_bytes(),
    })]
}

fn audiences_column(audiences: Option<&Vec<String>>) -> Option<String> {
    audiences.map(|a| serde_json::Value::from(a.clone()).to_string())
}

pub async fn create(
    db: &Db,
    actor: &Actor,
    owner: Owner,
    issuer: &str,
    audiences: Option<Vec<String>>,
    jwks: serde_json::Value,
) -> DbResult<Committed<TokenIssuer>> {
    let now = crate::time::now_rfc3339();
    let record = TokenIssuer {
        id: new_id(),
        owner,
        issuer: issuer.to_string(),
        audiences,
        jwks,
        created_at: now.clone(),
        updated_at: now,
    };
    let mut tx = db.begin_change().await?;
    let whose = if record.owner.is_platform() { "the platform" } else { "this org" };
    sqlx::query(&format!("INSERT INTO token_issuers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
        .bind(&record.id)
        .bind(record.owner.org_id())
        .bind(&record.issuer)
        .bind(audiences_column(record.audiences.as_ref()))
        .bind(record.jwks.to_string())
        .bind(&record.created_at)
        .bind(&record.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| or_race(e, Race::Unique, || DbError::conflict(format!("issuer {issuer:?} is already registered for {whose}"))))?;
    let audit = AuditRecord {
        actor,
        changed: &record.owner,
        action: "issuer.create",
        target: record.id.clone(),
        detail: serde_json::json!({ "issuer": record.issuer, "audiences": record.audiences }),
    };
    let changes = upsert(&record);
    let version = commit_change(db, tx, audit, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: record, version, changes })
}

pub async fn get(db: &Db, viewer: &Viewer, id: &str) -> DbResult<Option<TokenIssuer>> {
    let sql = format!("SELECT {COLUMNS} FROM token_issuers WHERE id = $1 AND {}", Viewer::predicate(2));
    let row = viewer.bind(sqlx::query(&sql).bind(id)).fetch_optional(db.reader()).await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, viewer: &Viewer, cursor: Option<&str>, limit: i64) -> DbResult<Page<TokenIssuer>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM token_issuers WHERE {} AND id > $3 ORDER BY id LIMIT $4",
        Viewer::predicate(1)
    );
    let rows = viewer.bind(sqlx::query(&sql)).bind(cursor.unwrap_or("")).bind(limit + 1).fetch_all(db.reader()).await?;
    let issuers = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(issuers, limit, |i| i.id.clone()))
}

/// Replaces an issuer's keys and/or audiences (key rotation at the issuer).
pub async fn update(
    db: &Db,
    actor: &Actor,
    viewer: &Viewer,
    id: &str,
    audiences: Option<Option<Vec<String>>>,
    jwks: Option<serde_json::Value>,
) -> DbResult<Committed<TokenIssuer>> {
    let mut tx = db.begin_change().await?;
    let sql = format!(
        "UPDATE token_issuers SET \
           audiences = CASE WHEN $2 = 1 THEN $3 ELSE audiences END, \
           jwks = COALESCE($4, jwks), updated_at = $5 \
         WHERE id = $1 AND {} RETURNING {COLUMNS}",
        Viewer::predicate(6)
    );
    let query = sqlx::query(&sql)
        .bind(id)
        .bind(i32::from(audiences.is_some()))
        .bind(audiences_column(audiences.clone().flatten().as_ref()))
        .bind(jwks.as_ref().map(|j| j.to_string()))
        .bind(crate::time::now_rfc3339());
    let row = viewer.bind(query).fetch_optional(&mut *tx).await?;
    let Some(issuer) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no issuer {id:?} in this org")));
    };
    let audit = AuditRecord {
        actor,
        changed: &issuer.owner,
        action: "issuer.update",
        target: issuer.id.clone(),
        detail: serde_json::json!({ "audiences_changed": audiences.is_some(), "jwks_changed": jwks.is_some() }),
    };
    let changes = upsert(&issuer);
    let version = commit_change(db, tx, audit, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: issuer, version, changes })
}

pub async fn delete(db: &Db, actor: &Actor, viewer: &Viewer, id: &str) -> DbResult<Committed<TokenIssuer>> {
    let mut tx = db.begin_change().await?;
    let sql = format!("DELETE FROM token_issuers WHERE id = $1 AND {} RETURNING {COLUMNS}", Viewer::predicate(2));
    let row = viewer.bind(sqlx::query(&sql).bind(id)).fetch_optional(&mut *tx).await?;
    let Some(issuer) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no issuer {id:?} in this org")));
    };
    let audit = AuditRecord {
        actor,
        changed: &issuer.owner,
        action: "issuer.delete",
        target: issuer.id.clone(),
        detail: serde_json::json!({ "issuer": issuer.issuer }),
    };
    let changes = vec![Change::RemoveIssuer { owner: issuer.owner.clone(), issuer: issuer.issuer.clone() }];
    let version = commit_change(db, tx, audit, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: issuer, version, changes })
}
