//! The token and person-encoding indexes and the hit log.
//!
//! Keys carry the alert's origin so that matching reads only what can make a
//! hit (a received alert only against our own alerts; our alert only against
//! other agencies'), and so that a token shared by thousands of alerts costs a
//! range read, never a rewrite:
//! - `tokens`:  type (i32 BE) ‖ key version (u32 BE) ‖ token ‖ origin ‖ 0 ‖ alert id → ()
//! - `fuzzy`:   key version (u32 BE) ‖ block ‖ origin ‖ 0 ‖ alert id ‖ 0 ‖ n (u16 BE) → filter
//! - `hits`:    sequence (u64 BE) → `Hit`; `hit_keys`: own ‖ 0 ‖ other ‖ 0 ‖ type → sequence
//! - `pending`: alert id → () while the alert's matching (phase 2) is not done
//! - `retention`: deadline (seconds, u64 BE) ‖ alert id → () for every alert
//!   still holding content, so the purge reads only what is due
//!
//! Phase 1, inside the alert's transaction, moves the alert's index entries
//! and sets `pending`. Phase 2 (`Store::match_pending`) reads candidates with
//! range scans, which sled transactions cannot do, then records hits and
//! notices and clears `pending` in a second transaction before the same flush.

use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::outbox::outbox_key;
use super::{OutboxItem, StoreError, TxError};
use crate::ids::{AgencyId, AlertId};
use crate::matching::{self, TokenKey};
use crate::proto::v1::{Hit, HitNotice, StoredAlert};

pub(super) type TxResult<T, E> = Result<T, ConflictableTransactionError<TxError<E>>>;

pub(super) struct IndexTrees<'a> {
    pub tokens: &'a TransactionalTree,
    pub fuzzy: &'a TransactionalTree,
    pub pending: &'a TransactionalTree,
    pub retention: &'a TransactionalTree,
}

/// The retention index key of a record holding content, if it has a deadline.
pub(super) fn retention_key(record: &StoredAlert) -> Option<Vec<u8>> {
    let a = record.alert.as_ref()?;
    let until = a.content.as_ref()?.retention_until?;
    let mut k = (until.seconds.max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(a.id.as_bytes());
    Some(k)
}

/// The alert id in a retention index key.
pub(super) fn alert_in_retention_key(key: &[u8]) -> Option<(u64, AlertId)> {
    let secs = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let id = std::str::from_utf8(key.get(8..)?).ok()?.parse().ok()?;
    Some((secs, id))
}

pub(super) fn token_prefix((kind, version, value): &TokenKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + value.len());
    k.extend_from_slice(&kind.to_be_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(value);
    k
}

fn with_alert(mut prefix: Vec<u8>, id: &AlertId) -> Vec<u8> {
    prefix.extend_from_slice(id.origin().as_str().as_bytes());
    prefix.push(0);
    prefix.extend_from_slice(id.to_string().as_bytes());
    prefix
}

fn fuzzy_key(block: &[u8], id: &AlertId, n: usize) -> Vec<u8> {
    let mut k = with_alert(block.to_vec(), id);
    k.push(0);
    k.extend_from_slice(&(n as u16).to_be_bytes());
    k
}

/// The alert id in an index key, after `prefix_len` bytes of token or block.
pub(super) fn alert_in_key(key: &[u8], prefix_len: usize) -> Option<AlertId> {
    let rest = key.get(prefix_len..)?;
    let origin_end = rest.iter().position(|b| *b == 0)?;
    let rest = &rest[origin_end + 1..];
    let id_end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    std::str::from_utf8(&rest[..id_end]).ok()?.parse().ok()
}

/// Key ranges under `prefix` holding alerts that can make a hit with an
/// alert of `origin`: other agencies' when it is ours, ours otherwise.
pub(super) fn candidate_ranges(
    prefix: &[u8],
    origin: &AgencyId,
    own: &AgencyId,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut own_start = prefix.to_vec();
    own_start.extend_from_slice(own.as_str().as_bytes());
    let mut own_end = own_start.clone();
    own_start.push(0);
    own_end.push(1);
    if origin == own {
        let mut end = prefix.to_vec();
        end.push(0xff);
        vec![(prefix.to_vec(), own_start), (own_end, end)]
    } else {
        vec![(own_start, own_end)]
    }
}

fn corrupt<E>(what: &str, e: impl ToString) -> ConflictableTransactionError<TxError<E>> {
    ConflictableTransactionError::Abort(TxError::Store(StoreError::corrupt(what.to_owned(), e)))
}

fn hit_key(own: &AlertId, other: &AlertId, kind: i32) -> Vec<u8> {
    format!("{own}\0{other}\0{kind}").into_bytes()
}

/// Records a hit unless this (own, other, type) is already known; returns it if new.
pub(super) fn record_hit<E>(
    hits: &TransactionalTree,
    hit_keys: &TransactionalTree,
    hit: Hit,
) -> TxResult<Option<Hit>, E> {
    let own: AlertId = hit.local_alert_id.parse().map_err(|e| corrupt("hit", e))?;
    let other: AlertId = hit.other_alert_id.parse().map_err(|e| corrupt("hit", e))?;
    let key = hit_key(&own, &other, hit.r#type);
    if hit_keys.get(&key)?.is_some() {
        return Ok(None);
    }
    let sequence = hits.generate_id()? + 1; // sequences start at 1: 0 means "from the start"
    let hit = Hit { sequence, ..hit };
    hits.insert(&sequence.to_be_bytes(), hit.encode_to_vec())?;
    hit_keys.insert(key, &sequence.to_be_bytes())?;
    Ok(Some(hit))
}

/// Records a hit found here and, when `notify`, queues the notice to the other agency.
pub(super) fn record_found<E>(
    hits: &TransactionalTree,
    hit_keys: &TransactionalTree,
    outbox: &TransactionalTree,
    hit: Hit,
    notify: bool,
) -> TxResult<Option<Hit>, E> {
    let Some(hit) = record_hit(hits, hit_keys, hit)? else {
        return Ok(None);
    };
    let other: AlertId = hit.other_alert_id.parse().map_err(|e| corrupt("hit", e))?;
    if notify {
        let notice = HitNotice {
            r#type: hit.r#type,
            your_alert_id: hit.other_alert_id.clone(),
            our_alert_id: hit.local_alert_id.clone(),
            similarity: hit.similarity,
        };
        queue(outbox, &OutboxItem::notice(other.origin().clone(), notice))?;
    }
    Ok(Some(hit))
}

/// Phase 1: moves `record`'s index entries from `previous`'s and marks the
/// alert for matching when it has anything to match.
pub(super) fn reindex<E>(
    t: &IndexTrees<'_>,
    previous: Option<&StoredAlert>,
    record: &StoredAlert,
) -> TxResult<(), E> {
    let alert = record
        .alert
        .as_ref()
        .ok_or_else(|| corrupt("record", "without alert"))?;
    let this: AlertId = alert.id.parse().map_err(|e| corrupt(&alert.id, e))?;
    let old = previous.map(matching::tokens_of).unwrap_or_default();
    let new = matching::tokens_of(record);
    for gone in old.difference(&new) {
        t.tokens.remove(with_alert(token_prefix(gone), &this))?;
    }
    for token in new.difference(&old) {
        t.tokens
            .insert(with_alert(token_prefix(token), &this), &[])?;
    }
    if let Some(prev) = previous {
        for (n, e) in matching::encodings_of(prev).into_iter().enumerate() {
            t.fuzzy
                .remove(fuzzy_key(&matching::encoding_block(e), &this, n))?;
        }
    }
    let encodings = matching::encodings_of(record);
    for (n, e) in encodings.iter().enumerate() {
        t.fuzzy.insert(
            fuzzy_key(&matching::encoding_block(e), &this, n),
            e.bloom.as_slice(),
        )?;
    }
    if let Some(k) = previous.and_then(retention_key) {
        t.retention.remove(k)?;
    }
    if let Some(k) = retention_key(record) {
        t.retention.insert(k, &[])?;
    }
    if new.is_empty() && encodings.is_empty() {
        t.pending.remove(alert.id.as_bytes())?;
    } else {
        t.pending.insert(alert.id.as_bytes(), &[])?;
    }
    Ok(())
}

/// Appends one envelope payload to a peer's outbox.
pub(super) fn queue<E>(outbox: &TransactionalTree, item: &OutboxItem) -> TxResult<(), E> {
    let seq = outbox.generate_id()?;
    let env = crate::proto::v1::Envelope {
        sequence: 0,
        payload: Some(item.payload.clone()),
        queued_at: Some(crate::time::now()),
        rule: item.rule.clone(),
        disclosed: item.disclosed.clone(),
    };
    outbox.insert(outbox_key(&item.peer, seq), env.encode_to_vec())?;
    Ok(())
}
