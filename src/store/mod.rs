//! The node's durable state in sled. Nothing else in the crate touches sled:
//! other modules call the typed operations here.
//!
//! Trees:
//! - `alerts`: alert id → `StoredAlert` (latest version only).
//! - `outbox`: peer ‖ 0x00 ‖ sequence (u64 BE) → `SharedAlert` waiting for the peer's ack.
//! - `requests`: client ‖ 0x00 ‖ request id → alert id, for idempotent submits.
//!
//! Every operation that changes an alert writes the alert and its outbox
//! entries in one sled transaction, and returns only after a (group) flush, so
//! whatever a caller acknowledges is on disk and its deliveries are queued.

mod group_commit;

pub use group_commit::CommitStats;

use std::path::Path;

use prost::Message;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use thiserror::Error;

use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::{SharedAlert, StoredAlert};
use group_commit::GroupCommit;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record {key} cannot be decoded: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("flush failed: {0}")]
    Flush(String),
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
    pub alert: SharedAlert,
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
    alerts: sled::Tree,
    outbox: sled::Tree,
    requests: sled::Tree,
    commit: GroupCommit,
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

fn map_tx<E>(e: TransactionError<E>) -> TxError<E> {
    match e {
        TransactionError::Abort(e) => TxError::Rejected(e),
        TransactionError::Storage(e) => TxError::Store(StoreError::Sled(e)),
    }
}

impl Store {
    /// Opens (or creates) the store. Must be called inside a tokio runtime:
    /// it starts the group-commit flusher.
    pub fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity_bytes)
            // We flush explicitly before every acknowledgement; the periodic
            // background flush only bounds the work of the next explicit one.
            .flush_every_ms(Some(1000))
            .open()?;
        let (commit, _flusher) = GroupCommit::start(db.clone());
        Ok(Self {
            alerts: db.open_tree("alerts")?,
            outbox: db.open_tree("outbox")?,
            requests: db.open_tree("requests")?,
            db,
            commit,
        })
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
        let key = id.to_string();
        let result = (&self.alerts, &self.outbox, &self.requests)
            .transaction(|(alerts, outbox, requests)| {
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
                let (record, items) = build(current).map_err(|e| abort(TxError::Rejected(e)))?;
                alerts.insert(key.as_bytes(), record.encode_to_vec())?;
                for item in &items {
                    let seq = outbox.generate_id()?;
                    outbox.insert(outbox_key(&item.peer, seq), item.alert.encode_to_vec())?;
                }
                if let Some(rk) = request_key {
                    requests.insert(rk, key.as_bytes())?;
                }
                Ok(LocalWrite::Written(record))
            })
            .map_err(|e| match e {
                TransactionError::Abort(inner) => inner,
                TransactionError::Storage(e) => TxError::Store(StoreError::Sled(e)),
            })?;
        self.commit.durable().await?;
        Ok(result)
    }

    /// Applies received alerts that are newer than what is held, then waits
    /// for one flush covering all of them. Idempotent: applying the same
    /// version twice changes nothing and reports `Duplicate`.
    pub async fn apply_received_batch(
        &self,
        records: Vec<StoredAlert>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(records.len());
        for record in &records {
            let alert = record.alert.as_ref().ok_or_else(|| StoreError::Corrupt {
                key: "<received>".into(),
                reason: "record without alert".into(),
            })?;
            let key = alert.id.as_bytes();
            let version = alert.version;
            let encoded = record.encode_to_vec();
            let outcome = self
                .alerts
                .transaction(|alerts| {
                    if let Some(bytes) = alerts.get(key)? {
                        let held = decode(key, &bytes).map_err(abort)?;
                        if held.alert.as_ref().map_or(0, |a| a.version) >= version {
                            return Ok(ApplyOutcome::Duplicate);
                        }
                    }
                    alerts.insert(key, encoded.as_slice())?;
                    Ok(ApplyOutcome::Stored)
                })
                .map_err(|e| match map_tx(e) {
                    TxError::Store(e) | TxError::Rejected(e) => e,
                })?;
            outcomes.push(outcome);
        }
        // Even an all-duplicate batch waits for the flush: the first delivery
        // of these versions may not be on disk yet, and we are about to ack.
        if !outcomes.is_empty() {
            self.commit.durable().await?;
        }
        Ok(outcomes)
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
    ) -> Result<Vec<(u64, SharedAlert)>, StoreError> {
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
            let alert = SharedAlert::decode(v.as_ref()).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: e.to_string(),
            })?;
            out.push((seq, alert));
        }
        Ok(out)
    }

    /// Removes an acknowledged envelope. Not flushed on purpose: if the removal
    /// is lost in a crash the envelope is sent again and the peer dedups it.
    pub fn outbox_remove(&self, peer: &AgencyId, seq: u64) -> Result<bool, StoreError> {
        Ok(self.outbox.remove(outbox_key(peer, seq))?.is_some())
    }

    pub fn outbox_depth(&self, peer: &AgencyId) -> u64 {
        self.outbox.scan_prefix(outbox_prefix(peer)).count() as u64
    }

    pub fn outbox_total(&self) -> u64 {
        self.outbox.len() as u64
    }

    /// Flushes and waits; used at shutdown.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}
