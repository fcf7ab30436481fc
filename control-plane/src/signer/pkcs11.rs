//! The snapshot key inside a PKCS#11 token (SoftHSM2, YubiHSM 2, AWS CloudHSM, Thales Luna…).
//!
//! The private key is generated in the token as sensitive and non-extractable, so it never
//! leaves it. Signing hashes the snapshot with SHA-256 in software and asks the token for a
//! raw `CKM_ECDSA` signature over the digest: the token sees 32 bytes, not 70 MB.
//!
//! A PKCS#11 session must not be used by two threads at once: the signer keeps one session
//! behind a mutex and reopens it (logging in again) if the token drops it.

use super::{SignatureAlgorithm, Signer};
use anyhow::{anyhow, bail, Context as _};
use certbind_shared::snapshot::{key_id_of_spki, p256_spki_der};
use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Where SoftHSM2's module lives on Debian and Ubuntu (`apt-get install softhsm2`).
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// DER of the OID prime256v1 (1.2.840.10045.3.1.7), the value of `CKA_EC_PARAMS` for P-256.
const P256_EC_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Which token and key to use, and how to log in.
#[derive(Clone)]
pub struct Pkcs11Settings {
    /// Path of the vendor's PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// `CKA_LABEL` of the token (as `softhsm2-util --show-slots` or `pkcs11-tool -L` prints).
    pub token_label: String,
    /// `CKA_LABEL` of the key pair; a new label means a new key (key rotation).
    pub key_label: String,
    /// The user PIN (for CloudHSM `user:password`, for Luna the partition password).
    pub pin: String,
}

impl fmt::Debug for Pkcs11Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Settings")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("pin", &"<redacted>")
            .finish()
    }
}

impl From<&crate::config::SignerConfig> for Pkcs11Settings {
    fn from(config: &crate::config::SignerConfig) -> Self {
        Pkcs11Settings {
            module: config.module.clone(),
            token_label: config.token_label.clone(),
            key_label: config.key_label.clone(),
            pin: config.pin.clone(),
        }
    }
}

/// One initialised context per module and process: `C_Initialize` may run only once, and
/// finalising one context would end every other user of the module.
fn context(module: &Path) -> anyhow::Result<Pkcs11> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts =
        CONTEXTS.get_or_init(Default::default).lock().map_err(|_| anyhow!("PKCS#11 context lock poisoned"))?;
    if let Some(context) = contexts.get(module) {
        return Ok(context.clone());
    }
    let context =
        Pkcs11::new(module).with_context(|| format!("cannot load the PKCS#11 module {}", module.display()))?;
    match context.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(e).with_context(|| format!("cannot initialise the PKCS#11 module {}", module.display())),
    }
    contexts.insert(module.to_path_buf(), context.clone());
    Ok(context)
}

fn find_slot(context: &Pkcs11, settings: &Pkcs11Settings) -> anyhow::Result<Slot> {
    for slot in context.get_slots_with_initialized_token().context("cannot list the module's tokens")? {
        let info = context.get_token_info(slot).context("cannot read token information")?;
        if info.label() == settings.token_label {
            return Ok(slot);
        }
    }
    bail!("no initialised token labelled {:?} in {}", settings.token_label, settings.module.display())
}

fn login(session: &Session, pin: &str) -> anyhow::Result<()> {
    match session.login(UserType::User, Some(&AuthPin::new(pin.to_owned()))) {
        // Login state belongs to the application: another session may have logged in already.
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(e).context("cannot log in to the token (is the PIN right?)"),
    }
}

fn find_key(session: &Session, class: ObjectClass, label: &str) -> anyhow::Result<Option<ObjectHandle>> {
    let template =
        [Attribute::Class(class), Attribute::KeyType(KeyType::EC), Attribute::Label(label.as_bytes().to_vec())];
    let found = session.find_objects(&template).context("cannot search the token")?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => bail!("{} EC keys labelled {label:?}: labels must be unique", many.len()),
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the SEC1 point; a few modules return the bare
/// point. Either way the result is the SEC1 bytes.
fn sec1_point(ec_point: &[u8]) -> anyhow::Result<&[u8]> {
    match ec_point {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => Ok(rest),
        [0x04, ..] if ec_point.len() == 65 => Ok(ec_point),
        _ => bail!("the token's CKA_EC_POINT is not an uncompressed P-256 point"),
    }
}

fn public_key_spki(session: &Session, public: ObjectHandle) -> anyhow::Result<Vec<u8>> {
    let attributes = session.get_attributes(public, &[AttributeType::EcPoint]).context("cannot read the public key")?;
    let point = attributes
        .into_iter()
        .find_map(|a| if let Attribute::EcPoint(point) = a { Some(point) } else { None })
        .ok_or_else(|| anyhow!("the public key has no CKA_EC_POINT"))?;
    p256_spki_der(sec1_point(&point)?).map_err(|e| anyhow!("the token's public key: {e}"))
}

/// Errors after which a fresh session (and login) may succeed.
fn session_lost(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::DeviceError,
            _
        )
    )
}

struct OpenKey {
    session: Session,
    private: ObjectHandle,
}

/// How the token protects the private key, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyProtection {
    pub sensitive: bool,
    pub extractable: bool,
    pub on_token: bool,
}

/// Signs with an ECDSA P-256 key pair found by label in a PKCS#11 token.
pub struct Pkcs11Signer {
    context: Pkcs11,
    slot: Slot,
    settings: Pkcs11Settings,
    open: Mutex<Option<OpenKey>>,
    key_id: String,
    spki_der: Vec<u8>,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer").field("settings", &self.settings).field("key_id", &self.key_id).finish()
    }
}

impl Pkcs11Signer {
    /// Opens the key pair labelled `settings.key_label`. It must exist: `certbind key init`
    /// creates it.
    pub fn open(settings: &Pkcs11Settings) -> anyhow::Result<Self> {
        let context = context(&settings.module)?;
        let slot = find_slot(&context, settings)?;
        let session = context.open_ro_session(slot).context("cannot open a session with the token")?;
        login(&session, &settings.pin)?;
        let missing = || {
            anyhow!(
                "no ECDSA key labelled {:?} in token {:?}: run `certbind key init` first",
                settings.key_label,
                settings.token_label
            )
        };
        let private = find_key(&session, ObjectClass::PRIVATE_KEY, &settings.key_label)?.ok_or_else(missing)?;
        let public = find_key(&session, ObjectClass::PUBLIC_KEY, &settings.key_label)?
            .ok_or_else(|| anyhow!("the key {:?} has no public key object in the token", settings.key_label))?;
        let spki_der = public_key_spki(&session, public)?;
        Ok(Pkcs11Signer {
            context,
            slot,
            settings: settings.clone(),
            open: Mutex::new(Some(OpenKey { session, private })),
            key_id: key_id_of_spki(&spki_der),
            spki_der,
        })
    }

    /// Creates the key pair if the token has none under `settings.key_label`, then opens it.
    /// Returns the signer and whether a key was created. The private key is generated as
    /// `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, `CKA_SIGN` only;
    /// both halves carry the label and `CKA_ID` = the first 2 bytes of SHA-256(label) (two
    /// bytes because YubiHSM 2 object ids are 16-bit; other tokens accept any length).
    pub fn init_key(settings: &Pkcs11Settings) -> anyhow::Result<(Self, bool)> {
        // One key creation at a time in this process: two callers that both find no key would
        // otherwise both generate one under the same label, and SoftHSM2's file-backed token
        // fails concurrent object creation with CKR_GENERAL_ERROR.
        static KEY_CREATION: Mutex<()> = Mutex::new(());
        let _creating = KEY_CREATION.lock().map_err(|_| anyhow!("key creation lock poisoned"))?;
        let context = context(&settings.module)?;
        let slot = find_slot(&context, settings)?;
        let session = context.open_rw_session(slot).context("cannot open a read-write session with the token")?;
        login(&session, &settings.pin)?;
        let created = if find_key(&session, ObjectClass::PRIVATE_KEY, &settings.key_label)?.is_some() {
            false
        } else {
            let label = settings.key_label.as_bytes().to_vec();
            let id = Sha256::digest(label.as_slice()).get(..2).map(<[u8]>::to_vec).unwrap_or_default();
            let public_template = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::EcParams(P256_EC_PARAMS.to_vec()),
                Attribute::Label(label.clone()),
                Attribute::Id(id.clone()),
            ];
            let private_template = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Label(label),
                Attribute::Id(id),
            ];
            session
                .generate_key_pair(&Mechanism::EccKeyPairGen, &public_template, &private_template)
                .context("the token refused to generate an ECDSA P-256 key pair")?;
            true
        };
        drop(session);
        Ok((Self::open(settings)?, created))
    }

    fn reopen(&self) -> anyhow::Result<OpenKey> {
        let session = self.context.open_ro_session(self.slot).context("cannot reopen a session with the token")?;
        login(&session, &self.settings.pin)?;
        let private = find_key(&session, ObjectClass::PRIVATE_KEY, &self.settings.key_label)?
            .ok_or_else(|| anyhow!("the key {:?} disappeared from the token", self.settings.key_label))?;
        Ok(OpenKey { session, private })
    }

    /// The private key's protection attributes as the token reports them.
    pub fn key_protection(&self) -> anyhow::Result<KeyProtection> {
        let mut open = self.open.lock().map_err(|_| anyhow!("PKCS#11 session lock poisoned"))?;
        if open.is_none() {
            *open = Some(self.reopen()?);
        }
        let key = open.as_ref().ok_or_else(|| anyhow!("no session"))?;
        let attributes = key
            .session
            .get_attributes(key.private, &[AttributeType::Sensitive, AttributeType::Extractable, AttributeType::Token])
            .context("cannot read the private key's attributes")?;
        let mut protection = KeyProtection { sensitive: false, extractable: true, on_token: false };
        for attribute in attributes {
            match attribute {
                Attribute::Sensitive(v) => protection.sensitive = v,
                Attribute::Extractable(v) => protection.extractable = v,
                Attribute::Token(v) => protection.on_token = v,
                _ => {}
            }
        }
        Ok(protection)
    }
}

impl Signer for Pkcs11Signer {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::EcdsaP256Sha256
    }

    fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let digest = Sha256::digest(message);
        let mut open = self.open.lock().map_err(|_| anyhow!("PKCS#11 session lock poisoned"))?;
        let mut retried = false;
        loop {
            if open.is_none() {
                *open = Some(self.reopen()?);
            }
            let key = open.as_ref().ok_or_else(|| anyhow!("no session"))?;
            match key.session.sign(&Mechanism::Ecdsa, key.private, &digest) {
                Ok(raw) => {
                    let signature = p256::ecdsa::Signature::from_slice(&raw)
                        .map_err(|_| anyhow!("the token returned a {}-byte signature, not r ‖ s", raw.len()))?;
                    // Either S verifies; the low one is canonical.
                    let signature = signature.normalize_s().unwrap_or(signature);
                    return Ok(signature.to_bytes().to_vec());
                }
                Err(e) if !retried && session_lost(&e) => {
                    retried = true;
                    *open = None;
                }
                Err(e) => return Err(e).context("the token refused to sign"),
            }
        }
    }

    fn public_key_der(&self) -> Vec<u8> {
        self.spki_der.clone()
    }
}

/// Initialises a SoftHSM2 token labelled `label` in a private directory: writes
/// `dir/softhsm2.conf` pointing at `dir/tokens/` and runs `softhsm2-util --init-token` with
/// `SOFTHSM2_CONF` set for that command only. Returns the configuration path, which the
/// process loading the module must export as `SOFTHSM2_CONF` before the module is loaded.
/// For development and tests (scripts/softhsm-init.sh does the same from a shell).
pub fn init_softhsm_token(dir: &Path, label: &str, so_pin: &str, user_pin: &str) -> anyhow::Result<PathBuf> {
    let tokens = dir.join("tokens");
    // The token directory holds the signing key: private, as SoftHSM2 itself asks.
    crate::private_files::create_dir(dir)?;
    crate::private_files::create_dir(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    let text = format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display());
    std::fs::write(&conf, text).with_context(|| format!("cannot write {}", conf.display()))?;
    let output = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", user_pin])
        .output()
        .context("cannot run softhsm2-util (apt-get install softhsm2)")?;
    if !output.status.success() {
        bail!("softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_is_read_wrapped_or_bare() {
        let mut point = vec![0x04];
        point.extend_from_slice(&[0xab; 64]);
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend_from_slice(&point);
        assert_eq!(sec1_point(&wrapped).unwrap(), point.as_slice());
        assert_eq!(sec1_point(&point).unwrap(), point.as_slice());
        assert!(sec1_point(&point[..33]).is_err());
    }

    #[test]
    fn settings_never_print_the_pin() {
        let settings = Pkcs11Settings {
            module: SOFTHSM2_MODULE.into(),
            token_label: "t".into(),
            key_label: "k".into(),
            pin: "123456".into(),
        };
        assert!(!format!("{settings:?}").contains("123456"));
    }
}
