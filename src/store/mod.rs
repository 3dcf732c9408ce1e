//! The node's durable state in sled. Nothing else in the crate touches sled:
//! other modules call the typed operations here.
//!
//! Trees:
//! - `alerts`: alert id → `StoredAlert` (latest version only).
//! - `outbox`: peer ‖ 0x00 ‖ sequence (u64 BE) → `SharedAlert` waiting for the peer's ack.
//! - `requests`: client ‖ 0x00 ‖ request id → alert id, for idempotent submits.
//! - `tokens`, `fuzzy`, `match_pending`, `hits`, `hit_keys`: indexes and hit log (see `index`).
//! - `lookups`, `refusals`: logs of lookups and refused deliveries (see `records`).
//! - `policies`: sharing policy versions and which one is in force (see `records`).
//! - `retention`, `purges`: alerts by retention deadline, and the log of purges (see `retention`).
//! - `audit`, `audit_checkpoints`, `audit_meta`: the hash-chained audit log (see `audit`).
//!
//! Every operation that changes an alert writes the alert and its outbox
//! entries in one sled transaction, and returns only after a (group) flush, so
//! whatever a caller acknowledges is on disk and its deliveries are queued.
//!
//! The operations, by concern (each file adds its part of `impl Store`):
//! - `alerts`: local writes, received deliveries, reading alerts back;
//! - `outbox`: what waits for each peer's ack;
//! - `hits`: the matching pass, hit notices, the hit log and its watchers;
//! - `lookups`: answering lookups and the lookup log;
//! - `index`: the token and person-encoding indexes both of those read;
//! - `records`: policy versions and the refusal log;
//! - `retention`: purging content past its deadline;
//! - `audit`: the audit chain's trees, pages and verification;
//! - `backup`: online copies under the write gate;
//! - `group_commit`: one flush for many concurrent writers.

mod alerts;
mod audit;
mod backup;
mod group_commit;
mod hits;
mod index;
mod lookups;
mod outbox;
mod records;
mod retention;

pub use alerts::{ApplyOutcome, LocalWrite};
pub use backup::{BackupStats, copy_store};
pub use group_commit::CommitStats;
pub use hits::NoticeOutcome;
pub use outbox::{OutboxItem, OutboxSummary, Queued};
pub use retention::{PURGED, expired};

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use thiserror::Error;

use crate::matching::MatchScope;
use group_commit::GroupCommit;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record {key} cannot be decoded: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("flush failed: {0}")]
    Flush(String),
    #[error("backup: {0}")]
    Backup(String),
}

impl StoreError {
    /// A stored record (named by `key`) that cannot be read back as what it
    /// should be.
    pub fn corrupt(key: impl Into<String>, reason: impl ToString) -> Self {
        Self::Corrupt {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

/// A transaction that failed either in storage or by the caller's own decision.
#[derive(Debug, Error)]
pub enum TxError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rejected(E),
}

pub struct Store {
    db: sled::Db,
    /// Where the database files are, for backups.
    dir: std::path::PathBuf,
    alerts: sled::Tree,
    outbox: sled::Tree,
    requests: sled::Tree,
    tokens: sled::Tree,
    hits: sled::Tree,
    hit_keys: sled::Tree,
    fuzzy: sled::Tree,
    pending: sled::Tree,
    lookups: sled::Tree,
    policies: sled::Tree,
    refusals: sled::Tree,
    retention: sled::Tree,
    purges: sled::Tree,
    scope: MatchScope,
    /// Decides which hit notices may be sent (the sharing policy); without
    /// one, every configured peer is notified. Weak: the policy holds the
    /// store, and a cycle would keep the database (and its lock) open.
    notice_gate: std::sync::OnceLock<std::sync::Weak<dyn crate::matching::NoticeGate>>,
    /// Hits and audit entries recorded, for the metrics endpoint.
    metrics: std::sync::OnceLock<crate::metrics::Metrics>,
    audit: audit::AuditTrees,
    commit: GroupCommit,
    /// Every write holds this shared; a backup holds it exclusively, so its
    /// copy sees no half-done operation (see [`Store::backup_to`]).
    gate: std::sync::RwLock<()>,
    /// Latest hit sequence, for watchers.
    hit_seq: tokio::sync::watch::Sender<u64>,
}

fn abort<E>(e: E) -> ConflictableTransactionError<E> {
    ConflictableTransactionError::Abort(e)
}

/// For transactions whose only aborts are storage problems.
fn flatten(e: TransactionError<TxError<StoreError>>) -> StoreError {
    match e {
        TransactionError::Abort(TxError::Store(e) | TxError::Rejected(e)) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

/// `fsync` of a directory, so the entries created in it survive a crash.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// How long `open` waits for another holder of the database lock to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// sled locks its directory. A previous instance that is still exiting (a
/// supervisor restarting the process, or a node restarted inside one process
/// whose last request tasks are still unwinding) holds it for a moment, so a
/// lock conflict is retried for a bounded time before it is reported.
fn open_with_lock_retry(config: &sled::Config) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

impl Store {
    /// Opens (or creates) the store. Must be called inside a tokio runtime:
    /// it starts the group-commit flusher. Matching left pending by a crash
    /// is redone by [`Store::start_matching`].
    pub fn open(
        dir: &Path,
        cache_capacity_bytes: u64,
        scope: MatchScope,
    ) -> Result<Self, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity_bytes)
            // We flush explicitly before every acknowledgement; the periodic
            // background flush only bounds the work of the next explicit one.
            .flush_every_ms(Some(1000));
        let db = open_with_lock_retry(&config)?;
        let files = group_commit::FileSync::open(dir)
            .map_err(|e| StoreError::Flush(format!("{}: {e}", dir.display())))?;
        let commit = GroupCommit::start(db.clone(), files);
        let hits = db.open_tree("hits")?;
        let last = hits
            .last()?
            .map(|(k, _)| u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])))
            .unwrap_or(0);
        let store = Self {
            alerts: db.open_tree("alerts")?,
            outbox: db.open_tree("outbox")?,
            requests: db.open_tree("requests")?,
            tokens: db.open_tree("tokens")?,
            hit_keys: db.open_tree("hit_keys")?,
            fuzzy: db.open_tree("fuzzy")?,
            pending: db.open_tree("match_pending")?,
            lookups: db.open_tree("lookups")?,
            policies: db.open_tree("policies")?,
            refusals: db.open_tree("refusals")?,
            retention: db.open_tree("retention")?,
            purges: db.open_tree("purges")?,
            audit: audit::AuditTrees::open(&db)?,
            notice_gate: std::sync::OnceLock::new(),
            metrics: std::sync::OnceLock::new(),
            hits,
            scope,
            dir: dir.to_owned(),
            db,
            commit,
            gate: std::sync::RwLock::new(()),
            hit_seq: tokio::sync::watch::channel(last).0,
        };
        Ok(store)
    }

    /// Held (shared) by every write; never taken twice on one path, since a
    /// waiting backup would then block the second acquisition forever.
    fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn commit_stats(&self) -> &CommitStats {
        self.commit.stats()
    }

    /// Waits until everything written so far is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.commit.durable().await
    }

    /// Counts hits and audit entries in `metrics` from now on.
    pub fn set_metrics(&self, metrics: crate::metrics::Metrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Flushes and syncs, then stops the flusher; used at shutdown. Writes
    /// after this fail with `StoreError::Flush`.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.commit.durable().await?;
        self.commit.stop().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
