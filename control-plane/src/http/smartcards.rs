//! `/api/v1/admin/smartcards`: the binding routes (bind, list, revoke), plus get, enable/disable
//! and relabel, and binding by uploaded PEM.

use super::{double_option, page_limit, with_version, Admin, ApiJson, ApiQuery};
use crate::db::smartcards::{self, ListFilter, SmartCardUpdate};
use crate::db::{Page, SmartCardLink};
use crate::domain::binding::{checked_binding, GivenBinding, MAX_LABEL_BYTES};
use crate::domain::text::{canonical_dn, canonical_fingerprint, fingerprint as checked_fingerprint, optional_text, MAX_ID_BYTES};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use certbind_shared::clock;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// `PATCH /api/v1/admin/smartcards/{fingerprint}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    pub label: Option<Option<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub user_id: Option<String>,
    pub enabled: Option<bool>,
    pub issuer: Option<String>,
}

fn path_of(link: &SmartCardLink) -> String {
    format!("/api/v1/admin/smartcards/{}", link.fingerprint)
}

pub async fn bind(State(state): State<AppState>, admin: Admin, ApiJson(body): ApiJson<GivenBinding>) -> ApiResult<Response> {
    let card = checked_binding(body, clock::now_seconds())?;
    let (link, version) = state.identity_changed(smartcards::bind(&state.db, &admin.actor(), card).await?);
    state.metrics.binds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let location = path_of(&link);
    Ok(with_version(version, (StatusCode::CREATED, [(header::LOCATION, location)], Json(link))))
}

pub async fn list(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<SmartCardLink>>> {
    let limit = page_limit(query.limit)?;
    let filter = ListFilter {
        user_id: optional_text("user_id", query.user_id.as_deref(), MAX_ID_BYTES)?,
        enabled: query.enabled,
        issuer_dn: query.issuer.as_deref().map(|dn| canonical_dn("issuer", dn)).transpose()?,
        cursor: query.cursor.as_deref().map(|c| canonical_fingerprint("cursor", c)).transpose()?,
    };
    Ok(Json(smartcards::list(&state.db, admin.org_id(), &filter, limit).await?))
}

pub async fn get(State(state): State<AppState>, admin: Admin, Path(fingerprint): Path<String>) -> ApiResult<Json<SmartCardLink>> {
    let fingerprint = checked_fingerprint("fingerprint", &fingerprint)?;
    smartcards::get(&state.db, admin.org_id(), &fingerprint)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no card binding {fingerprint} in this org")))
}

pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path(fingerprint): Path<String>,
    ApiJson(body): ApiJson<UpdateRequest>,
) -> ApiResult<Response> {
    let fingerprint = checked_fingerprint("fingerprint", &fingerprint)?;
    if body.enabled.is_none() && body.label.is_none() {
        return Err(ApiError::validation("body", "give `enabled`, `label` or both"));
    }
    let label = match body.label {
        None => None,
        Some(label) => Some(optional_text("label", label.as_deref(), MAX_LABEL_BYTES)?),
    };
    let change = SmartCardUpdate { enabled: body.enabled, label };
    let (link, version) = state.identity_changed(smartcards::update(&state.db, &admin.actor(), &fingerprint, &change).await?);
    Ok(with_version(version, Json(link)))
}

pub async fn revoke(State(state): State<AppState>, admin: Admin, Path(fingerprint): Path<String>) -> ApiResult<Response> {
    let fingerprint = checked_fingerprint("fingerprint", &fingerprint)?;
    let (link, version) = state.identity_changed(smartcards::revoke(&state.db, &admin.actor(), &fingerprint).await?);
    state.metrics.revokes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(with_version(version, Json(link)).into_response())
}
