//! `/api/v1/admin/issuers`: trusted bearer-token issuers and their JWKS, checked with the
//! same parser the filter uses, so a key set the filter would refuse is refused here. Each
//! owner registers its own: two orgs may trust the same `iss` with their own keys and
//! audiences; a super-admin's `"scope": "platform"` registration applies to every token.

use crate::domain::issuer::{checked_audiences, checked_issuer, checked_jwks};
use super::{check_cursor, double_option, page_limit, with_version, Admin, ApiJson, ApiQuery, RuleQuery, Scope};
use crate::state::AppState;
use crate::db::{issuers, Page, TokenIssuer};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerRequest {
    pub issuer: String,
    pub audiences: Option<Vec<String>>,
    pub jwks: serde_json::Value,
    pub scope: Option<Scope>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerUpdate {
    #[serde(default, deserialize_with = "double_option")]
    pub audiences: Option<Option<Vec<String>>>,
    pub jwks: Option<serde_json::Value>,
}

pub async fn create(State(state): State<AppState>, admin: Admin, ApiJson(body): ApiJson<IssuerRequest>) -> ApiResult<Response> {
    let owner = admin.owner_for(body.scope)?;
    let issuer = checked_issuer(&owner, &body.issuer, &body.jwks)?;
    let audiences = checked_audiences(body.audiences)?;
    let (record, version) =
        state.identity_changed(issuers::create(&state.db, &admin.actor(), owner, &issuer, audiences, body.jwks).await?);
    Ok(with_version(version, (StatusCode::CREATED, Json(record))))
}

pub async fn list(State(state): State<AppState>, admin: Admin, ApiQuery(q): ApiQuery<RuleQuery>) -> ApiResult<Json<Page<TokenIssuer>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(issuers::list(&state.db, &admin.viewer(q.scope), check_cursor(q.cursor)?.as_deref(), limit).await?))
}

pub async fn get(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Json<TokenIssuer>> {
    issuers::get(&state.db, &admin.viewer(None), &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no issuer {id:?} in this org")))
}

pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<IssuerUpdate>,
) -> ApiResult<Response> {
    if body.audiences.is_none() && body.jwks.is_none() {
        return Err(ApiError::validation("body", "give `jwks`, `audiences` or both"));
    }
    if let Some(jwks) = &body.jwks {
        checked_jwks(jwks)?;
    }
    let audiences = match body.audiences {
        None => None,
        Some(a) => Some(checked_audiences(a)?),
    };
    let updated = issuers::update(&state.db, &admin.actor(), &admin.viewer(None), &id, audiences, body.jwks).await?;
    let (record, version) = state.identity_changed(updated);
    Ok(with_version(version, Json(record)))
}

pub async fn delete(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let (record, version) = state.identity_changed(issuers::delete(&state.db, &admin.actor(), &admin.viewer(None), &id).await?);
    Ok(with_version(version, Json(record)))
}
