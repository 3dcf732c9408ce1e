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
    /// it starts the group-commit flusher.
    pub fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<Self, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity_bytes)
            // We flush explicitly before every acknowledgement; the periodic
            // background flush only bounds the work of the next explicit one.
            .flush_every_ms(Some(1000));
        let db = open_with_lock_retry(&config)?;
        let commit = GroupCommit::start(db.clone());
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
    use crate::proto::v1::Alert;

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
            pseudonyms: vec![],
        }
    }

    fn shared(id: &AlertId, version: u64) -> SharedAlert {
        SharedAlert {
            id: id.to_string(),
            origin: id.origin().to_string(),
            version,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn local_write_and_outbox_are_atomic_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
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
                                alert: shared(&id, v),
                            },
                            OutboxItem {
                                peer: labour.clone(),
                                alert: shared(&id, v),
                            },
                        ],
                    ))
                })
                .await
                .unwrap();
        }
        let q = store.outbox_after(&ngo, None, 10).unwrap();
        assert_eq!(
            q.iter().map(|(_, a)| a.version).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(q.windows(2).all(|w| w[0].0 < w[1].0), "sequences increase");
        // Paging by cursor and removal on ack.
        let rest = store.outbox_after(&ngo, Some(q[0].0), 10).unwrap();
        assert_eq!(rest.len(), 2);
        assert!(store.outbox_remove(&ngo, q[0].0).unwrap());
        assert!(!store.outbox_remove(&ngo, q[0].0).unwrap());
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
        let store = Store::open(dir.path(), 8 << 20).unwrap();
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
        let store = Store::open(dir.path(), 8 << 20).unwrap();
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
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = AlertId::generate(&agency("police"));
        {
            let store = Store::open(dir.path(), 8 << 20).unwrap();
            store
                .write_local(&id, None, |_| {
                    Ok::<_, ()>((
                        record(&id, 1, "kept"),
                        vec![OutboxItem {
                            peer: agency("ngo"),
                            alert: shared(&id, 1),
                        }],
                    ))
                })
                .await
                .unwrap();
            store.close().await.unwrap();
        }
        let store = Store::open(dir.path(), 8 << 20).unwrap();
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
}
