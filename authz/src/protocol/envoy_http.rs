//! Envoy `ext_authz` over HTTP. Envoy sends the check with the original method, the original
//! path after the configured `path_prefix` ([`PATH`]), and the request's headers
//! (`allowed_headers`), among them the `x-forwarded-client-cert` its connection manager set
//! with `SANITIZE_SET` (source `xfcc`, trust `trusted_proxies`: the service's peer is that
//! Envoy). On 200 Envoy copies the identity headers onto the request
//! (`allowed_upstream_headers`) and removes those named in `x-envoy-auth-headers-to-remove`;
//! any other status goes to the client with its body and `allowed_client_headers`.

use super::{allowed, problem, HttpAnswer, HttpCheck};
use crate::check::{Check, Verdict};
use certbind_shared::decision::outcome::Reason;

pub const PATH: &str = "/auth/envoy";
pub const REMOVE_HEADER: &str = "x-envoy-auth-headers-to-remove";

pub fn check(http: &HttpCheck) -> Result<Check<'_>, Reason> {
    let original = http.target.strip_prefix(PATH).filter(|rest| rest.starts_with('/')).ok_or(Reason::InvalidPath)?;
    let mut headers = Vec::with_capacity(http.headers.len() + 2);
    headers.push((":method", http.method.as_bytes()));
    headers.push((":path", original.as_bytes()));
    headers.extend(
        http.headers.iter().filter(|(name, _)| !name.starts_with(':')).map(|(n, v)| (n.as_str(), v.as_slice())),
    );
    Ok(Check { headers, peer: http.peer, ..Default::default() })
}

pub fn answer(verdict: &Verdict) -> HttpAnswer {
    match verdict {
        Verdict::Allow { set, remove, .. } => {
            let mut answer = allowed(set);
            // Headers the answer sets are replaced by Envoy anyway; naming them here too
            // would remove the service's own values.
            let remove: Vec<&str> = remove
                .iter()
                .map(String::as_str)
                .filter(|name| !set.iter().any(|(s, _)| s.eq_ignore_ascii_case(name)))
                .collect();
            if !remove.is_empty() {
                answer.headers.push((REMOVE_HEADER.to_string(), remove.join(",")));
            }
            answer
        }
        Verdict::Deny(denial) => problem(denial),
    }
}
