//! The decision: request facts + policy + identity data → allow (headers to set) or deny
//! (status, reason). Pure apart from two bounded caches the caller owns through [`Engine`].

pub mod config;
pub mod constraints;
pub mod extract;
pub mod mode;
pub mod outcome;
pub mod resolve;
pub mod trust;

use crate::certificate::CertificateFacts;
use crate::identity::IdentityData;
use crate::pop::cache::TokenCache;
use crate::pop::jwt::{self, TokenRequirements, VerifiedToken};
use config::{ConfigError, Policy, PolicyConfig, Route};
use extract::{Extractor, FactsCache};
use mode::Mode;
use outcome::{header, Outcome, Reason};
use std::net::IpAddr;
use std::sync::Arc;

/// Everything the decision reads about one request. Header names are lowercase, as the proxy
/// hands them over.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestInput<'a> {
    pub headers: &'a [(String, Vec<u8>)],
    /// The direct peer (`source.address`).
    pub peer: Option<IpAddr>,
    /// `connection.sha256_peer_certificate_digest`, hex; `None` or empty without mTLS.
    pub connection_digest: Option<&'a str>,
    /// `connection.subject_peer_certificate`, read only for the connection source.
    pub connection_subject: Option<&'a str>,
    pub connection_uri_sans: &'a [String],
    pub connection_dns_sans: &'a [String],
    /// Seconds since the Unix epoch.
    pub now: i64,
}

/// The headers the decision needs, found in one pass.
#[derive(Debug, Default)]
pub struct ScannedHeaders<'a> {
    pub path: &'a str,
    pub source_value: Option<&'a [u8]>,
    pub source_count: usize,
    pub signature_value: Option<&'a [u8]>,
    pub signature_count: usize,
    pub authorization: Option<&'a [u8]>,
    pub authorization_count: usize,
}

/// Headers through which a client could claim an identity. All are removed from every request,
/// allowed or not, whatever the configured source: only this filter speaks for identity.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-client-cert",
    "x-forwarded-client-cert-chain",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "x-forwarded-tls-client-cert-signature",
    "ssl-client-cert",
    "ssl-client-escaped-cert",
    "ssl-client-verify",
    "ssl-client-s-dn",
    "ssl-client-i-dn",
    "x-ssl-client-cert",
    "x-client-cert",
    "client-cert",
    "client-cert-chain",
    "xfcc",
];

/// The decision engine of one worker: the validated policy and its caches.
pub struct Engine {
    policy: Policy,
    facts_cache: FactsCache,
    token_cache: TokenCache,
}

impl Engine {
    pub fn new(config: PolicyConfig) -> Result<Self, ConfigError> {
        let policy = config.validate()?;
        Ok(Engine {
            facts_cache: FactsCache::new(policy.facts_cache_capacity),
            token_cache: TokenCache::new(policy.token.cache_capacity),
            policy,
        })
    }

    pub fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        let config: PolicyConfig =
            serde_json::from_slice(json).map_err(|e| ConfigError::new("policy", e.to_string()))?;
        Self::new(config)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether the caller must read `source.address` for this policy.
    pub fn needs_peer_address(&self) -> bool {
        !self.policy.trusted_proxies.is_empty()
    }

    /// Whether the caller must read `connection.sha256_peer_certificate_digest`.
    pub fn needs_connection_digest(&self) -> bool {
        matches!(
            self.policy.source,
            config::CertificateSource::Connection
                | config::CertificateSource::Xfcc { trust: config::XfccTrust::ThisProxy, .. }
        )
    }

    /// Whether the caller must read the connection's subject and SANs.
    pub fn needs_connection_details(&self) -> bool {
        self.policy.source == config::CertificateSource::Connection
    }

    /// True for every inbound header that must not reach the upstream: identity headers, the
    /// configured source and signature headers, and anything in this project's `x-dm-` space.
    pub fn is_identity_header(&self, name: &str) -> bool {
        name.starts_with(header::TRUSTED_PREFIX)
            || IDENTITY_HEADERS.contains(&name)
            || self.policy.source.header() == Some(name)
            || self.policy.signature.as_ref().is_some_and(|(h, _)| h == name)
    }

    fn scan<'a>(&self, headers: &'a [(String, Vec<u8>)]) -> ScannedHeaders<'a> {
        let mut scanned = ScannedHeaders::default();
        let source = self.policy.source.header();
        let signature = self.policy.signature.as_ref().map(|(h, _)| h.as_str());
        for (name, value) in headers {
            let name = name.as_str();
            if name == ":path" {
                scanned.path = std::str::from_utf8(value).unwrap_or("");
            } else if name == "authorization" {
                scanned.authorization = Some(value);
                scanned.authorization_count += 1;
            } else if Some(name) == source {
                scanned.source_value = Some(value);
                scanned.source_count += 1;
            } else if Some(name) == signature {
                scanned.signature_value = Some(value);
                scanned.signature_count += 1;
            }
        }
        scanned
    }

    fn peer_is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.policy.trusted_proxies.iter().any(|c| c.contains(ip)))
    }

    /// Decides one request. `identity` is `None` when no valid identity data is held (no
    /// snapshot yet, or the last one expired): every request is then refused with 503.
    pub fn evaluate(&mut self, request: &RequestInput<'_>, identity: Option<&dyn IdentityData>) -> Outcome {
        match self.evaluate_inner(request, identity) {
            Ok(set) => Outcome::Allow { set },
            Err(reason) => Outcome::deny(reason),
        }
    }

    fn evaluate_inner(
        &mut self,
        request: &RequestInput<'_>,
        identity: Option<&dyn IdentityData>,
    ) -> Result<Vec<(&'static str, String)>, Reason> {
        let scanned = self.scan(request.headers);
        let path = mode::route_path(scanned.path);
        let route_index = self.route_index(path);
        let mode = self.route(route_index).mode;

        // Certificates play no part in bearer mode: their headers are stripped, never parsed.
        let certificate = if mode == Mode::Bearer {
            None
        } else {
            let extractor = Extractor {
                source: &self.policy.source,
                trusted_peer: self.peer_is_trusted(request.peer),
                max_header_bytes: self.policy.max_header_bytes,
                signature: self.policy.signature.as_ref().map(|(_, k)| k),
            };
            extractor.extract(request, &scanned, &mut self.facts_cache)?
        };
        let identity = identity.ok_or(Reason::IdentityUnavailable)?;
        let route = self.route(route_index);
        let binding_required = route.binding_required(path);

        let mut set = Vec::with_capacity(9);
        match route.mode {
            Mode::Bearer => {
                let token = self.verified_token(&scanned, identity, request.now)?;
                push_token_headers(&mut set, &token);
            }
            Mode::Mtls => {
                let facts = certificate.ok_or(Reason::CertificateMissing)?;
                resolve::certificate_identity(&facts, self.route(route_index), identity, request.now, &mut set)?;
            }
            Mode::BearerPlusMtlsOptional | Mode::BearerPlusMtlsRequired => {
                if binding_required && certificate.is_none() {
                    return Err(Reason::CertificateMissing);
                }
                if let Some(facts) = &certificate {
                    resolve::certificate_identity(facts, self.route(route_index), identity, request.now, &mut set)?;
                }
                let token = self.verified_token(&scanned, identity, request.now)?;
                if binding_required {
                    if let Some(facts) = &certificate {
                        if !jwt::cnf_matches(&token, &facts.fingerprint) {
                            return Err(Reason::SenderBindingMismatch);
                        }
                    }
                }
                push_token_headers(&mut set, &token);
            }
        }
        Ok(set)
    }

    fn route_index(&self, path: &str) -> Option<usize> {
        self.policy.routes.iter().position(|r| r.pattern.as_ref().is_some_and(|p| p.matches(path)))
    }

    fn route(&self, index: Option<usize>) -> &Route {
        index.and_then(|i| self.policy.routes.get(i)).unwrap_or(&self.policy.default_route)
    }

    fn verified_token(
        &mut self,
        scanned: &ScannedHeaders<'_>,
        identity: &dyn IdentityData,
        now: i64,
    ) -> Result<Arc<VerifiedToken>, Reason> {
        let raw = match (scanned.authorization_count, scanned.authorization) {
            (0, _) | (_, None) => return Err(Reason::TokenMissing),
            (1, Some(raw)) => raw,
            _ => return Err(Reason::InvalidToken),
        };
        let header_text = std::str::from_utf8(raw).map_err(|_| Reason::InvalidToken)?;
        let token = jwt::bearer_credentials(header_text).ok_or(Reason::InvalidToken)?;
        let leeway = self.policy.token.leeway_seconds;
        let generation = identity.generation();
        // A hit is the very token that verified before, so it needs no syntax check either.
        if let Some(hit) = self.token_cache.get_shared(token, generation, now, leeway) {
            return Ok(hit);
        }
        if !jwt::is_token68(token) {
            return Err(Reason::InvalidToken);
        }
        let requirements = TokenRequirements { audiences: &self.policy.token.audiences, leeway_seconds: leeway, now };
        let verified = jwt::verify(token, identity, &requirements).map_err(|_| Reason::InvalidToken)?;
        self.token_cache.insert(token, generation, verified.clone());
        Ok(Arc::new(verified))
    }
}

fn push_token_headers(set: &mut Vec<(&'static str, String)>, token: &VerifiedToken) {
    set.push((header::TOKEN_ISSUER, resolve::header_safe(&token.issuer)));
    if let Some(subject) = &token.subject {
        set.push((header::TOKEN_SUBJECT, resolve::header_safe(subject)));
    }
}

/// The certificate facts used for a request, for callers that report them (audit logs).
pub type SharedFacts = Arc<CertificateFacts>;
