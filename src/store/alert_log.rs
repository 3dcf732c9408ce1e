//! The alert log `WatchAlerts` follows: every alert this node holds, own or
//! received, by the position of its latest change (created, a new version,
//! a retraction, a received version, a retention purge).
//!
//! An alert has **one** entry: a change moves it to the end (`alert_log`:
//! position → alert id, `alert_log_pos`: alert id → position). So a
//! watcher resuming after position `p` gets each alert changed since `p`
//! exactly once, as it stands now — never a gap (an alert moved past the
//! cursor is met again further on), never content a retraction or a purge
//! has removed since (the log holds ids, the content is read when sent).
//! Versions superseded before a watcher reads them are not sent one by one:
//! the newest carries everything they did.

use super::engine::Reads;
use super::index::decode_alert;
use super::{Counter, Store, StoreError, Write};
use crate::proto::v1::{AlertChange, StoredAlert};

/// The `settings` key that says every alert has its alert log entry (a
/// store from before the log got them at open).
const BACKFILLED: &str = "alert_log";

/// Alerts written per transaction when a store from before the log is
/// given one.
const BACKFILL_BATCH: usize = 2_000;

/// Moves `record`'s alert to the end of the log, inside the write that
/// changed it. Returns its new position.
pub(super) fn record(w: &mut Write<'_, '_>, record: &StoredAlert) -> Result<u64, StoreError> {
    let Some(alert) = &record.alert else {
        return Ok(0);
    };
    let id = alert.id.as_bytes();
    if let Some(old) = w.tx.get(w.t.alert_log_pos, id)? {
        w.tx.remove(w.t.alert_log, &old)?;
    }
    let seq = w.next(Counter::AlertLog)?;
    w.tx.insert(w.t.alert_log, seq.to_be_bytes(), id)?;
    w.tx.insert(w.t.alert_log_pos, id, seq.to_be_bytes())?;
    w.alert_logged(seq);
    Ok(seq)
}

fn position(key: &[u8]) -> Result<u64, StoreError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::corrupt("alert_log", "key is not a position"))
}

impl Store {
    /// The alerts changed after position `after`, in log order, as they are
    /// now; at most `limit`.
    pub fn alert_changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AlertChange>, StoreError> {
        let snapshot = self.db.snapshot();
        let mut out = Vec::new();
        for item in snapshot.range(self.t.alert_log, (after.saturating_add(1)).to_be_bytes()..) {
            if out.len() == limit {
                break;
            }
            let (k, id) = item?;
            let sequence = position(&k)?;
            let bytes = snapshot.get(self.t.alerts, &id)?.ok_or_else(|| {
                StoreError::corrupt(
                    String::from_utf8_lossy(&id).into_owned(),
                    "alert log names a missing alert",
                )
            })?;
            out.push(AlertChange {
                sequence,
                alert: decode_alert(&id, &bytes)?.alert,
            });
        }
        Ok(out)
    }

    /// The newest position in the alert log (0 when it is empty).
    pub fn alert_log_head(&self) -> Result<u64, StoreError> {
        self.last(self.t.alert_log)?
            .map(|(k, _)| position(&k))
            .transpose()
            .map(|p| p.unwrap_or(0))
    }

    /// The latest alert log position, updated after each durable write
    /// that changed an alert.
    pub fn watch_alerts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.alert_seq.subscribe()
    }

    pub(super) fn publish_alert_log(&self, seq: u64) {
        self.alert_seq.send_if_modified(|cur| {
            let changed = seq > *cur;
            *cur = (*cur).max(seq);
            changed
        });
    }

    /// Gives a store written before the alert log existed its entries: every
    /// alert it holds, in id order, in transactions of a bounded size. Runs
    /// at open; once done it is marked in `settings` ([`BACKFILLED`]), so
    /// later opens read one key instead of scanning the alerts.
    pub(super) fn backfill_alert_log(&self) -> Result<u64, StoreError> {
        if self.db.get(self.t.settings, BACKFILLED)?.is_some() {
            return Ok(0);
        }
        let mut after: Option<Vec<u8>> = None;
        let mut added = 0;
        loop {
            let batch: Vec<(Vec<u8>, Vec<u8>)> = match &after {
                Some(a) => self.db.range(
                    self.t.alerts,
                    (
                        std::ops::Bound::Excluded(a.clone()),
                        std::ops::Bound::Unbounded,
                    ),
                ),
                None => self.db.range::<&[u8]>(self.t.alerts, ..),
            }
            .take(BACKFILL_BATCH)
            .collect::<Result<_, _>>()?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            added += self.write(|w| {
                let mut n = 0;
                for (k, v) in &batch {
                    if w.tx.get(w.t.alert_log_pos, k)?.is_none() {
                        record(w, &decode_alert(k, v)?)?;
                        n += 1;
                    }
                }
                Ok::<_, StoreError>(n)
            })?;
        }
        self.write(|w| w.tx.insert(w.t.settings, BACKFILLED, b"1"))?;
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn positions_are_big_endian_u64_keys() {
        assert_eq!(position(&7u64.to_be_bytes()).unwrap(), 7);
        assert!(position(b"short").is_err());
    }

    /// Keeps the message type honest: a change carries the alert it names.
    #[test]
    fn a_change_round_trips() {
        let c = AlertChange {
            sequence: 3,
            alert: Some(Default::default()),
        };
        assert_eq!(
            AlertChange::decode(c.encode_to_vec().as_slice()).unwrap(),
            c
        );
    }
}
