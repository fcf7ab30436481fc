//! A signed snapshot as the control plane serves it, and the signing of one: a header naming
//! the key, the signature, and a check of the result with the verifier the filters run.

use super::error::StoreError;
use super::validate::BuildError;
use crate::signer::Signer;
use certbind_shared::clock;
use certbind_shared::snapshot::{PinnedKey, SnapshotHeader, SnapshotVerifier, SnapshotView, UnsignedSnapshot};
use std::sync::Arc;
use std::time::Duration;

/// A signed snapshot ready to serve.
#[derive(Debug, Clone)]
pub struct SignedSnapshot {
    view: SnapshotView,
    etag: String,
}

impl SignedSnapshot {
    pub(super) fn new(view: SnapshotView) -> Self {
        // The signature's first bytes tell two signings of one version apart.
        let signature = view.section_bytes(certbind_shared::snapshot::Section::Signature);
        let mark = certbind_shared::encoding::hex_lower(signature.get(..4).unwrap_or(&[]));
        let etag = format!("\"v{}-{mark}\"", view.version());
        SignedSnapshot { view, etag }
    }

    pub fn version(&self) -> u64 {
        self.view.version()
    }

    pub fn issued_at(&self) -> i64 {
        self.view.issued_at()
    }

    pub fn expires_at(&self) -> i64 {
        self.view.expires_at()
    }

    pub fn key_id(&self) -> &str {
        self.view.key_id()
    }

    /// A strong ETag: `"v{version}-{first 4 signature bytes in hex}"`.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    pub fn bytes(&self) -> &[u8] {
        self.view.as_bytes()
    }

    /// The bytes, shared: serve them without copying.
    pub fn shared_bytes(&self) -> Arc<Vec<u8>> {
        self.view.shared_bytes()
    }

    /// The snapshot as the filter reads it.
    pub fn view(&self) -> &SnapshotView {
        &self.view
    }
}

/// A header for `version`, issued now, valid for `validity`, naming `signer`'s key.
pub(super) fn header(signer: &dyn Signer, validity: Duration, version: u64) -> SnapshotHeader {
    let issued_at = clock::now_seconds();
    let validity = i64::try_from(validity.as_secs()).unwrap_or(i64::MAX).max(1);
    SnapshotHeader {
        version,
        issued_at,
        expires_at: issued_at.saturating_add(validity),
        key_id: signer.key_id().to_owned(),
        algorithm: signer.algorithm(),
    }
}

/// Encodes under `header`, signs with `signer`, and verifies the result as a filter would.
pub(super) fn sign(
    signer: &dyn Signer,
    header: SnapshotHeader,
    encode: impl FnOnce(&SnapshotHeader) -> Result<UnsignedSnapshot, BuildError>,
) -> Result<SignedSnapshot, StoreError> {
    let issued_at = header.issued_at;
    let unsigned = encode(&header)?;
    let signature = signer.sign(unsigned.message()).map_err(StoreError::Sign)?;
    let bytes = unsigned.attach_signature(&signature).map_err(|e| StoreError::Build(BuildError::Encode(e)))?;
    let view = own_verifier(signer)?.verify(bytes, issued_at, None).map_err(StoreError::SelfCheck)?;
    Ok(SignedSnapshot::new(view))
}

/// A verifier that pins `signer`'s public key alone: what it signed, or what another replica
/// signed with the same key, checked as a filter would.
pub(super) fn own_verifier(signer: &dyn Signer) -> Result<SnapshotVerifier, StoreError> {
    let own_key = PinnedKey::from_spki_der(&signer.public_key_der())
        .map_err(|e| StoreError::Sign(anyhow::anyhow!("the signer's public key: {e}")))?;
    SnapshotVerifier::new([own_key]).map_err(|e| StoreError::Sign(anyhow::anyhow!("{e}")))
}
