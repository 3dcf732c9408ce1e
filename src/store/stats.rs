//! What a node keeps of the federated statistics (tree `stats`): per
//! release, the record of the parts it plays (`StatsReleaseRecord`); as an
//! aggregator, the report shares members sent it and, as the helper, its
//! verifier messages until the commit. Keys:
//! - `r` 0 table 0 period 0 round (u32 BE) → `StatsReleaseRecord`
//! - `c` 0 table 0 period 0 round 0 member 0 chunk (u32 BE) → `StatsReports`
//! - `n` 0 table 0 period 0 round 0 member → chunks held, chunks the
//!   member sends, reports held (u32 BE each; stores of the 0.5 previews
//!   lack the third): kept with each chunk, so asking whose reports are
//!   whole, or whether a member is over its quota, reads no share
//! - `p` 0 table 0 period 0 round 0 batch (u32 BE) → `StatsPrepared`
//!
//! No value here holds a case: shares are random alone, sums are noisy.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;

use super::engine::Reads;
use super::{OutboxItem, Store, StoreError, Write, index};
use crate::audit::Event;
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::{
    StatsPrepared, StatsReleaseRecord, StatsReleaseRef, StatsReport, StatsReports,
};

fn release_part(r: &StatsReleaseRef) -> Vec<u8> {
    let mut k = format!("{}\0{}\0", r.table, r.period).into_bytes();
    k.extend_from_slice(&r.round.to_be_bytes());
    k
}

fn key(kind: u8, r: &StatsReleaseRef) -> Vec<u8> {
    let mut k = vec![kind, 0];
    k.extend_from_slice(&release_part(r));
    k
}

fn chunk_key(r: &StatsReleaseRef, member: &AgencyId, chunk: u32) -> Vec<u8> {
    let mut k = key(b'c', r);
    k.push(0);
    k.extend_from_slice(member.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

fn count_key(r: &StatsReleaseRef, member: &AgencyId) -> Vec<u8> {
    let mut k = key(b'n', r);
    k.push(0);
    k.extend_from_slice(member.as_str().as_bytes());
    k
}

/// What a count value holds of one member's shares of one release.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Held {
    chunks: u32,
    /// The chunks the member said it sends (every chunk says it).
    sent: u32,
    reports: u32,
}

impl Held {
    fn read(v: &[u8]) -> Result<Self, StoreError> {
        let word = |i: usize| u32::from_be_bytes(v[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        match v.len() {
            8 => Ok(Self {
                chunks: word(0),
                sent: word(1),
                reports: 0,
            }),
            12 => Ok(Self {
                chunks: word(0),
                sent: word(1),
                reports: word(2),
            }),
            _ => Err(StoreError::corrupt("stats/count", "not three counts")),
        }
    }

    fn bytes(self) -> Vec<u8> {
        [self.chunks, self.sent, self.reports]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect()
    }
}

/// What became of a chunk of report shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    Stored,
    Duplicate,
    /// The chunk names another total than the member's earlier chunks.
    ChunksChanged {
        said: u32,
    },
    /// The member's reports would pass the quota it was given.
    OverQuota {
        held: u32,
    },
}

/// Keeps one chunk of `member`'s shares unless it is held already, or it
/// breaks the count the member's earlier chunks gave, or it would take the
/// member past `most_reports`; counts it.
fn keep_chunk(
    w: &mut Write<'_, '_>,
    r: &StatsReleaseRef,
    member: &AgencyId,
    chunk: &StatsReports,
    most_reports: usize,
) -> Result<ChunkOutcome, StoreError> {
    let k = chunk_key(r, member, chunk.chunk);
    if w.tx.get(w.t.stats, &k)?.is_some() {
        return Ok(ChunkOutcome::Duplicate);
    }
    let ck = count_key(r, member);
    let held = match w.tx.get(w.t.stats, &ck)? {
        Some(v) => Held::read(&v)?,
        None => Held::default(),
    };
    if held.sent != 0 && held.sent != chunk.chunks {
        return Ok(ChunkOutcome::ChunksChanged { said: held.sent });
    }
    let reports = held.reports as usize + chunk.reports.len();
    if reports > most_reports {
        return Ok(ChunkOutcome::OverQuota { held: held.reports });
    }
    w.tx.insert(w.t.stats, k, chunk.encode_to_vec())?;
    let now = Held {
        chunks: held.chunks + 1,
        sent: chunk.chunks,
        reports: u32::try_from(reports).unwrap_or(u32::MAX),
    };
    w.tx.insert(w.t.stats, ck, now.bytes())?;
    Ok(ChunkOutcome::Stored)
}

fn decode<M: Message + Default>(what: &str, v: &[u8]) -> Result<M, StoreError> {
    M::decode(v).map_err(|e| StoreError::corrupt(format!("stats/{what}"), e))
}

/// What [`Store::stats_update`] is to write: the new record, envelopes to
/// queue with it, and the audit entries that record the change.
#[derive(Default)]
pub struct StatsChange {
    pub record: StatsReleaseRecord,
    pub items: Vec<OutboxItem>,
    pub events: Vec<Event>,
    /// Report shares an aggregator keeps of its own, as `member`'s: what
    /// it would otherwise send itself.
    pub own_chunks: Vec<(AgencyId, StatsReports)>,
}

impl Store {
    /// The record of release `r`, if this node has one.
    pub fn stats_release(
        &self,
        r: &StatsReleaseRef,
    ) -> Result<Option<StatsReleaseRecord>, StoreError> {
        self.db
            .get(self.t.stats, key(b'r', r))?
            .map(|v| decode("release", &v))
            .transpose()
    }

    /// Every release record, by table, period and round.
    pub fn stats_releases(&self) -> Result<Vec<StatsReleaseRecord>, StoreError> {
        self.db
            .prefix(self.t.stats, [b'r', 0])
            .map(|item| decode("release", &item?.1))
            .collect()
    }

    /// Changes the record of release `r` as `change` decides from the one
    /// held (`None`: leave it), queueing its envelopes and appending its
    /// audit entries in the same transaction; durable when this returns.
    /// Returns whether it wrote.
    pub async fn stats_update(
        &self,
        r: &StatsReleaseRef,
        change: impl FnOnce(Option<StatsReleaseRecord>) -> Option<StatsChange>,
    ) -> Result<bool, StoreError> {
        let k = key(b'r', r);
        let wrote = self.write(|w| {
            let held =
                w.tx.get(w.t.stats, &k)?
                    .map(|v| decode("release", &v))
                    .transpose()?;
            let Some(c) = change(held) else {
                return Ok::<_, StoreError>(false);
            };
            w.tx.insert(w.t.stats, &k, c.record.encode_to_vec())?;
            for (member, chunk) in &c.own_chunks {
                // Its own reports: no quota but the contributor's.
                keep_chunk(w, r, member, chunk, usize::MAX)?;
            }
            for item in &c.items {
                index::queue(w, item)?;
            }
            w.append(c.events)?;
            Ok(true)
        })?;
        if wrote {
            self.commit.durable().await?;
        }
        Ok(wrote)
    }

    /// Keeps one chunk of `member`'s report shares, with `event`, unless
    /// it is held already (a resend), names another number of chunks than
    /// the member's earlier ones, or takes the member past `most_reports`
    /// for the release. Durable when this returns.
    pub async fn stats_put_chunk(
        &self,
        member: &AgencyId,
        chunk: &StatsReports,
        most_reports: usize,
        event: Event,
    ) -> Result<ChunkOutcome, StoreError> {
        let r = chunk.release.clone().unwrap_or_default();
        let outcome = self.write(|w| {
            let outcome = keep_chunk(w, &r, member, chunk, most_reports)?;
            if outcome == ChunkOutcome::Stored {
                w.append([event])?;
            }
            Ok::<_, StoreError>(outcome)
        })?;
        if outcome == ChunkOutcome::Stored {
            self.commit.durable().await?;
        }
        Ok(outcome)
    }

    /// Per member, how many chunks of release `r` this aggregator holds and
    /// how many the member said it sends.
    pub fn stats_chunk_counts(
        &self,
        r: &StatsReleaseRef,
    ) -> Result<BTreeMap<AgencyId, (u32, u32)>, StoreError> {
        let prefix = key(b'n', r);
        let mut out = BTreeMap::new();
        for item in self.db.prefix(self.t.stats, &prefix) {
            let (k, v) = item?;
            let member = k
                .get(prefix.len() + 1..)
                .and_then(|m| std::str::from_utf8(m).ok())
                .and_then(|m| AgencyId::new(m).ok())
                .ok_or_else(|| StoreError::corrupt("stats/count", "a key naming no member"))?;
            let held = Held::read(&v)?;
            out.insert(member, (held.chunks, held.sent));
        }
        Ok(out)
    }

    /// The report shares of `member` for release `r`, in the order sent.
    pub fn stats_reports(
        &self,
        r: &StatsReleaseRef,
        member: &AgencyId,
    ) -> Result<Vec<StatsReport>, StoreError> {
        let mut prefix = key(b'c', r);
        prefix.push(0);
        prefix.extend_from_slice(member.as_str().as_bytes());
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.db.prefix(self.t.stats, &prefix) {
            let chunk: StatsReports = decode("chunk", &item?.1)?;
            out.extend(chunk.reports);
        }
        Ok(out)
    }

    /// Keeps the helper's verifier messages of batch `batch` of release `r`
    /// (replacing a batch the leader sent again). Durable when this returns.
    pub async fn stats_put_prepared(
        &self,
        r: &StatsReleaseRef,
        batch: u32,
        prepared: &StatsPrepared,
    ) -> Result<(), StoreError> {
        let mut k = key(b'p', r);
        k.extend_from_slice(&batch.to_be_bytes());
        self.write(|w| {
            w.tx.insert(w.t.stats, &k, prepared.encode_to_vec())?;
            Ok::<_, StoreError>(())
        })?;
        self.commit.durable().await?;
        Ok(())
    }

    /// Other agencies' alerts `own` is linked to by a hit that counts for
    /// the statistics: exact or likely, or possible and confirmed by an
    /// analyst on either side; never a pair either side reviewed as a
    /// false positive.
    pub fn stats_links(&self, own: &AlertId) -> Result<Vec<AlertId>, StoreError> {
        let (links, _) = self.links(own, own.origin())?;
        let linked: BTreeSet<AlertId> = links
            .into_iter()
            .filter(|l| l.counts())
            .map(|l| l.other)
            .collect();
        Ok(linked.into_iter().collect())
    }

    /// The helper's verifier messages of release `r`, batch by batch.
    pub fn stats_prepared(&self, r: &StatsReleaseRef) -> Result<Vec<StatsPrepared>, StoreError> {
        self.db
            .prefix(self.t.stats, key(b'p', r))
            .map(|item| decode("prepared", &item?.1))
            .collect()
    }
}
