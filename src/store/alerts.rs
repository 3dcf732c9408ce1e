//! Alerts: the local write (alert, outbox entries, indexes, hits and audit
//! entries in one transaction, synced before the caller is answered),
//! applying what peers deliver, and reading alerts back.

use super::activity::Tally;
use prost::Message;

use super::engine::Reads;
use super::index::decode_alert;
use super::{OutboxItem, Store, StoreError, TxError, Write, alert_log, index};
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::StoredAlert;

/// Result of writing a local alert.
#[derive(Debug)]
pub enum LocalWrite {
    /// Written (and queued for the listed peers).
    Written(StoredAlert),
    /// The idempotency key was seen before with the same request: this is
    /// the alert it created.
    Replayed(StoredAlert),
    /// The idempotency key was seen before with a different request: this
    /// is the alert it created, and nothing was written.
    Conflict(StoredAlert),
}

/// A client's idempotency key for a write, and a digest of what it asked
/// for, so that a replay of the key with a different request is told
/// apart from a retry (keys stored before digests existed match any).
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    pub key: &'a [u8],
    pub digest: &'a [u8],
}

/// Result of applying an alert received from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Stored,
    /// This version or a newer one is already held; nothing changed.
    Duplicate,
}

impl Store {
    /// Writes a local alert atomically with its outbox entries, then waits for
    /// the sync. `build` sees the current record (if any) and decides the new
    /// one; it runs once, inside the transaction, so it must be quick and
    /// must not wait. With `request_key`, a replay of the same key returns
    /// the alert created the first time without calling `build`.
    pub async fn write_local<E>(
        &self,
        id: &AlertId,
        request_key: Option<RequestKey<'_>>,
        build: impl FnOnce(Option<StoredAlert>) -> Result<(StoredAlert, Vec<OutboxItem>), E>,
    ) -> Result<LocalWrite, TxError<E>> {
        self.write_local_then(id, request_key, build, |_| Vec::new())
            .await
    }

    /// [`Store::write_local`], appending the audit entries `on_commit`
    /// returns in the same transaction, so they are on disk exactly when
    /// the change is.
    pub async fn write_local_then<E>(
        &self,
        id: &AlertId,
        request_key: Option<RequestKey<'_>>,
        build: impl FnOnce(Option<StoredAlert>) -> Result<(StoredAlert, Vec<OutboxItem>), E>,
        on_commit: impl FnOnce(&LocalWrite) -> Vec<crate::audit::Event>,
    ) -> Result<LocalWrite, TxError<E>> {
        let key = id.to_string();
        let keyed = request_key.map(|rk| self.request_key(rk.key)).transpose()?;
        let request_key = request_key
            .zip(keyed.as_deref())
            .map(|(rk, key)| RequestKey {
                key,
                digest: rk.digest,
            });
        self.write_matched(|w| {
            let result = Self::write_local_in(w, &key, request_key, build)?;
            let mut hits = Vec::new();
            if let LocalWrite::Written(record) = &result {
                hits = self.match_in(w, record)?;
            }
            w.append(on_commit(&result))?;
            Ok::<_, TxError<E>>((result, hits))
        })
        .await
    }

    /// The `requests` key of a client's idempotency key (`client ‖ 0 ‖
    /// request id`): in a sealed store the request id is replaced by a
    /// keyed hash of it (a client may use a case number as its request
    /// id). Not inside a transaction.
    fn request_key(&self, key: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (client, request) = match key.iter().position(|b| *b == 0) {
            Some(at) => key.split_at(at + 1),
            None => (&key[..0], key),
        };
        super::vault::keyed(&self.db, client, request)
    }

    /// The alert part of a local write, inside its transaction.
    pub(super) fn write_local_in<E>(
        w: &mut Write<'_, '_>,
        key: &str,
        request_key: Option<RequestKey<'_>>,
        build: impl FnOnce(Option<StoredAlert>) -> Result<(StoredAlert, Vec<OutboxItem>), E>,
    ) -> Result<LocalWrite, TxError<E>> {
        if let Some(rk) = request_key
            && let Some(held) = w.tx.get(w.t.requests, rk.key)?
        {
            // alert id ‖ 0 ‖ digest (the digest is absent in older stores).
            let (existing_id, digest) = match held.iter().position(|b| *b == 0) {
                Some(at) => (&held[..at], Some(&held[at + 1..])),
                None => (&held[..], None),
            };
            let bytes = w.tx.get(w.t.alerts, existing_id)?.ok_or_else(|| {
                StoreError::corrupt(
                    String::from_utf8_lossy(existing_id).into_owned(),
                    "idempotency key points to a missing alert",
                )
            })?;
            let existing = decode_alert(existing_id, &bytes)?;
            return Ok(match digest {
                Some(d) if d != rk.digest => LocalWrite::Conflict(existing),
                _ => LocalWrite::Replayed(existing),
            });
        }
        let current = match w.tx.get(w.t.alerts, key)? {
            Some(bytes) => Some(decode_alert(key.as_bytes(), &bytes)?),
            None => None,
        };
        let (record, items) = build(current.clone()).map_err(TxError::Rejected)?;
        if current.is_none() {
            w.tally(Tally::Submitted, std::time::SystemTime::now(), 1)?;
        }
        super::vault::shred_if_emptied(w, key.as_bytes(), &record)?;
        w.tx.insert(w.t.alerts, key, record.encode_to_vec())?;
        for item in &items {
            index::queue(w, item)?;
        }
        index::reindex(w, current.as_ref(), &record)?;
        alert_log::record(w, &record)?;
        super::tokens_pending::track(w, key, &record)?;
        if let Some(rk) = request_key {
            let mut value = key.as_bytes().to_vec();
            value.push(0);
            value.extend_from_slice(rk.digest);
            w.tx.insert(w.t.requests, rk.key, value)?;
        }
        Ok(LocalWrite::Written(record))
    }

    /// Applies received alerts that are newer than what is held, then waits
    /// for one sync covering all of them. Idempotent: applying the same
    /// version twice changes nothing and reports `Duplicate`.
    pub async fn apply_received_batch(
        &self,
        records: Vec<StoredAlert>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        self.apply_received_batch_then(records, |_| Vec::new())
            .await
    }

    /// [`Store::apply_received_batch`]; the audit entries `audit` makes of
    /// the outcomes go into the same transaction.
    pub async fn apply_received_batch_then(
        &self,
        records: Vec<StoredAlert>,
        audit: impl FnOnce(&[ApplyOutcome]) -> Vec<crate::audit::Event>,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        let (outcomes, all_hits, logged) = self.write(|w| {
            let mut outcomes = Vec::with_capacity(records.len());
            let mut all_hits = Vec::new();
            for record in &records {
                let outcome = Self::apply_received_in(w, record)?;
                if outcome == ApplyOutcome::Stored {
                    all_hits.extend(self.match_in(w, record)?);
                }
                outcomes.push(outcome);
            }
            let events = audit(&outcomes);
            let logged = !events.is_empty();
            w.append(events)?;
            Ok::<_, StoreError>((outcomes, all_hits, logged))
        })?;
        // Even an all-duplicate batch waits for the sync: the first delivery
        // of these versions may not be on disk yet, and we are about to ack.
        if !outcomes.is_empty() || logged {
            self.commit.durable().await?;
        }
        self.publish(&all_hits);
        Ok(outcomes)
    }

    /// One received alert, inside the batch's transaction.
    fn apply_received_in(
        w: &mut Write<'_, '_>,
        record: &StoredAlert,
    ) -> Result<ApplyOutcome, StoreError> {
        let alert = record
            .alert
            .as_ref()
            .ok_or_else(|| StoreError::corrupt("<received>", "record without alert"))?;
        let key = alert.id.as_bytes();
        let (version, retracted) = (alert.version, alert.retracted);
        let held = match w.tx.get(w.t.alerts, key)? {
            Some(bytes) => Some(decode_alert(key, &bytes)?),
            None => None,
        };
        // A tombstone at the version held still applies: that is how an
        // origin withdraws an alert from one peer only.
        if held
            .as_ref()
            .and_then(|h| h.alert.as_ref())
            .is_some_and(|a| {
                a.version > version || (a.version == version && (a.retracted || !retracted))
            })
        {
            return Ok(ApplyOutcome::Duplicate);
        }
        if held.is_none() {
            w.tally(Tally::Received, std::time::SystemTime::now(), 1)?;
        }
        super::vault::shred_if_emptied(w, key, record)?;
        w.tx.insert(w.t.alerts, key, record.encode_to_vec())?;
        index::reindex(w, held.as_ref(), record)?;
        alert_log::record(w, record)?;
        Ok(ApplyOutcome::Stored)
    }

    /// Calls `f` for every alert this node originated, in id order.
    pub fn for_each_own(
        &self,
        own: &AgencyId,
        mut f: impl FnMut(&StoredAlert),
    ) -> Result<(), StoreError> {
        for item in self.db.prefix(self.t.alerts, format!("{own}:")) {
            let (k, v) = item?;
            f(&decode_alert(&k, &v)?);
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
        build: impl FnOnce(StoredAlert) -> Option<(StoredAlert, Vec<OutboxItem>)>,
    ) -> Result<bool, StoreError> {
        let key = id.to_string();
        let wrote = self.write(|w| {
            let Some(bytes) = w.tx.get(w.t.alerts, &key)? else {
                return Ok::<_, StoreError>(false);
            };
            let Some((record, items)) = build(decode_alert(key.as_bytes(), &bytes)?) else {
                return Ok(false);
            };
            w.tx.insert(w.t.alerts, &key, record.encode_to_vec())?;
            for item in &items {
                index::queue(w, item)?;
            }
            Ok(true)
        })?;
        if wrote {
            self.commit.durable().await?;
        }
        Ok(wrote)
    }

    pub fn get(&self, id: &AlertId) -> Result<Option<StoredAlert>, StoreError> {
        let key = id.to_string();
        self.db
            .get(self.t.alerts, &key)?
            .map(|b| decode_alert(key.as_bytes(), &b))
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
            Some(a) => self.db.range(
                self.t.alerts,
                (
                    std::ops::Bound::Excluded(a.as_bytes().to_vec()),
                    std::ops::Bound::Unbounded,
                ),
            ),
            None => self.db.range(self.t.alerts, prefix.clone()..),
        };
        let mut page = Vec::new();
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let rec = decode_alert(&k, &v)?;
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
        let snapshot = self.db.snapshot();
        let own = snapshot.prefix(self.t.alerts, format!("{origin}:")).count() as u64;
        Ok((own, snapshot.len(self.t.alerts)? - own))
    }
}
