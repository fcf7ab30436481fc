//! Token issuers in a request's scope. Issuers are registered per owner: two orgs may
//! register the same `iss`, each with its own keys and audiences. An org's registrations
//! apply only to tokens presented with a certificate that resolved into that org; the
//! platform's apply to every request (a route with no certificate accepts only those).
//!
//! This is where identity data becomes a key source for [`crate::pop`]: `pop` verifies tokens
//! against any [`IssuerKeys`] and knows nothing of owners or identity data, and `identity`
//! holds parsed key sets; the decision joins the two.

use crate::identity::{IdentityData, Owner};
use crate::pop::jwks::Jwks;
use crate::pop::jwt::{verify, IssuerKeys, TokenError, TokenRequirements, VerifiedToken};

/// One owner's registrations, as a key source for [`verify`].
pub struct OwnerIssuers<'a> {
    pub identity: &'a dyn IdentityData,
    pub owner: Owner<'a>,
}

impl IssuerKeys for OwnerIssuers<'_> {
    fn issuer_keys(&self, issuer: &str) -> Option<&Jwks> {
        self.identity.token_issuer(issuer, self.owner).map(|registration| registration.keys)
    }
}

/// Verifies `token` against the registrations that apply to a request whose certificate
/// resolved into `org` (`None`: no certificate, or no org): the org's first, then the
/// platform's. A registration that lists audiences accepts only a token naming one of them
/// (besides `requirements.audiences`). The token returned records whose registration
/// accepted it ([`VerifiedToken::registration_org`]), so a cache of verified tokens can tell
/// whether a hit applies to the next request's scope.
pub fn verify_in_scope(
    token: &str,
    identity: &dyn IdentityData,
    org: Option<&str>,
    requirements: &TokenRequirements<'_>,
) -> Result<VerifiedToken, TokenError> {
    let mut refusal = TokenError::UnknownIssuer;
    for owner in org.map(Owner::Org).into_iter().chain([Owner::Platform]) {
        match verify(token, &OwnerIssuers { identity, owner }, requirements) {
            Ok(mut verified) => {
                let Some(registration) = identity.token_issuer(&verified.issuer, owner) else { continue };
                if !registration.audiences.is_empty() && !verified.has_audience(registration.audiences) {
                    refusal = TokenError::WrongAudience;
                    continue;
                }
                verified.registration_org = owner.org_id().map(str::to_owned);
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
