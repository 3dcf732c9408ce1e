//! A consistent copy of a running node's store.
//!
//! The copy is logical: one snapshot of the store (every committed
//! transaction, each whole, nothing after it) is written tree by tree into
//! a new database in the target directory, which is then synced and
//! reopened to prove it is readable. Writes go on meanwhile: an engine whose
//! background work creates and deletes files at any time cannot be copied
//! file by file while it runs. The sequence counters live in a tree of
//! their own, so the copy carries them and a restored node never reuses an
//! outbox sequence.
//!
//! A stopped store (or a backup) is copied file by file ([`copy_store`]):
//! that is the restore direction.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::engine::Reads;
use super::engine::sealed::DATA_KEYS;
use super::engine::{Db, EngineError, Options, Range, Snapshot};
use super::trees::{TREES, sync_dir};
use super::vault::SEALED_THROUGH;
use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStats {
    pub path: PathBuf,
    pub alerts: u64,
    pub audit_entries: u64,
    pub bytes: u64,
    /// How long the copy took (writes did not wait).
    pub copy_ms: u64,
}

/// Entries per transaction of the copy: bounded memory for any store size.
const CHUNK: usize = 2_000;

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backup(format!("{}: {e}", path.display()))
}

/// Copies `from` into the new directory `to`, recursively. Returns bytes copied.
fn copy_dir(from: &Path, to: &Path) -> Result<u64, StoreError> {
    // Owner only: a backup holds what the store holds.
    crate::secrets::create_private_dir(to).map_err(|e| io(to, e))?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
        let entry = entry.map_err(|e| io(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| io(&src, e))?;
        if kind.is_dir() {
            bytes += copy_dir(&src, &dst)?;
        } else if kind.is_file() {
            bytes += std::fs::copy(&src, &dst).map_err(|e| io(&src, e))?;
            std::fs::File::open(&dst)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&dst, e))?;
        }
    }
    // The entries just created survive a crash only once their directory is synced.
    sync_dir(to).map_err(|e| io(to, e))?;
    Ok(bytes)
}

/// Copies a stopped node's store (or a backup) into a new directory, file
/// by file, then syncs the new directory's entry in its parent.
pub fn copy_store(from: &Path, to: &Path) -> Result<u64, StoreError> {
    let bytes = copy_dir(from, to)?;
    sync_parent(to)?;
    Ok(bytes)
}

fn sync_parent(dir: &Path) -> Result<(), StoreError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(|e| io(parent, e))?;
    }
    Ok(())
}

/// Writes `entries` into the tree `name` of `target`, in chunked
/// transactions (bounded memory for any size). Returns how many it wrote.
/// Not synced: the caller syncs once after the last tree.
pub(super) fn copy_tree(target: &Db, name: &str, entries: Range) -> Result<u64, EngineError> {
    let to = target.tree(name)?;
    let mut entries = entries.peekable();
    let mut n = 0;
    while entries.peek().is_some() {
        target.transaction(|tx| {
            for item in entries.by_ref().take(CHUNK) {
                let (k, v) = item?;
                tx.insert(to, k, v)?;
                n += 1;
            }
            Ok::<_, EngineError>(())
        })?;
    }
    Ok(n)
}

impl Store {
    /// Writes a consistent copy of the store to `target`, which must not
    /// exist. Blocks (run it off the async workers); writes go on meanwhile.
    pub fn backup_to(&self, target: &Path) -> Result<BackupStats, StoreError> {
        if target.exists() {
            return Err(StoreError::Backup(format!(
                "{} already exists",
                target.display()
            )));
        }
        // A copy inside the store would land among the engine's own files.
        let absolute = |p: &Path| std::path::absolute(p).map_err(|e| io(p, e));
        if absolute(target)?.starts_with(absolute(&self.dir)?) {
            return Err(StoreError::Backup(format!(
                "{} is inside the store directory {}; choose a backup directory outside it",
                target.display(),
                self.dir.display()
            )));
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::secrets::create_private_dir(parent).map_err(|e| io(parent, e))?;
        }
        let started = Instant::now();
        let copied = self.copy_snapshot(&self.db.snapshot(), target);
        let copy_ms = started.elapsed().as_millis() as u64;
        let checked = copied.and_then(|()| {
            sync_parent(target)?;
            count(target, self.vault.as_ref())
        });
        match checked {
            Ok((alerts, audit_entries, bytes)) => Ok(BackupStats {
                path: target.to_owned(),
                alerts,
                audit_entries,
                bytes,
                copy_ms,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(target);
                Err(StoreError::Backup(format!("{}: {e}", target.display())))
            }
        }
    }

    fn copy_snapshot(&self, snapshot: &Snapshot, target: &Path) -> Result<(), StoreError> {
        // Owner only before the engine writes a byte into it.
        crate::secrets::create_private_dir(target).map_err(|e| io(target, e))?;
        // A sealed store's copy is sealed under a key of its own (and its
        // settings say so): restorable only with the KEK, and only while
        // that key is kept (the backup retention). Its data keys go first,
        // so its records stay under the same data keys as the store's.
        let Some(vault) = &self.vault else {
            let copy = Db::open(target, &Options::default())?;
            return copy_trees(&copy, snapshot, &self.db, &TREES);
        };
        let (_, sealer) = vault.backup_sealer()?;
        let copy = Db::open_sealed(target, &Options::default(), sealer)?;
        copy_trees(&copy, snapshot, &self.db, &[DATA_KEYS])?;
        copy_trees(&copy, snapshot, &self.db, &TREES)?;
        // Its values are under the backup key, not the epoch: a store
        // restored from it seals them again at its first epoch check.
        let settings = copy.tree("settings")?;
        copy.transaction(|tx| tx.remove(settings, SEALED_THROUGH))?;
        copy.sync()?;
        Ok(())
    }
}

/// Copies the trees `names` from `snapshot` of `from` into `copy`, synced.
fn copy_trees(copy: &Db, snapshot: &Snapshot, from: &Db, names: &[&str]) -> Result<(), StoreError> {
    for name in names {
        copy_tree(copy, name, snapshot.range::<&[u8]>(from.tree(name)?, ..))?;
    }
    copy.sync()?;
    Ok(())
}

fn open_copy(dir: &Path, vault: Option<&super::Vault>) -> Result<Db, StoreError> {
    Ok(match vault {
        Some(v) => Db::open_sealed(dir, &Options::default(), v.sealer.clone())?,
        None => Db::open(dir, &Options::default())?,
    })
}

/// Opens a copy once (proving it opens) and counts its alerts, audit
/// entries and bytes on disk.
fn count(dir: &Path, vault: Option<&super::Vault>) -> Result<(u64, u64, u64), StoreError> {
    let db = open_copy(dir, vault)?;
    let alerts = db.len(db.tree("alerts")?)?;
    let audit = db.len(db.tree("audit")?)?;
    Ok((alerts, audit, db.disk_bytes()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, Event};

    #[tokio::test]
    async fn a_copy_holds_the_data_and_never_goes_inside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let scope = crate::matching::MatchScope {
            own: crate::ids::AgencyId::new("police").unwrap(),
            peers: Default::default(),
            band: Default::default(),
        };
        let store = Store::open(&dir.path().join("store"), 8 << 20, scope).unwrap();
        store
            .audit_append([Event::new("node", Action::NodeStart, "OK")])
            .unwrap();
        let inside = store
            .backup_to(&dir.path().join("store/backups/x"))
            .unwrap_err();
        assert!(inside.to_string().contains("inside the store"), "{inside}");
        assert!(
            !dir.path().join("store/backups").exists(),
            "nothing created"
        );
        let target = dir.path().join("backups/one");
        let stats = store.backup_to(&target).unwrap();
        assert_eq!((stats.alerts, stats.audit_entries), (0, 1));
        assert!(stats.bytes > 0);
        let again = store.backup_to(&target).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        store.close().await.unwrap();
    }
}
