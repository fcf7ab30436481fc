//! Signed identity snapshots for the tests: a test-only P-256 signing key standing in for the
//! control plane's HSM key, and snapshots of chosen bindings and blocklist entries.

use certbind_shared::identity::Owner;
use certbind_shared::snapshot::{
    key_id_of_spki, p256_spki_der, public_key_pem, SignatureAlgorithm, SnapshotEncoder, SnapshotHeader, BINDING_RECORD,
    BLOCKED_RECORD,
};
use certbind_shared::Fingerprint;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

/// A snapshot signing key derived from a seed, so every run signs alike.
pub struct TestSnapshotKey {
    key: SigningKey,
    spki: Vec<u8>,
}

impl TestSnapshotKey {
    pub fn new(seed: &str) -> Self {
        let secret: [u8; 32] = Sha256::digest(format!("certbind test snapshot key {seed}")).into();
        let key = SigningKey::from_slice(&secret).expect("a SHA-256 output is a valid P-256 scalar");
        let spki = p256_spki_der(key.verifying_key().to_encoded_point(false).as_bytes()).expect("a valid point");
        TestSnapshotKey { key, spki }
    }

    /// The public key as a filter pins it.
    pub fn pinned_pem(&self) -> String {
        public_key_pem(&self.spki)
    }

    pub fn key_id(&self) -> String {
        key_id_of_spki(&self.spki)
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.key.sign(message);
        // Low S, as the control plane signs and the filter requires.
        signature.normalize_s().unwrap_or(signature).to_bytes().to_vec()
    }
}

/// What a test snapshot holds.
#[derive(Debug, Clone, Default)]
pub struct SnapshotContent {
    /// (fingerprint, user id, org id, enabled); any order.
    pub bindings: Vec<(Fingerprint, String, String, bool)>,
    /// The platform's blocklist.
    pub blocklist: Vec<Fingerprint>,
}

impl SnapshotContent {
    pub fn bind(mut self, fingerprint: Fingerprint, user: &str, org: &str) -> Self {
        self.bindings.push((fingerprint, user.to_string(), org.to_string(), true));
        self
    }

    pub fn block(mut self, fingerprint: Fingerprint) -> Self {
        self.blocklist.push(fingerprint);
        self
    }

    /// `count` bindings with fingerprints derived from their index, all users in one org:
    /// the shape of a large deployment.
    pub fn synthetic(count: usize) -> Self {
        let bindings = (0..count)
            .map(|i| {
                let fingerprint = Fingerprint(Sha256::digest((i as u64).to_le_bytes()).into());
                (fingerprint, synthetic_user(i), "01JBZRG0000000000000000000".to_string(), true)
            })
            .collect();
        SnapshotContent { bindings, blocklist: Vec::new() }
    }
}

/// A ULID-shaped user id for synthetic binding `i` (stored as 16 bytes in the snapshot).
pub fn synthetic_user(i: usize) -> String {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut id = *b"01JB0000000000000000000000";
    let mut n = i;
    for slot in id.iter_mut().rev().take(12) {
        *slot = CROCKFORD[n % 32];
        n /= 32;
    }
    String::from_utf8(id.to_vec()).expect("ASCII")
}

/// A snapshot's version and validity window.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub version: u64,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// Encodes and signs `content` under `stamp`.
pub fn signed_snapshot(key: &TestSnapshotKey, content: &SnapshotContent, stamp: Stamp) -> Vec<u8> {
    let mut bindings = content.bindings.clone();
    bindings.sort_by_key(|binding| binding.0 .0);
    let mut blocklist = content.blocklist.clone();
    blocklist.sort_by_key(|fingerprint| fingerprint.0);
    blocklist.dedup();
    let capacity = bindings.len() * BINDING_RECORD + blocklist.len() * BLOCKED_RECORD + 8192;
    let mut encoder = SnapshotEncoder::with_capacity(capacity, 4096);
    for (fingerprint, user, org, enabled) in &bindings {
        encoder.push_binding(fingerprint, user, org, *enabled).expect("binding encodes");
    }
    for fingerprint in &blocklist {
        encoder.push_blocked(fingerprint, Owner::Platform).expect("blocklist entry encodes");
    }
    finish_signed(key, encoder, stamp)
}

/// What `encoder` holds, under `stamp`, signed by `key`.
pub fn finish_signed(key: &TestSnapshotKey, encoder: SnapshotEncoder, stamp: Stamp) -> Vec<u8> {
    let header = SnapshotHeader {
        version: stamp.version,
        issued_at: stamp.issued_at,
        expires_at: stamp.expires_at,
        key_id: key.key_id(),
        algorithm: SignatureAlgorithm::EcdsaP256Sha256,
    };
    let unsigned = encoder.finish(&header).expect("snapshot encodes");
    let signature = key.sign(unsigned.message());
    unsigned.attach_signature(&signature).expect("64-byte signature")
}

/// The delta chain (one step) that takes a proxy holding `old` to `new`, as the control plane
/// serves it.
pub fn delta_between(old: &[u8], new: &[u8]) -> Vec<u8> {
    let old = certbind_shared::snapshot::SnapshotView::open_unauthenticated(old.to_vec()).expect("old opens");
    let new = certbind_shared::snapshot::SnapshotView::open_unauthenticated(new.to_vec()).expect("new opens");
    certbind_shared::snapshot::between(&old, &new).encode()
}
