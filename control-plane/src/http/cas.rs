//! `/api/v1/admin/cas`: issuing CAs, registered by their certificate and known by their key
//! identifier (SubjectKeyIdentifier, or the SHA-256 of the SubjectPublicKeyInfo), never by
//! their DN: two CAs of one DN are two CAs. Shared infrastructure: registering a CA and
//! setting its revocation policy is a super-admin's (platform) action; any admin may read
//! them, with their CRL's state, to see what applies to its users.

use super::smartcards::MAX_PEM_TEXT_BYTES;
use super::{check_cursor, page_limit, with_version, Admin, ApiJson, ApiQuery, PageQuery, SuperAdmin};
use crate::state::AppState;
use crate::db::cas::{self, CertificateAuthority, NewCa, PolicyUpdate, RevocationPolicy};
use crate::db::Page;
use crate::error::{ApiError, ApiResult};
use crate::revocation::distribution_point::{check_crl_url, MAX_CRL_URLS};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use certbind_shared::certificate::pem::decode_certificate_pem_file;
use certbind_shared::certificate::{CaCertificate, KeyIdentifier};
use serde::Deserialize;

/// Longest grace period after nextUpdate: CAs publish daily to weekly; past a month a CRL
/// says little about today.
pub const MAX_GRACE_PERIOD_SECONDS: i64 = 30 * 86_400;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaRequest {
    pub certificate_pem: String,
    pub require_fresh_crl: Option<bool>,
    pub grace_period_seconds: Option<i64>,
    pub fail_open: Option<bool>,
    pub crl_urls: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaPolicyRequest {
    pub require_fresh_crl: Option<bool>,
    pub grace_period_seconds: Option<i64>,
    pub fail_open: Option<bool>,
    pub crl_urls: Option<Vec<String>>,
}

/// The CA certificate in `pem`: exactly one, a CA (basicConstraints cA) whose key may sign
/// CRLs. Shared by the API and `certbind ca add`.
pub fn checked_ca_certificate(pem: &str) -> ApiResult<CaCertificate> {
    let field = "certificate_pem";
    if pem.len() > MAX_PEM_TEXT_BYTES {
        return Err(ApiError::validation(field, format!("is {} bytes, more than the {MAX_PEM_TEXT_BYTES}-byte limit", pem.len())));
    }
    let chain = decode_certificate_pem_file(pem.as_bytes()).map_err(|e| ApiError::validation(field, e.to_string()))?;
    let der = match chain.as_slice() {
        [der] => der,
        more => {
            return Err(ApiError::validation(
                field,
                format!("holds {} certificates; register each CA on its own", more.len()),
            ))
        }
    };
    let ca = CaCertificate::from_der(der).map_err(|e| ApiError::validation(field, e.to_string()))?;
    if !ca.is_ca {
        return Err(ApiError::validation(field, "is not a CA certificate (basicConstraints cA is not asserted)"));
    }
    if !ca.may_sign_crls {
        return Err(ApiError::validation(
            field,
            "the CA's keyUsage does not include cRLSign: its CRLs are signed by another key, which certbind does not follow",
        ));
    }
    Ok(ca)
}

/// A policy's values checked; shared by the API and the command line.
pub fn checked_policy(update: PolicyUpdate) -> ApiResult<PolicyUpdate> {
    if let Some(grace) = update.grace_period_seconds {
        if !(0..=MAX_GRACE_PERIOD_SECONDS).contains(&grace) {
            return Err(ApiError::validation(
                "grace_period_seconds",
                format!("must be between 0 and {MAX_GRACE_PERIOD_SECONDS} (30 days)"),
            ));
        }
    }
    if let Some(urls) = &update.crl_urls {
        if urls.len() > MAX_CRL_URLS {
            return Err(ApiError::validation("crl_urls", format!("at most {MAX_CRL_URLS} distribution points")));
        }
        for url in urls {
            check_crl_url(url.trim()).map_err(|problem| ApiError::validation("crl_urls", problem))?;
        }
    }
    let crl_urls = update.crl_urls.map(|urls| {
        let mut urls: Vec<String> = urls.iter().map(|u| u.trim().to_string()).collect();
        urls.dedup();
        urls
    });
    Ok(PolicyUpdate { crl_urls, ..update })
}

/// A registration's facts and policy, checked.
pub fn checked_new_ca(body: CaRequest) -> ApiResult<NewCa> {
    let certificate = checked_ca_certificate(&body.certificate_pem)?;
    let update = checked_policy(PolicyUpdate {
        require_fresh_crl: body.require_fresh_crl,
        grace_period_seconds: body.grace_period_seconds,
        fail_open: body.fail_open,
        crl_urls: body.crl_urls,
    })?;
    let defaults = RevocationPolicy::default();
    let policy = RevocationPolicy {
        require_fresh_crl: update.require_fresh_crl.unwrap_or(defaults.require_fresh_crl),
        grace_period_seconds: update.grace_period_seconds.unwrap_or(defaults.grace_period_seconds),
        fail_open: update.fail_open.unwrap_or(defaults.fail_open),
        crl_urls: update.crl_urls.unwrap_or_default(),
    };
    Ok(NewCa { certificate, certificate_pem: body.certificate_pem.trim().to_string() + "\n", policy })
}

fn key_id(text: &str) -> ApiResult<String> {
    KeyIdentifier::from_hex(text)
        .map(|k| k.to_hex())
        .ok_or_else(|| ApiError::not_found(format!("no CA with key identifier {text:?} (key ids are hex)")))
}

pub async fn register(State(state): State<AppState>, SuperAdmin(admin): SuperAdmin, ApiJson(body): ApiJson<CaRequest>) -> ApiResult<Response> {
    let new = checked_new_ca(body)?;
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
    ApiJson(body): ApiJson<CaPolicyRequest>,
) -> ApiResult<Response> {
    let id = key_id(&id)?;
    let update = checked_policy(PolicyUpdate {
        require_fresh_crl: body.require_fresh_crl,
        grace_period_seconds: body.grace_period_seconds,
        fail_open: body.fail_open,
        crl_urls: body.crl_urls,
    })?;
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
