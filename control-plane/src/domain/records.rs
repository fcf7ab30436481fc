//! What the control plane keeps, one type per noun: storage returns these, the API and the
//! command line show them (DNs in their display form, owners as `scope` and `org_id`).

use super::Owner;
use crate::domain::text::{serialize_dn, serialize_optional_dn};
use certbind_shared::Fingerprint;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// False once a super-admin disabled it (see `db::orgs`).
    pub enabled: bool,
    pub disabled_at: Option<String>,
    /// Whether its admins may bind PIV Card Authentication certificates (off unless a
    /// super-admin turns it on; see `domain::card`).
    pub allow_card_authentication: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub email: Option<String>,
    pub created_at: String,
}

/// A row of `smart_card_links`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmartCardLink {
    pub fingerprint: Fingerprint,
    pub user_id: String,
    pub org_id: String,
    #[serde(serialize_with = "serialize_dn")]
    pub subject_dn: String,
    #[serde(serialize_with = "serialize_dn")]
    pub issuer_dn: String,
    /// Lowercase hex, even length, no prefix or separators.
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub label: Option<String>,
    pub enabled: bool,
    /// Bound from the certificate itself (its PEM, checked against every org's SAN rules);
    /// `false`: by fields, which loses to another org's claim on the same card.
    pub verified: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// What the certificate says (SANs, FASC-N, policies, EKUs, key, PIV or Card
    /// Authentication), read from the certificate kept at binding; `None` for a binding given
    /// by fields (or made before certificates were kept), whose certificate was never seen.
    pub facts: Option<certbind_shared::certificate::CardFacts>,
}

/// An admin token as listed: never the token itself, which is stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminToken {
    pub id: String,
    pub org_id: String,
    pub super_admin: bool,
    pub label: Option<String>,
    pub created_at: String,
    /// Kept to the minute.
    pub last_used_at: Option<String>,
}

/// A proxy credential as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyCredential {
    pub id: String,
    pub label: Option<String>,
    pub created_at: String,
    /// The last answered snapshot fetch, written a second or so after it.
    pub last_used_at: Option<String>,
    /// When the last snapshot fetch was answered, and the version the proxy holds since.
    pub last_fetch_at: Option<String>,
    pub last_fetch_version: Option<i64>,
}

/// A blocked certificate: by fingerprint, or by issuer and serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlocklistEntry {
    pub id: String,
    #[serde(flatten)]
    pub owner: Owner,
    pub fingerprint: Option<Fingerprint>,
    #[serde(serialize_with = "serialize_optional_dn")]
    pub issuer_dn: Option<String>,
    pub serial: Option<String>,
    pub reason: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenIssuer {
    pub id: String,
    #[serde(flatten)]
    pub owner: Owner,
    pub issuer: String,
    pub audiences: Option<Vec<String>>,
    pub jwks: serde_json::Value,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SanRule {
    pub id: String,
    #[serde(flatten)]
    pub owner: Owner,
    /// `email` or `upn`.
    pub san_kind: String,
    /// Lowercase, the part after the `@`.
    pub domain: String,
    /// The CA (canonical RFC 4514 DN) whose certificates may assert the domain. `null` only
    /// for rules made before issuers were named: those are not in the snapshot. Answers show
    /// its display form.
    #[serde(serialize_with = "serialize_optional_dn")]
    pub issuer_dn: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThumbprintMapping {
    pub fingerprint: Fingerprint,
    #[serde(flatten)]
    pub owner: Owner,
    pub principal: String,
    /// Mapped with the certificate itself, or one seen whole before (checked against every
    /// org's SAN rules); `false`: by fingerprint alone, which loses to another org's claim on
    /// the same card.
    pub verified: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityConstraint {
    pub id: String,
    #[serde(flatten)]
    pub owner: Owner,
    /// `allowed_issuer_dn`, `required_policy_oid` or `san_email_domain`.
    pub kind: String,
    pub value: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub org_id: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
    pub snapshot_version: Option<i64>,
    pub at: String,
}

/// One page of a list, with the cursor for the next page when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Default and largest page sizes: big enough for tooling to page quickly, small enough
/// that one request cannot make the server build a huge response.
pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says there is more.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more { rows.last().map(cursor_of) } else { None };
        Page { items: rows, next_cursor }
    }
}

/// A domain a super-admin assigned to an org (see `db::domains`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgDomain {
    pub org_id: String,
    pub domain: String,
    pub created_at: String,
}
