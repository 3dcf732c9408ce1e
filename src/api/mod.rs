//! tonic services. Handlers are thin: open the call's audit entry,
//! authorize, translate, call the domain module, translate back, and close
//! the entry with the outcome. Domain errors become `tonic::Status` only in
//! [`status`].

mod admin;
mod alerts;
pub mod auth;
pub mod call;
mod disclosure;
mod peer;
pub mod status;
pub mod undecoded;

pub use admin::AdminApi;
pub use alerts::AlertApi;
pub use disclosure::DisclosureApi;
pub use peer::PeerApi;

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
    let call = Call::start(&core.store, &core.agency, &core.federation, &req, action);
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
