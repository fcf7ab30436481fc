//! `/api/v1/admin/thumbprint-mappings`: certificate fingerprint → principal.

use super::{canonical_fingerprint, page_limit, required_text, with_version, Admin, ApiJson, ApiQuery, PageQuery};
use crate::app::{AppState, IdentityChange};
use crate::db::{thumbprints, Page, ThumbprintMapping};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

/// The snapshot's strings are at most 255 bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 255;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbprintMappingRequest {
    pub fingerprint: String,
    pub principal: String,
}

pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<ThumbprintMappingRequest>,
) -> ApiResult<Response> {
    let fingerprint = canonical_fingerprint("fingerprint", &body.fingerprint)?;
    let principal = required_text("principal", &body.principal, MAX_PRINCIPAL_BYTES)?;
    let (mapping, version) = thumbprints::create(&state.db, &admin.actor(), &fingerprint, &principal).await?;
    state.identity_changed(version, IdentityChange::Other);
    Ok(with_version(version, (StatusCode::CREATED, Json(mapping))))
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<ThumbprintMapping>>> {
    let limit = page_limit(q.limit)?;
    let cursor = q.cursor.as_deref().map(|c| canonical_fingerprint("cursor", c)).transpose()?;
    Ok(Json(thumbprints::list(&state.db, admin.org_id(), cursor.as_deref(), limit).await?))
}

pub async fn get(State(state): State<AppState>, admin: Admin, Path(fingerprint): Path<String>) -> ApiResult<Json<ThumbprintMapping>> {
    let fingerprint = canonical_fingerprint("fingerprint", &fingerprint)?;
    thumbprints::get(&state.db, admin.org_id(), &fingerprint)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no thumbprint mapping {fingerprint} in this org")))
}

pub async fn delete(State(state): State<AppState>, admin: Admin, Path(fingerprint): Path<String>) -> ApiResult<Response> {
    let fingerprint = canonical_fingerprint("fingerprint", &fingerprint)?;
    let (mapping, version) = thumbprints::delete(&state.db, &admin.actor(), &fingerprint).await?;
    state.identity_changed(version, IdentityChange::Other);
    Ok(with_version(version, Json(mapping)))
}
