//! Everything the filter needs, read in one consistent transaction: the input of a full
//! snapshot build. Bindings stream (a million of them); every other row is read as the
//! [`Change`] that would have added it, so a full build and a patch speak one vocabulary.

use super::{get_flag, Backend, Db};
use crate::domain::change::{
    BindingRecord, Change, ConstraintRecord, IssuerRecord, MappingRecord, RevokedSerialRecord, SanRuleRecord,
};
use crate::domain::Owner;
use certbind_shared::identity::{Claim, SanKind};
use certbind_shared::snapshot::ConstraintKind;
use certbind_shared::Fingerprint;
use futures_util::TryStreamExt;
use sqlx::Row;

/// The identity data at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityRows {
    /// `snapshot_state.version` in the same transaction as the rows.
    pub version: i64,
    pub bindings: Vec<BindingRecord>,
    /// Every rule, as the change that adds it, in table order then key order: blocklist
    /// entries, revoked serials, thumbprint mappings, SAN rules, constraints, issuers.
    pub rules: Vec<Change>,
    /// Rows left out because they cannot be represented (logged as they are met).
    pub skipped: usize,
    /// The revoked serials of each CA's CRL (the CA itself is in `rules`).
    pub crl_serials: Vec<(certbind_shared::certificate::KeyIdentifier, super::crls::SerialSet)>,
}

/// Reads the identity data and its version in one read-only transaction.
pub async fn load(db: &Db) -> sqlx::Result<IdentityRows> {
    let mut bindings = Vec::new();
    let mut rows = load_streaming(db, &mut bindings).await?;
    rows.bindings = bindings;
    Ok(rows)
}

/// Where [`load_streaming`] hands the bindings.
pub trait BindingSink {
    /// Called once, before the first binding, with their number and everything else.
    fn start(&mut self, bindings: usize, rest: &IdentityRows);
    fn push(&mut self, row: BindingRecord);
}

impl BindingSink for Vec<BindingRecord> {
    fn start(&mut self, bindings: usize, _rest: &IdentityRows) {
        self.reserve_exact(bindings);
    }

    fn push(&mut self, row: BindingRecord) {
        Vec::push(self, row);
    }
}

/// A fingerprint column; a value that is not canonical hex is logged and the row left out (it
/// fails closed: an unreadable binding is an unenrolled card, an unreadable rule is absent).
pub fn stored_fingerprint(text: &str, table: &str) -> Option<Fingerprint> {
    match Fingerprint::from_canonical_hex(text) {
        Ok(fp) => Some(fp),
        Err(_) => {
            tracing::error!(table, "row with a non-canonical fingerprint left out of the snapshot");
            None
        }
    }
}

/// [`load`], handing each binding to `sink` in ascending fingerprint order (byte order of the
/// canonical hex) instead of collecting them; the returned rows have no bindings. Everything
/// else is read first, so the sink learns the number of bindings and the rest of the data
/// before the first binding arrives.
pub async fn load_streaming(db: &Db, sink: &mut impl BindingSink) -> sqlx::Result<IdentityRows> {
    let (begin, by_fingerprint) = match db.backend() {
        // A deferred SQLite transaction reads one WAL snapshot from its first SELECT on.
        Backend::Sqlite => ("BEGIN", "ORDER BY fingerprint"),
        // Byte order whatever the database's locale.
        Backend::Postgres => ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "ORDER BY fingerprint COLLATE \"C\""),
    };
    let mut tx = db.reader().begin_with(begin).await?;
    let version: i64 =
        sqlx::query("SELECT version FROM snapshot_state WHERE id = 1").fetch_one(&mut *tx).await?.try_get("version")?;
    let mut rows = IdentityRows { version, ..Default::default() };
    let disabled = disabled_ids(&mut tx).await?;
    load_rules(&mut tx, None, &mut rows).await?;
    // A disabled org's constraints are replaced by the one that refuses all its certificates
    // ([`disabled_constraint`]); its other rules stay, so every claim stays as it was.
    rows.rules.retain(|rule| match rule {
        Change::AddConstraint(ConstraintRecord { owner: Owner::Org(org), .. }) => !disabled.contains(org),
        _ => true,
    });
    rows.rules.extend(disabled.iter().map(|org| disabled_constraint(org)));

    let cas = super::cas::snapshot_rows(&mut tx).await.map_err(|e| match e {
        super::DbError::Database(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    })?;
    for (ca, serials) in cas {
        if let (Change::UpsertCa(record), Some(serials)) = (&ca, serials) {
            rows.crl_serials.push((record.key.clone(), serials));
        }
        rows.rules.push(ca);
    }

    let count: i64 = sqlx::query("SELECT COUNT(*) FROM smart_card_links").fetch_one(&mut *tx).await?.try_get(0)?;
    sink.start(usize::try_from(count).unwrap_or(0), &rows);
    // Streamed, and read by column position: a million rows must not sit in memory.
    let query = format!("SELECT fingerprint, user_id, org_id, enabled, verified FROM smart_card_links {by_fingerprint}");
    let mut bindings = sqlx::query(&query).fetch(&mut *tx);
    while let Some(row) = bindings.try_next().await? {
        let Some(fingerprint) = stored_fingerprint(&row.try_get::<String, _>(0)?, "smart_card_links") else {
            rows.skipped += 1;
            continue;
        };
        sink.push(BindingRecord {
            fingerprint,
            user_id: row.try_get(1)?,
            org_id: row.try_get(2)?,
            enabled: get_flag(&row, 3)?,
            claim: Claim::from_verified(get_flag(&row, 4)?),
        });
    }
    drop(bindings);
    tx.commit().await?;
    Ok(rows)
}

/// Every rule, as the change that adds it, in table order then key order (blocklist entries,
/// revoked serials, thumbprint mappings, SAN rules, constraints, issuers): all owners', or
/// only those of `org`. Rows that cannot be represented are counted in `out.skipped`.
pub(crate) async fn load_rules(tx: &mut super::Tx, org: Option<&str>, out: &mut IdentityRows) -> sqlx::Result<()> {
    // `$1` is bound to every query; it filters only when an org is asked for.
    let only = if org.is_some() { "WHERE org_id = $1" } else { "WHERE $1 = ''" };
    let owner = |row: &sqlx::any::AnyRow| -> sqlx::Result<Owner> { Ok(Owner::from_column(row.try_get("org_id")?)) };

    for row in sqlx::query(&format!("SELECT org_id, fingerprint, issuer_dn, serial FROM blocklist {only} ORDER BY id")).bind(org.unwrap_or("")).fetch_all(&mut **tx).await? {
        let fingerprint: Option<String> = row.try_get("fingerprint")?;
        let issuer_dn: Option<String> = row.try_get("issuer_dn")?;
        let serial: Option<String> = row.try_get("serial")?;
        match (fingerprint, issuer_dn, serial) {
            (Some(fp), _, _) => match stored_fingerprint(&fp, "blocklist") {
                Some(fingerprint) => out.rules.push(Change::Block { owner: owner(&row)?, fingerprint }),
                None => out.skipped += 1,
            },
            (None, Some(issuer_dn), Some(serial)) => {
                out.rules.push(Change::RevokeSerial(RevokedSerialRecord { owner: owner(&row)?, issuer_dn, serial }))
            }
            _ => out.skipped += 1,
        }
    }
    for row in sqlx::query(&format!("SELECT org_id, fingerprint, principal, verified FROM thumbprint_mappings {only} ORDER BY fingerprint")).bind(org.unwrap_or(""))
        .fetch_all(&mut **tx)
        .await?
    {
        let fp: String = row.try_get("fingerprint")?;
        match stored_fingerprint(&fp, "thumbprint_mappings") {
            Some(fingerprint) => {
                // The platform's mappings claim nothing: always spelled verified.
                let owner = owner(&row)?;
                let claim = if owner.is_platform() { Claim::Verified } else { Claim::from_verified(get_flag(&row, "verified")?) };
                out.rules.push(Change::MapPrincipal(MappingRecord { owner, fingerprint, principal: row.try_get("principal")?, claim }))
            }
            None => out.skipped += 1,
        }
    }
    for row in sqlx::query(&format!("SELECT org_id, san_kind, domain, issuer_dn FROM mapping_rules {only} ORDER BY id")).bind(org.unwrap_or("")).fetch_all(&mut **tx).await? {
        let kind: String = row.try_get("san_kind")?;
        let issuer_dn: Option<String> = row.try_get("issuer_dn")?;
        let kind = match kind.as_str() {
            "email" => SanKind::Email,
            "upn" => SanKind::Upn,
            other => {
                tracing::error!(kind = other, "mapping rule of unknown SAN kind left out of the snapshot");
                out.skipped += 1;
                continue;
            }
        };
        // A rule from before issuers were named: it maps nothing until replaced.
        let Some(issuer_dn) = issuer_dn else {
            out.skipped += 1;
            continue;
        };
        out.rules.push(Change::AddSanRule(SanRuleRecord { owner: owner(&row)?, kind, domain: row.try_get("domain")?, issuer_dn }));
    }
    for row in sqlx::query(&format!("SELECT org_id, kind, value FROM identity_constraints {only} ORDER BY id")).bind(org.unwrap_or("")).fetch_all(&mut **tx).await? {
        let kind: String = row.try_get("kind")?;
        match ConstraintKind::from_name(&kind) {
            Some(kind) => out.rules.push(Change::AddConstraint(ConstraintRecord { owner: owner(&row)?, kind, value: row.try_get("value")? })),
            None => {
                tracing::error!(kind, "constraint of unknown kind left out of the snapshot");
                out.skipped += 1;
            }
        }
    }
    for row in sqlx::query(&format!("SELECT org_id, issuer, audiences, jwks FROM token_issuers {only} ORDER BY id")).bind(org.unwrap_or("")).fetch_all(&mut **tx).await? {
        let audiences: Option<String> = row.try_get("audiences")?;
        let audiences = match audiences.as_deref().map(serde_json::from_str::<Vec<String>>).transpose() {
            Ok(a) => a.unwrap_or_default(),
            Err(_) => {
                // Fail closed: without its audiences the issuer would accept any audience.
                tracing::error!("issuer with unreadable audiences left out of the snapshot");
                out.skipped += 1;
                continue;
            }
        };
        let jwks: String = row.try_get("jwks")?;
        out.rules.push(Change::UpsertIssuer(IssuerRecord {
            owner: owner(&row)?,
            issuer: row.try_get("issuer")?,
            audiences,
            jwks_json: jwks.into_bytes(),
        }));
    }

    Ok(())
}

/// The value of a disabled org's one constraint, a `san_email_domain`: the certificate must
/// carry an email SAN and every one must be in this "domain". A domain read from an email
/// address is what follows its last `@`, so it never contains one: no certificate meets it.
pub const DISABLED_EMAIL_DOMAIN: &str = "org-disabled@certbind.invalid";

/// The constraint that stands in for a disabled org's own.
pub fn disabled_constraint(org_id: &str) -> Change {
    Change::AddConstraint(ConstraintRecord {
        owner: Owner::Org(org_id.to_string()),
        kind: ConstraintKind::SanEmailDomain,
        value: DISABLED_EMAIL_DOMAIN.to_string(),
    })
}

/// The ids of every disabled org, read in `tx`.
pub(crate) async fn disabled_ids(tx: &mut super::Tx) -> sqlx::Result<Vec<String>> {
    let rows = sqlx::query("SELECT id FROM orgs WHERE disabled_at IS NOT NULL ORDER BY id").fetch_all(&mut **tx).await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}
