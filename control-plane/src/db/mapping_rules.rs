//! SAN mapping rules: which SAN kind (email or UPN) in which domain, asserted by certificates
//! of which issuer, may name a principal when a certificate has no binding and no thumbprint
//! mapping. An org admin's rule names a domain a super-admin assigned to the org (or a
//! subdomain of one, see [`domains`]). One (kind, domain, issuer) belongs to one owner: the
//! first to claim it. An org's
//! rule that would claim a certificate bound or mapped in another org is refused (see
//! [`claims`]). A claim made in bad faith (an org claiming another's domain first) is for a
//! super-admin to resolve; the rule's issuer DN keeps an org from asserting a domain for
//! certificates of a CA it does not name.

use super::error::{or_race, Race};
use super::{claims, commit_change, domains, new_id, Actor, AuditRecord, Db, DbError, DbResult, SanRule, Page, Viewer, Visibility};
use crate::domain::Owner;
use crate::domain::change::{Change, Committed, SanRuleRecord};
use certbind_shared::identity::SanKind;
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "id, org_id, san_kind, domain, issuer_dn, created_at";

fn from_row(row: &AnyRow) -> sqlx::Result<SanRule> {
    Ok(SanRule {
        id: row.try_get("id")?,
        owner: Owner::from_column(row.try_get("org_id")?),
        san_kind: row.try_get("san_kind")?,
        domain: row.try_get("domain")?,
        issuer_dn: row.try_get("issuer_dn")?,
        created_at: row.try_get("created_at")?,
    })
}

fn san_kind(text: &str) -> Option<SanKind> {
    match text {
        "email" => Some(SanKind::Email),
        "upn" => Some(SanKind::Upn),
        _ => None,
    }
}

/// The snapshot change a rule makes (`allowed`) or undoes; none for a rule without issuer.
fn change_of(rule: &SanRule, allowed: bool) -> Vec<Change> {
    let (Some(kind), Some(issuer_dn)) = (san_kind(&rule.san_kind), rule.issuer_dn.clone()) else { return Vec::new() };
    let (owner, domain) = (rule.owner.clone(), rule.domain.clone());
    if allowed {
        vec![Change::AddSanRule(SanRuleRecord { owner, kind, domain, issuer_dn })]
    } else {
        vec![Change::RemoveSanRule(SanRuleRecord { owner, kind, domain, issuer_dn })]
    }
}

/// `san_kind` is `email` or `upn`; `domain` lowercase and `issuer_dn` canonical (validated by
/// the caller).
pub async fn create(
    db: &Db,
    actor: &Actor,
    owner: Owner,
    san_kind: &str,
    domain: &str,
    issuer_dn: &str,
) -> DbResult<Committed<SanRule>> {
    let rule = SanRule {
        id: new_id(),
        owner,
        san_kind: san_kind.to_string(),
        domain: domain.to_string(),
        issuer_dn: Some(issuer_dn.to_string()),
        created_at: crate::time::now_rfc3339(),
    };
    let mut tx = db.begin_change().await?;
    if let (Owner::Org(org), false) = (&rule.owner, actor.super_admin) {
        if !domains::covers(&mut tx, org, domain).await? {
            return Err(DbError::Forbidden(format!(
                "{domain:?} is not one of this org's domains: a super-admin assigns them \
                 (POST /api/v1/admin/orgs/{org}/domains)"
            )));
        }
    }
    let claimed = sqlx::query("SELECT org_id FROM mapping_rules WHERE san_kind = $1 AND domain = $2 AND issuer_dn = $3")
        .bind(san_kind)
        .bind(domain)
        .bind(issuer_dn)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(row) = claimed {
        let holder = Owner::from_column(row.try_get("org_id")?);
        return Err(if actor.super_admin {
            // A super-admin sees every org: the holder is named, so the claim can be resolved.
            let holder = holder.org_id().map_or_else(|| "the platform".to_string(), |id| format!("org {id}"));
            DbError::conflict(format!("{san_kind} addresses in {domain:?} from this issuer are already mapped by {holder}"))
        } else {
            // Whether the caller's own org or another holds it is not told apart: that would
            // tell one org about another.
            claims::cannot_claim_domain()
        });
    }
    // The rule would claim a certificate another org has bound or mapped: the filter would
    // then refuse that org's card holder as claimed by two orgs.
    if let Owner::Org(org) = &rule.owner {
        if claims::held_by_another_org(&mut tx, org, san_kind, domain, issuer_dn).await? {
            return Err(claims::cannot_claim_domain());
        }
    }
    sqlx::query(&format!("INSERT INTO mapping_rules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"))
        .bind(&rule.id)
        .bind(rule.owner.org_id())
        .bind(&rule.san_kind)
        .bind(&rule.domain)
        .bind(&rule.issuer_dn)
        .bind(&rule.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| or_race(e, Race::Unique, claims::cannot_claim_domain))?;
    let audit = AuditRecord {
        actor,
        changed: &rule.owner,
        action: "mapping_rule.create",
        target: rule.id.clone(),
        detail: serde_json::json!({ "san_kind": rule.san_kind, "domain": rule.domain, "issuer_dn": rule.issuer_dn }),
    };
    let changes = change_of(&rule, true);
    let version = commit_change(db, tx, audit, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: rule, version, changes })
}

pub async fn get(db: &Db, viewer: &Viewer, id: &str) -> DbResult<Option<SanRule>> {
    let sql = format!("SELECT {COLUMNS} FROM mapping_rules WHERE id = $1 AND {}", Viewer::predicate(2));
    let row = viewer.bind(sqlx::query(&sql).bind(id)).fetch_optional(db.reader()).await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(db: &Db, viewer: &Viewer, cursor: Option<&str>, limit: i64) -> DbResult<Page<SanRule>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM mapping_rules WHERE {} AND id > $3 ORDER BY id LIMIT $4",
        Viewer::predicate(1)
    );
    let rows = viewer.bind(sqlx::query(&sql)).bind(cursor.unwrap_or("")).bind(limit + 1).fetch_all(db.reader()).await?;
    let rules = rows.iter().map(from_row).collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rules, limit, |r| r.id.clone()))
}

pub async fn delete(db: &Db, actor: &Actor, viewer: &Viewer, id: &str) -> DbResult<Committed<SanRule>> {
    let mut tx = db.begin_change().await?;
    let sql = format!("DELETE FROM mapping_rules WHERE id = $1 AND {} RETURNING {COLUMNS}", Viewer::predicate(2));
    let row = viewer.bind(sqlx::query(&sql).bind(id)).fetch_optional(&mut *tx).await?;
    let Some(rule) = row.as_ref().map(from_row).transpose()? else {
        return Err(DbError::not_found(format!("no mapping rule {id:?} in this org")));
    };
    let audit = AuditRecord {
        actor,
        changed: &rule.owner,
        action: "mapping_rule.delete",
        target: rule.id.clone(),
        detail: serde_json::json!({ "san_kind": rule.san_kind, "domain": rule.domain, "issuer_dn": rule.issuer_dn }),
    };
    let changes = change_of(&rule, false);
    let version = commit_change(db, tx, audit, Visibility::Snapshot(&changes)).await?.unwrap_or_default();
    Ok(Committed { value: rule, version, changes })
}
