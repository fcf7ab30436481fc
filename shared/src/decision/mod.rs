//! The decision: request facts + policy + identity data → allow (headers to set) or deny
//! (status, reason). Pure apart from the bounded caches the [`Engine`] owns beside its policy.
//!
//! The request path, numbered once; the README, `docs/filter.md` and the module headers use
//! these numbers:
//!
//! 1. **Route** ([`path`], [`mode`]): the path is canonicalised (a path whose meaning depends
//!    on the upstream's decoding is refused, `invalid_path`) and every route that a spelling of
//!    it may reach applies; the stricter mode wins.
//! 2. **Credentials** ([`credentials`]): on every route, anything but exactly one well-formed
//!    Bearer token in `Authorization` (a second header, another scheme, `?access_token=`, a
//!    listed carrier) is refused, `invalid_token`.
//! 3. **Certificate** ([`extract`], [`trust`]): from the one configured source, a forwarded
//!    header believed only from a trusted hop, into facts.
//! 4. **Identity** ([`resolve`], [`revocation`], [`constraints`]): the org and principal the
//!    certificate resolves into; blocklist, revocation (an admin's and the CA's CRL) and the
//!    org's constraints.
//! 5. **Token** ([`crate::pop`]): the bearer JWT's signature, claims and sender binding
//!    (`cnf.x5t#S256` against the request's certificate, RFC 8705).
//! 6. **Answer** (the shims, with [`outcome`]): forward with every inbound identity and URL
//!    override header removed and the trusted ones set, or refuse with problem+json; count it.

pub mod cache;
pub mod config;
pub mod config_error;
pub mod constraints;
pub mod credentials;
pub mod extract;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod headers;
pub mod mode;
pub mod outcome;
pub mod path;
pub mod resolve;
pub mod revocation;
pub mod scope;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trust;

use crate::fingerprint::Fingerprint;
use crate::identity::IdentityData;
use crate::pop::cache::{RejectedTokens, TokenCache};
use crate::pop::jwt::{self, TokenRequirements, VerifiedToken};
use cache::FactsCache;
use config::{CertificateSource, Policy, PolicyConfig};
use config_error::ConfigError;
use headers::folded_eq;
use mode::Mode;
use outcome::{header, Notice, Outcome, Reason};
use std::net::IpAddr;
use std::sync::Arc;

pub use headers::{header_refs, RequestHeader};

/// Everything the decision reads about one request. Header names may come in any case (NGINX
/// passes them as the client wrote them).
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestInput<'a> {
    pub headers: &'a [RequestHeader<'a>],
    /// The TCP peer, read from the property [`Policy::peer_property`] names; `None` when it
    /// could not be told (see [`trust`]).
    pub peer: Option<IpAddr>,
    /// The SHA-256 of the connection's certificate; `None` without mTLS.
    pub connection_digest: Option<ConnectionDigest<'a>>,
    /// `connection.peer_certificate` (PEM), read for the connection source when
    /// [`Engine::needs_connection_certificate`] says so.
    pub connection_certificate: Option<&'a [u8]>,
    /// `connection.subject_peer_certificate`, read for the connection source without
    /// `connection.peer_certificate`.
    pub connection_subject: Option<&'a str>,
    pub connection_uri_sans: &'a [String],
    pub connection_dns_sans: &'a [String],
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// The SHA-256 of the connection's certificate, in the form its caller holds it: the proxy's
/// text, parsed where the decision reads it, or the digest itself when the caller computed it
/// (the authorization service hashes the certificate its gateway sent), so it is never
/// spelled out in hex only to be read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionDigest<'a> {
    /// `connection.sha256_peer_certificate_digest` as the proxy hands it: 64 hex digits of
    /// either case, empty when the connection presented no certificate.
    Hex(&'a str),
    Fingerprint(Fingerprint),
}

impl ConnectionDigest<'_> {
    /// Whether the connection presented a certificate at all (malformed text included).
    pub fn is_present(&self) -> bool {
        match self {
            ConnectionDigest::Hex(text) => !text.is_empty(),
            ConnectionDigest::Fingerprint(_) => true,
        }
    }

    /// The same digest with proxy text that names one parsed, for a caller that asks more
    /// than once; anything else stays as it came (empty: no certificate; malformed: refused
    /// where the decision reads it).
    pub fn parsed(self) -> Self {
        self.fingerprint().map_or(self, ConnectionDigest::Fingerprint)
    }

    /// The fingerprint it names; `None` for text that is not exactly 64 hex digits.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        match self {
            ConnectionDigest::Hex(text) => (text.len() == 64).then(|| Fingerprint::parse(text).ok()).flatten(),
            ConnectionDigest::Fingerprint(fingerprint) => Some(*fingerprint),
        }
    }
}

/// The headers the decision needs, found in one pass. Names compare folded (any case, `_` as
/// `-`), and every spelling counts towards duplicates.
#[derive(Debug, Default)]
pub struct ScannedHeaders<'a> {
    pub path: Option<&'a [u8]>,
    pub path_count: usize,
    pub source_value: Option<&'a [u8]>,
    pub source_count: usize,
    pub signature_value: Option<&'a [u8]>,
    pub signature_count: usize,
    pub authorization: Option<&'a [u8]>,
    pub authorization_count: usize,
}

/// The caches of one worker's engine: certificate facts, verified tokens, refused tokens.
pub struct Caches {
    pub facts: FactsCache,
    pub tokens: TokenCache,
    pub rejected_tokens: RejectedTokens,
}

/// The decision engine of one worker: the validated policy and its caches.
pub struct Engine {
    policy: Policy,
    caches: Caches,
}

impl Engine {
    pub fn new(config: PolicyConfig) -> Result<Self, ConfigError> {
        let policy = config.validate()?;
        if policy.default_route.verifies_tokens() || policy.routes.iter().any(config::Route::verifies_tokens) {
            // The ES256 generator table, built now rather than on the first token's request.
            crate::pop::es256::prepare();
        }
        let caches = Caches {
            facts: FactsCache::new(policy.facts_cache_capacity, policy.facts_cache_bytes),
            tokens: TokenCache::new(policy.token.cache_capacity),
            rejected_tokens: RejectedTokens::new(policy.token.rejected_cache_capacity),
        };
        Ok(Engine { policy, caches })
    }

    pub fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        let config: PolicyConfig =
            serde_json::from_slice(json).map_err(|e| ConfigError::new("policy", e.to_string()))?;
        Self::new(config)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn caches(&self) -> &Caches {
        &self.caches
    }

    /// The caches, for a host that keeps what it derives from a request's own bytes beside
    /// the engine's (a certificate's digest, by the exact text it came in).
    pub fn caches_mut(&mut self) -> &mut Caches {
        &mut self.caches
    }

    /// Whether the caller must read `connection.sha256_peer_certificate_digest`.
    pub fn needs_connection_digest(&self) -> bool {
        matches!(
            self.policy.source,
            CertificateSource::Connection | CertificateSource::Xfcc { trust: config::XfccTrust::ThisProxy, .. }
        )
    }

    /// Whether the caller must read `connection.peer_certificate` for a connection whose
    /// certificate has this digest: only for the connection source, and only when its facts
    /// are not cached.
    pub fn needs_connection_certificate(&self, digest: Option<ConnectionDigest<'_>>) -> bool {
        self.policy.source == CertificateSource::Connection
            && digest
                .and_then(|d| d.fingerprint())
                .is_some_and(|fp| !self.caches.facts.contains_certificate(&fp, b""))
    }

    /// True for every inbound header that must not reach the upstream: identity headers in any
    /// spelling, URL-override headers, the configured source and signature headers, and the
    /// operator's additions.
    pub fn is_identity_header(&self, name: &str) -> bool {
        self.policy.strip.strips(name)
    }

    /// True for every request trailer that must not reach the upstream: what
    /// [`Engine::is_identity_header`] strips, `Authorization`, `Cookie` and the listed
    /// credential headers. The filter reads credentials from headers only, and RFC 9110
    /// §6.5.1 forbids sending authentication fields as trailers.
    pub fn strips_trailer(&self, name: &str) -> bool {
        self.policy.strip.strips(name)
            || folded_eq(name, "authorization")
            || folded_eq(name, "cookie")
            || self.policy.credential_carriers.names_header(name)
    }

    /// Decides one request. `identity` is `None` when no valid identity data is held (no
    /// snapshot yet, or the last one expired): every request is then refused with 503.
    pub fn evaluate(&mut self, request: &RequestInput<'_>, identity: Option<&dyn IdentityData>) -> Outcome {
        match evaluate(&self.policy, &mut self.caches, request, identity) {
            Ok((set, notice)) => Outcome::Allow { set, notice },
            Err(reason) => Outcome::deny(reason),
        }
    }
}

fn scan<'a>(policy: &Policy, headers: &[RequestHeader<'a>]) -> ScannedHeaders<'a> {
    let mut scanned = ScannedHeaders::default();
    let source = policy.source.header();
    let signature = policy.signature.as_ref().map(|s| s.header.as_str());
    for &(name, value) in headers {
        if name.eq_ignore_ascii_case(":path") {
            scanned.path = Some(value);
            scanned.path_count += 1;
        } else if folded_eq(name, "authorization") {
            scanned.authorization = Some(value);
            scanned.authorization_count += 1;
        } else if source.is_some_and(|s| folded_eq(name, s)) {
            scanned.source_value = Some(value);
            scanned.source_count += 1;
        } else if signature.is_some_and(|s| folded_eq(name, s)) {
            scanned.signature_value = Some(value);
            scanned.signature_count += 1;
        }
    }
    scanned
}

fn evaluate(
    policy: &Policy,
    caches: &mut Caches,
    request: &RequestInput<'_>,
    identity: Option<&dyn IdentityData>,
) -> Result<(Vec<(&'static str, String)>, Option<Notice>), Reason> {
    let scanned = scan(policy, request.headers);
    let target = match (scanned.path_count, scanned.path) {
        (1, Some(target)) => target,
        _ => return Err(Reason::InvalidPath),
    };
    let path = path::canonical_path(target).map_err(|_| Reason::InvalidPath)?;
    // Every route: a credential the filter does not read must not reach the upstream.
    policy.credential_carriers.check(target, scanned.authorization, scanned.authorization_count, request.headers)?;
    let identity = identity.ok_or(Reason::IdentityUnavailable);
    // Every route a spelling of the path could reach must let the request through; the first
    // refusal, in the order of [`Policy::routes_for`], is the answer, and the headers set are
    // those of every route (the same certificate and token resolve the same way on each).
    let routes = policy.routes_for(&path);
    if let [(route, sender_binding_required)] = routes.as_slice() {
        return decide_route(policy, caches, request, &scanned, route, *sender_binding_required, identity);
    }
    let mut set: Vec<(&'static str, String)> = Vec::new();
    let mut notice = None;
    for (route, sender_binding_required) in routes {
        let (entries, route_notice) = decide_route(policy, caches, request, &scanned, route, sender_binding_required, identity)?;
        notice = notice.or(route_notice);
        for entry in entries {
            if !set.iter().any(|(name, _)| *name == entry.0) {
                set.push(entry);
            }
        }
    }
    Ok((set, notice))
}

/// The decision under one route.
fn decide_route(
    policy: &Policy,
    caches: &mut Caches,
    request: &RequestInput<'_>,
    scanned: &ScannedHeaders<'_>,
    route: &config::Route,
    sender_binding_required: bool,
    identity: Result<&dyn IdentityData, Reason>,
) -> Result<(Vec<(&'static str, String)>, Option<Notice>), Reason> {
    // Certificates play no part in bearer mode unless a bound token asks for one: their
    // headers are stripped, not parsed.
    let mut certificate = if route.mode == Mode::Bearer {
        None
    } else {
        extract::certificate(policy, request, scanned, &mut caches.facts)?
    };
    let identity = identity?;

    let mut set = Vec::with_capacity(10);
    let mut notice = None;
    let revocation = &policy.revocation;
    match route.mode {
        Mode::Mtls => {
            let facts = certificate.ok_or(Reason::CertificateMissing)?;
            resolve::certificate_identity(&facts, route, revocation, identity, request.now, &mut set, &mut notice)?;
            // Tokens are not verified here, and pass to the upstream as sent (the one
            // well-formed Bearer header [`credentials`] lets through) — but one bound to
            // another certificate is refused, whoever would read it (RFC 8705 §3).
            if let Some(claimed) = bound_token_confirmation(scanned) {
                if !jwt::confirmation_names(&claimed, &facts.fingerprint) {
                    return Err(Reason::SenderBindingMismatch);
                }
            }
        }
        Mode::Bearer | Mode::BearerPlusMtlsOptional | Mode::BearerPlusMtlsRequired => {
            if sender_binding_required && certificate.is_none() {
                return Err(Reason::CertificateMissing);
            }
            // The org the certificate resolves into selects the token issuers that apply;
            // without one (a bearer route, or no certificate) only the platform's do.
            let mut org = None;
            if let Some(facts) = &certificate {
                org = resolve::certificate_identity(facts, route, revocation, identity, request.now, &mut set, &mut notice)?;
            }
            let token = verified_token(policy, caches, scanned, identity, org, request.now)?;
            if token.cnf_x5t_s256.is_some() && route.mode == Mode::Bearer {
                // RFC 8705 §3: a bound token is accepted only with its certificate, on every
                // route. The certificate is then held to the route's checks too, though its
                // identity is not forwarded on a bearer route.
                certificate = extract::certificate(policy, request, scanned, &mut caches.facts)?;
                let facts = certificate.as_ref().ok_or(Reason::CertificateMissing)?;
                resolve::certificate_identity(facts, route, revocation, identity, request.now, &mut Vec::new(), &mut notice)?;
            }
            if sender_binding_required || token.cnf_x5t_s256.is_some() {
                let facts = certificate.as_ref().ok_or(Reason::CertificateMissing)?;
                if !jwt::cnf_matches(&token, &facts.fingerprint) {
                    return Err(Reason::SenderBindingMismatch);
                }
            }
            push_token_headers(&mut set, &token);
        }
    }
    Ok((set, notice))
}

/// The certificate a bearer token on the request claims to be bound to, unverified.
fn bound_token_confirmation(scanned: &ScannedHeaders<'_>) -> Option<String> {
    let raw = std::str::from_utf8(scanned.authorization?).ok()?;
    jwt::unverified_confirmation(jwt::bearer_token(raw)?)
}

/// The bearer token, verified against the issuer registrations in the scope of `org`: the
/// org's and the platform's ([`scope::verify_in_scope`]).
fn verified_token(
    policy: &Policy,
    caches: &mut Caches,
    scanned: &ScannedHeaders<'_>,
    identity: &dyn IdentityData,
    org: Option<&str>,
    now: i64,
) -> Result<Arc<VerifiedToken>, Reason> {
    let raw = match (scanned.authorization_count, scanned.authorization) {
        (0, _) | (_, None) => return Err(Reason::TokenMissing),
        (1, Some(raw)) => raw,
        _ => return Err(Reason::InvalidToken),
    };
    let token = jwt::bearer_credential_bytes(raw).ok_or(Reason::InvalidToken)?;
    let leeway = policy.token.leeway_seconds;
    let generation = identity.generation();
    // A hit is the very token that verified before, so it needs no syntax check either (not
    // even as text); it counts only where the registration that accepted it applies.
    if let Some(hit) = caches.tokens.get_shared(token, generation, now, leeway) {
        if hit.registration_applies(org) {
            return Ok(hit);
        }
    }
    let token = std::str::from_utf8(token).map_err(|_| Reason::InvalidToken)?;
    if !jwt::is_token68(token) || token.len() > jwt::MAX_TOKEN_BYTES {
        return Err(Reason::InvalidToken);
    }
    let rejected_key = RejectedTokens::fingerprint(token, generation, org);
    if caches.rejected_tokens.contains(&rejected_key) {
        return Err(Reason::InvalidToken);
    }
    let requirements = TokenRequirements { audiences: &policy.token.audiences, leeway_seconds: leeway, now };
    match scope::verify_in_scope(token, identity, org, &requirements) {
        Ok(verified) => {
            caches.tokens.insert(token, generation, verified.clone());
            Ok(Arc::new(verified))
        }
        Err(error) => {
            if RejectedTokens::is_final(&error) {
                caches.rejected_tokens.insert(rejected_key);
            }
            Err(Reason::InvalidToken)
        }
    }
}

/// The token's identity in the namespace of the registration that verified it, as made
/// when it verified ([`scope::forwarded_token`]).
fn push_token_headers(set: &mut Vec<(&'static str, String)>, token: &VerifiedToken) {
    let made;
    let forwarded = match &token.forwarded {
        Some(forwarded) => forwarded,
        None => {
            made = scope::forwarded_token(token);
            &made
        }
    };
    set.push((header::TOKEN_OWNER, forwarded.owner.clone()));
    set.push((header::TOKEN_ISSUER, forwarded.issuer.clone()));
    if let Some(subject) = &forwarded.subject {
        set.push((header::TOKEN_SUBJECT, subject.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{StaticIdentity, StaticIdentityConfig};

    fn engine() -> Engine {
        Engine::from_json(
            br#"{"certificate_source": {"kind": "nginx_escaped", "header": "ssl-client-cert"},
                 "trusted_proxies": ["10.0.0.0/8"], "default_mode": "mtls"}"#,
        )
        .unwrap()
    }

    fn decide(headers: &[(&str, &str)], peer: &str) -> Outcome {
        let headers: Vec<RequestHeader<'_>> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        let identity = StaticIdentity::from_config(StaticIdentityConfig::default(), 1).unwrap();
        let request = RequestInput { headers: &headers, peer: peer.parse().ok(), now: 1_800_000_000, ..Default::default() };
        engine().evaluate(&request, Some(&identity))
    }

    #[test]
    fn a_request_without_exactly_one_path_is_refused() {
        assert_eq!(decide(&[], "10.1.2.3").reason(), Some(Reason::InvalidPath));
        assert_eq!(decide(&[(":path", "/a"), (":PATH", "/b")], "10.1.2.3").reason(), Some(Reason::InvalidPath));
        assert_eq!(decide(&[(":path", "/a")], "10.1.2.3").reason(), Some(Reason::CertificateMissing));
    }

    #[test]
    fn the_source_header_is_found_and_counted_in_any_spelling() {
        // One header, spelled as NGINX may pass it: read (and refused as malformed, since it
        // holds no certificate), from a trusted peer only.
        assert_eq!(decide(&[(":path", "/a"), ("SSL_Client_Cert", "x")], "10.1.2.3").reason(), Some(Reason::MalformedClientCert));
        assert_eq!(decide(&[(":path", "/a"), ("SSL_Client_Cert", "x")], "203.0.113.9").reason(), Some(Reason::CertificateMissing));
        // Two spellings of it are two headers.
        let two = [(":path", "/a"), ("ssl-client-cert", "x"), ("SSL-CLIENT-CERT", "y")];
        assert_eq!(decide(&two, "10.1.2.3").reason(), Some(Reason::MalformedClientCert));
        assert!(engine().is_identity_header("Ssl_Client_Cert"));
        assert!(!engine().is_identity_header("authorization"));
    }

    #[test]
    fn a_connection_digest_decides_alike_as_proxy_text_or_as_a_fingerprint() {
        let decide = |digest: Option<ConnectionDigest<'_>>| {
            let mut engine = Engine::from_json(br#"{"certificate_source": {"kind": "connection"}, "default_mode": "mtls",
                     "routes": [{"path": "/mtls/*", "mode": "mtls", "constraints": {"allow_card_authentication": true}}]}"#).unwrap();
            let identity = StaticIdentity::from_config(StaticIdentityConfig::default(), 1).unwrap();
            let headers: [RequestHeader<'_>; 1] = [(":path", b"/mtls/a")];
            let request = RequestInput { headers: &headers, connection_digest: digest, now: 1_800_000_000, ..Default::default() };
            engine.evaluate(&request, Some(&identity))
        };
        let fingerprint = Fingerprint::of_der(b"a certificate");
        let hex = fingerprint.to_hex();
        let upper = hex.to_uppercase();
        let by_fingerprint = decide(Some(ConnectionDigest::Fingerprint(fingerprint)));
        assert!(
            !matches!(by_fingerprint.reason(), Some(Reason::MalformedClientCert | Reason::CertificateMissing)),
            "{by_fingerprint:?}"
        );
        let Outcome::Allow { set, .. } = &by_fingerprint else { panic!("refused: {by_fingerprint:?}") };
        assert!(set.iter().any(|(name, value)| *name == header::FINGERPRINT && *value == hex), "{set:?}");
        for text in [hex.as_str(), upper.as_str()] {
            assert_eq!(decide(Some(ConnectionDigest::Hex(text))), by_fingerprint, "{text}");
            assert_eq!(decide(Some(ConnectionDigest::Hex(text).parsed())), by_fingerprint, "{text}");
        }
        // The proxy's text is read as strictly as before: 64 hex digits, nothing around them.
        let short = &hex[..63];
        let spaced = format!(" {}", &hex[..63]);
        let colons = fingerprint.0.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        let x5t = fingerprint.to_x5t_s256();
        for bad in [short, &format!("{hex}0"), &hex.replace(&hex[..1], "g"), &spaced, &colons, &x5t] {
            assert_eq!(decide(Some(ConnectionDigest::Hex(bad))).reason(), Some(Reason::MalformedClientCert), "{bad}");
            assert_eq!(ConnectionDigest::Hex(bad).parsed(), ConnectionDigest::Hex(bad), "{bad}");
        }
        for absent in [None, Some(ConnectionDigest::Hex(""))] {
            assert_eq!(decide(absent).reason(), Some(Reason::CertificateMissing), "{absent:?}");
        }
    }
}
