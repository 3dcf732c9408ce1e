//! Link analysis, pseudonymous: the alerts this node knows to be linked to
//! one of them through hits, a few steps out, as a graph (for the
//! console's network view and `GetAlertNetwork`), and the shortest chain
//! between two.
//!
//! A node knows only the hits that involve its own alerts, so the walk
//! goes from an own alert to other agencies' alerts and back to own
//! alerts linked to those. Other agencies' alerts appear by id and agency
//! only, whatever this node received of them. An alert that links more
//! than [`HUB_CAP`] others by one identifier type (a hotline number, a
//! shared office address) is shown with that type as one hub and not
//! expanded, as MISP's `correlation_limit` does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::{AlertNetwork, NetworkEdge, NetworkNode};
use crate::store::{Link, Store, StoreError};

/// Alerts one view holds at most.
pub const MAX_NODES: usize = 200;
/// Links from the alert asked about, at most.
pub const MAX_DEPTH: u32 = 4;
/// Links of one identifier type from one alert beyond which they are one hub.
pub const HUB_CAP: usize = 25;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("alert_id: {0}")]
    Invalid(String),
    #[error("alert {0} is not held here")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The network view of one node's store.
pub struct Network {
    store: Arc<Store>,
    own: AgencyId,
}

/// A walk in progress: what was reached, and how.
#[derive(Default)]
struct Walk {
    nodes: Vec<NetworkNode>,
    index: BTreeMap<String, usize>,
    parent: BTreeMap<String, String>,
    edges: Vec<NetworkEdge>,
    truncated: bool,
}

impl Network {
    pub fn new(store: Arc<Store>, own: AgencyId) -> Self {
        Self { store, own }
    }

    /// The graph around `start` (and the chain to `to`, if given).
    pub fn around(&self, start: &str, to: &str) -> Result<AlertNetwork, NetworkError> {
        let start: AlertId = start
            .parse()
            .map_err(|e: crate::ids::IdError| NetworkError::Invalid(e.to_string()))?;
        let to: Option<AlertId> = match to {
            "" => None,
            t => Some(t.parse().map_err(|e: crate::ids::IdError| {
                NetworkError::Invalid(format!("to_alert_id: {e}"))
            })?),
        };
        if start.origin() == &self.own && self.store.get(&start)?.is_none() {
            return Err(NetworkError::NotFound(start.to_string()));
        }
        let mut walk = Walk::default();
        self.reach(&mut walk, &start, 0, None)?;
        let mut queue = VecDeque::from([(start.clone(), 0u32)]);
        while let Some((id, depth)) = queue.pop_front() {
            if depth >= MAX_DEPTH {
                continue;
            }
            for next in self.expand(&mut walk, &id, depth)? {
                queue.push_back((next, depth + 1));
            }
        }
        let path = to.map(|t| path(&walk, &start, &t)).unwrap_or_default();
        Ok(AlertNetwork {
            nodes: walk.nodes,
            edges: walk.edges,
            path,
            truncated: walk.truncated,
        })
    }

    /// Adds `id`'s links to the walk; returns the alerts reached first here.
    fn expand(
        &self,
        walk: &mut Walk,
        id: &AlertId,
        depth: u32,
    ) -> Result<Vec<AlertId>, NetworkError> {
        let (links, more) = self.store.links(id, &self.own)?;
        let counted: Vec<Link> = links.into_iter().filter(Link::counts).collect();
        let mut by_type: BTreeMap<i32, Vec<Link>> = BTreeMap::new();
        for l in counted {
            by_type.entry(l.kind).or_default().push(l);
        }
        let mut reached = Vec::new();
        for (kind, links) in by_type {
            if links.len() > HUB_CAP || (more && links.len() == crate::store::MAX_LINKS) {
                self.hub(walk, id, kind, links.len(), depth);
                continue;
            }
            for l in links {
                let key = l.other.to_string();
                let from = id.to_string();
                // Each hit once: the walk meets it from both of its alerts.
                if walk
                    .edges
                    .iter()
                    .any(|e| e.from == key && e.to == from && e.r#type == l.kind)
                {
                    continue;
                }
                walk.edges.push(NetworkEdge {
                    from,
                    to: key.clone(),
                    r#type: l.kind,
                    strength: l.strength,
                    confirmed: l.confirmed(),
                });
                if walk.index.contains_key(&key) {
                    continue;
                }
                if walk.nodes.len() >= MAX_NODES {
                    walk.truncated = true;
                    walk.edges.pop();
                    continue;
                }
                self.reach(walk, &l.other, depth + 1, Some(id))?;
                reached.push(l.other);
            }
        }
        Ok(reached)
    }

    /// Adds alert `id` as a node at `depth`, reached from `from`.
    fn reach(
        &self,
        walk: &mut Walk,
        id: &AlertId,
        depth: u32,
        from: Option<&AlertId>,
    ) -> Result<(), NetworkError> {
        let own = id.origin() == &self.own;
        let title = if own {
            self.store
                .get(id)?
                .and_then(|r| r.alert)
                .map(|a| a.title)
                .unwrap_or_default()
        } else {
            String::new()
        };
        let key = id.to_string();
        if let Some(f) = from {
            walk.parent.insert(key.clone(), f.to_string());
        }
        walk.index.insert(key.clone(), walk.nodes.len());
        walk.nodes.push(NetworkNode {
            id: key,
            agency: id.origin().to_string(),
            own,
            depth,
            title,
            ..Default::default()
        });
        Ok(())
    }

    /// One hub for the `n` links of type `kind` from `id`.
    fn hub(&self, walk: &mut Walk, id: &AlertId, kind: i32, n: usize, depth: u32) {
        let key = format!("hub:{id}:{kind}");
        walk.edges.push(NetworkEdge {
            from: id.to_string(),
            to: key.clone(),
            r#type: kind,
            ..Default::default()
        });
        walk.index.insert(key.clone(), walk.nodes.len());
        walk.nodes.push(NetworkNode {
            id: key,
            depth: depth + 1,
            hub_links: n as u32,
            hub_type: kind,
            ..Default::default()
        });
    }
}

/// The chain from `start` to `to` through the walk's first reaches (a
/// shortest one: the walk is breadth first); empty if `to` was not reached.
fn path(walk: &Walk, start: &AlertId, to: &AlertId) -> Vec<String> {
    let (start, mut at) = (start.to_string(), to.to_string());
    if !walk.index.contains_key(&at) {
        return Vec::new();
    }
    let mut chain = vec![at.clone()];
    while at != start {
        match walk.parent.get(&at) {
            Some(p) => {
                at = p.clone();
                chain.push(at.clone());
            }
            None => return Vec::new(),
        }
    }
    chain.reverse();
    chain
}
