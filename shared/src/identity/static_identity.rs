//! Identity data given inline in the filter's configuration, for development and tests: the
//! JSON form ([`StaticIdentityConfig`]), its checks, and [`StaticIdentity`], which answers the
//! same [`IdentityData`] lookups as a snapshot from hash maps built once.

use super::{
    is_reserved_issuer, is_reserved_principal, normalize_serial, CaKey, CardBinding, CertificateAuthority, Claim,
    ConstraintKind, IdentityData, Owner, OwnerConstraints, SanKind, ThumbprintMapping, TokenIssuer, UserId,
    ORG_ISSUER_PREFIX,
};
use crate::certificate::ca::KeyIdentifier;
use crate::fingerprint::Fingerprint;
use crate::pop::jwks::Jwks;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Identity data given inline in the plugin configuration (`development_identity`), in the
/// shape the snapshot carries: unsigned, for development and tests only.
#[derive(Debug, Default)]
pub struct StaticIdentity {
    /// Boxed: a configuration holds this or a snapshot's settings, and stays small either way.
    tables: Box<StaticTables>,
    generation: u64,
}

#[derive(Debug, Default)]
struct StaticTables {
    bindings: HashMap<Fingerprint, StoredBinding>,
    /// Owners of each blocked fingerprint.
    blocklist: HashMap<Fingerprint, Vec<Owner>>,
    /// Owners of each revoked (issuer DN, normalised serial).
    revoked: HashMap<(String, String), Vec<Owner>>,
    revoked_owners: HashSet<Owner>,
    principals: HashMap<Fingerprint, (Owner, String, Claim)>,
    /// Owners of each (kind, lowercase domain, issuer DN).
    san_rules: HashMap<(SanKind, String, String), Vec<Owner>>,
    platform_constraints: Option<OwnerConstraints>,
    org_constraints: HashMap<String, OwnerConstraints>,
    /// Registrations by `iss`, each with its owner.
    issuers: HashMap<String, Vec<StoredIssuer>>,
    cas: HashMap<CaKey, StoredCa>,
    /// Revocation keys ([`CaKey::revocation_key`]) of every CA's CRL entries.
    crl_revoked: HashSet<[u8; 16]>,
}

#[derive(Debug)]
struct StoredCa {
    subject_dn: String,
    require_fresh_crl: bool,
    fail_open: bool,
    crl_valid_until: Option<i64>,
}

#[derive(Debug)]
struct StoredBinding {
    user_id: String,
    org_id: String,
    enabled: bool,
    claim: Claim,
}

#[derive(Debug)]
struct StoredIssuer {
    owner: Owner,
    keys: Jwks,
    audiences: Vec<String>,
}

/// The JSON form of [`StaticIdentity`] (the plugin configuration's `development_identity`).
/// Every rule but a binding takes an optional `org_id`: absent, the rule is the platform's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticIdentityConfig {
    #[serde(default)]
    pub bindings: Vec<BindingConfig>,
    #[serde(default)]
    pub blocklist: Vec<BlockedConfig>,
    #[serde(default)]
    pub revoked: Vec<RevokedSerialConfig>,
    /// Fingerprint → principal name, or `{"principal": …, "org_id": …}`.
    #[serde(default)]
    pub thumbprint_map: BTreeMap<String, ThumbprintConfig>,
    #[serde(default)]
    pub san_mappings: Vec<SanRuleConfig>,
    #[serde(default)]
    pub constraints: Vec<ConstraintConfig>,
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    #[serde(default)]
    pub certificate_authorities: Vec<CertificateAuthorityConfig>,
}

/// A registered issuing CA with what its CRL says, as the snapshot would carry it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateAuthorityConfig {
    /// The CA's key identifier in hex: what its certificates carry as AuthorityKeyIdentifier.
    pub key_identifier: String,
    pub subject_dn: String,
    #[serde(default = "enabled_by_default")]
    pub require_fresh_crl: bool,
    #[serde(default)]
    pub fail_open: bool,
    /// nextUpdate + grace of the CA's CRL, Unix seconds; absent: no CRL held.
    #[serde(default)]
    pub crl_valid_until: Option<i64>,
    /// Serials its CRL lists (hex, any spelling).
    #[serde(default)]
    pub revoked_serials: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    pub fingerprint: String,
    pub user_id: String,
    pub org_id: String,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// `false`: the binding rests on its org's word, not on the certificate (see
    /// [`Claim::Unverified`]).
    #[serde(default = "enabled_by_default")]
    pub verified: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// A blocked fingerprint: the platform's as a bare string, an org's as an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BlockedConfig {
    Platform(String),
    Owned(OwnedFingerprintConfig),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedFingerprintConfig {
    pub fingerprint: String,
    #[serde(default)]
    pub org_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedSerialConfig {
    pub issuer_dn: String,
    pub serial: String,
    #[serde(default)]
    pub org_id: Option<String>,
}

/// A thumbprint mapping's principal: the platform's as a bare string, an org's as an object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ThumbprintConfig {
    Platform(String),
    Owned(OwnedPrincipalConfig),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedPrincipalConfig {
    pub principal: String,
    #[serde(default)]
    pub org_id: Option<String>,
    /// `false`: an org's mapping rests on its word, not on the certificate (see
    /// [`Claim::Unverified`]).
    #[serde(default = "enabled_by_default")]
    pub verified: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanRuleConfig {
    pub san: SanKind,
    pub domain: String,
    /// The issuer allowed to assert this mapping (RFC 4514, as the filter spells it).
    pub issuer_dn: String,
    #[serde(default)]
    pub org_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintConfig {
    /// `allowed_issuer_dn`, `required_policy_oid` or `san_email_domain`.
    pub kind: String,
    pub value: String,
    #[serde(default)]
    pub org_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub issuer: String,
    pub jwks: serde_json::Value,
    #[serde(default)]
    pub org_id: Option<String>,
    /// Audiences this registration's tokens must name (one of), besides the deployment's.
    #[serde(default)]
    pub audiences: Vec<String>,
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

fn config_error(field: String, problem: impl Into<String>) -> IdentityConfigError {
    IdentityConfigError { field, problem: problem.into() }
}

fn parse_fingerprint(field: String, text: &str) -> Result<Fingerprint, IdentityConfigError> {
    Fingerprint::parse(text).map_err(|e| IdentityConfigError { field, problem: e.to_string() })
}

/// An owner's org id must name something; absent is the platform.
fn checked_owner(field: String, org: &Option<String>) -> Result<Owner, IdentityConfigError> {
    match org.as_deref() {
        Some("") => Err(config_error(field, "org_id is empty (leave it out for the platform)")),
        other => Ok(Owner::from_column(other.map(str::to_owned))),
    }
}

/// Adds `owner` to a rule's owners; the same owner twice is a duplicate entry.
fn add_owner(owners: &mut Vec<Owner>, owner: Owner, field: String) -> Result<(), IdentityConfigError> {
    if owners.contains(&owner) {
        return Err(config_error(field, "listed twice for the same owner"));
    }
    owners.push(owner);
    Ok(())
}

impl StaticIdentity {
    /// `prefix` names the configuration member in errors (e.g. `development_identity`).
    pub fn from_config_at(
        config: StaticIdentityConfig,
        generation: u64,
        prefix: &str,
    ) -> Result<Self, IdentityConfigError> {
        let mut data = StaticTables::default();
        for (i, b) in config.bindings.iter().enumerate() {
            let field = format!("{prefix}.bindings[{i}].fingerprint");
            let fp = parse_fingerprint(field.clone(), &b.fingerprint)?;
            if b.org_id.is_empty() || b.user_id.is_empty() {
                return Err(config_error(format!("{prefix}.bindings[{i}]"), "user_id and org_id must not be empty"));
            }
            let stored = StoredBinding {
                user_id: b.user_id.clone(),
                org_id: b.org_id.clone(),
                enabled: b.enabled,
                claim: Claim::from_verified(b.verified),
            };
            if data.bindings.insert(fp, stored).is_some() {
                return Err(config_error(field, "fingerprint bound twice"));
            }
        }
        for (i, entry) in config.blocklist.iter().enumerate() {
            let field = format!("{prefix}.blocklist[{i}]");
            let (text, org) = match entry {
                BlockedConfig::Platform(text) => (text, Owner::Platform),
                BlockedConfig::Owned(o) => (&o.fingerprint, checked_owner(field.clone(), &o.org_id)?),
            };
            let fp = parse_fingerprint(field.clone(), text)?;
            add_owner(data.blocklist.entry(fp).or_default(), org, field)?;
        }
        for (i, r) in config.revoked.iter().enumerate() {
            let field = format!("{prefix}.revoked[{i}]");
            let org = checked_owner(field.clone(), &r.org_id)?;
            data.revoked_owners.insert(org.clone());
            let key = (r.issuer_dn.clone(), normalize_serial(&r.serial));
            add_owner(data.revoked.entry(key).or_default(), org, field)?;
        }
        for (text, entry) in &config.thumbprint_map {
            let field = format!("{prefix}.thumbprint_map.{text}");
            let (name, org, claim) = match entry {
                ThumbprintConfig::Platform(name) => (name, Owner::Platform, Claim::Verified),
                ThumbprintConfig::Owned(o) => {
                    let org = checked_owner(field.clone(), &o.org_id)?;
                    // The platform's mappings claim nothing either way.
                    let claim = if org.is_platform() { Claim::Verified } else { Claim::from_verified(o.verified) };
                    (&o.principal, org, claim)
                }
            };
            if name.is_empty() {
                return Err(config_error(field, "principal is empty"));
            }
            if org.is_platform() && is_reserved_principal(name) {
                return Err(config_error(field, "a platform principal may not name a user's or an org's"));
            }
            let fp = parse_fingerprint(field.clone(), text)?;
            if data.principals.insert(fp, (org, name.clone(), claim)).is_some() {
                return Err(config_error(field, "fingerprint mapped twice (in another spelling)"));
            }
        }
        for (i, m) in config.san_mappings.iter().enumerate() {
            let field = format!("{prefix}.san_mappings[{i}]");
            if m.domain.is_empty() || m.issuer_dn.is_empty() {
                return Err(config_error(field, "domain and issuer_dn must not be empty"));
            }
            let org = checked_owner(field.clone(), &m.org_id)?;
            let key = (m.san, m.domain.to_ascii_lowercase(), m.issuer_dn.clone());
            add_owner(data.san_rules.entry(key).or_default(), org, field)?;
        }
        for (i, c) in config.constraints.iter().enumerate() {
            let field = format!("{prefix}.constraints[{i}]");
            let kind = ConstraintKind::from_name(&c.kind)
                .ok_or_else(|| config_error(format!("{field}.kind"), format!("unknown constraint kind {:?}", c.kind)))?;
            if !kind.accepts_value(&c.value) {
                return Err(config_error(format!("{field}.value"), format!("not a value {} takes", kind.name())));
            }
            let target = match checked_owner(field, &c.org_id)? {
                Owner::Platform => data.platform_constraints.get_or_insert_with(OwnerConstraints::default),
                Owner::Org(org) => data.org_constraints.entry(org).or_default(),
            };
            target.add(kind, &c.value);
        }
        for (i, issuer) in config.issuers.iter().enumerate() {
            let field = format!("{prefix}.issuers[{i}]");
            let bytes = serde_json::to_vec(&issuer.jwks).map_err(|e| config_error(format!("{field}.jwks"), e.to_string()))?;
            let keys = Jwks::parse(&bytes).map_err(|e| config_error(format!("{field}.jwks"), e.to_string()))?;
            let owner = checked_owner(field.clone(), &issuer.org_id)?;
            if owner.is_platform() && is_reserved_issuer(&issuer.issuer) {
                return Err(config_error(
                    format!("{field}.issuer"),
                    format!("a platform issuer may not start with {ORG_ISSUER_PREFIX:?} (an org's tokens are forwarded so)"),
                ));
            }
            let registrations = data.issuers.entry(issuer.issuer.clone()).or_default();
            if registrations.iter().any(|r| r.owner == owner) {
                return Err(config_error(field, "issuer registered twice by the same owner"));
            }
            registrations.push(StoredIssuer { owner, keys, audiences: issuer.audiences.clone() });
        }
        for (i, ca) in config.certificate_authorities.iter().enumerate() {
            let field = format!("{prefix}.certificate_authorities[{i}]");
            let octets = crate::encoding::hex_decode(&ca.key_identifier)
                .ok_or_else(|| config_error(format!("{field}.key_identifier"), "not hex"))?;
            let key = KeyIdentifier::new(&octets)
                .map(|k| CaKey::of(&k))
                .ok_or_else(|| config_error(format!("{field}.key_identifier"), "empty"))?;
            if ca.subject_dn.is_empty() {
                return Err(config_error(format!("{field}.subject_dn"), "empty"));
            }
            for serial in &ca.revoked_serials {
                data.crl_revoked.insert(key.revocation_key(serial));
            }
            let stored = StoredCa {
                subject_dn: ca.subject_dn.clone(),
                require_fresh_crl: ca.require_fresh_crl,
                fail_open: ca.fail_open,
                crl_valid_until: ca.crl_valid_until,
            };
            if data.cas.insert(key, stored).is_some() {
                return Err(config_error(field, "CA listed twice"));
            }
        }
        Ok(StaticIdentity { tables: Box::new(data), generation })
    }

    /// [`StaticIdentity::from_config_at`] with errors under `identity`.
    pub fn from_config(config: StaticIdentityConfig, generation: u64) -> Result<Self, IdentityConfigError> {
        Self::from_config_at(config, generation, "identity")
    }
}

fn stored_ca(key: CaKey, ca: &StoredCa) -> CertificateAuthority<'_> {
    CertificateAuthority {
        key,
        subject_dn: &ca.subject_dn,
        require_fresh_crl: ca.require_fresh_crl,
        fail_open: ca.fail_open,
        crl_valid_until: ca.crl_valid_until,
    }
}

fn owners_apply(owners: Option<&Vec<Owner>>, org: Option<&str>) -> bool {
    owners.is_some_and(|owners| owners.iter().any(|o| o.borrowed().applies_to(org)))
}

impl IdentityData for StaticIdentity {
    fn card_binding(&self, fingerprint: &Fingerprint) -> Option<CardBinding<'_>> {
        self.tables.bindings.get(fingerprint).map(|b| CardBinding {
            user_id: UserId::Text(&b.user_id),
            org_id: &b.org_id,
            enabled: b.enabled,
            claim: b.claim,
        })
    }

    fn is_blocklisted(&self, fingerprint: &Fingerprint, org: Option<&str>) -> bool {
        owners_apply(self.tables.blocklist.get(fingerprint), org)
    }

    fn is_revoked(&self, issuer_dn: &str, serial_hex: &str, org: Option<&str>) -> bool {
        if self.tables.revoked.is_empty() {
            return false;
        }
        owners_apply(self.tables.revoked.get(&(issuer_dn.to_string(), normalize_serial(serial_hex))), org)
    }

    fn has_revoked_serials(&self, org: Option<&str>) -> bool {
        self.tables.revoked_owners.iter().any(|o| o.borrowed().applies_to(org))
    }

    fn thumbprint_mappings<'a>(&'a self, fingerprint: &Fingerprint, each: &mut dyn FnMut(ThumbprintMapping<'a>)) {
        if let Some((org, name, claim)) = self.tables.principals.get(fingerprint) {
            each(ThumbprintMapping { owner: org.borrowed(), name, claim: *claim });
        }
    }

    fn san_rule_owners<'a>(&'a self, kind: SanKind, domain: &str, issuer_dn: &str, each: &mut dyn FnMut(Owner<&'a str>)) {
        if self.tables.san_rules.is_empty() {
            return;
        }
        let key = (kind, domain.to_ascii_lowercase(), issuer_dn.to_owned());
        for owner in self.tables.san_rules.get(&key).into_iter().flatten() {
            each(owner.borrowed());
        }
    }

    fn constraints(&self, owner: Owner<&str>) -> Option<&OwnerConstraints> {
        match owner {
            Owner::Platform => self.tables.platform_constraints.as_ref(),
            Owner::Org(org) => self.tables.org_constraints.get(org),
        }
    }

    fn certificate_authority(&self, key: &CaKey) -> Option<CertificateAuthority<'_>> {
        self.tables.cas.get(key).map(|ca| stored_ca(*key, ca))
    }

    fn certificate_authorities_named<'a>(&'a self, subject_dn: &str, each: &mut dyn FnMut(CertificateAuthority<'a>)) {
        for (key, ca) in &self.tables.cas {
            if ca.subject_dn == subject_dn {
                each(stored_ca(*key, ca));
            }
        }
    }

    fn has_certificate_authorities(&self) -> bool {
        !self.tables.cas.is_empty()
    }

    fn is_crl_revoked(&self, ca: &CaKey, serial_hex: &str) -> bool {
        !self.tables.crl_revoked.is_empty() && self.tables.crl_revoked.contains(&ca.revocation_key(serial_hex))
    }

    fn token_issuer(&self, issuer: &str, owner: Owner<&str>) -> Option<TokenIssuer<'_>> {
        let registration = self.tables.issuers.get(issuer)?.iter().find(|r| r.owner.borrowed() == owner)?;
        Some(TokenIssuer { owner: registration.owner.borrowed(), keys: &registration.keys, audiences: &registration.audiences })
    }

    fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::RuleMatch;

    const FP: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn duplicate_binding_names_its_field() {
        let config: StaticIdentityConfig = serde_json::from_value(serde_json::json!({
            "bindings": [
                {"fingerprint": FP, "user_id": "u1", "org_id": "o1"},
                {"fingerprint": FP.to_uppercase(), "user_id": "u2", "org_id": "o1"}
            ]
        }))
        .unwrap();
        let err = StaticIdentity::from_config_at(config, 1, "development_identity").unwrap_err();
        assert_eq!(err.field, "development_identity.bindings[1].fingerprint");
    }

    fn config(json: serde_json::Value) -> Result<StaticIdentity, IdentityConfigError> {
        StaticIdentity::from_config(serde_json::from_value(json).unwrap(), 7)
    }

    #[test]
    fn lookups_answer_in_the_owners_scope() {
        let other = "0000000000000000000000000000000000000000000000000000000000000001";
        let data = config(serde_json::json!({
            "bindings": [{"fingerprint": FP, "user_id": "u1", "org_id": "o1", "enabled": false}],
            "blocklist": [FP, {"fingerprint": other, "org_id": "o2"}],
            "revoked": [{"issuer_dn": "CN=CA", "serial": "0x0A", "org_id": "o1"}],
            "thumbprint_map": {other: {"principal": "svc", "org_id": "o2"}},
            "san_mappings": [
                {"san": "email", "domain": "Example.MIL", "issuer_dn": "CN=CA"},
                {"san": "email", "domain": "example.mil", "issuer_dn": "CN=CA", "org_id": "o3"}
            ],
            "constraints": [{"kind": "required_policy_oid", "value": "1.2.3", "org_id": "o1"}]
        }))
        .unwrap();
        let key = Fingerprint::parse(FP).unwrap();
        let other = Fingerprint::parse(other).unwrap();
        assert_eq!(data.card_binding(&key), Some(CardBinding { user_id: "u1".into(), org_id: "o1", enabled: false, claim: Claim::Verified }));
        assert!(data.is_blocklisted(&key, None));
        assert!(data.is_blocklisted(&other, Some("o2")));
        assert!(!data.is_blocklisted(&other, Some("o1")));
        assert!(!data.is_blocklisted(&other, None));
        assert!(data.is_revoked("CN=CA", "0a", Some("o1")));
        assert!(!data.is_revoked("CN=CA", "0a", Some("o2")));
        assert!(!data.is_revoked("CN=Other", "0a", Some("o1")));
        assert!(data.has_revoked_serials(Some("o1")));
        assert!(!data.has_revoked_serials(None));
        assert_eq!(
            data.thumbprint_mapping(&other),
            RuleMatch::One(ThumbprintMapping { owner: Owner::Org("o2"), name: "svc", claim: Claim::Verified })
        );
        assert_eq!(data.thumbprint_mapping(&key), RuleMatch::Unmatched);
        assert_eq!(data.san_rule(SanKind::Email, "EXAMPLE.mil", "CN=CA"), RuleMatch::Ambiguous);
        assert_eq!(data.san_rule(SanKind::Email, "example.mil", "CN=Other"), RuleMatch::Unmatched);
        assert_eq!(data.san_rule(SanKind::Upn, "example.mil", "CN=CA"), RuleMatch::Unmatched);
        assert_eq!(data.constraints(Owner::Org("o1")).map(|c| c.required_policy_oids.len()), Some(1));
        assert!(data.constraints(Owner::Platform).is_none());
        assert_eq!(data.generation(), 7);
    }

    #[test]
    fn refusals_name_their_member() {
        let cases = [
            (serde_json::json!({"blocklist": [FP, FP.to_uppercase()]}), "identity.blocklist[1]".to_owned()),
            (serde_json::json!({"blocklist": [{"fingerprint": FP, "org_id": ""}]}), "identity.blocklist[0]".to_owned()),
            (serde_json::json!({"thumbprint_map": {FP: "auth:account:user:u1"}}), format!("identity.thumbprint_map.{FP}")),
            (
                serde_json::json!({"thumbprint_map": {FP: "a", FP.to_uppercase(): "b"}}),
                format!("identity.thumbprint_map.{FP}"),
            ),
            (serde_json::json!({"constraints": [{"kind": "colour", "value": "x"}]}), "identity.constraints[0].kind".to_owned()),
            (serde_json::json!({"san_mappings": [{"san": "upn", "domain": "mil", "issuer_dn": ""}]}), "identity.san_mappings[0]".to_owned()),
        ];
        for (json, field) in cases {
            assert_eq!(config(json.clone()).unwrap_err().field, field, "{json}");
        }
        // An org may name its principals freely: the filter composes them in its namespace.
        assert!(config(serde_json::json!({"thumbprint_map": {FP: {"principal": "auth:account:user:u1", "org_id": "o"}}})).is_ok());
    }
}
