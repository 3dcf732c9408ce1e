//! Records of an agency's own register (a spreadsheet, a case system),
//! each known by its source id: `imports` maps source ‖ 0 ‖ source id to
//! the alert made of it and the digest of the draft it was last imported
//! with. The mapping is written in the same transaction as the alert, so
//! an import interrupted anywhere and run again finds every row it had
//! stored as "unchanged" and makes no second alert.

use super::engine::Reads;
use super::index::decode_alert as decode;
use super::{LocalWrite, OutboxItem, PURGED, Store, StoreError, TxError};
use crate::ids::AlertId;
use crate::proto::v1::StoredAlert;

/// What an import of one record did.
#[derive(Debug)]
pub enum ImportWrite {
    /// A new alert (the source id was new, or its alert was retracted).
    Created(StoredAlert),
    /// A new version of the record's alert: the draft differs from the
    /// one last imported.
    Updated(StoredAlert),
    /// The draft is the one last imported: nothing was written.
    Unchanged(StoredAlert),
}

impl ImportWrite {
    pub fn record(&self) -> &StoredAlert {
        match self {
            Self::Created(r) | Self::Updated(r) | Self::Unchanged(r) => r,
        }
    }
}

/// One record of a source as the node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub source_id: String,
    pub alert_id: String,
    /// The alert's version now and whether it is retracted (or purged).
    pub version: u64,
    pub retracted: bool,
}

fn import_key(source: &str, source_id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(source.len() + 1 + source_id.len());
    key.extend_from_slice(source.as_bytes());
    key.push(0);
    key.extend_from_slice(source_id);
    key
}

/// Bytes of a draft digest (SHA-256).
const DIGEST_LEN: usize = 32;

/// alert id ‖ 0 ‖ digest, then the source id in a sealed store (whose key
/// holds a keyed hash of it instead): (alert id, digest, source id).
fn split(value: &[u8]) -> (&[u8], &[u8], Option<&[u8]>) {
    let Some(at) = value.iter().position(|b| *b == 0) else {
        return (value, &[], None);
    };
    let (id, rest) = (&value[..at], &value[at + 1..]);
    match rest.len() > DIGEST_LEN {
        true => (id, &rest[..DIGEST_LEN], Some(&rest[DIGEST_LEN..])),
        false => (id, rest, None),
    }
}

impl Store {
    /// The `imports` key of `source_id`: in a sealed store a keyed hash of
    /// it stands in (a register's own record id can name a case), in a
    /// store in clear the id itself. Not inside a transaction.
    fn import_key(&self, source: &str, source_id: &str) -> Result<Vec<u8>, StoreError> {
        super::vault::keyed(&self.db, &import_key(source, b""), source_id.as_bytes())
    }
}

/// Whether a record whose alert is `held` and whose draft digest was
/// `last` stays as it is when imported with `digest`: its alert is live
/// and the draft the same, or its content went at its retention deadline
/// and the draft is still the same (the register keeping an old case does
/// not bring it back).
fn unchanged(held: &StoredAlert, last: &[u8], digest: &[u8]) -> bool {
    let Some(a) = &held.alert else { return false };
    last == digest && (!a.retracted || a.retraction_reason == PURGED)
}

impl Store {
    /// What `source_id` of `source` was last imported as: the alert as it
    /// is now, and whether `digest` is the draft it was imported with
    /// (what an import of it would do, for a dry run).
    pub fn imported(
        &self,
        source: &str,
        source_id: &str,
        digest: &[u8],
    ) -> Result<Option<(StoredAlert, bool)>, StoreError> {
        let key = self.import_key(source, source_id)?;
        let snapshot = self.db.snapshot();
        let Some(value) = snapshot.get(self.t.imports, key)? else {
            return Ok(None);
        };
        let (id, last, _) = split(&value);
        let Some(bytes) = snapshot.get(self.t.alerts, id)? else {
            return Ok(None);
        };
        let held = decode(id, &bytes)?;
        let same = unchanged(&held, last, digest);
        Ok(Some((held, same)))
    }

    /// Imports one record: creates its alert, makes a new version of it, or
    /// leaves it as it is (see [`ImportWrite`]), with the mapping, matching
    /// and the audit entries `on_commit` makes, in one transaction, synced
    /// before returning. `build` sees the current record (`None`: a new
    /// alert, to be stored under `new_id`).
    pub async fn write_import_then<E>(
        &self,
        (source, source_id, digest): (&str, &str, &[u8]),
        new_id: &AlertId,
        build: impl FnOnce(Option<StoredAlert>) -> Result<(StoredAlert, Vec<OutboxItem>), E>,
        on_commit: impl FnOnce(&ImportWrite) -> Vec<crate::audit::Event>,
    ) -> Result<ImportWrite, TxError<E>> {
        let key = self.import_key(source, source_id)?;
        let sealed = self.vault.is_some();
        self.write_matched(|w| {
            let mapped = match w.tx.get(w.t.imports, &key)? {
                Some(value) => {
                    let (id, last, _) = split(&value);
                    let held = match w.tx.get(w.t.alerts, id)? {
                        Some(bytes) => Some(decode(id, &bytes)?),
                        None => None,
                    };
                    held.map(|h| (String::from_utf8_lossy(id).into_owned(), h, last.to_vec()))
                }
                None => None,
            };
            let (alert_key, created) = match &mapped {
                Some((_, held, last)) if unchanged(held, last, digest) => {
                    let result = ImportWrite::Unchanged(held.clone());
                    w.append(on_commit(&result))?;
                    return Ok((result, Vec::new()));
                }
                Some((id, held, _)) if held.alert.as_ref().is_some_and(|a| !a.retracted) => {
                    (id.clone(), false)
                }
                _ => (new_id.to_string(), true),
            };
            let written = Self::write_local_in(w, &alert_key, None, build)?;
            let record = match written {
                LocalWrite::Written(r) | LocalWrite::Replayed(r) | LocalWrite::Conflict(r) => r,
            };
            let mut value = alert_key.into_bytes();
            value.push(0);
            value.extend_from_slice(digest);
            if sealed {
                value.extend_from_slice(source_id.as_bytes());
            }
            w.tx.insert(w.t.imports, &key, value)?;
            let hits = self.match_in(w, &record)?;
            let result = if created {
                ImportWrite::Created(record)
            } else {
                ImportWrite::Updated(record)
            };
            w.append(on_commit(&result))?;
            Ok::<_, TxError<E>>((result, hits))
        })
        .await
    }

    /// The records of `source` strictly after `after`, at most `limit`,
    /// and whether more remain: in source id order in a store in clear, in
    /// the (stable) order of their keyed hashes in a sealed one.
    pub fn list_imported(
        &self,
        source: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Imported>, bool), StoreError> {
        let prefix = import_key(source, b"");
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(self.import_key(source, a)?),
            None => std::ops::Bound::Included(prefix.clone()),
        };
        let snapshot = self.db.snapshot();
        let mut page = Vec::new();
        for item in snapshot.range(self.t.imports, (start, std::ops::Bound::Unbounded)) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if page.len() == limit {
                return Ok((page, true));
            }
            let (id, _, named) = split(&v);
            let held = match snapshot.get(self.t.alerts, id)? {
                Some(bytes) => decode(id, &bytes)?.alert,
                None => None,
            };
            page.push(Imported {
                source_id: String::from_utf8_lossy(named.unwrap_or(&k[prefix.len()..]))
                    .into_owned(),
                alert_id: String::from_utf8_lossy(id).into_owned(),
                version: held.as_ref().map_or(0, |a| a.version),
                retracted: held.as_ref().is_none_or(|a| a.retracted),
            });
        }
        Ok((page, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::Alert;

    fn held(retracted: bool, reason: &str) -> StoredAlert {
        StoredAlert {
            alert: Some(Alert {
                retracted,
                retraction_reason: reason.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_is_unchanged_only_with_the_same_draft_and_a_live_or_purged_alert() {
        assert!(unchanged(&held(false, ""), b"d", b"d"));
        assert!(!unchanged(&held(false, ""), b"d", b"e"));
        assert!(unchanged(&held(true, PURGED), b"d", b"d"));
        // Retracted by a person (or --retract-missing): the row is back.
        assert!(!unchanged(
            &held(true, "gone from the register"),
            b"d",
            b"d"
        ));
    }

    #[test]
    fn keys_keep_sources_apart() {
        assert!(import_key("reg", b"7").starts_with(&import_key("reg", b"")));
        assert!(!import_key("reg2", b"7").starts_with(&import_key("reg", b"")));
        assert_eq!(split(b"ngo:1\0dig"), (&b"ngo:1"[..], &b"dig"[..], None));
        let mut sealed = b"ngo:1\0".to_vec();
        sealed.extend([7u8; DIGEST_LEN]);
        sealed.extend(b"CASE-77");
        let (id, digest, source) = split(&sealed);
        assert_eq!((id, digest), (&b"ngo:1"[..], &[7u8; DIGEST_LEN][..]));
        assert_eq!(source, Some(&b"CASE-77"[..]));
    }
}
