//! tonic services. Handlers are thin: open the call's audit entry,
//! authorize, translate, call the domain module, translate back, and close
//! the entry with the outcome. Domain errors become `tonic::Status` only in
//! [`status`].
//!
//! - [`call`]: [`call::Call`], the one audit entry of each RPC (over
//!   [`crate::audit::CallEntry`]); a [`call::Channel`] request extension
//!   names the console in it.
//! - [`auth`]: authorization from the connection's identity.
//! - [`undecoded`]: the audit layer around every service, which writes the
//!   entry of a call whose request never reached its handler.

mod admin;
mod alerts;
pub mod auth;
pub mod call;
mod disclosure;
mod peer;
mod reports;
pub mod status;
pub mod undecoded;

pub use admin::AdminApi;
pub use alerts::AlertApi;
pub use disclosure::DisclosureApi;
pub use peer::PeerApi;
pub use reports::ReportApi;

use tonic::{Request, Response, Status};

use crate::audit::Action;
use crate::core::NodeCore;
use call::Call;

/// Runs one RPC under its audit entry: exactly one entry per call, written
/// before the answer leaves (see [`Call`]). `work` gets the call to add the
/// objects and facts it learns.
async fn audited<T, R>(
    core: &NodeCore,
    req: Request<T>,
    action: Action,
    work: impl AsyncFnOnce(&Call, Request<T>) -> Result<R, Status>,
) -> Result<Response<R>, Status> {
    let call = Call::start(
        &core.store,
        &core.settings.agency,
        &core.settings.federation,
        &req,
        action,
    );
    let result = match call.checked() {
        Ok(()) => work(&call, req).await,
        Err(e) => Err(e),
    };
    call.finish(result).await.map(Response::new)
}

/// Names `id` in the entry if it is an alert id (anything else is not worth
/// keeping, and could be arbitrary caller input).
fn alert_object(call: &Call, id: &str) {
    if id.parse::<crate::ids::AlertId>().is_ok() {
        call.object(id);
    }
}

/// Entries read and buffered per log watcher at a time.
const LOG_PAGE: usize = 256;

/// A resumable log stream (hits, disclosure requests): every entry after
/// `after`, read in pages by `read`, then new ones whenever `changed`
/// moves, until the client goes away or the node stops (or, with
/// `backlog_only`, after the backlog). `admit` drops or shapes each entry
/// before it is sent; `position` is its place in the log.
fn follow_log<T: Send + 'static>(
    core: std::sync::Arc<NodeCore>,
    mut changed: tokio::sync::watch::Receiver<u64>,
    after: u64,
    backlog_only: bool,
    read: impl Fn(&NodeCore, u64, usize) -> Result<Vec<T>, crate::store::StoreError> + Send + 'static,
    position: impl Fn(&T) -> u64 + Send + 'static,
    admit: impl Fn(T) -> Option<T> + Send + 'static,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>> {
    let (tx, rx) = tokio::sync::mpsc::channel(LOG_PAGE);
    tokio::spawn(async move {
        let mut after = after;
        loop {
            // Mark the current value seen before reading, so an entry
            // written while we read wakes us again.
            changed.borrow_and_update();
            let page = match read(&core, after, LOG_PAGE) {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(status::store_unavailable(e))).await;
                    return;
                }
            };
            let full = page.len() == LOG_PAGE;
            for entry in page {
                after = position(&entry);
                let Some(entry) = admit(entry) else { continue };
                if tx.send(Ok(entry)).await.is_err() {
                    return; // client went away
                }
            }
            if full {
                continue;
            }
            if backlog_only {
                return;
            }
            tokio::select! {
                _ = core.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                res = changed.changed() => if res.is_err() { return },
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
