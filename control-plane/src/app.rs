//! The HTTP application: its state, the route table (from which both the router and the
//! OpenAPI document are built, so neither can miss a route), and the router itself.

use crate::db::blocklist::BlockTarget;
use crate::db::snapshot_data::BindingRow;
use crate::db::Db;
use crate::error::ApiError;
use crate::http::{
    audit, blocklist, constraints, health, issuers, mapping_rules, metrics, openapi, orgs, smartcards, snapshot,
    thumbprints, tokens, users,
};
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Default request body cap: a bind by PEM (a few KiB) fits many times over, a JWKS of
/// dozens of RSA keys fits, and a client cannot make the server buffer megabytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest a snapshot long-poll may hold a request, whatever `wait` asks for: below common
/// proxy idle timeouts (60 s), so the poll ends with an answer, not a dropped connection.
pub const DEFAULT_MAX_LONG_POLL: Duration = Duration::from_secs(55);

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_long_poll: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: DEFAULT_MAX_BODY_BYTES, max_long_poll: DEFAULT_MAX_LONG_POLL }
    }
}

/// A committed change to what the filter sees, handed to the snapshot service after commit
/// so it can apply it without rereading every table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityChange {
    /// A binding was created, enabled, disabled or relabelled: its row as committed.
    BindingUpserted(BindingRow),
    BindingRemoved { fingerprint: String },
    /// A certificate was blocklisted by fingerprint, or by issuer and serial: the urgent
    /// direction, patched in like a revoke.
    Blocked(BlockTarget),
    /// Anything else the filter sees changed: an entry left the blocklist (another org may
    /// still block the same certificate, which only the database knows), thumbprint mappings,
    /// mapping rules, issuers or constraints. The service rereads the database.
    Other,
}

/// A signed snapshot as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedSnapshot {
    pub version: u64,
    /// The encoded, signed bytes.
    pub bytes: Bytes,
}

impl ServedSnapshot {
    /// Strong ETag: the version names the content, since a version is never signed twice
    /// with different data.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// What the API needs from the snapshot machinery: the latest signed snapshot, a way to wait
/// for a newer one, the public keys, and notice of every committed change.
pub trait SnapshotService: Send + Sync + 'static {
    /// The latest signed snapshot, once one has been built.
    fn latest(&self) -> Option<Arc<ServedSnapshot>>;
    /// Watches the version of the latest signed snapshot (0 before the first).
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// The verification keys, as `GET /api/v1/snapshot/keys` serves them.
    fn public_keys(&self) -> serde_json::Value;
    /// A change the filter sees was committed at `version`.
    fn committed(&self, version: i64, change: IdentityChange);
}

/// Used where no signer is configured: the admin API works; snapshot routes answer 503.
#[derive(Debug)]
pub struct NoSnapshots {
    version: watch::Sender<u64>,
}

impl Default for NoSnapshots {
    fn default() -> Self {
        NoSnapshots { version: watch::Sender::new(0) }
    }
}

impl SnapshotService for NoSnapshots {
    fn latest(&self) -> Option<Arc<ServedSnapshot>> {
        None
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
    fn public_keys(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [] })
    }
    fn committed(&self, _version: i64, _change: IdentityChange) {}
}

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub snapshots: Arc<dyn SnapshotService>,
    pub metrics: Arc<metrics::Metrics>,
    pub limits: Arc<Limits>,
}

impl AppState {
    pub fn new(db: Db, snapshots: Arc<dyn SnapshotService>, limits: Limits) -> Self {
        AppState { db, snapshots, metrics: Arc::default(), limits: Arc::new(limits) }
    }

    /// Hands a committed change to the snapshot service.
    pub fn identity_changed(&self, version: i64, change: IdentityChange) {
        self.snapshots.committed(version, change);
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Any admin token; the route sees only the token's org.
    Admin,
    /// A super-admin token.
    SuperAdmin,
}

/// A route as documented: the OpenAPI document is generated from these.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    pub method: Method,
    /// axum path syntax (`{name}` for parameters), which is also OpenAPI's.
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// Name of the request body schema in the OpenAPI components, if the route takes one.
    pub request: Option<&'static str>,
    /// Success status and the name of its response schema (`None`: no JSON body).
    pub success: (u16, Option<&'static str>),
    /// Query parameters: (name, schema type, description).
    pub query: &'static [(&'static str, &'static str, &'static str)],
}

const PAGE_QUERY: &[(&str, &str, &str)] = &[
    ("limit", "integer", "page size, 1 to 1000 (default 100)"),
    ("cursor", "string", "next_cursor of the previous page"),
];
const SMARTCARD_QUERY: &[(&str, &str, &str)] = &[
    ("limit", "integer", "page size, 1 to 1000 (default 100)"),
    ("cursor", "string", "next_cursor of the previous page"),
    ("user_id", "string", "only this user's bindings"),
    ("enabled", "boolean", "only enabled (true) or disabled (false) bindings"),
    ("issuer", "string", "only bindings whose issuer DN is exactly this"),
];
const AUDIT_QUERY: &[(&str, &str, &str)] = &[
    ("limit", "integer", "page size, 1 to 1000 (default 100)"),
    ("cursor", "string", "next_cursor of the previous page"),
    ("action", "string", "only entries of this action, e.g. smartcard.revoke"),
];
const SNAPSHOT_QUERY: &[(&str, &str, &str)] = &[
    ("wait", "integer", "seconds to wait for a snapshot newer than after_version (capped by the server)"),
    ("after_version", "integer", "the version the caller holds"),
];

fn doc(
    method: Method,
    path: &'static str,
    access: Access,
    summary: &'static str,
    request: Option<&'static str>,
    success: (u16, Option<&'static str>),
) -> RouteDoc {
    RouteDoc { method, path, access, summary, request, success, query: &[] }
}

/// Every route of the service: its documentation and its handler.
pub fn route_table() -> Vec<(RouteDoc, MethodRouter<AppState>)> {
    use Access::{Admin, Public, SuperAdmin};
    use Method as M;
    let list = |mut d: RouteDoc, query| {
        d.query = query;
        d
    };
    vec![
        (doc(M::GET, "/healthz", Public, "Liveness: the process answers", None, (200, Some("Health"))), get(health::healthz)),
        (doc(M::GET, "/readyz", Public, "Readiness: database reachable and a signed snapshot present", None, (200, Some("Health"))), get(health::readyz)),
        (doc(M::GET, "/metrics", Public, "Prometheus metrics (text exposition format)", None, (200, None)), get(metrics::render)),
        (doc(M::GET, "/api/v1/openapi.json", Public, "This document", None, (200, None)), get(openapi::document)),
        (list(doc(M::GET, "/api/v1/snapshot", Public, "The latest signed identity snapshot (ETag, If-None-Match, long-poll)", None, (200, None)), SNAPSHOT_QUERY), get(snapshot::latest)),
        (doc(M::GET, "/api/v1/snapshot/keys", Public, "Public keys that verify snapshots, with their key ids", None, (200, Some("SnapshotKeys"))), get(snapshot::keys)),
        (doc(M::POST, "/api/v1/admin/smartcards", Admin, "Bind a certificate to a user (fields, or certificate_pem)", Some("BindRequest"), (201, Some("SmartCard"))), post(smartcards::bind)),
        (list(doc(M::GET, "/api/v1/admin/smartcards", Admin, "List the org's card bindings", None, (200, Some("SmartCardPage"))), SMARTCARD_QUERY), get(smartcards::list)),
        (doc(M::GET, "/api/v1/admin/smartcards/{fingerprint}", Admin, "One card binding", None, (200, Some("SmartCard"))), get(smartcards::get)),
        (doc(M::PATCH, "/api/v1/admin/smartcards/{fingerprint}", Admin, "Enable, disable or relabel a binding", Some("SmartCardUpdate"), (200, Some("SmartCard"))), patch(smartcards::update)),
        (doc(M::DELETE, "/api/v1/admin/smartcards/{fingerprint}", Admin, "Revoke a binding (lost or stolen card)", None, (200, Some("SmartCard"))), delete(smartcards::revoke)),
        (doc(M::POST, "/api/v1/admin/orgs", SuperAdmin, "Create an org", Some("OrgRequest"), (201, Some("Org"))), post(orgs::create)),
        (list(doc(M::GET, "/api/v1/admin/orgs", SuperAdmin, "List orgs", None, (200, Some("OrgPage"))), PAGE_QUERY), get(orgs::list)),
        (doc(M::GET, "/api/v1/admin/orgs/{org_id}", SuperAdmin, "One org", None, (200, Some("Org"))), get(orgs::get)),
        (doc(M::POST, "/api/v1/admin/orgs/{org_id}/tokens", SuperAdmin, "Create an admin token for an org (shown once)", Some("TokenRequest"), (201, Some("NewToken"))), post(tokens::create_for_org)),
        (doc(M::POST, "/api/v1/admin/tokens", Admin, "Create an admin token in the caller's org (shown once)", Some("TokenRequest"), (201, Some("NewToken"))), post(tokens::create)),
        (list(doc(M::GET, "/api/v1/admin/tokens", Admin, "List the org's admin tokens (never the secrets)", None, (200, Some("TokenPage"))), PAGE_QUERY), get(tokens::list)),
        (doc(M::DELETE, "/api/v1/admin/tokens/{token_id}", Admin, "Delete an admin token", None, (200, Some("Token"))), delete(tokens::delete)),
        (doc(M::POST, "/api/v1/admin/users", Admin, "Create a user in the caller's org", Some("UserRequest"), (201, Some("User"))), post(users::create)),
        (list(doc(M::GET, "/api/v1/admin/users", Admin, "List the org's users", None, (200, Some("UserPage"))), PAGE_QUERY), get(users::list)),
        (doc(M::GET, "/api/v1/admin/users/{user_id}", Admin, "One user", None, (200, Some("User"))), get(users::get)),
        (doc(M::DELETE, "/api/v1/admin/users/{user_id}", Admin, "Delete a user with no bindings", None, (200, Some("User"))), delete(users::delete)),
        (doc(M::POST, "/api/v1/admin/blocklist", Admin, "Block a certificate by fingerprint or by issuer and serial", Some("BlocklistRequest"), (201, Some("BlocklistEntry"))), post(blocklist::add)),
        (list(doc(M::GET, "/api/v1/admin/blocklist", Admin, "List the org's blocklist", None, (200, Some("BlocklistPage"))), PAGE_QUERY), get(blocklist::list)),
        (doc(M::GET, "/api/v1/admin/blocklist/{entry_id}", Admin, "One blocklist entry", None, (200, Some("BlocklistEntry"))), get(blocklist::get)),
        (doc(M::DELETE, "/api/v1/admin/blocklist/{entry_id}", Admin, "Unblock", None, (200, Some("BlocklistEntry"))), delete(blocklist::remove)),
        (doc(M::POST, "/api/v1/admin/issuers", Admin, "Trust a bearer-token issuer and its JWKS", Some("IssuerRequest"), (201, Some("Issuer"))), post(issuers::create)),
        (list(doc(M::GET, "/api/v1/admin/issuers", Admin, "List the org's issuers", None, (200, Some("IssuerPage"))), PAGE_QUERY), get(issuers::list)),
        (doc(M::GET, "/api/v1/admin/issuers/{issuer_id}", Admin, "One issuer", None, (200, Some("Issuer"))), get(issuers::get)),
        (doc(M::PATCH, "/api/v1/admin/issuers/{issuer_id}", Admin, "Replace an issuer's JWKS or audiences", Some("IssuerUpdate"), (200, Some("Issuer"))), patch(issuers::update)),
        (doc(M::DELETE, "/api/v1/admin/issuers/{issuer_id}", Admin, "Stop trusting an issuer", None, (200, Some("Issuer"))), delete(issuers::delete)),
        (doc(M::POST, "/api/v1/admin/mapping-rules", Admin, "Allow a SAN kind and domain to name principals", Some("MappingRuleRequest"), (201, Some("MappingRule"))), post(mapping_rules::create)),
        (list(doc(M::GET, "/api/v1/admin/mapping-rules", Admin, "List the org's mapping rules", None, (200, Some("MappingRulePage"))), PAGE_QUERY), get(mapping_rules::list)),
        (doc(M::GET, "/api/v1/admin/mapping-rules/{rule_id}", Admin, "One mapping rule", None, (200, Some("MappingRule"))), get(mapping_rules::get)),
        (doc(M::DELETE, "/api/v1/admin/mapping-rules/{rule_id}", Admin, "Delete a mapping rule", None, (200, Some("MappingRule"))), delete(mapping_rules::delete)),
        (doc(M::POST, "/api/v1/admin/thumbprint-mappings", Admin, "Map a certificate fingerprint to a principal", Some("ThumbprintMappingRequest"), (201, Some("ThumbprintMapping"))), post(thumbprints::create)),
        (list(doc(M::GET, "/api/v1/admin/thumbprint-mappings", Admin, "List the org's thumbprint mappings", None, (200, Some("ThumbprintMappingPage"))), PAGE_QUERY), get(thumbprints::list)),
        (doc(M::GET, "/api/v1/admin/thumbprint-mappings/{fingerprint}", Admin, "One thumbprint mapping", None, (200, Some("ThumbprintMapping"))), get(thumbprints::get)),
        (doc(M::DELETE, "/api/v1/admin/thumbprint-mappings/{fingerprint}", Admin, "Delete a thumbprint mapping", None, (200, Some("ThumbprintMapping"))), delete(thumbprints::delete)),
        (doc(M::POST, "/api/v1/admin/constraints", Admin, "Add an identity constraint", Some("ConstraintRequest"), (201, Some("Constraint"))), post(constraints::create)),
        (list(doc(M::GET, "/api/v1/admin/constraints", Admin, "List the org's identity constraints", None, (200, Some("ConstraintPage"))), PAGE_QUERY), get(constraints::list)),
        (doc(M::GET, "/api/v1/admin/constraints/{constraint_id}", Admin, "One constraint", None, (200, Some("Constraint"))), get(constraints::get)),
        (doc(M::DELETE, "/api/v1/admin/constraints/{constraint_id}", Admin, "Delete a constraint", None, (200, Some("Constraint"))), delete(constraints::delete)),
        (list(doc(M::GET, "/api/v1/admin/audit", Admin, "The org's audit log, newest first", None, (200, Some("AuditPage"))), AUDIT_QUERY), get(audit::list)),
    ]
}

/// Documentation of every route, in table order.
pub fn route_docs() -> Vec<RouteDoc> {
    route_table().into_iter().map(|(d, _)| d).collect()
}

/// The application, shared by `certbind serve` and the tests.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for (doc, handler) in route_table() {
        router = router.route(doc.path, handler);
    }
    router
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state)
}
