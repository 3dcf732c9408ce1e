//! Public reports (docs/intake.md). Trees:
//! - `intake`: report id → `IntakeReportRecord`, sealed under a data key
//!   of each report's own (a purge destroys it with the record);
//! - `intake_index` (no case data): `k` 0 receipt hash → report id;
//!   `o` 0 state (one byte) newest-first hour (u64 BE, inverted) id →
//!   nothing, the inbox's tabs in order; `t` 0 retain-until (u64 BE) id →
//!   nothing, what the retention purge takes in order; `c` 0 state →
//!   reports in that state (u64 BE), the tabs' counts and the queue's
//!   bound (new and waiting are open);
//! - `intake_meta`: `secret` → the receipt hasher's secret, sealed under
//!   the epoch in force; `reindexing` while the index is rebuilt.
//!
//! Every read the inbox makes is a count or a range from a cursor: its
//! cost does not grow with the reports kept. No key or value here holds
//! anything of who a reporter is.

use prost::Message;
use zeroize::Zeroizing;

use super::engine::Reads;
use super::{Store, StoreError, Write};
use crate::audit::{Action, Event, NODE};
use crate::proto::v1::{IntakeReportRecord, IntakeState};

/// Bytes of the receipt secret.
const SECRET_LEN: usize = 32;
const SECRET_KEY: &[u8] = b"secret";
/// Set while the index is being rebuilt: a rebuild cut short by a crash
/// is run again at the next open.
const REINDEX_KEY: &[u8] = b"reindexing";

fn receipt_key(hash: &[u8]) -> Vec<u8> {
    let mut k = vec![b'k', 0];
    k.extend_from_slice(hash);
    k
}

/// Where a report stands in its state's tab: newest hour first, then id.
fn order_key(rec: &IntakeReportRecord) -> Vec<u8> {
    let mut k = order_prefix(rec.state());
    let hour = u64::try_from(rec.received_hour).unwrap_or(0);
    k.extend_from_slice(&(u64::MAX - hour).to_be_bytes());
    k.extend_from_slice(rec.id.as_bytes());
    k
}

fn order_prefix(state: IntakeState) -> Vec<u8> {
    vec![b'o', 0, state as u8]
}

/// Just past every key of `state`'s tab.
fn order_prefix_end(state: IntakeState) -> Vec<u8> {
    vec![b'o', 0, state as u8 + 1]
}

fn count_key(state: IntakeState) -> [u8; 3] {
    [b'c', 0, state as u8]
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

/// The count a value of a count key holds (none: zero).
fn count_of(v: Option<Vec<u8>>) -> Result<u64, StoreError> {
    match v {
        Some(v) => <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::corrupt("intake_index", "a count of 8 bytes")),
        None => Ok(0),
    }
}

/// Moves the count of `state` by `delta` in `w`.
fn count(w: &mut Write<'_, '_>, state: IntakeState, delta: i64) -> Result<(), StoreError> {
    let n = count_of(w.tx.get(w.t.intake_index, count_key(state))?)?.saturating_add_signed(delta);
    w.tx.insert(w.t.intake_index, count_key(state), n.to_be_bytes())?;
    Ok(())
}

/// Reports not closed, as the index counts them.
fn open_count(w: &Write<'_, '_>) -> Result<u64, StoreError> {
    let mut n = 0;
    for state in [IntakeState::New, IntakeState::Waiting] {
        n += count_of(w.tx.get(w.t.intake_index, count_key(state))?)?;
    }
    Ok(n)
}

/// Writes `rec` with its index entries in place of `before`'s: its place
/// in its tab, its retention, and the counts of the states it left and
/// entered.
fn put(
    w: &mut Write<'_, '_>,
    before: Option<&IntakeReportRecord>,
    rec: &IntakeReportRecord,
) -> Result<(), StoreError> {
    if let Some(before) = before {
        w.tx.remove(w.t.intake_index, order_key(before))?;
        w.tx.remove(w.t.intake_index, retention_key(before))?;
        count(w, before.state(), -1)?;
    }
    w.tx.insert(w.t.intake, rec.id.as_bytes(), rec.encode_to_vec())?;
    w.tx.insert(w.t.intake_index, order_key(rec), [])?;
    w.tx.insert(w.t.intake_index, retention_key(rec), [])?;
    count(w, rec.state(), 1)
}

/// Takes report `rec` and every index entry that finds it out of `w`.
fn take(w: &mut Write<'_, '_>, rec: &IntakeReportRecord) -> Result<(), StoreError> {
    w.tx.remove(w.t.intake_index, receipt_key(&rec.receipt_hash))?;
    w.tx.remove(w.t.intake_index, order_key(rec))?;
    w.tx.remove(w.t.intake_index, retention_key(rec))?;
    count(w, rec.state(), -1)?;
    super::vault::destroy_data_key(w, "intake", rec.id.as_bytes())?;
    w.tx.remove(w.t.intake, rec.id.as_bytes())?;
    Ok(())
}

/// Reports in each state, as the inbox's tabs show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeCounts {
    pub new: u64,
    pub waiting: u64,
    pub closed: u64,
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
    /// leave it), with the entries `events` makes (asked only when it
    /// writes, so a refused change leaves its caller's entry to it);
    /// returns the report as written. Durable when this returns.
    pub async fn intake_update(
        &self,
        id: &str,
        change: impl FnOnce(IntakeReportRecord) -> Option<IntakeReportRecord>,
        events: impl FnOnce() -> Vec<Event>,
    ) -> Result<Option<IntakeReportRecord>, StoreError> {
        let mut change = Some(change);
        let written = self
            .intake_update_many(&[id], |rec| change.take().and_then(|c| c(rec)), events)
            .await?;
        Ok(written.into_iter().next())
    }

    /// Changes each report of `ids` the store holds as `change` decides
    /// (`None`: leave it), all in one transaction with the entries
    /// `events` makes (asked only if a report changed); returns the
    /// reports as written. Durable when this returns.
    pub async fn intake_update_many(
        &self,
        ids: &[&str],
        mut change: impl FnMut(IntakeReportRecord) -> Option<IntakeReportRecord>,
        events: impl FnOnce() -> Vec<Event>,
    ) -> Result<Vec<IntakeReportRecord>, StoreError> {
        let written = self.write(|w| {
            let mut written = Vec::new();
            for id in ids {
                let Some(v) = w.tx.get(w.t.intake, id.as_bytes())? else {
                    continue;
                };
                let before = decode(&v)?;
                if let Some(after) = change(before.clone()) {
                    put(w, Some(&before), &after)?;
                    written.push(after);
                }
            }
            if !written.is_empty() {
                w.append(events())?;
            }
            Ok::<_, StoreError>(written)
        })?;
        if !written.is_empty() {
            self.commit.durable().await?;
        }
        Ok(written)
    }

    /// Up to `limit` reports in `state`, newest first, from just after
    /// the report `after` names (its cursor, from [`IntakeCursor::of`]),
    /// and the cursor of the last one returned when more may follow.
    pub fn intake_list(
        &self,
        state: IntakeState,
        after: Option<&IntakeCursor>,
        limit: usize,
    ) -> Result<(Vec<IntakeReportRecord>, Option<IntakeCursor>), StoreError> {
        let prefix = order_prefix(state);
        let high = order_prefix_end(state);
        let low = match after {
            Some(c) => {
                let mut k = prefix.clone();
                k.extend_from_slice(&c.0);
                k.push(0); // just past it
                k
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        let mut last = None;
        for item in self.db.range(self.t.intake_index, low..high) {
            if out.len() >= limit {
                return Ok((out, last));
            }
            let (k, _) = item?;
            let id = String::from_utf8_lossy(&k[prefix.len() + 8..]).into_owned();
            if let Some(rec) = self.intake_report(&id)? {
                last = Some(IntakeCursor(k[prefix.len()..].to_vec()));
                out.push(rec);
            }
        }
        Ok((out, None))
    }

    /// Reports in each state.
    pub fn intake_counts(&self) -> Result<IntakeCounts, StoreError> {
        let n = |state| -> Result<u64, StoreError> {
            count_of(self.db.get(self.t.intake_index, count_key(state))?)
        };
        Ok(IntakeCounts {
            new: n(IntakeState::New)?,
            waiting: n(IntakeState::Waiting)?,
            closed: n(IntakeState::Closed)?,
        })
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
                    take(w, &decode(&v)?)?;
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

    /// Builds the intake index again from the reports held: after a
    /// restore took out the reports purged since the backup, their
    /// receipts, places and counts must go too. Returns the reports
    /// indexed.
    pub fn intake_reindex(&self) -> Result<usize, StoreError> {
        const BATCH: usize = 512;
        self.write(|w| {
            w.tx.insert(w.t.intake_meta, REINDEX_KEY, [])
                .map_err(StoreError::from)
        })?;
        self.db.sync()?;
        let stale: Vec<Vec<u8>> = self
            .db
            .range::<&[u8]>(self.t.intake_index, ..)
            .map(|item| item.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        for chunk in stale.chunks(BATCH) {
            self.write(|w| {
                chunk
                    .iter()
                    .try_for_each(|k| w.tx.remove(w.t.intake_index, k))
                    .map_err(StoreError::from)
            })?;
        }
        let ids: Vec<Vec<u8>> = self
            .db
            .range::<&[u8]>(self.t.intake, ..)
            .map(|item| item.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        for chunk in ids.chunks(BATCH) {
            self.write(|w| {
                for id in chunk {
                    let Some(v) = w.tx.get(w.t.intake, id)? else {
                        continue;
                    };
                    let rec = decode(&v)?;
                    w.tx.insert(w.t.intake_index, order_key(&rec), [])?;
                    w.tx.insert(w.t.intake_index, retention_key(&rec), [])?;
                    w.tx.insert(w.t.intake_index, receipt_key(&rec.receipt_hash), id)?;
                    count(w, rec.state(), 1)?;
                }
                Ok::<_, StoreError>(())
            })?;
        }
        self.write(|w| {
            w.tx.remove(w.t.intake_meta, REINDEX_KEY)
                .map_err(StoreError::from)
        })?;
        self.db.sync()?;
        Ok(ids.len())
    }

    /// Finishes a rebuild of the index a crash cut short, if there is
    /// one; whether there was.
    pub fn intake_resume_reindex(&self) -> Result<bool, StoreError> {
        if self.db.get(self.t.intake_meta, REINDEX_KEY)?.is_none() {
            return Ok(false);
        }
        self.intake_reindex()?;
        Ok(true)
    }

    /// Reports not closed.
    pub fn intake_open(&self) -> Result<u64, StoreError> {
        let c = self.intake_counts()?;
        Ok(c.new + c.waiting)
    }
}

/// A place in one tab of the inbox (the hour and id of the last report
/// seen), opaque to callers: they hand back what a list returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeCursor(Vec<u8>);

impl IntakeCursor {
    /// The cursor just at `rec` (a page then starts after it).
    pub fn of(rec: &IntakeReportRecord) -> Self {
        Self(order_key(rec)[3..].to_vec())
    }

    /// As text for a page token.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.0)
    }

    /// A page token read back; `None` if it is not one.
    pub fn decode(token: &str) -> Option<Self> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        (bytes.len() > 8 && bytes.len() <= 8 + 64).then_some(Self(bytes))
    }
}
