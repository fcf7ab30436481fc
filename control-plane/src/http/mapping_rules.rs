//! `/api/v1/admin/mapping-rules`: which SAN kind and domain, in certificates of which issuer,
//! may name a principal. One (kind, domain, issuer) is one owner's: another owner's claim is
//! refused with 409. The control plane cannot tell a claim made in bad faith (an org claiming
//! first a domain another org holds) from a real one: a super-admin resolves such a dispute
//! (its 409 names the holder; a token minted into that org deletes the rule).

use crate::domain::text::canonical_domain;
use super::{check_cursor, rule_issuer_dn, page_limit, with_version, Admin, ApiJson, ApiQuery, RuleQuery, Scope};
use crate::state::AppState;
use crate::db::{mapping_rules, SanRule, Page};
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use certbind_shared::identity::SanKind;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanRuleRequest {
    pub san: SanKind,
    pub domain: String,
    /// The CA whose certificates may assert addresses in `domain` (RFC 4514).
    pub issuer_dn: String,
    pub scope: Option<Scope>,
}

pub async fn create(State(state): State<AppState>, admin: Admin, ApiJson(body): ApiJson<SanRuleRequest>) -> ApiResult<Response> {
    let owner = admin.owner_for(body.scope)?;
    let domain = canonical_domain("domain", &body.domain)?;
    let issuer = rule_issuer_dn(&state.db, admin.dn_witness(), "issuer_dn", &body.issuer_dn).await?;
    let created = mapping_rules::create(&state.db, &admin.actor(), owner, body.san.as_str(), &domain, &issuer).await?;
    let (rule, version) = state.identity_changed(created);
    Ok(with_version(version, (StatusCode::CREATED, Json(rule))))
}

pub async fn list(State(state): State<AppState>, admin: Admin, ApiQuery(q): ApiQuery<RuleQuery>) -> ApiResult<Json<Page<SanRule>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(mapping_rules::list(&state.db, &admin.viewer(q.scope), check_cursor(q.cursor)?.as_deref(), limit).await?))
}

pub async fn get(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Json<SanRule>> {
    mapping_rules::get(&state.db, &admin.viewer(None), &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no mapping rule {id:?} in this org")))
}

pub async fn delete(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let (rule, version) =
        state.identity_changed(mapping_rules::delete(&state.db, &admin.actor(), &admin.viewer(None), &id).await?);
    Ok(with_version(version, Json(rule)))
}
