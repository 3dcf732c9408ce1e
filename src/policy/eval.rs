//! Evaluating a policy for one alert and one peer.

use std::time::SystemTime;

use super::model::{Effect, IdLevel};
use super::{Conditions, Grant, Policy, Rule};
use crate::ids::AgencyId;
use crate::proto::v1::{IdentifierType, StoredAlert, Tlp};

/// The level at which a policy must share an identifier type for a match
/// found `by` this means to be disclosed (in a hit notice, a lookup answer)
/// or for an encoding to be sent: exact for tokens, `fuzzy` for person
/// encodings blocked by year of birth, `fuzzy_wide` for those blocked by
/// name sound.
pub fn level_needed(kind: i32, by: crate::matching::MatchedBy) -> IdLevel {
    use crate::matching::MatchedBy;
    use crate::proto::v1::BlockKind;
    match by {
        MatchedBy::Encoding(BlockKind::NameSound) if kind == IdentifierType::Person as i32 => {
            IdLevel::FuzzyWide
        }
        MatchedBy::Encoding(_) if kind == IdentifierType::Person as i32 => IdLevel::Fuzzy,
        _ => IdLevel::Exact,
    }
}

/// The outcome for one (alert, peer), with the rule that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// `Some` when the alert is shared, with what may be sent.
    pub grant: Option<Grant>,
    /// The deciding rule, or `None` for a built-in decision.
    pub rule: Option<String>,
    /// Why, in words an administrator can act on.
    pub reason: String,
}

impl Decision {
    fn builtin(reason: &str) -> Self {
        Self {
            grant: None,
            rule: None,
            reason: reason.into(),
        }
    }
}

/// What the conditions look at, computed once per evaluation.
pub(super) struct Facts<'a> {
    pub(super) content: &'a crate::proto::v1::AlertContent,
    types: std::collections::BTreeSet<i32>,
    age: std::time::Duration,
}

impl<'a> Facts<'a> {
    pub(super) fn of(alert: &'a StoredAlert, now: SystemTime) -> Option<Self> {
        let a = alert.alert.as_ref()?;
        let content = a.content.as_ref()?;
        let types = alert
            .pseudonyms
            .iter()
            .flat_map(|s| s.tokens.iter().map(|t| t.r#type))
            .chain(
                alert
                    .pseudonyms
                    .iter()
                    .filter(|s| !s.encodings.is_empty())
                    .map(|_| IdentifierType::Person as i32),
            )
            .collect();
        let created = a
            .created_at
            .map_or(now, |t| crate::time::system_time_lossy(&t));
        Some(Self {
            content,
            types,
            age: now.duration_since(created).unwrap_or_default(),
        })
    }
}

fn applies(rule: &Rule, f: &Facts<'_>, peer: &AgencyId) -> bool {
    let strict = f.content.tlp == Tlp::AmberStrict as i32;
    let reaches = rule.named.contains(peer) || (!strict && rule.via_group.contains(peer));
    reaches && holds(&rule.when, f)
}

pub(super) fn holds(w: &Conditions, f: &Facts<'_>) -> bool {
    let c = f.content;
    w.categories
        .as_ref()
        .is_none_or(|s| s.contains(&c.category))
        && w.min_severity.is_none_or(|m| c.severity >= m)
        && w.min_confidence.is_none_or(|m| c.confidence >= m)
        && w.tlp.as_ref().is_none_or(|s| s.contains(&c.tlp))
        && w.handling
            .as_ref()
            .is_none_or(|s| s.contains(&c.handling_code))
        && w.indicators_any
            .as_ref()
            .is_none_or(|s| c.indicators.iter().any(|i| s.contains(i)))
        && w.indicators_all.iter().all(|i| c.indicators.contains(i))
        && w.identifier_types
            .as_ref()
            .is_none_or(|s| f.types.iter().any(|t| s.contains(t)))
        && w.max_age.is_none_or(|max| f.age <= max)
}

/// Decides whether `alert` goes to `peer`, and at which levels. `own` is this
/// node's agency: alerts from anyone else are never re-shared.
pub fn evaluate(
    policy: &Policy,
    alert: &StoredAlert,
    own: &AgencyId,
    peer: &AgencyId,
    now: SystemTime,
) -> Decision {
    evaluate_all(policy, alert, own, std::slice::from_ref(peer), now)
        .pop()
        .map(|(_, d)| d)
        .unwrap_or_else(|| Decision::builtin("no peer"))
}

/// [`evaluate`] for several peers, looking at the alert once.
pub fn evaluate_all<'p>(
    policy: &Policy,
    alert: &StoredAlert,
    own: &AgencyId,
    peers: &'p [AgencyId],
    now: SystemTime,
) -> Vec<(&'p AgencyId, Decision)> {
    let all = |d: Decision| peers.iter().map(|p| (p, d.clone())).collect();
    let Some(a) = &alert.alert else {
        return all(Decision::builtin("no alert"));
    };
    if a.origin != own.as_str() {
        return all(Decision::builtin("received alerts are never re-shared"));
    }
    if a.content.as_ref().is_some_and(|c| c.tlp == Tlp::Red as i32) {
        return all(Decision::builtin("TLP:RED never leaves the node"));
    }
    let Some(facts) = Facts::of(alert, now) else {
        return all(Decision::builtin("no content to share"));
    };
    let handling = a.content.as_ref().map_or(0, |c| c.handling_code);
    peers
        .iter()
        .map(|peer| {
            // The handling code's promise first: no rule overrides it.
            let kind = policy.kinds.get(peer).copied();
            if let Some(why) = crate::handling::withheld(handling, peer, kind) {
                return (peer, Decision::builtin(&why));
            }
            let decision = policy
                .rules
                .iter()
                .find(|rule| applies(rule, &facts, peer))
                .map_or_else(
                    || Decision::builtin("no rule applies (default deny)"),
                    |rule| match rule.effect {
                        Effect::Share => Decision {
                            grant: Some(rule.grant.clone()),
                            rule: Some(rule.name.clone()),
                            reason: format!("rule `{}` (line {}) shares", rule.name, rule.line),
                        },
                        Effect::Deny => Decision {
                            grant: None,
                            rule: Some(rule.name.clone()),
                            reason: format!("rule `{}` (line {}) denies", rule.name, rule.line),
                        },
                    },
                );
            (peer, decision)
        })
        .collect()
}

/// The outcome of the inbound policy for one delivered alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundDecision {
    pub accepted: bool,
    /// The deciding inbound rule, or `None` for the default (accept).
    pub rule: Option<String>,
    pub reason: String,
}

/// Decides whether to keep an alert `from` delivered (as it would be stored
/// here). A tombstone is always accepted: it only removes content, and
/// refusing it would leave a retracted alert's content behind.
pub fn evaluate_inbound(
    policy: &Policy,
    received: &StoredAlert,
    from: &AgencyId,
    now: SystemTime,
) -> InboundDecision {
    let accept = |reason: &str| InboundDecision {
        accepted: true,
        rule: None,
        reason: reason.into(),
    };
    let Some(facts) = Facts::of(received, now) else {
        return accept("tombstones are always accepted");
    };
    policy
        .inbound
        .iter()
        .find(|r| r.from.as_ref().is_none_or(|f| f.contains(from)) && holds(&r.when, &facts))
        .map_or_else(
            || accept("no inbound rule applies (default accept)"),
            |r| InboundDecision {
                accepted: !r.refuse,
                rule: Some(r.name.clone()),
                reason: format!(
                    "inbound rule `{}` (line {}) {}",
                    r.name,
                    r.line,
                    if r.refuse { "refuses" } else { "accepts" }
                ),
            },
        )
}
