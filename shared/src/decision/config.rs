//! The route policy as operators write it (JSON in the plugin configuration), and its
//! validation. Every refusal names the member at fault.

use super::constraints::Constraints;
use super::mode::{Mode, PathPattern};
use super::trust::Cidr;
use crate::forwarded_signature::ForwardedSignatureKey;
use crate::source::DEFAULT_MAX_HEADER_BYTES;
use serde::Deserialize;

/// Where the client certificate comes from. Exactly one per deployment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CertificateSource {
    /// Envoy's `x-forwarded-client-cert`.
    Xfcc {
        trust: XfccTrust,
        #[serde(default)]
        hop: XfccHop,
    },
    /// The connection's own properties (`connection.sha256_peer_certificate_digest`, …),
    /// for a filter in the Envoy that terminated TLS. Digest, subject and SANs only.
    Connection,
    /// nginx `$ssl_client_escaped_cert` (URL-encoded PEM).
    NginxEscaped { header: String },
    /// nginx's older `$ssl_client_cert` (tab-folded PEM).
    NginxLegacy { header: String },
    /// Traefik `passTLSClientCert` (`X-Forwarded-Tls-Client-Cert`).
    Traefik { header: String },
    /// RFC 9440 `Client-Cert`.
    Rfc9440 { header: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XfccTrust {
    /// This Envoy terminated TLS and set XFCC with `SANITIZE_SET`; the element is cross-checked
    /// against `connection.sha256_peer_certificate_digest`.
    ThisProxy,
    /// An upstream proxy set XFCC; believed only from `trusted_proxies`.
    TrustedProxies,
}

/// Which XFCC element names the client: the nearest hop's (the last), or the first one
/// (the edge's, when inner proxies append their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XfccHop {
    #[default]
    Nearest,
    First,
}

impl CertificateSource {
    pub fn header(&self) -> Option<&str> {
        match self {
            CertificateSource::Xfcc { .. } => Some("x-forwarded-client-cert"),
            CertificateSource::Connection => None,
            CertificateSource::NginxEscaped { header }
            | CertificateSource::NginxLegacy { header }
            | CertificateSource::Traefik { header }
            | CertificateSource::Rfc9440 { header } => Some(header),
        }
    }

    fn needs_trusted_proxies(&self) -> bool {
        !matches!(
            self,
            CertificateSource::Connection | CertificateSource::Xfcc { trust: XfccTrust::ThisProxy, .. }
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedSignatureConfig {
    /// Header carrying the front tier's HMAC-SHA256 over the certificate header.
    pub header: String,
    /// The shared secret, standard base64, at least 32 bytes.
    pub secret_base64: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `aud` values this deployment accepts. Required when any route verifies tokens.
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "default_token_leeway")]
    pub leeway_seconds: u64,
    #[serde(default = "default_token_cache")]
    pub cache_capacity: usize,
}

fn default_token_leeway() -> u64 {
    60
}

fn default_token_cache() -> usize {
    4096
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig { audiences: Vec::new(), leeway_seconds: default_token_leeway(), cache_capacity: default_token_cache() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Exact path, or a prefix ending in `*`.
    pub path: String,
    pub mode: Mode,
    /// In `bearer_plus_mtls_optional`: sub-paths where the token must be bound.
    #[serde(default)]
    pub binding_required_paths: Vec<String>,
    /// Overrides the policy-wide setting.
    #[serde(default)]
    pub require_enrolled_card: Option<bool>,
    /// Replaces the policy-wide constraints on this route.
    #[serde(default)]
    pub constraints: Option<Constraints>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub certificate_source: CertificateSource,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    #[serde(default)]
    pub forwarded_signature: Option<ForwardedSignatureConfig>,
    /// The mode of every path no route matches. Required: there is no implicit default.
    pub default_mode: Mode,
    #[serde(default)]
    pub binding_required_paths: Vec<String>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub require_enrolled_card: bool,
    #[serde(default)]
    pub constraints: Constraints,
    #[serde(default)]
    pub token: TokenConfig,
    #[serde(default = "default_facts_cache")]
    pub facts_cache_capacity: usize,
}

fn default_max_header() -> usize {
    DEFAULT_MAX_HEADER_BYTES
}

fn default_facts_cache() -> usize {
    1024
}

/// A refused configuration: which member, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { field: field.into(), problem: problem.into() }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// The largest header cap an operator may configure: Envoy's own default request-header limit
/// is 60 KiB, so a larger value could never be reached.
const MAX_CONFIGURABLE_HEADER_BYTES: usize = 96 * 1024;

/// A route, validated.
#[derive(Debug, Clone)]
pub struct Route {
    pub pattern: Option<PathPattern>,
    pub mode: Mode,
    pub binding_required_paths: Vec<PathPattern>,
    pub require_enrolled_card: bool,
    pub constraints: Constraints,
}

impl Route {
    pub fn binding_required(&self, path: &str) -> bool {
        match self.mode {
            Mode::BearerPlusMtlsRequired => true,
            Mode::BearerPlusMtlsOptional => self.binding_required_paths.iter().any(|p| p.matches(path)),
            Mode::Bearer | Mode::Mtls => false,
        }
    }

    pub fn verifies_tokens(&self) -> bool {
        self.mode != Mode::Mtls
    }
}

/// The validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub source: CertificateSource,
    pub trusted_proxies: Vec<Cidr>,
    pub max_header_bytes: usize,
    pub signature: Option<(String, ForwardedSignatureKey)>,
    pub routes: Vec<Route>,
    pub default_route: Route,
    pub token: TokenConfig,
    pub facts_cache_capacity: usize,
}

fn patterns(field: &str, list: &[String]) -> Result<Vec<PathPattern>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| PathPattern::parse(p).map_err(|e| ConfigError::new(format!("{field}[{i}]"), e)))
        .collect()
}

fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(ConfigError::new(field, format!("{name:?} is not a valid header name")));
    }
    Ok(name.to_ascii_lowercase())
}

fn check_binding_paths(field: &str, mode: Mode, paths: &[String]) -> Result<(), ConfigError> {
    if !paths.is_empty() && mode != Mode::BearerPlusMtlsOptional {
        return Err(ConfigError::new(
            field,
            format!("binding_required_paths only apply to bearer_plus_mtls_optional, not {}", mode.as_str()),
        ));
    }
    Ok(())
}

impl PolicyConfig {
    pub fn validate(self) -> Result<Policy, ConfigError> {
        let mut source = self.certificate_source;
        match &mut source {
            CertificateSource::NginxEscaped { header }
            | CertificateSource::NginxLegacy { header }
            | CertificateSource::Traefik { header }
            | CertificateSource::Rfc9440 { header } => {
                *header = header_name("certificate_source.header", header)?;
            }
            CertificateSource::Xfcc { .. } | CertificateSource::Connection => {}
        }
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, c)| Cidr::parse(c).map_err(|e| ConfigError::new(format!("trusted_proxies[{i}]"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        if source.needs_trusted_proxies() && trusted_proxies.is_empty() {
            return Err(ConfigError::new(
                "trusted_proxies",
                "a forwarded certificate header is believed only from listed proxies; list at least one CIDR",
            ));
        }
        if self.max_header_bytes == 0 || self.max_header_bytes > MAX_CONFIGURABLE_HEADER_BYTES {
            return Err(ConfigError::new(
                "max_header_bytes",
                format!("must be between 1 and {MAX_CONFIGURABLE_HEADER_BYTES}"),
            ));
        }
        let signature = match self.forwarded_signature {
            None => None,
            Some(sig) => {
                let header = header_name("forwarded_signature.header", &sig.header)?;
                let secret = crate::encoding::base64_decode(sig.secret_base64.as_bytes()).ok_or_else(|| {
                    ConfigError::new("forwarded_signature.secret_base64", "not standard base64")
                })?;
                let key = ForwardedSignatureKey::new(&secret)
                    .map_err(|e| ConfigError::new("forwarded_signature.secret_base64", e.to_string()))?;
                Some((header, key))
            }
        };
        if signature.is_some() && source.header().is_none() {
            return Err(ConfigError::new("forwarded_signature", "the connection source has no header to sign"));
        }
        let constraints = self.constraints.normalized();
        check_binding_paths("binding_required_paths", self.default_mode, &self.binding_required_paths)?;
        let default_route = Route {
            pattern: None,
            mode: self.default_mode,
            binding_required_paths: patterns("binding_required_paths", &self.binding_required_paths)?,
            require_enrolled_card: self.require_enrolled_card,
            constraints: constraints.clone(),
        };
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, r) in self.routes.into_iter().enumerate() {
            let field = format!("routes[{i}]");
            check_binding_paths(&format!("{field}.binding_required_paths"), r.mode, &r.binding_required_paths)?;
            routes.push(Route {
                pattern: Some(PathPattern::parse(&r.path).map_err(|e| ConfigError::new(format!("{field}.path"), e))?),
                mode: r.mode,
                binding_required_paths: patterns(&format!("{field}.binding_required_paths"), &r.binding_required_paths)?,
                require_enrolled_card: r.require_enrolled_card.unwrap_or(self.require_enrolled_card),
                constraints: r.constraints.map(Constraints::normalized).unwrap_or_else(|| constraints.clone()),
            });
        }
        let verifies_tokens = default_route.verifies_tokens() || routes.iter().any(Route::verifies_tokens);
        if verifies_tokens && self.token.audiences.is_empty() {
            return Err(ConfigError::new(
                "token.audiences",
                "a route verifies bearer tokens; list the audiences this deployment accepts",
            ));
        }
        Ok(Policy {
            source,
            trusted_proxies,
            max_header_bytes: self.max_header_bytes,
            signature,
            routes,
            default_route,
            token: self.token,
            facts_cache_capacity: self.facts_cache_capacity,
        })
    }
}

impl Policy {
    /// The first route whose pattern matches, else the default.
    pub fn route_for(&self, path: &str) -> &Route {
        self.routes
            .iter()
            .find(|r| r.pattern.as_ref().is_some_and(|p| p.matches(path)))
            .unwrap_or(&self.default_route)
    }
}
