//! Who is who: the identity data the decision consults. One interface, two sources — the
//! signed snapshot from the control plane (`crate::snapshot`) and, for development only, data
//! inline in the filter's configuration ([`StaticIdentity`]) — so the decision logic never
//! knows which one it reads.
//!
//! Every rule has an [`Owner`]: one org, or the platform. Lookups take the org the certificate
//! resolved into, and answer only with rules of that org or of the platform; the order in
//! which the org is resolved, and what each rule means for it, is
//! [`crate::decision::resolve`]'s.

use crate::certificate::CertificateFacts;
use crate::encoding::ULID_TEXT_LEN;
use crate::fingerprint::Fingerprint;
use crate::pop::jwks::Jwks;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// A row of `smart_card_links`, as the filter needs it. A binding always belongs to an org:
/// the certificate resolves into it.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
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

/// Who owns an identity rule: one org, named by its id, or the platform (rules only a
/// super-admin writes, which apply to every certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner<'a> {
    Platform,
    Org(&'a str),
}

impl<'a> Owner<'a> {
    /// The org's id; `None` for the platform.
    pub fn org_id(self) -> Option<&'a str> {
        match self {
            Owner::Platform => None,
            Owner::Org(org) => Some(org),
        }
    }

    /// Whether a rule of this owner applies to a certificate that resolved into `org` (`None`:
    /// into no org): the platform's apply to all, an org's only to its own.
    pub fn applies_to(self, org: Option<&str>) -> bool {
        match self {
            Owner::Platform => true,
            Owner::Org(owner) => org == Some(owner),
        }
    }

    /// `None` is the platform.
    pub fn from_org_id(org: Option<&'a str>) -> Self {
        org.map_or(Owner::Platform, Owner::Org)
    }
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Platform => f.write_str("the platform"),
            Owner::Org(org) => write!(f, "org {org}"),
        }
    }
}

/// The answer of a lookup that rules of several owners may answer. Two owners answering the
/// same certificate is a conflict the control plane refuses to create; should one reach a
/// filter anyway, it never picks one ([`crate::decision::resolve`]: two orgs refuse the
/// certificate, the platform and one org resolve nothing at that step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMatch<T> {
    Unmatched,
    One(T),
    Ambiguous,
}

impl<T> RuleMatch<T> {
    /// This answer with one more rule found: a second makes it ambiguous.
    pub fn and(self, another: T) -> Self {
        match self {
            RuleMatch::Unmatched => RuleMatch::One(another),
            RuleMatch::One(_) | RuleMatch::Ambiguous => RuleMatch::Ambiguous,
        }
    }
}

/// An explicit certificate → principal mapping. `name` is as its owner wrote it; the filter
/// composes the principal in the owner's namespace ([`crate::decision::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbprintMapping<'a> {
    pub owner: Owner<'a>,
    pub name: &'a str,
}

/// Principals of bound users; no org's or the platform's mapping may name one.
pub const USER_PRINCIPAL_PREFIX: &str = "auth:account:user:";
/// Principals in an org's namespace; no platform mapping may name one.
pub const ORG_PRINCIPAL_PREFIX: &str = "auth:account:org:";

/// Whether a platform mapping's name would pass for a bound user's or an org's principal.
/// The control plane refuses such names; the snapshot reader and encoder do too.
pub fn is_reserved_principal(name: &str) -> bool {
    name.starts_with(USER_PRINCIPAL_PREFIX) || name.starts_with(ORG_PRINCIPAL_PREFIX)
}

/// Tokens verified by an org's issuer registration are forwarded with the issuer
/// `org:{org}:{iss}` (the platform's keep the bare `iss`), so that an org registering another
/// owner's `iss` with its own keys never mints that owner's token identity.
pub const ORG_ISSUER_PREFIX: &str = "org:";

/// Whether a platform registration's `iss` would pass for an org's forwarded issuer. The filter
/// never honours such a registration, and the development identity refuses it.
pub fn is_reserved_issuer(iss: &str) -> bool {
    iss.starts_with(ORG_ISSUER_PREFIX)
}

/// What an owner demands of the certificates its rules apply to, beyond the route's own
/// constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConstraintKind {
    /// The certificate's issuer DN must be one of the owner's listed DNs.
    AllowedIssuerDn,
    /// The certificate must assert one of the owner's listed policy OIDs.
    RequiredPolicyOid,
    /// The certificate must carry an RFC 822 SAN, each in one of the owner's listed domains.
    SanEmailDomain,
}

impl ConstraintKind {
    /// The name the control plane's API and database use.
    pub fn name(self) -> &'static str {
        match self {
            ConstraintKind::AllowedIssuerDn => "allowed_issuer_dn",
            ConstraintKind::RequiredPolicyOid => "required_policy_oid",
            ConstraintKind::SanEmailDomain => "san_email_domain",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [ConstraintKind::AllowedIssuerDn, ConstraintKind::RequiredPolicyOid, ConstraintKind::SanEmailDomain]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// What one owner demands of the certificates its rules apply to, beyond the route's own
/// constraints. Every kind listed must be satisfied; a kind with no values is not enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerConstraints {
    /// The certificate's issuer DN must be one of these (exact RFC 4514 text).
    pub allowed_issuer_dns: Vec<String>,
    /// The certificate must assert at least one of these policy OIDs.
    pub required_policy_oids: Vec<String>,
    /// The certificate must carry an RFC 822 SAN, and each must lie in one of these
    /// (lowercase) domains.
    pub san_email_domains: Vec<String>,
}

impl OwnerConstraints {
    pub fn add(&mut self, kind: ConstraintKind, value: &str) {
        match kind {
            ConstraintKind::AllowedIssuerDn => self.allowed_issuer_dns.push(value.to_owned()),
            ConstraintKind::RequiredPolicyOid => self.required_policy_oids.push(value.to_owned()),
            ConstraintKind::SanEmailDomain => {
                self.san_email_domains.push(value.trim_start_matches('@').to_ascii_lowercase())
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.allowed_issuer_dns.is_empty() && self.required_policy_oids.is_empty() && self.san_email_domains.is_empty()
    }

    /// Whether `facts` satisfy every listed kind. Incomplete facts (a source that gives no
    /// issuer, policies or emails) satisfy nothing that is listed.
    pub fn allows(&self, facts: &CertificateFacts) -> bool {
        if self.is_empty() {
            return true;
        }
        if !facts.complete {
            return false;
        }
        if !self.allowed_issuer_dns.is_empty() && !self.allowed_issuer_dns.contains(&facts.issuer_dn) {
            return false;
        }
        if !self.required_policy_oids.is_empty()
            && !facts.policy_oids.iter().any(|oid| self.required_policy_oids.contains(oid))
        {
            return false;
        }
        if !self.san_email_domains.is_empty() {
            let mut emails = facts.emails().peekable();
            if emails.peek().is_none() {
                return false;
            }
            let in_domains = |email: &str| {
                email.rsplit_once('@').is_some_and(|(_, d)| self.san_email_domains.iter().any(|a| a.eq_ignore_ascii_case(d)))
            };
            if !emails.all(in_domains) {
                return false;
            }
        }
        true
    }
}

/// A token issuer registered by one owner: its signing keys and, when listed, the audiences
/// its tokens must name (besides the deployment's own).
#[derive(Debug, Clone, Copy)]
pub struct TokenIssuer<'a> {
    pub owner: Owner<'a>,
    pub keys: &'a Jwks,
    /// Empty: no restriction beyond the deployment's `policy.token.audiences`.
    pub audiences: &'a [String],
}

/// The lookups the decision makes. Implementations must answer without parsing per call:
/// the snapshot holds a million bindings. `org` arguments are the org the certificate
/// resolved into (`None`: none), and select the org's rules beside the platform's.
pub trait IdentityData {
    fn card_binding(&self, fingerprint: &Fingerprint) -> Option<CardBinding<'_>>;
    /// A platform blocklist entry, or one of `org`.
    fn is_blocklisted(&self, fingerprint: &Fingerprint, org: Option<&str>) -> bool;
    /// A platform revocation of (issuer, serial), or one of `org`. `serial_hex` is
    /// [`crate::certificate::CertificateFacts::serial_hex`].
    fn is_revoked(&self, issuer_dn: &str, serial_hex: &str, org: Option<&str>) -> bool;
    /// Whether any revocation by serial applies to certificates of `org` (the platform's
    /// always do): a certificate whose source gives no issuer or serial is then refused.
    fn has_revoked_serials(&self, org: Option<&str>) -> bool;
    /// Every owner's explicit mapping of this certificate, handed to `each`. The control plane
    /// lets one owner map a fingerprint; a snapshot may still carry several, and the decision
    /// sees them all.
    fn thumbprint_mappings<'a>(&'a self, fingerprint: &Fingerprint, each: &mut dyn FnMut(ThumbprintMapping<'a>));
    /// Every owner that lets a SAN of `kind` in `domain` (after the `@`, any case) name a
    /// principal when the certificate was issued by `issuer_dn`, handed to `each`.
    fn san_rule_owners<'a>(&'a self, kind: SanKind, domain: &str, issuer_dn: &str, each: &mut dyn FnMut(Owner<'a>));
    /// The explicit mapping of this certificate; two owners mapping it is ambiguous.
    fn thumbprint_mapping(&self, fingerprint: &Fingerprint) -> RuleMatch<ThumbprintMapping<'_>> {
        let mut found = RuleMatch::Unmatched;
        self.thumbprint_mappings(fingerprint, &mut |mapping| found = found.and(mapping));
        found
    }
    /// Which owner lets a SAN of `kind` in `domain` name a principal when the certificate was
    /// issued by `issuer_dn`; two owners is ambiguous.
    fn san_rule(&self, kind: SanKind, domain: &str, issuer_dn: &str) -> RuleMatch<Owner<'_>> {
        let mut found = RuleMatch::Unmatched;
        self.san_rule_owners(kind, domain, issuer_dn, &mut |owner| found = found.and(owner));
        found
    }
    /// The constraints `owner` sets, if any.
    fn constraints(&self, owner: Owner<'_>) -> Option<&OwnerConstraints>;
    /// `owner`'s registration of the token issuer whose `iss` is exactly `issuer`.
    fn token_issuer(&self, issuer: &str, owner: Owner<'_>) -> Option<TokenIssuer<'_>>;
    /// Changes whenever any answer above may change: verified-token caches are keyed on it,
    /// so a key removed from an issuer stops being honoured at once.
    fn generation(&self) -> u64;
}

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
    /// Owners (`None`: the platform) of each blocked fingerprint.
    blocklist: HashMap<Fingerprint, Vec<Option<String>>>,
    /// Owners of each revoked (issuer DN, normalised serial).
    revoked: HashMap<(String, String), Vec<Option<String>>>,
    revoked_owners: HashSet<Option<String>>,
    principals: HashMap<Fingerprint, (Option<String>, String)>,
    /// Owners of each (kind, lowercase domain, issuer DN).
    san_rules: HashMap<(SanKind, String, String), Vec<Option<String>>>,
    platform_constraints: Option<OwnerConstraints>,
    org_constraints: HashMap<String, OwnerConstraints>,
    /// Registrations by `iss`, each with its owner.
    issuers: HashMap<String, Vec<StoredIssuer>>,
}

#[derive(Debug)]
struct StoredBinding {
    user_id: String,
    org_id: String,
    enabled: bool,
}

#[derive(Debug)]
struct StoredIssuer {
    owner: Option<String>,
    keys: Jwks,
    audiences: Vec<String>,
}

fn owner_of(org: &Option<String>) -> Owner<'_> {
    Owner::from_org_id(org.as_deref())
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
    pub san_mappings: Vec<SanMappingConfig>,
    #[serde(default)]
    pub constraints: Vec<ConstraintConfig>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanMappingConfig {
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
fn checked_owner(field: String, org: &Option<String>) -> Result<Option<String>, IdentityConfigError> {
    match org.as_deref() {
        Some("") => Err(config_error(field, "org_id is empty (leave it out for the platform)")),
        other => Ok(other.map(str::to_owned)),
    }
}

/// Serials are compared as lowercase hex without separators or a `0x` prefix.
pub fn normalize_serial(serial: &str) -> String {
    let s = serial.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    let s: String = s.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() { "0".to_string() } else { trimmed.to_string() }
}

/// Adds `owner` to a rule's owners; the same owner twice is a duplicate entry.
fn add_owner(owners: &mut Vec<Option<String>>, owner: Option<String>, field: String) -> Result<(), IdentityConfigError> {
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
            let stored = StoredBinding { user_id: b.user_id.clone(), org_id: b.org_id.clone(), enabled: b.enabled };
            if data.bindings.insert(fp, stored).is_some() {
                return Err(config_error(field, "fingerprint bound twice"));
            }
        }
        for (i, entry) in config.blocklist.iter().enumerate() {
            let field = format!("{prefix}.blocklist[{i}]");
            let (text, org) = match entry {
                BlockedConfig::Platform(text) => (text, None),
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
            let (name, org) = match entry {
                ThumbprintConfig::Platform(name) => (name, None),
                ThumbprintConfig::Owned(o) => (&o.principal, checked_owner(field.clone(), &o.org_id)?),
            };
            if name.is_empty() {
                return Err(config_error(field, "principal is empty"));
            }
            if org.is_none() && is_reserved_principal(name) {
                return Err(config_error(field, "a platform principal may not name a user's or an org's"));
            }
            let fp = parse_fingerprint(field.clone(), text)?;
            if data.principals.insert(fp, (org, name.clone())).is_some() {
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
            if c.value.is_empty() {
                return Err(config_error(format!("{field}.value"), "empty"));
            }
            let target = match checked_owner(field, &c.org_id)? {
                None => data.platform_constraints.get_or_insert_with(OwnerConstraints::default),
                Some(org) => data.org_constraints.entry(org).or_default(),
            };
            target.add(kind, &c.value);
        }
        for (i, issuer) in config.issuers.iter().enumerate() {
            let field = format!("{prefix}.issuers[{i}]");
            let bytes = serde_json::to_vec(&issuer.jwks).map_err(|e| config_error(format!("{field}.jwks"), e.to_string()))?;
            let keys = Jwks::parse(&bytes).map_err(|e| config_error(format!("{field}.jwks"), e.to_string()))?;
            let owner = checked_owner(field.clone(), &issuer.org_id)?;
            if owner.is_none() && is_reserved_issuer(&issuer.issuer) {
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
        Ok(StaticIdentity { tables: Box::new(data), generation })
    }

    /// [`StaticIdentity::from_config_at`] with errors under `identity`.
    pub fn from_config(config: StaticIdentityConfig, generation: u64) -> Result<Self, IdentityConfigError> {
        Self::from_config_at(config, generation, "identity")
    }
}

fn owners_apply(owners: Option<&Vec<Option<String>>>, org: Option<&str>) -> bool {
    owners.is_some_and(|owners| owners.iter().any(|o| owner_of(o).applies_to(org)))
}

impl IdentityData for StaticIdentity {
    fn card_binding(&self, fingerprint: &Fingerprint) -> Option<CardBinding<'_>> {
        self.tables.bindings.get(fingerprint).map(|b| CardBinding {
            user_id: UserId::Text(&b.user_id),
            org_id: &b.org_id,
            enabled: b.enabled,
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
        self.tables.revoked_owners.iter().any(|o| owner_of(o).applies_to(org))
    }

    fn thumbprint_mappings<'a>(&'a self, fingerprint: &Fingerprint, each: &mut dyn FnMut(ThumbprintMapping<'a>)) {
        if let Some((org, name)) = self.tables.principals.get(fingerprint) {
            each(ThumbprintMapping { owner: owner_of(org), name });
        }
    }

    fn san_rule_owners<'a>(&'a self, kind: SanKind, domain: &str, issuer_dn: &str, each: &mut dyn FnMut(Owner<'a>)) {
        if self.tables.san_rules.is_empty() {
            return;
        }
        let key = (kind, domain.to_ascii_lowercase(), issuer_dn.to_owned());
        for owner in self.tables.san_rules.get(&key).into_iter().flatten() {
            each(owner_of(owner));
        }
    }

    fn constraints(&self, owner: Owner<'_>) -> Option<&OwnerConstraints> {
        match owner {
            Owner::Platform => self.tables.platform_constraints.as_ref(),
            Owner::Org(org) => self.tables.org_constraints.get(org),
        }
    }

    fn token_issuer(&self, issuer: &str, owner: Owner<'_>) -> Option<TokenIssuer<'_>> {
        let registration = self.tables.issuers.get(issuer)?.iter().find(|r| owner_of(&r.owner) == owner)?;
        Some(TokenIssuer { owner: owner_of(&registration.owner), keys: &registration.keys, audiences: &registration.audiences })
    }

    fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn serials_compare_in_one_spelling() {
        assert_eq!(normalize_serial("0x00:1A:2b"), "1a2b");
        assert_eq!(normalize_serial("00"), "0");
        assert_eq!(normalize_serial("1A2B"), "1a2b");
    }

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
        assert_eq!(data.card_binding(&key), Some(CardBinding { user_id: "u1".into(), org_id: "o1", enabled: false }));
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
            RuleMatch::One(ThumbprintMapping { owner: Owner::Org("o2"), name: "svc" })
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
