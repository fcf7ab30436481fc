//! `/api/v1/admin/issuers`: trusted bearer-token issuers and their JWKS, checked with the
//! same parser the filter uses, so a key set the filter would refuse is refused here. Each
//! owner registers its own: two orgs may trust the same `iss` with their own keys and
//! audiences; a super-admin's `"scope": "platform"` registration applies to every token.

use super::{check_cursor, double_option, page_limit, required_text, with_version, Admin, ApiJson, ApiQuery, RuleQuery, Scope};
use crate::state::AppState;
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
    pub scope: Option<Scope>,
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

/// The issuer text as stored, with its JWKS checked by the filter's parser.
pub fn checked_issuer(issuer: &str, jwks: &serde_json::Value) -> ApiResult<String> {
    let issuer = required_text("issuer", issuer, MAX_ISSUER_BYTES)?;
    check_jwks(jwks)?;
    Ok(issuer)
}

pub fn check_audiences(audiences: Option<Vec<String>>) -> ApiResult<Option<Vec<String>>> {
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
    let owner = admin.owner_for(body.scope)?;
    let issuer = checked_issuer(&body.issuer, &body.jwks)?;
    if owner.is_platform() && issuer.to_ascii_lowercase().starts_with("org:") {
        // The filter forwards an org registration's issuer as `org:{org_id}:{iss}`: a platform
        // issuer spelt so would pass for one.
        return Err(ApiError::validation("issuer", "a platform issuer must not start with `org:`, the prefix of org registrations' issuers"));
    }
    let audiences = check_audiences(body.audiences)?;
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
        check_jwks(jwks)?;
    }
    let audiences = match body.audiences {
        None => None,
        Some(a) => Some(check_audiences(a)?),
    };
    let updated = issuers::update(&state.db, &admin.actor(), &admin.viewer(None), &id, audiences, body.jwks).await?;
    let (record, version) = state.identity_changed(updated);
    Ok(with_version(version, Json(record)))
}

pub async fn delete(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let (record, version) = state.identity_changed(issuers::delete(&state.db, &admin.actor(), &admin.viewer(None), &id).await?);
    Ok(with_version(version, Json(record)))
}
