//! Explicit thumbprint mappings: a certificate fingerprint → a principal name, for service
//! certificates that belong to no user. One mapping per fingerprint whoever owns it, and
//! never for a certificate that is bound: the certificate's org must be unambiguous.

use super::error::{or_race, Race};
use super::{claims, commit_change, get_fingerprint, get_flag, Actor, AuditRecord, Db, DbError, DbResult, Page, ThumbprintMapping, Viewer, Visibility};
use crate::domain::change::{Change, Committed, MappingRecord};
use crate::domain::Owner;
use certbind_shared::identity::Claim;
use certbind_shared::Fingerprint;
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "fingerprint, org_id, principal, verified, created_at";

fn from_row(row: &AnyRow) -> sqlx::Result<ThumbprintMapping> {
    Ok(ThumbprintMapping {
        fingerprint: get_fingerprint(row, "fingerprint")?,
        owner: Owner::from_column(row.try_get("org_id")?),
        principal: row.try_get("principal")?,
        verified: get_flag(row, "verified")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The certificate a mapping names, when it was given whole: its issuer and the SAN domains
/// SAN rules could claim it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCertificate {
    pub issuer_dn: String,
    pub sans: Vec<(certbind_shared::identity::SanKind, String)>,
}

/// `principal` checked by the caller against the owner's namespace. A bound or mapped
/// fingerprint is refused, and so is an org's mapping of a certificate another org's SAN rule
/// claims (known from `certificate`, or from the certificate seen earlier), all answered alike
/// ([`claims::cannot_claim`]).
pub async fn create(
    db: &Db,
    actor: &Actor,
    owner: Owner,
    fingerprint: &Fingerprint,
    principal: &str,
    certificate: Option<SeenCertificate>,
) -> DbResult<Committed<ThumbprintMapping>> {
    let mut mapping = ThumbprintMapping {
        fingerprint: *fingerprint,
        owner,
        principal: principal.to_string(),
        verified: true,
        created_at: crate::time::now_rfc3339(),
    };
    let mut tx = db.begin_change().await?;
    let bound = sqlx::query("SELECT 1 AS one FROM smart_card_links WHERE fingerprint = $1")
        .bind(mapping.fingerprint.to_hex())
        .fetch_optional(&mut *tx)
        .await?;
    if bound.is_some() {
        return Err(claims::cannot_claim());
    }
    // The platform's mappings claim nothing; an org's rests on what the control plane knows.
    let mut claim = Claim::Verified;
    if let Owner::Org(org) = &mapping.owner {
        let evidence = match &certificate {
            Some(seen) => claims::Evidence::Certificate { issuer_dn: &seen.issuer_dn, sans: &seen.sans },
            None => claims::Evidence::Stated { issuer_dn: None },
        };
        claim = claims::admit(&mut tx, org, &mapping.fingerprint, evidence).await?;
        mapping.verified = claim.is_verified();
    }
    if let Some(seen) = &certificate {
        claims::record_sans(&mut tx, &mapping.fingerprint, &seen.issuer_dn, &seen.sans).await?;
    }
    let taken = claims::cannot_claim;
    let inserted = sqlx::query(&format!(
        "INSERT INTO thumbprint_mappings ({COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
    ))
    .bind(mapping.fingerprint.to_hex())
    .bind(mapping.owner.org_id())
    .bind(&mapping.principal)
    .bind(i32::from(mapping.verified))
    .bind(&mapping.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| or_race(e, Race::Unique, taken))?;
    if inserted.rows_affected() == 0 {
        return Err(taken());
    }
    let audit = AuditRecord {
        actor,
        changed: &mapping.owner,
        action: "thumbprint_mapping.create",
        target: mapping.fingerprint.to_hex(),
        detail: serde_json::json!({ "principal": mapping.principal, "verified": mapping.verified }),
    };
    let changes = vec![Change::MapPrincipal(MappingRecord {
        owner: mapping.owner.clone(),
        fingerprint: *fingerprint,
        principal: mapping.principal.clone(),
        claim,
    })];
    let version = commit_change(db, tx, audit, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: mapping, version, changes })
}

pub async fn get(db: &Db, viewer: &Viewer, fingerprint: &Fingerprint) -> DbResult<Option<ThumbprintMapping>> {
    let sql = format!("SELECT {COLUMNS} FROM thumbprint_mappings WHERE fingerprint = $1 AND {}", Viewer::predicate(2));
    let row = viewer.bind(sqlx::query(&sql).bind(fingerprint.to_hex())).fetch_optional(db.reader()).await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, viewer: &Viewer, cursor: Option<&str>, limit: i64) -> DbResult<Page<ThumbprintMapping>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM thumbprint_mappings WHERE {} AND fingerprint > $3 ORDER BY fingerprint LIMIT $4",
        Viewer::predicate(1)
    );
    let rows = viewer.bind(sqlx::query(&sql)).bind(cursor.unwrap_or("")).bind(limit + 1).fetch_all(db.reader()).await?;
    let mappings = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(mappings, limit, |m| m.fingerprint.to_hex()))
}

pub async fn delete(db: &Db, actor: &Actor, viewer: &Viewer, fingerprint: &Fingerprint) -> DbResult<Committed<ThumbprintMapping>> {
    let mut tx = db.begin_change().await?;
    let sql = format!(
        "DELETE FROM thumbprint_mappings WHERE fingerprint = $1 AND {} RETURNING {COLUMNS}",
        Viewer::predicate(2)
    );
    let row = viewer.bind(sqlx::query(&sql).bind(fingerprint.to_hex())).fetch_optional(&mut *tx).await?;
    let Some(mapping) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no thumbprint mapping {fingerprint} in this org")));
    };
    let audit = AuditRecord {
        actor,
        changed: &mapping.owner,
        action: "thumbprint_mapping.delete",
        target: mapping.fingerprint.to_hex(),
        detail: serde_json::json!({ "principal": mapping.principal }),
    };
    let changes = vec![Change::UnmapPrincipal { owner: mapping.owner.clone(), fingerprint: *fingerprint }];
    let version = commit_change(db, tx, audit, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: mapping, version, changes })
}
