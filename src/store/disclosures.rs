//! Disclosure requests as each node keeps them: one `DisclosureCase` per
//! request (sent or received), every change to it a new entry in the
//! request log that `WatchDisclosureRequests` follows, and an index in creation order
//! for listing newest first. The request itself travels in the outbox, in
//! the transaction that records it.

use prost::Message;

use super::engine::Reads;
use super::{Counter, OutboxItem, Store, StoreError, TxError, Write, index};
use crate::audit::Event;
use crate::ids::{ReleaseId, RequestId};
use crate::proto::v1::{DisclosureCase, ReleaseRecord};

/// What one step of a request writes besides the case itself: messages to
/// the other agency, releases (sent or received), audit entries.
#[derive(Debug, Default)]
pub struct Step {
    pub items: Vec<OutboxItem>,
    pub releases: Vec<ReleaseRecord>,
    pub events: Vec<Event>,
}

fn release_retention_key(r: &ReleaseRecord) -> Option<Vec<u8>> {
    let rel = r.release.as_ref()?;
    let until = rel.retention_until?;
    let mut k = (until.seconds.max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(rel.id.as_bytes());
    Some(k)
}

/// Writes a release record (new or changed) with its indexes: creation
/// order for a new one, the retention deadline while it holds content.
fn put_release(
    w: &mut Write<'_, '_>,
    record: &ReleaseRecord,
    previous: Option<&ReleaseRecord>,
) -> Result<(), StoreError> {
    let id = record
        .release
        .as_ref()
        .map(|r| r.id.clone())
        .unwrap_or_default();
    if previous.is_none() {
        let position = w.next(Counter::Disclosures)?;
        w.tx.insert(w.t.release_order, position.to_be_bytes(), id.as_bytes())?;
    }
    if let Some(k) = previous.and_then(release_retention_key) {
        w.tx.remove(w.t.release_retention, k)?;
    }
    if !record.purged
        && let Some(k) = release_retention_key(record)
    {
        w.tx.insert(w.t.release_retention, k, [])?;
    }
    if record.purged {
        super::vault::destroy_data_key(w, "releases", id.as_bytes())?;
    }
    w.tx.insert(w.t.releases, id.as_bytes(), record.encode_to_vec())?;
    Ok(())
}

fn decode_release(key: &[u8], v: &[u8]) -> Result<ReleaseRecord, StoreError> {
    ReleaseRecord::decode(v)
        .map_err(|e| StoreError::corrupt(format!("release {}", String::from_utf8_lossy(key)), e))
}

pub(super) fn decode_case(key: &[u8], v: &[u8]) -> Result<DisclosureCase, StoreError> {
    DisclosureCase::decode(v)
        .map_err(|e| StoreError::corrupt(format!("disclosure {}", String::from_utf8_lossy(key)), e))
}

/// Writes `case` as it stands now: under its id, and as the next entry of
/// the request log (setting its `sequence`); a `new` case also enters the
/// creation-order index.
pub(super) fn record(
    w: &mut Write<'_, '_>,
    case: &mut DisclosureCase,
    new: bool,
) -> Result<(), StoreError> {
    let id = case
        .request
        .as_ref()
        .map(|r| r.id.clone())
        .ok_or_else(|| StoreError::corrupt("disclosure", "without request"))?;
    let position = w.next(Counter::Disclosures)?;
    case.sequence = position;
    let bytes = case.encode_to_vec();
    w.tx.insert(w.t.disclosures, id.as_bytes(), &bytes)?;
    w.tx.insert(w.t.disclosure_log, position.to_be_bytes(), &bytes)?;
    if new {
        w.tx.insert(w.t.disclosure_order, position.to_be_bytes(), id.as_bytes())?;
    }
    Ok(())
}

impl Store {
    /// Records a request this node sends, queues it for the holder and
    /// appends `events(case)`, in one transaction; durable when this returns.
    pub async fn open_request(
        &self,
        mut case: DisclosureCase,
        item: OutboxItem,
        events: impl FnOnce(&DisclosureCase) -> Vec<Event>,
    ) -> Result<DisclosureCase, StoreError> {
        self.write(|w| {
            record(w, &mut case, true)?;
            index::queue(w, &item)?;
            w.append(events(&case))?;
            Ok::<_, StoreError>(())
        })?;
        self.commit.durable().await?;
        self.publish_disclosure(case.sequence);
        Ok(case)
    }

    /// Records a request received from a peer, with `event("stored")` and
    /// `items` (an automatic refusal) queued; `None` (and
    /// `event("duplicate")`) when its id is held already (a resend).
    /// Durable when this returns.
    pub async fn receive_request(
        &self,
        mut case: DisclosureCase,
        items: Vec<OutboxItem>,
        event: impl Fn(&'static str) -> Event,
    ) -> Result<Option<DisclosureCase>, StoreError> {
        let id = case
            .request
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_default();
        let stored = self.write(|w| {
            if w.tx.get(w.t.disclosures, id.as_bytes())?.is_some() {
                w.append([event("duplicate")])?;
                return Ok::<_, StoreError>(false);
            }
            record(w, &mut case, true)?;
            for item in &items {
                index::queue(w, item)?;
            }
            w.append([event("stored")])?;
            Ok(true)
        })?;
        self.commit.durable().await?;
        if stored {
            self.publish_disclosure(case.sequence);
        }
        Ok(stored.then_some(case))
    }

    /// Changes the case `id` with `change` (which returns false to leave it
    /// as it is) as a new entry of the request log. Not
    /// synced: for facts that are recorded again if lost (a delivery ack).
    pub fn update_request(
        &self,
        id: &RequestId,
        change: impl FnOnce(&mut DisclosureCase) -> bool,
    ) -> Result<Option<DisclosureCase>, StoreError> {
        let id = id.to_string();
        let case = self.write(|w| {
            let Some(bytes) = w.tx.get(w.t.disclosures, id.as_bytes())? else {
                return Ok::<_, StoreError>(None);
            };
            let mut case = decode_case(id.as_bytes(), &bytes)?;
            if !change(&mut case) {
                return Ok(None);
            }
            record(w, &mut case, false)?;
            Ok(Some(case))
        })?;
        if let Some(c) = &case {
            self.publish_disclosure(c.sequence);
        }
        Ok(case)
    }

    /// One step of request `id`, in one transaction, durable when this
    /// returns: `step` sees the case as it stands (and the release records
    /// it names, by id) and changes it, or refuses with its own error (then
    /// nothing is written). `Ok(None)`: no such request.
    pub async fn step_request<E>(
        &self,
        id: &RequestId,
        step: impl FnOnce(
            &mut DisclosureCase,
            &dyn Fn(&ReleaseId) -> Option<ReleaseRecord>,
        ) -> Result<Step, E>,
    ) -> Result<Result<Option<DisclosureCase>, E>, StoreError> {
        let id = id.to_string();
        let result = self.write(|w| {
            let Some(bytes) = w.tx.get(w.t.disclosures, id.as_bytes())? else {
                return Ok(None);
            };
            let mut case = decode_case(id.as_bytes(), &bytes)?;
            let held = {
                let tx = &*w.tx;
                let t = w.t;
                move |rid: &ReleaseId| {
                    let rid = rid.to_string();
                    tx.get(t.releases, rid.as_bytes())
                        .ok()
                        .flatten()
                        .and_then(|v| decode_release(rid.as_bytes(), &v).ok())
                }
            };
            let done = step(&mut case, &held).map_err(TxError::Rejected)?;
            let previous: Vec<Option<ReleaseRecord>> = done
                .releases
                .iter()
                .map(|r| {
                    r.release
                        .as_ref()
                        .and_then(|r| r.id.parse::<ReleaseId>().ok())
                        .and_then(|id| held(&id))
                })
                .collect();
            record(w, &mut case, false)?;
            for (r, prev) in done.releases.iter().zip(previous) {
                put_release(w, r, prev.as_ref())?;
            }
            for item in &done.items {
                index::queue(w, item)?;
            }
            w.append(done.events)?;
            Ok::<_, TxError<E>>(Some(case))
        });
        match result {
            Ok(case) => {
                self.commit.durable().await?;
                if let Some(c) = &case {
                    self.publish_disclosure(c.sequence);
                }
                Ok(Ok(case))
            }
            Err(TxError::Rejected(e)) => Ok(Err(e)),
            Err(TxError::Store(e)) => Err(e),
        }
    }

    /// Release `id` as this node keeps it.
    pub fn release(&self, id: &ReleaseId) -> Result<Option<ReleaseRecord>, StoreError> {
        let id = id.to_string();
        self.db
            .get(self.t.releases, id.as_bytes())?
            .map(|v| decode_release(id.as_bytes(), &v))
            .transpose()
    }

    /// Releases newest first, created before position `before`, that
    /// `keep` accepts, at most `limit`; with where to continue.
    pub fn releases_page(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&ReleaseRecord) -> bool,
    ) -> Result<(Vec<ReleaseRecord>, Option<u64>), StoreError> {
        let snapshot = self.db.snapshot();
        let end = before.unwrap_or(u64::MAX).to_be_bytes();
        let mut out = Vec::new();
        for item in snapshot.range(self.t.release_order, ..end).rev() {
            let (k, id) = item?;
            if out.len() == limit {
                return Ok((out, Some(super::trees::be_u64("release_order", &k)? + 1)));
            }
            if let Some(v) = snapshot.get(self.t.releases, &id)?
                && let r = decode_release(&id, &v)?
                && keep(&r)
            {
                out.push(r);
            }
        }
        Ok((out, None))
    }

    /// Ids of releases holding content whose retention deadline (unix
    /// seconds) is at or before `now_secs`, at most `limit`.
    pub fn releases_due(&self, now_secs: u64, limit: usize) -> Result<Vec<ReleaseId>, StoreError> {
        let mut end = now_secs.saturating_add(1).to_be_bytes().to_vec();
        end.push(0);
        self.db
            .range(self.t.release_retention, ..end)
            .take(limit)
            .map(|item| {
                let (k, _) = item?;
                let id = String::from_utf8_lossy(k.get(8..).unwrap_or_default()).into_owned();
                id.parse::<ReleaseId>()
                    .map_err(|e| StoreError::corrupt(format!("release_retention/{id}"), e))
            })
            .collect()
    }

    /// The request `id` as this node keeps it.
    pub fn disclosure(&self, id: &RequestId) -> Result<Option<DisclosureCase>, StoreError> {
        let id = id.to_string();
        self.db
            .get(self.t.disclosures, id.as_bytes())?
            .map(|v| decode_case(id.as_bytes(), &v))
            .transpose()
    }

    /// Requests newest first, created before position `before` (all when
    /// `None`), that `keep` accepts, at most `limit`; with the position to
    /// continue before, when there may be more.
    pub fn disclosures_page(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&DisclosureCase) -> bool,
    ) -> Result<(Vec<DisclosureCase>, Option<u64>), StoreError> {
        let snapshot = self.db.snapshot();
        let end = before.unwrap_or(u64::MAX).to_be_bytes();
        let mut out = Vec::new();
        for item in snapshot.range(self.t.disclosure_order, ..end).rev() {
            let (k, id) = item?;
            if out.len() == limit {
                return Ok((out, Some(super::trees::be_u64("disclosure_order", &k)? + 1)));
            }
            if let Some(v) = snapshot.get(self.t.disclosures, &id)? {
                let case = decode_case(&id, &v)?;
                if keep(&case) {
                    out.push(case);
                }
            }
        }
        Ok((out, None))
    }

    /// Every request this node keeps, in no particular order (statistics,
    /// and the open and overdue counts of metrics and status).
    pub fn disclosure_cases(&self) -> Result<Vec<DisclosureCase>, StoreError> {
        self.db
            .range::<&[u8]>(self.t.disclosures, ..)
            .map(|item| {
                let (k, v) = item?;
                decode_case(&k, &v)
            })
            .collect()
    }

    /// Request log entries after position `after`, oldest first, at most `limit`.
    pub fn disclosure_log_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DisclosureCase>, StoreError> {
        self.db
            .range(
                self.t.disclosure_log,
                after.saturating_add(1).to_be_bytes()..,
            )
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                decode_case(&k, &v)
            })
            .collect()
    }

    /// The latest request log position, updated after each change.
    pub fn watch_disclosures(&self) -> tokio::sync::watch::Receiver<u64> {
        self.disclosure_seq.subscribe()
    }

    pub(super) fn publish_disclosure(&self, position: u64) {
        self.disclosure_seq.send_if_modified(|cur| {
            let changed = position > *cur;
            *cur = (*cur).max(position);
            changed
        });
    }
}
