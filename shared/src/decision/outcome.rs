//! The filter's answer: forward with trusted identity headers, or refuse with a stable reason.
//! The refusal contract (status, reason, problem+json body, headers; the operator's detail and
//! log line) lives here so that the native tests and the `.wasm` agree byte for byte.

/// Every reason the filter refuses a request for. The string forms are a public contract:
/// clients, dashboards and alerts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A `:path` whose meaning depends on how the upstream decodes it (see
    /// [`super::path`]).
    InvalidPath,
    MalformedClientCert,
    CertificateMissing,
    CertificateExpired,
    CertificateBlocklisted,
    CertificateRevoked,
    /// The certificate's CA requires a fresh CRL and none is held (see
    /// [`super::revocation`]).
    RevocationUnknown,
    TokenMissing,
    InvalidToken,
    SenderBindingMismatch,
    /// The certificate verified but a constraint, or the orgs' claims, exclude it; which one
    /// is the detail operators see, never the client.
    CertificateNotAllowed(NotAllowed),
    CardNotEnrolled,
    BindingDisabled,
    IdentityUnavailable,
}

/// Why a certificate was not allowed (`certificate_not_allowed`): a stable sub-reason for the
/// log line and the counters. The client's answer is the reason's alone, whatever the detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotAllowed {
    /// A PIV Card Authentication certificate (no PIN behind it) where the route does not allow
    /// one.
    CardAuthentication,
    /// None of the policy OIDs required, by the route or by an owner's constraint.
    PolicyOidMissing,
    /// An issuer DN the route's, or an owner's, allowed issuers do not list.
    IssuerNotAllowed,
    /// No RFC 822 SAN, or one outside the domains the route or an owner's constraint allows.
    SanDomain,
    /// Two orgs claim the certificate, neither by the certificate itself.
    ClaimedByTwoOrgs,
    /// The certificate source gives no fact a check needs (issuer, serial, validity, policies,
    /// EKUs, SANs): nothing is passed for want of the means to check it.
    FactsUnavailable,
}

impl NotAllowed {
    pub const ALL: [NotAllowed; 6] = [
        NotAllowed::CardAuthentication,
        NotAllowed::PolicyOidMissing,
        NotAllowed::IssuerNotAllowed,
        NotAllowed::SanDomain,
        NotAllowed::ClaimedByTwoOrgs,
        NotAllowed::FactsUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotAllowed::CardAuthentication => "card_authentication",
            NotAllowed::PolicyOidMissing => "policy_oid_missing",
            NotAllowed::IssuerNotAllowed => "issuer_not_allowed",
            NotAllowed::SanDomain => "san_domain",
            NotAllowed::ClaimedByTwoOrgs => "claimed_by_two_orgs",
            NotAllowed::FactsUnavailable => "facts_unavailable",
        }
    }
}

/// The detail of a reason that has no sub-reasons.
pub const NO_DETAIL: &str = "none";

impl Reason {
    /// Every refusal, each sub-reason its own: what the counters count.
    pub const ALL: [Reason; 19] = [
        Reason::InvalidPath,
        Reason::MalformedClientCert,
        Reason::CertificateMissing,
        Reason::CertificateExpired,
        Reason::CertificateBlocklisted,
        Reason::CertificateRevoked,
        Reason::RevocationUnknown,
        Reason::TokenMissing,
        Reason::InvalidToken,
        Reason::SenderBindingMismatch,
        Reason::CertificateNotAllowed(NotAllowed::CardAuthentication),
        Reason::CertificateNotAllowed(NotAllowed::PolicyOidMissing),
        Reason::CertificateNotAllowed(NotAllowed::IssuerNotAllowed),
        Reason::CertificateNotAllowed(NotAllowed::SanDomain),
        Reason::CertificateNotAllowed(NotAllowed::ClaimedByTwoOrgs),
        Reason::CertificateNotAllowed(NotAllowed::FactsUnavailable),
        Reason::CardNotEnrolled,
        Reason::BindingDisabled,
        Reason::IdentityUnavailable,
    ];

    /// The stable sub-reason operators see (log line, counters): [`NO_DETAIL`] for a reason
    /// that has none.
    pub fn detail(self) -> &'static str {
        match self {
            Reason::CertificateNotAllowed(detail) => detail.as_str(),
            _ => NO_DETAIL,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidPath => "invalid_path",
            Reason::MalformedClientCert => "malformed_client_cert",
            Reason::CertificateMissing => "certificate_missing",
            Reason::CertificateExpired => "certificate_expired",
            Reason::CertificateBlocklisted => "certificate_blocklisted",
            Reason::CertificateRevoked => "certificate_revoked",
            Reason::RevocationUnknown => "revocation_unknown",
            Reason::TokenMissing => "token_missing",
            Reason::InvalidToken => "invalid_token",
            Reason::SenderBindingMismatch => "sender_binding_mismatch",
            Reason::CertificateNotAllowed(_) => "certificate_not_allowed",
            Reason::CardNotEnrolled => "card_not_enrolled",
            Reason::BindingDisabled => "binding_disabled",
            Reason::IdentityUnavailable => "identity_unavailable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Reason::InvalidPath | Reason::MalformedClientCert => 400,
            Reason::CertificateMissing
            | Reason::CertificateExpired
            | Reason::CertificateBlocklisted
            | Reason::CertificateRevoked
            | Reason::RevocationUnknown
            | Reason::TokenMissing
            | Reason::InvalidToken
            | Reason::SenderBindingMismatch => 401,
            Reason::CertificateNotAllowed(_) | Reason::CardNotEnrolled | Reason::BindingDisabled => 403,
            Reason::IdentityUnavailable => 503,
        }
    }

    /// Human text for the problem `title`. Generic on purpose: it must never carry
    /// certificate or token details.
    pub fn title(self) -> &'static str {
        match self {
            Reason::InvalidPath => "The request path is ambiguous or malformed",
            Reason::MalformedClientCert => "The client certificate header is malformed",
            Reason::CertificateMissing => "A client certificate is required",
            Reason::CertificateExpired => "The client certificate is outside its validity period",
            Reason::CertificateBlocklisted => "The client certificate is blocked",
            Reason::CertificateRevoked => "The client certificate is revoked",
            Reason::RevocationUnknown => "The client certificate's revocation status is unknown",
            Reason::TokenMissing => "A bearer token is required",
            Reason::InvalidToken => "The bearer token is not valid",
            Reason::SenderBindingMismatch => "The bearer token is not bound to this client certificate",
            Reason::CertificateNotAllowed(_) => "The client certificate is not allowed here",
            Reason::CardNotEnrolled => "The smart card is not enrolled",
            Reason::BindingDisabled => "The smart card binding is disabled",
            Reason::IdentityUnavailable => "Identity data is unavailable",
        }
    }

    fn is_token_reason(self) -> bool {
        matches!(self, Reason::TokenMissing | Reason::InvalidToken | Reason::SenderBindingMismatch)
    }
}

/// A refusal, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
}

impl Denial {
    pub fn status(&self) -> u16 {
        self.reason.status()
    }

    /// `application/problem+json` (RFC 9457) with a stable machine-readable `reason`.
    pub fn body(&self) -> String {
        let r = self.reason;
        // Every interpolated value is a fixed ASCII string without quotes or backslashes,
        // so plain formatting yields valid JSON without an encoder.
        format!(
            "{{\"type\":\"urn:certbind:problem:{reason}\",\"title\":\"{title}\",\"status\":{status},\"reason\":\"{reason}\"}}",
            reason = r.as_str(),
            title = r.title(),
            status = r.status()
        )
    }

    /// The line the filter logs for the refusal: status, reason and detail, nothing of the
    /// certificate or the token.
    pub fn log_line(&self) -> String {
        format!("certbind: refused {} {} (detail {})", self.status(), self.reason.as_str(), self.reason.detail())
    }

    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "application/problem+json".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        if self.reason.status() == 401 {
            headers.push(("www-authenticate", self.www_authenticate()));
        }
        headers
    }

    fn www_authenticate(&self) -> String {
        let r = self.reason;
        if r == Reason::TokenMissing {
            // RFC 6750 §3.1: no error code when the request carried no credentials.
            "Bearer realm=\"certbind\"".to_string()
        } else if r.is_token_reason() {
            format!("Bearer realm=\"certbind\", error=\"invalid_token\", error_description=\"{}\"", r.as_str())
        } else {
            format!("ClientCertificate realm=\"certbind\", error=\"{}\"", r.as_str())
        }
    }
}

/// Trusted headers set on success (lowercase names, as HTTP/2 requires).
pub mod header {
    pub const FINGERPRINT: &str = "x-dm-smartcard-fingerprint";
    pub const SUBJECT: &str = "x-dm-smartcard-subject";
    pub const ISSUER: &str = "x-dm-smartcard-issuer";
    pub const SERIAL: &str = "x-dm-smartcard-serial";
    pub const USER: &str = "x-dm-user-id";
    pub const ORG: &str = "x-dm-org-id";
    pub const PRINCIPAL: &str = "x-dm-principal";
    pub const TOKEN_SUBJECT: &str = "x-dm-token-subject";
    /// The token's `iss`, in the namespace of the registration that verified it: as given for
    /// the platform's, `org:{org}:{iss}` for an org's.
    pub const TOKEN_ISSUER: &str = "x-dm-token-issuer";
    /// Whose registration verified the token: `platform` or `org:{org}`.
    pub const TOKEN_OWNER: &str = "x-dm-token-owner";
    /// Prefix of every header this project sets: any inbound header with it is spoofed.
    pub const TRUSTED_PREFIX: &str = "x-dm-";
}

/// Something an allowed request passed by that operators must see counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notice {
    /// The certificate's CA requires a fresh CRL, none is held, and the CA fails open.
    RevocationFailOpen,
}

impl Notice {
    pub const ALL: [Notice; 1] = [Notice::RevocationFailOpen];

    pub fn as_str(self) -> &'static str {
        match self {
            Notice::RevocationFailOpen => "revocation_fail_open",
        }
    }
}

/// What happens to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward, after removing every inbound identity header and adding `set`; `notice`, if
    /// any, is counted.
    Allow { set: Vec<(&'static str, String)>, notice: Option<Notice> },
    Deny(Denial),
}

impl Outcome {
    pub fn deny(reason: Reason) -> Self {
        Outcome::Deny(Denial { reason })
    }

    pub fn reason(&self) -> Option<Reason> {
        match self {
            Outcome::Allow { .. } => None,
            Outcome::Deny(d) => Some(d.reason),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Outcome::Allow { .. } => 200,
            Outcome::Deny(d) => d.status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_design_table() {
        let by_status = |s: u16| Reason::ALL.iter().filter(|r| r.status() == s).count();
        assert_eq!(by_status(400), 2);
        assert_eq!(by_status(401), 8);
        assert_eq!(by_status(403), 2 + NotAllowed::ALL.len());
        assert_eq!(by_status(503), 1);
    }

    #[test]
    fn a_detail_is_the_operators_alone() {
        let details: Vec<&str> = NotAllowed::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(
            details,
            ["card_authentication", "policy_oid_missing", "issuer_not_allowed", "san_domain", "claimed_by_two_orgs", "facts_unavailable"]
        );
        let answers: Vec<_> = NotAllowed::ALL
            .iter()
            .map(|d| {
                let denial = Denial { reason: Reason::CertificateNotAllowed(*d) };
                (denial.status(), denial.headers(), denial.body())
            })
            .collect();
        // One answer to the client, whatever the detail.
        assert!(answers.windows(2).all(|pair| pair[0] == pair[1]), "{answers:?}");
        assert!(!answers[0].2.contains("card_authentication"));
        let denial = Denial { reason: Reason::CertificateNotAllowed(NotAllowed::SanDomain) };
        assert_eq!(denial.log_line(), "certbind: refused 403 certificate_not_allowed (detail san_domain)");
        assert_eq!(Denial { reason: Reason::CardNotEnrolled }.log_line(), "certbind: refused 403 card_not_enrolled (detail none)");
    }

    #[test]
    fn bodies_are_json_and_401s_challenge() {
        for reason in Reason::ALL {
            let denial = Denial { reason };
            let body: serde_json::Value = serde_json::from_str(&denial.body()).unwrap();
            assert_eq!(body["reason"], reason.as_str());
            assert_eq!(body["status"], u64::from(reason.status()));
            let headers = denial.headers();
            assert!(headers.contains(&("cache-control", "no-store".into())));
            assert_eq!(headers.iter().any(|(n, _)| *n == "www-authenticate"), reason.status() == 401);
        }
    }
}
