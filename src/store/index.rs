//! The token index and the hit log, maintained inside alert transactions.
//!
//! - `tokens`: type (i32 BE) ‖ key version (u32 BE) ‖ token → `TokenPostings`
//!   (the alert ids holding it). A posting list rather than one key per
//!   (token, alert) because sled transactions cannot scan.
//! - `hits`: sequence (u64 BE) → `Hit`; `hit_keys`: own ‖ 0 ‖ other ‖ 0 ‖ type → sequence,
//!   so a hit is recorded once.

use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{OutboxItem, StoreError, TxError, outbox_key};
use crate::ids::AlertId;
use crate::matching::{self, MatchScope, TokenKey};
use crate::proto::v1::{Hit, HitNotice, HitSource, StoredAlert, TokenPostings, envelope::Payload};

pub(super) type TxResult<T, E> = Result<T, ConflictableTransactionError<TxError<E>>>;

pub(super) struct IndexTrees<'a> {
    pub tokens: &'a TransactionalTree,
    pub hits: &'a TransactionalTree,
    pub hit_keys: &'a TransactionalTree,
    pub outbox: &'a TransactionalTree,
    pub fuzzy: &'a TransactionalTree,
    pub fuzzy_pending: &'a TransactionalTree,
}

/// `fuzzy` key: key version ‖ block ‖ alert id ‖ 0 ‖ index of the encoding in the alert.
pub(super) fn fuzzy_key(block: &[u8], alert_id: &str, n: usize) -> Vec<u8> {
    let mut k = block.to_vec();
    k.extend_from_slice(alert_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&(n as u16).to_be_bytes());
    k
}

pub(super) fn token_key((kind, version, value): &TokenKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + value.len());
    k.extend_from_slice(&kind.to_be_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(value);
    k
}

fn corrupt<E>(what: &str, e: impl ToString) -> ConflictableTransactionError<TxError<E>> {
    ConflictableTransactionError::Abort(TxError::Store(StoreError::Corrupt {
        key: what.to_owned(),
        reason: e.to_string(),
    }))
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

/// Records a hit found here and queues the notice to the other agency.
pub(super) fn record_found<E>(
    hits: &TransactionalTree,
    hit_keys: &TransactionalTree,
    outbox: &TransactionalTree,
    scope: &MatchScope,
    hit: Hit,
) -> TxResult<Option<Hit>, E> {
    let Some(hit) = record_hit(hits, hit_keys, hit)? else {
        return Ok(None);
    };
    let other: AlertId = hit.other_alert_id.parse().map_err(|e| corrupt("hit", e))?;
    if matching::notify(scope, &other) {
        let notice = HitNotice {
            r#type: hit.r#type,
            your_alert_id: hit.other_alert_id.clone(),
            our_alert_id: hit.local_alert_id.clone(),
            similarity: hit.similarity,
        };
        queue(
            outbox,
            &OutboxItem {
                peer: other.origin().clone(),
                payload: Payload::HitNotice(notice),
            },
        )?;
    }
    Ok(Some(hit))
}

/// Moves `record`'s tokens in the index from `previous`'s, and records the
/// hits (and queues the hit notices) its new tokens cause.
pub(super) fn reindex<E>(
    t: &IndexTrees<'_>,
    scope: &MatchScope,
    previous: Option<&StoredAlert>,
    record: &StoredAlert,
    detected_at: pbjson_types::Timestamp,
) -> TxResult<Vec<Hit>, E> {
    let alert = record
        .alert
        .as_ref()
        .ok_or_else(|| corrupt("record", "without alert"))?;
    let this: AlertId = alert.id.parse().map_err(|e| corrupt(&alert.id, e))?;
    let old = previous.map(matching::tokens_of).unwrap_or_default();
    let new = matching::tokens_of(record);
    for gone in old.difference(&new) {
        let key = token_key(gone);
        let mut postings = match t.tokens.get(&key)? {
            Some(b) => TokenPostings::decode(b.as_ref()).map_err(|e| corrupt("postings", e))?,
            None => continue,
        };
        postings.alert_ids.retain(|a| a != &alert.id);
        if postings.alert_ids.is_empty() {
            t.tokens.remove(key)?;
        } else {
            t.tokens.insert(key, postings.encode_to_vec())?;
        }
    }
    let mut hits = Vec::new();
    for token in &new {
        let key = token_key(token);
        let mut postings = match t.tokens.get(&key)? {
            Some(b) => TokenPostings::decode(b.as_ref()).map_err(|e| corrupt("postings", e))?,
            None => TokenPostings::default(),
        };
        for other in postings.alert_ids.iter().filter(|a| *a != &alert.id) {
            let other: AlertId = other.parse().map_err(|e| corrupt("postings", e))?;
            let Some((own, other)) = matching::hit_pair(scope, &this, &other) else {
                continue;
            };
            let hit = Hit {
                sequence: 0,
                r#type: token.0,
                local_alert_id: own.to_string(),
                other_alert_id: other.to_string(),
                other_agency: other.origin().to_string(),
                similarity: 1.0,
                detected_at: Some(detected_at),
                source: HitSource::LocalMatch as i32,
            };
            if let Some(hit) = record_found(t.hits, t.hit_keys, t.outbox, scope, hit)? {
                hits.push(hit);
            }
        }
        if !postings.alert_ids.contains(&alert.id) {
            postings.alert_ids.push(alert.id.clone());
            t.tokens.insert(key, postings.encode_to_vec())?;
        }
    }
    // Fuzzy index: replace this alert's encodings; matching them against the
    // block needs a scan, which runs after this transaction (see
    // `Store::match_fuzzy`); the pending mark makes that step survive a crash.
    if let Some(prev) = previous {
        for (n, e) in matching::encodings_of(prev).into_iter().enumerate() {
            t.fuzzy
                .remove(fuzzy_key(&matching::encoding_block(e), &alert.id, n))?;
        }
    }
    let encodings = matching::encodings_of(record);
    for (n, e) in encodings.iter().enumerate() {
        t.fuzzy.insert(
            fuzzy_key(&matching::encoding_block(e), &alert.id, n),
            e.bloom.as_slice(),
        )?;
    }
    if encodings.is_empty() {
        t.fuzzy_pending.remove(alert.id.as_bytes())?;
    } else {
        t.fuzzy_pending.insert(alert.id.as_bytes(), &[])?;
    }
    Ok(hits)
}

/// Appends one envelope payload to a peer's outbox.
pub(super) fn queue<E>(outbox: &TransactionalTree, item: &OutboxItem) -> TxResult<(), E> {
    let seq = outbox.generate_id()?;
    let env = crate::proto::v1::Envelope {
        sequence: 0,
        payload: Some(item.payload.clone()),
    };
    outbox.insert(outbox_key(&item.peer, seq), env.encode_to_vec())?;
    Ok(())
}
