//! certbind's authorization service: the filter's request path for gateways that ask an
//! external service instead of loading the filter — NGINX `auth_request`, Traefik
//! `forwardAuth`, Envoy `ext_authz` over HTTP and gRPC.
//!
//! Each protocol ([`protocol`]) turns what its gateway forwards into one [`check::Check`];
//! the [`check::Authorizer`] decides it with the filter's engine and identity data; the
//! protocol renders the verdict the way its gateway acts on it. Identity data comes from the
//! same configuration document and the same snapshot machinery as the filter's
//! ([`snapshot`]), and outcomes are counted under the filter's metric names ([`metrics`]).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod check;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod snapshot;
pub mod tls;
