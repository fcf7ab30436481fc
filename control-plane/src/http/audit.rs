//! `GET /api/v1/admin/audit`: who changed what, when — the caller's org only.

use super::{optional_text, page_limit, Admin, ApiQuery};
use crate::app::AppState;
use crate::db::{audit, AuditEntry, Page};
use crate::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::Json;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub action: Option<String>,
}

pub async fn list(State(state): State<AppState>, admin: Admin, ApiQuery(q): ApiQuery<AuditQuery>) -> ApiResult<Json<Page<AuditEntry>>> {
    let limit = page_limit(q.limit)?;
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| c.parse::<i64>().map_err(|_| ApiError::validation("cursor", "not a cursor from a previous page")))
        .transpose()?;
    let action = optional_text("action", q.action.as_deref(), 64)?;
    Ok(Json(audit::list(&state.db, admin.org_id(), action.as_deref(), cursor, limit).await?))
}
