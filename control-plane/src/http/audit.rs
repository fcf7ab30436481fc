//! `GET /api/v1/admin/audit`: who changed what, when — the caller's org only, or the
//! platform's for a super-admin. A change a super-admin makes in another org (or to platform
//! rules) is filed both there and in the super-admin's own org.

use super::{page_limit, Admin, ApiQuery, Scope};
use crate::domain::text::optional_text;
use crate::state::AppState;
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
    /// `platform`: the platform's log (super-admins): changes to platform rules and proxy
    /// credentials.
    pub scope: Option<Scope>,
}

pub async fn list(State(state): State<AppState>, admin: Admin, ApiQuery(q): ApiQuery<AuditQuery>) -> ApiResult<Json<Page<AuditEntry>>> {
    let limit = page_limit(q.limit)?;
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| c.parse::<i64>().map_err(|_| ApiError::validation("cursor", "not a cursor from a previous page")))
        .transpose()?;
    let action = optional_text("action", q.action.as_deref(), 64)?;
    let org = match q.scope {
        Some(Scope::Platform) if admin.token.super_admin => "",
        Some(Scope::Platform) => return Err(ApiError::Forbidden("the platform's audit log is for super-admin tokens".into())),
        _ => admin.org_id(),
    };
    Ok(Json(audit::list(&state.db, org, action.as_deref(), cursor, limit).await?))
}
