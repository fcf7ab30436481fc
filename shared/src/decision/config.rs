//! The route policy as operators write it (JSON in the plugin configuration), and its
//! validation. Every refusal names the member at fault.

use super::revocation::RevocationPolicy;
pub use super::config_error::ConfigError;
use super::constraints::{Constraints, MAX_LEEWAY_SECONDS};
use super::credentials::{CredentialCarriers, CredentialCarriersConfig};
use super::headers::{configured_name, fold_name, StripList};
use super::mode::{Mode, PathMatching, PathPattern};
use super::path::folded_spellings;
use super::trust::{Cidr, PeerProperty};
use crate::certificate::CardFact;
use crate::forwarded_signature::ForwardedSignatureKey;
use crate::source::xfcc::MAX_XFCC_ELEMENTS;
use crate::source::DEFAULT_MAX_HEADER_BYTES;
use serde::Deserialize;

/// Where the client certificate comes from. Exactly one per deployment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CertificateSource {
    /// Envoy's `x-forwarded-client-cert`.
    Xfcc {
        trust: XfccTrust,
        /// How many elements the topology writes: one per mTLS hop that forwards the header
        /// (`SANITIZE_SET` at the edge writes one; each `APPEND_FORWARD` hop after it adds
        /// one). The client's element is the first. A value with any other count is refused,
        /// so a certificate whose unquoted `URI=` or `DNS=` value forges an element (`,Hash=…`)
        /// cannot be taken for the client's. `this_proxy` allows only 1.
        #[serde(default = "one_element")]
        elements: usize,
        /// When set, the client's element must carry one of these `By=` values: the edge
        /// proxy's own certificate URI SAN.
        #[serde(default)]
        by: Vec<String>,
    },
    /// The connection's own properties: `connection.sha256_peer_certificate_digest` and
    /// `connection.peer_certificate`, for a filter in the Envoy that terminated TLS.
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

fn one_element() -> usize {
    1
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

/// The XFCC header name, folded.
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

impl CertificateSource {
    /// The header the certificate arrives in (folded), if any.
    pub fn header(&self) -> Option<&str> {
        match self {
            CertificateSource::Xfcc { .. } => Some(XFCC_HEADER),
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

/// Which proxy runs the filter: it decides which property names the TCP peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyKind {
    /// `source.address` (`ip:port`); an address Envoy took from a header carries port 0 and
    /// is never believed.
    #[default]
    Envoy,
    /// ngx_wasm_module: `ngx.realip_remote_addr`, the connection's address even where the
    /// realip module rewrote `$remote_addr`.
    Nginx,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedSignatureConfig {
    /// Header carrying the front tier's HMAC-SHA256 over a timestamp and the certificate
    /// header: `t=<unix seconds>,sha256=<base64>`.
    pub header: String,
    /// The shared secret, standard base64, at least 32 bytes.
    pub secret_base64: String,
    /// How far the signature's timestamp may be from the proxy's clock, either way.
    #[serde(default = "default_signature_age")]
    pub max_age_seconds: u32,
}

fn default_signature_age() -> u32 {
    60
}

/// Largest `forwarded_signature.max_age_seconds`: a wider window is a longer replay window.
pub const MAX_SIGNATURE_AGE_SECONDS: u32 = 600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `aud` values this deployment accepts. Required when any route verifies tokens.
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "default_token_leeway")]
    pub leeway_seconds: u64,
    /// Verified tokens kept (0 turns the cache off).
    #[serde(default = "default_token_cache")]
    pub cache_capacity: usize,
    /// Refused tokens remembered, so that a token replayed after failing costs a lookup
    /// rather than another signature check (0 turns this off).
    #[serde(default = "default_rejected_cache")]
    pub rejected_cache_capacity: usize,
}

fn default_token_leeway() -> u64 {
    60
}

fn default_token_cache() -> usize {
    4096
}

fn default_rejected_cache() -> usize {
    4096
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            audiences: Vec::new(),
            leeway_seconds: default_token_leeway(),
            cache_capacity: default_token_cache(),
            rejected_cache_capacity: default_rejected_cache(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Exact path, or a prefix ending in `*`; written in canonical form.
    pub path: String,
    pub mode: Mode,
    /// In `bearer_plus_mtls_optional`: sub-paths where the token must be bound to the
    /// certificate (sender binding, RFC 8705). Also read under its former name,
    /// `binding_required_paths`; giving both is refused.
    #[serde(default, alias = "binding_required_paths")]
    pub sender_binding_required_paths: Vec<String>,
    /// Overrides the policy-wide setting.
    #[serde(default)]
    pub require_enrolled_card: Option<bool>,
    /// Replaces the policy-wide constraints on this route.
    #[serde(default)]
    pub constraints: Option<Constraints>,
    /// Overrides the policy-wide `path_matching`.
    #[serde(default)]
    pub path_matching: Option<PathMatching>,
    /// Replaces the policy-wide `forward_card_facts` on this route.
    #[serde(default)]
    pub forward_card_facts: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub certificate_source: CertificateSource,
    #[serde(default)]
    pub proxy: ProxyKind,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    #[serde(default)]
    pub forwarded_signature: Option<ForwardedSignatureConfig>,
    /// Headers removed from every request beside the built-in identity headers: exact names,
    /// or prefixes written with a trailing `*`.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// Query parameters (beside `access_token`), headers and cookies that carry credentials
    /// an upstream may read: a request carrying one is refused ([`super::credentials`]).
    #[serde(default)]
    pub credential_carriers: CredentialCarriersConfig,
    /// How routes meet request paths: `folded` (every spelling an upstream may route to the
    /// same handler; the default) or `exact`. Routes may override it.
    #[serde(default)]
    pub path_matching: PathMatching,
    /// The mode of every path no route matches. Required: there is no implicit default.
    pub default_mode: Mode,
    /// Where the default mode is `bearer_plus_mtls_optional`: as a route's. Also read under its
    /// former name, `binding_required_paths`.
    #[serde(default, alias = "binding_required_paths")]
    pub sender_binding_required_paths: Vec<String>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub require_enrolled_card: bool,
    #[serde(default)]
    pub constraints: Constraints,
    /// Facts of the card forwarded upstream, each in its own `x-dm-smartcard-…` header
    /// ([`CardFact`]'s names: `upn`, `uuid`, `fascn_pi`, …), beside the identity headers.
    #[serde(default)]
    pub forward_card_facts: Vec<String>,
    #[serde(default)]
    pub token: TokenConfig,
    #[serde(default)]
    pub revocation: RevocationPolicy,
    /// Certificates whose facts are kept, at most (0 turns the cache off).
    #[serde(default = "default_facts_cache")]
    pub facts_cache_capacity: usize,
    /// Bytes the kept facts may take, at most.
    #[serde(default = "default_facts_cache_bytes")]
    pub facts_cache_bytes: usize,
}

fn default_max_header() -> usize {
    DEFAULT_MAX_HEADER_BYTES
}

fn default_facts_cache() -> usize {
    16 * 1024
}

/// The default of `facts_cache_bytes`: 16 MiB, about 13,900 PIV certificates' facts.
pub const DEFAULT_FACTS_CACHE_BYTES: usize = 16 * 1024 * 1024;

fn default_facts_cache_bytes() -> usize {
    DEFAULT_FACTS_CACHE_BYTES
}

/// The largest header cap an operator may configure: Envoy's own default request-header limit
/// is 60 KiB, so a larger value could never be reached.
const MAX_CONFIGURABLE_HEADER_BYTES: usize = 96 * 1024;

/// A route, validated.
#[derive(Debug, Clone)]
pub struct Route {
    pub pattern: Option<PathPattern>,
    pub mode: Mode,
    pub sender_binding_required_paths: Vec<PathPattern>,
    pub require_enrolled_card: bool,
    pub constraints: Constraints,
    pub path_matching: PathMatching,
    /// Set, in this order, for a certificate that resolved on this route.
    pub forward_card_facts: Vec<CardFact>,
}

/// The facts `names` lists, each known and listed once; `field` names the list in errors.
fn card_facts(field: &str, names: &[String]) -> Result<Vec<CardFact>, ConfigError> {
    let mut facts: Vec<CardFact> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let Some(fact) = CardFact::from_name(name) else {
            let known: Vec<&str> = CardFact::ALL.iter().map(|f| f.name()).collect();
            return Err(ConfigError::new(format!("{field}[{i}]"), format!("{name:?} is not a card fact; one of {}", known.join(", "))));
        };
        if let Some(earlier) = facts.iter().position(|f| *f == fact) {
            return Err(ConfigError::new(format!("{field}[{i}]"), format!("listed already as {field}[{earlier}]")));
        }
        facts.push(fact);
    }
    Ok(facts)
}

/// One spelling of a request's path: the canonical path as the client sent it, or one of its
/// folds ([`folded_spellings`]), which only routes that match folded spellings see.
#[derive(Debug, Clone, Copy)]
pub enum Spelling<'a> {
    Canonical(&'a str),
    Folded(&'a str),
}

impl Route {
    /// Whether this route's pattern matches `spelling`; `None` for the default route.
    fn matches(&self, spelling: Spelling<'_>) -> Option<bool> {
        let pattern = self.pattern.as_ref()?;
        Some(match spelling {
            Spelling::Canonical(path) => pattern.matches(path),
            Spelling::Folded(path) => self.path_matching == PathMatching::Folded && pattern.matches_folded(path),
        })
    }

    /// Whether the token must be bound to the certificate on `spelling`.
    pub fn sender_binding_required(&self, spelling: Spelling<'_>) -> bool {
        match self.mode {
            Mode::BearerPlusMtlsRequired => true,
            Mode::BearerPlusMtlsOptional => self.sender_binding_required_paths.iter().any(|p| match spelling {
                Spelling::Canonical(path) => p.matches(path),
                Spelling::Folded(path) => self.path_matching == PathMatching::Folded && p.matches_folded(path),
            }),
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
    pub proxy: ProxyKind,
    pub trusted_proxies: Vec<Cidr>,
    pub max_header_bytes: usize,
    pub signature: Option<Signature>,
    pub strip: StripList,
    pub credential_carriers: CredentialCarriers,
    pub routes: Vec<Route>,
    pub default_route: Route,
    pub token: TokenConfig,
    pub revocation: RevocationPolicy,
    pub facts_cache_capacity: usize,
    pub facts_cache_bytes: usize,
}

/// The front tier's signature over the forwarded certificate header, validated.
#[derive(Debug, Clone)]
pub struct Signature {
    /// Folded header name.
    pub header: String,
    pub key: ForwardedSignatureKey,
    pub max_age_seconds: u32,
}

impl PolicyConfig {
    pub fn validate(self) -> Result<Policy, ConfigError> {
        let mut source = self.certificate_source;
        match &mut source {
            CertificateSource::NginxEscaped { header }
            | CertificateSource::NginxLegacy { header }
            | CertificateSource::Traefik { header }
            | CertificateSource::Rfc9440 { header } => {
                *header = configured_name("certificate_source.header", header)?;
            }
            CertificateSource::Xfcc { trust, elements, by } => {
                if *elements == 0 || *elements > MAX_XFCC_ELEMENTS {
                    return Err(ConfigError::new(
                        "certificate_source.elements",
                        format!("must be between 1 and {MAX_XFCC_ELEMENTS}"),
                    ));
                }
                if *trust == XfccTrust::ThisProxy && *elements != 1 {
                    return Err(ConfigError::new(
                        "certificate_source.elements",
                        "this_proxy takes Envoy's SANITIZE_SET element, which is always exactly one",
                    ));
                }
                if let Some(i) = by.iter().position(|b| b.is_empty() || b.bytes().any(|c| matches!(c, b',' | b';' | b'"') || !(0x21..=0x7e).contains(&c))) {
                    return Err(ConfigError::new(
                        format!("certificate_source.by[{i}]"),
                        "must be a non-empty URI without ',', ';', '\"' or spaces",
                    ));
                }
            }
            CertificateSource::Connection => {}
        }
        let proxy = self.proxy;
        if proxy == ProxyKind::Nginx && !source.needs_trusted_proxies() {
            return Err(ConfigError::new(
                "certificate_source",
                "under nginx the connection's certificate properties are not available; use a forwarded-header source",
            ));
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
                let header = configured_name("forwarded_signature.header", &sig.header)?;
                let secret = crate::encoding::base64_decode(sig.secret_base64.as_bytes()).ok_or_else(|| {
                    ConfigError::new("forwarded_signature.secret_base64", "not standard base64")
                })?;
                let key = ForwardedSignatureKey::new(&secret)
                    .map_err(|e| ConfigError::new("forwarded_signature.secret_base64", e.to_string()))?;
                if sig.max_age_seconds == 0 || sig.max_age_seconds > MAX_SIGNATURE_AGE_SECONDS {
                    return Err(ConfigError::new(
                        "forwarded_signature.max_age_seconds",
                        format!("must be between 1 and {MAX_SIGNATURE_AGE_SECONDS}"),
                    ));
                }
                Some(Signature { header, key, max_age_seconds: sig.max_age_seconds })
            }
        };
        if let (Some(sig), Some(header)) = (&signature, source.header()) {
            if sig.header == header {
                return Err(ConfigError::new("forwarded_signature.header", "must differ from the certificate header"));
            }
        }
        if signature.is_some() && source.header().is_none() {
            return Err(ConfigError::new("forwarded_signature", "the connection source has no header to sign"));
        }
        let mut read_headers: Vec<&str> = source.header().into_iter().collect();
        if let Some(sig) = &signature {
            read_headers.push(&sig.header);
        }
        let strip = StripList::new("strip_headers", &self.strip_headers, &read_headers)?;
        let strips_authorization = |entry: &String| match entry.strip_suffix('*') {
            Some(prefix) => "authorization".starts_with(&fold_name(prefix)),
            None => fold_name(entry) == "authorization",
        };
        if let Some(i) = self.strip_headers.iter().position(strips_authorization) {
            return Err(ConfigError::new(format!("strip_headers[{i}]"), "the bearer token's header cannot be stripped"));
        }
        let credential_carriers = self.credential_carriers.validated("credential_carriers")?;
        if self.token.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(ConfigError::new("token.leeway_seconds", format!("at most {MAX_LEEWAY_SECONDS}")));
        }
        let matching = self.path_matching;
        let constraints = self.constraints.validated("constraints")?;
        check_sender_binding_paths("sender_binding_required_paths", self.default_mode, &self.sender_binding_required_paths)?;
        let forward_card_facts = card_facts("forward_card_facts", &self.forward_card_facts)?;
        let default_route = Route {
            pattern: None,
            mode: self.default_mode,
            sender_binding_required_paths: patterns("sender_binding_required_paths", &self.sender_binding_required_paths)?,
            require_enrolled_card: self.require_enrolled_card,
            constraints: constraints.clone(),
            path_matching: matching,
            forward_card_facts: forward_card_facts.clone(),
        };
        let mut routes: Vec<Route> = Vec::with_capacity(self.routes.len());
        for (i, r) in self.routes.into_iter().enumerate() {
            let field = format!("routes[{i}]");
            check_sender_binding_paths(&format!("{field}.sender_binding_required_paths"), r.mode, &r.sender_binding_required_paths)?;
            let pattern = PathPattern::parse(&r.path).map_err(|e| ConfigError::new(format!("{field}.path"), e))?;
            let path_matching = r.path_matching.unwrap_or(matching);
            // First match wins: a route whose every path an earlier one matches would never
            // apply, and a stricter mode written there would silently not be enforced.
            let covered = |route: &Route| {
                let folded = route.path_matching == PathMatching::Folded && path_matching == PathMatching::Folded;
                route.pattern.as_ref().is_some_and(|p| p.covers(&pattern, folded))
            };
            if let Some(earlier) = routes.iter().position(covered) {
                return Err(ConfigError::new(
                    format!("{field}.path"),
                    format!("never chosen: routes[{earlier}].path matches every path it does, and comes first"),
                ));
            }
            let constraints = match r.constraints {
                Some(c) => c.validated(&format!("{field}.constraints"))?,
                None => constraints.clone(),
            };
            let route_facts = match &r.forward_card_facts {
                Some(names) => card_facts(&format!("{field}.forward_card_facts"), names)?,
                None => forward_card_facts.clone(),
            };
            routes.push(Route {
                pattern: Some(pattern),
                mode: r.mode,
                sender_binding_required_paths: patterns(&format!("{field}.sender_binding_required_paths"), &r.sender_binding_required_paths)?,
                require_enrolled_card: r.require_enrolled_card.unwrap_or(self.require_enrolled_card),
                constraints,
                path_matching,
                forward_card_facts: route_facts,
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
            proxy,
            trusted_proxies,
            max_header_bytes: self.max_header_bytes,
            signature,
            strip,
            credential_carriers,
            routes,
            default_route,
            token: self.token,
            revocation: self.revocation,
            facts_cache_capacity: self.facts_cache_capacity,
            facts_cache_bytes: self.facts_cache_bytes,
        })
    }
}

fn patterns(field: &str, list: &[String]) -> Result<Vec<PathPattern>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| PathPattern::parse(p).map_err(|e| ConfigError::new(format!("{field}[{i}]"), e)))
        .collect()
}

fn check_sender_binding_paths(field: &str, mode: Mode, paths: &[String]) -> Result<(), ConfigError> {
    if !paths.is_empty() && mode != Mode::BearerPlusMtlsOptional {
        return Err(ConfigError::new(
            field,
            format!("sender_binding_required_paths only apply to bearer_plus_mtls_optional, not {}", mode.as_str()),
        ));
    }
    Ok(())
}

impl Policy {
    /// The first route whose pattern matches `spelling`, else the default.
    pub fn route_for(&self, spelling: Spelling<'_>) -> &Route {
        self.routes.iter().find(|r| r.matches(spelling) == Some(true)).unwrap_or(&self.default_route)
    }

    /// Every route that could apply to the canonical `path`, with whether it requires sender binding
    /// there: the route of the path as sent first, then the other routes of its folded
    /// spellings. A request must satisfy each (the stricter wins), so a spelling the upstream
    /// routes to a stricter handler never gets a weaker route's decision.
    pub fn routes_for(&self, path: &str) -> Vec<(&Route, bool)> {
        let first = self.route_for(Spelling::Canonical(path));
        let mut routes = vec![(first, first.sender_binding_required(Spelling::Canonical(path)))];
        // A route that matches exactly takes its paths as spelled: the upstream said so.
        if first.path_matching == PathMatching::Exact {
            return routes;
        }
        for folded in folded_spellings(path) {
            let spelling = Spelling::Folded(&folded);
            let route = self.route_for(spelling);
            let sender_binding_required = route.sender_binding_required(spelling);
            // One route twice is one route, sender binding required where either spelling requires it.
            match routes.iter_mut().find(|(r, _)| std::ptr::eq(*r, route)) {
                Some((_, required)) => *required |= sender_binding_required,
                None => routes.push((route, sender_binding_required)),
            }
        }
        routes
    }

    /// The property naming the TCP peer, when the policy believes forwarded headers.
    pub fn peer_property(&self) -> Option<PeerProperty> {
        if self.trusted_proxies.is_empty() {
            return None;
        }
        Some(match self.proxy {
            ProxyKind::Envoy => PeerProperty::EnvoySourceAddress,
            ProxyKind::Nginx => PeerProperty::NginxRealipRemoteAddr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused_field(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut policy = json!({
            "certificate_source": {"kind": "xfcc", "trust": "trusted_proxies"},
            "trusted_proxies": ["10.0.0.0/8"],
            "default_mode": "mtls",
            "routes": [{"path": "/a/*", "mode": "mtls"}]
        });
        edit(&mut policy);
        match serde_json::from_value::<PolicyConfig>(policy).map_err(|e| e.to_string()).map(PolicyConfig::validate) {
            Ok(Ok(_)) => "accepted".into(),
            Ok(Err(e)) => e.field,
            Err(e) => format!("json: {e}"),
        }
    }

    /// `sender_binding_required_paths` was `binding_required_paths`: a configuration written
    /// so still reads alike, and one naming both is refused rather than one silently winning.
    #[test]
    fn the_former_name_of_sender_binding_paths_still_reads() {
        let policy = |route: serde_json::Value| {
            serde_json::from_value::<PolicyConfig>(json!({
                "certificate_source": {"kind": "xfcc", "trust": "this_proxy"},
                "default_mode": "bearer",
                "token": {"audiences": ["a"]},
                "routes": [route]
            }))
            .map_err(|e| e.to_string())
            .map(|p| p.validate().unwrap().routes_for("/api/execute")[0].1)
        };
        let route = |member: &str| json!({"path": "/api/*", "mode": "bearer_plus_mtls_optional", member: ["/api/execute*"]});
        assert_eq!(policy(route("sender_binding_required_paths")), Ok(true));
        assert_eq!(policy(route("binding_required_paths")), Ok(true));
        let mut both = route("sender_binding_required_paths");
        both["binding_required_paths"] = json!(["/api/other"]);
        let refused = policy(both).unwrap_err();
        assert!(refused.contains("duplicate field `sender_binding_required_paths`"), "{refused}");
    }

    #[test]
    fn every_route_a_spelling_could_reach_applies() {
        let policy: PolicyConfig = serde_json::from_value(json!({
            "certificate_source": {"kind": "xfcc", "trust": "this_proxy"},
            "default_mode": "bearer_plus_mtls_required",
            "token": {"audiences": ["a"]},
            "routes": [
                {"path": "/public/*", "mode": "bearer"},
                {"path": "/mtls/*", "mode": "mtls"},
                {"path": "/api/*", "mode": "bearer_plus_mtls_optional", "sender_binding_required_paths": ["/api/execute*"]},
                {"path": "/Exact/*", "mode": "mtls", "path_matching": "exact"}
            ]
        }))
        .unwrap();
        let policy = policy.validate().unwrap();
        let modes = |path: &str| -> Vec<(&'static str, bool)> {
            policy.routes_for(path).iter().map(|(route, bound)| (route.mode.as_str(), *bound)).collect()
        };
        assert_eq!(modes("/public/x"), [("bearer", false)]);
        assert_eq!(modes("/api/execute"), [("bearer_plus_mtls_optional", true)]);
        // The path as sent reaches the default route; its lowercase the mtls route: both apply.
        assert_eq!(modes("/MTLS/x"), [("bearer_plus_mtls_required", true), ("mtls", false)]);
        assert_eq!(modes("/Public/x"), [("bearer_plus_mtls_required", true), ("bearer", false)]);
        // One route, sender binding required where a fold of the path requires it.
        assert_eq!(modes("/api/execute.json"), [("bearer_plus_mtls_optional", true)]);
        assert_eq!(modes("/api/execute."), [("bearer_plus_mtls_optional", true)]);
        assert_eq!(modes("/API/Execute"), [("bearer_plus_mtls_required", true), ("bearer_plus_mtls_optional", true)]);
        assert_eq!(modes("/public/x.json"), [("bearer", false)]);
        // An exact route sees the path as sent only.
        assert_eq!(modes("/Exact/x"), [("mtls", false)]);
        assert_eq!(modes("/exact/x"), [("bearer_plus_mtls_required", true)]);
        assert_eq!(modes("/EXACT/x"), [("bearer_plus_mtls_required", true)]);
    }

    #[test]
    fn exact_matching_policy_wide_folds_nothing() {
        let policy: PolicyConfig = serde_json::from_value(json!({
            "certificate_source": {"kind": "xfcc", "trust": "this_proxy"},
            "default_mode": "bearer",
            "token": {"audiences": ["a"]},
            "path_matching": "exact",
            "routes": [{"path": "/mtls/*", "mode": "mtls"}, {"path": "/MTLS/*", "mode": "mtls"}]
        }))
        .unwrap();
        let policy = policy.validate().unwrap();
        assert_eq!(policy.routes_for("/Mtls/x.json").len(), 1);
        assert_eq!(policy.routes_for("/Mtls/x.json")[0].0.mode, Mode::Bearer);
    }

    /// An edit of the test policy.
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

    #[test]
    fn every_refusal_names_its_member() {
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|_| {}), "accepted"),
            (Box::new(|p| p["certificate_source"]["elements"] = json!(0)), "certificate_source.elements"),
            (Box::new(|p| p["certificate_source"]["elements"] = json!(33)), "certificate_source.elements"),
            (Box::new(|p| p["certificate_source"] = json!({"kind": "xfcc", "trust": "this_proxy", "elements": 2})), "certificate_source.elements"),
            (Box::new(|p| p["certificate_source"]["by"] = json!(["ok", "a,b"])), "certificate_source.by[1]"),
            (Box::new(|p| p["proxy"] = json!("nginx")), "accepted"),
            (Box::new(|p| { p["proxy"] = json!("nginx"); p["certificate_source"] = json!({"kind": "connection"}); }), "certificate_source"),
            (Box::new(|p| p["strip_headers"] = json!(["x-ok", "auth*"])), "strip_headers[1]"),
            (Box::new(|p| p["strip_headers"] = json!(["Authorization"])), "strip_headers[0]"),
            (Box::new(|p| p["strip_headers"] = json!(["*"])), "strip_headers[0]"),
            (Box::new(|p| p["strip_headers"] = json!(["bad name"])), "strip_headers[0]"),
            (Box::new(|p| p["forward_card_facts"] = json!(["upn", "uuid", "fascn_pi"])), "accepted"),
            (Box::new(|p| p["forward_card_facts"] = json!(["upn", "UPN"])), "forward_card_facts[1]"),
            (Box::new(|p| p["forward_card_facts"] = json!(["uuid", "fascn_pi", "uuid"])), "forward_card_facts[2]"),
            (Box::new(|p| p["forward_card_facts"] = json!(["x-dm-smartcard-upn"])), "forward_card_facts[0]"),
            (Box::new(|p| p["routes"] = json!([{"path": "/a/*", "mode": "mtls", "forward_card_facts": ["pin"]}])), "routes[0].forward_card_facts[0]"),
            (Box::new(|p| p["routes"] = json!([{"path": "/a/*", "mode": "mtls"}, {"path": "/a/*", "mode": "bearer"}])), "routes[1].path"),
            (Box::new(|p| p["routes"] = json!([{"path": "/a/*", "mode": "bearer"}, {"path": "/a/b/*", "mode": "mtls"}])), "routes[1].path"),
            (Box::new(|p| p["routes"] = json!([{"path": "/a", "mode": "bearer"}, {"path": "/a/", "mode": "mtls"}])), "routes[1].path"),
            (Box::new(|p| p["routes"] = json!([{"path": "//a/*", "mode": "mtls"}])), "routes[0].path"),
            (Box::new(|p| p["routes"] = json!([{"path": "/a/*", "mode": "mtls"}, {"path": "/A/*", "mode": "mtls"}])), "routes[1].path"),
            (
                Box::new(|p| p["routes"] = json!([{"path": "/a/*", "mode": "mtls"}, {"path": "/A/*", "mode": "mtls", "path_matching": "exact"}])),
                "accepted",
            ),
            (Box::new(|p| p["routes"] = json!([{"path": "/%61/*", "mode": "mtls"}])), "routes[0].path"),
            (Box::new(|p| { p["default_mode"] = json!("bearer"); p["token"] = json!({"audiences": ["a"], "leeway_seconds": 601}); }), "token.leeway_seconds"),
            (Box::new(|p| p["constraints"] = json!({"validity_leeway_seconds": 601})), "constraints.validity_leeway_seconds"),
            (Box::new(|p| p["routes"][0]["constraints"] = json!({"allowed_issuers": ["CN=A", "cn=A"]})), "routes[0].constraints.allowed_issuers[1]"),
            (Box::new(|p| p["trusted_proxies"] = json!(["::ffff:10.0.0.0/104", "10.0.0.1/8"])), "trusted_proxies[1]"),
            (
                Box::new(|p| {
                    p["certificate_source"] = json!({"kind": "nginx_escaped", "header": "ssl-client-cert"});
                    p["forwarded_signature"] = json!({"header": "sig", "secret_base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "max_age_seconds": 601});
                }),
                "forwarded_signature.max_age_seconds",
            ),
            (
                Box::new(|p| {
                    p["certificate_source"] = json!({"kind": "nginx_escaped", "header": "ssl-client-cert"});
                    p["forwarded_signature"] = json!({"header": "SSL_Client_Cert", "secret_base64": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="});
                }),
                "forwarded_signature.header",
            ),
        ];
        for (i, (edit, field)) in cases.into_iter().enumerate() {
            assert_eq!(refused_field(edit), field, "case {i}");
        }
    }
}
