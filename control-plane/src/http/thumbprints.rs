//! `/api/v1/admin/thumbprint-mappings`: certificate fingerprint → principal. An org maps to
//! names in its own namespace (the filter sends `auth:account:org:{org_id}:{name}`); a
//! super-admin's `"scope": "platform"` mapping names any principal except one in a user's or
//! an org's namespace. A fingerprint is mapped once, and never while it is bound.

use super::{page_limit, with_version, Admin, ApiJson, ApiQuery, RuleQuery, Scope};
use crate::domain::text::{canonical_fingerprint, fingerprint as checked_fingerprint, required_text};
use crate::state::AppState;
use crate::db::thumbprints::SeenCertificate;
use crate::db::{thumbprints, Page, ThumbprintMapping};
use crate::domain::Owner;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

/// The snapshot's strings are at most 255 bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 255;

/// Namespaces only the filter composes: a user's (bindings) and an org's (org mappings), and
/// the prefix of an org registration's token issuer (`org:{org_id}:{iss}`).
pub const RESERVED_PRINCIPAL_PREFIXES: [&str; 3] = ["auth:account:user:", "auth:account:org:", "org:"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbprintMappingRequest {
    /// The certificate's fingerprint; optional when `certificate_pem` is given.
    pub fingerprint: Option<String>,
    /// The certificate itself: its SANs let the control plane refuse a mapping of a
    /// certificate another org's SAN rule claims.
    pub certificate_pem: Option<String>,
    pub principal: String,
    pub scope: Option<Scope>,
}

/// A principal `owner` may map to.
pub fn check_principal(owner: &Owner, text: &str) -> ApiResult<String> {
    let principal = required_text("principal", text, MAX_PRINCIPAL_BYTES)?;
    if principal.chars().any(char::is_whitespace) {
        return Err(ApiError::validation("principal", "must not contain spaces"));
    }
    if owner.is_platform() {
        let lower = principal.to_ascii_lowercase();
        if let Some(prefix) = RESERVED_PRINCIPAL_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
            return Err(ApiError::validation(
                "principal",
                format!("names the {prefix}… namespace, which only bindings and org mappings reach"),
            ));
        }
    }
    Ok(principal)
}

pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<ThumbprintMappingRequest>,
) -> ApiResult<Response> {
    let owner = admin.owner_for(body.scope)?;
    let given = body.fingerprint.as_deref().map(|fp| checked_fingerprint("fingerprint", fp)).transpose()?;
    let (fingerprint, certificate) = match &body.certificate_pem {
        Some(pem) => {
            let facts = crate::domain::certificate::facts_of_pem(pem)?.facts;
            let fingerprint = facts.fingerprint;
            if given.is_some_and(|given| given != fingerprint) {
                return Err(ApiError::validation("fingerprint", "is not the fingerprint of certificate_pem"));
            }
            let sans = crate::domain::certificate::san_domains(&facts);
            (fingerprint, Some(SeenCertificate { issuer_dn: facts.issuer_dn, sans }))
        }
        None => (given.ok_or_else(|| ApiError::validation("fingerprint", "is required unless `certificate_pem` is given"))?, None),
    };
    let principal = check_principal(&owner, &body.principal)?;
    let created = thumbprints::create(&state.db, &admin.actor(), owner, &fingerprint, &principal, certificate).await?;
    let (mapping, version) = state.identity_changed(created);
    Ok(with_version(version, (StatusCode::CREATED, Json(mapping))))
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(q): ApiQuery<RuleQuery>,
) -> ApiResult<Json<Page<ThumbprintMapping>>> {
    let limit = page_limit(q.limit)?;
    let cursor = q.cursor.as_deref().map(|c| canonical_fingerprint("cursor", c)).transpose()?;
    Ok(Json(thumbprints::list(&state.db, &admin.viewer(q.scope), cursor.as_deref(), limit).await?))
}

pub async fn get(State(state): State<AppState>, admin: Admin, Path(fingerprint): Path<String>) -> ApiResult<Json<ThumbprintMapping>> {
    let fingerprint = checked_fingerprint("fingerprint", &fingerprint)?;
    thumbprints::get(&state.db, &admin.viewer(None), &fingerprint)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no thumbprint mapping {fingerprint} in this org")))
}

pub async fn delete(State(state): State<AppState>, admin: Admin, Path(fingerprint): Path<String>) -> ApiResult<Response> {
    let fingerprint = checked_fingerprint("fingerprint", &fingerprint)?;
    let deleted = thumbprints::delete(&state.db, &admin.actor(), &admin.viewer(None), &fingerprint).await?;
    let (mapping, version) = state.identity_changed(deleted);
    Ok(with_version(version, Json(mapping)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_stay_in_their_namespace() {
        let org = Owner::Org("O".into());
        assert_eq!(check_principal(&org, " svc-api ").unwrap(), "svc-api");
        // An org's name is composed under its own prefix, so even this is harmless there.
        assert_eq!(check_principal(&org, "auth:account:user:X").unwrap(), "auth:account:user:X");
        assert_eq!(check_principal(&Owner::Platform, "spiffe://x/api").unwrap(), "spiffe://x/api");
        for reserved in ["auth:account:user:01J", "AUTH:Account:Org:o:svc", "org:01J:svc", "ORG:x"] {
            assert!(
                matches!(check_principal(&Owner::Platform, reserved), Err(ApiError::Validation { ref field, .. }) if field == "principal"),
                "{reserved}"
            );
        }
        assert!(matches!(check_principal(&org, "a b"), Err(ApiError::Validation { .. })));
    }
}
