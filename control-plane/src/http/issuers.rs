//! `/api/v1/admin/issuers`: trusted bearer-token issuers and their JWKS, checked with the
//! same parser the filter uses, so a key set the filter would refuse is refused here.

use super::{check_cursor, double_option, page_limit, required_text, with_version, Admin, ApiJson, ApiQuery, PageQuery};
use crate::app::{AppState, IdentityChange};
use crate::db::{issuers, Page, TokenIssuer};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use certbind_shared::pop::jwks::Jwks;
use serde::Deserialize;

/// The snapshot's strings are at most 255 bytes.
pub const MAX_ISSUER_BYTES: usize = 255;
pub const MAX_AUDIENCES: usize = 32;
pub const MAX_AUDIENCE_BYTES: usize = 255;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerRequest {
    pub issuer: String,
    pub audiences: Option<Vec<String>>,
    pub jwks: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerUpdate {
    #[serde(default, deserialize_with = "double_option")]
    pub audiences: Option<Option<Vec<String>>>,
    pub jwks: Option<serde_json::Value>,
}

fn check_jwks(jwks: &serde_json::Value) -> ApiResult<()> {
    let bytes = serde_json::to_vec(jwks).map_err(|e| ApiError::validation("jwks", e.to_string()))?;
    Jwks::parse(&bytes).map_err(|e| ApiError::validation("jwks", e.to_string()))?;
    Ok(())
}

fn check_audiences(audiences: Option<Vec<String>>) -> ApiResult<Option<Vec<String>>> {
    let Some(audiences) = audiences else { return Ok(None) };
    if audiences.len() > MAX_AUDIENCES {
        return Err(ApiError::validation("audiences", format!("at most {MAX_AUDIENCES} audiences")));
    }
    let checked = audiences
        .iter()
        .map(|a| required_text("audiences", a, MAX_AUDIENCE_BYTES))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Some(checked))
}

pub async fn create(State(state): State<AppState>, admin: Admin, ApiJson(body): ApiJson<IssuerRequest>) -> ApiResult<Response> {
    let issuer = required_text("issuer", &body.issuer, MAX_ISSUER_BYTES)?;
    let audiences = check_audiences(body.audiences)?;
    check_jwks(&body.jwks)?;
    let (record, version) = issuers::create(&state.db, &admin.actor(), &issuer, audiences, body.jwks).await?;
    state.identity_changed(version, IdentityChange::Other);
    Ok(with_version(version, (StatusCode::CREATED, Json(record))))
}

pub async fn list(State(state): State<AppState>, admin: Admin, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Json<Page<TokenIssuer>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(issuers::list(&state.db, admin.org_id(), check_cursor(q.cursor)?.as_deref(), limit).await?))
}

pub async fn get(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Json<TokenIssuer>> {
    issuers::get(&state.db, admin.org_id(), &id)
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
        check_jwks(jwks)?;
    }
    let audiences = match body.audiences {
        None => None,
        Some(a) => Some(check_audiences(a)?),
    };
    let (record, version) = issuers::update(&state.db, &admin.actor(), &id, audiences, body.jwks).await?;
    state.identity_changed(version, IdentityChange::Other);
    Ok(with_version(version, Json(record)))
}

pub async fn delete(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let (record, version) = issuers::delete(&state.db, &admin.actor(), &id).await?;
    state.identity_changed(version, IdentityChange::Other);
    Ok(with_version(version, Json(record)))
}
