//! A route as documented: the route table (`app`) holds one per route, and the OpenAPI
//! document is generated from them.

use axum::http::Method;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// A proxy credential (the snapshot, nothing else).
    Proxy,
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
