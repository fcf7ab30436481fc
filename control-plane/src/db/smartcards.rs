//! `smart_card_links`: certificate fingerprint → user, in one org.

use super::error::{or_race, Race};
use super::{
    blocklist, claims, commit_change, get_fingerprint, get_flag, orgs, users, Actor, AuditRecord, Db, DbError, DbResult, Filter, Page, Param,
    SmartCardLink, Visibility,
};
use crate::domain::change::{BindingRecord, Change, Committed};
use crate::domain::binding::NewSmartCard;
use crate::domain::{card, Owner};
use certbind_shared::certificate::{CardFacts, CertificateFacts};
use certbind_shared::identity::Claim;
use certbind_shared::Fingerprint;
use sqlx::any::AnyRow;
use sqlx::Row;

pub(crate) const COLUMNS: &str =
    "fingerprint, user_id, org_id, subject_dn, issuer_dn, serial, not_before, not_after, label, enabled, verified, created_at, \
     last_used_at, certificate_pem";

pub(crate) fn from_row(row: &AnyRow) -> sqlx::Result<SmartCardLink> {
    Ok(SmartCardLink {
        fingerprint: get_fingerprint(row, "fingerprint")?,
        user_id: row.try_get("user_id")?,
        org_id: row.try_get("org_id")?,
        subject_dn: row.try_get("subject_dn")?,
        issuer_dn: row.try_get("issuer_dn")?,
        serial: row.try_get("serial")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        label: row.try_get("label")?,
        enabled: get_flag(row, "enabled")?,
        verified: get_flag(row, "verified")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        facts: card_facts(row.try_get("certificate_pem")?),
    })
}

/// The facts of the certificate kept at binding. It was read by the same walk when it was
/// bound, so it reads again; were a row ever changed behind the control plane's back into
/// something that does not, its facts are shown as unknown rather than the row refused.
fn card_facts(certificate_pem: Option<String>) -> Option<CardFacts> {
    let facts = CertificateFacts::from_pem(certificate_pem?.as_bytes()).ok()?;
    Some(CardFacts::of(&facts))
}

/// The snapshot change of a binding as committed.
fn upsert(link: &SmartCardLink) -> Vec<Change> {
    vec![Change::UpsertBinding(BindingRecord {
        fingerprint: link.fingerprint,
        user_id: link.user_id.clone(),
        org_id: link.org_id.clone(),
        enabled: link.enabled,
        claim: Claim::from_verified(link.verified),
    })]
}

/// Binds a card in the actor's org. The user must be in that org; a fingerprint bound
/// anywhere already, mapped by a thumbprint mapping, or claimed by another org's SAN rule
/// (one of its SAN domains from its issuer; for a binding given by fields, whose SANs are
/// unknown, any of that issuer) is a conflict, answered alike ([`claims::cannot_claim`]); a
/// certificate an applicable blocklist entry (the org's or the platform's) refuses is not
/// bound. Returns the row and the snapshot version it committed at.
pub async fn bind(db: &Db, actor: &Actor, card: NewSmartCard) -> DbResult<Committed<SmartCardLink>> {
    let link = SmartCardLink {
        fingerprint: card.fingerprint,
        user_id: card.user_id.clone(),
        org_id: actor.org_id.clone(),
        subject_dn: card.subject_dn.clone(),
        issuer_dn: card.issuer_dn.clone(),
        serial: card.serial.clone(),
        not_before: card.not_before.clone(),
        not_after: card.not_after.clone(),
        label: card.label.clone(),
        enabled: true,
        verified: false,
        created_at: crate::time::now_rfc3339(),
        last_used_at: None,
        facts: card.certificate.as_ref().map(|(_, facts)| facts.clone()),
    };
    let mut tx = db.begin_change().await?;
    if !users::exists_in_org(&mut tx, &actor.org_id, &link.user_id).await? {
        return Err(DbError::invalid("user_id", "no user with this id in the caller's org"));
    }
    let allows_card_auth = orgs::allows_card_authentication(&mut tx, &actor.org_id).await?;
    if let Err(refusal) = card::may_bind(link.facts.as_ref(), allows_card_auth) {
        return Err(DbError::invalid(refusal.field(), refusal.detail()));
    }
    let mapped = sqlx::query("SELECT 1 AS one FROM thumbprint_mappings WHERE fingerprint = $1")
        .bind(link.fingerprint.to_hex())
        .fetch_optional(&mut *tx)
        .await?;
    if mapped.is_some() {
        return Err(claims::cannot_claim());
    }
    let evidence = match &card.sans {
        Some(sans) => claims::Evidence::Certificate { issuer_dn: &link.issuer_dn, sans },
        None => claims::Evidence::Stated { issuer_dn: Some(&link.issuer_dn) },
    };
    let claim = claims::admit(&mut tx, &link.org_id, &link.fingerprint, evidence).await?;
    let link = SmartCardLink { verified: claim.is_verified(), ..link };
    if let Some(entry) =
        blocklist::applicable(&mut tx, &link.org_id, &link.fingerprint, &link.issuer_dn, &link.serial).await?
    {
        let how = if entry.fingerprint.is_some() { "its fingerprint" } else { "its issuer and serial" };
        let whose = if entry.owner.is_platform() { "platform's" } else { "org's" };
        return Err(DbError::invalid(
            "certificate",
            format!("the certificate is on the {whose} blocklist by {how} (entry {}); remove the entry first", entry.id),
        ));
    }
    let inserted = sqlx::query(
        "INSERT INTO smart_card_links (fingerprint, user_id, org_id, subject_dn, issuer_dn, serial, not_before, \
         not_after, label, enabled, created_at, verified, certificate_pem) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11, $12) ON CONFLICT DO NOTHING",
    )
    .bind(link.fingerprint.to_hex())
    .bind(&link.user_id)
    .bind(&link.org_id)
    .bind(&link.subject_dn)
    .bind(&link.issuer_dn)
    .bind(&link.serial)
    .bind(&link.not_before)
    .bind(&link.not_after)
    .bind(&link.label)
    .bind(&link.created_at)
    .bind(i32::from(claim.is_verified()))
    .bind(card.certificate.as_ref().map(|(pem, _)| pem.as_str()))
    .execute(&mut *tx)
    .await
    // The user was deleted after the check above (PostgreSQL sees it at the insert).
    .map_err(|e| or_race(e, Race::ForeignKey, || DbError::not_found(format!("user {:?} was deleted", link.user_id))))?;
    if inserted.rows_affected() == 0 {
        return Err(claims::cannot_claim());
    }
    if let Some(sans) = &card.sans {
        claims::record_sans(&mut tx, &link.fingerprint, &link.issuer_dn, sans).await?;
    }
    let changed = Owner::Org(link.org_id.clone());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action: "smartcard.bind",
        target: link.fingerprint.to_hex(),
        detail: serde_json::json!({
            "user_id": link.user_id,
            "subject_dn": link.subject_dn,
            "issuer_dn": link.issuer_dn,
            "serial": link.serial,
            "label": link.label,
            "verified": link.verified,
        }),
    };
    let changes = upsert(&link);
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: link, version, changes })
}

pub async fn get(db: &Db, org_id: &str, fingerprint: &Fingerprint) -> DbResult<Option<SmartCardLink>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM smart_card_links WHERE fingerprint = $1 AND org_id = $2"))
        .bind(fingerprint.to_hex())
        .bind(org_id)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Filters of the list route; all optional and combined with AND.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub user_id: Option<String>,
    pub enabled: Option<bool>,
    /// Exact issuer DN.
    pub issuer_dn: Option<String>,
    /// Fingerprint after which the page starts.
    pub cursor: Option<String>,
}

/// One page of the org's bindings in fingerprint order (the primary key, so paging is an
/// index range scan however many rows there are).
pub async fn list(db: &Db, org_id: &str, filter: &ListFilter, limit: i64) -> DbResult<Page<SmartCardLink>> {
    let mut f = Filter::default();
    f.push("org_id", "=", Param::Text(org_id.to_string()));
    if let Some(cursor) = &filter.cursor {
        f.push("fingerprint", ">", Param::Text(cursor.clone()));
    }
    if let Some(user_id) = &filter.user_id {
        f.push("user_id", "=", Param::Text(user_id.clone()));
    }
    if let Some(enabled) = filter.enabled {
        f.push("enabled", "=", Param::Int(i64::from(enabled)));
    }
    if let Some(issuer) = &filter.issuer_dn {
        f.push("issuer_dn", "=", Param::Text(issuer.clone()));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM smart_card_links {} ORDER BY fingerprint LIMIT ${}",
        f.where_sql(),
        f.next_placeholder()
    );
    let rows = f.bind(sqlx::query(&sql)).bind(limit + 1).fetch_all(db.reader()).await?;
    let links = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(links, limit, |l| l.fingerprint.to_hex()))
}

/// A change to a binding: enable/disable and relabel. `label: Some(None)` clears the label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmartCardUpdate {
    pub enabled: Option<bool>,
    pub label: Option<Option<String>>,
}

pub async fn update(
    db: &Db,
    actor: &Actor,
    fingerprint: &Fingerprint,
    change: &SmartCardUpdate,
) -> DbResult<Committed<SmartCardLink>> {
    let mut tx = db.begin_change().await?;
    let row = sqlx::query(&format!(
        "UPDATE smart_card_links SET \
           enabled = CASE WHEN $3 = 1 THEN $4 ELSE enabled END, \
           label = CASE WHEN $5 = 1 THEN $6 ELSE label END \
         WHERE fingerprint = $1 AND org_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(fingerprint.to_hex())
    .bind(&actor.org_id)
    .bind(i32::from(change.enabled.is_some()))
    .bind(i32::from(change.enabled.unwrap_or(true)))
    .bind(i32::from(change.label.is_some()))
    .bind(change.label.clone().flatten())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(link) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no card binding {fingerprint} in this org")));
    };
    let mut detail = serde_json::Map::new();
    if let Some(enabled) = change.enabled {
        detail.insert("enabled".into(), enabled.into());
    }
    if let Some(label) = &change.label {
        detail.insert("label".into(), label.clone().into());
    }
    let action = match change.enabled {
        Some(true) => "smartcard.enable",
        Some(false) => "smartcard.disable",
        None => "smartcard.relabel",
    };
    let changed = Owner::Org(link.org_id.clone());
    let record = AuditRecord { actor, changed: &changed, action, target: link.fingerprint.to_hex(), detail: detail.into() };
    let changes = upsert(&link);
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: link, version, changes })
}

/// Removes a binding (a lost or stolen card). Returns the row as it was.
pub async fn revoke(db: &Db, actor: &Actor, fingerprint: &Fingerprint) -> DbResult<Committed<SmartCardLink>> {
    let mut tx = db.begin_change().await?;
    let row = sqlx::query(&format!(
        "DELETE FROM smart_card_links WHERE fingerprint = $1 AND org_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(fingerprint.to_hex())
    .bind(&actor.org_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(link) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no card binding {fingerprint} in this org")));
    };
    let changed = Owner::Org(link.org_id.clone());
    let record = AuditRecord {
        actor,
        changed: &changed,
        action: "smartcard.revoke",
        target: link.fingerprint.to_hex(),
        detail: serde_json::json!({ "user_id": link.user_id, "subject_dn": link.subject_dn }),
    };
    let changes = vec![Change::RemoveBinding { fingerprint: *fingerprint }];
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: link, version, changes })
}

/// Whether some binding's certificate, in `org` (any org for `None`), was issued by exactly
/// `issuer_dn` (canonical).
pub async fn issuer_known(db: &Db, org: Option<&str>, issuer_dn: &str) -> DbResult<bool> {
    let row = match org {
        Some(org) => sqlx::query("SELECT 1 AS one FROM smart_card_links WHERE issuer_dn = $1 AND org_id = $2 LIMIT 1")
            .bind(issuer_dn)
            .bind(org)
            .fetch_optional(db.reader())
            .await?,
        None => sqlx::query("SELECT 1 AS one FROM smart_card_links WHERE issuer_dn = $1 LIMIT 1")
            .bind(issuer_dn)
            .fetch_optional(db.reader())
            .await?,
    };
    Ok(row.is_some())
}
