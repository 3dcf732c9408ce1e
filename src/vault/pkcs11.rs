//! A KEK held in a PKCS#11 token (an HSM; tested with SoftHSM2): an
//! AES-256 key made inside the token, sensitive and not extractable, that
//! wraps and unwraps epoch and backup keys with the token's own AES-GCM.
//! The key's bytes never reach this process.
//!
//! The node finds it through a **reference file** in place of a KEK file
//! (`[encryption] kek_file` names either): the module, the token's label,
//! the key's label, the file holding the user PIN (0600), and the KEK's id,
//! which the key also carries as its `CKA_ID`, so a token that holds
//! another key under the same label is refused by name.
//!
//! `cryptoki` (the Parsec project's PKCS#11 binding) loads the module and
//! speaks the C interface; the format and the associated data of what is
//! wrapped are the vault's own (`seal::seal_by`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};

use super::error::VaultError;
use super::kek::{FileKek, Kek, check_id, check_wrapped_by, file_error, new_id};
use super::seal::{self, Place};
use super::secret::Secret;

/// The KEK the file at `path` holds, or the token key it refers to
/// (refused unless only its owner can read it, either way).
pub fn load(path: &Path) -> Result<Arc<dyn Kek>, VaultError> {
    crate::secrets::check_owner_only(path, "KEK file").map_err(|e| file_error(path, e))?;
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| file_error(path, e))?;
    if !table.contains_key("pkcs11_module") {
        return Ok(Arc::new(FileKek::load(path)?));
    }
    let token: TokenKey = toml::from_str(&text).map_err(|e| file_error(path, e))?;
    check_id(path, &token.id)?;
    Ok(Arc::new(Pkcs11Kek::open(&token, base_of(path))?))
}

/// The directory a reference file's relative paths start from.
fn base_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

const TOKEN_HEADER: &str = "# CaseBridge key-encryption key (KEK) held in a PKCS#11 token: where it\n# is. The key never leaves the token; the PIN file must be mode 0600.\n";

/// Makes a new KEK inside the token `token` names (its `id` is chosen
/// here) and writes the reference file at `path` (0600; never replacing
/// a file, checked before the token is touched).
pub fn create_in_token(path: &Path, mut token: TokenKey) -> Result<Pkcs11Kek, VaultError> {
    if path.exists() {
        return Err(file_error(
            path,
            "exists already; a KEK file is never replaced",
        ));
    }
    token.id = new_id();
    let kek = Pkcs11Kek::create(&token, base_of(path))?;
    let text = format!(
        "{TOKEN_HEADER}{}",
        toml::to_string(&token).expect("a reference file serializes")
    );
    crate::secrets::create_new(path, text.as_bytes(), true).map_err(|e| file_error(path, e))?;
    Ok(kek)
}

/// Where a token's KEK is: what a reference file holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenKey {
    /// The KEK's id (`kek-…`), also the key's `CKA_ID` in the token.
    pub id: String,
    /// The token's PKCS#11 module (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so).
    pub pkcs11_module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The key's label in the token.
    pub key: String,
    /// A file (0600) holding the token's user PIN; relative to this file.
    pub pin_file: PathBuf,
}

fn token_error(what: &str, e: impl std::fmt::Display) -> VaultError {
    VaultError::Token(format!("{what}: {e}"))
}

/// A KEK inside a token, with a logged-in session to it.
pub struct Pkcs11Kek {
    id: String,
    /// A session is not shareable between threads; wraps are rare.
    session: Mutex<Session>,
    key: ObjectHandle,
}

/// The module loaded and initialized, a read-write session on the token
/// labelled `token`, logged in with the PIN in `pin_file`.
fn session(r: &TokenKey, base: &Path) -> Result<Session, VaultError> {
    let pin_path = base.join(&r.pin_file);
    crate::secrets::check_owner_only(&pin_path, "PIN file").map_err(|e| VaultError::File {
        path: pin_path.clone(),
        reason: e,
    })?;
    let pin = std::fs::read_to_string(&pin_path).map_err(|e| VaultError::File {
        path: pin_path.clone(),
        reason: e.to_string(),
    })?;
    let module = base.join(&r.pkcs11_module);
    let ctx = Pkcs11::new(&module).map_err(|e| token_error(&module.display().to_string(), e))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another KEK of this process (a rotation) initialized it first.
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(token_error("initializing the module", e)),
    }
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| token_error("listing tokens", e))?;
    let slot = slots
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|i| i.label() == r.token))
        .ok_or_else(|| token_error(&r.token, "no token with this label"))?;
    let session = ctx
        .open_rw_session(slot)
        .map_err(|e| token_error(&r.token, e))?;
    match session.login(UserType::User, Some(&AuthPin::new(pin.trim().into()))) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => return Err(token_error(&format!("logging in to {}", r.token), e)),
    }
    Ok(session)
}

fn key_template(r: &TokenKey) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(r.key.as_bytes().to_vec()),
    ]
}

impl Pkcs11Kek {
    /// The key `r` names, found in its token; refused when the token
    /// holds none, several, or one with another id.
    pub fn open(r: &TokenKey, base: &Path) -> Result<Self, VaultError> {
        let session = session(r, base)?;
        let found = session
            .find_objects(&key_template(r))
            .map_err(|e| token_error(&r.key, e))?;
        let [key] = found[..] else {
            return Err(token_error(
                &r.key,
                format!(
                    "{} keys with this label in token {}, not one",
                    found.len(),
                    r.token
                ),
            ));
        };
        let attrs = session
            .get_attributes(key, &[AttributeType::Id])
            .map_err(|e| token_error(&r.key, e))?;
        let id = attrs.iter().find_map(|a| match a {
            Attribute::Id(id) => Some(id.clone()),
            _ => None,
        });
        if id.as_deref() != Some(r.id.as_bytes()) {
            return Err(VaultError::WrongKek {
                found: id.map_or("(no id)".into(), |i| {
                    String::from_utf8_lossy(&i).into_owned()
                }),
                ours: r.id.clone(),
            });
        }
        Ok(Self {
            id: r.id.clone(),
            session: Mutex::new(session),
            key,
        })
    }

    /// Makes a new AES-256 key in the token (sensitive, not extractable,
    /// kept in the token) under `r.key`, refused when the label is taken.
    pub fn create(r: &TokenKey, base: &Path) -> Result<Self, VaultError> {
        let session = session(r, base)?;
        let taken = session
            .find_objects(&key_template(r))
            .map_err(|e| token_error(&r.key, e))?;
        if !taken.is_empty() {
            return Err(token_error(
                &r.key,
                format!("token {} already holds a key with this label", r.token),
            ));
        }
        let mut template = key_template(r);
        template.extend([
            Attribute::Id(r.id.as_bytes().to_vec()),
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ]);
        let key = session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| token_error("making the key", e))?;
        Ok(Self {
            id: r.id.clone(),
            session: Mutex::new(session),
            key,
        })
    }

    fn gcm(
        &self,
        nonce: &[u8],
        aad: &[u8],
        data: &[u8],
        encrypt: bool,
    ) -> cryptoki::error::Result<Vec<u8>> {
        let mut iv = nonce.to_vec();
        let params = GcmParams::new(&mut iv, aad, 128.into())?;
        let mechanism = Mechanism::AesGcm(params);
        let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if encrypt {
            session.encrypt(&mechanism, self.key, data)
        } else {
            session.decrypt(&mechanism, self.key, data)
        }
    }
}

impl Kek for Pkcs11Kek {
    fn id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, place: Place<'_>, key: &Secret) -> Result<Vec<u8>, VaultError> {
        seal::seal_by(
            self.id.as_bytes(),
            place,
            key.expose(),
            |nonce, aad, plain| {
                self.gcm(nonce, aad, plain, true)
                    .map_err(|e| token_error("wrapping in the token", e))
            },
        )
    }

    fn unwrap(&self, place: Place<'_>, wrapped: &[u8]) -> Result<Secret, VaultError> {
        check_wrapped_by(self, wrapped)?;
        let plain = zeroize::Zeroizing::new(seal::open_by(place, wrapped, |nonce, aad, body| {
            self.gcm(nonce, aad, body, false).ok()
        })?);
        Secret::from_slice(&plain).ok_or(VaultError::Malformed("a wrapped key is 32 bytes"))
    }
}
