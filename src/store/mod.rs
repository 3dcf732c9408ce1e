//! The node's durable state. Nothing else in the crate touches the storage
//! engine: other modules call the typed operations here, which are written
//! against the narrow interface in [`engine`] (trees, transactions that can
//! read, write and range-scan, snapshots, a real sync).
//!
//! Trees:
//! - `alerts`: alert id → `StoredAlert` (latest version only).
//! - `outbox`: peer ‖ 0x00 ‖ sequence (u64 BE) → `SharedAlert` waiting for the peer's ack.
//! - `requests`: client ‖ 0x00 ‖ request id → alert id ‖ 0x00 ‖ SHA-256 of
//!   the draft, for idempotent submits (a key reused for another draft is refused).
//! - `tokens`, `fuzzy`, `hits`, `hit_keys`, `hit_numbers`: indexes and hit log (see `index`).
//! - `hit_others`: other agency's alert ‖ 0 ‖ own alert → (): the hits
//!   keyed the other way round (see `network`).
//! - `hit_reviews`: own alert ‖ 0 ‖ other alert → `PairReviews`, both
//!   agencies' latest verdicts on a pair of alerts (see `reviews`).
//! - `match_pending`: alerts whose matching is still to be done (only a store
//!   migrated from sled can hold any; see `hits`).
//! - `lookups`, `refusals`: logs of lookups and refused deliveries (see `records`).
//! - `policies`: sharing policy versions and which one is in force (see `records`).
//! - `retention`, `purges`: alerts by retention deadline, and the log of purges (see `retention`).
//! - `audit`, `audit_checkpoints`, `audit_meta`: the hash-chained audit log (see `audit`).
//! - `disclosures`: request id → `DisclosureCase`; `disclosure_log`: position
//!   → the case as it stood after each change; `disclosure_order`: position
//!   of creation → request id (see `disclosures`).
//! - `releases`: release id → `ReleaseRecord` (sent or received);
//!   `release_order`: position of creation → release id;
//!   `release_retention`: deadline (seconds, u64 BE) ‖ release id → () for
//!   every release still holding content (see `disclosures`).
//! - `counters`: the last sequence number given out per log (see [`Counter`]),
//!   and the per-day counts of `activity` (`activity/<day>/<what>`).
//! - `settings`: name → value of settings the stored data was made under
//!   (`matching`: the matching settings own alerts were last encoded and
//!   matched with, see `alert::rematch`; `alert_log`: every alert has its
//!   alert log entry, see `alert_log`).
//! - `shares`: alert id ‖ 0 ‖ peer ‖ 0 ‖ outbox sequence (u64 BE) →
//!   `ShareRecord`: each envelope of an alert a peer acknowledged or that
//!   was dropped unsent (see `outbox`).
//! - `alert_log`: position (u64 BE) → alert id, one entry per alert at its
//!   latest change; `alert_log_pos`: alert id → its position (see
//!   `alert_log`; `WatchAlerts` follows it).
//! - `imports`: source ‖ 0 ‖ source id → alert id ‖ 0 ‖ SHA-256 of the
//!   draft last imported for it (see `imports`): how a register imported
//!   again updates its alerts instead of duplicating them.
//! - `tokens_pending`: alert id → () for each own alert stored while the
//!   OPRF key service was unreachable, kept in the transaction of every
//!   local write (see `tokens_pending`): what `alert::pending` completes.
//! - `stats`: the federated statistics' releases, report shares and the
//!   helper's verifier messages (see `stats`).
//!
//! Every store operation that changes something is **one transaction**: an
//! alert with its outbox entries, indexes, the hits it makes and the audit
//! entries that record it commit together or not at all, and the operation
//! returns only after a group-committed sync covers it, so whatever a caller
//! acknowledges is on disk and its deliveries are queued.
//!
//! The operations, by concern (each file adds its part of `impl Store`):
//! - `alerts`: local writes, received deliveries, reading alerts back;
//! - `alert_log`: the log of alert changes `WatchAlerts` follows;
//! - `imports`: records of an agency's own register, by their source ids;
//! - `tokens_pending`: own alerts whose exact tokens wait for the key service;
//! - `outbox`: what waits for each peer's ack;
//! - `hits`: the matching pass, hit notices, the hit log and its watchers;
//! - `reviews`: verdicts on hits, made here or received, in the hit log;
//! - `disclosures`: disclosure requests sent and received, and their log;
//! - `lookups`: answering lookups and the lookup log;
//! - `stats`: the federated statistics' records and report shares;
//! - `network`: the links between alerts both ways round (the network view);
//! - `index`: the token and person-encoding indexes both of those read;
//! - `records`: policy versions and the refusal log;
//! - `retention`: purging content past its deadline;
//! - `audit`: the audit chain's trees, pages and verification;
//! - `backup`: online copies from a snapshot;
//! - `migrate`: converting a store written by sled (before fjall);
//! - `group_commit`: one sync for many concurrent writers.
//!
//! More on some of these (each file's own documentation says the rest):
//! - `alert_log`: an alert's one entry moves in the transaction of every
//!   local write, receipt and purge; a store from before the log gets its
//!   entries when it is opened.
//! - `imports`: [`Store::write_import_then`] writes the mapping in the
//!   alert's own transaction; the record's alert is created, given a new
//!   version, or left unchanged ([`ImportWrite`]).
//! - `outbox`: when an envelope is done with (acknowledged, or dropped
//!   unsent), one transaction removes it, records in `shares` what the peer
//!   got, and appends the audit entry ([`Store::outbox_done`]).
//! - `disclosures`: [`Store::step_request`] runs one step of a request
//!   (a decision, an answer, a withdrawal) as one transaction.
//! - `activity`: the per-day counts of the console's charts, each advanced
//!   in the transaction of the event it counts.
//! - `audit`: [`Store::audit_page`] and [`Store::audit_verify`] read the
//!   chain back.
//!
//! [`Store::write`] runs one operation as one transaction, holding the
//! audit chain's head for all of it.

mod activity;
mod alert_log;
mod alerts;
mod audit;
mod backup;
mod chain;
mod disclosures;
pub mod engine;
mod epoch_turn;
mod error;
mod group_commit;
mod hits;
mod imports;
mod index;
mod intake;
mod lookups;
mod migrate;
mod network;
mod outbox;
mod records;
mod request_purge;
mod restore_keys;
mod retention;
mod reviews;
mod stats;
mod tokens_pending;
mod trees;
mod vault;
mod write;

pub use alerts::{ApplyOutcome, LocalWrite, RequestKey};
pub use backup::{BackupStats, copy_store};
pub use disclosures::Step;
pub use epoch_turn::{EpochTurn, encrypt_copy};
pub use error::{StoreError, TxError};
pub use group_commit::CommitStats;
pub use hits::NoticeOutcome;
pub use imports::{ImportWrite, Imported};
pub use intake::{IntakeCounts, IntakeCursor, Submitted};
pub use migrate::{MigrateStats, migrate_sled};
pub use network::{Link, MAX_LINKS};
pub use outbox::{OutboxItem, OutboxSummary, Queued};
pub use restore_keys::Carried;
pub use retention::{PURGED, expired};
pub use reviews::{MAX_NOTE_BYTES, ReceivedReview, check_note, is_verdict};
pub use stats::{ChunkOutcome, StatsChange};
use trees::RELEASE_SETTING;
pub(crate) use trees::{Counter, Trees};
pub use trees::{TREES, is_sled_store, is_store};
pub use vault::{Vault, VaultState, sealed_tree};
pub use write::OutboxListener;
pub(crate) use write::Write;

use std::path::Path;

use crate::matching::MatchScope;
use chain::Head;
use engine::{Db, EngineError, Tree};
use group_commit::GroupCommit;

pub struct Store {
    db: Db,
    /// Where the database files are, for backups.
    dir: std::path::PathBuf,
    t: Trees,
    /// Whose alerts match whose: `None` for a store kept only for its audit
    /// log (see [`Store::open_audit_only`]).
    scope: Option<MatchScope>,
    /// Decides which hit notices may be sent (the sharing policy); without
    /// one, every configured peer is notified. Weak: the policy holds the
    /// store, and a cycle would keep the database (and its lock) open.
    notice_gate: std::sync::OnceLock<std::sync::Weak<dyn crate::matching::NoticeGate>>,
    /// Hits and audit entries recorded, for the metrics endpoint.
    metrics: std::sync::OnceLock<crate::metrics::Metrics>,
    /// Told which peers got outbox entries after every commit (the delivery
    /// workers). Weak, like the notice gate.
    outbox_listener: std::sync::OnceLock<std::sync::Weak<dyn OutboxListener>>,
    /// The audit chain's head. Held by every write for its whole transaction
    /// (taken before the engine's writer lock, always in that order), so the
    /// chain's entries get consecutive numbers and hashes in commit order.
    head: std::sync::Mutex<Head>,
    commit: GroupCommit,
    /// Latest hit sequence, for watchers.
    hit_seq: tokio::sync::watch::Sender<u64>,
    /// Latest disclosure request log position, for watchers.
    disclosure_seq: tokio::sync::watch::Sender<u64>,
    /// Latest alert log position, for watchers.
    alert_seq: tokio::sync::watch::Sender<u64>,
    /// The keys its case data is sealed under; `None`: a store in clear.
    vault: Option<Vault>,
}

impl Store {
    /// Opens (or creates) the store. Must be called inside a tokio runtime:
    /// it starts the group-commit flusher. Matching left pending (only a
    /// migrated store has any) is redone by [`Store::start_matching`].
    pub fn open(
        dir: &Path,
        cache_capacity_bytes: u64,
        scope: MatchScope,
    ) -> Result<Self, StoreError> {
        Self::open_scoped(dir, cache_capacity_bytes, Some(scope), None)
    }

    /// [`Store::open`] with the case data sealed under `vault`'s keys
    /// (docs/encryption.md). A store in clear is refused, naming the
    /// command that seals a copy; a new store is marked sealed.
    pub fn open_sealed(
        dir: &Path,
        cache_capacity_bytes: u64,
        scope: Option<MatchScope>,
        vault: Vault,
    ) -> Result<Self, StoreError> {
        Self::open_scoped(dir, cache_capacity_bytes, scope, Some(vault))
    }

    /// Opens (or creates) a store kept for its audit log only, as the OPRF
    /// key service keeps one: nothing is ever matched in it, so it takes no
    /// match scope, and an operation that would match fails with
    /// [`StoreError::AuditOnly`] instead of matching against a made-up one.
    pub fn open_audit_only(dir: &Path, cache_capacity_bytes: u64) -> Result<Self, StoreError> {
        Self::open_scoped(dir, cache_capacity_bytes, None, None)
    }

    fn open_scoped(
        dir: &Path,
        cache_capacity_bytes: u64,
        scope: Option<MatchScope>,
        vault: Option<Vault>,
    ) -> Result<Self, StoreError> {
        if is_sled_store(dir) {
            return Err(StoreError::Legacy {
                dir: dir.display().to_string(),
            });
        }
        crate::secrets::private_dir(dir, "store directory").map_err(StoreError::Exposed)?;
        let options = engine::Options {
            cache_bytes: cache_capacity_bytes,
            ..Default::default()
        };
        let db = match &vault {
            Some(v) => Db::open_sealed(dir, &options, v.sealer.clone())?,
            None => Db::open(dir, &options)?,
        };
        let t = Trees::open(&db)?;
        vault::check_sealing(&db, &t, dir, vault.as_ref())?;
        // The keyed-hash key read (or made) now, in a transaction of its
        // own, never later inside another.
        db.keyed_digest(b"")?;
        let head = Head::load(&db, &t)?;
        let last = last_position(&db, t.hits)?;
        let last_disclosure = last_position(&db, t.disclosure_log)?;
        let last_alert = last_position(&db, t.alert_log)?;
        let store = Self {
            commit: GroupCommit::start(db.clone()),
            db,
            t,
            notice_gate: std::sync::OnceLock::new(),
            metrics: std::sync::OnceLock::new(),
            outbox_listener: std::sync::OnceLock::new(),
            scope,
            dir: dir.to_owned(),
            head: std::sync::Mutex::new(head),
            hit_seq: tokio::sync::watch::channel(last).0,
            disclosure_seq: tokio::sync::watch::channel(last_disclosure).0,
            alert_seq: tokio::sync::watch::channel(last_alert).0,
            vault,
        };
        store.move_forward()?;
        Ok(store)
    }

    /// Brings a store an earlier release wrote up to this one, step by
    /// step, and records this release as the last to write it; refuses a
    /// store a newer release wrote. The steps (each resumable: a crash
    /// repeats it at the next open):
    /// - before the alert log (0.2): every alert gets its alert log entry;
    /// - 0.3.0 recorded no release: from 0.4.0 the `release` setting holds
    ///   the last writer's.
    fn move_forward(&self) -> Result<(), StoreError> {
        let recorded = self.setting(RELEASE_SETTING)?;
        if let Some(found) = &recorded {
            let newer = crate::release::compare_with_ours(found)
                .map_err(|e| StoreError::corrupt(format!("settings/{RELEASE_SETTING}"), e))?
                .is_gt();
            if newer {
                return Err(StoreError::Newer {
                    found: found.clone(),
                    ours: crate::release::RELEASE,
                });
            }
        }
        // Durable with the next write's sync, or made again next open.
        self.backfill_alert_log()?;
        self.backfill_hit_others()?;
        if recorded.as_deref() != Some(crate::release::RELEASE) {
            self.write(|w| {
                w.tx.insert(
                    w.t.settings,
                    RELEASE_SETTING.as_bytes(),
                    crate::release::RELEASE.as_bytes(),
                )
            })?;
        }
        Ok(())
    }

    /// Runs `body` as one transaction. The audit entries it appends get
    /// their chain numbers and hashes here and take effect only if it
    /// commits. Not durable yet: callers that acknowledge anything wait for
    /// [`Store::durable`] after it.
    pub(crate) fn write<T, E: From<EngineError>>(
        &self,
        body: impl FnOnce(&mut Write<'_, '_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = head.clone();
        let (mut appended, mut queued, mut alert_seq) = (Vec::new(), Vec::new(), 0);
        let out = self.db.transaction(|tx| {
            body(&mut Write {
                tx,
                t: &self.t,
                log: &mut next,
                appended: &mut appended,
                queued: &mut queued,
                alert_seq: &mut alert_seq,
            })
        })?;
        *head = next;
        drop(head);
        // Watchers see the change as every reader does: once committed.
        if alert_seq > 0 {
            self.publish_alert_log(alert_seq);
        }
        if !queued.is_empty()
            && let Some(listener) = self.outbox_listener.get().and_then(|l| l.upgrade())
        {
            queued.sort();
            queued.dedup();
            listener.queued(&queued);
        }
        if let Some(m) = self.metrics.get() {
            for action in appended {
                m.audit_entries
                    .get_or_create(&crate::metrics::label("action", action.as_str()))
                    .inc();
            }
        }
        Ok(out)
    }

    /// The last entry of `tree`.
    fn last(&self, tree: Tree) -> Result<Option<engine::Entry>, StoreError> {
        Ok(self.db.range::<&[u8]>(tree, ..).next_back().transpose()?)
    }

    pub fn commit_stats(&self) -> &CommitStats {
        self.commit.stats()
    }

    /// Waits until everything written so far is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.commit.durable().await
    }

    /// Bytes the store occupies on disk.
    pub fn disk_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.db.disk_bytes()?)
    }

    /// Bytes available to unprivileged writers on the store's filesystem.
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        let fs = rustix::fs::statvfs(&self.dir)
            .map_err(|e| StoreError::Flush(format!("statvfs {}: {e}", self.dir.display())))?;
        Ok(fs.f_bavail.saturating_mul(fs.f_frsize))
    }

    /// The value of setting `name` the stored data was made under, if recorded.
    pub fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get(self.t.settings, name.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records setting `name`, durably.
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.write(|w| w.tx.insert(w.t.settings, name.as_bytes(), value.as_bytes()))?;
        self.commit.durable().await
    }

    /// The review band of fuzzy person matches (the default band in a
    /// store kept for its audit log only, where nothing is matched).
    pub fn band(&self) -> crate::matching::Band {
        self.scope.as_ref().map(|s| s.band).unwrap_or_default()
    }

    /// Whose alerts match whose; an audit-only store has no scope.
    pub(crate) fn scope(&self) -> Result<&MatchScope, StoreError> {
        self.scope.as_ref().ok_or(StoreError::AuditOnly)
    }

    /// Counts hits and audit entries in `metrics` from now on.
    pub fn set_metrics(&self, metrics: crate::metrics::Metrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Syncs, then stops the flusher; used at shutdown. Writes after this
    /// fail with `StoreError::Flush`.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.commit.durable().await?;
        self.commit.stop().await;
        Ok(())
    }
}

/// The last position of a log tree keyed by position (u64 BE), 0 when
/// empty: where its watchers start.
fn last_position(db: &Db, tree: Tree) -> Result<u64, StoreError> {
    Ok(db
        .range::<&[u8]>(tree, ..)
        .next_back()
        .transpose()?
        .map(|(k, _)| u64::from_be_bytes(k.as_slice().try_into().unwrap_or([0; 8])))
        .unwrap_or(0))
}

#[cfg(test)]
mod tests;
