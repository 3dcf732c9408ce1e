//! Authorization of a gRPC call: the identity the TLS layer attached to the
//! connection, judged by [`crate::identity::access`].

use tonic::{Request, Status};

use crate::config::Role;
use crate::identity::access::{ClientPolicy, PeerPolicy};
use crate::identity::{ClientIdentity, ConnInfo, Identity, NodeIdentity};

fn identity<T>(req: &Request<T>) -> Option<&Identity> {
    req.extensions().get::<ConnInfo>().map(|c| &c.identity)
}

/// The caller, if it is one of this agency's clients holding `role`.
pub fn client<T>(
    policy: &ClientPolicy,
    req: &Request<T>,
    role: Role,
) -> Result<ClientIdentity, Status> {
    policy.authorize(identity(req), role).map_err(Status::from)
}

/// The caller, if it holds at least one of `roles`, with those it holds.
pub fn client_any<T>(
    policy: &ClientPolicy,
    req: &Request<T>,
    roles: &[Role],
) -> Result<(ClientIdentity, Vec<Role>), Status> {
    policy
        .authorize_any(identity(req), roles)
        .map_err(Status::from)
}

/// The caller, if it is one of this agency's clients with any role (who may
/// use the client listener's health and reflection services).
pub fn listed_client<T>(policy: &ClientPolicy, req: &Request<T>) -> Result<ClientIdentity, Status> {
    policy.listed(identity(req)).map_err(Status::from)
}

/// The caller, if it is a configured peer node.
pub fn peer<T>(policy: &PeerPolicy, req: &Request<T>) -> Result<NodeIdentity, Status> {
    let key = req
        .extensions()
        .get::<ConnInfo>()
        .and_then(|c| c.key_sha256);
    policy.authorize(identity(req), key).map_err(Status::from)
}
