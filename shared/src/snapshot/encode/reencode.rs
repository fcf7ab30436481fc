//! A verified snapshot written afresh: what a chain of patches leaves behind is dropped.

use super::{EncodeError, SnapshotEncoder, UnsignedSnapshot};
use crate::snapshot::format::SnapshotHeader;
use crate::snapshot::view::SnapshotView;

/// `view`'s content encoded afresh under `header`: the same orgs in the same order, every
/// record, a string table without the garbage a chain of patches leaves. A snapshot the
/// encoder wrote from scratch comes back byte for byte (before its signature).
pub fn reencode(view: &SnapshotView, header: &SnapshotHeader) -> Result<UnsignedSnapshot, EncodeError> {
    let mut encoder = SnapshotEncoder::with_capacity(view.as_bytes().len(), view.strings_len());
    for org in view.orgs() {
        encoder.push_org(org)?;
    }
    for (fingerprint, binding) in view.bindings() {
        encoder.push_binding_claim(&fingerprint, binding.user_id.as_str(), binding.org_id, binding.enabled, binding.claim)?;
    }
    for (fingerprint, owner) in view.blocklist() {
        encoder.push_blocked(&fingerprint, owner)?;
    }
    for (key, owner) in view.revoked() {
        encoder.push_revoked_key(&key, owner)?;
    }
    for (fingerprint, mapping) in view.principals() {
        encoder.push_principal_claim(&fingerprint, mapping.owner, mapping.name, mapping.claim)?;
    }
    for key in view.crl_revoked() {
        encoder.push_crl_revoked_key(&key)?;
    }
    for ca in view.certificate_authorities() {
        encoder.push_certificate_authority(&ca)?;
    }
    for (kind, domain, issuer_dn, owner) in view.san_rules() {
        encoder.push_san_rule(kind, domain, issuer_dn, owner)?;
    }
    for (owner, kind, value) in view.all_constraints() {
        encoder.push_constraint(owner, kind, value)?;
    }
    for issuer in view.issuers() {
        encoder.push_issuer(issuer.issuer, issuer.owner, issuer.audiences, issuer.jwks)?;
    }
    encoder.finish(header)
}
