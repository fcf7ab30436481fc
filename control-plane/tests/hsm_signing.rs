//! Snapshot signing through a real PKCS#11 token (SoftHSM2), verified by the `shared`
//! verifier the filter runs.
//!
//! The module comes from `CERTBIND_PKCS11_MODULE` (default: Debian's SoftHSM2). The tokens live
//! in a temporary directory named by a private `softhsm2.conf`; nothing global is touched.
//! Each signer keeps its own session; tests never share one across threads.

use certbind_control_plane::signer::pkcs11::{
    init_softhsm_token, KeyProtection, Pkcs11Settings, Pkcs11Signer, SOFTHSM2_MODULE,
};
use certbind_control_plane::signer::{Signer, SoftwareSigner};
use certbind_control_plane::domain::{BindingRecord, Change};
use certbind_control_plane::snapshot::{SnapshotContent, SnapshotStore, StoreSettings};
use certbind_shared::identity::{Claim, IdentityData};
use certbind_shared::snapshot::{PinnedKey, SnapshotError, SnapshotVerifier};
use certbind_shared::Fingerprint;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

const TOKEN: &str = "certbind-test";
/// A second token, for the wrong-PIN test: a login on the first token by another test would
/// make any PIN look right (PKCS#11 login state is per application and token).
const PIN_TOKEN: &str = "certbind-pin-test";
const USER_PIN: &str = "4711-user";
const SO_PIN: &str = "4711-so";

struct TestTokens {
    module: PathBuf,
    _dir: tempfile::TempDir,
}

/// Creates both tokens once per test process, before the module is first loaded (SoftHSM2
/// reads its configuration when it is initialised).
fn tokens() -> &'static TestTokens {
    static TOKENS: OnceLock<TestTokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let module = PathBuf::from(std::env::var("CERTBIND_PKCS11_MODULE").unwrap_or_else(|_| SOFTHSM2_MODULE.into()));
        assert!(module.exists(), "PKCS#11 module {} not found: apt-get install softhsm2", module.display());
        let dir = tempfile::tempdir().unwrap();
        let conf = init_softhsm_token(dir.path(), TOKEN, SO_PIN, USER_PIN).unwrap();
        init_softhsm_token(dir.path(), PIN_TOKEN, SO_PIN, USER_PIN).unwrap();
        // The only environment change, made once before any module load in this process.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        TestTokens { module, _dir: dir }
    })
}

fn settings(token: &str, key_label: &str, pin: &str) -> Pkcs11Settings {
    Pkcs11Settings {
        module: tokens().module.clone(),
        token_label: token.into(),
        key_label: key_label.into(),
        pin: pin.into(),
    }
}

fn pinned(signer: &dyn Signer) -> PinnedKey {
    PinnedKey::from_spki_der(&signer.public_key_der()).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn fp(i: u8) -> Fingerprint {
    Fingerprint([i; 32])
}

fn content() -> SnapshotContent {
    SnapshotContent {
        bindings: vec![
            BindingRecord {
                fingerprint: fp(1),
                user_id: "01HV4ABCDEFGHJKMNPQRSTVWXY".into(),
                org_id: "org-a".into(),
                enabled: true,
                claim: Claim::Verified,
            },
            BindingRecord {
                fingerprint: fp(2),
                user_id: "01HV4ABCDEFGHJKMNPQRSTVWXZ".into(),
                org_id: "org-a".into(),
                enabled: false,
                claim: Claim::Unverified,
            },
        ],
        ..Default::default()
    }
}

#[test]
fn key_init_creates_a_protected_key_once() {
    let settings = settings(TOKEN, "init-once", USER_PIN);
    let (first, created) = Pkcs11Signer::init_key(&settings).unwrap();
    assert!(created);
    let (second, created_again) = Pkcs11Signer::init_key(&settings).unwrap();
    assert!(!created_again);
    assert_eq!(first.key_id(), second.key_id());
    assert_eq!(pinned(&first).key_id(), first.key_id(), "key id is derived from the SPKI");
    assert_eq!(first.key_protection().unwrap(), KeyProtection { sensitive: true, extractable: false, on_token: true });
}

#[test]
fn the_shared_verifier_accepts_what_the_token_signed_and_nothing_else() {
    let (hsm, _) = Pkcs11Signer::init_key(&settings(TOKEN, "snapshot-key", USER_PIN)).unwrap();
    let hsm: Arc<dyn Signer> = Arc::new(hsm);
    let verifier = SnapshotVerifier::new([pinned(hsm.as_ref())]).unwrap();
    let store = SnapshotStore::new(Arc::clone(&hsm), StoreSettings::default());
    let first = store.load(content(), 1).unwrap();
    store.apply(2, vec![Change::RemoveBinding { fingerprint: fp(1) }]);
    let second = store.publish().unwrap().unwrap();

    let view = verifier.verify(second.bytes().to_vec(), now(), None).unwrap();
    assert_eq!(view.version(), 2);
    assert_eq!(view.card_binding(&fp(1)), None);
    assert_eq!(view.card_binding(&fp(2)).map(|b| b.enabled), Some(false));

    for at in [0, 20, second.bytes().len() / 2, second.bytes().len() - 1] {
        let mut tampered = second.bytes().to_vec();
        tampered[at] ^= 0x80;
        assert!(verifier.verify(tampered, now(), None).is_err(), "tampered byte {at} accepted");
    }
    let mut body_byte = second.bytes().to_vec();
    let body_at = body_byte.len() - 70;
    body_byte[body_at] ^= 0x01;
    assert_eq!(verifier.verify(body_byte, now(), None).unwrap_err(), SnapshotError::BadSignature);
    assert_eq!(
        verifier.verify(first.bytes().to_vec(), now(), Some(2)).unwrap_err(),
        SnapshotError::Rollback { held: 2, offered: 1 }
    );
    let stranger = SoftwareSigner::from_secret(&[3; 32]).unwrap();
    let wrong_key = SnapshotVerifier::new([pinned(&stranger)]).unwrap();
    assert_eq!(
        wrong_key.verify(second.bytes().to_vec(), now(), None).unwrap_err(),
        SnapshotError::UnknownKey { key_id: hsm.key_id().to_owned() }
    );
}

#[test]
fn rotation_between_two_token_keys() {
    let (old, _) = Pkcs11Signer::init_key(&settings(TOKEN, "rotation-old", USER_PIN)).unwrap();
    let (new, _) = Pkcs11Signer::init_key(&settings(TOKEN, "rotation-new", USER_PIN)).unwrap();
    assert_ne!(old.key_id(), new.key_id());
    let verifier = SnapshotVerifier::new([pinned(&old), pinned(&new)]).unwrap();
    let store = SnapshotStore::new(Arc::new(old), StoreSettings::default());
    let before = store.load(content(), 5).unwrap();
    store.rotate_signer(Arc::new(new));
    // The first signature under the new key, claimed at 6.
    store.hold(5, 6);
    let after = store.publish().unwrap().unwrap();
    let held = verifier.verify(before.bytes().to_vec(), now(), None).unwrap();
    assert_eq!(verifier.verify(after.bytes().to_vec(), now(), Some(held.version())).unwrap().version(), 6);
}

#[test]
fn threads_sign_through_one_signer_without_sharing_a_session() {
    let (signer, _) = Pkcs11Signer::init_key(&settings(TOKEN, "threads", USER_PIN)).unwrap();
    let signer = Arc::new(signer);
    let key = pinned(signer.as_ref());
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let signer = Arc::clone(&signer);
            std::thread::spawn(move || {
                (0..10u8)
                    .map(|i| {
                        let message = [t, i, 42];
                        (message, signer.sign(&message).unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in handles {
        for (message, signature) in handle.join().unwrap() {
            assert_eq!(signature.len(), 64);
            assert!(key.verifies(&message, &signature));
        }
    }
}

#[test]
fn a_missing_key_and_a_wrong_pin_say_what_to_do() {
    let missing = Pkcs11Signer::open(&settings(TOKEN, "never-created", USER_PIN)).unwrap_err();
    assert!(format!("{missing:#}").contains("certbind key init"), "{missing:#}");
    let wrong_pin = Pkcs11Signer::open(&settings(PIN_TOKEN, "any", "0000-wrong")).unwrap_err();
    assert!(format!("{wrong_pin:#}").contains("PIN"), "{wrong_pin:#}");
    let no_token = Pkcs11Signer::open(&settings("no-such-token", "any", USER_PIN)).unwrap_err();
    assert!(format!("{no_token:#}").contains("no initialised token labelled \"no-such-token\""), "{no_token:#}");
}
