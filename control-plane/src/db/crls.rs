//! The CRL each CA holds, and the fetching of it from the CA's distribution points. What a
//! CRL says is a fact about its CA, whoever brought it (`crate::revocation` verifies and folds
//! CRLs; this module stores the result and what the snapshot learns of it).

use super::error::decode_error;
use super::{Db, DbError, DbResult, Tx};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A CA's CRL as held, to fold the next CRL into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCrl {
    pub crl_number: String,
    pub base_number: String,
    pub scope: String,
    pub this_update: i64,
    pub next_update: Option<i64>,
    pub crl_sha256: String,
    /// The revoked serials (DER INTEGER contents), sorted shortest first, then by bytes.
    pub serials: SerialSet,
}

/// Revoked serials as stored: each its length octet then its DER INTEGER content, sorted
/// shortest first, then by bytes (the order `certbind_shared::crl::RevokedSerials` iterates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SerialSet(Vec<u8>);

impl SerialSet {
    /// From serial contents in order; `None` for one longer than 255 octets (no CRL carries it).
    pub fn from_sorted<'a>(serials: impl IntoIterator<Item = &'a [u8]>) -> Option<SerialSet> {
        let mut bytes = Vec::new();
        for serial in serials {
            bytes.push(u8::try_from(serial.len()).ok()?);
            bytes.extend_from_slice(serial);
        }
        Some(SerialSet(bytes))
    }

    /// From the stored blob; `None` when it is cut short.
    pub fn from_blob(bytes: Vec<u8>) -> Option<SerialSet> {
        let set = SerialSet(bytes);
        let mut at = 0usize;
        while at < set.0.len() {
            at = at.checked_add(1 + usize::from(*set.0.get(at)?))?;
        }
        (at == set.0.len()).then_some(set)
    }

    pub fn as_blob(&self) -> &[u8] {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut at = 0usize;
        std::iter::from_fn(move || {
            let len = usize::from(*self.0.get(at)?);
            let serial = self.0.get(at + 1..at + 1 + len)?;
            at += 1 + len;
            Some(serial)
        })
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The order of [`SerialSet`]: shorter first, then by bytes.
pub fn serial_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

pub(crate) async fn held_crl(tx: &mut Tx, key_id: &str) -> DbResult<Option<HeldCrl>> {
    let row = sqlx::query(
        "SELECT crl_number, base_number, scope, this_update, next_update, crl_sha256, revoked_serials \
         FROM certificate_authority_crls WHERE key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(held_from_row).transpose()
}

fn held_from_row(row: &AnyRow) -> DbResult<HeldCrl> {
    let blob: Vec<u8> = row.try_get("revoked_serials")?;
    let serials = SerialSet::from_blob(blob)
        .ok_or_else(|| DbError::Database(decode_error(std::io::Error::other("a stored revoked-serial set is cut short"))))?;
    Ok(HeldCrl {
        crl_number: row.try_get("crl_number")?,
        base_number: row.try_get("base_number")?,
        scope: row.try_get("scope")?,
        this_update: row.try_get("this_update")?,
        next_update: row.try_get("next_update")?,
        crl_sha256: row.try_get("crl_sha256")?,
        serials,
    })
}

/// The CRL held for `key_id`, read outside any change.
pub async fn held(db: &Db, key_id: &str) -> DbResult<Option<HeldCrl>> {
    let mut tx = db.reader().begin().await?;
    let held = held_crl(&mut tx, key_id).await?;
    tx.rollback().await?;
    Ok(held)
}

/// A CRL verified and folded by `crate::revocation`, to store.
#[derive(Debug, Clone)]
pub struct FoldedCrl {
    pub held: HeldCrl,
    /// Serials the fold added and removed, against the set held before.
    pub added: Vec<Vec<u8>>,
    pub removed: Vec<Vec<u8>>,
    /// `upload` or `fetch`.
    pub source: &'static str,
    /// What the audit row says of the CRL folded in.
    pub detail: serde_json::Value,
    /// Where the CRL says it is published (its Issuing Distribution Point's http: URIs): a CA
    /// registered without distribution points is fetched from there from now on.
    pub published_at: Vec<String>,
}

pub(super) async fn insert_fetch(tx: &mut Tx, key_id: &str, url: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO crl_fetches (key_id, url) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(key_id)
        .bind(url)
        .execute(&mut **tx)
        .await?;
    Ok(())
}



/// A distribution point due for a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueFetch {
    pub key_id: String,
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub failures: i64,
}

/// Distribution points whose next attempt is at or before `now`, soonest first.
pub async fn due_fetches(db: &Db, now: i64, limit: i64) -> DbResult<Vec<DueFetch>> {
    let rows = sqlx::query(
        "SELECT key_id, url, etag, last_modified, failures FROM crl_fetches WHERE next_attempt_at <= $1 \
         ORDER BY next_attempt_at, key_id, url LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DueFetch {
                key_id: r.try_get("key_id")?,
                url: r.try_get("url")?,
                etag: r.try_get("etag")?,
                last_modified: r.try_get("last_modified")?,
                failures: r.try_get("failures")?,
            })
        })
        .collect::<sqlx::Result<_>>()
        .map_err(DbError::from)
}

/// The outcome of one fetch, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    /// `updated`, `unchanged`, `failed` or `refused`.
    pub result: &'static str,
    pub error: Option<String>,
    /// New validators (kept as they were when `None`).
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub next_attempt_at: i64,
}

/// Records a fetch's outcome; bookkeeping, not audited (the CRL it stored is).
pub async fn record_fetch(db: &Db, key_id: &str, url: &str, outcome: &FetchResult) -> DbResult<()> {
    let now = crate::time::now_rfc3339();
    let success = matches!(outcome.result, "updated" | "unchanged");
    sqlx::query(
        "UPDATE crl_fetches SET last_attempt_at = $1, last_result = $2, last_error = $3, \
         etag = COALESCE($4, etag), last_modified = COALESCE($5, last_modified), \
         last_success_at = CASE WHEN $6 = 1 THEN $1 ELSE last_success_at END, \
         failures = CASE WHEN $6 = 1 THEN 0 ELSE failures + 1 END, next_attempt_at = $7 \
         WHERE key_id = $8 AND url = $9",
    )
    .bind(&now)
    .bind(outcome.result)
    .bind(&outcome.error)
    .bind(&outcome.etag)
    .bind(&outcome.last_modified)
    .bind(i32::from(success))
    .bind(outcome.next_attempt_at)
    .bind(key_id)
    .bind(url)
    .execute(db.writer())
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_sets_round_trip_and_refuse_a_cut_blob() {
        let serials: Vec<&[u8]> = vec![&[0x01], &[0x7f], &[0x01, 0x00], &[0x00, 0x80, 0x01]];
        let set = SerialSet::from_sorted(serials.iter().copied()).unwrap();
        assert_eq!(set.as_blob(), &[1, 0x01, 1, 0x7f, 2, 0x01, 0x00, 3, 0x00, 0x80, 0x01]);
        assert_eq!(set.iter().collect::<Vec<_>>(), serials);
        assert_eq!(set.len(), 4);
        let again = SerialSet::from_blob(set.as_blob().to_vec()).unwrap();
        assert_eq!(again, set);
        let mut cut = set.as_blob().to_vec();
        cut.pop();
        assert_eq!(SerialSet::from_blob(cut), None);
        assert_eq!(SerialSet::from_blob(Vec::new()), Some(SerialSet::default()));
    }
}
