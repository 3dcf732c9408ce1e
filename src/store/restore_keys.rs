//! A sealed backup restored after purges (docs/encryption.md): the
//! restored store takes the live store's data keys instead of its own, so
//! what was purged since the backup was taken stays purged, and everything
//! else opens as it did.
//!
//! A backup holds its records under the same data keys as the store it
//! was taken from, and a copy of those keys under a backup key. A purge
//! destroys a record's data key in the live store; the record written in
//! its place (emptied) gets a new key. So, record by record, the key a
//! backup's record names either is still the live store's (the record is
//! whole) or is not (it was purged since): nothing needs reading to tell.

use std::collections::{HashMap, HashSet};

use zeroize::Zeroizing;

use super::engine::sealed::data_key_of;
use super::engine::{Db, EngineError};
use super::index::alert_in_retention_key;
use super::vault::OWNED_TREES;
use super::{Store, StoreError};
use crate::proto::v1::StoredAlert;

/// What carrying a live store's data keys into a restored backup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// Data keys taken from the live store.
    pub data_keys: u64,
    /// Records of the backup purged since it was taken: alerts, releases,
    /// disclosure requests, public reports.
    pub purged_alerts: u64,
    pub purged_releases: u64,
    pub purged_requests: u64,
    pub purged_reports: u64,
}

/// Entries per transaction: bounded memory for any store size.
const BATCH: usize = 1_000;

/// A data key entry as the store holds it opened: slot → generation and key.
type KeyEntry = (Vec<u8>, Zeroizing<Vec<u8>>);

/// The live store's data keys, opened.
fn data_keys_of(live: &Store) -> Result<Vec<KeyEntry>, StoreError> {
    let mut keys = Vec::new();
    for item in live.db.range::<&[u8]>(live.t.data_keys, ..) {
        let (slot, plain) = item?;
        keys.push((slot, Zeroizing::new(plain)));
    }
    Ok(keys)
}

/// The records of `raw` (the unsealed view of the restored store) whose
/// data key is not the one `held` has for their slot.
fn purged_records(
    raw: &Db,
    held: &HashMap<Vec<u8>, Vec<u8>>,
) -> Result<Vec<(&'static str, Vec<u8>)>, StoreError> {
    let mut purged = Vec::new();
    for name in OWNED_TREES {
        for item in raw.range::<&[u8]>(raw.tree(name)?, ..) {
            let (key, sealed) = item?;
            if let Some((slot, generation)) = data_key_of(&sealed)
                && held.get(slot.as_slice()).map(|g| g.as_slice())
                    != Some(&generation.to_be_bytes()[..])
            {
                purged.push((name, key));
            }
        }
    }
    Ok(purged)
}

/// Which alert an index key belongs to (its id as its record key).
type AlertOfKey = dyn Fn(&[u8]) -> Option<Vec<u8>>;

/// The alert id at the end of an index key (`… origin \0 id`).
fn alert_at_end(key: &[u8]) -> Option<&[u8]> {
    let at = key.iter().rposition(|b| *b == 0)?;
    Some(&key[at + 1..])
}

impl Store {
    /// Makes this store, a backup just restored (no node running on
    /// either), hold `live`'s data keys instead of its own. Every record
    /// of the backup whose data key `live` has destroyed since becomes
    /// `live`'s emptied record, or goes when `live` holds none; the index
    /// entries of those alerts go with them. Synced before it returns.
    pub fn carry_data_keys(&self, live: &Store) -> Result<Carried, StoreError> {
        let Some(raw) = self.db.unsealed() else {
            return Ok(Carried::default());
        };
        let live_keys = data_keys_of(live)?;
        let held: HashMap<Vec<u8>, Vec<u8>> = live_keys
            .iter()
            .map(|(slot, plain)| (slot.clone(), plain.get(..4).unwrap_or_default().to_vec()))
            .collect();
        let purged = purged_records(&raw, &held)?;
        let ours: Vec<Vec<u8>> = raw
            .range::<&[u8]>(raw.tree(super::engine::sealed::DATA_KEYS)?, ..)
            .map(|item| item.map(|(k, _)| k))
            .collect::<Result<_, EngineError>>()?;
        for chunk in ours.chunks(BATCH) {
            self.db.transaction(|tx| {
                chunk
                    .iter()
                    .try_for_each(|slot| tx.remove(self.t.data_keys, slot))
            })?;
        }
        for chunk in live_keys.chunks(BATCH) {
            self.db.transaction(|tx| {
                chunk
                    .iter()
                    .try_for_each(|(slot, plain)| tx.insert(self.t.data_keys, slot, &plain[..]))
            })?;
        }
        let mut carried = Carried {
            data_keys: live_keys.len() as u64,
            ..Carried::default()
        };
        let mut gone = HashSet::new();
        for chunk in purged.chunks(BATCH) {
            self.write(|w| {
                for (name, key) in chunk {
                    self.take_live_record(w, live, name, key)?;
                    if *name == "alerts" {
                        gone.insert(key.clone());
                    }
                }
                Ok::<_, StoreError>(())
            })?;
        }
        let requests: HashSet<String> = purged
            .iter()
            .filter(|(name, _)| *name == "disclosures")
            .map(|(_, key)| String::from_utf8_lossy(key).into_owned())
            .collect();
        carried.purged_alerts = gone.len() as u64;
        carried.purged_requests = requests.len() as u64;
        let of = |tree: &str| purged.iter().filter(|(name, _)| *name == tree).count() as u64;
        carried.purged_releases = of("releases");
        carried.purged_reports = of("intake");
        self.drop_index_entries(&raw, &gone)?;
        self.carry_purged_log(live, &requests)?;
        if carried.purged_reports > 0 {
            self.intake_reindex()?;
        }
        self.db.sync()?;
        Ok(carried)
    }

    /// Takes `live`'s request log entries (emptied by the purge) in place
    /// of ours for the requests `purged` since the backup was taken.
    fn carry_purged_log(&self, live: &Store, purged: &HashSet<String>) -> Result<(), StoreError> {
        if purged.is_empty() {
            return Ok(());
        }
        let positions: Vec<u64> = self
            .log_positions(purged)?
            .into_values()
            .flatten()
            .collect();
        for chunk in positions.chunks(BATCH) {
            self.db.transaction(|tx| {
                for position in chunk {
                    let key = position.to_be_bytes();
                    match live.db.get(live.t.disclosure_log, key)? {
                        Some(value) => tx.insert(self.t.disclosure_log, key, value)?,
                        None => tx.remove(self.t.disclosure_log, key)?,
                    }
                }
                Ok::<_, EngineError>(())
            })?;
        }
        Ok(())
    }

    /// Writes `live`'s version of record `key` of tree `name` in place of
    /// ours (under `live`'s data key, now ours), or removes ours.
    fn take_live_record(
        &self,
        w: &mut super::Write<'_, '_>,
        live: &Store,
        name: &str,
        key: &[u8],
    ) -> Result<(), StoreError> {
        let (ours, theirs) = (self.db.tree(name)?, live.db.tree(name)?);
        let Some(value) = live.db.get(theirs, key)? else {
            w.tx.remove(ours, key)?;
            return Ok(());
        };
        w.tx.insert(ours, key, &value)?;
        if name == "alerts" {
            let record: StoredAlert = super::index::decode_alert(key, &value)?;
            super::alert_log::record(w, &record)?;
            super::tokens_pending::track(w, &String::from_utf8_lossy(key), &record)?;
        }
        Ok(())
    }

    /// Removes the token, person-encoding and retention entries of the
    /// alerts `gone` (ids as their record keys): what the purge removed
    /// from the live store, whose content is no longer there to say which.
    /// Keys are read through `raw`: they are never sealed, and a value need
    /// not open to be removed.
    fn drop_index_entries(&self, raw: &Db, gone: &HashSet<Vec<u8>>) -> Result<(), StoreError> {
        if gone.is_empty() {
            return Ok(());
        }
        let t = &self.t;
        // Tokens end with the alert id; person encodings with the id, a
        // zero byte and their two-byte number.
        let of_token = |k: &[u8]| alert_at_end(k).map(<[u8]>::to_vec);
        let of_encoding = |k: &[u8]| {
            k.len()
                .checked_sub(3)
                .and_then(|end| alert_at_end(&k[..end]).map(<[u8]>::to_vec))
        };
        let of_deadline =
            |k: &[u8]| alert_in_retention_key(k).map(|(_, id)| id.to_string().into_bytes());
        let scans: [(super::engine::Tree, &AlertOfKey); 3] = [
            (t.tokens, &of_token),
            (t.fuzzy, &of_encoding),
            (t.retention, &of_deadline),
        ];
        for (tree, alert_of) in scans {
            let doomed: Vec<Vec<u8>> = raw
                .range::<&[u8]>(tree, ..)
                .filter_map(|item| match item {
                    Ok((k, _)) => alert_of(&k).filter(|id| gone.contains(id)).map(|_| Ok(k)),
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, EngineError>>()?;
            for chunk in doomed.chunks(BATCH) {
                self.db
                    .transaction(|tx| chunk.iter().try_for_each(|k| tx.remove(tree, k)))?;
            }
        }
        Ok(())
    }
}
