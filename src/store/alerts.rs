//! Alerts: the local write (alert + outbox entries + indexes in one
//! transaction, matched and flushed before the caller is answered), applying
//! what peers deliver, and reading alerts back.

use prost::Message;
use sled::Transactional;
use sled::transaction::TransactionError;

use super::index::IndexTrees;
use super::{OutboxItem, Store, StoreError, TxError, abort, flatten, index};
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::StoredAlert;

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

pub(super) fn decode(key: &[u8], bytes: &[u8]) -> Result<StoredAlert, StoreError> {
    StoredAlert::decode(bytes)
        .map_err(|e| StoreError::corrupt(String::from_utf8_lossy(key).into_owned(), e))
}

impl Store {
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
                            abort(TxError::Store(StoreError::corrupt(
                                String::from_utf8_lossy(&existing_id).into_owned(),
                                "idempotency key points to a missing alert",
                            )))
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
            let alert = record
                .alert
                .as_ref()
                .ok_or_else(|| StoreError::corrupt("<received>", "record without alert"))?;
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
}
