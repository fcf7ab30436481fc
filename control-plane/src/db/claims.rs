//! Claims across orgs: a certificate is answered by one org's rules at most (the filter
//! refuses a certificate two orgs claim, at one step or at different ones, as
//! `certificate_not_allowed`). So a write that would make a second org claim a certificate
//! — a binding or thumbprint mapping of a certificate another org's SAN rule names, a SAN
//! rule naming a certificate bound or mapped in another org — is refused here, before the
//! filter has to refuse the card holder. Platform rules claim nothing.
//!
//! Every refusal reads the same ([`cannot_claim`]): which org holds the certificate, or
//! whether any does, is not told to another org.
//!
//! Only what the control plane verified can claim a card against another org's rule. A
//! binding or thumbprint mapping whose certificate the control plane knows whole (given as
//! PEM now, or seen whole before) is checked here against every org's SAN rules and stored
//! [`Claim::Verified`]. One made by fields or by fingerprint alone cannot be checked: it is
//! accepted (so clients that bind by fields keep working) and stored [`Claim::Unverified`],
//! and the filter drops it wherever another org claims the same certificate verifiably (a SAN
//! rule, which the filter checks against the certificate itself), so it can never make that
//! org's card holder refused. [`admit`] is that rule, for the API and the command line alike.

use super::{DbError, DbResult, Tx};
use certbind_shared::identity::{Claim, SanKind};
use certbind_shared::Fingerprint;

/// What a binding or mapping write knows of its certificate.
#[derive(Debug, Clone, Copy)]
pub enum Evidence<'a> {
    /// The certificate itself: its issuer and the SAN domains SAN rules could claim it by.
    Certificate { issuer_dn: &'a str, sans: &'a [(SanKind, String)] },
    /// Only what the caller says: a binding's fields (`issuer_dn`) or a bare fingerprint.
    Stated { issuer_dn: Option<&'a str> },
}

/// Whether `org` may claim the certificate `fingerprint`, and on what: refused
/// ([`cannot_claim`]) when what the control plane knows of the certificate (given now, or
/// recorded when it was seen whole) is claimed by another org's SAN rule, or when a binding's
/// stated issuer is one another org's SAN rules name (binding by PEM says which addresses the
/// card has, and may pass); [`Claim::Verified`] when the certificate is known, else
/// [`Claim::Unverified`].
pub async fn admit(tx: &mut Tx, org: &str, fingerprint: &Fingerprint, evidence: Evidence<'_>) -> DbResult<Claim> {
    let recorded;
    let known = match evidence {
        Evidence::Certificate { issuer_dn, sans } => Some((issuer_dn, sans)),
        Evidence::Stated { .. } => {
            recorded = recorded_sans(tx, fingerprint).await?;
            recorded.as_ref().map(|(issuer_dn, sans)| (issuer_dn.as_str(), sans.as_slice()))
        }
    };
    match (known, evidence) {
        (Some((issuer_dn, sans)), _) => {
            if san_rule_of_another_org(tx, org, issuer_dn, sans).await? {
                return Err(cannot_claim());
            }
            Ok(Claim::Verified)
        }
        (None, Evidence::Stated { issuer_dn: Some(issuer_dn) }) => {
            if issuer_in_another_orgs_rules(tx, org, issuer_dn).await? {
                return Err(cannot_claim());
            }
            Ok(Claim::Unverified)
        }
        (None, _) => Ok(Claim::Unverified),
    }
}

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

/// Remembers the SAN domains and issuer of a certificate seen whole.
pub async fn record_sans(tx: &mut Tx, fingerprint: &Fingerprint, issuer_dn: &str, sans: &[(SanKind, String)]) -> DbResult<()> {
    for (kind, domain) in sans {
        sqlx::query(
            "INSERT INTO certificate_sans (fingerprint, san_kind, domain, issuer_dn) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(fingerprint.to_hex())
        .bind(kind_name(*kind))
        .bind(domain)
        .bind(issuer_dn)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The SAN domains remembered for a certificate, with its issuer.
pub async fn recorded_sans(tx: &mut Tx, fingerprint: &Fingerprint) -> DbResult<Option<(String, Vec<(SanKind, String)>)>> {
    let rows = sqlx::query("SELECT san_kind, domain, issuer_dn FROM certificate_sans WHERE fingerprint = $1")
        .bind(fingerprint.to_hex())
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
/// by a thumbprint mapping, in an org other than `org`, by a verified claim (an unverified one
/// loses to the rule in the filter, so it holds nothing back here).
pub async fn held_by_another_org(tx: &mut Tx, org: &str, kind: &str, domain: &str, issuer_dn: &str) -> DbResult<bool> {
    let found = sqlx::query(
        "SELECT 1 AS one FROM certificate_sans s WHERE s.san_kind = $1 AND s.domain = $2 AND s.issuer_dn = $3 AND (\
           EXISTS (SELECT 1 FROM smart_card_links l WHERE l.fingerprint = s.fingerprint AND l.org_id <> $4 \
                   AND l.verified = 1) \
           OR EXISTS (SELECT 1 FROM thumbprint_mappings m WHERE m.fingerprint = s.fingerprint \
                      AND m.org_id IS NOT NULL AND m.org_id <> $4 AND m.verified = 1)) \
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
