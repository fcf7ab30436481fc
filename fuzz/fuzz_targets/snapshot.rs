//! The snapshot reader on arbitrary bytes: header, section table, every record check, string
//! references and JWKS parsing (structure only, as the signature would stop a fuzzer at the
//! door), then the full verifier with a pinned key, then every lookup on whatever opened.
//!
//! An input starting with 0x00 is instead a list of (offset u16, byte) edits applied to the
//! committed format-v2 snapshot, so the fuzzer starts deep inside a valid structure.
#![no_main]

use certbind_shared::identity::{IdentityData, SanKind};
use certbind_shared::snapshot::{peek_header, PinnedKey, SnapshotVerifier, SnapshotView};
use certbind_shared::Fingerprint;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

// An Ed25519 public key (RFC 8032 test 1); nothing the fuzzer makes is signed by it.
const PINNED: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
-----END PUBLIC KEY-----";

fn verifier() -> &'static SnapshotVerifier {
    static VERIFIER: OnceLock<SnapshotVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| SnapshotVerifier::new([PinnedKey::parse(PINNED).unwrap()]).unwrap())
}

/// A valid snapshot with every section populated (see shared/src/snapshot/tests.rs).
const VALID: &[u8] = include_bytes!("../../shared/tests/vectors/snapshot/format-v2-small-ed25519.bin");

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, edits)) => {
            let mut bytes = VALID.to_vec();
            for edit in edits.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % bytes.len();
                bytes[at] = edit[2];
            }
            exercise(&bytes);
        }
        _ => exercise(data),
    }
});

fn exercise(data: &[u8]) {
    let _ = peek_header(data);
    let _ = verifier().verify(data.to_vec(), 1_700_000_000, Some(1));
    let Ok(view) = SnapshotView::open_unauthenticated(data.to_vec()) else { return };
    let probe = view.bindings().next().map(|(fp, _)| fp).unwrap_or(Fingerprint([0; 32]));
    let _ = view.card_binding(&probe);
    let _ = view.is_blocklisted(&probe);
    let _ = view.mapped_principal(&probe);
    let _ = view.is_revoked("CN=CA", "01");
    for (kind, domain) in view.san_rules().collect::<Vec<_>>() {
        let _ = view.san_mapping_allowed(kind, domain);
    }
    let _ = view.san_mapping_allowed(SanKind::Upn, "EXAMPLE.mil");
    for (org, _, _) in view.constraints().collect::<Vec<_>>() {
        let _ = view.org_constraints(org).count();
    }
    for (issuer, _) in view.issuers().collect::<Vec<_>>() {
        let _ = view.issuer_keys(issuer);
    }
    let _ = (view.blocklist().count(), view.revoked_keys().count(), view.principals().count());
}
