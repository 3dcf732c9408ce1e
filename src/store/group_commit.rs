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

use super::StoreError;

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Debug, Default)]
pub struct CommitStats {
    /// Number of `sled::Db::flush` calls made, each followed by a real sync.
    pub flushes: AtomicU64,
    /// Number of `fsync`/`fdatasync` calls made after those flushes.
    pub syncs: AtomicU64,
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
        this.sync(&AtomicU64::new(0))?;
        Ok(this)
    }

    /// Makes everything sled has flushed durable; counts the sync calls.
    pub fn sync(&mut self, syncs: &AtomicU64) -> std::io::Result<()> {
        self.log.sync_data()?;
        syncs.fetch_add(1, Ordering::Relaxed);
        let mut new = false;
        for entry in std::fs::read_dir(&self.blobs)? {
            let entry = entry?;
            if self.synced.contains(&entry.file_name()) {
                continue;
            }
            match File::open(entry.path()) {
                Ok(f) => {
                    f.sync_all()?;
                    syncs.fetch_add(1, Ordering::Relaxed);
                }
                // Collected by sled between the listing and the open.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            self.synced.insert(entry.file_name());
            new = true;
        }
        if new {
            sync_dir(&self.blobs)?;
            syncs.fetch_add(1, Ordering::Relaxed);
            // Forget blobs sled has since removed, so the set stays small.
            let present: HashSet<OsString> = std::fs::read_dir(&self.blobs)?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            self.synced.retain(|n| present.contains(n));
        }
        Ok(())
    }
}

/// `fsync` of a directory, so the files created in it survive a crash.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
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
                let (db, files, stats) = (db.clone(), files.clone(), task_stats.clone());
                let durable = move || -> Result<(), String> {
                    db.flush().map_err(|e| e.to_string())?;
                    files
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .sync(&stats.syncs)
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
