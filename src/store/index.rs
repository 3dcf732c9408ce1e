//! The token and person-encoding indexes and the hit log.
//!
//! Keys carry the alert's origin so that matching reads only what can make a
//! hit (a received alert only against our own alerts; our alert only against
//! other agencies'), and so that a token shared by thousands of alerts costs a
//! range read, never a rewrite:
//! - `tokens`:  type (i32 BE) ‖ key version (u32 BE) ‖ token ‖ origin ‖ 0 ‖ alert id → ()
//! - `fuzzy`:   key version (u32 BE) ‖ block ‖ origin ‖ 0 ‖ alert id ‖ 0 ‖ n (u16 BE) → filter
//! - `hits`:    log position (u64 BE) → `Hit` as it stood then (found, or
//!   after a review); `hit_keys`: own ‖ 0 ‖ other ‖ 0 ‖ type → hit number;
//!   `hit_others`: other ‖ 0 ‖ own → (), the same keyed the other way;
//!   `hit_numbers`: hit number → position of its latest entry (a store from
//!   before reviews has none: there a hit's only entry is at its number)
//! - `retention`: deadline (seconds, u64 BE) ‖ alert id → () for every alert
//!   still holding content, so the purge reads only what is due
//!
//! An alert's index entries move in the transaction that writes the alert
//! ([`reindex`]), and the same transaction then reads the candidates with
//! range scans, which see its own writes, and records the hits and notices
//! they make (`Store::match_in`): an alert is never stored without its hits.

use prost::Message;

use super::engine::Reads;
use super::outbox::outbox_key;
use super::trees::be_u64;
use super::{Counter, OutboxItem, StoreError, Write};
use crate::ids::{AgencyId, AlertId};
use crate::matching::{self, TokenKey};
use crate::proto::v1::{Hit, HitNotice, StoredAlert};

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

fn corrupt(what: &str, e: impl ToString) -> StoreError {
    StoreError::corrupt(what.to_owned(), e)
}

fn hit_key(own: &AlertId, other: &AlertId, kind: i32) -> Vec<u8> {
    format!("{own}\0{other}\0{kind}").into_bytes()
}

/// The key of a hit in `hit_others`: the other agency's alert first
/// (see `network`).
pub(super) fn reverse_key(other: &str, own: &str) -> Vec<u8> {
    format!("{other}\0{own}").into_bytes()
}

/// The key of a pair of alerts (ours, theirs) in `hit_reviews`, and the
/// prefix of its hits in `hit_keys`.
pub(super) fn pair_key(own: &str, other: &str) -> Vec<u8> {
    format!("{own}\0{other}\0").into_bytes()
}

/// A stored alert record, or the key it was under named as corrupt.
pub(super) fn decode_alert(key: &[u8], bytes: &[u8]) -> Result<StoredAlert, StoreError> {
    <StoredAlert as prost::Message>::decode(bytes)
        .map_err(|e| StoreError::corrupt(String::from_utf8_lossy(key).into_owned(), e))
}

/// A hit log entry as stored; entries written before reviews existed have
/// no number (it was their position).
pub(super) fn decode_hit(key: &[u8], v: &[u8]) -> Result<Hit, StoreError> {
    let mut hit = Hit::decode(v).map_err(|e| corrupt(&format!("hit {key:?}"), e))?;
    if hit.number == 0 {
        hit.number = hit.sequence;
    }
    if hit.change == 0 {
        hit.change = crate::proto::v1::HitChange::Found as i32;
    }
    Ok(hit)
}

/// The latest entry of hit `number`, as it stands now.
pub(super) fn latest_entry(
    r: &impl Reads,
    t: &super::Trees,
    number: u64,
) -> Result<Option<Hit>, StoreError> {
    let position = match r.get(t.hit_numbers, number.to_be_bytes())? {
        Some(v) => be_u64("hit_numbers", &v)?,
        None => number,
    };
    r.get(t.hits, position.to_be_bytes())?
        .map(|v| decode_hit(&position.to_be_bytes(), &v))
        .transpose()
        .map(|h| h.filter(|h| h.number == number))
}

/// Appends `hit` to the hit log at the next position, as its latest entry.
pub(super) fn append_entry(w: &mut Write<'_, '_>, hit: Hit) -> Result<Hit, StoreError> {
    // Positions start at 1: 0 means "from the start".
    let position = w.next(Counter::HitLog)?;
    let hit = Hit {
        sequence: position,
        ..hit
    };
    w.tx.insert(w.t.hits, position.to_be_bytes(), hit.encode_to_vec())?;
    w.tx.insert(
        w.t.hit_numbers,
        hit.number.to_be_bytes(),
        position.to_be_bytes(),
    )?;
    Ok(hit)
}

/// Whether either agency judged the pair (own, other) a false positive:
/// then no new hit between them is recorded or notified.
pub(super) fn pair_dismissed(
    w: &mut Write<'_, '_>,
    own: &str,
    other: &str,
) -> Result<bool, StoreError> {
    use crate::proto::v1::{HitVerdict, PairReviews};
    let Some(v) = w.tx.get(w.t.hit_reviews, pair_key(own, other))? else {
        return Ok(false);
    };
    let reviews = PairReviews::decode(v.as_slice()).map_err(|e| corrupt("hit_reviews", e))?;
    Ok([reviews.ours, reviews.theirs]
        .iter()
        .flatten()
        .any(|r| r.verdict == HitVerdict::FalsePositive as i32))
}

/// The other agency told us of a hit we had found ourselves (perhaps
/// without telling it: the policy may not have allowed a notice): it knows
/// of the hit now, so reviews of it made here go to it. Marks the latest
/// entry in place; that is a fact about the hit, not a change in the log.
pub(super) fn mark_known_there(w: &mut Write<'_, '_>, hit: &Hit) -> Result<(), StoreError> {
    let own: AlertId = hit.local_alert_id.parse().map_err(|e| corrupt("hit", e))?;
    let other: AlertId = hit.other_alert_id.parse().map_err(|e| corrupt("hit", e))?;
    let Some(number) = w.tx.get(w.t.hit_keys, hit_key(&own, &other, hit.r#type))? else {
        return Ok(());
    };
    let number = be_u64("hit_keys", &number)?;
    if let Some(latest) = latest_entry(&*w.tx, w.t, number)?
        && !latest.known_there
    {
        let position = latest.sequence;
        let latest = Hit {
            known_there: true,
            ..latest
        };
        w.tx.insert(w.t.hits, position.to_be_bytes(), latest.encode_to_vec())?;
    }
    Ok(())
}

/// The numbers of every hit between `own` and `other` (one per identifier type).
pub(super) fn pair_hits(
    w: &mut Write<'_, '_>,
    own: &str,
    other: &str,
) -> Result<Vec<u64>, StoreError> {
    w.tx.prefix(w.t.hit_keys, pair_key(own, other))
        .map(|item| {
            let (_, v) = item?;
            be_u64("hit_keys", &v)
        })
        .collect()
}

/// Records a hit unless this (own, other, type) is already known; returns it if new.
pub(super) fn record_hit(w: &mut Write<'_, '_>, hit: Hit) -> Result<Option<Hit>, StoreError> {
    let own: AlertId = hit.local_alert_id.parse().map_err(|e| corrupt("hit", e))?;
    let other: AlertId = hit.other_alert_id.parse().map_err(|e| corrupt("hit", e))?;
    let key = hit_key(&own, &other, hit.r#type);
    if w.tx.get(w.t.hit_keys, &key)?.is_some() {
        return Ok(None);
    }
    let number = w.next(Counter::Hits)?;
    let hit = append_entry(
        w,
        Hit {
            number,
            change: crate::proto::v1::HitChange::Found as i32,
            ..hit
        },
    )?;
    w.tx.insert(w.t.hit_keys, key, number.to_be_bytes())?;
    let reverse = reverse_key(&other.to_string(), &own.to_string());
    w.tx.insert(w.t.hit_others, reverse, [])?;
    w.tally(
        super::activity::Tally::Hits,
        std::time::SystemTime::now(),
        1,
    )?;
    Ok(Some(hit))
}

/// Records a hit found here and, when `notify`, queues the notice to the other agency.
pub(super) fn record_found(
    w: &mut Write<'_, '_>,
    hit: Hit,
    notify: bool,
) -> Result<Option<Hit>, StoreError> {
    let Some(hit) = record_hit(
        w,
        Hit {
            known_there: notify,
            ..hit
        },
    )?
    else {
        return Ok(None);
    };
    if notify {
        notify_found(w, &hit)?;
    }
    Ok(Some(hit))
}

/// Queues the notice of a hit found here to the other agency.
pub(super) fn notify_found(w: &mut Write<'_, '_>, hit: &Hit) -> Result<(), StoreError> {
    let other: AlertId = hit.other_alert_id.parse().map_err(|e| corrupt("hit", e))?;
    let notice = HitNotice {
        r#type: hit.r#type,
        your_alert_id: hit.other_alert_id.clone(),
        our_alert_id: hit.local_alert_id.clone(),
        similarity: hit.similarity,
        fuzzy: hit.fuzzy,
        strength: hit.strength,
        evidence: hit.evidence,
    };
    queue(w, &OutboxItem::notice(other.origin().clone(), notice))
}

/// Moves `record`'s index entries (tokens, person encodings, retention
/// deadline) from `previous`'s.
pub(super) fn reindex(
    w: &mut Write<'_, '_>,
    previous: Option<&StoredAlert>,
    record: &StoredAlert,
) -> Result<(), StoreError> {
    let t = w.t;
    let alert = record
        .alert
        .as_ref()
        .ok_or_else(|| corrupt("record", "without alert"))?;
    let this: AlertId = alert.id.parse().map_err(|e| corrupt(&alert.id, e))?;
    let old = previous.map(matching::tokens_of).unwrap_or_default();
    let new = matching::tokens_of(record);
    for gone in old.difference(&new) {
        w.tx.remove(t.tokens, with_alert(token_prefix(gone), &this))?;
    }
    for token in new.difference(&old) {
        w.tx.insert(t.tokens, with_alert(token_prefix(token), &this), [])?;
    }
    if let Some(prev) = previous {
        for (n, e) in matching::encodings_of(prev).into_iter().enumerate() {
            w.tx.remove(t.fuzzy, fuzzy_key(&matching::encoding_block(e), &this, n))?;
        }
    }
    let encodings = matching::encodings_of(record);
    for (n, e) in encodings.iter().enumerate() {
        w.tx.insert(
            t.fuzzy,
            fuzzy_key(&matching::encoding_block(e), &this, n),
            matching::Comparable::of(e).map_or_else(Vec::new, |c| c.index_value()),
        )?;
    }
    if let Some(k) = previous.and_then(retention_key) {
        w.tx.remove(t.retention, k)?;
    }
    if let Some(k) = retention_key(record) {
        w.tx.insert(t.retention, k, [])?;
    }
    Ok(())
}

/// Appends one envelope payload to a peer's outbox.
pub(super) fn queue(w: &mut Write<'_, '_>, item: &OutboxItem) -> Result<(), StoreError> {
    let seq = w.next(Counter::Outbox)?;
    let env = crate::proto::v1::Envelope {
        sequence: 0,
        payload: Some(item.payload.clone()),
        queued_at: Some(crate::time::now()),
        rule: item.rule.clone(),
        disclosed: item.disclosed.clone(),
        requires: Vec::new(),
    };
    w.tx.insert(w.t.outbox, outbox_key(&item.peer, seq), env.encode_to_vec())?;
    w.queued.push(item.peer.clone());
    Ok(())
}
