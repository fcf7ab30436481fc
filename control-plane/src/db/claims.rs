//! Claims across orgs: a certificate is answered by one org's rules at most (the filter
//! refuses a certificate two orgs claim, at one step or at different ones, as
//! `certificate_not_allowed`). So a write that would make a second org claim a certificate
//! — a binding or thumbprint mapping of a certificate another org's SAN rule names, a SAN
//! rule naming a certificate bound or mapped in another org — is refused here, before the
//! filter has to refuse the card holder. Platform rules claim nothing.
//!
//! Every refusal reads the same ([`cannot_claim`]): which org holds the certificate, or
//! whether any does, is not told to another org.

use super::{DbError, DbResult, Tx};
use certbind_shared::decision::constraints::email_domain;
use certbind_shared::identity::SanKind;
use certbind_shared::certificate::CertificateFacts;

/// The one answer to a write that would claim a certificate another org's rules answer (or
/// that is taken by the caller's own org: the answer does not tell them apart).
pub fn cannot_claim() -> DbError {
    DbError::conflict(
        "the certificate cannot be bound or mapped here: it is bound, mapped or claimed by a mapping rule already \
         (give certificate_pem when binding by fields)",
    )
}

/// The one answer to a SAN rule that would claim certificates another org holds.
pub fn cannot_claim_domain() -> DbError {
    DbError::conflict("this mapping rule cannot be created here: its addresses from this issuer are claimed already")
}

fn kind_name(kind: SanKind) -> &'static str {
    match kind {
        SanKind::Email => "email",
        SanKind::Upn => "upn",
    }
}

/// The (kind, lowercase domain) pairs a certificate's SANs offer to SAN rules, each once.
pub fn san_domains(facts: &CertificateFacts) -> Vec<(SanKind, String)> {
    let mut out: Vec<(SanKind, String)> = Vec::new();
    let values = facts.emails().map(|v| (SanKind::Email, v)).chain(facts.upns().map(|v| (SanKind::Upn, v)));
    for (kind, value) in values {
        if let Some(domain) = email_domain(value) {
            let pair = (kind, domain.to_ascii_lowercase());
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    out
}

/// Remembers the SAN domains and issuer of a certificate seen whole.
pub async fn record_sans(tx: &mut Tx, fingerprint: &str, issuer_dn: &str, sans: &[(SanKind, String)]) -> DbResult<()> {
    for (kind, domain) in sans {
        sqlx::query(
            "INSERT INTO certificate_sans (fingerprint, san_kind, domain, issuer_dn) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(fingerprint)
        .bind(kind_name(*kind))
        .bind(domain)
        .bind(issuer_dn)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The SAN domains remembered for a certificate, with its issuer.
pub async fn recorded_sans(tx: &mut Tx, fingerprint: &str) -> DbResult<Option<(String, Vec<(SanKind, String)>)>> {
    let rows = sqlx::query("SELECT san_kind, domain, issuer_dn FROM certificate_sans WHERE fingerprint = $1")
        .bind(fingerprint)
        .fetch_all(&mut **tx)
        .await?;
    let mut issuer = None;
    let mut sans = Vec::new();
    for row in rows {
        use sqlx::Row;
        let kind: String = row.try_get("san_kind")?;
        let kind = if kind == "email" { SanKind::Email } else { SanKind::Upn };
        sans.push((kind, row.try_get::<String, _>("domain")?));
        issuer = Some(row.try_get::<String, _>("issuer_dn")?);
    }
    Ok(issuer.map(|issuer| (issuer, sans)))
}

/// Whether a SAN rule of an org other than `org` names one of `sans` from `issuer_dn`.
pub async fn san_rule_of_another_org(tx: &mut Tx, org: &str, issuer_dn: &str, sans: &[(SanKind, String)]) -> DbResult<bool> {
    for (kind, domain) in sans {
        let found = sqlx::query(
            "SELECT 1 AS one FROM mapping_rules WHERE san_kind = $1 AND domain = $2 AND issuer_dn = $3 \
             AND org_id IS NOT NULL AND org_id <> $4",
        )
        .bind(kind_name(*kind))
        .bind(domain)
        .bind(issuer_dn)
        .bind(org)
        .fetch_optional(&mut **tx)
        .await?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether an org other than `org` has a SAN rule for certificates of `issuer_dn` at all (a
/// binding given by fields, whose SANs are unknown, could be one it claims).
pub async fn issuer_in_another_orgs_rules(tx: &mut Tx, org: &str, issuer_dn: &str) -> DbResult<bool> {
    let found = sqlx::query(
        "SELECT 1 AS one FROM mapping_rules WHERE issuer_dn = $1 AND org_id IS NOT NULL AND org_id <> $2",
    )
    .bind(issuer_dn)
    .bind(org)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

/// Whether a certificate with a SAN of `kind` in `domain` from `issuer_dn` is bound, or mapped
/// by a thumbprint mapping, in an org other than `org`.
pub async fn held_by_another_org(tx: &mut Tx, org: &str, kind: &str, domain: &str, issuer_dn: &str) -> DbResult<bool> {
    let found = sqlx::query(
        "SELECT 1 AS one FROM certificate_sans s WHERE s.san_kind = $1 AND s.domain = $2 AND s.issuer_dn = $3 AND (\
           EXISTS (SELECT 1 FROM smart_card_links l WHERE l.fingerprint = s.fingerprint AND l.org_id <> $4) \
           OR EXISTS (SELECT 1 FROM thumbprint_mappings m WHERE m.fingerprint = s.fingerprint \
                      AND m.org_id IS NOT NULL AND m.org_id <> $4)) \
         LIMIT 1",
    )
    .bind(kind)
    .bind(domain)
    .bind(issuer_dn)
    .bind(org)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}
