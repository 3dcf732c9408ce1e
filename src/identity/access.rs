//! Who may do what, decided from an authenticated [`Identity`] alone. Every
//! channel that takes calls (the gRPC APIs today) extracts the identity its
//! transport authenticated and asks here, so roles and rate limits mean the
//! same on each.

use std::collections::BTreeMap;

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
    /// Replaced as a whole on SIGHUP (see [`ClientPolicy::replace_roles`]).
    pub roles: std::sync::RwLock<BTreeMap<ClientName, Roles>>,
    pub rate: RateLimiter,
}

/// What a new role table changed, by client name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RolesChange {
    pub added: Vec<ClientName>,
    pub removed: Vec<ClientName>,
    pub changed: Vec<ClientName>,
}

impl RolesChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl ClientPolicy {
    /// Puts `roles` in force for every later call (connections already open
    /// are judged by the new table at their next call) and says what changed.
    pub fn replace_roles(&self, roles: BTreeMap<ClientName, Roles>) -> RolesChange {
        let mut held = self.roles.write().unwrap_or_else(|p| p.into_inner());
        let mut change = RolesChange::default();
        for (name, r) in &roles {
            match held.get(name) {
                None => change.added.push(name.clone()),
                Some(old) if old != r => change.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        change.removed = held
            .keys()
            .filter(|n| !roles.contains_key(*n))
            .cloned()
            .collect();
        *held = roles;
        change
    }

    /// The caller, if it is one of this agency's clients holding `role` and
    /// within its request rate.
    pub fn authorize(
        &self,
        identity: Option<&Identity>,
        role: Role,
    ) -> Result<ClientIdentity, AccessError> {
        self.admit(identity, Some(role))
    }

    /// The caller, if it is one of this agency's clients holding at least
    /// one of `roles`, with those of them it holds (a call whose answer
    /// depends on them: a `request` client sees requests sent, a
    /// `disclose` client requests received).
    pub fn authorize_any(
        &self,
        identity: Option<&Identity>,
        roles: &[Role],
    ) -> Result<(ClientIdentity, Vec<Role>), AccessError> {
        let client = self.admit(identity, None)?;
        let held: Vec<Role> = {
            let table = self.roles.read().unwrap_or_else(|p| p.into_inner());
            let mine = table.get(&client.name);
            roles
                .iter()
                .copied()
                .filter(|r| mine.is_some_and(|m| m.contains(r)))
                .collect()
        };
        if held.is_empty() {
            let names: Vec<String> = roles.iter().map(|r| format!("`{r}`")).collect();
            return Err(AccessError::Denied(format!(
                "client `{}` has neither of the {} roles",
                client.name,
                names.join(" and ")
            )));
        }
        Ok((client, held))
    }

    /// The caller, if it is one of this agency's clients with any role:
    /// who may use the listener's health and reflection services.
    pub fn listed(&self, identity: Option<&Identity>) -> Result<ClientIdentity, AccessError> {
        self.admit(identity, None)
    }

    /// Who the caller is and the roles it holds, without spending its
    /// request rate: for a channel that shows only the controls a caller
    /// may use (the web console). Every action is still authorized by the
    /// operation itself.
    pub fn roles_of(&self, identity: &Identity) -> Result<(ClientIdentity, Roles), AccessError> {
        let client = self.member(identity)?;
        let roles = self.roles.read().unwrap_or_else(|p| p.into_inner());
        match roles.get(&client.name) {
            Some(r) => Ok((client.clone(), r.clone())),
            None => Err(AccessError::Denied(format!(
                "client `{}` is not listed in this node's [clients] (node.toml); ask its \
                 administrator to add it with its roles",
                client.name
            ))),
        }
    }

    /// The caller, if its certificate is one of this agency's clients
    /// (listed in `[clients]` or not).
    fn member<'a>(&self, identity: &'a Identity) -> Result<&'a ClientIdentity, AccessError> {
        let Identity::Client(client) = identity else {
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
        Ok(client)
    }

    fn admit(
        &self,
        identity: Option<&Identity>,
        role: Option<Role>,
    ) -> Result<ClientIdentity, AccessError> {
        let client = self.member(identity.ok_or(AccessError::Unauthenticated)?)?;
        let roles = self.roles.read().unwrap_or_else(|p| p.into_inner());
        match roles.get(&client.name) {
            // A listed client has at least one role (config refuses none).
            Some(roles) if role.is_none_or(|r| roles.contains(&r)) => {
                if !self.rate.allow(client.name.as_str()) {
                    return Err(AccessError::RateLimited(format!(
                        "client `{}` exceeds its request rate (limits.requests_per_second_per_client); retry later",
                        client.name
                    )));
                }
                Ok(client.clone())
            }
            Some(_) => Err(AccessError::Denied(match role {
                Some(role) => format!("client `{}` lacks the `{role}` role", client.name),
                None => format!("client `{}` has no role on this node", client.name),
            })),
            // Not a missing role: the certificate is not one the node
            // knows, which its administrator fixes in node.toml.
            None => Err(AccessError::Denied(format!(
                "client `{}` is not listed in this node's [clients] (node.toml); ask its \
                 administrator to add it with its roles",
                client.name
            ))),
        }
    }
}

/// Which nodes may call the peer API, and how often.
pub struct PeerPolicy {
    pub federation: FederationName,
    /// The membership in force: a member a newer directory removed or
    /// suspended is refused from the moment it is adopted.
    pub peers: crate::directory::roster::Roster,
    pub rate: RateLimiter,
    /// How often a refused caller is logged: a node that keeps knocking
    /// must not flood the log.
    pub logged: RateLimiter,
}

impl PeerPolicy {
    pub fn new(
        federation: FederationName,
        peers: crate::directory::roster::Roster,
        rate: RateLimiter,
    ) -> Self {
        Self {
            federation,
            peers,
            rate,
            // One line per caller every ten seconds at most.
            logged: RateLimiter::new(6, 1),
        }
    }

    /// The caller, if it is a configured peer of this node within its rate.
    /// A refused identity is logged (rate-limited per caller), not only
    /// audited: an unknown agency knocking is something to see.
    pub fn authorize(
        &self,
        identity: Option<&Identity>,
        presented_key: Option<[u8; 32]>,
    ) -> Result<NodeIdentity, AccessError> {
        let result = self.judge(identity, presented_key);
        if let Err(AccessError::Denied(why)) = &result {
            let who = match identity {
                Some(Identity::Node(n)) => n.spiffe_uri(),
                Some(Identity::Client(c)) => c.spiffe_uri(),
                None => "-".into(),
            };
            if self.logged.allow(&who) {
                tracing::warn!(caller = %who, reason = %why, "peer API call refused");
            }
        }
        result
    }

    fn judge(
        &self,
        identity: Option<&Identity>,
        presented_key: Option<[u8; 32]>,
    ) -> Result<NodeIdentity, AccessError> {
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
        let members = self.peers.now();
        if let Some(why) = members.why_not(&node.agency) {
            return Err(AccessError::Denied(why));
        }
        let pin = members.get(&node.agency).and_then(|m| m.key_sha256);
        if pin.is_some() && presented_key != pin {
            return Err(AccessError::Denied(format!(
                "agency `{}` presents a certificate key other than the one directory version {} pins",
                node.agency,
                members.version.unwrap_or_default()
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
