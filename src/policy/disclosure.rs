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

use std::time::SystemTime;

use super::Release;
use super::eval::{Facts, holds};
use crate::ids::AgencyId;
use crate::proto::v1::{LegalBasis, RefusalGround, StoredAlert, Tlp};

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
