//! Who is who: the identity data the decision consults. One interface, two sources — the
//! signed snapshot from the control plane (`crate::snapshot`) and, for development only, data
//! inline in the filter's configuration ([`StaticIdentity`]) — so the decision logic never
//! knows which one it reads.
//!
//! Every rule has an [`Owner`]: one org, or the platform. Lookups take the org the certificate
//! resolved into, and answer only with rules of that org or of the platform; the order in
//! which the org is resolved, and what each rule means for it, is
//! [`crate::decision::resolve`]'s.

mod authority;
mod static_identity;

pub use authority::{CaKey, CertificateAuthority, CA_KEY_LEN};

pub use static_identity::{
    BindingConfig, BlockedConfig, CertificateAuthorityConfig, ConstraintConfig, IdentityConfigError, IssuerConfig, OwnedFingerprintConfig,
    OwnedPrincipalConfig, RevokedSerialConfig, SanRuleConfig, StaticIdentity, StaticIdentityConfig,
    ThumbprintConfig,
};

use crate::certificate::CertificateFacts;
use crate::decision::outcome::NotAllowed;
use crate::encoding::ULID_TEXT_LEN;
use crate::fingerprint::Fingerprint;
use crate::pop::jwks::Jwks;
use serde::Deserialize;
use std::fmt;

/// A row of `smart_card_links`, as the filter needs it. A binding always belongs to an org:
/// the certificate resolves into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardBinding<'a> {
    pub user_id: UserId<'a>,
    pub org_id: &'a str,
    /// A disabled binding is refused with `binding_disabled`, not treated as absent.
    pub enabled: bool,
    /// Whether the control plane saw the certificate whole and checked it against every
    /// org's rules when it was bound ([`Claim`]).
    pub claim: Claim,
}

/// What a binding or thumbprint mapping of an org rests on. A SAN rule is checked by the
/// filter against the certificate itself, so it is always [`Claim::Verified`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Claim {
    /// The control plane saw the certificate (its PEM) and checked it against every org's
    /// SAN rules.
    #[default]
    Verified,
    /// Made by fields or by fingerprint alone: the org's word. It loses to another org's
    /// verified claim on the same certificate ([`crate::decision::resolve`]).
    Unverified,
}

impl Claim {
    pub fn from_verified(verified: bool) -> Self {
        if verified { Claim::Verified } else { Claim::Unverified }
    }

    pub fn is_verified(self) -> bool {
        self == Claim::Verified
    }
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
///
/// One type for the control plane, the snapshot and the decision: `Owner` holds the org's id
/// (storage and the API), `Owner<&str>` borrows it (lookups in a snapshot, the decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner<Id = String> {
    Platform,
    Org(Id),
}

impl<'a> Owner<&'a str> {
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

impl Owner {
    /// The org's id (the `org_id` column); `None` for the platform.
    pub fn org_id(&self) -> Option<&str> {
        self.borrowed().org_id()
    }

    /// The owner, borrowed: as a snapshot's lookups and the decision read it.
    pub fn borrowed(&self) -> Owner<&str> {
        match self {
            Owner::Platform => Owner::Platform,
            Owner::Org(id) => Owner::Org(id),
        }
    }

    /// `None` is the platform.
    pub fn from_column(org_id: Option<String>) -> Owner {
        org_id.map_or(Owner::Platform, Owner::Org)
    }

    /// The owner as one string, `""` for the platform (no org has an empty id): how unique
    /// indexes spell it (`COALESCE(org_id, '')`) and the audit log files platform changes.
    pub fn key(&self) -> &str {
        self.org_id().unwrap_or("")
    }

    pub fn is_platform(&self) -> bool {
        matches!(self, Owner::Platform)
    }
}

impl From<Owner<&str>> for Owner {
    fn from(owner: Owner<&str>) -> Self {
        match owner {
            Owner::Platform => Owner::Platform,
            Owner::Org(id) => Owner::Org(id.to_owned()),
        }
    }
}

impl<Id: AsRef<str>> fmt::Display for Owner<Id> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Platform => f.write_str("the platform"),
            Owner::Org(org) => write!(f, "org {}", org.as_ref()),
        }
    }
}

/// Serialized as two fields of the record it belongs to: `"scope": "org"|"platform"` and
/// `"org_id"` (`null` for the platform), as the control plane's API shows it.
impl<Id: AsRef<str>> serde::Serialize for Owner<Id> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (scope, org_id) = match self {
            Owner::Platform => ("platform", None),
            Owner::Org(id) => ("org", Some(id.as_ref())),
        };
        let mut fields = serializer.serialize_struct("Owner", 2)?;
        fields.serialize_field("scope", scope)?;
        fields.serialize_field("org_id", &org_id)?;
        fields.end()
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
    pub owner: Owner<&'a str>,
    pub name: &'a str,
    /// What an org's mapping rests on (a platform mapping claims nothing either way).
    pub claim: Claim,
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
    /// The certificate's CA must have a fresh CRL, whatever the CA's own policy says: an org
    /// tightening revocation for its own users (the value is `true`).
    RequireFreshCrl,
}

impl ConstraintKind {
    /// The name the control plane's API and database use.
    pub fn name(self) -> &'static str {
        match self {
            ConstraintKind::AllowedIssuerDn => "allowed_issuer_dn",
            ConstraintKind::RequiredPolicyOid => "required_policy_oid",
            ConstraintKind::SanEmailDomain => "san_email_domain",
            ConstraintKind::RequireFreshCrl => "require_fresh_crl",
        }
    }

    pub const ALL: [ConstraintKind; 4] = [
        ConstraintKind::AllowedIssuerDn,
        ConstraintKind::RequiredPolicyOid,
        ConstraintKind::SanEmailDomain,
        ConstraintKind::RequireFreshCrl,
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether `value` is one this kind can hold: `require_fresh_crl` is a switch, `true`.
    pub fn accepts_value(self, value: &str) -> bool {
        match self {
            ConstraintKind::RequireFreshCrl => value == REQUIRE_FRESH_CRL_VALUE,
            _ => !value.is_empty(),
        }
    }
}

/// The one value of a [`ConstraintKind::RequireFreshCrl`] constraint.
pub const REQUIRE_FRESH_CRL_VALUE: &str = "true";

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
    /// The certificate's CA must have a fresh CRL ([`crate::decision::revocation`] checks it,
    /// not [`OwnerConstraints::check`]).
    pub require_fresh_crl: bool,
}

impl OwnerConstraints {
    pub fn add(&mut self, kind: ConstraintKind, value: &str) {
        match kind {
            ConstraintKind::AllowedIssuerDn => self.allowed_issuer_dns.push(value.to_owned()),
            ConstraintKind::RequiredPolicyOid => self.required_policy_oids.push(value.to_owned()),
            ConstraintKind::SanEmailDomain => {
                self.san_email_domains.push(value.trim_start_matches('@').to_ascii_lowercase())
            }
            ConstraintKind::RequireFreshCrl => self.require_fresh_crl = true,
        }
    }

    /// Whether no kind that [`OwnerConstraints::check`] checks is listed.
    pub fn is_empty(&self) -> bool {
        self.allowed_issuer_dns.is_empty() && self.required_policy_oids.is_empty() && self.san_email_domains.is_empty()
    }

    /// Whether `facts` satisfy every listed kind but the CRL requirement, and if not the first
    /// kind they miss. Incomplete facts (a source that gives no issuer, policies or emails)
    /// satisfy nothing that is listed.
    pub fn check(&self, facts: &CertificateFacts) -> Result<(), NotAllowed> {
        if self.is_empty() {
            return Ok(());
        }
        if !facts.complete {
            return Err(NotAllowed::FactsUnavailable);
        }
        if !self.allowed_issuer_dns.is_empty() && !self.allowed_issuer_dns.contains(&facts.issuer_dn) {
            return Err(NotAllowed::IssuerNotAllowed);
        }
        if !self.required_policy_oids.is_empty()
            && !facts.policy_oids.iter().any(|oid| self.required_policy_oids.contains(oid))
        {
            return Err(NotAllowed::PolicyOidMissing);
        }
        if !self.san_email_domains.is_empty() {
            let mut emails = facts.emails().peekable();
            if emails.peek().is_none() {
                return Err(NotAllowed::SanDomain);
            }
            let in_domains = |email: &str| {
                email.rsplit_once('@').is_some_and(|(_, d)| self.san_email_domains.iter().any(|a| a.eq_ignore_ascii_case(d)))
            };
            if !emails.all(in_domains) {
                return Err(NotAllowed::SanDomain);
            }
        }
        Ok(())
    }
}

/// A token issuer registered by one owner: its signing keys and, when listed, the audiences
/// its tokens must name (besides the deployment's own).
#[derive(Debug, Clone, Copy)]
pub struct TokenIssuer<'a> {
    pub owner: Owner<&'a str>,
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
    fn san_rule_owners<'a>(&'a self, kind: SanKind, domain: &str, issuer_dn: &str, each: &mut dyn FnMut(Owner<&'a str>));
    /// The explicit mapping of this certificate; two owners mapping it is ambiguous.
    fn thumbprint_mapping(&self, fingerprint: &Fingerprint) -> RuleMatch<ThumbprintMapping<'_>> {
        let mut found = RuleMatch::Unmatched;
        self.thumbprint_mappings(fingerprint, &mut |mapping| found = found.and(mapping));
        found
    }
    /// Which owner lets a SAN of `kind` in `domain` name a principal when the certificate was
    /// issued by `issuer_dn`; two owners is ambiguous.
    fn san_rule(&self, kind: SanKind, domain: &str, issuer_dn: &str) -> RuleMatch<Owner<&str>> {
        let mut found = RuleMatch::Unmatched;
        self.san_rule_owners(kind, domain, issuer_dn, &mut |owner| found = found.and(owner));
        found
    }
    /// The constraints `owner` sets, if any.
    fn constraints(&self, owner: Owner<&str>) -> Option<&OwnerConstraints>;
    /// The registered CA whose key is `key`.
    fn certificate_authority(&self, key: &CaKey) -> Option<CertificateAuthority<'_>>;
    /// Every registered CA whose subject is `subject_dn`, handed to `each`: how a certificate
    /// without an AuthorityKeyIdentifier finds its CA.
    fn certificate_authorities_named<'a>(&'a self, subject_dn: &str, each: &mut dyn FnMut(CertificateAuthority<'a>));
    /// Whether any CA is registered: a certificate whose source gives no issuer key or serial
    /// is then refused, as its revocation cannot be checked.
    fn has_certificate_authorities(&self) -> bool;
    /// Whether the verified CRL of `ca` lists the serial `serial_hex`.
    fn is_crl_revoked(&self, ca: &CaKey, serial_hex: &str) -> bool;
    /// `owner`'s registration of the token issuer whose `iss` is exactly `issuer`.
    fn token_issuer(&self, issuer: &str, owner: Owner<&str>) -> Option<TokenIssuer<'_>>;
    /// Changes whenever any answer above may change: verified-token caches are keyed on it,
    /// so a key removed from an issuer stops being honoured at once.
    fn generation(&self) -> u64;
}

/// Serials are compared as lowercase hex without separators or a `0x` prefix.
pub fn normalize_serial(serial: &str) -> String {
    let s = serial.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    let s: String = s.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() { "0".to_string() } else { trimmed.to_string() }
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
}
