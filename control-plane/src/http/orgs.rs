//! `/api/v1/admin/orgs` and the domains assigned to each: super-admin only.

use super::{check_cursor, page_limit, with_version, ApiJson, ApiQuery, PageQuery, SuperAdmin};
use crate::domain::text::org_name;
use crate::state::AppState;
use crate::db::domains;
use crate::domain::records::OrgDomain;
use crate::db::{orgs, Org, Page};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;


#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgRequest {
    pub name: String,
}

pub async fn create(State(state): State<AppState>, SuperAdmin(admin): SuperAdmin, ApiJson(body): ApiJson<OrgRequest>) -> ApiResult<Response> {
    let name = org_name(&body.name)?;
    let org = orgs::create(&state.db, Some(&admin.actor()), &name).await?;
    let location = format!("/api/v1/admin/orgs/{}", org.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(org)).into_response())
}

pub async fn list(State(state): State<AppState>, _admin: SuperAdmin, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Json<Page<Org>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(orgs::list(&state.db, check_cursor(q.cursor)?.as_deref(), limit).await?))
}

pub async fn get(State(state): State<AppState>, _admin: SuperAdmin, Path(id): Path<String>) -> ApiResult<Json<Org>> {
    orgs::get(&state.db, &id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no org {id:?}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgUpdate {
    pub enabled: Option<bool>,
    pub allow_card_authentication: Option<bool>,
}

/// Disables or enables an org (`db::orgs` says exactly what that does), and lets it bind PIV
/// Card Authentication certificates or stops it. A super-admin cannot disable its own org:
/// its token would stop working with nobody left to undo it.
pub async fn update(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<OrgUpdate>,
) -> ApiResult<Response> {
    if body.enabled == Some(false) && id == admin.org_id() {
        return Err(ApiError::Forbidden("a super-admin cannot disable its own org".into()));
    }
    let allowed = match body.allow_card_authentication {
        Some(allow) => Some(orgs::set_allow_card_authentication(&state.db, &admin.actor(), &id, allow).await?),
        None => None,
    };
    let enabled = match (body.enabled, allowed) {
        (Some(enabled), _) => enabled,
        (None, Some(org)) => return Ok(Json(org).into_response()),
        (None, None) => return Err(ApiError::validation("body", "give `enabled`, `allow_card_authentication` or both")),
    };
    let committed = orgs::set_enabled(&state.db, &admin.actor(), &id, enabled).await?;
    if committed.version == 0 {
        // Already in that state: nothing committed.
        return Ok(Json(committed.value).into_response());
    }
    let (org, version) = state.identity_changed(committed);
    Ok(with_version(version, Json(org)))
}

/// Deletes a disabled org and everything it owns; its audit log stays.
pub async fn delete(State(state): State<AppState>, SuperAdmin(admin): SuperAdmin, Path(id): Path<String>) -> ApiResult<Response> {
    let (org, version) = state.identity_changed(orgs::delete(&state.db, &admin.actor(), &id).await?);
    Ok(with_version(version, Json(org)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainRequest {
    pub domain: String,
}

/// The org's assigned domains, all of them (a handful).
#[derive(Debug, serde::Serialize)]
pub struct DomainList {
    pub items: Vec<OrgDomain>,
}

/// Assigns a domain to an org: its admins may then create SAN mapping rules for addresses in
/// it (and its subdomains).
pub async fn assign_domain(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
    Path(org_id): Path<String>,
    ApiJson(body): ApiJson<DomainRequest>,
) -> ApiResult<Response> {
    let domain = crate::domain::text::canonical_domain("domain", &body.domain)?;
    let assigned = domains::assign(&state.db, &admin.actor(), &org_id, &domain).await?;
    Ok((StatusCode::CREATED, Json(assigned)).into_response())
}

pub async fn list_domains(State(state): State<AppState>, _admin: SuperAdmin, Path(org_id): Path<String>) -> ApiResult<Json<DomainList>> {
    if orgs::get(&state.db, &org_id).await?.is_none() {
        return Err(ApiError::not_found(format!("no org {org_id:?}")));
    }
    Ok(Json(DomainList { items: domains::list(&state.db, &org_id).await? }))
}

pub async fn unassign_domain(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
    Path((org_id, domain)): Path<(String, String)>,
) -> ApiResult<Json<OrgDomain>> {
    let domain = crate::domain::text::canonical_domain("domain", &domain)?;
    Ok(Json(domains::unassign(&state.db, &admin.actor(), &org_id, &domain).await?))
}
