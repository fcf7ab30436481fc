//! The one vocabulary for a change on its way from the database to the snapshot: a storage
//! function that commits a change the filter sees returns the [`Change`]s it made, the API
//! hands them to the snapshot service with their version, and the builder folds them into
//! the next snapshot.

use super::Owner;
use certbind_shared::certificate::KeyIdentifier;
use certbind_shared::identity::{Claim, SanKind};
use certbind_shared::snapshot::ConstraintKind;
use certbind_shared::Fingerprint;

/// One committed change to what the filter sees. Rules carry their owner: an org's apply to
/// certificates of that org, the platform's to all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A binding created, enabled, disabled or relabelled: its row as committed.
    UpsertBinding(BindingRecord),
    RemoveBinding { fingerprint: Fingerprint },
    Block { owner: Owner, fingerprint: Fingerprint },
    Unblock { owner: Owner, fingerprint: Fingerprint },
    RevokeSerial(RevokedSerialRecord),
    UnrevokeSerial(RevokedSerialRecord),
    MapPrincipal(MappingRecord),
    UnmapPrincipal { owner: Owner, fingerprint: Fingerprint },
    AddSanRule(SanRuleRecord),
    RemoveSanRule(SanRuleRecord),
    AddConstraint(ConstraintRecord),
    RemoveConstraint(ConstraintRecord),
    /// A trusted issuer registered or changed.
    UpsertIssuer(IssuerRecord),
    RemoveIssuer { owner: Owner, issuer: String },
    /// A CA registered, its policy changed, or its CRL's deadline moved. Platform data: a CA
    /// is shared infrastructure.
    UpsertCa(CaRecord),
    /// A CA removed (its CRL's revocations go with [`Change::CrlUnrevoke`]).
    RemoveCa { key: KeyIdentifier },
    /// Serials the CA's verified CRL lists, as [`certbind_shared::crl::Serial::to_hex`]
    /// spells them.
    CrlRevoke { ca: KeyIdentifier, serials: Vec<String> },
    /// Serials the CA's CRL no longer lists (a newer CRL, a released hold, the CA removed).
    CrlUnrevoke { ca: KeyIdentifier, serials: Vec<String> },
}

/// A card binding as the snapshot carries it: what storage reads for a build, what a change
/// carries, what the snapshot's content holds. Disabled ones are kept (the filter answers
/// them `binding_disabled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRecord {
    pub fingerprint: Fingerprint,
    pub user_id: String,
    pub org_id: String,
    pub enabled: bool,
    /// Whether it was bound from the certificate itself (see [`Claim`]).
    pub claim: Claim,
}

/// A revoked certificate by issuer and serial: `issuer_dn` canonical RFC 4514, `serial` as
/// storage keeps it, normalised (the snapshot's builder accepts any spelling
/// `normalize_serial` does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerialRecord {
    pub owner: Owner,
    pub issuer_dn: String,
    pub serial: String,
}

/// A thumbprint mapping: `principal` is the name as its owner wrote it, an org-local name or a
/// platform principal (the filter composes an org's into the org's namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingRecord {
    pub owner: Owner,
    pub fingerprint: Fingerprint,
    pub principal: String,
    /// Whether it was mapped from the certificate itself (see [`Claim`]).
    pub claim: Claim,
}

/// A SAN rule: certificates of `issuer_dn` (canonical) with a SAN of `kind` in `domain`
/// resolve into the rule's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanRuleRecord {
    pub owner: Owner,
    pub kind: SanKind,
    pub domain: String,
    pub issuer_dn: String,
}

/// One value of a certificate constraint of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintRecord {
    pub owner: Owner,
    pub kind: ConstraintKind,
    pub value: String,
}

/// A trusted token issuer's registration: its keys and, when it lists any, the audiences its
/// tokens must name one of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerRecord {
    pub owner: Owner,
    /// The exact `iss` of its tokens.
    pub issuer: String,
    pub audiences: Vec<String>,
    /// The JWKS JSON document.
    pub jwks_json: Vec<u8>,
}

/// A registered CA as the snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRecord {
    pub key: KeyIdentifier,
    pub subject_dn: String,
    pub require_fresh_crl: bool,
    pub fail_open: bool,
    /// The held CRL's nextUpdate plus the CA's grace period, Unix seconds; `None`: no
    /// verified CRL held.
    pub crl_valid_until: Option<i64>,
}

/// A storage function's result for a change the filter sees: what it returns to the caller,
/// the version it committed at, and the changes to hand to the snapshot service.
#[derive(Debug, Clone)]
pub struct Committed<T> {
    pub value: T,
    pub version: i64,
    pub changes: Vec<Change>,
}

/// Most serials one CRL change writes into the snapshot log. A CRL's daily difference is
/// hundreds to thousands of serials; a first CRL of a million would write 34 MB of log row,
/// kept for as long as the log keeps versions. Past this the row names the CA only, and a
/// service that reads it (not the one the change was handed to) rebuilds from the tables,
/// where the serials are.
pub const LOGGED_SERIALS_MAX: usize = 10_000;

/// A change as the snapshot log stores it (JSON): `op`, then the fields that op has. Owners
/// are an org id, or absent for the platform.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    /// Set on a binding or mapping made without the certificate; absent: verified (as every
    /// change logged before the distinction was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unverified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audiences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwks: Option<String>,
    /// A CA's key identifier, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    require_fresh_crl: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fail_open: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crl_valid_until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    serials: Option<Vec<String>>,
}

fn owner_wire(owner: &Owner) -> Option<String> {
    owner.org_id().map(str::to_string)
}

impl Change {
    /// Whether the change puts something into the snapshot (rather than taking it out).
    pub fn adds(&self) -> bool {
        matches!(
            self,
            Change::UpsertBinding(_)
                | Change::Block { .. }
                | Change::RevokeSerial(_)
                | Change::MapPrincipal(_)
                | Change::AddSanRule(_)
                | Change::AddConstraint(_)
                | Change::UpsertIssuer(_)
                | Change::UpsertCa(_)
                | Change::CrlRevoke { .. }
        )
    }

    /// Serials a CRL change carries (none for other changes).
    fn serial_count(&self) -> usize {
        match self {
            Change::CrlRevoke { serials, .. } | Change::CrlUnrevoke { serials, .. } => serials.len(),
            _ => 0,
        }
    }

    fn to_wire(&self) -> Wire {
        let hex = |fp: &Fingerprint| Some(fp.to_hex());
        let text = |s: &str| Some(s.to_string());
        let op = |name: &str| name.to_string();
        let unverified = |claim: Claim| (!claim.is_verified()).then_some(true);
        match self {
            Change::UpsertBinding(BindingRecord { fingerprint, user_id, org_id, enabled, claim }) => Wire {
                op: op("upsert_binding"),
                fingerprint: hex(fingerprint),
                user_id: text(user_id),
                org_id: text(org_id),
                enabled: Some(*enabled),
                unverified: unverified(*claim),
                ..Wire::default()
            },
            Change::RemoveBinding { fingerprint } => {
                Wire { op: op("remove_binding"), fingerprint: hex(fingerprint), ..Wire::default() }
            }
            Change::Block { owner, fingerprint } | Change::Unblock { owner, fingerprint } => Wire {
                op: op(if matches!(self, Change::Block { .. }) { "block" } else { "unblock" }),
                owner: owner_wire(owner),
                fingerprint: hex(fingerprint),
                ..Wire::default()
            },
            Change::RevokeSerial(RevokedSerialRecord { owner, issuer_dn, serial }) | Change::UnrevokeSerial(RevokedSerialRecord { owner, issuer_dn, serial }) => {
                Wire {
                    op: op(if matches!(self, Change::RevokeSerial(_)) { "revoke_serial" } else { "unrevoke_serial" }),
                    owner: owner_wire(owner),
                    issuer_dn: text(issuer_dn),
                    serial: text(serial),
                    ..Wire::default()
                }
            }
            Change::MapPrincipal(MappingRecord { owner, fingerprint, principal, claim }) => Wire {
                op: op("map_principal"),
                owner: owner_wire(owner),
                fingerprint: hex(fingerprint),
                principal: text(principal),
                unverified: unverified(*claim),
                ..Wire::default()
            },
            Change::UnmapPrincipal { owner, fingerprint } => Wire {
                op: op("unmap_principal"),
                owner: owner_wire(owner),
                fingerprint: hex(fingerprint),
                ..Wire::default()
            },
            Change::AddSanRule(SanRuleRecord { owner, kind, domain, issuer_dn })
            | Change::RemoveSanRule(SanRuleRecord { owner, kind, domain, issuer_dn }) => Wire {
                op: op(if matches!(self, Change::AddSanRule(_)) { "allow_san_domain" } else { "disallow_san_domain" }),
                owner: owner_wire(owner),
                kind: text(kind.as_str()),
                domain: text(domain),
                issuer_dn: text(issuer_dn),
                ..Wire::default()
            },
            Change::AddConstraint(ConstraintRecord { owner, kind, value }) | Change::RemoveConstraint(ConstraintRecord { owner, kind, value }) => Wire {
                op: op(if matches!(self, Change::AddConstraint(_)) { "add_constraint" } else { "remove_constraint" }),
                owner: owner_wire(owner),
                kind: text(kind.name()),
                value: text(value),
                ..Wire::default()
            },
            Change::UpsertIssuer(IssuerRecord { owner, issuer, audiences, jwks_json }) => Wire {
                op: op("upsert_issuer"),
                owner: owner_wire(owner),
                issuer: text(issuer),
                audiences: Some(audiences.clone()),
                jwks: Some(String::from_utf8_lossy(jwks_json).into_owned()),
                ..Wire::default()
            },
            Change::RemoveIssuer { owner, issuer } => Wire {
                op: op("remove_issuer"),
                owner: owner_wire(owner),
                issuer: text(issuer),
                ..Wire::default()
            },
            Change::UpsertCa(ca) => Wire {
                op: op("upsert_ca"),
                ca: Some(ca.key.to_hex()),
                subject_dn: text(&ca.subject_dn),
                require_fresh_crl: Some(ca.require_fresh_crl),
                fail_open: Some(ca.fail_open),
                crl_valid_until: ca.crl_valid_until,
                ..Wire::default()
            },
            Change::RemoveCa { key } => Wire { op: op("remove_ca"), ca: Some(key.to_hex()), ..Wire::default() },
            Change::CrlRevoke { ca, .. } | Change::CrlUnrevoke { ca, .. } if self.serial_count() > LOGGED_SERIALS_MAX => Wire {
                op: op("crl_serials_in_tables"),
                ca: Some(ca.to_hex()),
                ..Wire::default()
            },
            Change::CrlRevoke { ca, serials } | Change::CrlUnrevoke { ca, serials } => Wire {
                op: op(if matches!(self, Change::CrlRevoke { .. }) { "crl_revoke" } else { "crl_unrevoke" }),
                ca: Some(ca.to_hex()),
                serials: Some(serials.clone()),
                ..Wire::default()
            },
        }
    }

    fn from_wire(wire: Wire) -> Option<Change> {
        let owner = Owner::from_column(wire.owner);
        let fingerprint = || wire.fingerprint.as_deref().and_then(|f| Fingerprint::from_canonical_hex(f).ok());
        let ca_key = || wire.ca.as_deref().and_then(KeyIdentifier::from_hex);
        // One spelling: the flag is absent or `true`.
        let claim = || match wire.unverified {
            None => Some(Claim::Verified),
            Some(true) => Some(Claim::Unverified),
            Some(false) => None,
        };
        let san = |k: Option<&str>| match k {
            Some("email") => Some(SanKind::Email),
            Some("upn") => Some(SanKind::Upn),
            _ => None,
        };
        Some(match wire.op.as_str() {
            "upsert_binding" => Change::UpsertBinding(BindingRecord {
                fingerprint: fingerprint()?,
                user_id: wire.user_id?,
                org_id: wire.org_id?,
                enabled: wire.enabled?,
                claim: claim()?,
            }),
            "remove_binding" => Change::RemoveBinding { fingerprint: fingerprint()? },
            "block" => Change::Block { owner, fingerprint: fingerprint()? },
            "unblock" => Change::Unblock { owner, fingerprint: fingerprint()? },
            "revoke_serial" => Change::RevokeSerial(RevokedSerialRecord { owner, issuer_dn: wire.issuer_dn?, serial: wire.serial? }),
            "unrevoke_serial" => Change::UnrevokeSerial(RevokedSerialRecord { owner, issuer_dn: wire.issuer_dn?, serial: wire.serial? }),
            "map_principal" => {
                Change::MapPrincipal(MappingRecord { owner, fingerprint: fingerprint()?, principal: wire.principal?, claim: claim()? })
            }
            "unmap_principal" => Change::UnmapPrincipal { owner, fingerprint: fingerprint()? },
            "allow_san_domain" => Change::AddSanRule(SanRuleRecord {
                owner,
                kind: san(wire.kind.as_deref())?,
                domain: wire.domain?,
                issuer_dn: wire.issuer_dn?,
            }),
            "disallow_san_domain" => Change::RemoveSanRule(SanRuleRecord {
                owner,
                kind: san(wire.kind.as_deref())?,
                domain: wire.domain?,
                issuer_dn: wire.issuer_dn?,
            }),
            "add_constraint" => Change::AddConstraint(ConstraintRecord {
                owner,
                kind: ConstraintKind::from_name(wire.kind.as_deref()?)?,
                value: wire.value?,
            }),
            "remove_constraint" => Change::RemoveConstraint(ConstraintRecord {
                owner,
                kind: ConstraintKind::from_name(wire.kind.as_deref()?)?,
                value: wire.value?,
            }),
            "upsert_issuer" => Change::UpsertIssuer(IssuerRecord {
                owner,
                issuer: wire.issuer?,
                audiences: wire.audiences.unwrap_or_default(),
                jwks_json: wire.jwks?.into_bytes(),
            }),
            "remove_issuer" => Change::RemoveIssuer { owner, issuer: wire.issuer? },
            "upsert_ca" => Change::UpsertCa(CaRecord {
                key: ca_key()?,
                subject_dn: wire.subject_dn?,
                require_fresh_crl: wire.require_fresh_crl?,
                fail_open: wire.fail_open?,
                crl_valid_until: wire.crl_valid_until,
            }),
            "remove_ca" => Change::RemoveCa { key: ca_key()? },
            "crl_revoke" => Change::CrlRevoke { ca: ca_key()?, serials: wire.serials? },
            "crl_unrevoke" => Change::CrlUnrevoke { ca: ca_key()?, serials: wire.serials? },
            // Too many serials for the log: unreadable here, so the reader rebuilds.
            "crl_serials_in_tables" => return None,
            _ => return None,
        })
    }
}

/// The snapshot log's text of a version's changes.
pub fn encode_changes(changes: &[Change]) -> String {
    let wires: Vec<Wire> = changes.iter().map(Change::to_wire).collect();
    serde_json::to_string(&wires).unwrap_or_else(|_| "[]".into())
}

/// Reads [`encode_changes`]'s text back; `None` if any change is unreadable (the reader
/// then rebuilds from the tables instead).
pub fn decode_changes(text: &str) -> Option<Vec<Change>> {
    let wires: Vec<Wire> = serde_json::from_str(text).ok()?;
    wires.into_iter().map(Change::from_wire).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    #[test]
    fn every_change_survives_the_log() {
        let org = Owner::Org("01J000000000000000000000AB".into());
        let changes = vec![
            Change::UpsertBinding(BindingRecord {
                fingerprint: fp(1),
                user_id: "u".into(),
                org_id: "o".into(),
                enabled: false,
                claim: Claim::Verified,
            }),
            Change::UpsertBinding(BindingRecord {
                fingerprint: fp(5),
                user_id: "v".into(),
                org_id: "o".into(),
                enabled: true,
                claim: Claim::Unverified,
            }),
            Change::RemoveBinding { fingerprint: fp(2) },
            Change::Block { owner: org.clone(), fingerprint: fp(3) },
            Change::Unblock { owner: Owner::Platform, fingerprint: fp(3) },
            Change::RevokeSerial(RevokedSerialRecord { owner: org.clone(), issuer_dn: "CN=a\\,b".into(), serial: "0a".into() }),
            Change::UnrevokeSerial(RevokedSerialRecord { owner: Owner::Platform, issuer_dn: "CN=a".into(), serial: "0b".into() }),
            Change::MapPrincipal(MappingRecord { owner: org.clone(), fingerprint: fp(4), principal: "svc".into(), claim: Claim::Verified }),
            Change::MapPrincipal(MappingRecord { owner: org.clone(), fingerprint: fp(6), principal: "svc".into(), claim: Claim::Unverified }),
            Change::UnmapPrincipal { owner: Owner::Platform, fingerprint: fp(4) },
            Change::AddSanRule(SanRuleRecord { owner: org.clone(), kind: SanKind::Upn, domain: "mil".into(), issuer_dn: "CN=x".into() }),
            Change::RemoveSanRule(SanRuleRecord { owner: org.clone(), kind: SanKind::Email, domain: "a.mil".into(), issuer_dn: "CN=y".into() }),
            Change::AddConstraint(ConstraintRecord { owner: org.clone(), kind: ConstraintKind::RequiredPolicyOid, value: "1.2".into() }),
            Change::RemoveConstraint(ConstraintRecord { owner: Owner::Platform, kind: ConstraintKind::SanEmailDomain, value: "a.mil".into() }),
            Change::UpsertIssuer(IssuerRecord {
                owner: org.clone(),
                issuer: "https://idp".into(),
                audiences: vec!["api".into()],
                jwks_json: br#"{"keys":[]}"#.to_vec(),
            }),
            Change::RemoveIssuer { owner: org, issuer: "https://idp".into() },
            Change::UpsertCa(CaRecord {
                key: KeyIdentifier::new(&[0xab, 0x01]).unwrap(),
                subject_dn: "CN=ICAM Test Card Signing CA".into(),
                require_fresh_crl: true,
                fail_open: false,
                crl_valid_until: Some(1_767_225_600),
            }),
            Change::UpsertCa(CaRecord {
                key: KeyIdentifier::new(&[0xab, 0x02]).unwrap(),
                subject_dn: "CN=ICAM Test Card Signing CA".into(),
                require_fresh_crl: false,
                fail_open: true,
                crl_valid_until: None,
            }),
            Change::RemoveCa { key: KeyIdentifier::new(&[0xab, 0x02]).unwrap() },
            Change::CrlRevoke { ca: KeyIdentifier::new(&[0xab, 0x01]).unwrap(), serials: vec!["1001".into(), "-5".into()] },
            Change::CrlUnrevoke { ca: KeyIdentifier::new(&[0xab, 0x01]).unwrap(), serials: vec![] },
        ];
        assert_eq!(decode_changes(&encode_changes(&changes)), Some(changes));
        let large = vec![Change::CrlRevoke {
            ca: KeyIdentifier::new(&[0xab, 0x01]).unwrap(),
            serials: (0..=LOGGED_SERIALS_MAX).map(|i| format!("{i:x}")).collect(),
        }];
        let logged = encode_changes(&large);
        assert!(logged.len() < 100, "{logged}");
        assert_eq!(decode_changes(&logged), None, "read as a rebuild from the tables");
        assert_eq!(decode_changes("[]"), Some(Vec::new()));
        assert_eq!(decode_changes(r#"[{"op":"block"}]"#), None);
        assert_eq!(decode_changes(r#"[{"op":"teleport"}]"#), None);
        assert_eq!(decode_changes("not json"), None);
    }
}
