//! Retention: every alert's content goes at its deadline, on the origin and
//! on every node that received it, each by its own clock. The `retention`
//! index (deadline ‖ alert id) lets a purge read only what is due.
//!
//! A purged alert keeps its id and version as a tombstone (no content, no
//! subjects, no tokens or encodings), so a late delivery of the same version
//! cannot bring the content back, while a newer version (the origin extended
//! the deadline before it passed) still applies.

use prost::Message;

use super::engine::Reads;
use super::index;
use super::index::decode_alert as decode;
use super::{Counter, Store, StoreError, Write};
use crate::proto::v1::{PurgeRecord, StoredAlert};
use crate::time::timestamp;

/// The reason a purged alert carries.
pub const PURGED: &str = "retention deadline passed; content purged";

/// Alerts read per scan of the due range.
const BATCH: usize = 256;

/// Whether a shared or stored alert's content is past its deadline at `now`.
pub fn expired(
    content: Option<&crate::proto::v1::AlertContent>,
    now: std::time::SystemTime,
) -> bool {
    let now = crate::time::unix_secs(now) as i64;
    content
        .and_then(|c| c.retention_until)
        .is_some_and(|t| t.seconds <= now)
}

/// `settings` key marking that received alerts stored without a deadline
/// were given one.
const RECEIVED_BOUNDED: &str = "received_retention_bounded";

impl Store {
    /// Gives every received alert an earlier node stored without a
    /// retention deadline (it would never be purged) the deadline `until`,
    /// with its retention index entry, in transactions of a bounded size.
    /// Runs once, at start; marked done in `settings`. Returns how many.
    pub fn bound_received_retention(
        &self,
        until: std::time::SystemTime,
    ) -> Result<u64, StoreError> {
        if self.db.get(self.t.settings, RECEIVED_BOUNDED)?.is_some() {
            return Ok(0);
        }
        let own = &self.scope()?.own;
        let mut after: Option<Vec<u8>> = None;
        let mut bounded = 0;
        loop {
            let from = after
                .clone()
                .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            let batch: Vec<(Vec<u8>, Vec<u8>)> = self
                .db
                .range(self.t.alerts, (from, std::ops::Bound::Unbounded))
                .take(BATCH)
                .collect::<Result<_, _>>()?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            bounded += self.write(|w| {
                let mut n = 0;
                for (k, v) in &batch {
                    let old = decode(k, v)?;
                    let Some(a) = old.alert.as_ref() else {
                        continue;
                    };
                    let received = a.origin != own.as_str();
                    let unbounded = a
                        .content
                        .as_ref()
                        .is_some_and(|c| c.retention_until.is_none());
                    if !(received && unbounded) {
                        continue;
                    }
                    let mut new = old.clone();
                    if let Some(c) = new.alert.as_mut().and_then(|a| a.content.as_mut()) {
                        c.retention_until = Some(timestamp(until));
                    }
                    w.tx.insert(w.t.alerts, k, new.encode_to_vec())?;
                    index::reindex(w, Some(&old), &new)?;
                    n += 1;
                }
                Ok::<_, StoreError>(n)
            })?;
        }
        self.write(|w| w.tx.insert(w.t.settings, RECEIVED_BOUNDED, b"1"))?;
        Ok(bounded)
    }

    /// Purges every alert whose retention deadline is at or before `now`,
    /// each in a transaction of its own with its purge log and audit
    /// entries (so writes wait at most for one), then syncs. Returns what
    /// was purged.
    pub async fn purge_expired(
        &self,
        now: std::time::SystemTime,
    ) -> Result<Vec<PurgeRecord>, StoreError> {
        let now_secs = crate::time::unix_secs(now);
        let mut purged = Vec::new();
        loop {
            let mut due = Vec::new();
            for item in self
                .db
                .range(self.t.retention, ..(now_secs + 1).to_be_bytes().to_vec())
            {
                let (k, _) = item?;
                if due.len() == BATCH {
                    break;
                }
                due.push(k.to_vec());
            }
            if due.is_empty() {
                break;
            }
            for key in due {
                let record = self.write(|w| {
                    let record = Self::purge_in(w, &key, now)?;
                    if let Some(r) = &record {
                        let until = r.retention_until.map(|t| t.seconds).unwrap_or_default();
                        w.append([crate::audit::Event::new(
                            crate::audit::NODE,
                            crate::audit::Action::AlertPurge,
                            "OK",
                        )
                        .object(r.alert_id.clone())
                        .detail("version", r.version)
                        .detail("retention_until", crate::time::format_ms(until * 1000))])?;
                    }
                    Ok::<_, StoreError>(record)
                })?;
                purged.extend(record);
            }
        }
        if !purged.is_empty() {
            self.commit.durable().await?;
        }
        Ok(purged)
    }

    /// Purges the alert of retention key `key`, if that key is still its
    /// deadline, inside the caller's transaction.
    fn purge_in(
        w: &mut Write<'_, '_>,
        key: &[u8],
        now: std::time::SystemTime,
    ) -> Result<Option<PurgeRecord>, StoreError> {
        let Some((_, id)) = index::alert_in_retention_key(key) else {
            // Not a key we write; drop it so it cannot stall the purge.
            w.tx.remove(w.t.retention, key)?;
            return Ok(None);
        };
        let id = id.to_string();
        let Some(bytes) = w.tx.get(w.t.alerts, &id)? else {
            w.tx.remove(w.t.retention, key)?;
            return Ok(None);
        };
        let current: StoredAlert = decode(id.as_bytes(), &bytes)?;
        if index::retention_key(&current).as_deref() != Some(key) {
            // Changed since the scan (a newer version moved the deadline).
            w.tx.remove(w.t.retention, key)?;
            return Ok(None);
        }
        let mut purged = current.clone();
        let Some(a) = purged.alert.as_mut() else {
            return Ok(None);
        };
        let record = PurgeRecord {
            at: Some(timestamp(now)),
            alert_id: a.id.clone(),
            version: a.version,
            retention_until: a.content.as_ref().and_then(|c| c.retention_until),
        };
        a.content = None;
        a.subjects.clear();
        a.case_reference.clear();
        a.title.clear();
        a.retracted = true;
        a.retraction_reason = PURGED.into();
        purged.pseudonyms.clear();
        purged.tokens_pending = false;
        super::vault::shred_if_emptied(w, id.as_bytes(), &purged)?;
        w.tx.insert(w.t.alerts, &id, purged.encode_to_vec())?;
        index::reindex(w, Some(&current), &purged)?;
        super::alert_log::record(w, &purged)?;
        super::tokens_pending::track(w, &id, &purged)?;
        let seq = w.next(Counter::Purges)?;
        w.tx.insert(w.t.purges, seq.to_be_bytes(), record.encode_to_vec())?;
        Ok(Some(record))
    }

    /// Number of purges logged.
    pub fn purge_count(&self) -> Result<u64, StoreError> {
        Ok(self.db.len(self.t.purges)?)
    }
}
