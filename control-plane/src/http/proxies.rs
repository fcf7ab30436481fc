//! `/api/v1/admin/proxy-credentials`: the credentials proxies fetch the snapshot with
//! (super-admins; `certbind token create --proxy` makes them from the command line too).
//! A credential reads the snapshot and nothing else.

use super::{check_cursor, page_limit, ApiJson, ApiQuery, PageQuery, SuperAdmin};
use crate::domain::text::token_label;
use crate::state::AppState;
use crate::db::{proxies, Page, ProxyCredential};
use crate::error::ApiResult;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyCredentialRequest {
    pub label: Option<String>,
}

/// The one response that carries a proxy credential's secret.
#[derive(Debug, Serialize)]
pub struct NewProxyCredential {
    #[serde(flatten)]
    pub record: ProxyCredential,
    pub credential: String,
}

pub async fn create(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
    ApiJson(body): ApiJson<ProxyCredentialRequest>,
) -> ApiResult<Response> {
    let label = token_label(body.label.as_deref())?;
    let (record, credential) = proxies::create(&state.db, &admin.actor(), label.as_deref()).await?;
    let mut response = (StatusCode::CREATED, Json(NewProxyCredential { record, credential })).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub async fn list(
    State(state): State<AppState>,
    _admin: SuperAdmin,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<ProxyCredential>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(proxies::list(&state.db, check_cursor(q.cursor)?.as_deref(), limit).await?))
}

pub async fn delete(State(state): State<AppState>, SuperAdmin(admin): SuperAdmin, Path(id): Path<String>) -> ApiResult<Json<ProxyCredential>> {
    let deleted = proxies::delete(&state.db, &admin.actor(), &id).await?;
    state.fleet.deleted(&deleted.id);
    Ok(Json(deleted))
}
