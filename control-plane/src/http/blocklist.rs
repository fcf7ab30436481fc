//! `/api/v1/admin/blocklist`: certificates refused whatever they are bound to. An org's
//! entries refuse certificates of that org; a super-admin's `"scope": "platform"` entries
//! refuse every certificate. An org may list another org's card: the entry is its own and
//! does not touch the other org.

use super::{check_cursor, issuer_dn, page_limit, with_version, Admin, ApiJson, ApiQuery, RuleQuery, Scope};
use crate::domain::text::{canonical_serial, fingerprint as checked_fingerprint, optional_text};
use crate::state::AppState;
use crate::db::blocklist::{self, BlockTarget};
use crate::db::{BlocklistEntry, Page};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

pub const MAX_REASON_BYTES: usize = 500;

/// Either `fingerprint`, or `issuer_dn` and `serial`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlocklistRequest {
    pub fingerprint: Option<String>,
    pub issuer_dn: Option<String>,
    pub serial: Option<String>,
    pub reason: Option<String>,
    pub scope: Option<Scope>,
}

pub async fn add(State(state): State<AppState>, admin: Admin, ApiJson(body): ApiJson<BlocklistRequest>) -> ApiResult<Response> {
    let owner = admin.owner_for(body.scope)?;
    let target = match (&body.fingerprint, &body.issuer_dn, &body.serial) {
        (Some(fp), None, None) => BlockTarget::Fingerprint(checked_fingerprint("fingerprint", fp)?),
        (None, Some(issuer), Some(serial)) => {
            BlockTarget::Serial { issuer_dn: issuer_dn(&state.db, admin.dn_witness(), "issuer_dn", issuer).await?, serial: canonical_serial(serial)? }
        }
        (Some(_), _, _) => {
            return Err(ApiError::validation("fingerprint", "give either fingerprint, or issuer_dn and serial, not both"))
        }
        (None, None, _) => return Err(ApiError::validation("fingerprint", "give fingerprint, or issuer_dn and serial")),
        (None, Some(_), None) => return Err(ApiError::validation("serial", "is required with issuer_dn")),
    };
    let reason = optional_text("reason", body.reason.as_deref(), MAX_REASON_BYTES)?;
    let (entry, version) = state.identity_changed(blocklist::add(&state.db, &admin.actor(), owner, target, reason).await?);
    Ok(with_version(version, (StatusCode::CREATED, Json(entry))))
}

pub async fn list(State(state): State<AppState>, admin: Admin, ApiQuery(q): ApiQuery<RuleQuery>) -> ApiResult<Json<Page<BlocklistEntry>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(blocklist::list(&state.db, &admin.viewer(q.scope), check_cursor(q.cursor)?.as_deref(), limit).await?))
}

pub async fn get(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Json<BlocklistEntry>> {
    blocklist::get(&state.db, &admin.viewer(None), &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no blocklist entry {id:?} in this org")))
}

pub async fn remove(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let (entry, version) =
        state.identity_changed(blocklist::remove(&state.db, &admin.actor(), &admin.viewer(None), &id).await?);
    Ok(with_version(version, Json(entry)))
}
