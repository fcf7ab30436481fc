//! `/api/v1/admin/cas`: issuing CAs, registered by their certificate and known by their key
//! identifier (SubjectKeyIdentifier, or the SHA-256 of the SubjectPublicKeyInfo), never by
//! their DN: two CAs of one DN are two CAs. Shared infrastructure: registering a CA and
//! setting its revocation policy is a super-admin's (platform) action; any admin may read
//! them, with their CRL's state, to see what applies to its users.

use super::{check_cursor, page_limit, with_version, Admin, ApiJson, ApiQuery, PageQuery, SuperAdmin};
use crate::state::AppState;
use crate::db::cas;
use crate::domain::ca::CertificateAuthority;
use crate::domain::ca::{checked_new_ca, checked_policy, NewCa, PolicyUpdate};
use crate::db::Page;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use certbind_shared::certificate::KeyIdentifier;
use serde::Deserialize;

/// `POST /api/v1/admin/cas` (with `certificate_pem`) and `PATCH …/cas/{key_id}` (without):
/// the CA's certificate and its revocation policy, one body for both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaRequest {
    pub certificate_pem: Option<String>,
    pub require_fresh_crl: Option<bool>,
    pub grace_period_seconds: Option<i64>,
    pub fail_open: Option<bool>,
    pub crl_urls: Option<Vec<String>>,
}

impl CaRequest {
    /// The policy fields; `certificate_pem` is the caller's to take first.
    fn policy(self) -> PolicyUpdate {
        PolicyUpdate {
            require_fresh_crl: self.require_fresh_crl,
            grace_period_seconds: self.grace_period_seconds,
            fail_open: self.fail_open,
            crl_urls: self.crl_urls,
        }
    }

    /// A registration: the certificate is required.
    fn registration(mut self) -> ApiResult<NewCa> {
        let Some(pem) = self.certificate_pem.take() else {
            return Err(ApiError::validation("certificate_pem", "missing field `certificate_pem`"));
        };
        Ok(checked_new_ca(&pem, self.policy())?)
    }

    /// A change of policy, refused as the body's shape is (before the CA is looked up): a
    /// registered CA's certificate does not change.
    fn policy_change(self) -> ApiResult<PolicyUpdate> {
        if self.certificate_pem.is_some() {
            return Err(ApiError::validation(
                "certificate_pem",
                "unknown field `certificate_pem`: a registered CA's certificate does not change; remove the CA and register \
                 the new certificate",
            ));
        }
        Ok(self.policy())
    }
}

fn key_id(text: &str) -> ApiResult<String> {
    KeyIdentifier::from_hex(text)
        .map(|k| k.to_hex())
        .ok_or_else(|| ApiError::not_found(format!("no CA with key identifier {text:?} (key ids are hex)")))
}

pub async fn register(State(state): State<AppState>, SuperAdmin(admin): SuperAdmin, ApiJson(body): ApiJson<CaRequest>) -> ApiResult<Response> {
    let new = body.registration()?;
    let (ca, version) = state.identity_changed(cas::register(&state.db, &admin.actor(), new).await?);
    let location = format!("/api/v1/admin/cas/{}", ca.key_id);
    Ok(with_version(version, (StatusCode::CREATED, [(header::LOCATION, location)], Json(ca))))
}

pub async fn list(State(state): State<AppState>, _admin: Admin, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Json<Page<CertificateAuthority>>> {
    let limit = page_limit(q.limit)?;
    Ok(Json(cas::list(&state.db, check_cursor(q.cursor)?.as_deref(), limit).await?))
}

pub async fn get(State(state): State<AppState>, _admin: Admin, Path(id): Path<String>) -> ApiResult<Json<CertificateAuthority>> {
    let id = key_id(&id)?;
    cas::get(&state.db, &id).await?.map(Json).ok_or_else(|| ApiError::not_found(format!("no CA with key identifier {id}")))
}

pub async fn update(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CaRequest>,
) -> ApiResult<Response> {
    let update = body.policy_change()?;
    let id = key_id(&id)?;
    let update = checked_policy(update)?;
    if update == PolicyUpdate::default() {
        return Err(ApiError::validation("body", "give at least one of require_fresh_crl, grace_period_seconds, fail_open, crl_urls"));
    }
    let (ca, version) = state.identity_changed(cas::update_policy(&state.db, &admin.actor(), &id, update).await?);
    Ok(with_version(version, Json(ca)))
}

pub async fn delete(State(state): State<AppState>, SuperAdmin(admin): SuperAdmin, Path(id): Path<String>) -> ApiResult<Response> {
    let id = key_id(&id)?;
    let (ca, version) = state.identity_changed(cas::delete(&state.db, &admin.actor(), &id).await?);
    Ok(with_version(version, Json(ca)))
}
