//! The outbox: per peer, the envelopes waiting for that peer's ack, in
//! queueing order. Entries are written with the change they carry (see
//! `alerts` and `hits`) and removed only on the peer's ack.

use prost::Message;

use super::write::OutboxListener;
use super::{Store, StoreError};
use crate::ids::AgencyId;
use crate::proto::v1::{Envelope, HitNotice, ShareRecord, envelope::Payload};

/// An envelope to queue for one peer, in the same transaction as the change
/// it carries (an alert version, or a hit notice in the matching pass).
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub peer: AgencyId,
    pub payload: Payload,
    /// For the audit entry written when the peer acknowledges it: the
    /// policy rule that allowed the disclosure (empty for tombstones and
    /// notices) and what it disclosed.
    pub rule: String,
    pub disclosed: String,
}

impl OutboxItem {
    /// A hit notice: which of the peer's alerts relates to which of ours.
    pub fn notice(peer: AgencyId, notice: HitNotice) -> Self {
        Self {
            peer,
            payload: Payload::HitNotice(notice),
            rule: String::new(),
            disclosed: "hit notice: alert ids and identifier type".into(),
        }
    }
}

/// An outbox entry read back for delivery.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: u64,
    pub payload: Payload,
    pub queued_at: Option<pbjson_types::Timestamp>,
    pub rule: String,
    pub disclosed: String,
}

/// See [`Store::outbox_summary`].
#[derive(Debug, Default)]
pub struct OutboxSummary {
    pub oldest_queued_at: Option<pbjson_types::Timestamp>,
    pub pending_retractions: u64,
    pub pending_retraction_ids: Vec<String>,
}

pub(super) fn outbox_prefix(peer: &AgencyId) -> Vec<u8> {
    let mut k = peer.as_str().as_bytes().to_vec();
    k.push(0);
    k
}

fn share_key(alert: &str, peer: &AgencyId, seq: u64) -> Vec<u8> {
    let mut k = alert.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(peer.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn outbox_key(peer: &AgencyId, seq: u64) -> Vec<u8> {
    let mut k = outbox_prefix(peer);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// Installs the listener told about every outbox write from now on
    /// (once; a later one is ignored).
    pub fn set_outbox_listener(&self, listener: std::sync::Weak<dyn OutboxListener>) {
        let _ = self.outbox_listener.set(listener);
    }

    /// Outbox entries for `peer` with sequence greater than `after`, in order.
    pub fn outbox_after(
        &self,
        peer: &AgencyId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Queued>, StoreError> {
        let start = match after {
            Some(s) if s == u64::MAX => return Ok(Vec::new()),
            Some(s) => outbox_key(peer, s + 1),
            None => outbox_prefix(peer),
        };
        let prefix = outbox_prefix(peer);
        let mut out = Vec::new();
        for item in self.db.range(self.t.outbox, start..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() == limit {
                break;
            }
            let seq = u64::from_be_bytes(k[prefix.len()..].try_into().map_err(|_| {
                StoreError::corrupt(String::from_utf8_lossy(&k).into_owned(), "bad outbox key")
            })?);
            let env = Envelope::decode(v.as_slice())
                .map_err(|e| StoreError::corrupt(String::from_utf8_lossy(&k).into_owned(), e))?;
            let payload = env.payload.ok_or_else(|| {
                StoreError::corrupt(
                    String::from_utf8_lossy(&k).into_owned(),
                    "outbox entry without payload",
                )
            })?;
            out.push(Queued {
                seq,
                payload,
                queued_at: env.queued_at,
                rule: env.rule,
                disclosed: env.disclosed,
            });
        }
        Ok(out)
    }

    /// The sequence of the newest entry waiting for `peer`, if any.
    pub fn outbox_last_seq(&self, peer: &AgencyId) -> Result<Option<u64>, StoreError> {
        let prefix = outbox_prefix(peer);
        let Some((k, _)) = self
            .db
            .prefix(self.t.outbox, &prefix)
            .next_back()
            .transpose()?
        else {
            return Ok(None);
        };
        Ok(k.get(prefix.len()..)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes))
    }

    /// What is waiting for `peer`: when the oldest entry was queued, and the
    /// retractions among the entries (count, and the first `max_ids` ids).
    /// Reads the peer's whole queue: for the admin API, not the hot path.
    pub fn outbox_summary(
        &self,
        peer: &AgencyId,
        max_ids: usize,
    ) -> Result<OutboxSummary, StoreError> {
        let mut out = OutboxSummary::default();
        for item in self.db.prefix(self.t.outbox, outbox_prefix(peer)) {
            let (k, v) = item?;
            let env = Envelope::decode(v.as_slice())
                .map_err(|e| StoreError::corrupt(String::from_utf8_lossy(&k).into_owned(), e))?;
            if out.oldest_queued_at.is_none() {
                out.oldest_queued_at = env.queued_at;
            }
            if let Some(Payload::Alert(a)) = env.payload
                && a.retracted
            {
                out.pending_retractions += 1;
                if out.pending_retraction_ids.len() < max_ids {
                    out.pending_retraction_ids.push(a.id);
                }
            }
        }
        Ok(out)
    }

    /// An envelope is done with: the peer acknowledged it, or it was dropped
    /// unsent. One transaction removes it from the outbox, records what the
    /// peer got of which alert (`share`, for alert versions), and appends
    /// the audit entry. Not synced on purpose: if a crash loses it, the
    /// envelope is sent again, the peer dedups it, and this runs again.
    pub fn outbox_done(
        &self,
        peer: &AgencyId,
        seq: u64,
        share: Option<&ShareRecord>,
        event: crate::audit::Event,
    ) -> Result<(), StoreError> {
        let key = outbox_key(peer, seq);
        self.write(|w| {
            w.tx.remove(w.t.outbox, &key)?;
            if let Some(s) = share {
                w.tx.insert(
                    w.t.shares,
                    share_key(&s.alert_id, peer, seq),
                    s.encode_to_vec(),
                )?;
                if let (Some(queued), Some(acked)) = (&s.queued_at, &s.acked_at) {
                    use super::activity::Tally;
                    let acked = crate::time::system_time_lossy(acked);
                    let latency = acked
                        .duration_since(crate::time::system_time_lossy(queued))
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0);
                    w.tally(Tally::Deliveries, acked, 1)?;
                    w.tally(Tally::LatencyMsTotal, acked, latency)?;
                    w.tally(Tally::LatencyMsMax, acked, latency)?;
                }
            }
            w.append([event])?;
            Ok(())
        })
    }

    /// Every envelope of `alert` that is done with (see [`Store::outbox_done`]),
    /// per peer, in queueing order.
    pub fn shares_of(&self, alert: &str) -> Result<Vec<ShareRecord>, StoreError> {
        let mut prefix = alert.as_bytes().to_vec();
        prefix.push(0);
        self.db
            .prefix(self.t.shares, prefix)
            .map(|item| {
                let (k, v) = item?;
                ShareRecord::decode(v.as_slice())
                    .map_err(|e| StoreError::corrupt(String::from_utf8_lossy(&k).into_owned(), e))
            })
            .collect()
    }

    pub fn outbox_depth(&self, peer: &AgencyId) -> u64 {
        self.db.prefix(self.t.outbox, outbox_prefix(peer)).count() as u64
    }

    pub fn outbox_total(&self) -> Result<u64, StoreError> {
        Ok(self.db.len(self.t.outbox)?)
    }
}
