//! `/api/v1/admin/constraints`: what an owner demands of certificates beyond a valid chain:
//! an org of its certificates, the platform (`"scope": "platform"`, super-admins) of all.

use certbind_shared::identity::REQUIRE_FRESH_CRL_VALUE;
use super::{check_cursor, rule_issuer_dn, page_limit, with_version, Admin, ApiJson, ApiQuery, RuleQuery, Scope};
use crate::domain::text::{canonical_domain, required_text};
use crate::state::AppState;
use crate::db::{constraints, IdentityConstraint, Page};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

/// Dotted OIDs of certificate policies are short (PIV's are ~22 characters).
pub const MAX_OID_BYTES: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintRequest {
    /// `allowed_issuer_dn`, `required_policy_oid` or `san_email_domain`.
    pub kind: String,
    pub value: String,
    pub scope: Option<Scope>,
}

async fn canonical_value(db: &crate::db::Db, witness: Option<&str>, kind: &str, value: &str) -> ApiResult<String> {
    match kind {
        "allowed_issuer_dn" => rule_issuer_dn(db, witness, "value", value).await,
        _ => plain_value(kind, value),
    }
}

/// The values of kinds that need no database to check.
fn plain_value(kind: &str, value: &str) -> ApiResult<String> {
    match kind {
        "required_policy_oid" => {
            let oid = required_text("value", value, MAX_OID_BYTES)?;
            let arcs: Vec<&str> = oid.split('.').collect();
            if arcs.len() < 2 || !arcs.iter().all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit())) {
                return Err(ApiError::validation("value", "must be a dotted OID such as 2.16.840.1.101.3.2.1.3.13"));
            }
            Ok(oid)
        }
        "san_email_domain" => Ok(canonical_domain("value", value)?),
        // A switch: the org's users need their CA's CRL fresh even where the CA's policy
        // does not require it. It tightens for the org's own users only.
        "require_fresh_crl" if value.trim() == REQUIRE_FRESH_CRL_VALUE => Ok(REQUIRE_FRESH_CRL_VALUE.to_string()),
        "require_fresh_crl" => Err(ApiError::validation("value", format!("must be {REQUIRE_FRESH_CRL_VALUE:?}: the constraint is a switch"))),
        _ => Err(ApiError::validation("kind", format!("must be one of {}", constraints::KINDS.join(", ")))),
    }
}

pub async fn create(State(state): State<AppState>, admin: Admin, ApiJson(body): ApiJson<ConstraintRequest>) -> ApiResult<Response> {
    let owner = admin.owner_for(body.scope)?;
    let value = canonical_value(&state.db, admin.dn_witness(), &body.kind, &body.value).await?;
    let created = constraints::create(&state.db, &admin.actor(), owner, &body.kind, &value).await?;
    let (constraint, version) = state.identity_changed(created);
    Ok(with_version(version, (StatusCode::CREATED, Json(constraint))))
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(q): ApiQuery<RuleQuery>,
) -> ApiResult<Json<Page<IdentityConstraint>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(constraints::list(&state.db, &admin.viewer(q.scope), check_cursor(q.cursor)?.as_deref(), limit).await?))
}

pub async fn get(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Json<IdentityConstraint>> {
    constraints::get(&state.db, &admin.viewer(None), &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no constraint {id:?} in this org")))
}

pub async fn delete(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let deleted = constraints::delete(&state.db, &admin.actor(), &admin.viewer(None), &id).await?;
    let (constraint, version) = state.identity_changed(deleted);
    Ok(with_version(version, Json(constraint)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_by_kind() {
        assert_eq!(plain_value("required_policy_oid", "2.16.840.1.101.3.2.1.3.13").unwrap(), "2.16.840.1.101.3.2.1.3.13");
        assert!(matches!(plain_value("required_policy_oid", "2.16..1"), Err(ApiError::Validation { .. })));
        assert_eq!(plain_value("san_email_domain", "MAIL.MIL").unwrap(), "mail.mil");
        assert_eq!(plain_value("require_fresh_crl", "true").unwrap(), "true");
        assert!(matches!(plain_value("require_fresh_crl", "yes"), Err(ApiError::Validation { ref field, .. }) if field == "value"));
        assert!(matches!(plain_value("colour", "x"), Err(ApiError::Validation { ref field, .. }) if field == "kind"));
    }
}
