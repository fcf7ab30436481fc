//! Who is who: the identity data the decision consults. One interface, two sources — the
//! static data inline in the filter's configuration, and the signed snapshot from the control
//! plane (`crate::snapshot`) — so the decision logic never knows which one it reads.

use crate::encoding::ULID_TEXT_LEN;
use crate::fingerprint::Fingerprint;
use crate::pop::jwks::Jwks;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// A row of `smart_card_links`, as the filter needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardBinding<'a> {
    pub user_id: UserId<'a>,
    pub org_id: &'a str,
    /// A disabled binding is refused with `binding_disabled`, not treated as absent.
    pub enabled: bool,
}

/// A bound user's id. The control plane's ids are ULIDs, which the snapshot stores as their
/// 16 bytes (a million bindings are 10 MB smaller that way); any other id is borrowed text.
#[derive(Clone, Copy)]
pub enum UserId<'a> {
    Text(&'a str),
    /// The canonical 26-character spelling, rendered from the stored bits.
    Ulid([u8; ULID_TEXT_LEN]),
}

impl UserId<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            UserId::Text(text) => text,
            // Rendered from Crockford's ASCII alphabet, so always UTF-8.
            UserId::Ulid(text) => std::str::from_utf8(text).unwrap_or_default(),
        }
    }
}

impl<'a> From<&'a str> for UserId<'a> {
    fn from(text: &'a str) -> Self {
        UserId::Text(text)
    }
}

/// Equal when spelled alike, whichever way each is stored.
impl PartialEq for UserId<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for UserId<'_> {}

impl PartialEq<str> for UserId<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl fmt::Debug for UserId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for UserId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which SAN an identity mapping rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SanKind {
    Email,
    Upn,
}

impl SanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SanKind::Email => "email",
            SanKind::Upn => "upn",
        }
    }
}

/// The lookups the decision makes. Implementations must answer without parsing per call:
/// the snapshot holds a million bindings.
pub trait IdentityData {
    fn card_binding(&self, fingerprint: &Fingerprint) -> Option<CardBinding<'_>>;
    fn is_blocklisted(&self, fingerprint: &Fingerprint) -> bool;
    /// `serial_hex` is [`crate::certificate::CertificateFacts::serial_hex`].
    fn is_revoked(&self, issuer_dn: &str, serial_hex: &str) -> bool;
    /// An explicit fingerprint → principal mapping.
    fn mapped_principal(&self, fingerprint: &Fingerprint) -> Option<&str>;
    /// Whether a SAN of `kind` in `domain` (lowercase, after the `@`) may name the principal.
    fn san_mapping_allowed(&self, kind: SanKind, domain: &str) -> bool;
    /// Signing keys of a trusted token issuer, by its exact `iss`.
    fn issuer_keys(&self, issuer: &str) -> Option<&Jwks>;
    /// Changes whenever any answer above may change: verified-token caches are keyed on it,
    /// so a key removed from an issuer stops being honoured at once.
    fn generation(&self) -> u64;
}

/// Identity data given inline in configuration, in the same shape the snapshot carries.
#[derive(Debug, Default)]
pub struct StaticIdentity {
    bindings: HashMap<Fingerprint, StoredBinding>,
    blocklist: HashSet<Fingerprint>,
    revoked: HashSet<(String, String)>,
    principals: HashMap<Fingerprint, String>,
    san_domains: HashSet<(SanKind, String)>,
    issuers: HashMap<String, Jwks>,
    generation: u64,
}

#[derive(Debug)]
struct StoredBinding {
    user_id: String,
    org_id: String,
    enabled: bool,
}

/// The JSON form of [`StaticIdentity`] (the plugin configuration's `identity` member).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticIdentityConfig {
    #[serde(default)]
    pub bindings: Vec<BindingConfig>,
    #[serde(default)]
    pub blocklist: Vec<String>,
    #[serde(default)]
    pub revoked: Vec<RevokedSerialConfig>,
    #[serde(default)]
    pub thumbprint_map: HashMap<String, String>,
    #[serde(default)]
    pub san_mappings: Vec<SanMappingConfig>,
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    pub fingerprint: String,
    pub user_id: String,
    pub org_id: String,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedSerialConfig {
    pub issuer_dn: String,
    pub serial: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanMappingConfig {
    pub san: SanKind,
    pub domain: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub issuer: String,
    pub jwks: serde_json::Value,
}

/// A configuration error, naming the member at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfigError {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for IdentityConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for IdentityConfigError {}

fn parse_fingerprint(field: String, text: &str) -> Result<Fingerprint, IdentityConfigError> {
    Fingerprint::parse(text).map_err(|e| IdentityConfigError { field, problem: e.to_string() })
}

/// Serials are compared as lowercase hex without separators or a `0x` prefix.
pub fn normalize_serial(serial: &str) -> String {
    let s = serial.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    let s: String = s.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() { "0".to_string() } else { trimmed.to_string() }
}

impl StaticIdentity {
    pub fn from_config(config: StaticIdentityConfig, generation: u64) -> Result<Self, IdentityConfigError> {
        let mut data = StaticIdentity { generation, ..Default::default() };
        for (i, b) in config.bindings.iter().enumerate() {
            let fp = parse_fingerprint(format!("identity.bindings[{i}].fingerprint"), &b.fingerprint)?;
            let stored = StoredBinding { user_id: b.user_id.clone(), org_id: b.org_id.clone(), enabled: b.enabled };
            if data.bindings.insert(fp, stored).is_some() {
                return Err(IdentityConfigError {
                    field: format!("identity.bindings[{i}].fingerprint"),
                    problem: "fingerprint bound twice".into(),
                });
            }
        }
        for (i, text) in config.blocklist.iter().enumerate() {
            data.blocklist.insert(parse_fingerprint(format!("identity.blocklist[{i}]"), text)?);
        }
        for r in &config.revoked {
            data.revoked.insert((r.issuer_dn.clone(), normalize_serial(&r.serial)));
        }
        for (fp, principal) in &config.thumbprint_map {
            let key = parse_fingerprint(format!("identity.thumbprint_map.{fp}"), fp)?;
            data.principals.insert(key, principal.clone());
        }
        for m in &config.san_mappings {
            data.san_domains.insert((m.san, m.domain.to_ascii_lowercase()));
        }
        for (i, issuer) in config.issuers.iter().enumerate() {
            let bytes = serde_json::to_vec(&issuer.jwks).map_err(|e| IdentityConfigError {
                field: format!("identity.issuers[{i}].jwks"),
                problem: e.to_string(),
            })?;
            let jwks = Jwks::parse(&bytes).map_err(|e| IdentityConfigError {
                field: format!("identity.issuers[{i}].jwks"),
                problem: e.to_string(),
            })?;
            data.issuers.insert(issuer.issuer.clone(), jwks);
        }
        Ok(data)
    }
}

impl IdentityData for StaticIdentity {
    fn card_binding(&self, fingerprint: &Fingerprint) -> Option<CardBinding<'_>> {
        self.bindings.get(fingerprint).map(|b| CardBinding {
            user_id: UserId::Text(&b.user_id),
            org_id: &b.org_id,
            enabled: b.enabled,
        })
    }

    fn is_blocklisted(&self, fingerprint: &Fingerprint) -> bool {
        self.blocklist.contains(fingerprint)
    }

    fn is_revoked(&self, issuer_dn: &str, serial_hex: &str) -> bool {
        if self.revoked.is_empty() {
            return false;
        }
        self.revoked.contains(&(issuer_dn.to_string(), normalize_serial(serial_hex)))
    }

    fn mapped_principal(&self, fingerprint: &Fingerprint) -> Option<&str> {
        self.principals.get(fingerprint).map(String::as_str)
    }

    fn san_mapping_allowed(&self, kind: SanKind, domain: &str) -> bool {
        self.san_domains.contains(&(kind, domain.to_ascii_lowercase()))
    }

    fn issuer_keys(&self, issuer: &str) -> Option<&Jwks> {
        self.issuers.get(issuer)
    }

    fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_in_one_spelling() {
        assert_eq!(normalize_serial("0x00:1A:2b"), "1a2b");
        assert_eq!(normalize_serial("00"), "0");
        assert_eq!(normalize_serial("1A2B"), "1a2b");
    }

    #[test]
    fn duplicate_binding_names_its_field() {
        let fp = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let config: StaticIdentityConfig = serde_json::from_value(serde_json::json!({
            "bindings": [
                {"fingerprint": fp, "user_id": "u1", "org_id": "o1"},
                {"fingerprint": fp.to_uppercase(), "user_id": "u2", "org_id": "o1"}
            ]
        }))
        .unwrap();
        let err = StaticIdentity::from_config(config, 1).unwrap_err();
        assert_eq!(err.field, "identity.bindings[1].fingerprint");
    }

    #[test]
    fn lookups_answer_from_configuration() {
        let fp = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let config: StaticIdentityConfig = serde_json::from_value(serde_json::json!({
            "bindings": [{"fingerprint": fp, "user_id": "u1", "org_id": "o1", "enabled": false}],
            "blocklist": [fp],
            "revoked": [{"issuer_dn": "CN=CA", "serial": "0x0A"}],
            "san_mappings": [{"san": "email", "domain": "Example.MIL"}]
        }))
        .unwrap();
        let data = StaticIdentity::from_config(config, 7).unwrap();
        let key = Fingerprint::parse(fp).unwrap();
        assert_eq!(data.card_binding(&key), Some(CardBinding { user_id: "u1".into(), org_id: "o1", enabled: false }));
        assert!(data.is_blocklisted(&key));
        assert!(data.is_revoked("CN=CA", "0a"));
        assert!(!data.is_revoked("CN=Other", "0a"));
        assert!(data.san_mapping_allowed(SanKind::Email, "example.mil"));
        assert!(!data.san_mapping_allowed(SanKind::Upn, "example.mil"));
        assert_eq!(data.generation(), 7);
    }
}
