//! `POST /api/v1/admin/crls`: a CRL, as DER (`Content-Type: application/pkix-crl`) or PEM
//! (`application/x-pem-file`, or PEM text sent as pkix-crl). Any admin may upload one: it
//! is taken only when it verifies with a registered CA's key, and then states a fact about
//! that CA for everyone. The same path as the poller's fetches (`crate::revocation`).

use super::{with_version, Admin};
use crate::state::AppState;
use crate::error::{ApiError, ApiResult};
use crate::revocation::{ingest, CrlSource, IngestError, Ingested};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use certbind_shared::clock;
use certbind_shared::crl::CrlError;

/// Media types a CRL may be sent as.
pub const CRL_MEDIA_TYPES: [&str; 3] = ["application/pkix-crl", "application/x-pem-file", "application/x-x509-crl"];

fn is_crl_media_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    CRL_MEDIA_TYPES.iter().any(|t| essence.eq_ignore_ascii_case(t))
}

/// A refusal as the API answers it: size caps 413, a replay or a delta without its base
/// 409 (the CRL is fine, what is held disagrees), anything else about the CRL 422.
pub fn refusal(error: IngestError) -> ApiError {
    match error {
        IngestError::Unreadable(CrlError::TooLarge { limit, .. }) => ApiError::PayloadTooLarge { limit },
        IngestError::Store(e) => ApiError::from(e),
        e @ (IngestError::Replay { .. } | IngestError::DeltaBaseNotHeld { .. }) => ApiError::conflict(e.to_string()),
        e => ApiError::validation("crl", e.to_string()),
    }
}

/// What the upload answers.
#[derive(Debug, serde::Serialize)]
pub struct CrlIngested {
    /// The CA's key id.
    pub ca: String,
    pub crl_number: String,
    pub delta: bool,
    /// False when this CRL was the one held already: nothing changed.
    pub changed: bool,
    pub added: usize,
    pub removed: usize,
    pub crl: Option<crate::domain::ca::HeldCrlInfo>,
}

impl From<Ingested> for CrlIngested {
    fn from(i: Ingested) -> Self {
        CrlIngested {
            ca: i.ca.key_id,
            crl_number: i.crl_number,
            delta: i.delta,
            changed: i.changed,
            added: i.added,
            removed: i.removed,
            crl: i.ca.crl,
        }
    }
}

pub async fn upload(State(state): State<AppState>, admin: Admin, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    if !is_crl_media_type(&headers) {
        return Err(ApiError::MediaType(
            "send the CRL as `Content-Type: application/pkix-crl` (DER, or PEM) or `application/x-pem-file` (PEM)",
        ));
    }
    let result = ingest(&state.db, &admin.actor(), body.to_vec(), CrlSource::Upload, state.limits.crl, clock::now_seconds()).await;
    let committed = result.map_err(|e| {
        state.crl.refused(&e);
        refusal(e)
    })?;
    if !committed.value.changed {
        return Ok((StatusCode::OK, Json(CrlIngested::from(committed.value))).into_response());
    }
    let (ingested, version) = state.identity_changed(committed);
    Ok(with_version(version, (StatusCode::OK, Json(CrlIngested::from(ingested)))))
}
