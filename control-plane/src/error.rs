//! The one error type of the API, answered as `application/problem+json` (RFC 9457).
//!
//! Clients get a stable `type`, a `title`, the `status` and a `detail` that says what to fix;
//! for validation errors also the `field` at fault. Internal errors are logged in full and
//! answered with a generic text, so nothing about the database or the HSM leaks.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// `type` URIs are `urn:certbind:problem:<slug>`: stable, and never mistaken for a link.
const TYPE_PREFIX: &str = "urn:certbind:problem:";

#[derive(Debug)]
pub enum ApiError {
    /// A request body or parameter that parses but is not acceptable. 422.
    Validation { field: String, detail: String },
    /// A body that is not JSON at all. 400.
    MalformedBody(String),
    /// No or an unknown admin token. 401 with `WWW-Authenticate`.
    Unauthorized { invalid_token: bool },
    /// A valid token that may not do this (an org token on org management). 403.
    Forbidden(String),
    /// Nothing of that name that the caller may see. 404.
    NotFound(String),
    /// No route matches the path. 404, with its own type so clients can tell it apart.
    NoRoute,
    /// The route exists but not with this method. 405.
    MethodNotAllowed,
    /// The name is taken. 409.
    Conflict(String),
    /// The change would take the org past a quota. 422, with its own type.
    QuotaExceeded(String),
    /// 413.
    PayloadTooLarge { limit: usize },
    /// 415.
    UnsupportedMediaType,
    /// 415 on a route that takes another body than JSON: what to send instead.
    MediaType(&'static str),
    /// A dependency is not ready yet (no signed snapshot). 503.
    Unavailable(String),
    /// Anything else: logged, answered generically. 500.
    Internal(anyhow::Error),
}

/// A domain rule's refusal is the API's 422.
impl From<crate::domain::Invalid> for ApiError {
    fn from(invalid: crate::domain::Invalid) -> Self {
        ApiError::Validation { field: invalid.field, detail: invalid.detail }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn validation(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Validation { field: field.into(), detail: detail.into() }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound(what.into())
    }

    pub fn conflict(what: impl Into<String>) -> Self {
        ApiError::Conflict(what.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } | ApiError::QuotaExceeded(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType | ApiError::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable slug of the problem `type`.
    pub fn slug(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "validation",
            ApiError::MalformedBody(_) => "malformed-body",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::NoRoute => "no-route",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::QuotaExceeded(_) => "quota-exceeded",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedMediaType | ApiError::MediaType(_) => "unsupported-media-type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "Invalid request",
            ApiError::MalformedBody(_) => "Malformed request body",
            ApiError::Unauthorized { .. } => "Authentication required",
            ApiError::Forbidden(_) => "Not allowed",
            ApiError::NotFound(_) => "Not found",
            ApiError::NoRoute => "No such route",
            ApiError::MethodNotAllowed => "Method not allowed",
            ApiError::Conflict(_) => "Already exists",
            ApiError::QuotaExceeded(_) => "Quota exceeded",
            ApiError::PayloadTooLarge { .. } => "Request body too large",
            ApiError::UnsupportedMediaType | ApiError::MediaType(_) => "Unsupported media type",
            ApiError::Unavailable(_) => "Not ready",
            ApiError::Internal(_) => "Internal error",
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Validation { field, detail } => format!("{field}: {detail}"),
            ApiError::MalformedBody(d)
            | ApiError::Forbidden(d)
            | ApiError::NotFound(d)
            | ApiError::Conflict(d)
            | ApiError::QuotaExceeded(d)
            | ApiError::Unavailable(d) => d.clone(),
            ApiError::Unauthorized { invalid_token: false } => {
                "send a token as `Authorization: Bearer <token>`: an admin token for the admin API, a proxy credential for the snapshot".into()
            }
            ApiError::Unauthorized { invalid_token: true } => "the token is not valid".into(),
            ApiError::NoRoute => "no route matches this path; see /api/v1/openapi.json".into(),
            ApiError::MethodNotAllowed => "this route does not accept that method; see /api/v1/openapi.json".into(),
            ApiError::PayloadTooLarge { limit } => format!("request bodies are limited to {limit} bytes"),
            ApiError::UnsupportedMediaType => "request bodies must be sent as `Content-Type: application/json`".into(),
            ApiError::MediaType(d) => (*d).to_string(),
            ApiError::Internal(_) => "the server could not complete the request; the cause has been logged".into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(crate::db::DbError::from(e))
    }
}

/// Storage's outcomes at the HTTP edge.
impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        use crate::db::DbError;
        match e {
            DbError::NotFound(d) => ApiError::NotFound(d),
            DbError::Conflict(d) => ApiError::Conflict(d),
            DbError::Invalid { field, detail } => ApiError::Validation { field: field.to_string(), detail },
            DbError::Forbidden(d) => ApiError::Forbidden(d),
            DbError::QuotaExceeded(d) => ApiError::QuotaExceeded(d),
            DbError::Database(e) if crate::db::error::unreachable(&e) => {
                tracing::warn!(error = %e, "the database is unreachable");
                ApiError::Unavailable(
                    "the database is unreachable: nothing is acknowledged until it is committed; retry once the database is back".into(),
                )
            }
            DbError::Database(e) => ApiError::Internal(anyhow::Error::new(e).context("database")),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let field = match &self {
            ApiError::Validation { field, .. } => Some(field.as_str()),
            _ => None,
        };
        let problem = Problem {
            type_uri: format!("{TYPE_PREFIX}{}", self.slug()),
            title: self.title(),
            status: status.as_u16(),
            detail: self.detail(),
            field,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let ApiError::Unauthorized { invalid_token } = self {
            let challenge = if invalid_token {
                r#"Bearer realm="certbind", error="invalid_token""#
            } else {
                r#"Bearer realm="certbind""#
            };
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(response: Response) -> serde_json::Value {
        let bytes = futures_bytes(response);
        serde_json::from_slice(&bytes).unwrap()
    }

    fn futures_bytes(response: Response) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async { axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec() })
    }

    #[test]
    fn internal_errors_are_answered_generically() {
        let error = ApiError::Internal(anyhow::anyhow!("password authentication failed for user \"certbind\""));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = body_of(response);
        assert_eq!(body["type"], "urn:certbind:problem:internal");
        assert_eq!(body["status"], 500);
        assert!(!body.to_string().contains("password"), "{body}");
    }

    #[test]
    fn validation_problems_name_their_field() {
        let response = ApiError::validation("serial", "must be hexadecimal").into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = body_of(response);
        assert_eq!(body["field"], "serial");
        assert_eq!(body["detail"], "serial: must be hexadecimal");
        assert_eq!(body["title"], "Invalid request");
    }

    #[test]
    fn unauthorized_carries_a_bearer_challenge() {
        let missing = ApiError::Unauthorized { invalid_token: false }.into_response();
        assert_eq!(missing.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="certbind""#);
        let invalid = ApiError::Unauthorized { invalid_token: true }.into_response();
        assert_eq!(invalid.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="certbind", error="invalid_token""#);
    }
}
