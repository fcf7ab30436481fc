//! One path for every CRL, uploaded or fetched: read (DER or PEM, within the caps), find the
//! registered CA it names, verify it with that CA's key, fold it onto the CRL held (a newer
//! complete CRL replaces it, a delta applies to its base), and store the result with the
//! difference, which the snapshot carries.

use super::number::parse_decimal;
use crate::db::cas;
use crate::domain::ca::CertificateAuthority;
use crate::db::crls::{self, FoldedCrl, HeldCrl, SerialSet};
use crate::db::{Actor, Db, DbError};
use crate::domain::change::Committed;
use certbind_shared::certificate::{CaCertificate, KeyIdentifier};
use certbind_shared::crl::{crl_der, Crl, CrlError, CrlLimits, CrlNumber, CrlScope, RevokedSerials, Serial};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::fmt;

/// How far ahead of our clock a CRL's thisUpdate may be: CAs' clocks and ours differ by
/// seconds to minutes; a CRL further ahead is from the future and refused.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Where a CRL came from, as the audit log and the API say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlSource {
    Upload,
    /// Fetched by the poller from this distribution point.
    Fetch { url: String },
}

impl CrlSource {
    fn name(&self) -> &'static str {
        match self {
            CrlSource::Upload => "upload",
            CrlSource::Fetch { .. } => "fetch",
        }
    }
}

/// Why a CRL was not taken.
#[derive(Debug)]
pub enum IngestError {
    /// The reader refused it (garbage, truncated, over a cap, indirect, an unknown critical
    /// extension — the error names it).
    Unreadable(CrlError),
    /// No registered CA has the CRL's AuthorityKeyIdentifier (or, without one, its issuer DN).
    UnknownCa { authority_key: Option<String>, issuer_dn: String },
    /// The CA named cannot vouch for it: bad signature, another issuer, a CA certificate that
    /// may not sign CRLs.
    NotVerified { ca: String, error: CrlError },
    /// thisUpdate is ahead of our clock by more than [`MAX_CLOCK_SKEW_SECS`].
    FromTheFuture { this_update: i64, now: i64 },
    /// A CRL number below the one held: an old CRL replayed.
    Replay { ca: String, held: String, offered: String },
    /// A delta CRL whose base is not held (no complete CRL yet, or an older one).
    DeltaBaseNotHeld { ca: String, base: String, held: Option<String> },
    /// An authority revocation list (onlyContainsCACerts), or a CRL of another scope than the
    /// one held: it does not speak of the CA's users the way the held one does.
    WrongScope { ca: String, error: CrlError },
    Store(DbError),
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngestError::Unreadable(e) => write!(f, "the CRL cannot be read: {e}"),
            IngestError::UnknownCa { authority_key: Some(key), issuer_dn } => write!(
                f,
                "no registered CA has key identifier {key} (the CRL's authorityKeyIdentifier; issuer {issuer_dn:?}): \
                 register the CA first (POST /api/v1/admin/cas, or `certbind ca add`)"
            ),
            IngestError::UnknownCa { authority_key: None, issuer_dn } => write!(
                f,
                "the CRL has no authorityKeyIdentifier and no registered CA has its issuer DN {issuer_dn:?}: register the CA first"
            ),
            IngestError::NotVerified { ca, error } => write!(f, "the CRL does not verify against CA {ca}: {error}"),
            IngestError::FromTheFuture { this_update, now } => write!(
                f,
                "the CRL's thisUpdate ({}) is {} seconds ahead of this server's clock; a CRL from the future is refused",
                crate::time::format_epoch(*this_update),
                this_update - now
            ),
            IngestError::Replay { ca, held, offered } => write!(
                f,
                "CA {ca}: CRL number {offered} is below the one held ({held}); an older CRL is refused (a replay would \
                 bring back released holds and drop revocations made since)"
            ),
            IngestError::DeltaBaseNotHeld { ca, base, held: None } => {
                write!(f, "CA {ca}: a delta CRL on base CRL number {base}, but no complete CRL is held; send the complete CRL first")
            }
            IngestError::DeltaBaseNotHeld { ca, base, held: Some(held) } => write!(
                f,
                "CA {ca}: a delta CRL on base CRL number {base}, but CRL number {held} is held; send the complete CRL it applies to"
            ),
            IngestError::WrongScope { ca, error } => write!(f, "CA {ca}: {error}"),
            IngestError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for IngestError {}

impl From<DbError> for IngestError {
    fn from(e: DbError) -> Self {
        IngestError::Store(e)
    }
}

/// A CRL taken.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub ca: CertificateAuthority,
    /// The CRL's own number, and whether it was a delta.
    pub crl_number: String,
    pub delta: bool,
    /// Serials it added to and removed from the set held.
    pub added: usize,
    pub removed: usize,
    /// False when it was the CRL already held (fetched again): nothing was stored.
    pub changed: bool,
}

/// What the blocking part reads before the CA is known.
struct Named {
    der: Vec<u8>,
    authority_key: Option<KeyIdentifier>,
    issuer_dn: String,
}

fn name_of(bytes: Vec<u8>, limits: &CrlLimits) -> Result<Named, CrlError> {
    let decoded = match crl_der(&bytes, limits)? {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(der) => Some(der),
    };
    let der = decoded.unwrap_or(bytes);
    let crl = Crl::from_der(&der, limits)?;
    let authority_key = crl.authority_key_identifier().cloned();
    let issuer_dn = crl.issuer_dn().to_owned();
    drop(crl);
    Ok(Named { der, authority_key, issuer_dn })
}

/// The fold's result: the new set held, or the CRL held already.
enum Fold {
    Same { number: CrlNumber, delta: bool },
    New {
        held: Box<HeldCrl>,
        added: Vec<Vec<u8>>,
        removed: Vec<Vec<u8>>,
        number: CrlNumber,
        delta: bool,
        detail: serde_json::Value,
        /// The http: URIs of the CRL's Issuing Distribution Point: where the CA says it
        /// publishes this CRL (signed, so as trustworthy as the CRL).
        published_at: Vec<String>,
    },
}

fn scope_name(scope: CrlScope) -> &'static str {
    match scope {
        CrlScope::All => "all",
        CrlScope::UserCertificates => "user_certificates",
        CrlScope::CaCertificates => "ca_certificates",
    }
}

fn scope_of(name: &str) -> CrlScope {
    match name {
        "user_certificates" => CrlScope::UserCertificates,
        "ca_certificates" => CrlScope::CaCertificates,
        _ => CrlScope::All,
    }
}

/// The held set as the shared crate folds it.
fn held_serials(ca: &KeyIdentifier, held: &HeldCrl) -> Result<RevokedSerials, IngestError> {
    let corrupt = |what: &str| {
        IngestError::Store(DbError::Database(sqlx::Error::Decode(Box::new(std::io::Error::other(format!(
            "CA {ca}: the stored {what} cannot be read"
        ))))))
    };
    let number = parse_decimal(&held.crl_number).ok_or_else(|| corrupt("CRL number"))?;
    RevokedSerials::from_serials(ca.clone(), scope_of(&held.scope), number, held.serials.iter().map(Serial::from_der_content))
        .ok_or_else(|| corrupt("revoked serials"))
}

/// Added and removed serials between two sets in [`SerialSet`] order.
fn difference<'a>(
    old: impl Iterator<Item = &'a [u8]>,
    new: impl Iterator<Item = &'a [u8]>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut old, mut new) = (old.peekable(), new.peekable());
    loop {
        match (old.peek(), new.peek()) {
            (None, None) => return (added, removed),
            (Some(o), None) => {
                removed.push(o.to_vec());
                old.next();
            }
            (None, Some(n)) => {
                added.push(n.to_vec());
                new.next();
            }
            (Some(o), Some(n)) => match crls::serial_order(o, n) {
                Ordering::Less => {
                    removed.push(o.to_vec());
                    old.next();
                }
                Ordering::Greater => {
                    added.push(n.to_vec());
                    new.next();
                }
                Ordering::Equal => {
                    old.next();
                    new.next();
                }
            },
        }
    }
}

/// Verifies `der` with `ca` and folds it onto `held`: CPU work, run off the async runtime.
fn fold(der: &[u8], ca: &CaCertificate, held: Option<&HeldCrl>, limits: &CrlLimits, now: i64) -> Result<Fold, IngestError> {
    let key = ca.key_identifier.to_hex();
    let crl = Crl::from_der(der, limits).map_err(IngestError::Unreadable)?;
    let crl = crl.verify(ca).map_err(|error| IngestError::NotVerified { ca: key.clone(), error })?;
    if crl.this_update() > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(IngestError::FromTheFuture { this_update: crl.this_update(), now });
    }
    if crl.scope() == CrlScope::CaCertificates {
        return Err(IngestError::WrongScope {
            ca: key,
            error: CrlError::WrongKind { expected: "a CRL of the CA's end-entity certificates, not an authority revocation list (onlyContainsCACerts)" },
        });
    }
    let number = crl.number();
    let delta = crl.is_delta();
    let held_set = held.map(|h| held_serials(&ca.key_identifier, h)).transpose()?;
    let scope_error = |error: CrlError| match error {
        CrlError::ScopeMismatch { .. } => IngestError::WrongScope { ca: key.clone(), error },
        other => IngestError::NotVerified { ca: key.clone(), error: other },
    };
    let folded = match (&held_set, crl.base_number()) {
        (Some(set), _) if number == set.number() => return Ok(Fold::Same { number, delta }),
        (Some(set), _) if number < set.number() => {
            return Err(IngestError::Replay { ca: key, held: set.number().to_string(), offered: number.to_string() })
        }
        (None, Some(base)) => return Err(IngestError::DeltaBaseNotHeld { ca: key, base: base.to_string(), held: None }),
        (None, None) => RevokedSerials::from_complete(&crl).map_err(scope_error)?,
        (Some(set), None) => {
            let mut next = set.clone();
            next.apply_complete(&crl).map_err(scope_error)?;
            next
        }
        (Some(set), Some(base)) => {
            let mut next = set.clone();
            match next.apply_delta(&crl) {
                Ok(()) => next,
                Err(CrlError::DeltaDoesNotApply { held, .. }) => {
                    return Err(IngestError::DeltaBaseNotHeld { ca: key, base: base.to_string(), held: Some(held.to_string()) })
                }
                Err(e) => return Err(scope_error(e)),
            }
        }
    };
    let new_set = SerialSet::from_sorted(folded.iter().map(|s| s.der_content())).unwrap_or_default();
    let (added, removed) = match held {
        Some(h) => difference(h.serials.iter(), new_set.iter()),
        None => (new_set.iter().map(<[u8]>::to_vec).collect(), Vec::new()),
    };
    let next_update = match (delta, held) {
        // A delta does not shorten what its base CRL vouches for.
        (true, Some(h)) => match (h.next_update, crl.next_update()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        },
        _ => crl.next_update(),
    };
    let sha256 = certbind_shared::encoding::hex_lower(&Sha256::digest(der));
    let detail = serde_json::json!({
        "crl_number": number.to_string(),
        "delta": delta,
        "base_number": crl.base_number().map(|b| b.to_string()),
        "this_update": crate::time::format_epoch(crl.this_update()),
        "next_update": crl.next_update().map(crate::time::format_epoch),
        "crl_sha256": sha256,
    });
    let held = HeldCrl {
        crl_number: number.to_string(),
        base_number: if delta { held.map(|h| h.base_number.clone()).unwrap_or_default() } else { number.to_string() },
        scope: scope_name(crl.scope()).to_string(),
        this_update: crl.this_update(),
        next_update,
        crl_sha256: sha256,
        serials: new_set,
    };
    let published_at = crl
        .distribution_point_uris()
        .iter()
        .filter(|uri| super::distribution_point::check_crl_url(uri).is_ok())
        .map(|uri| (*uri).to_owned())
        .take(super::distribution_point::MAX_CRL_URLS)
        .collect();
    Ok(Fold::New { held: Box::new(held), added, removed, number, delta, detail, published_at })
}

/// Verifies and stores one CRL (DER or PEM), uploaded or fetched, at `now` (Unix seconds).
pub async fn ingest(
    db: &Db,
    actor: &Actor,
    bytes: Vec<u8>,
    source: CrlSource,
    limits: CrlLimits,
    now: i64,
) -> Result<Committed<Ingested>, IngestError> {
    let named = blocking(move || name_of(bytes, &limits).map_err(IngestError::Unreadable)).await?;
    let candidates = match &named.authority_key {
        Some(key) => vec![key.to_hex()],
        None => cas::with_subject_dn(db, &named.issuer_dn).await?,
    };
    let der = std::sync::Arc::new(named.der);
    let mut last_error = None;
    for key_id in &candidates {
        let Some((certificate, _policy)) = cas::certificate(db, key_id).await? else { continue };
        let held = crls::held(db, key_id).await?;
        let expected = held.as_ref().map(|h| h.crl_number.clone());
        let der = std::sync::Arc::clone(&der);
        let held_for_fold = held.clone();
        let folded = blocking(move || fold(&der, &certificate, held_for_fold.as_ref(), &limits, now)).await;
        match folded {
            Ok(Fold::Same { number, delta }) => {
                let ca = cas::get(db, key_id).await?.ok_or_else(|| DbError::not_found(format!("CA {key_id} was deleted meanwhile")))?;
                let value = Ingested { ca, crl_number: number.to_string(), delta, added: 0, removed: 0, changed: false };
                return Ok(Committed { value, version: 0, changes: Vec::new() });
            }
            Ok(Fold::New { held, added, removed, number, delta, mut detail, published_at }) => {
                if let (CrlSource::Fetch { url }, Some(object)) = (&source, detail.as_object_mut()) {
                    object.insert("url".into(), url.clone().into());
                }
                let (added_count, removed_count) = (added.len(), removed.len());
                let folded = FoldedCrl { held: *held, added, removed, source: source.name(), detail, published_at };
                let stored = cas::store_crl(db, actor, key_id, expected.as_deref(), folded).await?;
                let value = Ingested {
                    ca: stored.value,
                    crl_number: number.to_string(),
                    delta,
                    added: added_count,
                    removed: removed_count,
                    changed: true,
                };
                return Ok(Committed { value, version: stored.version, changes: stored.changes });
            }
            // Two CAs may share a DN: the signature tells which one issued a CRL without an AKI.
            Err(IngestError::NotVerified { error: CrlError::BadSignature, .. }) if named.authority_key.is_none() => {
                last_error = Some(IngestError::NotVerified { ca: key_id.clone(), error: CrlError::BadSignature });
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(IngestError::UnknownCa {
        authority_key: named.authority_key.map(|k| k.to_hex()),
        issuer_dn: named.issuer_dn,
    }))
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, IngestError> + Send + 'static) -> Result<T, IngestError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        IngestError::Store(DbError::Database(sqlx::Error::Io(std::io::Error::other(format!("the CRL task failed: {e}")))))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_taken_in_set_order() {
        let old: Vec<&[u8]> = vec![&[1], &[3], &[1, 0]];
        let new: Vec<&[u8]> = vec![&[2], &[3], &[1, 0], &[0, 0x80, 1]];
        let (added, removed) = difference(old.into_iter(), new.into_iter());
        assert_eq!(added, vec![vec![2], vec![0, 0x80, 1]]);
        assert_eq!(removed, vec![vec![1]]);
    }
}
