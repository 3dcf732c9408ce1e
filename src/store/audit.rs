//! The audit log's trees (format and chain rule in [`crate::audit`]).
//!
//! - `audit`: sequence (u64 BE) → chain hash (32 bytes) ‖ entry JSON.
//! - `audit_checkpoints`: sequence (u64 BE) → signed checkpoint JSON.
//! - `audit_meta`: `pruned` → where the retained log starts after a prune.
//!
//! Entries are appended inside the transaction of the work they record
//! ([`Write::append`]), so an entry is committed — and on disk — exactly when
//! its work is. The chain's head is held for the whole transaction (see
//! [`Store::write`]), which gives entries consecutive numbers and hashes.
//! Appends are not synced here: callers append before the sync that
//! acknowledges the work, or call [`Store::audit`], which waits for it.

use super::chain::{Head, PRUNED, raw_entry};
use super::engine::EngineError;
use super::{Store, StoreError, Write};
use crate::audit::query::{Filter, Found, MAX_SCAN, Page};
use crate::audit::signing::{PublicKey, SigningKey};
use crate::audit::{
    Action, Broken, ChainStart, Checkpoint, Event, GENESIS, Hash, NODE, PruneMark, RawEntry,
    Summary, hex, seal, verify,
};
use crate::time::{now_ms, parse_ms};

/// Entries removed per prune transaction, so a prune never holds up appends long.
const PRUNE_BATCH: usize = 10_000;

impl Write<'_, '_> {
    /// Appends events to the chain, in order, in this transaction. Returns
    /// the last sequence number given.
    pub(crate) fn append(
        &mut self,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<u64, EngineError> {
        for event in events {
            let action = event.action;
            let time_ms = now_ms().max(self.log.time_ms);
            let raw = seal(&self.log.hash, self.log.seq + 1, time_ms, event);
            self.tx
                .insert(self.t.audit, raw.seq.to_be_bytes(), stored(&raw))?;
            *self.log = Head {
                seq: raw.seq,
                hash: raw.hash,
                time_ms,
            };
            self.appended.push(action);
        }
        Ok(self.log.seq)
    }
}

/// Audit entries for refused handshakes per listener and second, at most;
/// a flood from the open internet must not fill the disk through the log.
pub const HANDSHAKE_ENTRIES_PER_SECOND: u32 = 20;

impl Store {
    /// What a listener does with a refused TLS handshake (the node's and
    /// the key service's alike): `count` it (their metrics), and log it as
    /// `tls.handshake` up to [`HANDSHAKE_ENTRIES_PER_SECOND`], the next
    /// entry logged saying how many were left out before it.
    pub fn refused_handshakes(
        self: &std::sync::Arc<Self>,
        listener: &'static str,
        count: impl Fn() + Send + Sync + 'static,
    ) -> crate::identity::OnRefused {
        let store = self.clone();
        let limiter = crate::ratelimit::RateLimiter::per_second(HANDSHAKE_ENTRIES_PER_SECOND);
        let left_out = std::sync::atomic::AtomicU64::new(0);
        std::sync::Arc::new(move |remote: std::net::SocketAddr, reason: String| {
            count();
            if !limiter.allow(listener) {
                left_out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            let mut event = Event::new(
                format!("unauthenticated:{remote}"),
                Action::Handshake,
                "refused",
            )
            .detail("listener", listener)
            .detail("reason", reason);
            let skipped = left_out.swap(0, std::sync::atomic::Ordering::Relaxed);
            if skipped > 0 {
                event = event.detail("left_out_before", skipped);
            }
            if let Err(e) = store.audit_append([event]) {
                tracing::error!(error = %e, "audit entry for a refused handshake could not be written");
            }
        })
    }
}

/// One page of `entries`, in the order given: the entries `filter` keeps,
/// each with the hash it chains from (`prev_of`, told every entry read and
/// whether it is kept), stopping at `size` kept, at `MAX_SCAN` read (the
/// next page starts there) or at the first entry whose time is `past` the
/// range. Returns the page and the last entry read.
fn collect_page(
    entries: impl Iterator<Item = Result<RawEntry, StoreError>>,
    filter: &Filter,
    size: usize,
    past: impl Fn(i64) -> bool,
    mut prev_of: impl FnMut(&RawEntry, bool) -> Result<Option<Hash>, StoreError>,
) -> Result<(Page, Option<u64>), StoreError> {
    let mut out = Page::default();
    let mut last_read = None;
    for (scanned, raw) in entries.enumerate() {
        let raw = raw?;
        if scanned == MAX_SCAN || out.entries.len() == size {
            out.next = Some(raw.seq);
            break;
        }
        let entry = raw
            .entry()
            .map_err(|e| StoreError::corrupt(format!("audit/{}", raw.seq), e))?;
        if parse_ms(&entry.time).is_some_and(&past) {
            break;
        }
        last_read = Some(raw.seq);
        let matched = filter.matches(&entry);
        if let Some(prev) = prev_of(&raw, matched)? {
            out.entries.push(Found { raw, entry, prev });
        }
    }
    Ok((out, last_read))
}

fn stored(raw: &RawEntry) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + raw.body.len());
    v.extend_from_slice(&raw.hash);
    v.extend_from_slice(&raw.body);
    v
}

impl Store {
    /// Appends events to the chain, in order, in a transaction of their
    /// own; durable with the next sync. Returns the last sequence number given.
    pub fn audit_append(&self, events: impl IntoIterator<Item = Event>) -> Result<u64, StoreError> {
        self.write(|w| Ok(w.append(events)?))
    }

    /// Appends entries that another copy of this node's log holds after our
    /// head, verbatim, with the checkpoints signed over them: what a restore
    /// carries over from the store it replaces, so the log keeps everything
    /// the node ever wrote. Each entry must continue the chain from the one
    /// before, starting at our head, or nothing is written. Not synced: the
    /// caller appends the entry that records the restore and waits for that.
    pub fn audit_carry(
        &self,
        entries: &[RawEntry],
        checkpoints: &[Checkpoint],
    ) -> Result<(), StoreError> {
        self.write(|w| {
            let (mut seq, mut hash) = (w.log.seq, w.log.hash);
            for e in entries {
                if e.seq != seq + 1 || crate::audit::link(&hash, &e.body) != e.hash {
                    return Err(StoreError::corrupt(
                        format!("audit/{}", e.seq),
                        format!("does not continue this log after entry {seq}"),
                    ));
                }
                w.tx.insert(w.t.audit, e.seq.to_be_bytes(), stored(e))?;
                (seq, hash) = (e.seq, e.hash);
            }
            for cp in checkpoints {
                let json = serde_json::to_vec(cp).expect("checkpoints serialize");
                w.tx.insert(w.t.audit_checkpoints, cp.seq.to_be_bytes(), json)?;
            }
            if let Some(last) = entries.last() {
                let time_ms = last
                    .entry()
                    .ok()
                    .and_then(|e| parse_ms(&e.time))
                    .unwrap_or(w.log.time_ms);
                *w.log = Head {
                    seq: last.seq,
                    hash: last.hash,
                    time_ms,
                };
            }
            Ok(())
        })
    }

    /// Appends events and waits until they are on disk.
    pub async fn audit(&self, events: impl IntoIterator<Item = Event>) -> Result<(), StoreError> {
        self.audit_append(events)?;
        self.commit.durable().await
    }

    /// The newest entry's sequence number and hash (0 and the genesis hash
    /// for an empty log).
    pub fn audit_head(&self) -> (u64, Hash) {
        let head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        (head.seq, head.hash)
    }

    /// Where the retained log starts: after the last prune, or at entry 1.
    pub fn audit_start(&self) -> Result<ChainStart, StoreError> {
        Ok(match self.db.get(self.t.audit_meta, PRUNED)? {
            Some(m) => {
                let mark: PruneMark = serde_json::from_slice(&m)
                    .map_err(|e| StoreError::corrupt("audit_meta/pruned", e))?;
                ChainStart {
                    seq: mark.through_seq + 1,
                    prev: mark.through_hash,
                    pruned: true,
                }
            }
            None => ChainStart::GENESIS,
        })
    }

    /// Stored entries from `from` on, in sequence order.
    pub fn audit_entries(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<RawEntry, StoreError>> + use<> {
        self.db
            .range(self.t.audit, from.to_be_bytes()..)
            .map(|item| {
                let (k, v) = item?;
                raw_entry(&k, &v)
            })
    }

    /// The entry at `seq` and the hash before it (for exports, which start
    /// anywhere and must say what their first entry chains from).
    pub fn audit_prev_hash(&self, seq: u64) -> Result<Hash, StoreError> {
        if seq <= 1 {
            return Ok(GENESIS);
        }
        match self.db.get(self.t.audit, (seq - 1).to_be_bytes())? {
            Some(v) => Ok(raw_entry(&(seq - 1).to_be_bytes(), &v)?.hash),
            None => Ok(self.audit_start()?.prev),
        }
    }

    /// Number of entries held.
    pub fn audit_len(&self) -> Result<u64, StoreError> {
        Ok(self.db.len(self.t.audit)?)
    }

    pub fn audit_put_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        let json = serde_json::to_vec(cp).expect("checkpoints serialize");
        self.write(|w| {
            w.tx.insert(w.t.audit_checkpoints, cp.seq.to_be_bytes(), json)
                .map_err(StoreError::from)
        })
    }

    /// Signs a checkpoint of the chain's head with `signer`, if the head
    /// moved since the last one (node and key service alike, periodically
    /// and once more over the last entry at shutdown).
    pub fn audit_sign_checkpoint(&self, signer: &SigningKey) -> Result<(), StoreError> {
        let (seq, hash) = self.audit_head();
        if seq == 0 || self.audit_last_checkpoint()? >= Some(seq) {
            return Ok(());
        }
        self.audit_put_checkpoint(&crate::audit::signing::sign_checkpoint(
            signer,
            seq,
            hash,
            now_ms(),
        ))
    }

    /// Signed checkpoints with `lo <= seq <= hi`, in order.
    pub fn audit_checkpoints(&self, lo: u64, hi: u64) -> Result<Vec<Checkpoint>, StoreError> {
        if lo > hi {
            return Ok(Vec::new());
        }
        self.db
            .range(
                self.t.audit_checkpoints,
                lo.to_be_bytes()..=hi.to_be_bytes(),
            )
            .map(|item| {
                let (k, v) = item?;
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::corrupt(format!("audit_checkpoints/{}", hex(&k)), e))
            })
            .collect()
    }

    /// The newest checkpoint, if any.
    pub fn audit_latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        match self.last(self.t.audit_checkpoints)? {
            Some((k, v)) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::corrupt(format!("audit_checkpoints/{}", hex(&k)), e)),
            None => Ok(None),
        }
    }

    /// The sequence of the newest checkpoint, if any.
    pub fn audit_last_checkpoint(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .last(self.t.audit_checkpoints)?
            .and_then(|(k, _)| k.as_slice().try_into().ok().map(u64::from_be_bytes)))
    }

    fn audit_time_at(&self, seq: u64) -> Result<Option<i64>, StoreError> {
        let Some(v) = self.db.get(self.t.audit, seq.to_be_bytes())? else {
            return Ok(None);
        };
        let raw = raw_entry(&seq.to_be_bytes(), &v)?;
        Ok(raw.entry().ok().and_then(|e| parse_ms(&e.time)))
    }

    /// The first sequence whose entry is at or after `time_ms`. Entry times
    /// never decrease along the chain, so this is a binary search of point
    /// reads, not a scan.
    pub fn audit_seq_at(&self, time_ms: i64) -> Result<u64, StoreError> {
        let mut lo = self.audit_start()?.seq;
        let mut hi = self.audit_head().0 + 1;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.audit_time_at(mid)? {
                Some(t) if t < time_ms => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    /// Removes entries older than `before_ms` (at most one batch) and records
    /// the prune as an entry in the same transaction, so the chain always
    /// says where it was cut. Returns how many entries went.
    pub fn audit_prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        let head_seq = self.audit_head().0;
        let mut doomed = Vec::new();
        let mut last_hash = None;
        for raw in self
            .audit_entries(self.audit_start()?.seq)
            .take(PRUNE_BATCH)
        {
            let raw = raw?;
            let time = raw.entry().ok().and_then(|e| parse_ms(&e.time));
            // The head always stays, however old: the chain must hold its
            // newest entry (on an idle node the whole log is old).
            if raw.seq >= head_seq || time.is_none_or(|t| t >= before_ms) {
                break;
            }
            last_hash = Some(raw.hash);
            doomed.push(raw.seq);
        }
        let (Some(&through_seq), Some(through_hash)) = (doomed.last(), last_hash) else {
            return Ok(0);
        };
        let mark = PruneMark {
            through_seq,
            through_hash,
        };
        let event = Event::new(NODE, Action::AuditPrune, "OK")
            .detail("through_seq", through_seq)
            .detail("through_hash", hex(&through_hash))
            .detail("entries", doomed.len());
        self.write(|w| {
            for seq in &doomed {
                w.tx.remove(w.t.audit, seq.to_be_bytes())?;
                w.tx.remove(w.t.audit_checkpoints, seq.to_be_bytes())?;
            }
            w.tx.insert(
                w.t.audit_meta,
                PRUNED,
                serde_json::to_vec(&mark).expect("marks serialize"),
            )?;
            w.append([event])?;
            Ok::<_, StoreError>(())
        })?;
        Ok(doomed.len() as u64)
    }

    /// Up to `size` matching entries from sequence `from` (or the filter's start
    /// time, or the start of the log), oldest first.
    pub fn audit_page(
        &self,
        filter: &Filter,
        from: Option<u64>,
        size: usize,
        with_checkpoints: bool,
    ) -> Result<Page, StoreError> {
        let start = match (from, filter.since_ms) {
            (Some(seq), _) => seq,
            (None, Some(t)) => self.audit_seq_at(t)?,
            (None, None) => self.audit_start()?.seq,
        };
        // Read in chain order, each entry's previous hash is the one read
        // just before it.
        let mut prev = self.audit_prev_hash(start)?;
        let (mut out, last_read) = collect_page(
            self.audit_entries(start),
            filter,
            size,
            |t| filter.until_ms.is_some_and(|u| t >= u),
            |raw, matched| {
                let before = std::mem::replace(&mut prev, raw.hash);
                Ok(matched.then_some(before))
            },
        )?;
        if with_checkpoints && let Some(last) = last_read {
            out.checkpoints = self.audit_checkpoints(start, last)?;
        }
        Ok(out)
    }

    /// A page of the log read backwards, newest entry first (the console's
    /// default: the latest activity is what an auditor looks for first).
    /// `from` is where a previous page stopped (that entry comes first);
    /// without it, the page starts at the last entry before `until`, or at
    /// the head. The same bounds as [`Store::audit_page`]: at most
    /// `MAX_SCAN` entries read, at most `size` returned.
    pub fn audit_page_newest_first(
        &self,
        filter: &Filter,
        from: Option<u64>,
        size: usize,
        with_checkpoints: bool,
    ) -> Result<Page, StoreError> {
        let start = match (from, filter.until_ms) {
            (Some(seq), _) => seq,
            (None, Some(t)) => self.audit_seq_at(t)?.saturating_sub(1),
            (None, None) => self.audit_head().0,
        };
        let entries = self
            .db
            .range(self.t.audit, ..=start.to_be_bytes())
            .rev()
            .map(|item| {
                let (k, v) = item?;
                raw_entry(&k, &v)
            });
        let (mut out, last_read) = collect_page(
            entries,
            filter,
            size,
            |t| filter.since_ms.is_some_and(|s| t < s),
            // Backwards, the previous entry is read next: look it up for
            // the entries shown only.
            |raw, matched| matched.then(|| self.audit_prev_hash(raw.seq)).transpose(),
        )?;
        if with_checkpoints && let Some(last) = last_read {
            out.checkpoints = self.audit_checkpoints(last, start)?;
        }
        Ok(out)
    }

    /// Verifies the log held here from its retained start (`audit verify`).
    pub fn audit_verify(&self, key: &PublicKey, anchors: &[Checkpoint]) -> Result<Summary, Broken> {
        let as_broken = |e: StoreError| Broken {
            seq: 0,
            reason: e.to_string(),
        };
        let start = self.audit_start().map_err(as_broken)?;
        let mut checkpoints = self
            .audit_checkpoints(start.seq, u64::MAX)
            .map_err(as_broken)?;
        checkpoints.extend_from_slice(anchors);
        verify(
            start,
            self.audit_entries(start.seq).map(|r| r.map_err(as_broken)),
            &checkpoints,
            key,
        )
    }
}
