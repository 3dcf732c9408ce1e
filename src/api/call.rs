//! The entry one RPC leaves: every client and peer call records exactly one,
//! with its caller, purpose and outcome, whatever path the handler takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::{Request, Status};

use crate::audit::{
    Action, CallEntry, Event, PURPOSE_BIN_HEADER, PURPOSE_HEADER, check_purpose, code_name,
};
use crate::identity::{ConnInfo, Identity};
use crate::ids::{AgencyId, FederationName};
use crate::store::Store;

/// Set once the request reaches its handler (which then logs it itself).
#[derive(Debug, Clone, Default)]
pub struct Reached(Arc<AtomicBool>);

impl Reached {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_marked(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The channel a call came through when it is not a gRPC client: the web
/// console calls the same services in-process, and its calls carry this in
/// their extensions, so the entry says `channel=console` and an auditor can
/// tell a browser action from an RPC (the entry is otherwise the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel(pub &'static str);

/// Who the caller is, as the log writes it: short names for this agency's
/// clients and the federation's nodes, the full SPIFFE id for anyone else.
pub fn actor_of<T>(req: &Request<T>, agency: &AgencyId, federation: &FederationName) -> String {
    match req.extensions().get::<ConnInfo>().map(|c| &c.identity) {
        Some(Identity::Client(c)) if &c.agency == agency && &c.federation == federation => {
            format!("client:{}", c.name)
        }
        Some(Identity::Client(c)) => c.spiffe_uri(),
        Some(Identity::Node(n)) if &n.federation == federation => format!("peer:{}", n.agency),
        Some(Identity::Node(n)) => n.spiffe_uri(),
        None => "unauthenticated".into(),
    }
}

/// The stated purpose, or which header broke the rule and how: UTF-8 from
/// the binary header (it wins when both are sent), or ASCII from the plain
/// one — HTTP/2 carries nothing else there, so other text must use the
/// binary header (docs/client-api.md).
fn purpose_of<T>(req: &Request<T>) -> Result<String, (&'static str, String)> {
    if let Some(value) = req.metadata().get_bin(PURPOSE_BIN_HEADER) {
        let bin = |e: &str| (PURPOSE_BIN_HEADER, e.to_string());
        let bytes = value.to_bytes().map_err(|_| bin("is not valid base64"))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bin("must be UTF-8"))?;
        return check_purpose(text)
            .map(str::to_owned)
            .map_err(|e| (PURPOSE_BIN_HEADER, e));
    }
    let Some(value) = req.metadata().get(PURPOSE_HEADER) else {
        return Ok(String::new());
    };
    let text = value.to_str().map_err(|_| {
        (
            PURPOSE_HEADER,
            format!(
                "must be printable ASCII: send text in any other script as UTF-8 in {PURPOSE_BIN_HEADER}"
            ),
        )
    })?;
    check_purpose(text)
        .map(str::to_owned)
        .map_err(|e| (PURPOSE_HEADER, e))
}

/// One audited RPC. Recorded once: by [`CallEntry::done`] inside the work
/// (so the entry shares the work's flush), else by [`Call::finish`], else,
/// if the caller went away and the handler was dropped, on drop as
/// `CANCELLED`. Derefs to its [`CallEntry`], which is what domain
/// operations take.
pub struct Call {
    entry: CallEntry,
    store: Arc<Store>,
    purpose_error: Option<(&'static str, String)>,
}

impl std::ops::Deref for Call {
    type Target = CallEntry;
    fn deref(&self) -> &CallEntry {
        &self.entry
    }
}

impl Call {
    pub fn start<T>(
        store: &Arc<Store>,
        agency: &AgencyId,
        federation: &FederationName,
        req: &Request<T>,
        action: Action,
    ) -> Self {
        let mut event = Event::new(actor_of(req, agency, federation), action, "OK");
        let purpose_error = match purpose_of(req) {
            Ok(p) => {
                event.purpose = p;
                None
            }
            Err(e) => Some(e),
        };
        if let Some(info) = req.extensions().get::<ConnInfo>() {
            event = event.detail("remote", info.remote);
        }
        if let Some(Channel(channel)) = req.extensions().get::<Channel>() {
            event = event.detail("channel", channel);
        }
        if let Some(reached) = req.extensions().get::<Reached>() {
            reached.mark(); // this call logs itself
        }
        Self {
            entry: CallEntry::new(event),
            store: store.clone(),
            purpose_error,
        }
    }

    /// Refuses a call whose purpose header is unusable, before any work.
    pub fn checked(&self) -> Result<(), Status> {
        match &self.purpose_error {
            None => Ok(()),
            Some((header, e)) => Err(crate::violation::invalid_field(header, e.clone())),
        }
    }

    /// Records the call's outcome (unless already committed) and waits until
    /// the entry is on disk before the answer goes out. If the entry cannot
    /// be written the caller gets UNAVAILABLE instead of the answer: nothing
    /// is disclosed that the log does not show.
    pub async fn finish<R>(&self, result: Result<R, Status>) -> Result<R, Status> {
        let outcome = match &result {
            Ok(_) => "OK",
            Err(s) => code_name(s.code()),
        };
        if let Some(mut e) = self.entry.done(outcome) {
            if let Err(s) = &result {
                e = if s.code() == tonic::Code::InvalidArgument {
                    // Descriptions may quote the offending input: fields only.
                    e.detail("fields", crate::violation::fields_of(s).join(","))
                } else {
                    e.detail("error", short(s.message()))
                };
            }
            self.store
                .audit([e])
                .await
                .map_err(super::status::store_unavailable)?;
        }
        result
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(e) = self.entry.done("CANCELLED")
            && let Err(err) = self.store.audit_append([e])
        {
            tracing::error!(error = %err, "audit entry for a cancelled call could not be written");
        }
    }
}

/// Error messages name fields and rules, never values; cut them anyway so a
/// long message cannot bloat the log.
fn short(message: &str) -> String {
    const MAX: usize = 300;
    if message.len() <= MAX {
        return message.to_owned();
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}
