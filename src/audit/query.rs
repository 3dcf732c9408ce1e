//! Reading the log back: filtered, paged, with what an export needs to be
//! verified on its own (each entry's previous hash, and the checkpoints).

//!
//! The reading itself is `Store::audit_page`: this module says what a page
//! is and which entries a filter keeps.

use super::{Action, Checkpoint, Entry, Hash, RawEntry};

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
    pub fn matches(&self, e: &Entry) -> bool {
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
