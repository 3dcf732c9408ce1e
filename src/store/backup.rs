//! A consistent copy of a running node's store.
//!
//! sled has no snapshot read, so the copy is made with every write paused:
//! the backup takes the write gate exclusively (each write holds it shared
//! for its synchronous part, never across an await), flushes, and copies the
//! database files. Nothing is half-written at that moment, so the copy is
//! what a clean shutdown would have left: every alert with its indexes,
//! outbox and audit entries, and the id counter sled keeps in its own files
//! (an export/import would lose it and later reuse outbox sequence numbers).
//! The copy is then opened once to prove it is readable.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Store, StoreError, sync_dir};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStats {
    pub path: PathBuf,
    pub alerts: u64,
    pub audit_entries: u64,
    pub bytes: u64,
    /// How long writes waited.
    pub paused_ms: u64,
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backup(format!("{}: {e}", path.display()))
}

/// Copies `from` into the new directory `to`, recursively. Returns bytes copied.
fn copy_dir(from: &Path, to: &Path) -> Result<u64, StoreError> {
    std::fs::create_dir(to).map_err(|e| io(to, e))?;
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

/// Copies a stopped node's store (or a backup) into a new directory: the
/// restore direction, with the same file-level copy the backup makes.
pub fn copy_store(from: &Path, to: &Path) -> Result<u64, StoreError> {
    copy_tree(from, to)
}

/// [`copy_dir`], then a sync of `to`'s parent, so the copy's own directory
/// entry is durable too.
fn copy_tree(from: &Path, to: &Path) -> Result<u64, StoreError> {
    let bytes = copy_dir(from, to)?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(|e| io(parent, e))?;
    }
    Ok(bytes)
}

impl Store {
    /// Writes a consistent copy of the store to `target`, which must not
    /// exist. Blocks (run it off the async workers); writes wait meanwhile.
    pub fn backup_to(&self, target: &Path) -> Result<BackupStats, StoreError> {
        if target.exists() {
            return Err(StoreError::Backup(format!(
                "{} already exists",
                target.display()
            )));
        }
        // A copy inside the store would copy itself without end.
        let absolute = |p: &Path| std::path::absolute(p).map_err(|e| io(p, e));
        if absolute(target)?.starts_with(absolute(&self.dir)?) {
            return Err(StoreError::Backup(format!(
                "{} is inside the store directory {}; choose a backup directory outside it",
                target.display(),
                self.dir.display()
            )));
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let started = Instant::now();
        let copied = {
            let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
            self.db.flush()?;
            copy_tree(&self.dir, target)
        };
        let paused_ms = started.elapsed().as_millis() as u64;
        let copied = match copied {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_dir_all(target);
                return Err(e);
            }
        };
        // Prove the copy opens, and count what it holds.
        let check = || -> Result<(u64, u64), StoreError> {
            let db = sled::Config::new().path(target).open()?;
            let counts = (
                db.open_tree("alerts")?.len() as u64,
                db.open_tree("audit")?.len() as u64,
            );
            drop(db);
            Ok(counts)
        };
        let (alerts, audit_entries) = match check() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(target);
                return Err(StoreError::Backup(format!("the copy does not open: {e}")));
            }
        };
        Ok(BackupStats {
            path: target.to_owned(),
            alerts,
            audit_entries,
            bytes: copied,
            paused_ms,
        })
    }
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
            fuzzy_threshold: 0.8,
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
