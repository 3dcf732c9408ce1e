//! Who this node's peers are right now, for every part of the node that
//! asks: the peer listener (who may call), delivery (whom to send to and
//! where), sharing (whom a rule can reach, and what kind each is), lookups
//! and disclosure (whom to ask). One value in force, swapped whole when a
//! newer directory is adopted, so no part sees half a membership change.
//!
//! Without a `[directory]` the roster is `[[peers]]` of `node.toml`, read
//! once; with one it is the directory in force, less this node itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::handling::{PeerKind, PeerKinds};
use crate::ids::AgencyId;
use crate::proto::v1::Directory;

/// One peer as this node deals with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub agency: AgencyId,
    /// `host:port` of its peer listener, most preferred first.
    pub endpoints: Vec<String>,
    pub kind: Option<PeerKind>,
    /// Directory groups (`group:NAME` in a policy); none without a directory.
    pub groups: BTreeSet<String>,
    /// Listed, but refused and not delivered to (its outbox is held).
    pub suspended: bool,
    /// SHA-256 of the public key its node certificate must carry, when
    /// the directory pins one (checked on both listeners' sides).
    pub key_sha256: Option<[u8; 32]>,
}

impl Member {
    /// Where to dial it.
    pub fn address(&self) -> Option<&str> {
        self.endpoints.first().map(String::as_str)
    }
}

/// The membership in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// The directory version it comes from; `None`: `[[peers]]`.
    pub version: Option<u64>,
    members: BTreeMap<AgencyId, Member>,
    /// Every group the directory names, this node's own too (a group
    /// whose only member is this node still exists for its policy).
    group_names: BTreeSet<String>,
    /// Why nothing goes out to anyone now (the directory expired past
    /// its grace); peers stay peers and are still greeted, so a fresh
    /// version can arrive.
    pub hold: Option<String>,
    /// The directory's statistics plan, if it has one.
    pub statistics: Option<Arc<crate::stats::plan::PlanInForce>>,
}

impl Members {
    /// `[[peers]]` of a node without a directory.
    pub fn listed(peers: impl IntoIterator<Item = Member>) -> Self {
        Self {
            version: None,
            members: peers.into_iter().map(|m| (m.agency.clone(), m)).collect(),
            group_names: BTreeSet::new(),
            hold: None,
            statistics: None,
        }
    }

    /// Peers known by id only (a store opened outside a node, tests).
    pub fn ids(ids: impl IntoIterator<Item = AgencyId>) -> Self {
        Self::listed(ids.into_iter().map(|agency| Member {
            agency,
            endpoints: Vec::new(),
            kind: None,
            groups: BTreeSet::new(),
            suspended: false,
            key_sha256: None,
        }))
    }

    /// The members of `d` other than `own`. Entries that break the
    /// directory's rules cannot be here: only a checked directory is
    /// adopted; a member whose id or kind does not parse is left out
    /// rather than trusted half-read.
    pub fn of_directory(d: &Directory, own: &AgencyId) -> Self {
        let members = d
            .members
            .iter()
            .filter(|m| m.agency_id != own.as_str() && !m.endpoints.is_empty())
            .filter_map(|m| {
                let agency = AgencyId::new(m.agency_id.as_str()).ok()?;
                let kind = serde_json::from_value(serde_json::Value::String(m.kind.clone())).ok();
                Some(Member {
                    agency,
                    endpoints: m.endpoints.clone(),
                    kind,
                    groups: m.groups.iter().cloned().collect(),
                    suspended: m.suspended,
                    key_sha256: crate::text::unhex(&m.key_sha256)
                        .and_then(|k| <[u8; 32]>::try_from(k).ok()),
                })
            })
            .map(|m| (m.agency.clone(), m))
            .collect();
        Self {
            version: Some(d.version),
            members,
            group_names: d
                .members
                .iter()
                .flat_map(|m| m.groups.iter().cloned())
                .collect(),
            hold: None,
            statistics: d
                .statistics
                .as_ref()
                .and_then(crate::stats::plan::PlanInForce::of)
                .map(Arc::new),
        }
    }

    /// Whether `agency` is a peer now: listed and not suspended.
    pub fn is_peer(&self, agency: &AgencyId) -> bool {
        self.members.get(agency).is_some_and(|m| !m.suspended)
    }

    /// Why `agency` is not a peer now, for refusals and held entries:
    /// `None` if it is one.
    pub fn why_not(&self, agency: &AgencyId) -> Option<String> {
        let source = match self.version {
            Some(v) => format!("directory version {v}"),
            None => "this node's [[peers]]".to_owned(),
        };
        match self.members.get(agency) {
            Some(m) if m.suspended => Some(format!("agency `{agency}` is suspended by {source}")),
            Some(_) => None,
            None if self.version.is_none() => Some(format!(
                "agency `{agency}` is not a configured peer of this node"
            )),
            None => Some(format!("agency `{agency}` is not a member in {source}")),
        }
    }

    /// Every listed member, suspended ones too.
    pub fn all(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn get(&self, agency: &AgencyId) -> Option<&Member> {
        self.members.get(agency)
    }

    /// The peers now (suspended members left out), by agency id.
    pub fn peers(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| !m.suspended)
    }

    pub fn peer_ids(&self) -> Vec<AgencyId> {
        self.peers().map(|m| m.agency.clone()).collect()
    }

    /// Every listed member's id: the names a policy may use.
    pub fn known_ids(&self) -> BTreeSet<AgencyId> {
        self.members.keys().cloned().collect()
    }

    /// The kind of every member whose kind is known.
    pub fn kinds(&self) -> PeerKinds {
        self.members
            .values()
            .filter_map(|m| Some((m.agency.clone(), m.kind?)))
            .collect()
    }

    /// The directory groups and their members (suspended ones too: a
    /// group is what the directory says; delivery skips the suspended).
    pub fn groups(&self) -> BTreeMap<String, BTreeSet<AgencyId>> {
        let mut out: BTreeMap<String, BTreeSet<AgencyId>> = self
            .group_names
            .iter()
            .map(|g| (g.clone(), BTreeSet::new()))
            .collect();
        for m in self.members.values() {
            for g in &m.groups {
                out.entry(g.clone()).or_default().insert(m.agency.clone());
            }
        }
        out
    }
}

/// The membership in force, shared: read at each use, replaced whole.
#[derive(Clone)]
pub struct Roster(Arc<tokio::sync::watch::Sender<Arc<Members>>>);

impl Roster {
    pub fn new(members: Members) -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(Arc::new(members))))
    }

    /// The membership now.
    pub fn now(&self) -> Arc<Members> {
        self.0.borrow().clone()
    }

    /// Puts `members` in force; whoever follows the roster is told.
    pub fn replace(&self, members: Members) {
        self.0.send_replace(Arc::new(members));
    }

    /// Told of every replacement (the delivery workers, the sharing policy).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Members>> {
        self.0.subscribe()
    }
}

impl Default for Roster {
    fn default() -> Self {
        Self::new(Members::default())
    }
}

impl std::fmt::Debug for Roster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.now().fmt(f)
    }
}
