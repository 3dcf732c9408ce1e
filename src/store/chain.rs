//! The audit chain's head as the store holds it between writes: loaded at
//! open from the last entry (or the prune mark), advanced by each write's
//! appends (`Write::append`, in `audit`).

use super::StoreError;
use super::engine::Db;
use super::trees::Trees;
use crate::audit::{GENESIS, Hash, PruneMark, RawEntry, hex};
use crate::time::parse_ms;

/// `audit_meta` key of the prune mark: where the retained log starts.
pub(super) const PRUNED: &[u8] = b"pruned";

/// The newest entry of the chain.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(super) seq: u64,
    pub(super) hash: Hash,
    pub(super) time_ms: i64,
}

impl Head {
    /// The head as stored: the last entry, else the prune mark, else genesis.
    pub(super) fn load(db: &Db, t: &Trees) -> Result<Self, StoreError> {
        Ok(
            match db.range::<&[u8]>(t.audit, ..).next_back().transpose()? {
                Some((k, v)) => {
                    let raw = raw_entry(&k, &v)?;
                    let time_ms = raw
                        .entry()
                        .ok()
                        .and_then(|e| parse_ms(&e.time))
                        .unwrap_or(0);
                    Head {
                        seq: raw.seq,
                        hash: raw.hash,
                        time_ms,
                    }
                }
                None => match db.get(t.audit_meta, PRUNED)? {
                    // Everything was pruned (cannot happen: a prune appends its
                    // own entry), but resume from the mark rather than restart at 1.
                    Some(m) => {
                        let mark: PruneMark = serde_json::from_slice(&m)
                            .map_err(|e| StoreError::corrupt("audit_meta/pruned", e))?;
                        Head {
                            seq: mark.through_seq,
                            hash: mark.through_hash,
                            time_ms: 0,
                        }
                    }
                    None => Head {
                        seq: 0,
                        hash: GENESIS,
                        time_ms: 0,
                    },
                },
            },
        )
    }
}

pub(super) fn raw_entry(k: &[u8], v: &[u8]) -> Result<RawEntry, StoreError> {
    let key = || format!("audit/{}", hex(k));
    let seq = u64::from_be_bytes(
        k.try_into()
            .map_err(|_| StoreError::corrupt(key(), "bad key"))?,
    );
    if v.len() < 32 {
        return Err(StoreError::corrupt(key(), "entry shorter than its hash"));
    }
    let (hash, body) = v.split_at(32);
    Ok(RawEntry {
        seq,
        hash: hash.try_into().expect("split at 32"),
        body: body.to_vec(),
    })
}
