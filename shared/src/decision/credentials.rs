//! Credentials a request carries beside the one the filter reads. The filter verifies (or, on
//! `mtls` routes, checks the binding of) exactly one carrier: a single `Authorization: Bearer
//! <token>` header. An upstream library may read others — `Bearer  x` with two spaces, a tab,
//! `JWT x`, a bare token, two `Authorization` headers that a proxy joined with a comma, a
//! `?access_token=` query parameter (RFC 6750 §2.3) — and would then believe a token the
//! filter never saw beside the identity the filter vouched for. So on every route, whatever
//! its mode, a request is refused (401 `invalid_token`) when:
//!
//! - it has more than one `Authorization` header (in any spelling of the name), or one whose
//!   value is not exactly `Bearer`, one space and a token68 of at most
//!   [`jwt::MAX_TOKEN_BYTES`] (any other scheme too: the filter owns this header);
//! - its query names `access_token`, or a parameter the policy lists, in any spelling a
//!   framework may decode to it ([`fold_parameter`]);
//! - it carries a header or cookie the policy lists (`credential_carriers`).
//!
//! Only the first rule and `access_token` are built in: cookies and custom headers are the
//! upstream's own business until the operator lists them.

use super::config_error::ConfigError;
use super::headers::{configured_name, folded_eq, RequestHeader};
use super::outcome::Reason;
use crate::pop::jwt;
use serde::Deserialize;

/// The query parameter RFC 6750 §2.3 defines for bearer tokens, folded.
pub const ACCESS_TOKEN_PARAMETER: &str = "accesstoken";

/// Longest query parameter name or cookie name compared, once decoded. No carrier name is
/// near it; a longer one is not a listed carrier, and the cap bounds the decoding work.
const MAX_NAME_BYTES: usize = 256;

/// Rounds of percent-decoding applied to a parameter name: an upstream that decodes twice
/// reads `%2561ccess_token` as `access_token`.
const DECODE_ROUNDS: usize = 3;

/// Other places a credential may ride, as the operator lists them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialCarriersConfig {
    /// Query parameters refused beside `access_token`.
    #[serde(default)]
    pub query_parameters: Vec<String>,
    /// Request headers refused (exact names, compared folded).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Cookies refused (names compared folded, as parameters are).
    #[serde(default)]
    pub cookies: Vec<String>,
}

/// The carriers refused, validated and folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialCarriers {
    query_parameters: Vec<String>,
    headers: Vec<String>,
    cookies: Vec<String>,
}

impl Default for CredentialCarriers {
    fn default() -> Self {
        CredentialCarriers { query_parameters: vec![ACCESS_TOKEN_PARAMETER.to_owned()], headers: Vec::new(), cookies: Vec::new() }
    }
}

impl CredentialCarriersConfig {
    pub fn validated(&self, field: &str) -> Result<CredentialCarriers, ConfigError> {
        let folded_names = |member: &str, names: &[String]| -> Result<Vec<String>, ConfigError> {
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let folded = fold_parameter(name.as_bytes());
                    match folded {
                        Some(f) if !f.is_empty() => Ok(f),
                        _ => Err(ConfigError::new(format!("{field}.{member}[{i}]"), format!("{name:?} has no letter or digit"))),
                    }
                })
                .collect()
        };
        let mut carriers = CredentialCarriers::default();
        for name in folded_names("query_parameters", &self.query_parameters)? {
            if !carriers.query_parameters.contains(&name) {
                carriers.query_parameters.push(name);
            }
        }
        carriers.cookies = folded_names("cookies", &self.cookies)?;
        for (i, name) in self.headers.iter().enumerate() {
            let folded = configured_name(&format!("{field}.headers[{i}]"), name)?;
            if folded == "authorization" || folded == "cookie" {
                return Err(ConfigError::new(
                    format!("{field}.headers[{i}]"),
                    "the filter reads this header itself; list cookies under `cookies`",
                ));
            }
            carriers.headers.push(folded);
        }
        Ok(carriers)
    }
}

/// A parameter or cookie name as frameworks may read it: percent-decoded (up to
/// [`DECODE_ROUNDS`] times, `+` as a space), then only its ASCII letters (lowercased) and
/// digits kept. `access_token`, `Access-Token`, `accessToken`, `access.token`,
/// `access_token[]` and `%61ccess%5Ftoken` all fold to `accesstoken`. `None` for a name over
/// [`MAX_NAME_BYTES`].
pub fn fold_parameter(raw: &[u8]) -> Option<String> {
    if raw.len() > MAX_NAME_BYTES {
        return None;
    }
    let mut name = raw.to_vec();
    for _ in 0..DECODE_ROUNDS {
        if !name.contains(&b'%') {
            break;
        }
        name = decode_lenient(&name);
    }
    Some(name.iter().filter(|b| b.is_ascii_alphanumeric()).map(|b| char::from(b.to_ascii_lowercase())).collect())
}

/// Percent-decoding as lenient servers do it: a `%` not followed by two hex digits stays.
fn decode_lenient(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&byte) = input.get(i) {
        let escaped = (byte == b'%')
            .then(|| Some((crate::encoding::hex_value(*input.get(i + 1)?)? << 4) | crate::encoding::hex_value(*input.get(i + 2)?)?))
            .flatten();
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Whether a raw (undecoded) name folds to one of `folded`.
fn names_one_of(raw: &[u8], folded: &[String]) -> bool {
    fold_parameter(raw).is_some_and(|name| folded.iter().any(|f| *f == name))
}

/// The query of a request target: what follows the first `?`.
fn query(target: &[u8]) -> Option<&[u8]> {
    let at = target.iter().position(|&b| b == b'?')?;
    target.get(at + 1..)
}

impl CredentialCarriers {
    /// Whether `name` (any case, `_` or `-`) is a listed credential header.
    pub fn names_header(&self, name: &str) -> bool {
        self.headers.iter().any(|listed| folded_eq(name, listed))
    }

    /// Refuses the request when it carries a credential the filter does not read: see the
    /// module documentation. `authorization` is the one `Authorization` value when there is
    /// exactly one.
    pub fn check(
        &self,
        target: &[u8],
        authorization: Option<&[u8]>,
        authorization_count: usize,
        headers: &[RequestHeader<'_>],
    ) -> Result<(), Reason> {
        match (authorization_count, authorization) {
            (0, _) => {}
            (1, Some(value)) => {
                let text = std::str::from_utf8(value).map_err(|_| Reason::InvalidToken)?;
                if jwt::bearer_token(text).is_none_or(|token| token.len() > jwt::MAX_TOKEN_BYTES) {
                    return Err(Reason::InvalidToken);
                }
            }
            _ => return Err(Reason::InvalidToken),
        }
        if let Some(query) = query(target) {
            // `;` separates parameters too in some servers (older Java, Python's cgi).
            if query.split(|&b| b == b'&' || b == b';').any(|pair| {
                let name = pair.split(|&b| b == b'=').next().unwrap_or(pair);
                names_one_of(name, &self.query_parameters)
            }) {
                return Err(Reason::InvalidToken);
            }
        }
        if self.headers.is_empty() && self.cookies.is_empty() {
            return Ok(());
        }
        for &(name, value) in headers {
            if self.names_header(name) {
                return Err(Reason::InvalidToken);
            }
            if !self.cookies.is_empty() && folded_eq(name, "cookie") && carries_cookie(value, &self.cookies) {
                return Err(Reason::InvalidToken);
            }
        }
        Ok(())
    }
}

/// Whether a `Cookie` value (`a=1; b=2`, or joined with `,` by some hops) names a listed cookie.
fn carries_cookie(value: &[u8], cookies: &[String]) -> bool {
    value.split(|&b| b == b';' || b == b',').any(|pair| {
        let name = pair.split(|&b| b == b'=').next().unwrap_or(pair);
        names_one_of(name.trim_ascii(), cookies)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carriers(json: serde_json::Value) -> CredentialCarriers {
        serde_json::from_value::<CredentialCarriersConfig>(json).unwrap().validated("credential_carriers").unwrap()
    }

    fn verdict(c: &CredentialCarriers, target: &str, authorization: &[&str], headers: &[(&str, &str)]) -> Result<(), Reason> {
        let mut all: Vec<RequestHeader<'_>> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        all.extend(authorization.iter().map(|v| ("authorization", v.as_bytes())));
        c.check(target.as_bytes(), authorization.first().map(|v| v.as_bytes()), authorization.len(), &all)
    }

    #[test]
    fn only_one_well_formed_bearer_header_passes() {
        let c = CredentialCarriers::default();
        for good in ["Bearer abc.def.ghi", "bearer abc", "BEARER abc==", "Bearer a-b_c~d+e/f"] {
            assert_eq!(verdict(&c, "/x", &[good], &[]), Ok(()), "{good}");
        }
        assert_eq!(verdict(&c, "/x", &[], &[]), Ok(()));
        for bad in [
            "Bearer  abc",
            "Bearer\tabc",
            "Bearer abc ",
            " Bearer abc",
            "Bearer abc,",
            "Bearer abc, Bearer def",
            "Bearer abc,Bearer def",
            "JWT abc",
            "Token abc",
            "Basic dXNlcjpwYXNz",
            "abc.def.ghi",
            "Bearer",
            "Bearer ",
            "Bearer =",
            "Bearer a=b",
            "",
        ] {
            assert_eq!(verdict(&c, "/x", &[bad], &[]), Err(Reason::InvalidToken), "{bad:?}");
        }
        assert_eq!(verdict(&c, "/x", &["Bearer abc", "Bearer abc"], &[]), Err(Reason::InvalidToken));
        let long = format!("Bearer {}", "a".repeat(jwt::MAX_TOKEN_BYTES + 1));
        assert_eq!(verdict(&c, "/x", &[&long], &[]), Err(Reason::InvalidToken));
        let not_utf8: [RequestHeader<'_>; 1] = [("authorization", b"Bearer \xff")];
        assert_eq!(c.check(b"/x", Some(b"Bearer \xff"), 1, &not_utf8), Err(Reason::InvalidToken));
    }

    #[test]
    fn access_token_in_the_query_is_refused_in_every_spelling() {
        let c = CredentialCarriers::default();
        for target in [
            "/x?access_token=abc",
            "/x?a=1&access_token=abc",
            "/x?a=1;access_token=abc",
            "/x?ACCESS_TOKEN=abc",
            "/x?Access-Token=abc",
            "/x?accessToken=abc",
            "/x?access.token=abc",
            "/x?access+token=abc",
            "/x?access%20token=abc",
            "/x?access_token[]=abc",
            "/x?%61ccess_token=abc",
            "/x?access%5Ftoken=abc",
            "/x?access%255Ftoken=abc",
            "/x?access_token",
            "/x?access_token=",
            "/x?q=1&&access_token=abc",
        ] {
            assert_eq!(verdict(&c, target, &[], &[]), Err(Reason::InvalidToken), "{target}");
        }
        for target in ["/x", "/x?", "/x?token=abc", "/x?q=access_token", "/x?access_tokens=1", "/access_token?x=1", "/x?%zzaccess=1"] {
            assert_eq!(verdict(&c, target, &[], &[]), Ok(()), "{target}");
        }
        let long_name = format!("/x?{}access_token=1", "_".repeat(MAX_NAME_BYTES));
        assert_eq!(verdict(&c, &long_name, &[], &[]), Ok(()), "a name over the cap is no carrier");
    }

    #[test]
    fn listed_parameters_headers_and_cookies_are_refused() {
        let c = carriers(serde_json::json!({
            "query_parameters": ["token", "access_token"],
            "headers": ["X-Access-Token"],
            "cookies": ["session_token"]
        }));
        assert_eq!(verdict(&c, "/x?Token=1", &[], &[]), Err(Reason::InvalidToken));
        assert_eq!(verdict(&c, "/x?access_token=1", &[], &[]), Err(Reason::InvalidToken));
        assert_eq!(verdict(&c, "/x", &[], &[("x_access_token", "abc")]), Err(Reason::InvalidToken));
        assert_eq!(verdict(&c, "/x", &[], &[("X-Access-Token", "")]), Err(Reason::InvalidToken));
        for cookie in ["session_token=abc", "a=1; SessionToken=abc", "a=1;session-token=abc", "a=1, session_token=x", "session%5Ftoken=1"] {
            assert_eq!(verdict(&c, "/x", &[], &[("cookie", cookie)]), Err(Reason::InvalidToken), "{cookie}");
        }
        assert_eq!(verdict(&c, "/x", &[], &[("Cookie", "theme=dark; sid=1")]), Ok(()));
        assert_eq!(verdict(&c, "/x", &[], &[("set-cookie", "session_token=1")]), Ok(()));
        assert_eq!(verdict(&c, "/x", &[], &[("x-access-token-hint", "1")]), Ok(()));
    }

    #[test]
    fn bad_carrier_lists_name_their_member() {
        let refused = |json: serde_json::Value| {
            serde_json::from_value::<CredentialCarriersConfig>(json).unwrap().validated("credential_carriers").unwrap_err().field
        };
        assert_eq!(refused(serde_json::json!({"query_parameters": ["ok", "__"]})), "credential_carriers.query_parameters[1]");
        assert_eq!(refused(serde_json::json!({"cookies": ["-"]})), "credential_carriers.cookies[0]");
        assert_eq!(refused(serde_json::json!({"headers": ["bad name"]})), "credential_carriers.headers[0]");
        assert_eq!(refused(serde_json::json!({"headers": ["Authorization"]})), "credential_carriers.headers[0]");
    }
}
