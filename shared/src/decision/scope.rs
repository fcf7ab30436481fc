//! Token issuers in a request's scope. Issuers are registered per owner: two orgs may
//! register the same `iss`, each with its own keys and audiences. An org's registrations
//! apply only to tokens presented with a certificate that resolved into that org; the
//! platform's apply to every request (a route with no certificate accepts only those).
//!
//! Since anyone may register any `iss`, the token's identity is forwarded in the namespace of
//! the registration that verified it ([`forwarded_token`]): upstreams key on (owner, issuer,
//! subject), and no org can mint a triple the platform's or another org's tokens carry.
//!
//! This is where identity data becomes a key source for [`crate::pop`]: `pop` verifies tokens
//! against any [`IssuerKeys`] and knows nothing of owners or identity data, and `identity`
//! holds parsed key sets; the decision joins the two.

use crate::identity::{is_reserved_issuer, IdentityData, Owner, TokenIssuer, ORG_ISSUER_PREFIX};
use crate::pop::jwks::Jwks;
use crate::pop::jwt::{verify, ForwardedToken, IssuerKeys, TokenRequirements, VerifiedToken};
use crate::pop::token_error::TokenError;
use super::resolve::header_safe;

/// One owner's registrations, as a key source for [`verify`].
pub struct OwnerIssuers<'a> {
    pub identity: &'a dyn IdentityData,
    pub owner: Owner<&'a str>,
}

impl<'a> OwnerIssuers<'a> {
    /// The owner's registration of `issuer`. A platform registration whose `iss` could pass
    /// for an org's forwarded issuer (`org:…`) is never honoured.
    fn registration(&self, issuer: &str) -> Option<TokenIssuer<'a>> {
        if self.owner == Owner::Platform && is_reserved_issuer(issuer) {
            return None;
        }
        self.identity.token_issuer(issuer, self.owner)
    }
}

impl IssuerKeys for OwnerIssuers<'_> {
    fn issuer_keys(&self, issuer: &str) -> Option<&Jwks> {
        self.registration(issuer).map(|registration| registration.keys)
    }
}

/// Verifies `token` against the registrations that apply to a request whose certificate
/// resolved into `org` (`None`: no certificate, or no org): the platform's first, then the
/// org's, so a token the platform's registration accepts is the platform's whatever the scope
/// (and whatever a cache remembers). A registration that lists audiences accepts only a token
/// naming one of them (besides `requirements.audiences`). The token returned records whose
/// registration accepted it ([`VerifiedToken::registration`]), so a cache of verified
/// tokens can tell whether a hit applies to the next request's scope, and the forwarded
/// identity names its owner.
pub fn verify_in_scope(
    token: &str,
    identity: &dyn IdentityData,
    org: Option<&str>,
    requirements: &TokenRequirements<'_>,
) -> Result<VerifiedToken, TokenError> {
    let mut refusal = TokenError::UnknownIssuer;
    for owner in [Owner::Platform].into_iter().chain(org.map(Owner::Org)) {
        let issuers = OwnerIssuers { identity, owner };
        match verify(token, &issuers, requirements) {
            Ok(mut verified) => {
                let Some(registration) = issuers.registration(&verified.issuer) else { continue };
                if !registration.audiences.is_empty() && !verified.has_audience(registration.audiences) {
                    refusal = TokenError::WrongAudience;
                    continue;
                }
                verified.registration = owner.into();
                verified.forwarded = Some(forwarded_token(&verified));
                return Ok(verified);
            }
            // Another owner's registration of the same `iss` may hold the key.
            Err(TokenError::UnknownIssuer) => {}
            Err(e @ (TokenError::UnknownKey | TokenError::BadSignature | TokenError::Jwks(_))) => refusal = e,
            // Nothing another registration could change: shape, algorithm, lifetime, audience.
            Err(e) => return Err(e),
        }
    }
    Err(refusal)
}

/// The forwarded token identity ([`VerifiedToken::forwarded`]): the owner, `platform` and
/// the bare `iss` for the platform's registration, `org:{org}` and `org:{org}:{iss}` for an
/// org's; and the subject. Each made fit for a header value.
pub fn forwarded_token(token: &VerifiedToken) -> ForwardedToken {
    let (owner, issuer) = match &token.registration {
        Owner::Platform => ("platform".to_owned(), header_safe(&token.issuer)),
        Owner::Org(org) => (
            header_safe(&format!("{ORG_ISSUER_PREFIX}{org}")),
            header_safe(&format!("{ORG_ISSUER_PREFIX}{org}:{}", token.issuer)),
        ),
    };
    ForwardedToken { owner, issuer, subject: token.subject.as_deref().map(header_safe) }
}
