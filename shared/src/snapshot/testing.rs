//! Synthetic signed snapshots and deltas of any size, for benchmarks and for other crates'
//! tests (the filter's headless harness measures the same through the `.wasm`). They are
//! signed with an Ed25519 key derived from a public seed: never pin one in production.

use super::{
    between, ed25519_spki_der, public_key_pem, ConstraintKind, PinnedKey, SignatureAlgorithm,
    SnapshotEncoder, SnapshotError, SnapshotHeader, SnapshotVerifier, SnapshotView, UnsignedSnapshot,
};
use crate::encoding::ulid_render;
use crate::identity::{Owner, SanKind};
use crate::Fingerprint;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};

/// A snapshot signing key derived from `seed` (public: tests and benchmarks only).
pub struct SyntheticSigner {
    key: ed25519_dalek::SigningKey,
    pinned: PinnedKey,
}

impl SyntheticSigner {
    pub fn new(seed: &str) -> Option<Self> {
        let secret: [u8; 32] = Sha256::digest(format!("certbind synthetic snapshot key {seed}")).into();
        let key = ed25519_dalek::SigningKey::from_bytes(&secret);
        let pinned = PinnedKey::from_spki_der(&ed25519_spki_der(key.verifying_key().as_bytes())).ok()?;
        Some(SyntheticSigner { key, pinned })
    }

    pub fn pinned(&self) -> &PinnedKey {
        &self.pinned
    }

    /// The public key as a filter's configuration pins it.
    pub fn pinned_pem(&self) -> String {
        public_key_pem(self.pinned.spki_der())
    }

    pub fn verifier(&self) -> Option<SnapshotVerifier> {
        SnapshotVerifier::new([self.pinned.clone()]).ok()
    }

    pub fn header(&self, version: u64, issued_at: i64, expires_at: i64) -> SnapshotHeader {
        SnapshotHeader {
            version,
            issued_at,
            expires_at,
            key_id: self.pinned.key_id().to_owned(),
            algorithm: SignatureAlgorithm::Ed25519,
        }
    }

    pub fn sign(&self, unsigned: UnsignedSnapshot) -> Option<Vec<u8>> {
        let signature = self.key.sign(unsigned.message()).to_bytes();
        unsigned.attach_signature(&signature).ok()
    }
}

/// The fingerprint of synthetic binding `i`.
pub fn synthetic_fingerprint(i: u64) -> Fingerprint {
    Fingerprint(Sha256::digest(i.to_le_bytes()).into())
}

/// A ULID's canonical spelling from a number (the control plane's ids are ULIDs).
fn ulid(prefix: u8, n: u64) -> String {
    let value = (u128::from(prefix) << 100) | (u128::from(n) << 16) | u128::from(n & 0xffff);
    ulid_render(&value.to_be_bytes()).iter().map(|&c| char::from(c)).collect()
}

/// Orgs of the synthetic deployment.
pub const SYNTHETIC_ORGS: u64 = 100;

/// A deployment of `bindings` cards (ULID users in [`SYNTHETIC_ORGS`] orgs, one in fifty
/// disabled), 100 platform blocklist entries and 100 org ones, 1 000 revoked serials, 100
/// thumbprint mappings, SAN rules, constraints and two issuers: valid from `issued_at` for a
/// day, at `version`.
pub fn synthetic_snapshot(signer: &SyntheticSigner, bindings: u64, version: u64, issued_at: i64) -> Option<Vec<u8>> {
    let orgs: Vec<String> = (0..SYNTHETIC_ORGS).map(|i| ulid(1, i)).collect();
    let org = |i: u64| orgs.get((i % SYNTHETIC_ORGS) as usize).map(String::as_str).unwrap_or("org");
    let mut rows: Vec<(Fingerprint, u64)> = (0..bindings).map(|i| (synthetic_fingerprint(i), i)).collect();
    rows.sort_unstable();
    let mut encoder = SnapshotEncoder::with_capacity(bindings as usize * 52 + (1 << 20), 1 << 16);
    for (fp, i) in &rows {
        encoder.push_binding(fp, &ulid(2, *i), org(*i), i % 50 != 0).ok()?;
    }
    let mut blocked: Vec<(Fingerprint, Owner<&str>)> = (0..200u64)
        .map(|i| (synthetic_fingerprint(u64::MAX - i), if i < 100 { Owner::Platform } else { Owner::Org(org(i)) }))
        .collect();
    blocked.sort_by_key(|(fp, _)| *fp);
    for (fp, owner) in &blocked {
        encoder.push_blocked(fp, *owner).ok()?;
    }
    let mut revoked: Vec<([u8; 32], Owner<&str>)> = (0..1_000u64)
        .map(|i| {
            let key = super::revoked_serial_key("CN=Synthetic CA,O=certbind,C=US", &format!("{i:x}"));
            (key, if i % 2 == 0 { Owner::Platform } else { Owner::Org(org(i)) })
        })
        .collect();
    revoked.sort_by_key(|(key, _)| *key);
    for (key, owner) in &revoked {
        encoder.push_revoked_key(key, *owner).ok()?;
    }
    let mut mapped: Vec<(Fingerprint, u64)> = (0..100u64).map(|i| (synthetic_fingerprint(1 << 40 | i), i)).collect();
    mapped.sort_unstable();
    for (fp, i) in &mapped {
        encoder.push_principal(fp, Owner::Org(org(*i)), &format!("svc:{i}")).ok()?;
    }
    for i in 0..20u64 {
        encoder.push_san_rule(SanKind::Upn, &format!("d{i}.mil"), "CN=Synthetic CA,O=certbind,C=US", Owner::Org(org(i))).ok()?;
        encoder.push_constraint(Owner::Org(org(i)), ConstraintKind::RequiredPolicyOid, "2.16.840.1.101.3.2.1.3.13").ok()?;
    }
    let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","alg":"EdDSA","x":"bX0TrVM_RTR9JC1WLSUZlZ--Jb_oYdOqlcS32yffElU"}]}"#;
    encoder.push_issuer::<&str>("https://idp.example", Owner::Platform, &[], jwks).ok()?;
    encoder.push_issuer("https://idp.example", Owner::Org(org(1)), &["api://one"], jwks).ok()?;
    signer.sign(encoder.finish(&signer.header(version, issued_at, issued_at + 86_400)).ok()?)
}

/// The snapshot after `held` with binding `index` (in fingerprint order) revoked, as the
/// control plane patches it (every other record copied), one version later and issued at
/// `issued_at`; and the delta chain from `held` to it.
pub fn revoke_binding(
    signer: &SyntheticSigner,
    held: &SnapshotView,
    index: usize,
    issued_at: i64,
) -> Result<(Vec<u8>, Vec<u8>), SnapshotError> {
    let refused = || SnapshotError::Malformed { section: super::Section::Bindings, at: 0, problem: "cannot patch" };
    let mut encoder = SnapshotEncoder::continuing(held, 0);
    let bindings = held.section_bytes(super::Section::Bindings);
    let at = index.saturating_mul(super::BINDING_RECORD).min(bindings.len());
    let (before, rest) = bindings.split_at(at);
    let after = rest.get(super::BINDING_RECORD..).unwrap_or(&[]);
    encoder.push_binding_records(before).map_err(|_| refused())?;
    encoder.push_binding_records(after).map_err(|_| refused())?;
    encoder.push_blocked_records(held.section_bytes(super::Section::Blocklist)).map_err(|_| refused())?;
    encoder.push_revoked_records(held.section_bytes(super::Section::Revoked)).map_err(|_| refused())?;
    encoder.push_principal_records(held.section_bytes(super::Section::Principals)).map_err(|_| refused())?;
    encoder.push_crl_revoked_records(held.section_bytes(super::Section::CrlRevoked)).map_err(|_| refused())?;
    for ca in held.certificate_authorities() {
        encoder.push_certificate_authority(&ca).map_err(|_| refused())?;
    }
    for (kind, domain, issuer, owner) in held.san_rules() {
        encoder.push_san_rule(kind, domain, issuer, owner).map_err(|_| refused())?;
    }
    for (owner, kind, value) in held.all_constraints() {
        encoder.push_constraint(owner, kind, value).map_err(|_| refused())?;
    }
    for issuer in held.issuers() {
        encoder.push_issuer(issuer.issuer, issuer.owner, issuer.audiences, issuer.jwks).map_err(|_| refused())?;
    }
    let header = signer.header(held.version() + 1, issued_at, issued_at + 86_400);
    let next = signer.sign(encoder.finish(&header).map_err(|_| refused())?).ok_or_else(refused)?;
    let verifier = signer.verifier().ok_or_else(refused)?;
    let next_view = verifier.verify(next.clone(), issued_at, Some(held.version()))?;
    Ok((next, between(held, &next_view).encode()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityData;

    #[test]
    fn a_synthetic_revoke_is_one_deleted_key() {
        let signer = SyntheticSigner::new("test").unwrap();
        let verifier = signer.verifier().unwrap();
        let bytes = synthetic_snapshot(&signer, 3_000, 1, 1_000).unwrap();
        let held = verifier.verify(bytes, 1_000, None).unwrap();
        assert_eq!(held.binding_count(), 3_000);
        assert_eq!(held.org_count(), SYNTHETIC_ORGS as usize);
        let (gone, _) = held.bindings().nth(10).unwrap();
        let (next, chain) = revoke_binding(&signer, &held, 10, 1_001).unwrap();
        assert_eq!(chain.len(), 24 + 1 + 42 + crate::snapshot::format::BODY_START);
        let applied = verifier.apply_delta(&held, &chain, 1_001).unwrap();
        assert_eq!(applied.as_bytes(), &next[..]);
        assert_eq!(applied.card_binding(&gone), None);
        assert!(signer.pinned_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
