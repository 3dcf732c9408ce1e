//! The `[[disclosure]]` rules: which peers may request which of our alerts,
//! under which legal bases, and the most an officer may release to them.
//!
//! Semantics (also in `docs/policy.md`): rules are read top to bottom; the
//! first rule that reaches the requesting peer (named, or through a group
//! except for TLP:AMBER+STRICT alerts) and whose `when` conditions hold for
//! the alert decides. If its `legal_bases` hold the request's basis, an
//! officer may release up to its `release` table; otherwise the request is
//! refused automatically (legal basis not accepted). If no rule applies, it
//! is refused automatically (not authorised). Whatever the rules say,
//! TLP:RED alerts, retracted alerts and alerts received from other agencies
//! are never released.

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::eval::{Facts, holds};
use super::model::{LegalBasisName, LocationLevel, TimeLevel};
use super::{Conditions, Ctx, Grant, id_type};
use crate::ids::AgencyId;
use crate::proto::v1::{LegalBasis, RefusalGround, StoredAlert, Tlp};

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

/// What the policy says of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum DisclosureVerdict {
    /// An officer may decide, releasing at most `max`.
    Allowed { rule: String, max: Release },
    /// Refused without asking anyone, on this ground.
    Refused {
        ground: RefusalGround,
        rule: Option<String>,
        reason: String,
    },
}

fn basis(b: LegalBasisName) -> i32 {
    (match b {
        LegalBasisName::Directive2023977 => LegalBasis::Directive2023977,
        LegalBasisName::PrumIi => LegalBasis::PrumIi,
        LegalBasisName::MutualLegalAssistance => LegalBasis::MutualLegalAssistance,
        LegalBasisName::VictimReferralConsent => LegalBasis::VictimReferralConsent,
        LegalBasisName::NationalLaw => LegalBasis::NationalLaw,
    }) as i32
}

/// `prum_ii`, as the policy file writes a legal basis.
pub fn basis_name(b: i32) -> String {
    crate::proto::short_name(
        LegalBasis::try_from(b).map(|b| b.as_str_name()),
        "LEGAL_BASIS_",
    )
}

/// A legal basis as people read it where they choose or see one (the
/// console), not as the wire spells it ("Directive 2023 977").
pub fn basis_words(b: i32) -> &'static str {
    match LegalBasis::try_from(b) {
        Ok(LegalBasis::Directive2023977) => {
            "Directive (EU) 2023/977: information exchange between law enforcement authorities"
        }
        Ok(LegalBasis::PrumIi) => "Prüm II: follow-up of a Prüm hit (Regulation (EU) 2024/982)",
        Ok(LegalBasis::MutualLegalAssistance) => "Mutual legal assistance in criminal matters",
        Ok(LegalBasis::VictimReferralConsent) => "Referral of a victim who consented to it",
        Ok(LegalBasis::NationalLaw) => "A national law (name it under “Article, law or treaty”)",
        _ => "—",
    }
}

/// Decides what the policy allows for a request by `peer` under
/// `legal_basis` about `alert` (one of ours).
pub fn evaluate_disclosure(
    policy: &super::Policy,
    alert: &StoredAlert,
    own: &AgencyId,
    peer: &AgencyId,
    legal_basis: i32,
    now: SystemTime,
) -> DisclosureVerdict {
    let refuse = |ground, reason: &str| DisclosureVerdict::Refused {
        ground,
        rule: None,
        reason: reason.into(),
    };
    let Some(a) = &alert.alert else {
        return refuse(RefusalGround::NotAvailable, "the alert is not held here");
    };
    if a.origin != own.as_str() {
        return refuse(
            RefusalGround::NotAvailable,
            "the alert was received from another agency; only its origin can release it",
        );
    }
    if a.retracted {
        return refuse(RefusalGround::NotAvailable, "the alert was retracted");
    }
    let Some(facts) = Facts::of(alert, now) else {
        return refuse(
            RefusalGround::NotAvailable,
            "the alert holds no content any more",
        );
    };
    if facts.content.tlp == Tlp::Red as i32 {
        return refuse(
            RefusalGround::NotAuthorised,
            "TLP:RED never leaves the node",
        );
    }
    // The handling code's promise holds for releases too.
    let kind = policy.kinds.get(peer).copied();
    if let Some(why) = crate::handling::withheld(facts.content.handling_code, peer, kind) {
        return refuse(RefusalGround::NotAuthorised, &why);
    }
    let rules = &policy.disclosure;
    let strict = facts.content.tlp == Tlp::AmberStrict as i32;
    let Some(rule) = rules.iter().find(|r| {
        (r.named.contains(peer) || (!strict && r.via_group.contains(peer)))
            && holds(&r.when, &facts)
    }) else {
        return refuse(
            RefusalGround::NotAuthorised,
            &format!("no disclosure rule lets {peer} request this alert (default deny)"),
        );
    };
    if !rule.legal_bases.contains(&legal_basis) {
        return DisclosureVerdict::Refused {
            ground: RefusalGround::LegalBasisNotAccepted,
            rule: Some(rule.name.clone()),
            reason: format!(
                "disclosure rule `{}` (line {}) does not accept `{}`; it accepts: {}",
                rule.name,
                rule.line,
                basis_name(legal_basis),
                rule.legal_bases
                    .iter()
                    .map(|b| basis_name(*b))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    DisclosureVerdict::Allowed {
        rule: rule.name.clone(),
        max: rule.max.clone(),
    }
}

/// What the rules say of any request by one peer about one alert, over
/// every legal basis: for `policy explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct DisclosureSummary {
    /// The rule that would decide, when some basis is accepted.
    pub rule: Option<String>,
    /// The legal bases it accepts (wire values).
    pub legal_bases: Vec<i32>,
    /// The most an officer may release, when some basis is accepted.
    pub maximum: Option<Release>,
    /// Why every request would be refused, when none is accepted.
    pub refusal: String,
}

pub fn summarize(
    policy: &super::Policy,
    alert: &StoredAlert,
    own: &AgencyId,
    peer: &AgencyId,
    now: SystemTime,
) -> DisclosureSummary {
    let mut out = DisclosureSummary {
        rule: None,
        legal_bases: Vec::new(),
        maximum: None,
        refusal: String::new(),
    };
    for b in LegalBasis::Directive2023977 as i32..=LegalBasis::NationalLaw as i32 {
        match evaluate_disclosure(policy, alert, own, peer, b, now) {
            DisclosureVerdict::Allowed { rule, max } => {
                out.rule = Some(rule);
                out.maximum = Some(max);
                out.legal_bases.push(b);
            }
            DisclosureVerdict::Refused { reason, .. } => {
                if out.refusal.is_empty() {
                    out.refusal = reason;
                }
            }
        }
    }
    if out.rule.is_some() {
        out.refusal.clear();
    }
    out
}

/// Compiles the `[[disclosure]]` rules, reporting unknown peers and groups,
/// rules that never apply, empty legal bases and shadowed rules.
pub(super) fn compile(
    cx: &mut Ctx<'_>,
    parsed: &super::model::PolicyFile,
    groups: &std::collections::BTreeMap<String, BTreeSet<AgencyId>>,
    check_peer: impl Fn(&mut Ctx<'_>, &toml::Spanned<String>) -> Option<AgencyId>,
) -> Vec<DisclosureRule> {
    let mut out: Vec<DisclosureRule> = Vec::new();
    for spanned in &parsed.disclosure {
        let r = spanned.get_ref();
        let name = r.name.get_ref().clone();
        let at = spanned.span().start;
        if out.iter().any(|o| o.name == name) {
            cx.err(
                r.name.span().start,
                format!("disclosure rule name `{name}` is used twice"),
                None,
            );
        }
        let named: BTreeSet<AgencyId> = r.peers.iter().filter_map(|p| check_peer(cx, p)).collect();
        let via_group = super::resolve_groups(cx, groups, &r.groups);
        if r.peers.is_empty() && r.groups.is_empty() {
            cx.err(
                at,
                format!("disclosure rule `{name}` names no peer and no group, so it never applies"),
                Some("add peers = [...] or groups = [...]".into()),
            );
        }
        if r.legal_bases.get_ref().is_empty() {
            cx.err(
                r.legal_bases.span().start,
                format!("disclosure rule `{name}` accepts no legal basis, so it refuses every request"),
                Some("list them, e.g. legal_bases = [\"directive_2023_977\", \"victim_referral_consent\"]".into()),
            );
        }
        let when = super::compile_when(cx, &r.when, true, &name);
        let release = r.release.get_ref();
        let max = Release {
            location: release.location.unwrap_or(LocationLevel::None),
            time: release.time.unwrap_or(TimeLevel::None),
            narrative: release.narrative == Some(super::model::TextLevel::Full),
            indicators: release.indicators == Some(super::model::TextLevel::Full),
            identifiers: release
                .identifiers
                .iter()
                .map(|t| id_type(*t.get_ref()) as i32)
                .collect(),
        };
        let rule = DisclosureRule {
            line: cx.src[..at.min(cx.src.len())].matches('\n').count() + 1,
            name,
            named,
            via_group,
            legal_bases: r.legal_bases.get_ref().iter().map(|b| basis(*b)).collect(),
            when,
            max,
        };
        let peers = |r: &DisclosureRule| {
            r.named
                .union(&r.via_group)
                .cloned()
                .collect::<BTreeSet<_>>()
        };
        if let Some(earlier) = out.iter().find(|e| {
            (e.when == Conditions::default() || e.when == rule.when)
                && peers(e).is_superset(&peers(&rule))
        }) {
            cx.err(
                r.name.span().start,
                format!(
                    "disclosure rule `{}` is never reached: rule `{}` (line {}) applies first to all its peers",
                    rule.name, earlier.name, earlier.line
                ),
                Some(format!("move `{}` above `{}`, or narrow `{}`", rule.name, earlier.name, earlier.name)),
            );
        }
        out.push(rule);
    }
    out
}
