//! One store write in progress ([`Write`]), what it hands out (the next
//! number of a [`Counter`]), and who is told once it commits
//! ([`OutboxListener`]).

use super::StoreError;
use super::chain::Head;
use super::engine::{Reads, Tx};
use super::trees::{Counter, Trees, be_u64};

/// One store write in progress: the transaction, the trees, and the audit
/// chain's head as this transaction advances it (installed only if it
/// commits).
pub(crate) struct Write<'w, 'tx> {
    pub(crate) tx: &'w mut Tx<'tx>,
    pub(crate) t: &'w Trees,
    pub(super) log: &'w mut Head,
    /// Actions appended, counted in the metrics once committed.
    pub(super) appended: &'w mut Vec<crate::audit::Action>,
    /// Peers that got outbox entries, told to the listener once committed.
    pub(super) queued: &'w mut Vec<crate::ids::AgencyId>,
    /// The newest alert log position written, told to watchers once committed.
    pub(super) alert_seq: &'w mut u64,
}

impl Write<'_, '_> {
    pub(super) fn alert_logged(&mut self, seq: u64) {
        *self.alert_seq = (*self.alert_seq).max(seq);
    }

    /// The next number of `counter` (the first is 1).
    pub(crate) fn next(&mut self, counter: Counter) -> Result<u64, StoreError> {
        let last = match (self.last_of(counter)?, counter) {
            (Some(last), _) => last,
            (None, Counter::HitLog) => self.last_hit_position()?,
            (None, _) => 0,
        };
        let next = last + 1;
        self.tx
            .insert(self.t.counters, counter.key(), next.to_be_bytes())?;
        Ok(next)
    }

    /// The last position in the hit log as written: a store from before
    /// reviews has no `HitLog` counter and its positions are its hit
    /// numbers. Read from the log itself, not from the `Hits` counter,
    /// which the first hit of a new store has already advanced (its log
    /// then began at 2).
    fn last_hit_position(&mut self) -> Result<u64, StoreError> {
        let last = self.tx.range::<&[u8]>(self.t.hits, ..).next_back();
        match last {
            None => Ok(0),
            Some(entry) => {
                let (k, _) = entry?;
                be_u64("hits", &k)
            }
        }
    }

    fn last_of(&mut self, counter: Counter) -> Result<Option<u64>, StoreError> {
        self.tx
            .get(self.t.counters, counter.key())?
            .map(|v| {
                v.as_slice()
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| {
                        StoreError::corrupt(
                            format!("counters/{}", String::from_utf8_lossy(counter.key())),
                            "not a number",
                        )
                    })
            })
            .transpose()
    }
}

/// Told, after each commit that queued envelopes, which peers got them: the
/// delivery workers implement it, so every outbox write — a local submit, a
/// hit notice queued when a peer's alert arrives, a reshare, matching redone
/// at start — wakes its peer's worker, from this one place.
pub trait OutboxListener: Send + Sync {
    fn queued(&self, peers: &[crate::ids::AgencyId]);
}
