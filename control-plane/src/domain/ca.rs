//! An issuing CA as the platform registers it: exactly one CA certificate whose key signs
//! CRLs, and the revocation policy its certificates meet. Checked here for the API and the
//! command line alike.

use super::invalid::{Checked, Invalid};
use super::text::MAX_PEM_TEXT_BYTES;
use crate::revocation::distribution_point::{check_crl_url, MAX_CRL_URLS};
use certbind_shared::certificate::pem::decode_certificate_pem_file;
use certbind_shared::certificate::CaCertificate;
use serde::Serialize;

/// Longest grace period after nextUpdate: CAs publish daily to weekly; past a month a CRL
/// says little about today.
pub const MAX_GRACE_PERIOD_SECONDS: i64 = 30 * 86_400;

/// What the platform decides about a CA's certificates' revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationPolicy {
    /// Refuse the CA's certificates (`revocation_unknown`) while no fresh CRL is held.
    pub require_fresh_crl: bool,
    /// Seconds after the CRL's nextUpdate it still counts as fresh.
    pub grace_period_seconds: i64,
    /// Accept the CA's certificates when no fresh CRL is held even though one is required
    /// (counted by the filter).
    pub fail_open: bool,
    /// HTTP(S) distribution points the poller fetches the CA's CRL from.
    pub crl_urls: Vec<String>,
}

impl Default for RevocationPolicy {
    /// Fail closed; a day past nextUpdate rides out one missed publication.
    fn default() -> Self {
        RevocationPolicy { require_fresh_crl: true, grace_period_seconds: 86_400, fail_open: false, crl_urls: Vec::new() }
    }
}

/// A CA to register: its certificate's facts, read by the caller.
#[derive(Debug, Clone)]
pub struct NewCa {
    pub certificate: CaCertificate,
    pub certificate_pem: String,
    pub policy: RevocationPolicy,
}

/// A change of policy; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyUpdate {
    pub require_fresh_crl: Option<bool>,
    pub grace_period_seconds: Option<i64>,
    pub fail_open: Option<bool>,
    pub crl_urls: Option<Vec<String>>,
}

/// The CA certificate in `pem`: exactly one, a CA (basicConstraints cA) whose key may sign
/// CRLs.
pub fn checked_ca_certificate(pem: &str) -> Checked<CaCertificate> {
    let field = "certificate_pem";
    if pem.len() > MAX_PEM_TEXT_BYTES {
        return Err(Invalid::new(field, format!("is {} bytes, more than the {MAX_PEM_TEXT_BYTES}-byte limit", pem.len())));
    }
    let chain = decode_certificate_pem_file(pem.as_bytes()).map_err(|e| Invalid::new(field, e.to_string()))?;
    let der = match chain.as_slice() {
        [der] => der,
        more => return Err(Invalid::new(field, format!("holds {} certificates; register each CA on its own", more.len()))),
    };
    let ca = CaCertificate::from_der(der).map_err(|e| Invalid::new(field, e.to_string()))?;
    if !ca.is_ca {
        return Err(Invalid::new(field, "is not a CA certificate (basicConstraints cA is not asserted)"));
    }
    if !ca.may_sign_crls {
        return Err(Invalid::new(
            field,
            "the CA's keyUsage does not include cRLSign: its CRLs are signed by another key, which certbind does not follow",
        ));
    }
    Ok(ca)
}

/// A policy's values checked: the grace period in range, distribution points fetchable,
/// trimmed and without repeats.
pub fn checked_policy(update: PolicyUpdate) -> Checked<PolicyUpdate> {
    if let Some(grace) = update.grace_period_seconds {
        if !(0..=MAX_GRACE_PERIOD_SECONDS).contains(&grace) {
            return Err(Invalid::new("grace_period_seconds", format!("must be between 0 and {MAX_GRACE_PERIOD_SECONDS} (30 days)")));
        }
    }
    if let Some(urls) = &update.crl_urls {
        if urls.len() > MAX_CRL_URLS {
            return Err(Invalid::new("crl_urls", format!("at most {MAX_CRL_URLS} distribution points")));
        }
        for url in urls {
            check_crl_url(url.trim()).map_err(|problem| Invalid::new("crl_urls", problem))?;
        }
    }
    let crl_urls = update.crl_urls.map(|urls| {
        let mut urls: Vec<String> = urls.iter().map(|u| u.trim().to_string()).collect();
        urls.dedup();
        urls
    });
    Ok(PolicyUpdate { crl_urls, ..update })
}

/// A registration: the CA certificate in `pem` and the policy, unset values defaulted.
pub fn checked_new_ca(pem: &str, update: PolicyUpdate) -> Checked<NewCa> {
    let certificate = checked_ca_certificate(pem)?;
    let update = checked_policy(update)?;
    let defaults = RevocationPolicy::default();
    let policy = RevocationPolicy {
        require_fresh_crl: update.require_fresh_crl.unwrap_or(defaults.require_fresh_crl),
        grace_period_seconds: update.grace_period_seconds.unwrap_or(defaults.grace_period_seconds),
        fail_open: update.fail_open.unwrap_or(defaults.fail_open),
        crl_urls: update.crl_urls.unwrap_or_default(),
    };
    Ok(NewCa { certificate, certificate_pem: pem.trim().to_string() + "\n", policy })
}

/// A registered CA as storage returns it and the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateAuthority {
    /// Lowercase hex of its key identifier: the CA's id.
    pub key_id: String,
    /// `subject_key_identifier`, or `spki_sha256` when its certificate has none.
    pub key_source: String,
    #[serde(serialize_with = "crate::domain::text::serialize_dn")]
    pub subject_dn: String,
    /// SHA-256 of its certificate's DER, 64 lowercase hex digits.
    pub fingerprint: String,
    pub certificate_pem: String,
    pub not_before: String,
    pub not_after: String,
    pub policy: RevocationPolicy,
    pub created_at: String,
    pub updated_at: String,
    /// The CRL held, if any.
    pub crl: Option<HeldCrlInfo>,
    /// One per distribution point the poller fetches.
    pub fetches: Vec<CrlFetch>,
}

/// The held CRL's facts, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldCrlInfo {
    /// The number of the last CRL folded in (a delta's, after one).
    pub crl_number: String,
    /// The complete CRL's number the set was built from.
    pub base_number: String,
    pub scope: String,
    pub this_update: String,
    pub next_update: Option<String>,
    /// nextUpdate plus the grace period: until when the CRL counts as fresh.
    pub valid_until: Option<String>,
    /// `fresh`, or `stale` past `valid_until` (or with no nextUpdate).
    pub status: &'static str,
    /// Seconds since thisUpdate.
    pub age_seconds: i64,
    pub entries: i64,
    pub crl_sha256: String,
    pub source: String,
    pub ingested_at: String,
}

/// One distribution point's fetch state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrlFetch {
    pub url: String,
    pub last_attempt_at: Option<String>,
    /// `updated`, `unchanged`, `failed` or `refused`.
    pub last_result: Option<String>,
    pub last_error: Option<String>,
    pub last_success_at: Option<String>,
    /// Failures in a row.
    pub failures: i64,
    pub next_attempt_at: String,
}
