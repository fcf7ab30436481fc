//! Traefik `forwardAuth`. Traefik sets `X-Forwarded-Uri` and `X-Forwarded-Method` itself
//! (with `trustForwardHeader: false`, the default), and `passTLSClientCert` sets
//! `X-Forwarded-Tls-Client-Cert` (source `traefik`); the configuration clears that header
//! first, so a client without a certificate cannot send its own. Traefik relays a refusal's
//! status, headers and body to the client as they are, and copies the identity headers onto
//! the request through `authResponseHeadersRegex`, which also removes every inbound header
//! that matches it.

use super::{allowed, forwarded, problem, HttpAnswer, HttpCheck};
use crate::check::{Check, Verdict};
use certbind_shared::decision::outcome::Reason;

pub const PATH: &str = "/auth/traefik";
pub const URI_HEADER: &str = "x-forwarded-uri";
pub const METHOD_HEADER: &str = "x-forwarded-method";

pub fn check(http: &HttpCheck) -> Result<Check<'_>, Reason> {
    forwarded(http, URI_HEADER, METHOD_HEADER, &[])
}

pub fn answer(verdict: &Verdict) -> HttpAnswer {
    match verdict {
        Verdict::Allow { set, .. } => allowed(set),
        Verdict::Deny(denial) => problem(denial),
    }
}
