//! Reading the log back: filtered, paged, with what an export needs to be
//! verified on its own (each entry's previous hash, and the checkpoints).

use super::{Action, Checkpoint, Entry, Hash, RawEntry, parse_ms};
use crate::store::{Store, StoreError};

/// Entries read per page at most, matching or not, so a filter that matches
/// little cannot make one request walk the whole log.
pub const MAX_SCAN: usize = 100_000;

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<Action>,
    pub alert: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl Filter {
    fn matches(&self, e: &Entry) -> bool {
        self.actor.as_ref().is_none_or(|a| &e.event.actor == a)
            && self.action.is_none_or(|a| e.event.action == a)
            && self
                .alert
                .as_ref()
                .is_none_or(|id| e.event.objects.iter().any(|o| o == id))
    }
}

/// One entry read, with the hash it chains from.
#[derive(Debug, Clone)]
pub struct Found {
    pub raw: RawEntry,
    pub entry: Entry,
    pub prev: Hash,
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entries: Vec<Found>,
    pub checkpoints: Vec<Checkpoint>,
    /// Where the next page starts; `None` at the end of the log or range.
    pub next: Option<u64>,
}

/// Up to `size` matching entries from sequence `from` (or the filter's start
/// time, or the start of the log), oldest first.
pub fn page(
    store: &Store,
    filter: &Filter,
    from: Option<u64>,
    size: usize,
    with_checkpoints: bool,
) -> Result<Page, StoreError> {
    let start = match (from, filter.since_ms) {
        (Some(seq), _) => seq,
        (None, Some(t)) => store.audit_seq_at(t)?,
        (None, None) => store.audit_start()?.seq,
    };
    let mut prev = store.audit_prev_hash(start)?;
    let mut out = Page::default();
    let mut last_read = None;
    for (scanned, raw) in store.audit_entries(start).enumerate() {
        let raw = raw?;
        if scanned == MAX_SCAN || out.entries.len() == size {
            out.next = Some(raw.seq);
            break;
        }
        let entry = raw.entry().map_err(|e| StoreError::Corrupt {
            key: format!("audit/{}", raw.seq),
            reason: e.to_string(),
        })?;
        if filter
            .until_ms
            .is_some_and(|u| parse_ms(&entry.time).is_some_and(|t| t >= u))
        {
            break;
        }
        last_read = Some(raw.seq);
        let hash = raw.hash;
        if filter.matches(&entry) {
            out.entries.push(Found { raw, entry, prev });
        }
        prev = hash;
    }
    if with_checkpoints && let Some(last) = last_read {
        out.checkpoints = store.audit_checkpoints(start, last)?;
    }
    Ok(out)
}
