//! NGINX `auth_request`. The configuration sets, on the subrequest:
//!
//! - the policy's certificate header from `$ssl_client_escaped_cert` (source `nginx_escaped`);
//! - `X-Certbind-Client-Verify` from `$ssl_client_verify`: with `ssl_verify_client optional`
//!   NGINX forwards a certificate that failed verification, so only `SUCCESS` lets the
//!   certificate count — anything else (`NONE`, `FAILED:…`, the header missing) and the
//!   certificate is treated as absent;
//! - `X-Certbind-Original-URI` from `$request_uri` and `X-Certbind-Original-Method` from
//!   `$request_method`.
//!
//! `auth_request` acts on 2xx (allow), 401 and 403; any other status becomes a 500. So a
//! refusal is answered 401 (the 401 reasons) or 403 (every other one) with the reason in
//! `X-Certbind-Reason`, and the configuration's `error_page` fetches the refusal itself from
//! [`PROBLEM_PREFIX`]`{reason}`, which answers it with the filter's status and body.

use super::{allowed, forwarded, problem, single, HttpAnswer, HttpCheck};
use crate::check::{Check, Verdict};
use certbind_shared::decision::headers::folded_eq;
use certbind_shared::decision::outcome::{Denial, Reason};

pub const PATH: &str = "/auth/nginx";
pub const PROBLEM_PREFIX: &str = "/auth/nginx/problem/";
pub const URI_HEADER: &str = "x-certbind-original-uri";
pub const METHOD_HEADER: &str = "x-certbind-original-method";
pub const VERIFY_HEADER: &str = "x-certbind-client-verify";
pub const REASON_HEADER: &str = "x-certbind-reason";

/// `source_header`: the policy's certificate header (folded), if it names one.
pub fn check<'a>(http: &'a HttpCheck, source_header: Option<&str>) -> Result<Check<'a>, Reason> {
    let verified = match single(&http.headers, VERIFY_HEADER) {
        Err(()) => return Err(Reason::MalformedClientCert),
        Ok(value) => value == Some(b"SUCCESS".as_slice()),
    };
    let mut check = forwarded(http, URI_HEADER, METHOD_HEADER, &[VERIFY_HEADER])?;
    if !verified {
        if let Some(source) = source_header {
            check.headers.retain(|(name, _)| !folded_eq(name, source));
        }
    }
    Ok(check)
}

pub fn answer(verdict: &Verdict) -> HttpAnswer {
    match verdict {
        Verdict::Allow { set, .. } => allowed(set),
        Verdict::Deny(denial) => {
            let mut answer = problem(denial);
            if answer.status != 401 {
                answer.status = 403;
            }
            answer.headers.push((REASON_HEADER.to_string(), denial.reason.as_str().to_string()));
            answer
        }
    }
}

/// The refusal for `reason`, as `error_page` relays it to the client.
pub fn problem_for(reason: &str) -> HttpAnswer {
    let reason = super::reason_named(reason).unwrap_or(Reason::IdentityUnavailable);
    problem(&Denial { reason })
}
