//! Who signs snapshots: a key inside a PKCS#11 token ([`pkcs11::Pkcs11Signer`]) in every real
//! deployment. The trait keeps the snapshot store independent of where the key lives.

pub mod pkcs11;

use certbind_shared::encoding::base64url_encode;
pub use certbind_shared::snapshot::SignatureAlgorithm;
use certbind_shared::snapshot::{key_id_of_spki, p256_spki_der, public_key_pem};
use p256::ecdsa::signature::Signer as _;

/// A snapshot signing key.
pub trait Signer: Send + Sync {
    /// The first 16 hex digits of SHA-256 over [`Signer::public_key_der`].
    fn key_id(&self) -> &str;
    fn algorithm(&self) -> SignatureAlgorithm;
    /// Signs `message` (the snapshot bytes before the signature). ECDSA P-256 signatures are
    /// r ‖ s, 64 bytes.
    fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>>;
    /// The public key as SubjectPublicKeyInfo DER.
    fn public_key_der(&self) -> Vec<u8>;
}

/// The public key of `signer` as `GET /api/v1/snapshot/keys` lists it: key id, algorithm,
/// PEM (what a filter pins) and JWK.
pub fn public_key_json(signer: &dyn Signer) -> serde_json::Value {
    let spki = signer.public_key_der();
    let mut entry = serde_json::json!({
        "key_id": signer.key_id(),
        "algorithm": signer.algorithm().name(),
        "public_key_pem": public_key_pem(&spki),
    });
    // The uncompressed P-256 SPKI ends with 04 ‖ x ‖ y.
    if signer.algorithm() == SignatureAlgorithm::EcdsaP256Sha256 && spki.len() == 91 {
        if let (Some(x), Some(y)) = (spki.get(27..59), spki.get(59..91)) {
            entry["jwk"] = serde_json::json!({
                "kty": "EC", "crv": "P-256", "kid": signer.key_id(),
                "x": base64url_encode(x), "y": base64url_encode(y),
            });
        }
    }
    entry
}

/// A P-256 key held in process memory. **Not for production**: the private key is not in an
/// HSM. It exists for unit tests and benchmarks, where a token would measure the token.
pub struct SoftwareSigner {
    key: p256::ecdsa::SigningKey,
    spki_der: Vec<u8>,
    key_id: String,
}

impl SoftwareSigner {
    /// A key derived from 32 secret bytes (any value below the curve order).
    pub fn from_secret(secret: &[u8; 32]) -> anyhow::Result<Self> {
        let key = p256::ecdsa::SigningKey::from_slice(secret)
            .map_err(|_| anyhow::anyhow!("secret is not a valid P-256 scalar"))?;
        let point = key.verifying_key().to_encoded_point(false);
        let spki_der = p256_spki_der(point.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(SoftwareSigner { key_id: key_id_of_spki(&spki_der), key, spki_der })
    }
}

impl Signer for SoftwareSigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::EcdsaP256Sha256
    }

    fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let signature: p256::ecdsa::Signature = self.key.sign(message);
        // Either S verifies; filters accept only the low one.
        Ok(signature.normalize_s().unwrap_or(signature).to_bytes().to_vec())
    }

    fn public_key_der(&self) -> Vec<u8> {
        self.spki_der.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certbind_shared::snapshot::PinnedKey;

    #[test]
    fn software_signer_publishes_a_key_the_verifier_pins() {
        let signer = SoftwareSigner::from_secret(&[7; 32]).unwrap();
        let json = public_key_json(&signer);
        let pem = json["public_key_pem"].as_str().unwrap();
        let pinned = PinnedKey::from_pem(pem).unwrap();
        assert_eq!(pinned.key_id(), signer.key_id());
        assert_eq!(PinnedKey::from_jwk(&json["jwk"]).unwrap(), pinned);
        let signature = signer.sign(b"message").unwrap();
        assert!(pinned.verifies(b"message", &signature));
        assert!(!pinned.verifies(b"massage", &signature));
    }
}
