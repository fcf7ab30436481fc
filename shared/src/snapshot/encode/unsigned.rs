//! A finished snapshot whose header is written and whose signature is not: what the signer
//! signs ([`UnsignedSnapshot::message`]) and what it hands its signature back to.

use super::error::{EncodeError, EncodeProblem};
use crate::snapshot::format::{Section, SignatureAlgorithm, BODY_START, HEADER_LEN, SIGNATURE_LEN};

/// A snapshot whose signature is still to be made.
pub struct UnsignedSnapshot {
    pub(super) bytes: Vec<u8>,
    pub(super) algorithm: SignatureAlgorithm,
}

impl UnsignedSnapshot {
    /// The bytes the signature covers: the header, which carries every section's digest.
    pub fn message(&self) -> &[u8] {
        self.bytes.get(..HEADER_LEN).unwrap_or(&[])
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    /// Length of the signed snapshot.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.len() <= BODY_START
    }

    /// Puts the signature (r ‖ s for ECDSA P-256, 64 bytes for Ed25519) after the header.
    pub fn attach_signature(mut self, signature: &[u8]) -> Result<Vec<u8>, EncodeError> {
        let slot = self.bytes.get_mut(HEADER_LEN..BODY_START).filter(|_| signature.len() == SIGNATURE_LEN);
        let Some(slot) = slot else {
            return Err(EncodeError { section: Section::Signature, index: 0, problem: EncodeProblem::BadSignatureLength });
        };
        slot.copy_from_slice(signature);
        Ok(self.bytes)
    }
}
