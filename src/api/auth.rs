//! Authorization from the identity the TLS layer attached to the connection.

use std::collections::{BTreeMap, BTreeSet};

use tonic::{Request, Status};

use crate::config::{Role, Roles};
use crate::identity::{ClientIdentity, ConnInfo, Identity, NodeIdentity};
use crate::ids::{AgencyId, ClientName, FederationName};
use crate::ratelimit::RateLimiter;

fn identity<T>(req: &Request<T>) -> Result<&Identity, Status> {
    req.extensions()
        .get::<ConnInfo>()
        .map(|c| &c.identity)
        .ok_or_else(|| Status::unauthenticated("no authenticated TLS identity on this connection"))
}

/// Who may call the client API, with which roles, and how often.
pub struct ClientPolicy {
    pub federation: FederationName,
    pub agency: AgencyId,
    pub roles: BTreeMap<ClientName, Roles>,
    pub rate: RateLimiter,
}

impl ClientPolicy {
    /// The caller, if it is one of this agency's clients holding `role`.
    pub fn require<T>(&self, req: &Request<T>, role: Role) -> Result<ClientIdentity, Status> {
        let Identity::Client(client) = identity(req)? else {
            return Err(Status::permission_denied(
                "a node certificate cannot call the client API",
            ));
        };
        if client.federation != self.federation || client.agency != self.agency {
            return Err(Status::permission_denied(format!(
                "client {} does not belong to agency {}",
                client.spiffe_uri(),
                self.agency
            )));
        }
        match self.roles.get(&client.name) {
            Some(roles) if roles.contains(&role) => {
                if !self.rate.allow(client.name.as_str()) {
                    return Err(Status::resource_exhausted(format!(
                        "client `{}` exceeds its request rate (limits.requests_per_second_per_client); retry later",
                        client.name
                    )));
                }
                Ok(client.clone())
            }
            _ => Err(Status::permission_denied(format!(
                "client `{}` lacks the `{role}` role",
                client.name
            ))),
        }
    }
}

/// Which nodes may call the peer API, and how often.
pub struct PeerPolicy {
    pub federation: FederationName,
    pub peers: BTreeSet<AgencyId>,
    pub rate: RateLimiter,
}

impl PeerPolicy {
    pub fn require<T>(&self, req: &Request<T>) -> Result<NodeIdentity, Status> {
        let Identity::Node(node) = identity(req)? else {
            return Err(Status::permission_denied(
                "a client certificate cannot call the peer API",
            ));
        };
        if node.federation != self.federation {
            return Err(Status::permission_denied(format!(
                "{} is not in federation {}",
                node.spiffe_uri(),
                self.federation
            )));
        }
        if !self.peers.contains(&node.agency) {
            return Err(Status::permission_denied(format!(
                "agency `{}` is not a configured peer of this node",
                node.agency
            )));
        }
        if !self.rate.allow(node.agency.as_str()) {
            return Err(Status::resource_exhausted(format!(
                "peer `{}` exceeds its request rate here; retry later",
                node.agency
            )));
        }
        Ok(node.clone())
    }
}
