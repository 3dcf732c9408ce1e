//! Checking a chain: from the store of a stopped node, a backup, or an export.
//!
//! The first problem found is reported with the sequence number of the entry
//! it is at, so an auditor knows where to look: an edited entry no longer
//! matches its hash, a deleted one leaves a gap, a moved one sits under a
//! number its body contradicts, a consistently rewritten stretch disagrees
//! with a signed checkpoint, and a cut tail leaves a checkpoint pointing past
//! the end.

use std::collections::BTreeMap;

use super::signing::PublicKey;
use super::{Action, Checkpoint, Hash, RawEntry, hex};
use crate::time::parse_ms;

/// Where checking begins.
#[derive(Debug, Clone, Copy)]
pub struct ChainStart {
    /// The first sequence number expected.
    pub seq: u64,
    /// The hash it chains from.
    pub prev: Hash,
    /// The store says entries before `seq` were pruned: the chain must then
    /// record that prune (an `audit.prune` entry naming `seq - 1` and `prev`),
    /// or the missing head was cut without one.
    pub pruned: bool,
}

impl ChainStart {
    pub const GENESIS: ChainStart = ChainStart {
        seq: 1,
        prev: super::GENESIS,
        pruned: false,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub first: u64,
    pub last: u64,
    pub entries: u64,
    pub checkpoints: usize,
    /// The newest checkpoint, if any: entries after it are not yet signed.
    pub last_signed: Option<u64>,
    pub head: Hash,
}

impl Summary {
    pub fn unsigned_tail(&self) -> u64 {
        self.last - self.last_signed.unwrap_or(self.first.saturating_sub(1))
    }
}

/// The first bad entry and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log broken at entry {seq}: {reason}")]
pub struct Broken {
    pub seq: u64,
    pub reason: String,
}

fn broken(seq: u64, reason: impl Into<String>) -> Broken {
    Broken {
        seq,
        reason: reason.into(),
    }
}

/// The signed checkpoints from `start` on, by position, each signature
/// checked with the node's key.
fn verified_checkpoints<'c>(
    start: &ChainStart,
    checkpoints: &'c [Checkpoint],
    key: &PublicKey,
) -> Result<BTreeMap<u64, &'c Checkpoint>, Broken> {
    let mut signed = BTreeMap::new();
    for cp in checkpoints.iter().filter(|cp| cp.seq >= start.seq) {
        let message = Checkpoint::message(cp.seq, &cp.hash, &cp.time);
        if !super::signing::verify_hex(key, &message, &cp.signature) {
            return Err(broken(
                cp.seq,
                "the checkpoint signed at this entry has a signature that does not verify with the node's key",
            ));
        }
        signed.insert(cp.seq, cp);
    }
    Ok(signed)
}

/// The entry stored at `raw.seq`, which must be the one `expected` next
/// and say so itself.
fn in_place(raw: &RawEntry, expected: u64) -> Result<super::Entry, Broken> {
    if raw.seq > expected {
        return Err(broken(
            expected,
            format!(
                "entry is missing (deleted): the next stored entry is {}",
                raw.seq
            ),
        ));
    }
    if raw.seq < expected {
        return Err(broken(raw.seq, "entry is out of order"));
    }
    let entry = raw
        .entry()
        .map_err(|e| broken(raw.seq, format!("entry is not a valid audit entry: {e}")))?;
    if entry.seq != raw.seq {
        return Err(broken(
            raw.seq,
            format!(
                "the entry stored here says it is entry {}: entries were moved",
                entry.seq
            ),
        ));
    }
    Ok(entry)
}

/// The entry's chain hash, which must be the one stored with it.
fn linked(raw: &RawEntry, prev: &Hash, start: &ChainStart) -> Result<Hash, Broken> {
    let computed = super::link(prev, &raw.body);
    if computed == raw.hash {
        return Ok(computed);
    }
    let reason = if raw.seq == start.seq {
        "content does not match its hash (edited)".to_string()
    } else {
        format!(
            "content does not match its hash: this entry was edited, or entry {} and its hash were rewritten",
            raw.seq - 1
        )
    };
    Err(broken(raw.seq, reason))
}

/// Checks `entries` (in stored order) against `start`, the chain rule, entry
/// times, and the signed `checkpoints`.
pub fn verify(
    start: ChainStart,
    entries: impl IntoIterator<Item = Result<RawEntry, Broken>>,
    checkpoints: &[Checkpoint],
    key: &PublicKey,
) -> Result<Summary, Broken> {
    let signed = verified_checkpoints(&start, checkpoints, key)?;
    let mut expected = start.seq;
    let mut prev = start.prev;
    let mut prev_time = i64::MIN;
    let mut last_good_checkpoint: Option<u64> = None;
    let mut prune_recorded = !start.pruned;
    let mut count = 0u64;
    for raw in entries {
        // A read error without a position is at the entry expected next.
        let raw = raw.map_err(|mut b| {
            if b.seq == 0 {
                b.seq = expected;
            }
            b
        })?;
        let entry = in_place(&raw, expected)?;
        let computed = linked(&raw, &prev, &start)?;
        let time = parse_ms(&entry.time)
            .ok_or_else(|| broken(raw.seq, format!("time `{}` is not RFC 3339", entry.time)))?;
        if time < prev_time {
            return Err(broken(
                raw.seq,
                "time is earlier than the previous entry's: entries were reordered",
            ));
        }
        if let Some(cp) = signed.get(&raw.seq) {
            if cp.hash != computed {
                let since =
                    last_good_checkpoint.map_or("the start".to_string(), |s| format!("entry {s}"));
                return Err(broken(
                    raw.seq,
                    format!(
                        "chain does not match the checkpoint signed at this entry: entries after {since} up to here were rewritten"
                    ),
                ));
            }
            last_good_checkpoint = Some(raw.seq);
        }
        if start.pruned && entry.event.action == Action::AuditPrune {
            let through = entry.event.detail.get("through_seq").map(String::as_str);
            let hash = entry.event.detail.get("through_hash").map(String::as_str);
            prune_recorded = through == Some((start.seq - 1).to_string().as_str())
                && hash == Some(hex(&start.prev).as_str());
        }
        prev = computed;
        prev_time = time;
        expected += 1;
        count += 1;
    }
    let last = expected - 1;
    if let Some((&cp_seq, _)) = signed.range(expected..).next() {
        return Err(broken(
            expected,
            format!(
                "the log ends at entry {last} but a checkpoint was signed at entry {cp_seq}: entries {expected} to {cp_seq} were removed (truncated)"
            ),
        ));
    }
    if !prune_recorded {
        return Err(broken(
            start.seq,
            format!(
                "entries before {} are gone but the chain does not record pruning them: the head of the log was cut",
                start.seq
            ),
        ));
    }
    Ok(Summary {
        first: start.seq,
        last,
        entries: count,
        checkpoints: signed.len(),
        last_signed: signed.keys().next_back().copied(),
        head: prev,
    })
}
