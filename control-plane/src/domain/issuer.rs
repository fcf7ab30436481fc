//! A bearer-token issuer as an owner registers it: its `iss` text and its JWKS, checked with
//! the parser the filter uses (a key set the filter would refuse is refused here), and the
//! audiences its tokens must carry.

use super::invalid::{Checked, Invalid};
use super::owner::Owner;
use super::text::required_text;
use certbind_shared::pop::jwks::Jwks;

/// The snapshot's strings are at most 255 bytes.
pub const MAX_ISSUER_BYTES: usize = 255;
pub const MAX_AUDIENCES: usize = 32;
pub const MAX_AUDIENCE_BYTES: usize = 255;

/// The issuer text as stored, with its JWKS checked by the filter's parser.
pub fn checked_issuer(owner: &Owner, issuer: &str, jwks: &serde_json::Value) -> Checked<String> {
    let issuer = required_text("issuer", issuer, MAX_ISSUER_BYTES)?;
    if owner.is_platform() && issuer.to_ascii_lowercase().starts_with("org:") {
        // The filter forwards an org registration's issuer as `org:{org_id}:{iss}`: a platform
        // issuer spelt so would pass for one.
        return Err(Invalid::new("issuer", "a platform issuer must not start with `org:`, the prefix of org registrations' issuers"));
    }
    checked_jwks(jwks)?;
    Ok(issuer)
}

/// A key set the filter's parser reads.
pub fn checked_jwks(jwks: &serde_json::Value) -> Checked<()> {
    let bytes = serde_json::to_vec(jwks).map_err(|e| Invalid::new("jwks", e.to_string()))?;
    Jwks::parse(&bytes).map_err(|e| Invalid::new("jwks", e.to_string()))?;
    Ok(())
}

/// At most [`MAX_AUDIENCES`] audiences, each required text; `None` leaves them unset.
pub fn checked_audiences(audiences: Option<Vec<String>>) -> Checked<Option<Vec<String>>> {
    let Some(audiences) = audiences else { return Ok(None) };
    if audiences.len() > MAX_AUDIENCES {
        return Err(Invalid::new("audiences", format!("at most {MAX_AUDIENCES} audiences")));
    }
    let checked = audiences.iter().map(|a| required_text("audiences", a, MAX_AUDIENCE_BYTES)).collect::<Checked<Vec<_>>>()?;
    Ok(Some(checked))
}
