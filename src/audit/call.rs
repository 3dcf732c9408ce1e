//! The entry one call is filling in. Domain operations (the alert ledger)
//! name the objects and facts they learn on it and hand the finished entry
//! to the store write they make, so the entry shares that write's flush.
//! Who the caller is and how the entry is recorded when the work did not
//! record it belong to the channel that took the call (`api::call::Call`
//! for gRPC).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Event;

/// Request metadata a caller sets to state why it makes the call (ASCII).
pub const PURPOSE_HEADER: &str = "x-casebridge-purpose";

/// The same as UTF-8 bytes (gRPC binary metadata), for case references in
/// any script: `Zaak 2026/0117 – Rotterdam`, `Справа 17`.
pub const PURPOSE_BIN_HEADER: &str = "x-casebridge-purpose-bin";

/// Checks a stated purpose: at most [`super::MAX_PURPOSE_BYTES`] bytes of
/// UTF-8, no control characters (it goes into a log people read).
pub fn check_purpose(text: &str) -> Result<&str, String> {
    if text.len() > super::MAX_PURPOSE_BYTES {
        return Err(format!("at most {} bytes", super::MAX_PURPOSE_BYTES));
    }
    if text.chars().any(char::is_control) {
        return Err("must be printable text (no control characters)".into());
    }
    Ok(text.trim())
}

/// One call's entry while the call runs: taken exactly once, by whoever
/// records it first.
pub struct CallEntry {
    event: Mutex<Event>,
    recorded: AtomicBool,
}

impl CallEntry {
    pub fn new(event: Event) -> Self {
        Self {
            event: Mutex::new(event),
            recorded: AtomicBool::new(false),
        }
    }

    fn with_event<R>(&self, f: impl FnOnce(&mut Event) -> R) -> R {
        f(&mut self.event.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Names an object (once, however many steps of the call name it).
    pub fn object(&self, id: impl Into<String>) {
        let id = id.into();
        self.with_event(|e| {
            if !e.objects.contains(&id) {
                e.objects.push(id);
            }
        });
    }

    pub fn detail(&self, key: &str, value: impl ToString) {
        let value = value.to_string();
        self.with_event(|e| {
            e.detail.insert(key.to_owned(), value);
        });
    }

    /// Marks the call recorded and hands over its entry with `outcome`, or
    /// `None` if it was taken before: a call is recorded once. Work that
    /// appends the entry inside its own store write (before that write's
    /// flush) takes it here, so the entry is on disk exactly when the change
    /// is.
    pub fn done(&self, outcome: &str) -> Option<Event> {
        if self.recorded.swap(true, Ordering::SeqCst) {
            return None;
        }
        // Moved out, not cloned.
        Some(self.with_event(|e| {
            let mut e = std::mem::replace(e, Event::new(String::new(), e.action, ""));
            e.outcome = outcome.to_owned();
            e
        }))
    }
}
