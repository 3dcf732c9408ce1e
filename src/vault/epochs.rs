//! Epoch keys: one per epoch, each the only copy of itself, in a file of
//! its own under the KEK.
//!
//! Data keys are wrapped under the epoch in force and re-wrapped when the
//! next one starts. Once no live data key and no kept backup needs an
//! epoch, its file is overwritten and removed ([`Epochs::destroy_before`]):
//! whatever was wrapped under it — a purged alert's data key left behind
//! in an old store segment, in a backup past its retention — no longer
//! opens anywhere. The files live apart from the store's segments for that
//! reason: a store compacts when it likes, a file is removed when told.
//!
//! A file is `epoch-<n>.key`: the epoch's start (Unix seconds, 8 bytes big
//! endian), then its key sealed under the KEK for [`Place::Epoch`]`(n)`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::VaultError;
use super::kek::{Kek, check_wrapped_by};
use super::seal::{self, Place};
use super::secret::Secret;

/// An epoch's number: 1, 2, … in the order they started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpochId(pub u64);

impl std::fmt::Display for EpochId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl EpochId {
    /// How a value sealed under this epoch's key names it (`e17`).
    pub fn key_id(self) -> Vec<u8> {
        format!("e{}", self.0).into_bytes()
    }

    /// The epoch a key id names, if it names one.
    pub fn from_key_id(id: &[u8]) -> Option<Self> {
        let digits = std::str::from_utf8(id.strip_prefix(b"e")?).ok()?;
        if digits.is_empty() || digits.starts_with('0') {
            return None;
        }
        digits.parse().ok().map(Self)
    }
}

struct Kept {
    key: Secret,
    started_at: i64,
}

/// The epoch keys a node keeps, the newest in force.
pub struct Epochs {
    dir: PathBuf,
    kek: Arc<dyn Kek>,
    kept: BTreeMap<EpochId, Kept>,
}

fn file_error(path: &Path, reason: impl ToString) -> VaultError {
    VaultError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

impl Epochs {
    /// The epochs kept in `dir` (made 0700 if new), each unwrapped with
    /// `kek` (another node's KEK is refused, naming both); the first epoch
    /// is started when there is none.
    pub fn open(dir: &Path, kek: Arc<dyn Kek>) -> Result<Self, VaultError> {
        crate::secrets::private_dir(dir, "epoch key directory").map_err(|e| file_error(dir, e))?;
        let mut epochs = Self {
            dir: dir.to_owned(),
            kek,
            kept: BTreeMap::new(),
        };
        for entry in std::fs::read_dir(dir).map_err(|e| file_error(dir, e))? {
            let path = entry.map_err(|e| file_error(dir, e))?.path();
            let Some(id) = epoch_of_file(&path) else {
                continue;
            };
            epochs.kept.insert(id, epochs.read(&path, id)?);
        }
        if epochs.kept.is_empty() {
            epochs.advance()?;
        }
        Ok(epochs)
    }

    fn path(&self, id: EpochId) -> PathBuf {
        self.dir.join(format!("epoch-{}.key", id.0))
    }

    fn read(&self, path: &Path, id: EpochId) -> Result<Kept, VaultError> {
        crate::secrets::check_owner_only(path, "epoch key file")
            .map_err(|e| file_error(path, e))?;
        let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
        if bytes.len() < 8 {
            return Err(file_error(path, "cut short"));
        }
        let (start, wrapped) = bytes.split_at(8);
        check_wrapped_by(self.kek.as_ref(), wrapped)?;
        let key = self.kek.unwrap(id.0, wrapped)?;
        let started_at = i64::from_be_bytes(start.try_into().expect("8 bytes"));
        Ok(Kept { key, started_at })
    }

    /// The epoch in force and when it started (Unix seconds).
    pub fn current(&self) -> (EpochId, i64) {
        let (id, kept) = self.kept.last_key_value().expect("one epoch at least");
        (*id, kept.started_at)
    }

    /// The key of the epoch in force, with its number.
    pub fn current_key(&self) -> (EpochId, &Secret) {
        let (id, kept) = self.kept.last_key_value().expect("one epoch at least");
        (*id, &kept.key)
    }

    /// The key of epoch `id`, while it is kept.
    pub fn key(&self, id: EpochId) -> Result<&Secret, VaultError> {
        self.kept
            .get(&id)
            .map(|k| &k.key)
            .ok_or(VaultError::EpochGone(id.0))
    }

    /// When epoch `id` started (Unix seconds), while it is kept.
    pub fn started_at(&self, id: EpochId) -> Option<i64> {
        self.kept.get(&id).map(|k| k.started_at)
    }

    /// The KEK's name (what every epoch file names).
    pub fn kek_id(&self) -> &str {
        self.kek.id()
    }

    /// Every epoch kept, oldest first.
    pub fn kept(&self) -> Vec<EpochId> {
        self.kept.keys().copied().collect()
    }

    /// Starts the next epoch: its file is written and synced (and the
    /// directory synced) before its key wraps anything.
    pub fn advance(&mut self) -> Result<EpochId, VaultError> {
        let next = EpochId(self.kept.last_key_value().map_or(1, |(id, _)| id.0 + 1));
        let key = Secret::random();
        let started_at = crate::time::now_ms() / 1000;
        let mut bytes = started_at.to_be_bytes().to_vec();
        bytes.extend(self.kek.wrap(next.0, &key)?);
        let path = self.path(next);
        crate::secrets::create_new(&path, &bytes, true).map_err(|e| file_error(&path, e))?;
        sync_dir(&self.dir)?;
        self.kept.insert(next, Kept { key, started_at });
        Ok(next)
    }

    /// Destroys every epoch before `keep_from` (never the one in force):
    /// each file overwritten with zeros and synced, then removed, and the
    /// directory synced. Returns the epochs destroyed.
    pub fn destroy_before(&mut self, keep_from: EpochId) -> Result<Vec<EpochId>, VaultError> {
        let (current, _) = self.current();
        let doomed: Vec<EpochId> = self
            .kept
            .keys()
            .copied()
            .filter(|id| *id < keep_from && *id != current)
            .collect();
        for id in &doomed {
            let path = self.path(*id);
            shred(&path)?;
            self.kept.remove(id);
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(doomed)
    }

    /// Wraps every kept epoch key under `kek` instead (a KEK rotation):
    /// each new file written and synced beside the old one, then each
    /// renamed over it, then the directory synced; from then on the old
    /// KEK opens nothing here. Returns how many epochs were re-wrapped.
    /// (A crash between the renames leaves some files under each KEK:
    /// keep the old KEK until the node has started on the new one.)
    pub fn rewrap(&mut self, kek: Arc<dyn Kek>) -> Result<usize, VaultError> {
        let mut staged = Vec::new();
        for (id, kept) in &self.kept {
            let mut bytes = kept.started_at.to_be_bytes().to_vec();
            bytes.extend(kek.wrap(id.0, &kept.key)?);
            let next = self.path(*id).with_extension("key.next");
            let _ = std::fs::remove_file(&next);
            crate::secrets::create_new(&next, &bytes, true).map_err(|e| file_error(&next, e))?;
            staged.push((next, self.path(*id)));
        }
        for (next, path) in &staged {
            std::fs::rename(next, path).map_err(|e| file_error(path, e))?;
        }
        sync_dir(&self.dir)?;
        self.kek = kek;
        Ok(staged.len())
    }

    /// `dk` wrapped under the epoch in force, for `owner`.
    pub fn wrap_data_key(&self, owner: &[u8], dk: &Secret) -> Vec<u8> {
        let (id, _) = self.current();
        let epoch = &self.kept[&id].key;
        seal::seal(epoch, &id.key_id(), Place::DataKey(owner), dk.expose())
    }

    /// The data key `wrapped` holds for `owner`, and the epoch it was
    /// wrapped under; [`VaultError::EpochGone`] once that epoch is destroyed.
    pub fn unwrap_data_key(
        &self,
        owner: &[u8],
        wrapped: &[u8],
    ) -> Result<(Secret, EpochId), VaultError> {
        let id = EpochId::from_key_id(seal::peek_key_id(wrapped)?)
            .ok_or(VaultError::Malformed("not wrapped under an epoch"))?;
        let kept = self.kept.get(&id).ok_or(VaultError::EpochGone(id.0))?;
        let plain = zeroize::Zeroizing::new(seal::open(&kept.key, Place::DataKey(owner), wrapped)?);
        let dk =
            Secret::from_slice(&plain).ok_or(VaultError::Malformed("a data key is 32 bytes"))?;
        Ok((dk, id))
    }
}

fn epoch_of_file(path: &Path) -> Option<EpochId> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix("epoch-")?.strip_suffix(".key")?;
    digits.parse().ok().map(EpochId)
}

/// Overwrites `path` with zeros, syncs, removes it. (On a journaling or
/// copy-on-write file system, or a flash disk, old blocks may survive the
/// overwrite; what protects them is that the KEK is needed to read them.)
fn shred(path: &Path) -> Result<(), VaultError> {
    let len = std::fs::metadata(path)
        .map_err(|e| file_error(path, e))?
        .len();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| file_error(path, e))?;
    file.write_all(&vec![0u8; len as usize])
        .and_then(|()| file.sync_all())
        .map_err(|e| file_error(path, e))?;
    drop(file);
    std::fs::remove_file(path).map_err(|e| file_error(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_error(dir, e))
}

#[cfg(test)]
mod tests {
    use super::super::FileKek;
    use super::*;

    fn kek(dir: &Path) -> Arc<dyn Kek> {
        Arc::new(FileKek::create(&dir.join("kek.toml")).unwrap())
    }

    /// A data key wrapped under an epoch opens while the epoch is kept,
    /// across a restart, and never again once it is destroyed.
    #[test]
    fn a_destroyed_epoch_takes_what_it_wrapped_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let kek = kek(dir.path());
        let keys = dir.path().join("keys");
        let mut epochs = Epochs::open(&keys, kek.clone()).unwrap();
        assert_eq!(epochs.current().0, EpochId(1));
        let dk = Secret::random();
        let old = epochs.wrap_data_key(b"alert-1", &dk);
        assert!(
            epochs.unwrap_data_key(b"alert-2", &old).is_err(),
            "bound to its owner"
        );

        let second = epochs.advance().unwrap();
        let rewrapped = epochs.wrap_data_key(b"alert-1", &dk);
        let reopened = Epochs::open(&keys, kek.clone()).unwrap();
        assert_eq!(reopened.kept(), [EpochId(1), second]);
        assert_eq!(
            reopened.unwrap_data_key(b"alert-1", &old).unwrap(),
            (dk.clone(), EpochId(1))
        );

        assert_eq!(epochs.destroy_before(second).unwrap(), [EpochId(1)]);
        assert!(!keys.join("epoch-1.key").exists());
        let after = Epochs::open(&keys, kek).unwrap();
        assert!(matches!(
            after.unwrap_data_key(b"alert-1", &old),
            Err(VaultError::EpochGone(1))
        ));
        assert_eq!(after.unwrap_data_key(b"alert-1", &rewrapped).unwrap().0, dk);
    }

    /// After a rotation the new KEK opens every epoch and the old one none.
    #[test]
    fn a_rotated_kek_takes_over_every_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let old = kek(dir.path());
        let mut epochs = Epochs::open(&keys, old.clone()).unwrap();
        epochs.advance().unwrap();
        let dk = Secret::random();
        let wrapped = epochs.wrap_data_key(b"alert-1", &dk);
        let new: Arc<dyn Kek> = Arc::new(FileKek::create(&dir.path().join("new.toml")).unwrap());
        assert_eq!(epochs.rewrap(new.clone()).unwrap(), 2);
        let reopened = Epochs::open(&keys, new).unwrap();
        assert_eq!(
            reopened.unwrap_data_key(b"alert-1", &wrapped).unwrap().0,
            dk
        );
        assert!(
            Epochs::open(&keys, old).is_err(),
            "the old KEK opens nothing"
        );
        assert_eq!(
            std::fs::read_dir(&keys).unwrap().count(),
            2,
            "no file left over"
        );
    }

    #[test]
    fn another_nodes_kek_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        Epochs::open(&keys, kek(dir.path())).unwrap();
        let stranger: Arc<dyn Kek> =
            Arc::new(FileKek::create(&dir.path().join("stranger.toml")).unwrap());
        let err = Epochs::open(&keys, stranger).err().unwrap().to_string();
        assert!(err.contains("but this node has KEK"), "{err}");
    }
}
