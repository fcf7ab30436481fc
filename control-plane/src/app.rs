//! The HTTP application: the route table (from which both the router and the OpenAPI
//! document are built, so neither can miss a route) and the router itself. The state every
//! handler shares is `crate::state`.

use crate::error::ApiError;
use crate::http::{
    audit, blocklist, cas, constraints, crls, health, issuers, mapping_rules, metrics, openapi, orgs, proxies, smartcards,
    snapshot, thumbprints, tokens, users,
};
pub use crate::http::route_doc::{Access, RouteDoc};
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::{Json, Router};
use serde_json::Value;

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
const RULE_QUERY: &[(&str, &str, &str)] = &[
    ("limit", "integer", "page size, 1 to 1000 (default 100)"),
    ("cursor", "string", "next_cursor of the previous page"),
    ("scope", "string", "org or platform: only the org's rules, or only the platform's (super-admins see both by default)"),
];
const AUDIT_QUERY: &[(&str, &str, &str)] = &[
    ("limit", "integer", "page size, 1 to 1000 (default 100)"),
    ("cursor", "string", "next_cursor of the previous page"),
    ("action", "string", "only entries of this action, e.g. smartcard.revoke"),
    ("scope", "string", "platform: the platform's log (super-admins)"),
];
const SNAPSHOT_QUERY: &[(&str, &str, &str)] = &[
    ("wait", "integer", "seconds to wait for a snapshot newer than after_version (capped by the server)"),
    ("after_version", "integer", "the version the caller holds: with Accept: application/vnd.certbind.snapshot-delta, the answer may be a delta chain from it"),
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
    use Access::{Admin, Proxy, Public, SuperAdmin};
    use Method as M;
    let list = |mut d: RouteDoc, query| {
        d.query = query;
        d
    };
    vec![
        (doc(M::GET, "/healthz", Public, "Liveness: the process answers", None, (200, Some("Health"))), get(health::healthz)),
        (doc(M::GET, "/readyz", Public, "Readiness: database reachable and a signed snapshot present", None, (200, Some("Health"))), get(health::readyz)),
        (doc(M::GET, "/metrics", Public, "Prometheus metrics (text exposition format)", None, (200, None)), get(metrics::render)),
        (doc(M::GET, "/api/v1/openapi.json", Public, "This document", None, (200, None)), get(openapi_document)),
        (list(doc(M::GET, "/api/v1/snapshot", Proxy, "The latest signed identity snapshot, or a delta chain to it (ETag, If-None-Match, long-poll)", None, (200, None)), SNAPSHOT_QUERY), get(snapshot::latest)),
        (doc(M::GET, "/api/v1/snapshot/keys", Public, "Public keys that verify snapshots, with their key ids", None, (200, Some("SnapshotKeys"))), get(snapshot::keys)),
        (doc(M::POST, "/api/v1/admin/smartcards", Admin, "Bind a certificate to a user (fields, or certificate_pem)", Some("BindRequest"), (201, Some("SmartCard"))), post(smartcards::bind)),
        (list(doc(M::GET, "/api/v1/admin/smartcards", Admin, "List the org's card bindings", None, (200, Some("SmartCardPage"))), SMARTCARD_QUERY), get(smartcards::list)),
        (doc(M::GET, "/api/v1/admin/smartcards/{fingerprint}", Admin, "One card binding", None, (200, Some("SmartCard"))), get(smartcards::get)),
        (doc(M::PATCH, "/api/v1/admin/smartcards/{fingerprint}", Admin, "Enable, disable or relabel a binding", Some("SmartCardUpdate"), (200, Some("SmartCard"))), patch(smartcards::update)),
        (doc(M::DELETE, "/api/v1/admin/smartcards/{fingerprint}", Admin, "Revoke a binding (lost or stolen card)", None, (200, Some("SmartCard"))), delete(smartcards::revoke)),
        (doc(M::POST, "/api/v1/admin/orgs", SuperAdmin, "Create an org", Some("OrgRequest"), (201, Some("Org"))), post(orgs::create)),
        (list(doc(M::GET, "/api/v1/admin/orgs", SuperAdmin, "List orgs", None, (200, Some("OrgPage"))), PAGE_QUERY), get(orgs::list)),
        (doc(M::GET, "/api/v1/admin/orgs/{org_id}", SuperAdmin, "One org", None, (200, Some("Org"))), get(orgs::get)),
        (doc(M::PATCH, "/api/v1/admin/orgs/{org_id}", SuperAdmin, "Disable or enable an org: a disabled org's tokens are refused and the filter refuses its certificates", Some("OrgUpdate"), (200, Some("Org"))), patch(orgs::update)),
        (doc(M::DELETE, "/api/v1/admin/orgs/{org_id}", SuperAdmin, "Delete a disabled org and everything it owns (its audit log stays)", None, (200, Some("Org"))), delete(orgs::delete)),
        (doc(M::POST, "/api/v1/admin/orgs/{org_id}/domains", SuperAdmin, "Assign a domain to an org: its admins may then create SAN mapping rules for it and its subdomains", Some("DomainRequest"), (201, Some("OrgDomain"))), post(orgs::assign_domain)),
        (doc(M::GET, "/api/v1/admin/orgs/{org_id}/domains", SuperAdmin, "The domains assigned to an org", None, (200, Some("OrgDomainList"))), get(orgs::list_domains)),
        (doc(M::DELETE, "/api/v1/admin/orgs/{org_id}/domains/{domain}", SuperAdmin, "Take a domain back from an org (its SAN rules stay)", None, (200, Some("OrgDomain"))), delete(orgs::unassign_domain)),
        (doc(M::POST, "/api/v1/admin/orgs/{org_id}/tokens", SuperAdmin, "Create an admin token for an org (shown once)", Some("TokenRequest"), (201, Some("NewToken"))), post(tokens::create_for_org)),
        (list(doc(M::GET, "/api/v1/admin/orgs/{org_id}/tokens", SuperAdmin, "List an org's admin tokens (never the secrets)", None, (200, Some("TokenPage"))), PAGE_QUERY), get(tokens::list_for_org)),
        (doc(M::DELETE, "/api/v1/admin/orgs/{org_id}/tokens/{token_id}", SuperAdmin, "Revoke an admin token of any org", None, (200, Some("Token"))), delete(tokens::delete_for_org)),
        (doc(M::POST, "/api/v1/admin/tokens", Admin, "Create an admin token in the caller's org (shown once)", Some("TokenRequest"), (201, Some("NewToken"))), post(tokens::create)),
        (list(doc(M::GET, "/api/v1/admin/tokens", Admin, "List the org's admin tokens (never the secrets)", None, (200, Some("TokenPage"))), PAGE_QUERY), get(tokens::list)),
        (doc(M::DELETE, "/api/v1/admin/tokens/{token_id}", Admin, "Delete an admin token", None, (200, Some("Token"))), delete(tokens::delete)),
        (doc(M::POST, "/api/v1/admin/proxy-credentials", SuperAdmin, "Create a proxy credential: it reads the snapshot, nothing else (shown once)", Some("ProxyCredentialRequest"), (201, Some("NewProxyCredential"))), post(proxies::create)),
        (list(doc(M::GET, "/api/v1/admin/proxy-credentials", SuperAdmin, "List proxy credentials (never the secrets)", None, (200, Some("ProxyCredentialPage"))), PAGE_QUERY), get(proxies::list)),
        (doc(M::DELETE, "/api/v1/admin/proxy-credentials/{credential_id}", SuperAdmin, "Revoke a proxy credential", None, (200, Some("ProxyCredential"))), delete(proxies::delete)),
        (doc(M::POST, "/api/v1/admin/users", Admin, "Create a user in the caller's org", Some("UserRequest"), (201, Some("User"))), post(users::create)),
        (list(doc(M::GET, "/api/v1/admin/users", Admin, "List the org's users", None, (200, Some("UserPage"))), PAGE_QUERY), get(users::list)),
        (doc(M::GET, "/api/v1/admin/users/{user_id}", Admin, "One user", None, (200, Some("User"))), get(users::get)),
        (doc(M::DELETE, "/api/v1/admin/users/{user_id}", Admin, "Delete a user with no bindings", None, (200, Some("User"))), delete(users::delete)),
        (doc(M::POST, "/api/v1/admin/blocklist", Admin, "Block a certificate by fingerprint or by issuer and serial", Some("BlocklistRequest"), (201, Some("BlocklistEntry"))), post(blocklist::add)),
        (list(doc(M::GET, "/api/v1/admin/blocklist", Admin, "List the org's blocklist", None, (200, Some("BlocklistPage"))), RULE_QUERY), get(blocklist::list)),
        (doc(M::GET, "/api/v1/admin/blocklist/{entry_id}", Admin, "One blocklist entry", None, (200, Some("BlocklistEntry"))), get(blocklist::get)),
        (doc(M::DELETE, "/api/v1/admin/blocklist/{entry_id}", Admin, "Unblock", None, (200, Some("BlocklistEntry"))), delete(blocklist::remove)),
        (doc(M::POST, "/api/v1/admin/issuers", Admin, "Trust a bearer-token issuer and its JWKS", Some("IssuerRequest"), (201, Some("Issuer"))), post(issuers::create)),
        (list(doc(M::GET, "/api/v1/admin/issuers", Admin, "List the org's issuers", None, (200, Some("IssuerPage"))), RULE_QUERY), get(issuers::list)),
        (doc(M::GET, "/api/v1/admin/issuers/{issuer_id}", Admin, "One issuer", None, (200, Some("Issuer"))), get(issuers::get)),
        (doc(M::PATCH, "/api/v1/admin/issuers/{issuer_id}", Admin, "Replace an issuer's JWKS or audiences", Some("IssuerUpdate"), (200, Some("Issuer"))), patch(issuers::update)),
        (doc(M::DELETE, "/api/v1/admin/issuers/{issuer_id}", Admin, "Stop trusting an issuer", None, (200, Some("Issuer"))), delete(issuers::delete)),
        (doc(M::POST, "/api/v1/admin/mapping-rules", Admin, "Allow a SAN kind and domain to name principals", Some("MappingRuleRequest"), (201, Some("MappingRule"))), post(mapping_rules::create)),
        (list(doc(M::GET, "/api/v1/admin/mapping-rules", Admin, "List the org's mapping rules", None, (200, Some("MappingRulePage"))), RULE_QUERY), get(mapping_rules::list)),
        (doc(M::GET, "/api/v1/admin/mapping-rules/{rule_id}", Admin, "One mapping rule", None, (200, Some("MappingRule"))), get(mapping_rules::get)),
        (doc(M::DELETE, "/api/v1/admin/mapping-rules/{rule_id}", Admin, "Delete a mapping rule", None, (200, Some("MappingRule"))), delete(mapping_rules::delete)),
        (doc(M::POST, "/api/v1/admin/thumbprint-mappings", Admin, "Map a certificate fingerprint to a principal", Some("ThumbprintMappingRequest"), (201, Some("ThumbprintMapping"))), post(thumbprints::create)),
        (list(doc(M::GET, "/api/v1/admin/thumbprint-mappings", Admin, "List the org's thumbprint mappings", None, (200, Some("ThumbprintMappingPage"))), RULE_QUERY), get(thumbprints::list)),
        (doc(M::GET, "/api/v1/admin/thumbprint-mappings/{fingerprint}", Admin, "One thumbprint mapping", None, (200, Some("ThumbprintMapping"))), get(thumbprints::get)),
        (doc(M::DELETE, "/api/v1/admin/thumbprint-mappings/{fingerprint}", Admin, "Delete a thumbprint mapping", None, (200, Some("ThumbprintMapping"))), delete(thumbprints::delete)),
        (doc(M::POST, "/api/v1/admin/constraints", Admin, "Add an identity constraint", Some("ConstraintRequest"), (201, Some("Constraint"))), post(constraints::create)),
        (list(doc(M::GET, "/api/v1/admin/constraints", Admin, "List the org's identity constraints", None, (200, Some("ConstraintPage"))), RULE_QUERY), get(constraints::list)),
        (doc(M::GET, "/api/v1/admin/constraints/{constraint_id}", Admin, "One constraint", None, (200, Some("Constraint"))), get(constraints::get)),
        (doc(M::DELETE, "/api/v1/admin/constraints/{constraint_id}", Admin, "Delete a constraint", None, (200, Some("Constraint"))), delete(constraints::delete)),
        (doc(M::POST, "/api/v1/admin/cas", SuperAdmin, "Register an issuing CA by its certificate, with its revocation policy; known by its key identifier", Some("CaRequest"), (201, Some("CertificateAuthority"))), post(cas::register)),
        (list(doc(M::GET, "/api/v1/admin/cas", Admin, "List the registered CAs with their CRL and fetch state", None, (200, Some("CertificateAuthorityPage"))), PAGE_QUERY), get(cas::list)),
        (doc(M::GET, "/api/v1/admin/cas/{key_id}", Admin, "One CA, with its CRL and fetch state", None, (200, Some("CertificateAuthority"))), get(cas::get)),
        (doc(M::PATCH, "/api/v1/admin/cas/{key_id}", SuperAdmin, "Change a CA's revocation policy", Some("CaPolicyRequest"), (200, Some("CertificateAuthority"))), patch(cas::update)),
        (doc(M::DELETE, "/api/v1/admin/cas/{key_id}", SuperAdmin, "Remove a CA and the revocations its CRL brought", None, (200, Some("CertificateAuthority"))), delete(cas::delete)),
        (doc(M::POST, "/api/v1/admin/crls", Admin, "Upload a CRL (DER as application/pkix-crl, or PEM); taken when it verifies with a registered CA's key", Some("Crl"), (200, Some("CrlIngested"))), post(crls::upload)),
        (list(doc(M::GET, "/api/v1/admin/audit", Admin, "The org's audit log, newest first", None, (200, Some("AuditPage"))), AUDIT_QUERY), get(audit::list)),
    ]
}

/// Documentation of every route, in table order.
pub fn route_docs() -> Vec<RouteDoc> {
    route_table().into_iter().map(|(d, _)| d).collect()
}

/// `GET /api/v1/openapi.json`: built from the same table the router is.
async fn openapi_document() -> Json<Value> {
    Json(openapi::build(&route_docs()))
}

/// The application, shared by `certbind serve` and the tests.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    // A CRL is far larger than any JSON body: its route takes what the CRL caps allow.
    let crl_body = DefaultBodyLimit::max(state.limits.crl.max_pem_bytes());
    for (doc, handler) in route_table() {
        let handler = if doc.path == "/api/v1/admin/crls" { handler.layer(crl_body) } else { handler };
        router = router.route(doc.path, handler);
    }
    router
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state)
}
