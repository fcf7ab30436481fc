//! The two-org matrix's rows, written once for every layer that runs them (the decision over
//! identity data, the control plane's API through its signed snapshot): each kind of rule an
//! owner can make, what it does to a certificate in its owner's scope, and whether another
//! org's rule of that kind claims the certificate it names. Each layer maps a kind onto its own
//! form of the rule (identity data, an API request) and asserts these effects.
//!
//! The conflict matrix's rows too: the steps at which an org claims a certificate
//! ([`ClaimStep`]), so every layer runs each pair of steps in both directions.

use super::outcome::{NotAllowed, Reason};

/// A kind of rule an org or the platform makes about certificates or tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleKind {
    /// A blocklist entry by fingerprint.
    Block,
    /// A revoked serial of the certificate's issuer.
    Revoke,
    /// An allowed-issuer constraint naming another CA.
    AllowedIssuer,
    /// A required-policy constraint the certificate lacks.
    RequiredPolicy,
    /// A SAN email domain constraint the certificate's emails are outside.
    EmailDomain,
    /// A trusted token issuer registration.
    Issuer,
    /// A thumbprint mapping of the certificate.
    Mapping,
    /// A SAN rule naming the certificate's UPN domain and issuer.
    SanRule,
}

impl RuleKind {
    pub const ALL: [RuleKind; 8] = [
        RuleKind::Block,
        RuleKind::Revoke,
        RuleKind::AllowedIssuer,
        RuleKind::RequiredPolicy,
        RuleKind::EmailDomain,
        RuleKind::Issuer,
        RuleKind::Mapping,
        RuleKind::SanRule,
    ];

    /// What a rule of this kind refuses a certificate in its owner's scope (an org's own, or
    /// any for the platform's) with. `None`: it refuses nothing — an issuer lets that owner's
    /// tokens verify; a mapping or SAN rule names a certificate, which a binding answers first.
    pub fn refusal(self) -> Option<Reason> {
        match self {
            RuleKind::Block => Some(Reason::CertificateBlocklisted),
            RuleKind::Revoke => Some(Reason::CertificateRevoked),
            RuleKind::AllowedIssuer => Some(Reason::CertificateNotAllowed(NotAllowed::IssuerNotAllowed)),
            RuleKind::RequiredPolicy => Some(Reason::CertificateNotAllowed(NotAllowed::PolicyOidMissing)),
            RuleKind::EmailDomain => Some(Reason::CertificateNotAllowed(NotAllowed::SanDomain)),
            RuleKind::Issuer | RuleKind::Mapping | RuleKind::SanRule => None,
        }
    }

    /// Whether another org's rule of this kind, naming a certificate an org holds, claims it
    /// too: the filter refuses a certificate two orgs claim, and the control plane refuses
    /// such a rule before the filter would have to.
    pub fn claims(self) -> bool {
        matches!(self, RuleKind::Mapping | RuleKind::SanRule)
    }
}

/// A step at which an org claims a certificate, in the order the filter resolves the org
/// ([`crate::decision::resolve`]). Two orgs claiming one certificate, at any two steps, is a
/// conflict that refuses it; one org at two steps is none (the earlier step decides); the
/// platform's mapping or SAN rule claims nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClaimStep {
    /// A card binding to one of the org's users.
    Binding,
    /// A thumbprint mapping to a principal.
    Mapping,
    /// A SAN rule naming the certificate's UPN domain and issuer.
    SanRule,
}

impl ClaimStep {
    pub const ALL: [ClaimStep; 3] = [ClaimStep::Binding, ClaimStep::Mapping, ClaimStep::SanRule];

    /// Every ordered pair of two different steps: (the first org's, the second org's).
    pub fn pairs() -> impl Iterator<Item = (ClaimStep, ClaimStep)> {
        ClaimStep::ALL.into_iter().flat_map(|a| ClaimStep::ALL.into_iter().filter(move |b| *b != a).map(move |b| (a, b)))
    }

    /// Whether the platform can claim at this step (it binds no card: a binding names a user
    /// of an org).
    pub fn open_to_the_platform(self) -> bool {
        self != ClaimStep::Binding
    }

    pub fn name(self) -> &'static str {
        match self {
            ClaimStep::Binding => "binding",
            ClaimStep::Mapping => "mapping",
            ClaimStep::SanRule => "SAN rule",
        }
    }
}
