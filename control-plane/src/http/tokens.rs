//! Admin tokens over the API: an org's admins manage their own org's tokens; a super-admin
//! can also create the first token of another org.

use super::{check_cursor, page_limit, Admin, ApiJson, ApiQuery, PageQuery, SuperAdmin};
use crate::domain::text::token_label;
use crate::state::AppState;
use crate::db::{tokens, AdminToken, Page};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};


#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default)]
    pub super_admin: bool,
    pub label: Option<String>,
}

/// The one response that carries a token secret.
#[derive(Debug, Serialize)]
pub struct NewToken {
    #[serde(flatten)]
    pub record: AdminToken,
    pub token: String,
}

async fn create_in(state: &AppState, admin: &Admin, org_id: &str, body: TokenRequest) -> ApiResult<Response> {
    if body.super_admin && !admin.token.super_admin {
        return Err(ApiError::Forbidden("only a super-admin token can create super-admin tokens".into()));
    }
    let label = token_label(body.label.as_deref())?;
    let (record, token) = tokens::create(&state.db, &admin.actor(), org_id, body.super_admin, label.as_deref()).await?;
    let mut response = (StatusCode::CREATED, Json(NewToken { record, token })).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

pub async fn create(State(state): State<AppState>, admin: Admin, ApiJson(body): ApiJson<TokenRequest>) -> ApiResult<Response> {
    let org_id = admin.org_id().to_string();
    create_in(&state, &admin, &org_id, body).await
}

pub async fn create_for_org(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
    Path(org_id): Path<String>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> ApiResult<Response> {
    create_in(&state, &admin, &org_id, body).await
}

pub async fn list(State(state): State<AppState>, admin: Admin, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Json<Page<AdminToken>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(tokens::list(&state.db, admin.org_id(), check_cursor(q.cursor)?.as_deref(), limit).await?))
}

pub async fn delete(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Json<AdminToken>> {
    Ok(Json(tokens::delete(&state.db, &admin.actor(), &id).await?))
}

/// Another org's tokens, for a super-admin: to find the token to revoke.
pub async fn list_for_org(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    Path(org_id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<AdminToken>>> {
    let limit = page_limit(q.limit)?;
    if crate::db::orgs::get(&state.db, &org_id).await?.is_none() {
        return Err(ApiError::not_found(format!("no org {org_id:?}")));
    }
    Ok(Json(tokens::list(&state.db, &org_id, check_cursor(q.cursor)?.as_deref(), limit).await?))
}

/// A super-admin revokes a token of any org.
pub async fn delete_for_org(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
    Path((org_id, id)): Path<(String, String)>,
) -> ApiResult<Json<AdminToken>> {
    Ok(Json(tokens::delete_in(&state.db, &admin.actor(), &org_id, &id).await?))
}
