//! The key-encryption key: what wraps the epoch and backup keys, and
//! nothing else.
//!
//! [`Kek`] is what the rest of the vault asks of it, so a key held in a
//! PKCS#11 token (an HSM, [`super::pkcs11`]) can wrap and unwrap without
//! ever leaving it. [`FileKek`] is the default: a file readable by its
//! owner only (0600, refused otherwise), never overwritten.
//! [`super::pkcs11::load`] reads either from the file `[encryption]
//! kek_file` names.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::error::VaultError;
use super::seal::{self, Place};
use super::secret::Secret;

/// A new KEK id: `kek-` and 16 random hex digits.
pub(super) fn new_id() -> String {
    let mut tag = [0u8; 8];
    aws_lc_rs::rand::fill(&mut tag).expect("the system RNG is available");
    format!("kek-{}", crate::text::hex(&tag))
}

pub(super) fn check_id(path: &Path, id: &str) -> Result<(), VaultError> {
    if id.is_empty() || id.len() > seal::MAX_KEY_ID {
        return Err(file_error(path, "id: 1 to 64 characters"));
    }
    Ok(())
}

/// What wraps and unwraps epoch and backup keys, each bound to its
/// place ([`Place::Epoch`] or [`Place::Backup`]).
pub trait Kek: Send + Sync {
    /// Its name, written into everything it wraps: a node handed another
    /// KEK says so instead of reporting damaged files.
    fn id(&self) -> &str;
    fn wrap(&self, place: Place<'_>, key: &Secret) -> Result<Vec<u8>, VaultError>;
    fn unwrap(&self, place: Place<'_>, wrapped: &[u8]) -> Result<Secret, VaultError>;
}

/// Refuses what `kek` did not wrap, naming both KEKs.
pub(super) fn check_wrapped_by(kek: &dyn Kek, wrapped: &[u8]) -> Result<(), VaultError> {
    let found = seal::peek_key_id(wrapped)?;
    if found != kek.id().as_bytes() {
        return Err(VaultError::WrongKek {
            found: String::from_utf8_lossy(found).into_owned(),
            ours: kek.id().to_owned(),
        });
    }
    Ok(())
}

const HEADER: &str = "# CaseBridge key-encryption key (KEK). SECRET: it unlocks this node's\n# stored case data. Mode 0600; keep a copy apart from the node's backups.\n";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KekFile {
    id: String,
    /// Base64 of the 32-byte AES-256 key.
    key: String,
}

/// A KEK kept in a file.
pub struct FileKek {
    id: String,
    key: Secret,
}

impl FileKek {
    /// Writes a new KEK to `path` (0600); an existing file is never replaced.
    pub fn create(path: &Path) -> Result<Self, VaultError> {
        let kek = Self {
            id: new_id(),
            key: Secret::random(),
        };
        let file = KekFile {
            id: kek.id.clone(),
            key: B64.encode(kek.key.expose()),
        };
        let text = format!(
            "{HEADER}{}",
            toml::to_string(&file).expect("a KEK file serializes")
        );
        crate::secrets::create_new(path, text.as_bytes(), true).map_err(|e| file_error(path, e))?;
        Ok(kek)
    }

    /// Reads the KEK at `path`, refusing a file group or others can read.
    pub fn load(path: &Path) -> Result<Self, VaultError> {
        crate::secrets::check_owner_only(path, "KEK file").map_err(|e| file_error(path, e))?;
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
        let file: KekFile = toml::from_str(&text).map_err(|e| file_error(path, e))?;
        let bytes = zeroize::Zeroizing::new(
            B64.decode(file.key.trim())
                .map_err(|_| file_error(path, "key is not base64"))?,
        );
        let key = Secret::from_slice(&bytes)
            .ok_or_else(|| file_error(path, "key is not 32 bytes (AES-256)"))?;
        check_id(path, &file.id)?;
        Ok(Self { id: file.id, key })
    }
}

pub(super) fn file_error(path: &Path, reason: impl ToString) -> VaultError {
    VaultError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

impl Kek for FileKek {
    fn id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, place: Place<'_>, key: &Secret) -> Result<Vec<u8>, VaultError> {
        Ok(seal::seal(
            &self.key,
            self.id.as_bytes(),
            place,
            key.expose(),
        ))
    }

    fn unwrap(&self, place: Place<'_>, wrapped: &[u8]) -> Result<Secret, VaultError> {
        check_wrapped_by(self, wrapped)?;
        let plain = zeroize::Zeroizing::new(seal::open(&self.key, place, wrapped)?);
        Secret::from_slice(&plain).ok_or(VaultError::Malformed("a wrapped key is 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kek_file_is_private_never_replaced_and_named_in_what_it_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.toml");
        let kek = FileKek::create(&path).unwrap();
        assert!(FileKek::create(&path).is_err(), "never overwritten");
        let again = FileKek::load(&path).unwrap();
        let epoch = Secret::random();
        let wrapped = kek.wrap(Place::Epoch(3), &epoch).unwrap();
        assert_eq!(again.unwrap(Place::Epoch(3), &wrapped).unwrap(), epoch);
        assert!(
            again.unwrap(Place::Epoch(4), &wrapped).is_err(),
            "bound to its epoch"
        );
        assert!(
            again.unwrap(Place::Backup(3), &wrapped).is_err(),
            "an epoch key is no backup key"
        );

        let other = FileKek::create(&dir.path().join("other.toml")).unwrap();
        let err = other
            .unwrap(Place::Epoch(3), &wrapped)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(kek.id()) && err.contains(other.id()),
            "the wrong KEK is named: {err}"
        );

        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = FileKek::load(&path).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
