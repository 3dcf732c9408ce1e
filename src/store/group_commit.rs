//! Group commit: concurrent writers that need durability share one sync.
//!
//! A submit is acknowledged only after its transaction is on disk. Syncing
//! per submit would serialise clients on fsync latency; instead each writer
//! enqueues a waiter, and one flusher task drains every waiter queued so far,
//! calls [`Db::sync`] once (a real `fsync` of the engine's journal, covering
//! every transaction committed before it from any thread), and wakes them
//! all. A waiter queued during a sync is served by the next one, so every
//! waiter's write precedes the sync that wakes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::engine::Db;

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Debug, Default)]
pub struct CommitStats {
    /// Number of syncs made.
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

impl GroupCommit {
    /// Spawns the flusher task; [`GroupCommit::stop`] ends it.
    pub fn start(db: Db) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let stats = Arc::new(CommitStats::default());
        let task_stats = stats.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let task_stop = stop.clone();
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
                let db = db.clone();
                let durable = move || db.sync().map_err(|e| e.to_string());
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
