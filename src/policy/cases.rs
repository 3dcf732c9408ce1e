//! A policy's own test cases: expected outcomes for example alerts, per
//! peer (outbound), per delivering agency (inbound) and per requester and
//! legal basis (disclosure). Read from a TOML cases file; run here, without
//! I/O, by `casebridge policy test` and by the node (`TestPolicy`, the web
//! console's policy editor), which each turn a case's alert file into the
//! stored record a submit would make.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::Deserialize;

use super::{DisclosureVerdict, Policy, evaluate, evaluate_disclosure, evaluate_inbound};
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::{AlertDraft, Category, LegalBasis, Severity, StoredAlert, Tlp};

/// One expectation in a cases file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// AlertDraft JSON file, relative to the cases file.
    pub alert: PathBuf,
    /// Outbound case: the peer the alert would be shared with.
    pub peer: Option<String>,
    /// Inbound case: the peer delivering the alert to this node.
    pub from: Option<String>,
    /// Disclosure case: the agency requesting the alert's data, and under
    /// which legal basis (`victim_referral_consent`, ...).
    pub requester: Option<String>,
    pub legal_basis: Option<String>,
    /// `share` or `deny` (outbound), `accept` or `refuse` (inbound),
    /// `release` or `refuse` (disclosure).
    pub expect: String,
    /// The rule expected to decide (omit for the built-in decisions).
    pub rule: Option<String>,
    /// Overrides applied to the alert file, to test variants of one alert.
    pub tlp: Option<String>,
    pub category: Option<String>,
    pub severity: Option<String>,
    /// `h0` … `h3`: the handling code.
    pub handling: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

/// What one case found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    pub name: String,
    /// What the case expects, with its rule: `share by rule \`x\``.
    pub expected: String,
    pub got: String,
    pub rule: Option<String>,
    pub reason: String,
    pub passed: bool,
}

/// Reads a cases file; a problem comes back as `line: message`.
pub fn parse(text: &str) -> Result<Vec<Case>, String> {
    toml::from_str::<Cases>(text).map(|c| c.cases).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let line = text[..offset.min(text.len())].matches('\n').count() + 1;
        format!("{line}: {}", e.message().trim())
    })
}

/// A lower-case enum name as a cases file or the CLI writes it
/// (`sexual_exploitation`), as the wire value `parse` reads with `prefix`.
pub fn enum_value(
    kind: &str,
    prefix: &str,
    value: &str,
    parse: fn(&str) -> Option<i32>,
) -> Result<i32, String> {
    parse(&format!("{prefix}{}", value.to_ascii_uppercase()))
        .ok_or_else(|| format!("unknown {kind} `{value}`"))
}

impl Case {
    /// Applies the case's overrides (TLP, category, severity) to its alert.
    pub fn apply_overrides(&self, draft: &mut AlertDraft) -> Result<(), String> {
        let Some(c) = draft.content.as_mut() else {
            return Ok(());
        };
        if let Some(t) = &self.tlp {
            c.tlp = enum_value("tlp", "TLP_", t, |n| {
                Tlp::from_str_name(n).map(|v| v as i32)
            })?;
        }
        if let Some(t) = &self.category {
            c.category = enum_value("category", "CATEGORY_", t, |n| {
                Category::from_str_name(n).map(|v| v as i32)
            })?;
        }
        if let Some(t) = &self.severity {
            c.severity = enum_value("severity", "SEVERITY_", t, |n| {
                Severity::from_str_name(n).map(|v| v as i32)
            })?;
        }
        if let Some(t) = &self.handling {
            c.handling_code = enum_value("handling", "HANDLING_CODE_", t, |n| {
                crate::proto::v1::HandlingCode::from_str_name(n).map(|v| v as i32)
            })?;
        }
        Ok(())
    }

    /// Runs the case on `record` (the stored form of its alert at `own`).
    pub fn run(
        &self,
        p: &Policy,
        own: &AgencyId,
        mut record: StoredAlert,
        now: SystemTime,
    ) -> Result<CaseOutcome, String> {
        let agency = |s: &str| AgencyId::new(s.to_owned()).map_err(|e| e.to_string());
        let (got, rule, reason) = match (&self.peer, &self.from, &self.requester) {
            (None, None, Some(requester)) => {
                let basis = self
                    .legal_basis
                    .as_deref()
                    .ok_or("a disclosure case needs `legal_basis`")?;
                let basis = enum_value("legal basis", "LEGAL_BASIS_", basis, |n| {
                    LegalBasis::from_str_name(n).map(|v| v as i32)
                })?;
                match evaluate_disclosure(p, &record, own, &agency(requester)?, basis, now) {
                    DisclosureVerdict::Allowed { rule, max } => (
                        "release",
                        Some(rule.clone()),
                        format!(
                            "rule `{rule}` lets an officer release at most: {}",
                            max.describe()
                        ),
                    ),
                    DisclosureVerdict::Refused { rule, reason, .. } => ("refuse", rule, reason),
                }
            }
            (Some(peer), None, None) => {
                let d = evaluate(p, &record, own, &agency(peer)?, now);
                let got = if d.grant.is_some() { "share" } else { "deny" };
                (got, d.rule, d.reason)
            }
            (None, Some(from), None) => {
                // The same alert as if `from` had recorded and delivered it.
                let from = agency(from)?;
                if let Some(a) = record.alert.as_mut() {
                    a.origin = from.to_string();
                    a.id = AlertId::generate(&from).to_string();
                }
                let d = evaluate_inbound(p, &record, &from, now);
                let got = if d.accepted { "accept" } else { "refuse" };
                (got, d.rule, d.reason)
            }
            _ => {
                return Err(
                    "give exactly one of `peer` (outbound), `from` (inbound) or `requester` (disclosure)"
                        .into(),
                );
            }
        };
        let rule_ok = self.rule.is_none() || self.rule == rule;
        Ok(CaseOutcome {
            name: self.name.clone(),
            expected: format!(
                "{}{}",
                self.expect,
                self.rule
                    .as_deref()
                    .map(|r| format!(" by rule `{r}`"))
                    .unwrap_or_default()
            ),
            passed: got == self.expect && rule_ok,
            got: format!(
                "{got}{}",
                rule.as_deref()
                    .map(|r| format!(" by rule `{r}`"))
                    .unwrap_or_default()
            ),
            rule,
            reason,
        })
    }
}
