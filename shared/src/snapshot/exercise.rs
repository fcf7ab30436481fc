//! Entry points for the fuzz targets (`fuzz/fuzz_targets/snapshot*.rs`): arbitrary bytes
//! through every reader of the snapshot format, which must answer or refuse, never panic, and
//! agree with the encoder about what is valid.

use super::{reencode, PinnedKey, SnapshotError, SnapshotVerifier, SnapshotView};
use crate::identity::{IdentityData, Owner, SanKind};
use crate::Fingerprint;
use std::sync::OnceLock;

/// The committed format-4 vector (two orgs and the platform, every section populated).
pub const VECTOR: &[u8] = include_bytes!("../../tests/vectors/snapshot/format-v4-two-orgs-and-platform-ed25519.bin");

/// When [`VECTOR`] is valid.
pub const VECTOR_NOW: i64 = 1_700_000_000;

fn verifier() -> Option<&'static SnapshotVerifier> {
    static VERIFIER: OnceLock<Option<SnapshotVerifier>> = OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            let view = SnapshotView::open_unauthenticated(VECTOR.to_vec()).ok()?;
            let key = vector_key(&view)?;
            SnapshotVerifier::new([key]).ok()
        })
        .as_ref()
}

/// The key that signed [`VECTOR`] (the tests' `TestSigner::ed25519(1)`, derived from the same
/// seed), pinned so that damage behind the header reaches the digests and structure checks.
fn vector_key(view: &SnapshotView) -> Option<PinnedKey> {
    use sha2::Digest as _;
    let secret: [u8; 32] = sha2::Sha256::digest([b'e', 1]).into();
    let public = ed25519_dalek::SigningKey::from_bytes(&secret).verifying_key();
    let key = PinnedKey::from_spki_der(&super::ed25519_spki_der(public.as_bytes())).ok()?;
    (key.key_id() == view.key_id()).then_some(key)
}

/// `data` as a snapshot, or (when it starts with 0x00) as (offset u16, byte) edits to
/// [`VECTOR`], so the fuzzer starts deep inside a valid structure.
pub fn snapshot_bytes(data: &[u8]) {
    match data.split_first() {
        Some((0, edits)) => {
            let mut bytes = VECTOR.to_vec();
            for edit in edits.chunks_exact(3) {
                if let [low, high, value] = edit {
                    let at = usize::from(u16::from_le_bytes([*low, *high])) % bytes.len();
                    if let Some(byte) = bytes.get_mut(at) {
                        *byte = *value;
                    }
                }
            }
            exercise_snapshot(&bytes);
        }
        _ => exercise_snapshot(data),
    }
}

// A disagreement between reader and encoder is a finding: the fuzzer needs it to crash.
#[allow(clippy::panic)]
fn exercise_snapshot(data: &[u8]) {
    let _ = super::peek_header(data);
    if let Some(verifier) = verifier() {
        if let Ok(view) = verifier.verify(data.to_vec(), VECTOR_NOW, None) {
            lookups(&view);
        }
    }
    let Ok(view) = SnapshotView::open_unauthenticated(data.to_vec()) else { return };
    lookups(&view);
    // Whatever the reader accepts, the encoder accepts too, and reads back alike.
    match reencode(&view, view.header()).map(|u| u.attach_signature(&[0; 64])) {
        Ok(Ok(bytes)) => {
            let again = SnapshotView::open_unauthenticated(bytes);
            assert!(again.is_ok(), "a re-encoded snapshot does not open: {again:?}");
            if let Ok(again) = again {
                assert_eq!(again.binding_count(), view.binding_count());
                assert_eq!(again.blocklist().count(), view.blocklist().count());
                assert_eq!(again.principals().count(), view.principals().count());
                assert_eq!(again.issuers().count(), view.issuers().count());
            }
        }
        other => panic!("the encoder refuses what the reader accepted: {:?}", other.err()),
    }
}

/// The committed delta from [`VECTOR`] (version 7) to version 8.
pub const DELTA_VECTOR: &[u8] =
    include_bytes!("../../tests/vectors/snapshot/delta-v4-unbind-revoke-new-org-7-to-8-ed25519.bin");

/// `data` as a delta chain applied to [`VECTOR`], or (when it starts with 0x00) as
/// (offset u16, byte) edits to [`DELTA_VECTOR`], both by copying and in place. Whatever
/// applies must be the snapshot its signed header names: open it again from its bytes and it
/// must verify alike. The two ways must agree: the same bytes, or the same refusal, with the
/// held snapshot handed back untouched unless the refusal is of the written result's
/// structure.
// A disagreement is a finding: the fuzzer needs it to crash.
#[allow(clippy::panic)]
pub fn delta_chain(data: &[u8]) {
    let (Some(verifier), Ok(held)) = (verifier(), SnapshotView::open_unauthenticated(VECTOR.to_vec())) else { return };
    let chain = match data.split_first() {
        Some((0, edits)) => {
            let mut bytes = DELTA_VECTOR.to_vec();
            for edit in edits.chunks_exact(3) {
                if let [low, high, value] = edit {
                    let at = usize::from(u16::from_le_bytes([*low, *high])) % bytes.len();
                    if let Some(byte) = bytes.get_mut(at) {
                        *byte = *value;
                    }
                }
            }
            bytes
        }
        _ => data.to_vec(),
    };
    let _ = super::Delta::decode(&chain);
    let copied = verifier.apply_delta(&held, &chain, VECTOR_NOW);
    if let Ok(applied) = &copied {
        lookups(applied);
        let again = verifier.verify(applied.as_bytes().to_vec(), VECTOR_NOW, Some(held.version()));
        assert!(again.is_ok(), "an applied delta is not a snapshot that verifies: {again:?}");
    }
    let Ok(unshared) = SnapshotView::open_unauthenticated(VECTOR.to_vec()) else { return };
    match (copied, verifier.apply_delta_in_place(unshared, &chain, VECTOR_NOW)) {
        (Ok(copied), Ok(in_place)) => {
            assert_eq!(copied.as_bytes(), in_place.as_bytes(), "in place and copying built different snapshots");
            lookups(&in_place);
        }
        (Err(copied), Err(super::InPlaceRefusal { error, unapplied })) => {
            assert_eq!(copied, error, "in place and copying refused differently");
            let structure = matches!(error, SnapshotError::Malformed { at, .. } if at >= super::format::BODY_START)
                || matches!(error, SnapshotError::IssuerKeys { .. });
            match unapplied {
                super::Unapplied::Held(back) => {
                    assert!(!structure, "refused after writing ({error}), yet handed back as held");
                    assert_eq!(back.as_bytes(), VECTOR, "the held snapshot changed though refused ({error})");
                    lookups(&back);
                }
                super::Unapplied::Spent(_) => assert!(structure, "refused before writing ({error}), yet spent"),
            }
        }
        (copied, in_place) => {
            let in_place = in_place.map(|v| v.version()).map_err(|r| r.error);
            panic!("copying gave {:?}, in place {in_place:?}", copied.map(|v| v.version()))
        }
    }
}

fn lookups(view: &SnapshotView) {
    let probe = view.bindings().next().map(|(fp, _)| fp).unwrap_or(Fingerprint([0; 32]));
    let org = view.orgs().next();
    let _ = view.card_binding(&probe);
    let _ = view.is_blocklisted(&probe, org);
    let _ = view.thumbprint_mapping(&probe);
    let _ = view.is_revoked("CN=CA", "01", org);
    let _ = view.has_revoked_serials(org);
    for (kind, domain, issuer, _) in view.san_rules().collect::<Vec<_>>() {
        let _ = view.san_rule(kind, domain, issuer);
    }
    let _ = view.san_rule(SanKind::Upn, "EXAMPLE.mil", "CN=CA");
    for (owner, _, _) in view.all_constraints().collect::<Vec<_>>() {
        let _ = view.constraints(owner);
    }
    for issuer in view.issuers().collect::<Vec<_>>() {
        let _ = view.token_issuer(issuer.issuer, issuer.owner);
        let _ = view.token_issuer(issuer.issuer, Owner::Platform);
    }
    let _ = (view.blocklist().count(), view.revoked().count(), view.principals().count());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_verifies_under_the_pinned_key_and_survives_damage() {
        let view = verifier().expect("the vector's key").verify(VECTOR.to_vec(), VECTOR_NOW, None).unwrap();
        assert_eq!(view.org_count(), 2);
        snapshot_bytes(&[]);
        snapshot_bytes(VECTOR);
        for at in (0..VECTOR.len()).step_by(41) {
            let [low, high] = u16::try_from(at).unwrap().to_le_bytes();
            snapshot_bytes(&[0, low, high, 0xa5]);
        }
        let held = SnapshotView::open_unauthenticated(VECTOR.to_vec()).unwrap();
        assert_eq!(verifier().unwrap().apply_delta(&held, DELTA_VECTOR, VECTOR_NOW).map(|v| v.version()), Ok(8));
        delta_chain(&[]);
        delta_chain(DELTA_VECTOR);
        for at in (0..DELTA_VECTOR.len()).step_by(13) {
            let [low, high] = u16::try_from(at).unwrap().to_le_bytes();
            delta_chain(&[0, low, high, 0x5a]);
        }
    }
}
