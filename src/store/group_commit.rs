//! Group commit: concurrent writers that need durability share one flush.
//!
//! A submit is acknowledged only after its transaction is on disk. Flushing
//! per submit would serialise clients on fsync latency; instead each writer
//! enqueues a waiter, and one flusher task drains every waiter queued so far,
//! flushes once, and wakes them all. A waiter queued during a flush is served
//! by the next one, so every waiter's write precedes the flush that wakes it.
//!
//! A flush alone is not durable: sled 0.34 ends it with `sync_file_range`,
//! which flushes neither the drive's volatile write cache nor the file's
//! metadata, and writes blob files (values over ~128 KiB) without any sync
//! (sled issue #1452). So every flush here ends in a real sync
//! ([`FileSync`]): `fdatasync` of sled's log file, and `fsync` of each blob
//! file written since the last one and of the blob directory. Only then are
//! the waiters woken.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::{StoreError, sync_dir};

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Debug, Default)]
pub struct CommitStats {
    /// Number of `sled::Db::flush` calls made, each followed by a real sync.
    pub flushes: AtomicU64,
    /// Number of durability requests served.
    pub requests: AtomicU64,
}

pub struct GroupCommit {
    tx: mpsc::UnboundedSender<Waiter>,
    stats: Arc<CommitStats>,
    stop: tokio_util::sync::CancellationToken,
    flusher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The files of one sled database that a flush leaves unsynced.
pub struct FileSync {
    log: File,
    blobs: PathBuf,
    /// Blob files already synced (sled never rewrites one in place).
    synced: HashSet<OsString>,
}

impl FileSync {
    /// Opens the database's log file in `dir` and makes the directory
    /// entries sled created (`db`, `conf`, `blobs`) durable.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let log = File::open(dir.join("db"))?;
        let blobs = dir.join("blobs");
        sync_dir(dir)?;
        let mut this = Self {
            log,
            blobs,
            synced: HashSet::new(),
        };
        // Blobs present now are synced once, so a crash before the first
        // flush cannot lose one that sled wrote before we opened.
        this.sync()?;
        Ok(this)
    }

    /// Makes everything sled has flushed durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.log.sync_data()?;
        // One listing: sync the blobs not seen before, and remember only
        // those present now, so blobs sled removed are forgotten.
        let mut present = HashSet::new();
        let mut new = false;
        for entry in std::fs::read_dir(&self.blobs)? {
            let name = entry?.file_name();
            if !self.synced.contains(&name) {
                match File::open(self.blobs.join(&name)) {
                    Ok(f) => f.sync_all()?,
                    // Collected by sled between the listing and the open.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            sync_dir(&self.blobs)?;
        }
        self.synced = present;
        Ok(())
    }
}

impl GroupCommit {
    /// Spawns the flusher task; [`GroupCommit::stop`] ends it.
    pub fn start(db: sled::Db, files: FileSync) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let stats = Arc::new(CommitStats::default());
        let task_stats = stats.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let task_stop = stop.clone();
        let files = Arc::new(std::sync::Mutex::new(files));
        let handle = tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    _ = task_stop.cancelled() => break,
                    w = rx.recv() => match w {
                        Some(w) => w,
                        None => break,
                    },
                };
                let mut waiters = vec![first];
                while let Ok(w) = rx.try_recv() {
                    waiters.push(w);
                }
                let (db, files) = (db.clone(), files.clone());
                let durable = move || -> Result<(), String> {
                    db.flush().map_err(|e| e.to_string())?;
                    files
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .sync()
                        .map_err(|e| format!("sync after flush: {e}"))
                };
                let result = match tokio::task::spawn_blocking(durable).await {
                    Ok(r) => r,
                    Err(e) => Err(e.to_string()),
                };
                task_stats.flushes.fetch_add(1, Ordering::Relaxed);
                task_stats
                    .requests
                    .fetch_add(waiters.len() as u64, Ordering::Relaxed);
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
            // Waiters still queued are answered with an error when `rx` drops.
        });
        Self {
            tx,
            stats,
            stop,
            flusher: std::sync::Mutex::new(Some(handle)),
        }
    }

    /// Stops the flusher and waits until it has released its database handle.
    pub async fn stop(&self) {
        self.stop.cancel();
        let handle = self
            .flusher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }

    /// Resolves once everything written before the call is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .map_err(|_| StoreError::Flush("store is closing".into()))?;
        rx.await
            .map_err(|_| StoreError::Flush("flusher stopped".into()))?
            .map_err(StoreError::Flush)
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_files_are_synced_once_and_forgotten_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut files = FileSync::open(dir.path()).unwrap();
        assert!(files.synced.is_empty());
        // Over sled's inline limit (~128 KiB with 512 KiB segments): a blob file.
        db.insert(b"big", vec![7u8; 300 * 1024]).unwrap();
        db.flush().unwrap();
        files.sync().unwrap();
        let blobs: HashSet<OsString> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!blobs.is_empty(), "sled wrote no blob file");
        assert_eq!(files.synced, blobs);
        for name in &blobs {
            std::fs::remove_file(dir.path().join("blobs").join(name)).unwrap();
        }
        files.sync().unwrap();
        assert!(files.synced.is_empty());
    }
}
