//! `/healthz` (the process answers) and `/readyz` (it can do its job: the database answers
//! and a signed snapshot is there to serve).

use crate::state::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if !state.db.ping().await {
        return ApiError::Unavailable("the database does not answer".into()).into_response();
    }
    match state.snapshots.latest() {
        Some(snapshot) => Json(serde_json::json!({
            "status": "ready",
            "database": state.db.backend().name(),
            "snapshot_version": snapshot.version,
        }))
        .into_response(),
        None => ApiError::Unavailable("no signed snapshot yet".into()).into_response(),
    }
}
