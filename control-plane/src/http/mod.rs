//! The REST API, one module per resource, and the extractors they share: the admin token,
//! JSON bodies and query strings that answer in problem+json, and input validation.

pub mod audit;
pub mod auth_failures;
pub mod blocklist;
pub mod cas;
pub mod constraints;
pub mod counters;
pub mod crls;
pub mod fleet;
pub mod health;
pub mod issuers;
pub mod mapping_rules;
pub mod metrics;
pub mod openapi;
pub mod orgs;
pub mod proxies;
pub mod route_doc;
pub mod smartcards;
pub mod snapshot;
pub mod thumbprints;
pub mod tokens;
pub mod usage;
pub mod users;

use crate::state::AppState;
use crate::db::proxies::PROXY_PREFIX;
use crate::db::tokens::TOKEN_PREFIX;
use crate::domain::Owner;
use crate::db::error::unreachable;
use crate::db::{proxies as db_proxies, tokens as db_tokens, Actor, AdminToken, DbError, ProxyCredential, Viewer, DEFAULT_PAGE, MAX_PAGE};
use crate::domain::text::dn_text;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Response header carrying the snapshot version a change was committed at.
pub const SNAPSHOT_VERSION_HEADER: HeaderName = HeaderName::from_static("certbind-snapshot-version");

/// The bearer secret of a request, or the problem to answer without one.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Err(ApiError::Unauthorized { invalid_token: false });
    };
    let text = value.to_str().map_err(|_| ApiError::Unauthorized { invalid_token: true })?;
    let (scheme, secret) = text.split_once(' ').ok_or(ApiError::Unauthorized { invalid_token: true })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized { invalid_token: false });
    }
    Ok(secret.trim())
}

/// The caller, authenticated by an admin token. Everything it reads or changes is scoped to
/// `token.org_id`, and for a super-admin also to the platform's rules.
#[derive(Debug, Clone)]
pub struct Admin {
    pub token: AdminToken,
}

impl Admin {
    pub fn org_id(&self) -> &str {
        &self.token.org_id
    }

    /// Whose bindings may vouch for an issuer DN written country first (see [`issuer_dn`]):
    /// the caller's org's, or any org's for a super-admin (who sees them all anyway). An org
    /// is never told about another org's certificates this way.
    pub fn dn_witness(&self) -> Option<&str> {
        (!self.token.super_admin).then_some(self.token.org_id.as_str())
    }

    pub fn actor(&self) -> Actor {
        Actor {
            org_id: self.token.org_id.clone(),
            name: format!("token:{}", self.token.id),
            super_admin: self.token.super_admin,
        }
    }

    /// Whose rules this caller reads: its org's, and the platform's for a super-admin;
    /// `scope` narrows it to one of them.
    pub fn viewer(&self, scope: Option<Scope>) -> Viewer {
        let org = Viewer { org_id: self.token.org_id.clone(), platform: false };
        match scope {
            None => Viewer { platform: self.token.super_admin, ..org },
            Some(Scope::Org) => org,
            // An id no org has: only platform rows match.
            Some(Scope::Platform) => Viewer { org_id: String::new(), platform: self.token.super_admin },
        }
    }

    /// The owner of a rule this caller creates: its org, or the platform for a super-admin
    /// that asks for it.
    pub fn owner_for(&self, scope: Option<Scope>) -> Result<Owner, ApiError> {
        match scope.unwrap_or(Scope::Org) {
            Scope::Org => Ok(Owner::Org(self.token.org_id.clone())),
            Scope::Platform if self.token.super_admin => Ok(Owner::Platform),
            Scope::Platform => Err(ApiError::Forbidden("platform rules are written by super-admin tokens only".into())),
        }
    }
}

/// Counts (and, rate-limited, logs) a refusal for the credential; passes the result on.
fn noted<T>(parts: &Parts, state: &AppState, credential: usage::Credential, result: Result<T, ApiError>) -> Result<T, ApiError> {
    if let Err(ApiError::Unauthorized { invalid_token }) = &result {
        let failure = if *invalid_token { auth_failures::Failure::Invalid } else { auth_failures::Failure::Missing };
        let route = parts.extensions.get::<axum::extract::MatchedPath>().map(|p| p.as_str()).unwrap_or("");
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
        state.metrics.auth_failures.record(credential, failure, route, peer);
    }
    result
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let result = Admin::authenticate(parts, state).await;
        noted(parts, state, usage::Credential::Admin, result)
    }
}

impl Admin {
    async fn authenticate(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts)?;
        if secret.starts_with(PROXY_PREFIX) && db_proxies::lookup(&state.db, secret).await?.is_some() {
            return Err(ApiError::Forbidden("a proxy credential reads the snapshot and nothing else".into()));
        }
        match db_tokens::lookup_with_org_state(&state.db, secret).await? {
            Some((_, true)) => Err(ApiError::Forbidden("this token's org is disabled".into())),
            Some((token, false)) => {
                state.usage.used(&state.db, &token.id);
                Ok(Admin { token })
            }
            None => Err(ApiError::Unauthorized { invalid_token: true }),
        }
    }
}

/// An admin whose token may manage orgs and platform rules.
#[derive(Debug, Clone)]
pub struct SuperAdmin(pub Admin);

impl FromRequestParts<AppState> for SuperAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let admin = Admin::from_request_parts(parts, state).await?;
        if !admin.token.super_admin {
            return Err(ApiError::Forbidden("this needs a super-admin token".into()));
        }
        Ok(SuperAdmin(admin))
    }
}

/// A proxy, authenticated by its proxy credential: it may read the snapshot, nothing else.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub credential: ProxyCredential,
}

impl FromRequestParts<AppState> for Proxy {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let result = Proxy::authenticate(parts, state).await;
        noted(parts, state, usage::Credential::Proxy, result)
    }
}

impl Proxy {
    async fn authenticate(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts)?;
        if let Some(credential) = state.fleet.recall(secret, fleet::TRUSTED_FOR) {
            return Ok(Proxy { credential });
        }
        match db_proxies::lookup(&state.db, secret).await {
            Ok(Some(credential)) => {
                state.fleet.verified(secret, &credential);
                return Ok(Proxy { credential });
            }
            Ok(None) => state.fleet.refused(secret),
            // The database is away: a proxy verified lately keeps fetching the last snapshot.
            Err(DbError::Database(e)) if unreachable(&e) => {
                return match state.fleet.recall(secret, fleet::REMEMBERED_FOR) {
                    Some(credential) => Ok(Proxy { credential }),
                    None => Err(DbError::Database(e).into()),
                };
            }
            Err(e) => return Err(e.into()),
        }
        if secret.starts_with(TOKEN_PREFIX) && db_tokens::lookup(&state.db, secret).await?.is_some() {
            return Err(ApiError::Forbidden(
                "the snapshot is served to proxy credentials (`certbind token create --proxy`), not admin tokens".into(),
            ));
        }
        Err(ApiError::Unauthorized { invalid_token: true })
    }
}

/// Whose rule: `"org"` (the caller's org, the default) or `"platform"` (super-admins only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Org,
    Platform,
}

/// `?limit=&cursor=&scope=` of the rule lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub scope: Option<Scope>,
}

/// A JSON request body: `Content-Type: application/json` (415 otherwise), within the body
/// limit (413), syntactically JSON (400), and of the expected shape — unknown fields
/// included — (422 naming the field).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.limits.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::MalformedBody(format!("could not read the request body: {}", rejection.body_text()))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Parses a body, telling syntax errors (400) from shape errors (422, naming the field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(&path, &inner)
    })?;
    deserializer.end().map_err(|e| ApiError::MalformedBody(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

fn json_error(path: &str, error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::MalformedBody(format!("the body is not valid JSON: {error}"))
        }
        Category::Data => {
            let message = strip_position(&error.to_string());
            // Unknown and missing fields are reported at their parent; name the field itself.
            let field = match backticked(&message) {
                Some(name) if message.starts_with("unknown field") || message.starts_with("missing field") => {
                    if path == "." || path.is_empty() {
                        name.to_string()
                    } else if path == name || path.ends_with(&format!(".{name}")) {
                        path.to_string()
                    } else {
                        format!("{path}.{name}")
                    }
                }
                _ if path == "." || path.is_empty() => "body".to_string(),
                _ => path.to_string(),
            };
            ApiError::Validation { field, detail: message }
        }
    }
}

/// serde_json appends " at line L column C"; the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// A query string of the expected shape; anything else is 422 naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text).to_string();
                let named = detail
                    .split_once(": ")
                    .map(|(name, _)| name)
                    .filter(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                let field = named.or_else(|| backticked(&detail)).unwrap_or("query").to_string();
                ApiError::Validation { field, detail }
            })
    }
}

/// `?limit=&cursor=` of every list route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The page size asked for, checked against [`MAX_PAGE`].
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::validation("limit", format!("must be between 1 and {MAX_PAGE}"))),
    }
}

/// A cursor is an id or fingerprint handed out by a previous page; anything longer is not one.
pub fn check_cursor(cursor: Option<String>) -> Result<Option<String>, ApiError> {
    match cursor {
        Some(c) if c.len() > 128 => Err(ApiError::validation("cursor", "not a cursor from a previous page")),
        c => Ok(c),
    }
}

/// An issuer DN a rule names (a revoked serial, a SAN rule, an allowed issuer), canonical. A
/// DN written country first (OpenSSL's default output) would silently match nothing, so it is
/// refused with the RFC 4514 order to use instead — unless a bound certificate's issuer is
/// exactly that DN (a CA that really encodes its name so; the slash form names one too) in
/// `witness`'s org (any org for `None`).
pub async fn issuer_dn(db: &crate::db::Db, witness: Option<&str>, field: &str, text: &str) -> Result<String, ApiError> {
    let dn = dn_text(field, text)?;
    let canonical = dn.canonical();
    if dn.country_first() && !crate::db::smartcards::issuer_known(db, witness, &canonical).await? {
        return Err(ApiError::validation(
            field,
            format!(
                "names the country first, as OpenSSL's default output does; RFC 4514 (and the filter) \
                 name the most specific part first: did you mean {:?}? (For a CA that really orders \
                 its name country first, write it in the slash form, most specific last: /CN=…/C=….)",
                dn.reversed()
            ),
        ));
    }
    Ok(canonical)
}

/// Longest DN a rule carries into the snapshot (a SAN rule's issuer, an allowed issuer),
/// in canonical form: the snapshot's strings are at most this long.
pub const MAX_RULE_DN_BYTES: usize = certbind_shared::snapshot::MAX_STRING_LEN;

/// [`issuer_dn`] for a DN that goes into the snapshot: at most [`MAX_RULE_DN_BYTES`].
pub async fn rule_issuer_dn(db: &crate::db::Db, witness: Option<&str>, field: &str, text: &str) -> Result<String, ApiError> {
    let canonical = issuer_dn(db, witness, field, text).await?;
    if canonical.len() > MAX_RULE_DN_BYTES {
        return Err(ApiError::validation(
            field,
            format!(
                "is {} bytes in canonical form; a DN a rule carries into the snapshot is at most {MAX_RULE_DN_BYTES} bytes",
                canonical.len()
            ),
        ));
    }
    Ok(canonical)
}

/// Tells a field that is absent (`None`) from one set to `null` (`Some(None)`), for PATCH.
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Adds the snapshot-version header to a response of a change the filter sees.
pub fn with_version<R: axum::response::IntoResponse>(version: i64, response: R) -> axum::response::Response {
    let mut response = response.into_response();
    if let Ok(value) = HeaderValue::from_str(&version.to_string()) {
        response.headers_mut().insert(SNAPSHOT_VERSION_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        user_id: String,
        count: Option<u32>,
    }

    fn field_of(result: Result<Body, ApiError>) -> (String, String) {
        match result {
            Err(ApiError::Validation { field, detail }) => (field, detail),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_missing_and_mistyped_fields_are_named() {
        let (field, detail) = field_of(parse_json(br#"{"user_id":"u","colour":1}"#));
        assert_eq!(field, "colour");
        assert!(detail.starts_with("unknown field `colour`"), "{detail}");
        assert_eq!(field_of(parse_json(br#"{}"#)).0, "user_id");
        assert_eq!(field_of(parse_json(br#"{"user_id":"u","count":"x"}"#)).0, "count");
    }

    #[test]
    fn syntax_errors_and_trailing_bytes_are_malformed_bodies() {
        assert!(matches!(parse_json::<Body>(br#"{"user_id":"#), Err(ApiError::MalformedBody(_))));
        assert!(matches!(parse_json::<Body>(br#"{"user_id":"u"} x"#), Err(ApiError::MalformedBody(_))));
    }
}
