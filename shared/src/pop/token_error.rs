//! Why a token was refused, in a file of its own: the verifier ([`super::jwt`]) and the key
//! set reader ([`super::jwks`]) both refuse with it, and neither needs the other for that.

use std::fmt;

/// Why a token was refused. Every variant is answered with the 401 reason `invalid_token`;
/// the variants exist for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not a well-formed compact JWS, or a claim of the wrong type; says which part.
    Malformed(&'static str),
    /// `alg` is `none`, an HMAC algorithm, or anything else not verified here.
    UnsupportedAlgorithm,
    /// `iss` names no trusted issuer.
    UnknownIssuer,
    /// The issuer has no key that may verify this `alg` (under this `kid`).
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    MissingClaim(&'static str),
    /// The issuer's key set could not be used; says why.
    Jwks(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(what) => write!(f, "malformed token: {what}"),
            TokenError::UnsupportedAlgorithm => f.write_str("token algorithm not accepted"),
            TokenError::UnknownIssuer => f.write_str("token issuer is not trusted"),
            TokenError::UnknownKey => f.write_str("no key of the issuer may verify this token"),
            TokenError::BadSignature => f.write_str("token signature does not verify"),
            TokenError::Expired => f.write_str("token has expired"),
            TokenError::NotYetValid => f.write_str("token is not yet valid"),
            TokenError::WrongAudience => f.write_str("token is not meant for this audience"),
            TokenError::MissingClaim(claim) => write!(f, "token lacks the \"{claim}\" claim"),
            TokenError::Jwks(problem) => write!(f, "JWKS: {problem}"),
        }
    }
}

impl std::error::Error for TokenError {}
