//! Epoch keys and backup keys, each the only copy of itself, in a file of
//! its own under the KEK.
//!
//! Data keys are wrapped under the epoch in force and re-wrapped when the
//! next one starts; then the old epoch's file is overwritten and removed
//! ([`Epochs::destroy_before`]): whatever was wrapped under it — a purged
//! alert's data key left behind in an old store segment — no longer opens
//! anywhere. A backup is sealed under a key of its own, kept for the
//! backup retention and then destroyed the same way
//! ([`Epochs::destroy_backups_before`]), so keeping backups never keeps an
//! epoch alive. The files live apart from the store's segments for that
//! reason: a store compacts when it likes, a file is removed when told.
//!
//! A file is `epoch-<n>.key` or `backup-<n>.key`: when the key was made
//! (Unix seconds, 8 bytes big endian), then the key sealed under the KEK
//! for [`Place::Epoch`]`(n)` or [`Place::Backup`]`(n)`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::VaultError;
use super::kek::{Kek, check_wrapped_by};
use super::seal::Place;
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
        number_in(id, b"e").map(Self)
    }
}

/// A backup key's number: when it was made (Unix seconds), made unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupKeyId(pub u64);

impl std::fmt::Display for BackupKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl BackupKeyId {
    /// How a value sealed under this backup key names it (`b1796256000`).
    pub fn key_id(self) -> Vec<u8> {
        format!("b{}", self.0).into_bytes()
    }
}

/// The number after `prefix` in a key id, written without leading zeros.
fn number_in(id: &[u8], prefix: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(id.strip_prefix(prefix)?).ok()?;
    if digits.is_empty() || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

struct Kept {
    key: Secret,
    started_at: i64,
}

/// The epoch keys a node keeps, the newest in force, and its backups' keys.
pub struct Epochs {
    dir: PathBuf,
    kek: Arc<dyn Kek>,
    kept: BTreeMap<EpochId, Kept>,
    backups: BTreeMap<BackupKeyId, Kept>,
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
            backups: BTreeMap::new(),
        };
        for entry in std::fs::read_dir(dir).map_err(|e| file_error(dir, e))? {
            let path = entry.map_err(|e| file_error(dir, e))?.path();
            if let Some(n) = number_of_file(&path, "epoch-") {
                let kept = epochs.read(&path, Place::Epoch(n))?;
                epochs.kept.insert(EpochId(n), kept);
            } else if let Some(n) = number_of_file(&path, "backup-") {
                let kept = epochs.read(&path, Place::Backup(n))?;
                epochs.backups.insert(BackupKeyId(n), kept);
            }
        }
        if epochs.kept.is_empty() {
            epochs.advance()?;
        }
        Ok(epochs)
    }

    fn path(&self, place: Place<'_>) -> PathBuf {
        match place {
            Place::Backup(n) => self.dir.join(format!("backup-{n}.key")),
            Place::Epoch(n) => self.dir.join(format!("epoch-{n}.key")),
            _ => unreachable!("only epoch and backup keys have files"),
        }
    }

    fn read(&self, path: &Path, place: Place<'_>) -> Result<Kept, VaultError> {
        crate::secrets::check_owner_only(path, "epoch key file")
            .map_err(|e| file_error(path, e))?;
        let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
        if bytes.len() < 8 {
            return Err(file_error(path, "cut short"));
        }
        let (start, wrapped) = bytes.split_at(8);
        check_wrapped_by(self.kek.as_ref(), wrapped)?;
        let key = self.kek.unwrap(place, wrapped)?;
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

    /// Writes a new key's file for `place` and syncs it and the directory,
    /// before the key wraps anything.
    fn create(&self, place: Place<'_>) -> Result<Kept, VaultError> {
        let key = Secret::random();
        let started_at = crate::time::now_ms() / 1000;
        let mut bytes = started_at.to_be_bytes().to_vec();
        bytes.extend(self.kek.wrap(place, &key)?);
        let path = self.path(place);
        crate::secrets::create_new(&path, &bytes, true).map_err(|e| file_error(&path, e))?;
        sync_dir(&self.dir)?;
        Ok(Kept { key, started_at })
    }

    /// Starts the next epoch.
    pub fn advance(&mut self) -> Result<EpochId, VaultError> {
        let next = EpochId(self.kept.last_key_value().map_or(1, |(id, _)| id.0 + 1));
        let kept = self.create(Place::Epoch(next.0))?;
        self.kept.insert(next, kept);
        Ok(next)
    }

    /// A new key for a backup about to be written: numbered by the time,
    /// never reusing a number a kept key has.
    pub fn new_backup_key(&mut self) -> Result<(BackupKeyId, Secret), VaultError> {
        let now = (crate::time::now_ms() / 1000).max(1) as u64;
        let after_last = self.backups.last_key_value().map_or(1, |(id, _)| id.0 + 1);
        let id = BackupKeyId(now.max(after_last));
        let kept = self.create(Place::Backup(id.0))?;
        let key = kept.key.clone();
        self.backups.insert(id, kept);
        Ok((id, key))
    }

    /// The backup keys kept, oldest first, each with when it was made.
    pub fn backups(&self) -> Vec<(BackupKeyId, i64)> {
        self.backups
            .iter()
            .map(|(id, k)| (*id, k.started_at))
            .collect()
    }

    /// Destroys every backup key made before `cutoff` (Unix seconds), as
    /// [`Epochs::destroy_before`] destroys epochs. Returns those destroyed.
    pub fn destroy_backups_before(&mut self, cutoff: i64) -> Result<Vec<BackupKeyId>, VaultError> {
        let doomed: Vec<BackupKeyId> = self
            .backups
            .iter()
            .filter(|(_, k)| k.started_at < cutoff)
            .map(|(id, _)| *id)
            .collect();
        for id in &doomed {
            shred(&self.path(Place::Backup(id.0)))?;
            self.backups.remove(id);
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(doomed)
    }

    /// The epoch or backup key a sealed value names (`e17`, `b1796256000`),
    /// while it is kept.
    pub fn key_by_id(&self, id: &[u8]) -> Result<&Secret, VaultError> {
        if let Some(epoch) = EpochId::from_key_id(id) {
            return self.key(epoch);
        }
        let n = number_in(id, b"b").ok_or(VaultError::Malformed(
            "a value sealed under neither an epoch nor a backup key",
        ))?;
        self.backups
            .get(&BackupKeyId(n))
            .map(|k| &k.key)
            .ok_or(VaultError::BackupKeyGone(n))
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
            shred(&self.path(Place::Epoch(id.0)))?;
            self.kept.remove(id);
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(doomed)
    }

    /// Wraps every kept epoch and backup key under `kek` instead (a KEK
    /// rotation): each new file written and synced beside the old one, then
    /// each renamed over it, then the directory synced; from then on the
    /// old KEK opens nothing here. Returns how many keys were re-wrapped.
    /// (A crash between the renames leaves some files under each KEK:
    /// keep the old KEK until the node has started on the new one.)
    pub fn rewrap(&mut self, kek: Arc<dyn Kek>) -> Result<usize, VaultError> {
        let epochs = self.kept.iter().map(|(id, k)| (Place::Epoch(id.0), k));
        let backups = self.backups.iter().map(|(id, k)| (Place::Backup(id.0), k));
        let mut staged = Vec::new();
        for (place, kept) in epochs.chain(backups) {
            let mut bytes = kept.started_at.to_be_bytes().to_vec();
            bytes.extend(kek.wrap(place, &kept.key)?);
            let next = self.path(place).with_extension("key.next");
            let _ = std::fs::remove_file(&next);
            crate::secrets::create_new(&next, &bytes, true).map_err(|e| file_error(&next, e))?;
            staged.push((next, self.path(place)));
        }
        for (next, path) in &staged {
            std::fs::rename(next, path).map_err(|e| file_error(path, e))?;
        }
        sync_dir(&self.dir)?;
        self.kek = kek;
        Ok(staged.len())
    }
}

fn number_of_file(path: &Path, prefix: &str) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix(prefix)?
        .strip_suffix(".key")?
        .parse()
        .ok()
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
    use super::super::{FileKek, seal};
    use super::*;

    fn kek(dir: &Path) -> Arc<dyn Kek> {
        Arc::new(FileKek::create(&dir.join("kek.toml")).unwrap())
    }

    /// `dk` sealed under the epoch in force, as a data key for `owner`.
    fn wrap(epochs: &Epochs, owner: &[u8], dk: &Secret) -> Vec<u8> {
        let (id, key) = epochs.current_key();
        seal::seal(key, &id.key_id(), Place::DataKey(owner), dk.expose())
    }

    fn unwrap(epochs: &Epochs, owner: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, VaultError> {
        let key = epochs.key_by_id(seal::peek_key_id(wrapped)?)?;
        seal::open(key, Place::DataKey(owner), wrapped)
    }

    /// What an epoch wrapped opens while the epoch is kept, across a
    /// restart, and never again once it is destroyed.
    #[test]
    fn a_destroyed_epoch_takes_what_it_wrapped_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let kek = kek(dir.path());
        let keys = dir.path().join("keys");
        let mut epochs = Epochs::open(&keys, kek.clone()).unwrap();
        assert_eq!(epochs.current().0, EpochId(1));
        let dk = Secret::random();
        let old = wrap(&epochs, b"alert-1", &dk);
        assert!(
            unwrap(&epochs, b"alert-2", &old).is_err(),
            "bound to its owner"
        );

        let second = epochs.advance().unwrap();
        let rewrapped = wrap(&epochs, b"alert-1", &dk);
        let reopened = Epochs::open(&keys, kek.clone()).unwrap();
        assert_eq!(reopened.kept(), [EpochId(1), second]);
        assert_eq!(unwrap(&reopened, b"alert-1", &old).unwrap(), dk.expose());

        assert_eq!(epochs.destroy_before(second).unwrap(), [EpochId(1)]);
        assert!(!keys.join("epoch-1.key").exists());
        let after = Epochs::open(&keys, kek).unwrap();
        assert!(matches!(
            unwrap(&after, b"alert-1", &old),
            Err(VaultError::EpochGone(1))
        ));
        assert_eq!(unwrap(&after, b"alert-1", &rewrapped).unwrap(), dk.expose());
    }

    /// A backup key lives on its own schedule: turning epochs leaves it,
    /// its cutoff destroys it, and a value it sealed then names it as gone.
    #[test]
    fn a_backup_key_outlives_epochs_until_its_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let kek = kek(dir.path());
        let keys = dir.path().join("keys");
        let mut epochs = Epochs::open(&keys, kek.clone()).unwrap();
        let (first, key) = epochs.new_backup_key().unwrap();
        let (second, _) = epochs.new_backup_key().unwrap();
        assert!(second > first, "never the same number twice");
        let sealed = seal::seal(&key, &first.key_id(), Place::DataKey(b"d"), b"x");
        let next = epochs.advance().unwrap();
        epochs.destroy_before(next).unwrap();
        let reopened = Epochs::open(&keys, kek.clone()).unwrap();
        assert_eq!(reopened.backups().len(), 2);
        let opened = reopened.key_by_id(&first.key_id()).unwrap();
        assert_eq!(
            seal::open(opened, Place::DataKey(b"d"), &sealed).unwrap(),
            b"x"
        );

        let made = reopened.backups()[0].1;
        assert!(epochs.destroy_backups_before(made).unwrap().is_empty());
        assert_eq!(epochs.destroy_backups_before(made + 1).unwrap().len(), 2);
        let after = Epochs::open(&keys, kek).unwrap();
        assert!(matches!(
            after.key_by_id(&first.key_id()),
            Err(VaultError::BackupKeyGone(n)) if n == first.0
        ));
    }

    /// After a rotation the new KEK opens every epoch and the old one none.
    #[test]
    fn a_rotated_kek_takes_over_every_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let old = kek(dir.path());
        let mut epochs = Epochs::open(&keys, old.clone()).unwrap();
        epochs.advance().unwrap();
        epochs.new_backup_key().unwrap();
        let dk = Secret::random();
        let wrapped = wrap(&epochs, b"alert-1", &dk);
        let new: Arc<dyn Kek> = Arc::new(FileKek::create(&dir.path().join("new.toml")).unwrap());
        assert_eq!(epochs.rewrap(new.clone()).unwrap(), 3);
        let reopened = Epochs::open(&keys, new).unwrap();
        assert_eq!(
            unwrap(&reopened, b"alert-1", &wrapped).unwrap(),
            dk.expose()
        );
        assert_eq!(reopened.backups().len(), 1, "backup keys re-wrapped too");
        assert!(
            Epochs::open(&keys, old).is_err(),
            "the old KEK opens nothing"
        );
        assert_eq!(
            std::fs::read_dir(&keys).unwrap().count(),
            3,
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
