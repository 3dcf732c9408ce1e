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

mod audit;
mod backup;
mod group_commit;
mod index;
mod records;
mod retention;

pub use backup::{BackupStats, copy_store};
pub use group_commit::CommitStats;
pub use retention::{PURGED, expired};

use std::path::Path;

use prost::Message;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use thiserror::Error;

use crate::ids::{AgencyId, AlertId};
use crate::matching::MatchScope;
use crate::proto::v1::{Envelope, Hit, HitNotice, HitSource, StoredAlert, envelope::Payload};
use group_commit::GroupCommit;
use index::IndexTrees;

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

/// A transaction that failed either in storage or by the caller's own decision.
#[derive(Debug, Error)]
pub enum TxError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rejected(E),
}

/// An envelope to queue for one peer in the same transaction as the alert.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub peer: AgencyId,
    pub payload: Payload,
    /// For the audit entry written when the peer acknowledges it: the
    /// policy rule that allowed the disclosure (empty for tombstones and
    /// notices) and what it disclosed.
    pub rule: String,
    pub disclosed: String,
}

impl OutboxItem {
    /// A hit notice: which of the peer's alerts relates to which of ours.
    pub fn notice(peer: AgencyId, notice: HitNotice) -> Self {
        Self {
            peer,
            payload: Payload::HitNotice(notice),
            rule: String::new(),
            disclosed: "hit notice: alert ids and identifier type".into(),
        }
    }
}

/// An outbox entry read back for delivery.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: u64,
    pub payload: Payload,
    pub queued_at: Option<pbjson_types::Timestamp>,
    pub rule: String,
    pub disclosed: String,
}

/// What became of a hit notice from a peer.
#[derive(Debug, Clone, PartialEq)]
pub enum NoticeOutcome {
    Recorded(Hit),
    /// Already known (found here, or noticed before).
    Known,
    /// Refused, with the reason for the sender.
    Refused(String),
}

/// See [`Store::outbox_summary`].
#[derive(Debug, Default)]
pub struct OutboxSummary {
    pub oldest_queued_at: Option<pbjson_types::Timestamp>,
    pub pending_retractions: u64,
    pub pending_retraction_ids: Vec<String>,
}

/// Result of writing a local alert.
#[derive(Debug)]
pub enum LocalWrite {
    /// Written (and queued for the listed peers).
    Written(StoredAlert),
    /// The idempotency key was seen before: this is the alert it created.
    Replayed(StoredAlert),
}

/// Result of applying an alert received from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Stored,
    /// This version or a newer one is already held; nothing changed.
    Duplicate,
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

fn decode(key: &[u8], bytes: &[u8]) -> Result<StoredAlert, StoreError> {
    StoredAlert::decode(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn outbox_prefix(peer: &AgencyId) -> Vec<u8> {
    let mut k = peer.as_str().as_bytes().to_vec();
    k.push(0);
    k
}

fn outbox_key(peer: &AgencyId, seq: u64) -> Vec<u8> {
    let mut k = outbox_prefix(peer);
    k.extend_from_slice(&seq.to_be_bytes());
    k
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
        let commit = GroupCommit::start(db.clone());
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

    /// Writes a local alert atomically with its outbox entries, then waits for
    /// the flush. `build` sees the current record (if any) and decides the new
    /// one; it may run more than once (sled retries conflicting transactions),
    /// so it must not have side effects. With `request_key`, a replay of the
    /// same key returns the alert created the first time without calling `build`.
    pub async fn write_local<E: Clone>(
        &self,
        id: &AlertId,
        request_key: Option<&[u8]>,
        build: impl Fn(Option<StoredAlert>) -> Result<(StoredAlert, Vec<OutboxItem>), E>,
    ) -> Result<LocalWrite, TxError<E>> {
        self.write_local_then(id, request_key, build, |_| Vec::new())
            .await
    }

    /// [`Store::write_local`], appending the audit entries `on_commit`
    /// returns after the transaction and before the flush, so they are on
    /// disk exactly when the change is.
    pub async fn write_local_then<E: Clone>(
        &self,
        id: &AlertId,
        request_key: Option<&[u8]>,
        build: impl Fn(Option<StoredAlert>) -> Result<(StoredAlert, Vec<OutboxItem>), E>,
        on_commit: impl FnOnce(&LocalWrite) -> Vec<crate::audit::Event>,
    ) -> Result<LocalWrite, TxError<E>> {
        let key = id.to_string();
        let writing = self.writing();
        let result = (
            &self.alerts,
            &self.outbox,
            &self.requests,
            &self.tokens,
            &self.fuzzy,
            &self.pending,
            &self.retention,
        )
            .transaction(
                |(alerts, outbox, requests, tokens, fuzzy, pending, retention)| {
                    if let Some(rk) = request_key
                        && let Some(existing_id) = requests.get(rk)?
                    {
                        let bytes = alerts.get(&existing_id)?.ok_or_else(|| {
                            abort(TxError::Store(StoreError::Corrupt {
                                key: String::from_utf8_lossy(&existing_id).into_owned(),
                                reason: "idempotency key points to a missing alert".into(),
                            }))
                        })?;
                        let stored = decode(&existing_id, &bytes).map_err(|e| abort(e.into()))?;
                        return Ok(LocalWrite::Replayed(stored));
                    }
                    let current = match alerts.get(key.as_bytes())? {
                        Some(bytes) => {
                            Some(decode(key.as_bytes(), &bytes).map_err(|e| abort(e.into()))?)
                        }
                        None => None,
                    };
                    let (record, items) =
                        build(current.clone()).map_err(|e| abort(TxError::Rejected(e)))?;
                    alerts.insert(key.as_bytes(), record.encode_to_vec())?;
                    for item in &items {
                        index::queue(outbox, item)?;
                    }
                    let trees = IndexTrees {
                        tokens,
                        fuzzy,
                        pending,
                        retention,
                    };
                    index::reindex(&trees, current.as_ref(), &record)?;
                    if let Some(rk) = request_key {
                        requests.insert(rk, key.as_bytes())?;
                    }
                    Ok(LocalWrite::Written(record))
                },
            )
            .map_err(|e| match e {
                TransactionError::Abort(inner) => inner,
                TransactionError::Storage(e) => TxError::Store(StoreError::Sled(e)),
            })?;
        let mut hits = Vec::new();
        if let LocalWrite::Written(record) = &result {
            hits = self.match_pending(record).map_err(TxError::Store)?;
        }
        self.append_events(on_commit(&result))?;
        drop(writing);
        self.commit.durable().await?;
        self.publish(&hits);
        Ok(result)
    }

    /// Applies received alerts that are newer than what is held, then waits
    /// for one flush covering all of them. Idempotent: applying the same
    /// version twice changes nothing and reports `Duplicate`.
    pub async fn apply_received_batch(
        &self,
        records: Vec<StoredAlert>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        self.apply_received_batch_then(records, |_| Vec::new())
            .await
    }

    /// [`Store::apply_received_batch`]; the audit entries `audit` makes of
    /// the outcomes go into the same flush.
    pub async fn apply_received_batch_then(
        &self,
        records: Vec<StoredAlert>,
        audit: impl FnOnce(&[ApplyOutcome]) -> Vec<crate::audit::Event>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(records.len());
        let mut all_hits = Vec::new();
        let writing = self.writing();
        for record in &records {
            let alert = record.alert.as_ref().ok_or_else(|| StoreError::Corrupt {
                key: "<received>".into(),
                reason: "record without alert".into(),
            })?;
            let key = alert.id.as_bytes();
            let version = alert.version;
            let retracted = alert.retracted;
            let encoded = record.encode_to_vec();
            let outcome = (
                &self.alerts,
                &self.tokens,
                &self.fuzzy,
                &self.pending,
                &self.retention,
            )
                .transaction(|(alerts, tokens, fuzzy, pending, retention)| {
                    let held = match alerts.get(key)? {
                        Some(bytes) => Some(decode(key, &bytes).map_err(|e| abort(e.into()))?),
                        None => None,
                    };
                    // A tombstone at the version held still applies: that is
                    // how an origin withdraws an alert from one peer only.
                    if held
                        .as_ref()
                        .and_then(|h| h.alert.as_ref())
                        .is_some_and(|a| {
                            a.version > version
                                || (a.version == version && (a.retracted || !retracted))
                        })
                    {
                        return Ok(ApplyOutcome::Duplicate);
                    }
                    alerts.insert(key, encoded.as_slice())?;
                    let trees = IndexTrees {
                        tokens,
                        fuzzy,
                        pending,
                        retention,
                    };
                    index::reindex::<StoreError>(&trees, held.as_ref(), record)?;
                    Ok(ApplyOutcome::Stored)
                })
                .map_err(flatten)?;
            if outcome == ApplyOutcome::Stored {
                all_hits.extend(self.match_pending(record)?);
            }
            outcomes.push(outcome);
        }
        let events = audit(&outcomes);
        let logged = !events.is_empty();
        self.append_events(events)?;
        drop(writing);
        // Even an all-duplicate batch waits for the flush: the first delivery
        // of these versions may not be on disk yet, and we are about to ack.
        if !outcomes.is_empty() || logged {
            self.commit.durable().await?;
        }
        self.publish(&all_hits);
        Ok(outcomes)
    }

    /// Calls `f` for every alert this node originated, in id order.
    pub fn for_each_own(
        &self,
        own: &AgencyId,
        mut f: impl FnMut(&StoredAlert),
    ) -> Result<(), StoreError> {
        for item in self.alerts.scan_prefix(format!("{own}:").as_bytes()) {
            let (k, v) = item?;
            f(&decode(&k, &v)?);
        }
        Ok(())
    }

    /// Changes who an own alert is queued for, without touching its content
    /// or indexes: `build` sees the current record and returns the new one
    /// with the envelopes to queue, or `None` to leave it as it is. One
    /// transaction, flushed before returning. Returns whether it wrote.
    pub async fn amend_local(
        &self,
        id: &AlertId,
        build: impl Fn(StoredAlert) -> Option<(StoredAlert, Vec<OutboxItem>)>,
    ) -> Result<bool, StoreError> {
        let key = id.to_string();
        let writing = self.writing();
        let wrote = (&self.alerts, &self.outbox)
            .transaction(|(alerts, outbox)| {
                let Some(bytes) = alerts.get(key.as_bytes())? else {
                    return Ok(false);
                };
                let current = decode(key.as_bytes(), &bytes).map_err(|e| abort(e.into()))?;
                let Some((record, items)) = build(current) else {
                    return Ok(false);
                };
                alerts.insert(key.as_bytes(), record.encode_to_vec())?;
                for item in &items {
                    index::queue(outbox, item)?;
                }
                Ok(true)
            })
            .map_err(flatten)?;
        drop(writing);
        if wrote {
            self.commit.durable().await?;
        }
        Ok(wrote)
    }

    pub fn get(&self, id: &AlertId) -> Result<Option<StoredAlert>, StoreError> {
        let key = id.to_string();
        self.alerts
            .get(key.as_bytes())?
            .map(|b| decode(key.as_bytes(), &b))
            .transpose()
    }

    /// Alerts in id order, strictly after `after` (an alert id string), keeping
    /// those `keep` accepts, at most `limit`. Returns the page and whether more remain.
    pub fn list(
        &self,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&StoredAlert) -> bool,
    ) -> Result<(Vec<StoredAlert>, bool), StoreError> {
        let prefix = prefix.unwrap_or("").as_bytes().to_vec();
        let iter = match after {
            Some(a) => self.alerts.range((
                std::ops::Bound::Excluded(a.as_bytes().to_vec()),
                std::ops::Bound::Unbounded,
            )),
            None => self.alerts.range(prefix.clone()..),
        };
        let mut page = Vec::new();
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let rec = decode(&k, &v)?;
            if keep(&rec) {
                if page.len() == limit {
                    return Ok((page, true));
                }
                page.push(rec);
            }
        }
        Ok((page, false))
    }

    /// Counts alerts whose id starts with `<origin>:` and all others.
    pub fn count_alerts(&self, origin: &AgencyId) -> Result<(u64, u64), StoreError> {
        let own = self.alerts.scan_prefix(format!("{origin}:")).count() as u64;
        Ok((own, self.alerts.len() as u64 - own))
    }

    /// Outbox entries for `peer` with sequence greater than `after`, in order.
    pub fn outbox_after(
        &self,
        peer: &AgencyId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Queued>, StoreError> {
        let start = match after {
            Some(s) if s == u64::MAX => return Ok(Vec::new()),
            Some(s) => outbox_key(peer, s + 1),
            None => outbox_prefix(peer),
        };
        let prefix = outbox_prefix(peer);
        let mut out = Vec::new();
        for item in self.outbox.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() == limit {
                break;
            }
            let seq = u64::from_be_bytes(k[prefix.len()..].try_into().map_err(|_| {
                StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: "bad outbox key".into(),
                }
            })?);
            let env = Envelope::decode(v.as_ref()).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: e.to_string(),
            })?;
            let payload = env.payload.ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: "outbox entry without payload".into(),
            })?;
            out.push(Queued {
                seq,
                payload,
                queued_at: env.queued_at,
                rule: env.rule,
                disclosed: env.disclosed,
            });
        }
        Ok(out)
    }

    /// The sequence of the newest entry waiting for `peer`, if any.
    pub fn outbox_last_seq(&self, peer: &AgencyId) -> Result<Option<u64>, StoreError> {
        let prefix = outbox_prefix(peer);
        let Some((k, _)) = self.outbox.scan_prefix(&prefix).next_back().transpose()? else {
            return Ok(None);
        };
        Ok(k.get(prefix.len()..)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes))
    }

    /// What is waiting for `peer`: when the oldest entry was queued, and the
    /// retractions among the entries (count, and the first `max_ids` ids).
    /// Reads the peer's whole queue: for the admin API, not the hot path.
    pub fn outbox_summary(
        &self,
        peer: &AgencyId,
        max_ids: usize,
    ) -> Result<OutboxSummary, StoreError> {
        let mut out = OutboxSummary::default();
        for item in self.outbox.scan_prefix(outbox_prefix(peer)) {
            let (k, v) = item?;
            let env = Envelope::decode(v.as_ref()).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: e.to_string(),
            })?;
            if out.oldest_queued_at.is_none() {
                out.oldest_queued_at = env.queued_at;
            }
            if let Some(Payload::Alert(a)) = env.payload
                && a.retracted
            {
                out.pending_retractions += 1;
                if out.pending_retraction_ids.len() < max_ids {
                    out.pending_retraction_ids.push(a.id);
                }
            }
        }
        Ok(out)
    }

    /// Removes an acknowledged envelope. Not flushed on purpose: if the removal
    /// is lost in a crash the envelope is sent again and the peer dedups it.
    pub fn outbox_remove(&self, peer: &AgencyId, seq: u64) -> Result<bool, StoreError> {
        let _writing = self.writing();
        Ok(self.outbox.remove(outbox_key(peer, seq))?.is_some())
    }

    pub fn outbox_depth(&self, peer: &AgencyId) -> u64 {
        self.outbox.scan_prefix(outbox_prefix(peer)).count() as u64
    }

    pub fn outbox_total(&self) -> u64 {
        self.outbox.len() as u64
    }

    /// Alerts in `tree` under `prefix` within `ranges`, with their values.
    fn candidates(
        &self,
        tree: &sled::Tree,
        prefix_len: usize,
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<(AlertId, sled::IVec)>, StoreError> {
        let mut out = Vec::new();
        for (start, end) in ranges {
            for item in tree.range(start..end) {
                let (k, v) = item?;
                if let Some(id) = index::alert_in_key(&k, prefix_len) {
                    out.push((id, v));
                }
            }
        }
        Ok(out)
    }

    /// Phase 2 of a write (see `index`): finds the alerts that share a token
    /// with `record` or hold a similar person, records the hits with their
    /// notices, and clears the pending mark. Runs before the write's flush, so
    /// an acknowledged alert has its hits; after a crash in between, `open`
    /// finds the mark and redoes it.
    fn match_pending(&self, record: &StoredAlert) -> Result<Vec<Hit>, StoreError> {
        use crate::matching::{encoding_block, encodings_of, hit_pair, similarity, tokens_of};
        let Some(alert) = record.alert.as_ref() else {
            return Ok(Vec::new());
        };
        let tokens = tokens_of(record);
        let encodings = encodings_of(record);
        if tokens.is_empty() && encodings.is_empty() {
            return Ok(Vec::new()); // nothing indexed, no pending mark to clear
        }
        let this: AlertId =
            alert
                .id
                .parse()
                .map_err(|e: crate::ids::IdError| StoreError::Corrupt {
                    key: alert.id.clone(),
                    reason: e.to_string(),
                })?;
        let own = &self.scope.own;
        let now = crate::time::now();
        // (hit, found through fuzzy encodings)
        let mut found: Vec<(Hit, bool)> = Vec::new();
        let mut add = |other: AlertId, kind: i32, similarity: f64, fuzzy: bool| {
            let Some((mine, theirs)) = hit_pair(&self.scope, &this, &other) else {
                return;
            };
            let (mine, theirs) = (mine.to_string(), theirs);
            match found.iter_mut().find(|(h, _)| {
                h.local_alert_id == mine
                    && h.other_alert_id == theirs.to_string()
                    && h.r#type == kind
            }) {
                Some((h, f)) => {
                    // An exact token match needs the lesser disclosure level.
                    *f &= fuzzy;
                    h.similarity = h.similarity.max(similarity);
                }
                None => found.push((
                    Hit {
                        sequence: 0,
                        r#type: kind,
                        local_alert_id: mine,
                        other_alert_id: theirs.to_string(),
                        other_agency: theirs.origin().to_string(),
                        similarity,
                        detected_at: Some(now),
                        source: HitSource::LocalMatch as i32,
                    },
                    fuzzy,
                )),
            }
        };
        for token in &tokens {
            let prefix = index::token_prefix(token);
            let ranges = index::candidate_ranges(&prefix, this.origin(), own);
            for (other, _) in self.candidates(&self.tokens, prefix.len(), ranges)? {
                add(other, token.0, 1.0, false);
            }
        }
        for e in encodings {
            let block = encoding_block(e);
            let ranges = index::candidate_ranges(&block, this.origin(), own);
            for (other, bloom) in self.candidates(&self.fuzzy, block.len(), ranges)? {
                if let Some(sim) = similarity(&e.bloom, &bloom)
                    && sim >= self.scope.fuzzy_threshold
                {
                    add(
                        other,
                        crate::proto::v1::IdentifierType::Person as i32,
                        sim,
                        true,
                    );
                }
            }
        }
        let notify = found
            .iter()
            .map(|(hit, fuzzy)| self.may_notify(record, &this, hit, *fuzzy))
            .collect::<Result<Vec<bool>, StoreError>>()?;
        let key = alert.id.as_bytes();
        let recorded = (&self.hits, &self.hit_keys, &self.outbox, &self.pending)
            .transaction(|(hits, hit_keys, outbox, pending)| {
                let mut recorded = Vec::new();
                for ((hit, _), notify) in found.iter().zip(&notify) {
                    if let Some(h) = index::record_found::<StoreError>(
                        hits,
                        hit_keys,
                        outbox,
                        hit.clone(),
                        *notify,
                    )? {
                        recorded.push(h);
                    }
                }
                pending.remove(key)?;
                Ok(recorded)
            })
            .map_err(flatten)?;
        self.append_events(recorded.iter().map(|h| {
            crate::audit::Event::new(crate::audit::NODE, crate::audit::Action::HitFound, "OK")
                .object(h.local_alert_id.clone())
                .object(h.other_alert_id.clone())
                .detail("type", crate::proto::identifier_type_name(h.r#type))
                .detail("similarity", format!("{:.3}", h.similarity))
        }))?;
        Ok(recorded)
    }

    /// Whether the other agency of `hit` may be sent a notice: it must be a
    /// configured peer, and the notice gate (the sharing policy) must allow
    /// disclosing our alert to it. `record` is the alert being matched, which
    /// is either our alert of the hit or theirs.
    fn may_notify(
        &self,
        record: &StoredAlert,
        this: &AlertId,
        hit: &Hit,
        fuzzy: bool,
    ) -> Result<bool, StoreError> {
        let other: AlertId = hit
            .other_alert_id
            .parse()
            .map_err(|e: crate::ids::IdError| StoreError::Corrupt {
                key: hit.other_alert_id.clone(),
                reason: e.to_string(),
            })?;
        if !crate::matching::notify(&self.scope, &other) {
            return Ok(false);
        }
        let Some(gate) = self.notice_gate.get() else {
            return Ok(true);
        };
        let Some(gate) = gate.upgrade() else {
            return Ok(false); // the node is stopping
        };
        let own = if this.to_string() == hit.local_alert_id {
            record.clone()
        } else {
            let id: AlertId = hit
                .local_alert_id
                .parse()
                .map_err(|e: crate::ids::IdError| StoreError::Corrupt {
                    key: hit.local_alert_id.clone(),
                    reason: e.to_string(),
                })?;
            match self.get(&id)? {
                Some(r) => r,
                None => return Ok(false),
            }
        };
        Ok(gate.may_disclose(&own, other.origin(), hit.r#type, fuzzy))
    }

    /// Installs the policy that decides which hit notices may be sent, then
    /// redoes matching a crash interrupted (see `match_pending`): that may
    /// queue notices, so it waits for the gate. Called once by the node
    /// before it serves; a later gate is ignored.
    pub fn start_matching(
        &self,
        gate: std::sync::Weak<dyn crate::matching::NoticeGate>,
    ) -> Result<(), StoreError> {
        let _ = self.notice_gate.set(gate);
        self.recover_pending()
    }

    /// Alerts holding any of `tokens` (exact) or a person encoding at least
    /// `threshold` similar to one of `encodings`; only alerts of `origin` when
    /// given. Best similarity per (alert, type).
    pub fn lookup(
        &self,
        tokens: &[crate::proto::v1::Token],
        encodings: &[crate::proto::v1::PersonEncoding],
        threshold: f64,
        origin: Option<&AgencyId>,
    ) -> Result<Vec<crate::proto::v1::LookupMatch>, StoreError> {
        use crate::proto::v1::{IdentifierType, LookupMatch};
        let ranges = |prefix: &[u8]| {
            let mut start = prefix.to_vec();
            let mut end = prefix.to_vec();
            match origin {
                Some(o) => {
                    start.extend_from_slice(o.as_str().as_bytes());
                    end.extend_from_slice(o.as_str().as_bytes());
                    start.push(0);
                    end.push(1);
                }
                None => end.push(0xff),
            }
            vec![(start, end)]
        };
        let mut out: Vec<LookupMatch> = Vec::new();
        let mut add = |m: LookupMatch| match out
            .iter_mut()
            .find(|o| o.alert_id == m.alert_id && o.r#type == m.r#type)
        {
            Some(o) => o.similarity = o.similarity.max(m.similarity),
            None => out.push(m),
        };
        for t in tokens {
            let prefix = index::token_prefix(&(t.r#type, t.key_version, t.value.clone()));
            for (id, _) in self.candidates(&self.tokens, prefix.len(), ranges(&prefix))? {
                add(LookupMatch {
                    r#type: t.r#type,
                    alert_id: id.to_string(),
                    similarity: 1.0,
                });
            }
        }
        for e in encodings {
            let block = crate::matching::encoding_block(e);
            for (id, bloom) in self.candidates(&self.fuzzy, block.len(), ranges(&block))? {
                if let Some(sim) = crate::matching::similarity(&e.bloom, &bloom)
                    && sim >= threshold
                {
                    add(LookupMatch {
                        r#type: IdentifierType::Person as i32,
                        alert_id: id.to_string(),
                        similarity: sim,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Appends a lookup to the lookup log (read by the audit log) and flushes.
    pub async fn record_lookup(
        &self,
        record: crate::proto::v1::LookupRecord,
    ) -> Result<(), StoreError> {
        {
            let _writing = self.writing();
            let seq = self.db.generate_id()?;
            self.lookups
                .insert(seq.to_be_bytes(), record.encode_to_vec())?;
        }
        self.commit.durable().await
    }

    /// Number of lookups in the lookup log.
    pub fn lookup_count(&self) -> usize {
        self.lookups.len()
    }

    /// Redoes matching interrupted by a crash (see `match_pending`).
    fn recover_pending(&self) -> Result<(), StoreError> {
        for item in self.pending.iter() {
            let (id, _) = item?;
            match self.alerts.get(&id)? {
                Some(bytes) => {
                    let record = decode(&id, &bytes)?;
                    let hits = self.match_pending(&record)?;
                    self.publish(&hits);
                }
                None => {
                    self.pending.remove(&id)?;
                }
            }
        }
        Ok(())
    }

    /// Counts hits and audit entries in `metrics` from now on.
    pub fn set_metrics(&self, metrics: crate::metrics::Metrics) {
        let _ = self.metrics.set(metrics);
    }

    fn publish(&self, hits: &[Hit]) {
        if let Some(m) = self.metrics.get() {
            for h in hits {
                let kind = crate::proto::identifier_type_name(h.r#type);
                m.hits
                    .get_or_create(&crate::metrics::label("type", &kind))
                    .inc();
            }
        }
        if let Some(max) = hits.iter().map(|h| h.sequence).max() {
            self.hit_seq.send_if_modified(|cur| {
                let changed = max > *cur;
                *cur = (*cur).max(max);
                changed
            });
        }
    }

    /// The latest hit sequence, updated after each durable write that found hits.
    pub fn watch_hits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.hit_seq.subscribe()
    }

    /// Hits with sequence greater than `after`, in order, at most `limit`.
    pub fn hits_after(&self, after: u64, limit: usize) -> Result<Vec<Hit>, StoreError> {
        let mut out = Vec::new();
        for item in self.hits.range((after.saturating_add(1)).to_be_bytes()..) {
            if out.len() == limit {
                break;
            }
            let (k, v) = item?;
            out.push(Hit::decode(v.as_ref()).map_err(|e| StoreError::Corrupt {
                key: format!("hit {k:?}"),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// Records a hit that `from` found between one of its alerts and one of
    /// ours. Refused when the alerts are not what the notice claims.
    pub async fn record_notice(
        &self,
        from: &AgencyId,
        notice: &HitNotice,
    ) -> Result<NoticeOutcome, StoreError> {
        let refuse = |r: String| Ok(NoticeOutcome::Refused(r));
        let Ok(ours) = notice.your_alert_id.parse::<AlertId>() else {
            return refuse("hit_notice.your_alert_id: not an alert id".into());
        };
        let Ok(theirs) = notice.our_alert_id.parse::<AlertId>() else {
            return refuse("hit_notice.our_alert_id: not an alert id".into());
        };
        if ours.origin() != &self.scope.own {
            return refuse(format!(
                "hit_notice.your_alert_id: {ours} is not an alert of {}",
                self.scope.own
            ));
        }
        if theirs.origin() != from {
            return refuse(format!(
                "hit_notice.our_alert_id: {theirs} is not an alert of {from}"
            ));
        }
        if self.get(&ours)?.is_none() {
            return refuse(format!("hit_notice.your_alert_id: {ours} is unknown here"));
        }
        let hit = Hit {
            sequence: 0,
            r#type: notice.r#type,
            local_alert_id: ours.to_string(),
            other_alert_id: theirs.to_string(),
            other_agency: from.to_string(),
            similarity: notice.similarity,
            detected_at: Some(crate::time::now()),
            source: HitSource::Notice as i32,
        };
        let writing = self.writing();
        let recorded = (&self.hits, &self.hit_keys)
            .transaction(|(hits, hit_keys)| {
                index::record_hit::<StoreError>(hits, hit_keys, hit.clone())
            })
            .map_err(flatten)?;
        drop(writing);
        self.commit.durable().await?;
        Ok(match recorded {
            Some(hit) => {
                self.publish(std::slice::from_ref(&hit));
                NoticeOutcome::Recorded(hit)
            }
            None => NoticeOutcome::Known,
        })
    }

    /// Flushes, then stops the flusher; used at shutdown. Writes after this
    /// fail with `StoreError::Flush`.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        self.commit.stop().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Alert, SharedAlert};

    fn agency(s: &str) -> AgencyId {
        AgencyId::new(s).unwrap()
    }

    fn record(id: &AlertId, version: u64, narrative: &str) -> StoredAlert {
        StoredAlert {
            alert: Some(Alert {
                id: id.to_string(),
                origin: id.origin().to_string(),
                version,
                content: Some(crate::proto::v1::AlertContent {
                    narrative: narrative.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            shared_with: vec![],
            withdrawn_from: vec![],
            pseudonyms: vec![],
        }
    }

    fn shared(id: &AlertId, version: u64) -> Payload {
        Payload::Alert(SharedAlert {
            id: id.to_string(),
            origin: id.origin().to_string(),
            version,
            ..Default::default()
        })
    }

    fn scope() -> MatchScope {
        MatchScope {
            own: agency("police"),
            peers: [agency("ngo")].into(),
            fuzzy_threshold: crate::matching::DEFAULT_FUZZY_THRESHOLD,
        }
    }

    fn version_of(p: &Payload) -> u64 {
        match p {
            Payload::Alert(a) => a.version,
            Payload::HitNotice(_) => 0,
        }
    }

    #[tokio::test]
    async fn local_write_and_outbox_are_atomic_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
        let id = AlertId::generate(&agency("police"));
        let (ngo, labour) = (agency("ngo"), agency("labour"));
        for v in 1..=3 {
            store
                .write_local(&id, None, |_| {
                    Ok::<_, ()>((
                        record(&id, v, "x"),
                        vec![
                            OutboxItem {
                                peer: ngo.clone(),
                                payload: shared(&id, v),
                                rule: String::new(),
                                disclosed: String::new(),
                            },
                            OutboxItem {
                                peer: labour.clone(),
                                payload: shared(&id, v),
                                rule: String::new(),
                                disclosed: String::new(),
                            },
                        ],
                    ))
                })
                .await
                .unwrap();
        }
        let q = store.outbox_after(&ngo, None, 10).unwrap();
        assert_eq!(
            q.iter().map(|q| version_of(&q.payload)).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(
            q.windows(2).all(|w| w[0].seq < w[1].seq),
            "sequences increase"
        );
        // Paging by cursor and removal on ack.
        let rest = store.outbox_after(&ngo, Some(q[0].seq), 10).unwrap();
        assert_eq!(rest.len(), 2);
        assert!(store.outbox_remove(&ngo, q[0].seq).unwrap());
        assert!(!store.outbox_remove(&ngo, q[0].seq).unwrap());
        assert_eq!(store.outbox_depth(&ngo), 2);
        assert_eq!(
            store.outbox_depth(&labour),
            3,
            "other peers' queues untouched"
        );

        // A rejected build writes nothing at all.
        let other = AlertId::generate(&agency("police"));
        let err = store
            .write_local(
                &other,
                None,
                |_| -> Result<(StoredAlert, Vec<OutboxItem>), &str> { Err("no") },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, TxError::Rejected("no")));
        assert!(store.get(&other).unwrap().is_none());
        assert_eq!(store.outbox_total(), 5);
    }

    #[tokio::test]
    async fn request_key_replays_the_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
        let first = AlertId::generate(&agency("police"));
        let second = AlertId::generate(&agency("police"));
        let w1 = store
            .write_local(&first, Some(b"cms\0r1"), |_| {
                Ok::<_, ()>((record(&first, 1, "a"), vec![]))
            })
            .await
            .unwrap();
        assert!(matches!(w1, LocalWrite::Written(_)));
        let w2 = store
            .write_local(&second, Some(b"cms\0r1"), |_| {
                Ok::<_, ()>((record(&second, 1, "b"), vec![]))
            })
            .await
            .unwrap();
        match w2 {
            LocalWrite::Replayed(r) => assert_eq!(r.alert.unwrap().id, first.to_string()),
            other => panic!("expected replay, got {other:?}"),
        }
        assert!(store.get(&second).unwrap().is_none());
    }

    #[tokio::test]
    async fn received_versions_never_go_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
        let id = AlertId::generate(&agency("ngo"));
        let out = store
            .apply_received_batch(vec![
                record(&id, 2, "v2"),
                record(&id, 1, "v1"),
                record(&id, 2, "v2 again"),
            ])
            .await
            .unwrap();
        assert_eq!(
            out,
            [
                ApplyOutcome::Stored,
                ApplyOutcome::Duplicate,
                ApplyOutcome::Duplicate
            ]
        );
        let held = store.get(&id).unwrap().unwrap().alert.unwrap();
        assert_eq!(
            (held.version, held.content.unwrap().narrative.as_str()),
            (2, "v2")
        );
        let out = store
            .apply_received_batch(vec![record(&id, 3, "v3")])
            .await
            .unwrap();
        assert_eq!(out, [ApplyOutcome::Stored]);
        assert_eq!(store.count_alerts(&agency("police")).unwrap(), (0, 1));

        // A tombstone at the version held (a withdrawal from this peer)
        // applies once; the live version again does not undo it.
        let tomb = |r: StoredAlert| {
            let mut r = r;
            let a = r.alert.as_mut().unwrap();
            a.retracted = true;
            a.content = None;
            r
        };
        let out = store
            .apply_received_batch(vec![
                tomb(record(&id, 3, "")),
                record(&id, 3, "v3"),
                tomb(record(&id, 3, "")),
            ])
            .await
            .unwrap();
        assert_eq!(
            out,
            [
                ApplyOutcome::Stored,
                ApplyOutcome::Duplicate,
                ApplyOutcome::Duplicate
            ]
        );
        let held = store.get(&id).unwrap().unwrap().alert.unwrap();
        assert!(held.retracted && held.content.is_none());
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = AlertId::generate(&agency("police"));
        {
            let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
            store
                .write_local(&id, None, |_| {
                    Ok::<_, ()>((
                        record(&id, 1, "kept"),
                        vec![OutboxItem {
                            peer: agency("ngo"),
                            payload: shared(&id, 1),
                            rule: String::new(),
                            disclosed: String::new(),
                        }],
                    ))
                })
                .await
                .unwrap();
            store.close().await.unwrap();
        }
        let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
        assert_eq!(store.get(&id).unwrap().unwrap().alert.unwrap().version, 1);
        assert_eq!(store.outbox_depth(&agency("ngo")), 1);
        assert!(
            store
                .commit_stats()
                .flushes
                .load(std::sync::atomic::Ordering::Relaxed)
                == 0
        );
    }

    fn with_token(mut rec: StoredAlert, token: u8) -> StoredAlert {
        rec.pseudonyms = vec![crate::proto::v1::SharedSubject {
            role: 0,
            tokens: vec![crate::proto::v1::Token {
                r#type: crate::proto::v1::IdentifierType::Phone as i32,
                key_version: 1,
                value: vec![token; 32],
            }],
            encodings: vec![],
        }];
        rec
    }

    #[tokio::test]
    async fn shared_tokens_make_one_hit_and_one_notice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
        let mine = AlertId::generate(&agency("police"));
        let theirs = AlertId::generate(&agency("ngo"));
        let unrelated = AlertId::generate(&agency("ngo"));
        store
            .write_local(&mine, None, |_| {
                Ok::<_, ()>((with_token(record(&mine, 1, "a"), 7), vec![]))
            })
            .await
            .unwrap();
        store
            .apply_received_batch(vec![
                with_token(record(&theirs, 1, "b"), 7),
                with_token(record(&unrelated, 1, "c"), 8),
            ])
            .await
            .unwrap();
        let hits = store.hits_after(0, 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(
            (
                hits[0].local_alert_id.as_str(),
                hits[0].other_alert_id.as_str()
            ),
            (mine.to_string().as_str(), theirs.to_string().as_str())
        );
        assert_eq!(hits[0].other_agency, "ngo");
        assert_eq!(*store.watch_hits().borrow(), hits[0].sequence);
        // The other side is told, through its outbox.
        let notices: Vec<_> = store
            .outbox_after(&agency("ngo"), None, 10)
            .unwrap()
            .into_iter()
            .filter_map(|q| match q.payload {
                Payload::HitNotice(n) => Some(n),
                Payload::Alert(_) => None,
            })
            .collect();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].your_alert_id, theirs.to_string());
        assert_eq!(notices[0].our_alert_id, mine.to_string());

        // A newer version with the same token, or a notice about the same pair: no second hit.
        store
            .apply_received_batch(vec![with_token(record(&theirs, 2, "b2"), 7)])
            .await
            .unwrap();
        let notice = HitNotice {
            r#type: crate::proto::v1::IdentifierType::Phone as i32,
            your_alert_id: mine.to_string(),
            our_alert_id: theirs.to_string(),
            similarity: 1.0,
        };
        assert_eq!(
            store.record_notice(&agency("ngo"), &notice).await.unwrap(),
            NoticeOutcome::Known
        );
        assert_eq!(store.hits_after(0, 10).unwrap().len(), 1);

        // A notice naming someone else's alert, or claiming another sender, is refused.
        let bad = HitNotice {
            your_alert_id: theirs.to_string(),
            ..notice.clone()
        };
        assert!(matches!(
            store.record_notice(&agency("ngo"), &bad).await.unwrap(),
            NoticeOutcome::Refused(_)
        ));
        assert!(matches!(
            store
                .record_notice(&agency("labour"), &notice)
                .await
                .unwrap(),
            NoticeOutcome::Refused(_)
        ));

        // After a tombstone the token no longer matches anything new.
        store
            .apply_received_batch(vec![record(&theirs, 3, "retracted")])
            .await
            .unwrap();
        let late = AlertId::generate(&agency("police"));
        store
            .write_local(&late, None, |_| {
                Ok::<_, ()>((with_token(record(&late, 1, "d"), 7), vec![]))
            })
            .await
            .unwrap();
        assert_eq!(store.hits_after(0, 10).unwrap().len(), 1);
    }
}
