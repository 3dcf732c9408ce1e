//! The links between alerts this node knows of, both ways round. Hits are
//! keyed by our own alert first (`hit_keys`); `hit_others` keys them by the
//! other agency's alert (other ‖ 0 ‖ own → ()), written with every new hit
//! and backfilled once at open for a store from before it. The network
//! view and the statistics' one-victim rule read links through here.

use super::engine::Reads;
use super::index::{latest_entry, pair_key, reverse_key};
use super::trees::be_u64;
use super::{Store, StoreError};
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::{Hit, HitReview, HitVerdict, MatchStrength};

/// `settings` key marking `hit_others` complete.
const BACKFILLED: &[u8] = b"hit_others";
/// Hit keys copied per backfill transaction.
const BATCH: usize = 10_000;
/// Links of one alert read at most: a hotline number shared by thousands
/// of alerts must not make one read unbounded.
pub const MAX_LINKS: usize = 1_000;

/// One hit between an alert and another, as the network sees it.
#[derive(Debug, Clone)]
pub struct Link {
    pub other: AlertId,
    /// The identifier type (`IdentifierType`).
    pub kind: i32,
    /// `MatchStrength`.
    pub strength: i32,
    /// Our agency's and the other agency's latest verdicts on the pair.
    pub verdicts: [Option<i32>; 2],
}

impl Link {
    fn of(hit: &Hit, other: AlertId) -> Self {
        let verdict = |r: &Option<HitReview>| r.as_ref().map(|r| r.verdict);
        Self {
            other,
            kind: hit.r#type,
            strength: hit.strength,
            verdicts: [verdict(&hit.our_review), verdict(&hit.their_review)],
        }
    }

    /// Whether it links two cases of one person: exact or likely, or
    /// possible and confirmed by an analyst on either side; never a pair
    /// either side reviewed as a false positive.
    pub fn counts(&self) -> bool {
        if self
            .verdicts
            .contains(&Some(HitVerdict::FalsePositive as i32))
        {
            return false;
        }
        self.strength != MatchStrength::Possible as i32 || self.confirmed()
    }

    /// Whether an analyst confirmed it, here or there.
    pub fn confirmed(&self) -> bool {
        self.verdicts.contains(&Some(HitVerdict::Confirmed as i32))
    }
}

impl Store {
    /// The hits linking alert `id` (ours or another agency's) with others,
    /// at most [`MAX_LINKS`] (and whether there were more).
    pub fn links(&self, id: &AlertId, own: &AgencyId) -> Result<(Vec<Link>, bool), StoreError> {
        let snapshot = self.db.snapshot();
        let mut out = Vec::new();
        let mut more = false;
        let mut add = |hit: Hit, other: AlertId| {
            if out.len() == MAX_LINKS {
                more = true;
                return false;
            }
            out.push(Link::of(&hit, other));
            true
        };
        if id.origin() == own {
            for item in snapshot.prefix(self.t.hit_keys, format!("{id}\0")) {
                let number = be_u64("hit_keys", &item?.1)?;
                if let Some(hit) = latest_entry(&snapshot, &self.t, number)?
                    && let Ok(other) = hit.other_alert_id.parse()
                    && !add(hit, other)
                {
                    break;
                }
            }
        } else {
            'owns: for item in snapshot.prefix(self.t.hit_others, format!("{id}\0")) {
                let (k, _) = item?;
                let own_id = String::from_utf8_lossy(&k[id.to_string().len() + 1..]).into_owned();
                let Ok(own_alert) = own_id.parse::<AlertId>() else {
                    continue;
                };
                for item in snapshot.prefix(self.t.hit_keys, pair_key(&own_id, &id.to_string())) {
                    let number = be_u64("hit_keys", &item?.1)?;
                    if let Some(hit) = latest_entry(&snapshot, &self.t, number)?
                        && !add(hit, own_alert.clone())
                    {
                        break 'owns;
                    }
                }
            }
        }
        Ok((out, more))
    }

    /// Gives a store from before `hit_others` its entries, once.
    pub(super) fn backfill_hit_others(&self) -> Result<(), StoreError> {
        if self.db.get(self.t.settings, BACKFILLED)?.is_some() {
            return Ok(());
        }
        let mut after: Option<Vec<u8>> = None;
        loop {
            let range = match &after {
                Some(a) => self.db.range(
                    self.t.hit_keys,
                    (
                        std::ops::Bound::Excluded(a.clone()),
                        std::ops::Bound::Unbounded,
                    ),
                ),
                None => self.db.range::<&[u8]>(self.t.hit_keys, ..),
            };
            let batch: Vec<Vec<u8>> = range
                .take(BATCH)
                .map(|item| item.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            let Some(last) = batch.last() else { break };
            after = Some(last.clone());
            self.write(|w| {
                for k in &batch {
                    let text = String::from_utf8_lossy(k);
                    let mut parts = text.split('\0');
                    if let (Some(own), Some(other)) = (parts.next(), parts.next()) {
                        w.tx.insert(w.t.hit_others, reverse_key(other, own), [])?;
                    }
                }
                Ok::<_, StoreError>(())
            })?;
        }
        self.write(|w| w.tx.insert(w.t.settings, BACKFILLED, b"1"))?;
        Ok(())
    }
}
