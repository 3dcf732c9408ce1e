//! Public reports (docs/intake.md). Trees:
//! - `intake`: report id → `IntakeReportRecord`, sealed under a data key
//!   of each report's own (a purge destroys it with the record);
//! - `intake_index` (no case data): `k` 0 receipt hash → report id;
//!   `o` 0 newest-first hour (u64 BE, inverted) id → state (one byte), the
//!   inbox's order; `t` 0 retain-until (u64 BE) id → nothing, what the
//!   retention purge takes in order; `n` → reports not closed (u64 BE),
//!   the queue's bound;
//! - `intake_meta`: `secret` → the receipt hasher's secret, sealed under
//!   the epoch in force.
//!
//! No key or value here holds anything of who a reporter is.

use prost::Message;
use zeroize::Zeroizing;

use super::engine::Reads;
use super::{Store, StoreError, Write};
use crate::audit::{Action, Event, NODE};
use crate::proto::v1::{IntakeReportRecord, IntakeState};

/// Bytes of the receipt secret.
const SECRET_LEN: usize = 32;
const SECRET_KEY: &[u8] = b"secret";
const OPEN_KEY: &[u8] = b"n";

fn receipt_key(hash: &[u8]) -> Vec<u8> {
    let mut k = vec![b'k', 0];
    k.extend_from_slice(hash);
    k
}

fn order_key(rec: &IntakeReportRecord) -> Vec<u8> {
    let mut k = vec![b'o', 0];
    let hour = u64::try_from(rec.received_hour).unwrap_or(0);
    k.extend_from_slice(&(u64::MAX - hour).to_be_bytes());
    k.extend_from_slice(rec.id.as_bytes());
    k
}

fn retention_key(rec: &IntakeReportRecord) -> Vec<u8> {
    let mut k = vec![b't', 0];
    k.extend_from_slice(&u64::try_from(rec.retain_until).unwrap_or(0).to_be_bytes());
    k.extend_from_slice(rec.id.as_bytes());
    k
}

fn decode(v: &[u8]) -> Result<IntakeReportRecord, StoreError> {
    IntakeReportRecord::decode(v).map_err(|e| StoreError::corrupt("intake", e))
}

fn open(rec: &IntakeReportRecord) -> bool {
    rec.state != IntakeState::Closed as i32
}

/// The open count a value of `OPEN_KEY` holds (none: nothing open).
fn count_of(v: Option<Vec<u8>>) -> Result<u64, StoreError> {
    match v {
        Some(v) => <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::corrupt("intake_index", "a count of 8 bytes")),
        None => Ok(0),
    }
}

/// Reports not closed, as the index counts them.
fn open_count(w: &Write<'_, '_>) -> Result<u64, StoreError> {
    count_of(w.tx.get(w.t.intake_index, OPEN_KEY)?)
}

/// Writes `rec` and its order entry, and moves the open count by what
/// changed since `before`.
fn put(
    w: &mut Write<'_, '_>,
    before: Option<&IntakeReportRecord>,
    rec: &IntakeReportRecord,
) -> Result<(), StoreError> {
    w.tx.insert(w.t.intake, rec.id.as_bytes(), rec.encode_to_vec())?;
    w.tx.insert(w.t.intake_index, order_key(rec), [rec.state as u8])?;
    let delta = i64::from(open(rec)) - i64::from(before.is_some_and(open));
    if delta != 0 {
        let n = open_count(w)?.saturating_add_signed(delta);
        w.tx.insert(w.t.intake_index, OPEN_KEY, n.to_be_bytes())?;
    }
    Ok(())
}

/// What became of a new report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Stored,
    /// As many reports as the node keeps open are open: try later.
    Full,
    /// Another report holds this receipt: draw another.
    ReceiptTaken,
}

impl Store {
    /// The receipt hasher's secret, made by `fresh` (and kept) the first
    /// time a node asks.
    pub async fn intake_secret(
        &self,
        fresh: impl FnOnce() -> Zeroizing<[u8; SECRET_LEN]>,
    ) -> Result<Zeroizing<[u8; SECRET_LEN]>, StoreError> {
        let as_secret = |v: Vec<u8>| {
            let v = Zeroizing::new(v);
            <[u8; SECRET_LEN]>::try_from(v.as_slice())
                .map(Zeroizing::new)
                .map_err(|_| StoreError::corrupt("intake_meta", "a secret of 32 bytes"))
        };
        if let Some(v) = self.db.get(self.t.intake_meta, SECRET_KEY)? {
            return as_secret(v);
        }
        let made = fresh();
        let kept = self.write(|w| {
            if let Some(v) = w.tx.get(w.t.intake_meta, SECRET_KEY)? {
                return Ok::<_, StoreError>(Some(v));
            }
            w.tx.insert(w.t.intake_meta, SECRET_KEY, &made[..])?;
            Ok(None)
        })?;
        match kept {
            Some(v) => as_secret(v),
            None => {
                self.commit.durable().await?;
                Ok(made)
            }
        }
    }

    /// Keeps a new report, found again by `rec.receipt_hash`, with
    /// `event`, unless `max_open` reports are open already. Durable when
    /// this returns.
    pub async fn intake_submit(
        &self,
        rec: &IntakeReportRecord,
        max_open: u64,
        event: Event,
    ) -> Result<Submitted, StoreError> {
        let outcome = self.write(|w| {
            if open_count(w)? >= max_open {
                return Ok::<_, StoreError>(Submitted::Full);
            }
            if w.tx
                .get(w.t.intake_index, receipt_key(&rec.receipt_hash))?
                .is_some()
            {
                return Ok(Submitted::ReceiptTaken);
            }
            put(w, None, rec)?;
            w.tx.insert(
                w.t.intake_index,
                receipt_key(&rec.receipt_hash),
                rec.id.as_bytes(),
            )?;
            w.tx.insert(w.t.intake_index, retention_key(rec), [])?;
            w.append([event])?;
            Ok(Submitted::Stored)
        })?;
        if outcome == Submitted::Stored {
            self.commit.durable().await?;
        }
        Ok(outcome)
    }

    /// The report a receipt's hash opens, if any.
    pub fn intake_by_receipt(&self, hash: &[u8]) -> Result<Option<IntakeReportRecord>, StoreError> {
        match self.db.get(self.t.intake_index, receipt_key(hash))? {
            Some(id) => self.intake_report(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Report `id`, if the store holds it.
    pub fn intake_report(&self, id: &str) -> Result<Option<IntakeReportRecord>, StoreError> {
        self.db
            .get(self.t.intake, id.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Changes report `id` as `change` decides from the one held (`None`:
    /// leave it), with `events`; returns the report as written. Durable
    /// when this returns.
    pub async fn intake_update(
        &self,
        id: &str,
        change: impl FnOnce(IntakeReportRecord) -> Option<IntakeReportRecord>,
        events: Vec<Event>,
    ) -> Result<Option<IntakeReportRecord>, StoreError> {
        let written = self.write(|w| {
            let Some(v) = w.tx.get(w.t.intake, id.as_bytes())? else {
                return Ok::<_, StoreError>(None);
            };
            let before = decode(&v)?;
            let Some(after) = change(before.clone()) else {
                return Ok(None);
            };
            if order_key(&after) != order_key(&before) {
                w.tx.remove(w.t.intake_index, order_key(&before))?;
            }
            put(w, Some(&before), &after)?;
            w.append(events)?;
            Ok(Some(after))
        })?;
        if written.is_some() {
            self.commit.durable().await?;
        }
        Ok(written)
    }

    /// Up to `limit` reports, newest first, in `state` (any state when
    /// unspecified), after skipping `skip` of them.
    pub fn intake_list(
        &self,
        state: IntakeState,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<IntakeReportRecord>, StoreError> {
        let mut out = Vec::new();
        let wanted = |s: u8| state == IntakeState::Unspecified || s == state as u8;
        let mut seen = 0;
        for item in self.db.prefix(self.t.intake_index, [b'o', 0]) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !v.first().is_some_and(|s| wanted(*s)) {
                continue;
            }
            seen += 1;
            if seen <= skip {
                continue;
            }
            let id = String::from_utf8_lossy(&k[2 + 8..]).into_owned();
            if let Some(rec) = self.intake_report(&id)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Purges every report whose retention ended before `now` (Unix
    /// seconds): its record and its data key go in one transaction with
    /// its index entries and an `intake.purge` entry, so no copy of it —
    /// in the store's old segments or a backup — opens again once the
    /// epoch turns (docs/encryption.md). Returns how many went.
    pub async fn intake_purge_due(&self, now: i64) -> Result<usize, StoreError> {
        let low = vec![b't', 0];
        let mut high = low.clone();
        high.extend_from_slice(&u64::try_from(now).unwrap_or(0).to_be_bytes());
        let due: Vec<Vec<u8>> = self
            .db
            .range(self.t.intake_index, low..high)
            .map(|item| item.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        for key in &due {
            let id = String::from_utf8_lossy(&key[2 + 8..]).into_owned();
            self.write(|w| {
                w.tx.remove(w.t.intake_index, key)?;
                if let Some(v) = w.tx.get(w.t.intake, id.as_bytes())? {
                    let rec = decode(&v)?;
                    w.tx.remove(w.t.intake_index, receipt_key(&rec.receipt_hash))?;
                    w.tx.remove(w.t.intake_index, order_key(&rec))?;
                    if open(&rec) {
                        let n = open_count(w)?.saturating_sub(1);
                        w.tx.insert(w.t.intake_index, OPEN_KEY, n.to_be_bytes())?;
                    }
                    super::vault::destroy_data_key(w, "intake", id.as_bytes())?;
                    w.tx.remove(w.t.intake, id.as_bytes())?;
                    w.append([Event::new(NODE, Action::IntakePurge, "OK").object(id.clone())])?;
                }
                Ok::<_, StoreError>(())
            })?;
        }
        if !due.is_empty() {
            self.commit.durable().await?;
        }
        Ok(due.len())
    }

    /// Reports not closed.
    pub fn intake_open(&self) -> Result<u64, StoreError> {
        count_of(self.db.get(self.t.intake_index, OPEN_KEY)?)
    }
}
