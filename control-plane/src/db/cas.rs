//! Issuing certificate authorities. A CA is shared infrastructure: registered and given its
//! revocation policy by a super-admin (the platform), known by its key identifier, never by
//! its DN. The CRL it holds is stored by [`super::crls`].

use super::crls::{held_crl, insert_fetch, FoldedCrl, HeldCrl, SerialSet};
use super::error::{decode_error, or_race, Race};
use super::{commit_change, get_flag, Actor, AuditRecord, Db, DbError, DbResult, Page, Tx, Visibility};
use crate::domain::Owner;
use crate::domain::change::{CaRecord, Change, Committed};
use crate::domain::ca::{CertificateAuthority, CrlFetch, HeldCrlInfo, NewCa, PolicyUpdate, RevocationPolicy};
use certbind_shared::certificate::{CaCertificate, KeyIdentifier};
use certbind_shared::clock;
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "key_id, key_source, subject_dn, fingerprint, certificate_pem, not_before, not_after, \
    require_fresh_crl, grace_period_seconds, fail_open, crl_urls, created_at, updated_at";


fn from_row(row: &AnyRow) -> sqlx::Result<CertificateAuthority> {
    let urls: String = row.try_get("crl_urls")?;
    Ok(CertificateAuthority {
        key_id: row.try_get("key_id")?,
        key_source: row.try_get("key_source")?,
        subject_dn: row.try_get("subject_dn")?,
        fingerprint: row.try_get("fingerprint")?,
        certificate_pem: row.try_get("certificate_pem")?,
        not_before: crate::time::format_epoch(row.try_get("not_before")?),
        not_after: crate::time::format_epoch(row.try_get("not_after")?),
        policy: RevocationPolicy {
            require_fresh_crl: get_flag(row, "require_fresh_crl")?,
            grace_period_seconds: row.try_get("grace_period_seconds")?,
            fail_open: get_flag(row, "fail_open")?,
            crl_urls: serde_json::from_str(&urls).map_err(decode_error)?,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        crl: None,
        fetches: Vec::new(),
    })
}

fn key_source_name(ca: &CaCertificate) -> &'static str {
    match ca.key_identifier_source {
        certbind_shared::certificate::ca::KeyIdentifierSource::SubjectKeyIdentifier => "subject_key_identifier",
        certbind_shared::certificate::ca::KeyIdentifierSource::SpkiSha256 => "spki_sha256",
    }
}

fn policy_detail(policy: &RevocationPolicy) -> serde_json::Value {
    serde_json::json!({
        "require_fresh_crl": policy.require_fresh_crl,
        "grace_period_seconds": policy.grace_period_seconds,
        "fail_open": policy.fail_open,
        "crl_urls": policy.crl_urls,
    })
}

pub async fn register(db: &Db, actor: &Actor, new: NewCa) -> DbResult<Committed<CertificateAuthority>> {
    let now = crate::time::now_rfc3339();
    let key_id = new.certificate.key_identifier.to_hex();
    let urls = serde_json::Value::from(new.policy.crl_urls.clone()).to_string();
    let mut tx = db.begin_change().await?;
    sqlx::query(&format!(
        "INSERT INTO certificate_authorities ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)"
    ))
    .bind(&key_id)
    .bind(key_source_name(&new.certificate))
    .bind(&new.certificate.subject_dn)
    .bind(new.certificate.fingerprint.to_hex())
    .bind(&new.certificate_pem)
    .bind(new.certificate.not_before)
    .bind(new.certificate.not_after)
    .bind(i32::from(new.policy.require_fresh_crl))
    .bind(new.policy.grace_period_seconds)
    .bind(i32::from(new.policy.fail_open))
    .bind(&urls)
    .bind(&now)
    .execute(&mut *tx)
    .await
    .map_err(|e| or_race(e, Race::Unique, || DbError::conflict(format!("a CA with key identifier {key_id} is already registered"))))?;
    for url in &new.policy.crl_urls {
        insert_fetch(&mut tx, &key_id, url).await?;
    }
    let ca = get_in(&mut tx, &key_id, clock::now_seconds()).await?.ok_or_else(|| DbError::not_found("the CA went away"))?;
    let record = AuditRecord {
        actor,
        changed: &Owner::Platform,
        action: "ca.register",
        target: key_id.clone(),
        detail: serde_json::json!({ "subject_dn": ca.subject_dn, "fingerprint": ca.fingerprint, "policy": policy_detail(&ca.policy) }),
    };
    let changes = ca_changes(&ca, None);
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: ca, version, changes })
}


/// The snapshot's record of `ca`, holding `held` (or no CRL).
fn ca_record(ca: &CertificateAuthority, held: Option<&HeldCrl>) -> Option<CaRecord> {
    Some(CaRecord {
        key: KeyIdentifier::from_hex(&ca.key_id)?,
        subject_dn: ca.subject_dn.clone(),
        require_fresh_crl: ca.policy.require_fresh_crl,
        fail_open: ca.policy.fail_open,
        crl_valid_until: held.and_then(|h| valid_until(h.next_update, ca.policy.grace_period_seconds)),
    })
}

/// The snapshot change that puts `ca` (with the CRL it holds) into the snapshot.
fn ca_changes(ca: &CertificateAuthority, held: Option<&HeldCrl>) -> Vec<Change> {
    ca_record(ca, held).map(Change::UpsertCa).into_iter().collect()
}

/// Serials as the snapshot's revocation keys spell them.
fn serial_texts<'a>(serials: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    serials.map(|s| certbind_shared::crl::Serial::from_der_content(s).to_hex()).collect()
}

async fn get_in(tx: &mut Tx, key_id: &str, now: i64) -> DbResult<Option<CertificateAuthority>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM certificate_authorities WHERE key_id = $1"))
        .bind(key_id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(mut ca) = row.as_ref().map(from_row).transpose()? else { return Ok(None) };
    let crl = sqlx::query(&format!("SELECT {CRL_INFO_COLUMNS} FROM certificate_authority_crls WHERE key_id = $1"))
        .bind(key_id)
        .fetch_optional(&mut **tx)
        .await?;
    ca.crl = crl.as_ref().map(|r| crl_info(r, ca.policy.grace_period_seconds, now)).transpose()?;
    let fetches = sqlx::query(&format!("SELECT {FETCH_COLUMNS} FROM crl_fetches WHERE key_id = $1 ORDER BY url"))
        .bind(key_id)
        .fetch_all(&mut **tx)
        .await?;
    ca.fetches = fetches.iter().map(fetch_from_row).collect::<sqlx::Result<_>>()?;
    Ok(Some(ca))
}

const CRL_INFO_COLUMNS: &str =
    "key_id, crl_number, base_number, scope, this_update, next_update, entries, crl_sha256, source, ingested_at";
const FETCH_COLUMNS: &str =
    "key_id, url, last_attempt_at, last_result, last_error, last_success_at, failures, next_attempt_at";

/// Until when a CRL of `next_update` counts as fresh under `grace` seconds.
pub fn valid_until(next_update: Option<i64>, grace: i64) -> Option<i64> {
    next_update.map(|next| next.saturating_add(grace.max(0)))
}

fn crl_info(row: &AnyRow, grace: i64, now: i64) -> sqlx::Result<HeldCrlInfo> {
    let this_update: i64 = row.try_get("this_update")?;
    let next_update: Option<i64> = row.try_get("next_update")?;
    let until = valid_until(next_update, grace);
    Ok(HeldCrlInfo {
        crl_number: row.try_get("crl_number")?,
        base_number: row.try_get("base_number")?,
        scope: row.try_get("scope")?,
        this_update: crate::time::format_epoch(this_update),
        next_update: next_update.map(crate::time::format_epoch),
        valid_until: until.map(crate::time::format_epoch),
        status: if until.is_some_and(|u| now <= u) { "fresh" } else { "stale" },
        age_seconds: now.saturating_sub(this_update),
        entries: row.try_get("entries")?,
        crl_sha256: row.try_get("crl_sha256")?,
        source: row.try_get("source")?,
        ingested_at: row.try_get("ingested_at")?,
    })
}

fn fetch_from_row(row: &AnyRow) -> sqlx::Result<CrlFetch> {
    Ok(CrlFetch {
        url: row.try_get("url")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        last_result: row.try_get("last_result")?,
        last_error: row.try_get("last_error")?,
        last_success_at: row.try_get("last_success_at")?,
        failures: row.try_get("failures")?,
        next_attempt_at: crate::time::format_epoch(row.try_get("next_attempt_at")?),
    })
}

pub async fn get(db: &Db, key_id: &str) -> DbResult<Option<CertificateAuthority>> {
    let mut tx = db.reader().begin().await?;
    let ca = get_in(&mut tx, key_id, clock::now_seconds()).await?;
    tx.rollback().await?;
    Ok(ca)
}

/// Every CA, by key id, with its CRL and fetch state.
pub async fn list(db: &Db, cursor: Option<&str>, limit: i64) -> DbResult<Page<CertificateAuthority>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM certificate_authorities WHERE key_id > $1 ORDER BY key_id LIMIT $2"
    ))
    .bind(cursor.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    let listed = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    let mut cas = Vec::with_capacity(listed.len());
    for ca in listed {
        // A few dozen CAs at most: one more read each for the CRL and fetch state.
        cas.push(get(db, &ca.key_id).await?.unwrap_or(ca));
    }
    Ok(Page::from_rows(cas, limit, |c| c.key_id.clone()))
}

/// The CA's certificate facts, to verify its CRLs with.
pub async fn certificate(db: &Db, key_id: &str) -> DbResult<Option<(CaCertificate, RevocationPolicy)>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM certificate_authorities WHERE key_id = $1"))
        .bind(key_id)
        .fetch_optional(db.reader())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let ca = from_row(&row)?;
    let certificate = CaCertificate::from_pem(ca.certificate_pem.as_bytes())
        .map_err(|e| DbError::Database(decode_error(std::io::Error::other(format!("stored CA certificate: {e}")))))?;
    Ok(Some((certificate, ca.policy)))
}

/// Key ids of the CAs whose subject DN is `dn`: a CRL without an AuthorityKeyIdentifier is
/// tried against each (its signature tells them apart).
pub async fn with_subject_dn(db: &Db, dn: &str) -> DbResult<Vec<String>> {
    let rows = sqlx::query("SELECT key_id FROM certificate_authorities WHERE subject_dn = $1 ORDER BY key_id")
        .bind(dn)
        .fetch_all(db.reader())
        .await?;
    Ok(rows.iter().map(|r| r.try_get("key_id")).collect::<sqlx::Result<_>>()?)
}

pub async fn update_policy(db: &Db, actor: &Actor, key_id: &str, update: PolicyUpdate) -> DbResult<Committed<CertificateAuthority>> {
    let now = crate::time::now_rfc3339();
    let mut tx = db.begin_change().await?;
    let Some(before) = get_in(&mut tx, key_id, clock::now_seconds()).await? else {
        return Err(DbError::not_found(format!("no CA with key identifier {key_id}")));
    };
    let policy = RevocationPolicy {
        require_fresh_crl: update.require_fresh_crl.unwrap_or(before.policy.require_fresh_crl),
        grace_period_seconds: update.grace_period_seconds.unwrap_or(before.policy.grace_period_seconds),
        fail_open: update.fail_open.unwrap_or(before.policy.fail_open),
        crl_urls: update.crl_urls.clone().unwrap_or_else(|| before.policy.crl_urls.clone()),
    };
    sqlx::query(
        "UPDATE certificate_authorities SET require_fresh_crl = $1, grace_period_seconds = $2, fail_open = $3, \
         crl_urls = $4, updated_at = $5 WHERE key_id = $6",
    )
    .bind(i32::from(policy.require_fresh_crl))
    .bind(policy.grace_period_seconds)
    .bind(i32::from(policy.fail_open))
    .bind(serde_json::Value::from(policy.crl_urls.clone()).to_string())
    .bind(&now)
    .bind(key_id)
    .execute(&mut *tx)
    .await?;
    if update.crl_urls.is_some() {
        let mut delete = String::from("DELETE FROM crl_fetches WHERE key_id = $1");
        for i in 0..policy.crl_urls.len() {
            delete.push_str(if i == 0 { " AND url NOT IN (" } else { ", " });
            delete.push_str(&format!("${}", i + 2));
        }
        if !policy.crl_urls.is_empty() {
            delete.push(')');
        }
        let mut query = sqlx::query(&delete).bind(key_id);
        for url in &policy.crl_urls {
            query = query.bind(url.as_str());
        }
        query.execute(&mut *tx).await?;
        for url in &policy.crl_urls {
            insert_fetch(&mut tx, key_id, url).await?;
        }
    }
    let ca = get_in(&mut tx, key_id, clock::now_seconds()).await?.ok_or_else(|| DbError::not_found("the CA went away"))?;
    let record = AuditRecord {
        actor,
        changed: &Owner::Platform,
        action: "ca.update",
        target: key_id.to_string(),
        detail: serde_json::json!({ "before": policy_detail(&before.policy), "after": policy_detail(&ca.policy) }),
    };
    let held = held_crl(&mut tx, key_id).await?;
    let changes = ca_changes(&ca, held.as_ref());
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: ca, version, changes })
}

/// Removes the CA, its CRL and the revocations it brought into the snapshot.
pub async fn delete(db: &Db, actor: &Actor, key_id: &str) -> DbResult<Committed<CertificateAuthority>> {
    let mut tx = db.begin_change().await?;
    let Some(ca) = get_in(&mut tx, key_id, clock::now_seconds()).await? else {
        return Err(DbError::not_found(format!("no CA with key identifier {key_id}")));
    };
    let held = held_crl(&mut tx, key_id).await?;
    sqlx::query("DELETE FROM crl_fetches WHERE key_id = $1").bind(key_id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM certificate_authority_crls WHERE key_id = $1").bind(key_id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM certificate_authorities WHERE key_id = $1").bind(key_id).execute(&mut *tx).await?;
    let record = AuditRecord {
        actor,
        changed: &Owner::Platform,
        action: "ca.delete",
        target: key_id.to_string(),
        detail: serde_json::json!({
            "subject_dn": ca.subject_dn,
            "crl_entries": held.as_ref().map(|h| h.serials.len()),
        }),
    };
    let changes = removal_changes(&ca, held.as_ref());
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: ca, version, changes })
}

/// The snapshot changes that take `ca` and its CRL's revocations out.
fn removal_changes(ca: &CertificateAuthority, held: Option<&HeldCrl>) -> Vec<Change> {
    let Some(key) = KeyIdentifier::from_hex(&ca.key_id) else { return Vec::new() };
    let mut changes = vec![Change::RemoveCa { key: key.clone() }];
    if let Some(held) = held.filter(|h| !h.serials.is_empty()) {
        changes.push(Change::CrlUnrevoke { ca: key, serials: serial_texts(held.serials.iter()) });
    }
    changes
}

/// Stores a folded CRL, provided the CRL held is still `expected` (the number it was folded
/// onto; `None`: none held): a CRL stored meanwhile answers 409 and changes nothing.
pub async fn store_crl(
    db: &Db,
    actor: &Actor,
    key_id: &str,
    expected: Option<&str>,
    folded: FoldedCrl,
) -> DbResult<Committed<CertificateAuthority>> {
    let now = crate::time::now_rfc3339();
    let mut tx = db.begin_change().await?;
    let current = held_crl(&mut tx, key_id).await?;
    if current.as_ref().map(|h| h.crl_number.as_str()) != expected {
        return Err(DbError::conflict(format!(
            "another CRL of CA {key_id} was stored while this one was verified (CRL number {} now held); nothing was changed, send it again",
            current.as_ref().map_or("none", |h| h.crl_number.as_str())
        )));
    }
    let h = &folded.held;
    let entries = i64::try_from(h.serials.len()).unwrap_or(i64::MAX);
    let written = sqlx::query(
        "INSERT INTO certificate_authority_crls (key_id, crl_number, base_number, scope, this_update, next_update, \
         entries, revoked_serials, crl_sha256, source, ingested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (key_id) DO UPDATE SET crl_number = excluded.crl_number, base_number = excluded.base_number, \
         scope = excluded.scope, this_update = excluded.this_update, next_update = excluded.next_update, \
         entries = excluded.entries, revoked_serials = excluded.revoked_serials, crl_sha256 = excluded.crl_sha256, \
         source = excluded.source, ingested_at = excluded.ingested_at",
    )
    .bind(key_id)
    .bind(&h.crl_number)
    .bind(&h.base_number)
    .bind(&h.scope)
    .bind(h.this_update)
    .bind(h.next_update)
    .bind(entries)
    .bind(h.serials.as_blob().to_vec())
    .bind(&h.crl_sha256)
    .bind(folded.source)
    .bind(&now)
    .execute(&mut *tx)
    .await;
    written.map_err(|e| or_race(e, Race::ForeignKey, || DbError::not_found(format!("CA {key_id} was deleted meanwhile"))))?;
    let mut adopted = Vec::new();
    if !folded.published_at.is_empty() {
        let urls: String = sqlx::query("SELECT crl_urls FROM certificate_authorities WHERE key_id = $1")
            .bind(key_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("crl_urls")?;
        if urls == "[]" {
            sqlx::query("UPDATE certificate_authorities SET crl_urls = $1, updated_at = $2 WHERE key_id = $3")
                .bind(serde_json::Value::from(folded.published_at.clone()).to_string())
                .bind(&now)
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
            for url in &folded.published_at {
                insert_fetch(&mut tx, key_id, url).await?;
            }
            adopted = folded.published_at.clone();
        }
    }
    let ca = get_in(&mut tx, key_id, clock::now_seconds()).await?.ok_or_else(|| DbError::not_found("the CA went away"))?;
    let mut detail = folded.detail.clone();
    if let Some(object) = detail.as_object_mut() {
        object.insert("added".into(), folded.added.len().into());
        object.insert("removed".into(), folded.removed.len().into());
        object.insert("entries".into(), entries.into());
        object.insert("source".into(), folded.source.into());
        if !adopted.is_empty() {
            object.insert("adopted_crl_urls".into(), adopted.into());
        }
    }
    let record = AuditRecord { actor, changed: &Owner::Platform, action: "crl.ingest", target: key_id.to_string(), detail };
    let changes = crl_changes(&ca, &folded);
    let version = commit_change(db, tx, record, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: ca, version, changes })
}

/// The snapshot changes of a folded CRL: the CA's new deadline, and the serials it added
/// and removed (so a CRL update travels as a delta of about its difference).
fn crl_changes(ca: &CertificateAuthority, folded: &FoldedCrl) -> Vec<Change> {
    let Some(record) = ca_record(ca, Some(&folded.held)) else { return Vec::new() };
    let key = record.key.clone();
    let mut changes = vec![Change::UpsertCa(record)];
    if !folded.removed.is_empty() {
        changes.push(Change::CrlUnrevoke { ca: key.clone(), serials: serial_texts(folded.removed.iter().map(Vec::as_slice)) });
    }
    if !folded.added.is_empty() {
        changes.push(Change::CrlRevoke { ca: key, serials: serial_texts(folded.added.iter().map(Vec::as_slice)) });
    }
    changes
}

/// Every CA as the snapshot carries it, with the revoked serials of its CRL: the input of a
/// full build, read in `tx`.
pub(crate) async fn snapshot_rows(tx: &mut Tx) -> DbResult<Vec<(Change, Option<SerialSet>)>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM certificate_authorities ORDER BY key_id")).fetch_all(&mut **tx).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let ca = from_row(row)?;
        let held = held_crl(tx, &ca.key_id).await?;
        if let Some(record) = ca_record(&ca, held.as_ref()) {
            out.push((Change::UpsertCa(record), held.map(|h| h.serials)));
        }
    }
    Ok(out)
}

/// Every CA with its CRL facts, for `/metrics`.
pub async fn all(db: &Db) -> DbResult<Vec<CertificateAuthority>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = list(db, cursor.as_deref(), super::MAX_PAGE).await?;
        out.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_ends_at_next_update_plus_grace() {
        assert_eq!(valid_until(Some(1_000), 60), Some(1_060));
        assert_eq!(valid_until(Some(1_000), -5), Some(1_000));
        assert_eq!(valid_until(None, 60), None);
    }
}
