//! A validated policy as values: [`Policy`], its outbound, inbound and
//! disclosure rules, the conditions they apply under, what a share rule
//! grants ([`Grant`]) and the most a disclosure rule lets an officer
//! release ([`Release`]). `mod.rs` compiles a policy file into these;
//! `eval`, `disclosure` and `view` read them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::model::{Effect, IdLevel, LocationLevel, TimeLevel};
use crate::ids::AgencyId;
use crate::proto::v1::IdentifierType;

/// Conditions compiled to wire enum values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditions {
    pub categories: Option<BTreeSet<i32>>,
    pub min_severity: Option<i32>,
    pub min_confidence: Option<i32>,
    pub tlp: Option<BTreeSet<i32>>,
    pub handling: Option<BTreeSet<i32>>,
    pub indicators_any: Option<BTreeSet<i32>>,
    pub indicators_all: BTreeSet<i32>,
    pub identifier_types: Option<BTreeSet<i32>>,
    pub max_age: Option<Duration>,
}

impl Conditions {
    pub(super) fn is_unconditional(&self) -> bool {
        *self == Conditions::default()
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub line: usize,
    pub effect: Effect,
    /// Peers the rule names itself.
    pub named: BTreeSet<AgencyId>,
    /// Peers the rule reaches through its groups.
    pub via_group: BTreeSet<AgencyId>,
    pub when: Conditions,
    pub grant: Grant,
}

impl Rule {
    pub(super) fn all_peers(&self) -> BTreeSet<AgencyId> {
        self.named.union(&self.via_group).cloned().collect()
    }
}

/// One inbound rule: what this node does with deliveries from some peers.
#[derive(Debug, Clone)]
pub struct InboundRule {
    pub name: String,
    pub line: usize,
    pub refuse: bool,
    /// The peers it applies to; `None` = every peer.
    pub from: Option<BTreeSet<AgencyId>>,
    pub when: Conditions,
}

/// A validated policy. Only a policy that validates exists as a value.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Outbound: what this node shares (first applicable rule decides, default deny).
    pub rules: Vec<Rule>,
    /// The peers' kinds, for the promises of handling codes that no rule
    /// can override (`crate::handling::withheld`); set by whoever knows
    /// the node's configuration ([`Policy::with_peer_kinds`]). Empty: no
    /// peer is taken for a law-enforcement agency.
    pub kinds: crate::handling::PeerKinds,
    /// Inbound: what this node accepts (first applicable rule decides, default accept).
    pub inbound: Vec<InboundRule>,
    /// Disclosure: who may request what, and the most that may be released
    /// (first applicable rule decides, default deny).
    pub disclosure: Vec<DisclosureRule>,
}

impl Policy {
    /// What a node without a policy applies: no rule, so nothing is
    /// shared or released (default deny). Valid by construction.
    pub fn deny_all() -> Self {
        Self {
            rules: Vec::new(),
            kinds: Default::default(),
            inbound: Vec::new(),
            disclosure: Vec::new(),
        }
    }

    /// This policy for a node whose peers are of `kinds`.
    pub fn with_peer_kinds(mut self, kinds: crate::handling::PeerKinds) -> Self {
        self.kinds = kinds;
        self
    }

    /// Rules that would share an H1 alert with a peer that is not a
    /// law-enforcement agency (the node withholds it whatever the rule
    /// says, so the rule does not do what it reads as): one line each,
    /// `line N: …`, for `policy validate`, `node check` and the log. A
    /// peer an earlier rule denies H1 alerts (or everything) is left out.
    pub fn handling_warnings(&self) -> Vec<(usize, String)> {
        let h1 = crate::proto::v1::HandlingCode::H1 as i32;
        let reaches_h1 = |c: &Conditions| c.handling.as_ref().is_none_or(|h| h.contains(&h1));
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.effect != Effect::Share || !reaches_h1(&rule.when) {
                continue;
            }
            for peer in rule.all_peers() {
                let kind = self.kinds.get(&peer).copied();
                if kind == Some(crate::handling::PeerKind::LawEnforcement) {
                    continue;
                }
                let denied_before = self.rules[..i].iter().any(|r| {
                    r.effect == Effect::Deny
                        && r.all_peers().contains(&peer)
                        && (r.when.is_unconditional()
                            || (r.when.handling.as_ref().is_some_and(|h| h.contains(&h1))
                                && Conditions {
                                    handling: None,
                                    ..r.when.clone()
                                }
                                .is_unconditional()))
                });
                if denied_before {
                    continue;
                }
                let what = kind.map_or("has no `kind` in node.toml", |k| k.phrase());
                out.push((
                    rule.line,
                    format!(
                        "rule `{}` would share H1 alerts with `{peer}` ({what}); H1 is for \
                         law-enforcement recipients only, so the node withholds them. Add \
                         `handling_codes = [\"h0\", \"h2\", \"h3\"]` to its conditions, or a deny \
                         rule for `handling_codes = [\"h1\"]` above it",
                        rule.name
                    ),
                ));
            }
        }
        out
    }
}

/// What a share rule lets leave the node: a level per field. Anything not
/// listed is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub location: LocationLevel,
    pub time: TimeLevel,
    pub narrative: bool,
    pub indicators: bool,
    /// Identifier type (wire value) → level; absent = none.
    pub identifiers: BTreeMap<i32, IdLevel>,
}

impl Grant {
    pub fn nothing() -> Self {
        Self {
            location: LocationLevel::None,
            time: TimeLevel::None,
            narrative: false,
            indicators: false,
            identifiers: BTreeMap::new(),
        }
    }

    /// Every field at full detail (the behaviour before sharing policies).
    pub fn everything() -> Self {
        Self {
            location: LocationLevel::City,
            time: TimeLevel::Day,
            narrative: true,
            indicators: true,
            identifiers: (1..=9)
                .map(|t| {
                    (
                        t,
                        if t == IdentifierType::Person as i32 {
                            IdLevel::Fuzzy
                        } else {
                            IdLevel::Exact
                        },
                    )
                })
                .collect(),
        }
    }

    /// The levels granted, for the audit log: `location=city time=day
    /// narrative indicators phone=exact person=fuzzy` (fields at `none` are
    /// left out).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.location != LocationLevel::None {
            parts.push(format!("location={}", self.location.as_str()));
        }
        if self.time != TimeLevel::None {
            parts.push(format!("time={}", self.time.as_str()));
        }
        if self.narrative {
            parts.push("narrative".into());
        }
        if self.indicators {
            parts.push("indicators".into());
        }
        for (&t, level) in &self.identifiers {
            if *level == IdLevel::None {
                continue;
            }
            let name = crate::proto::identifier_type_name(t);
            parts.push(format!("{name}={}", level.as_str()));
        }
        if parts.is_empty() {
            "ids only".into()
        } else {
            parts.join(" ")
        }
    }

    pub fn identifier(&self, t: i32) -> IdLevel {
        self.identifiers.get(&t).copied().unwrap_or(IdLevel::None)
    }
}

/// The most a rule lets an officer release (and, in the same terms, what an
/// officer chose to release).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub location: LocationLevel,
    pub time: TimeLevel,
    pub narrative: bool,
    pub indicators: bool,
    /// Identifier types (wire values) that may go in clear.
    pub identifiers: BTreeSet<i32>,
}

impl Release {
    /// Nothing at all.
    pub fn nothing() -> Self {
        Self {
            location: LocationLevel::None,
            time: TimeLevel::None,
            narrative: false,
            indicators: false,
            identifiers: BTreeSet::new(),
        }
    }

    /// The content levels as a share grant (no tokens: a release carries
    /// identifiers in clear, chosen separately).
    pub fn content_grant(&self) -> Grant {
        Grant {
            location: self.location,
            time: self.time,
            narrative: self.narrative,
            indicators: self.indicators,
            identifiers: Default::default(),
        }
    }

    /// `location=city time=day narrative phone person` (fields at none left out).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.location != LocationLevel::None {
            parts.push(format!("location={}", self.location.as_str()));
        }
        if self.time != TimeLevel::None {
            parts.push(format!("time={}", self.time.as_str()));
        }
        if self.narrative {
            parts.push("narrative".into());
        }
        if self.indicators {
            parts.push("indicators".into());
        }
        parts.extend(
            self.identifiers
                .iter()
                .map(|t| crate::proto::identifier_type_name(*t)),
        );
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(" ")
        }
    }

    /// Every field of `chosen` beyond this maximum, as (field, why): what a
    /// decision that asks for more must be told.
    pub fn excess(&self, chosen: &Release, rule: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let beyond = |field: &str, got: String, max: String| {
            (
                format!("release.{field}"),
                format!("`{got}` exceeds the policy's maximum `{max}` (disclosure rule `{rule}`)"),
            )
        };
        let name = |v: &dyn std::fmt::Debug| format!("{v:?}").to_ascii_lowercase();
        if chosen.location > self.location {
            out.push(beyond(
                "location",
                name(&chosen.location),
                name(&self.location),
            ));
        }
        if chosen.time > self.time {
            out.push(beyond("time", name(&chosen.time), name(&self.time)));
        }
        if chosen.narrative && !self.narrative {
            out.push(beyond("narrative", "full".into(), "none".into()));
        }
        if chosen.indicators && !self.indicators {
            out.push(beyond("indicators", "full".into(), "none".into()));
        }
        for t in chosen.identifiers.difference(&self.identifiers) {
            out.push((
                "release.identifiers".into(),
                format!(
                    "`{}` may not be released in clear (disclosure rule `{rule}` allows: {})",
                    crate::proto::identifier_type_name(*t),
                    if self.identifiers.is_empty() {
                        "none".into()
                    } else {
                        self.identifiers
                            .iter()
                            .map(|t| crate::proto::identifier_type_name(*t))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ));
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct DisclosureRule {
    pub name: String,
    pub line: usize,
    pub named: BTreeSet<AgencyId>,
    pub via_group: BTreeSet<AgencyId>,
    /// Accepted legal bases (wire values).
    pub legal_bases: BTreeSet<i32>,
    pub when: Conditions,
    pub max: Release,
}
