//! Who may do what, decided from an authenticated [`Identity`] alone. Every
//! channel that takes calls (the gRPC APIs today) extracts the identity its
//! transport authenticated and asks here, so roles and rate limits mean the
//! same on each.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::{ClientIdentity, Identity, NodeIdentity};
use crate::config::{Role, Roles};
use crate::ids::{AgencyId, ClientName, FederationName};
use crate::ratelimit::RateLimiter;

/// Why a caller is refused. The messages name the caller and the missing
/// right, never anything the caller sent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AccessError {
    #[error("no authenticated TLS identity on this connection")]
    Unauthenticated,
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    RateLimited(String),
}

/// Who may call the client API, with which roles, and how often.
pub struct ClientPolicy {
    pub federation: FederationName,
    pub agency: AgencyId,
    pub roles: BTreeMap<ClientName, Roles>,
    pub rate: RateLimiter,
}

impl ClientPolicy {
    /// The caller, if it is one of this agency's clients holding `role` and
    /// within its request rate.
    pub fn authorize(
        &self,
        identity: Option<&Identity>,
        role: Role,
    ) -> Result<ClientIdentity, AccessError> {
        let Identity::Client(client) = identity.ok_or(AccessError::Unauthenticated)? else {
            return Err(AccessError::Denied(
                "a node certificate cannot call the client API".into(),
            ));
        };
        if client.federation != self.federation || client.agency != self.agency {
            return Err(AccessError::Denied(format!(
                "client {} does not belong to agency {}",
                client.spiffe_uri(),
                self.agency
            )));
        }
        match self.roles.get(&client.name) {
            Some(roles) if roles.contains(&role) => {
                if !self.rate.allow(client.name.as_str()) {
                    return Err(AccessError::RateLimited(format!(
                        "client `{}` exceeds its request rate (limits.requests_per_second_per_client); retry later",
                        client.name
                    )));
                }
                Ok(client.clone())
            }
            _ => Err(AccessError::Denied(format!(
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
    /// The caller, if it is a configured peer of this node within its rate.
    pub fn authorize(&self, identity: Option<&Identity>) -> Result<NodeIdentity, AccessError> {
        let Identity::Node(node) = identity.ok_or(AccessError::Unauthenticated)? else {
            return Err(AccessError::Denied(
                "a client certificate cannot call the peer API".into(),
            ));
        };
        if node.federation != self.federation {
            return Err(AccessError::Denied(format!(
                "{} is not in federation {}",
                node.spiffe_uri(),
                self.federation
            )));
        }
        if !self.peers.contains(&node.agency) {
            return Err(AccessError::Denied(format!(
                "agency `{}` is not a configured peer of this node",
                node.agency
            )));
        }
        if !self.rate.allow(node.agency.as_str()) {
            return Err(AccessError::RateLimited(format!(
                "peer `{}` exceeds its request rate here; retry later",
                node.agency
            )));
        }
        Ok(node.clone())
    }
}
