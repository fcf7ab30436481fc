//! `/api/v1/admin/users`: the people of the caller's org.

use super::{check_cursor, page_limit, Admin, ApiJson, ApiQuery, PageQuery};
use crate::domain::text::{user_email, user_name};
use crate::state::AppState;
use crate::db::{users, Page, User};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;


#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub name: String,
    pub email: Option<String>,
}

pub async fn create(State(state): State<AppState>, admin: Admin, ApiJson(body): ApiJson<UserRequest>) -> ApiResult<Response> {
    let name = user_name(&body.name)?;
    let email = user_email(body.email.as_deref())?;
    if email.as_deref().is_some_and(|e| !e.contains('@')) {
        return Err(ApiError::validation("email", "must be an email address"));
    }
    let user = users::create(&state.db, &admin.actor(), &name, email.as_deref()).await?;
    let location = format!("/api/v1/admin/users/{}", user.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(user)).into_response())
}

pub async fn list(State(state): State<AppState>, admin: Admin, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Json<Page<User>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(users::list(&state.db, admin.org_id(), check_cursor(q.cursor)?.as_deref(), limit).await?))
}

pub async fn get(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Json<User>> {
    users::get(&state.db, admin.org_id(), &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no user {id:?} in this org")))
}

pub async fn delete(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Json<User>> {
    Ok(Json(users::delete(&state.db, &admin.actor(), &id).await?))
}
