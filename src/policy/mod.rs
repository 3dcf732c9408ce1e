//! Sharing policy: which peer gets which alerts, at which granularity.
//!
//! Semantics, in one paragraph (also in `docs/policy.md`): rules are read top
//! to bottom and the **first rule that applies decides**; if none applies the
//! alert is **not shared** (default deny). A rule applies to a peer when the
//! rule names the peer, or names a group the peer is in — except for
//! TLP:AMBER+STRICT alerts, which only rules naming the peer itself can
//! share — and when every condition in its `when` table holds. A `share`
//! rule sends exactly the fields and levels in its `share` table and nothing
//! else. Whatever the rules say, TLP:RED alerts and alerts received from
//! other agencies never leave the node.
//!
//! `policy` does no I/O: it parses text, validates against the configured
//! peers, evaluates alerts, and builds the view of an alert that a grant
//! lets a peer see ([`shared_view_with`], the one builder of outbound
//! alerts).
//!
//! - [`model`]: the file as written (TOML);
//! - this file: parsing and validation against the configured peers, every
//!   problem at its file, line and column with a hint ([`PolicyError`]);
//! - `compiled`: the validated policy as values ([`Policy`], its [`Rule`]s
//!   with their [`Grant`]s, [`DisclosureRule`]s with their [`Release`]s);
//! - `eval`: the first applicable rule's decision ([`evaluate`],
//!   [`evaluate_all`], [`evaluate_inbound`]) and [`level_needed`]: the
//!   level at which an identifier type must be shared for a match found a
//!   given way to be told (`fuzzy` for person encodings of birth-year
//!   blocks, `fuzzy_wide` for name-sound ones);
//! - `view`: [`shared_view_with`], which sends person encodings by their
//!   block's kind;
//! - [`cases`]: a policy's own test cases, run by `casebridge policy test`
//!   and by `TestPolicy`;
//! - [`disclosure`]: the `[[disclosure]]` rules: who may request which
//!   alerts under which legal bases, and the most a release may hold
//!   ([`evaluate_disclosure`], [`Release::excess`]).

pub mod cases;
mod compiled;
pub mod disclosure;
mod eval;
pub mod model;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use compiled::{Conditions, DisclosureRule, Grant, InboundRule, Policy, Release, Rule};
pub use disclosure::{DisclosureVerdict, evaluate_disclosure};
pub use eval::{Decision, InboundDecision, evaluate, evaluate_all, evaluate_inbound, level_needed};
use model::{
    Effect, IdLevel, IdType, LegalBasisName, LocationLevel, PolicyFile, RuleFile, TimeLevel,
    TlpName,
};
pub use view::{released_content, shared_view_with, tombstone_view};

use crate::ids::AgencyId;
use crate::proto::v1::{
    Category, Confidence, HandlingCode, IdentifierType, Indicator, LegalBasis, Severity, Tlp,
};

/// One problem in a policy file, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

struct Ctx<'a> {
    file: &'a Path,
    src: &'a str,
    errors: Vec<PolicyError>,
    /// The groups of the federation directory in force, when the node
    /// follows one: what `group:NAME` in a `peers` list means.
    directory: Option<&'a DirectoryGroups>,
    /// Whether a group the directory does not define is an error (a text
    /// being installed or validated) or a group of no one, logged (the
    /// policy in force, when a newer directory drops a group: the node
    /// must not stop sharing everything for it, nor refuse to start).
    strict_groups: bool,
    /// Checked without a node: any agency id and any directory group is taken.
    any_peer: bool,
}

/// A directory's groups and their members (see `directory::roster`).
pub type DirectoryGroups = BTreeMap<String, BTreeSet<AgencyId>>;

/// How a `peers` entry names a group of the federation directory.
pub const DIRECTORY_GROUP: &str = "group:";

impl Ctx<'_> {
    fn err(&mut self, offset: usize, message: impl Into<String>, hint: Option<String>) {
        let before = &self.src[..offset.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.errors.push(PolicyError {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
            hint,
        });
    }
}

fn wire<T: Copy>(names: &[T], f: impl Fn(T) -> i32) -> BTreeSet<i32> {
    names.iter().map(|n| f(*n)).collect()
}

pub fn id_type(t: IdType) -> IdentifierType {
    match t {
        IdType::Phone => IdentifierType::Phone,
        IdType::Email => IdentifierType::Email,
        IdType::Person => IdentifierType::Person,
        IdType::Document => IdentifierType::Document,
        IdType::Iban => IdentifierType::Iban,
        IdType::CryptoWallet => IdentifierType::CryptoWallet,
        IdType::OnlineHandle => IdentifierType::OnlineHandle,
        IdType::VehiclePlate => IdentifierType::VehiclePlate,
        IdType::AdvertUrl => IdentifierType::AdvertUrl,
    }
}

fn indicator(name: &str) -> Option<i32> {
    Indicator::from_str_name(&format!("INDICATOR_{}", name.to_ascii_uppercase()))
        .filter(|i| *i != Indicator::Unspecified)
        .map(|i| i as i32)
}

/// Most reading problems a file can report at once. The TOML reader stops at
/// the first (an unknown field, a misspelt category); to name every one, the
/// offending line is commented out in a working copy (the same length, so
/// later positions stay those of the real file) and the copy read again,
/// until it reads or a line comes back. Only reading errors are collected
/// this way: checks of the policy's logic run on a file that reads, so a
/// commented-out line never causes a phantom finding.
fn every_reading_error(cx: &mut Ctx<'_>, src: &str, first: toml::de::Error) {
    const MAX: usize = 50;
    let mut work = src.as_bytes().to_vec();
    let mut error = first;
    let mut seen = BTreeSet::new();
    // Keys on the lines commented out: their absence is ours, not the file's.
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX {
        let at = error.span().map_or(0, |s| s.start).min(work.len());
        let message = error.message().trim().to_owned();
        let ours = removed
            .iter()
            .any(|k| message == format!("missing field `{k}`"));
        if ours {
            // A consequence of our own edit: nothing more to learn.
            break;
        }
        cx.err(at, message, None);
        let line = work[..at]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        // Comment the line out by its first byte (ASCII only, so the copy
        // stays valid UTF-8 and every offset stays put).
        if !seen.insert(line) || !work.get(line).is_some_and(u8::is_ascii) {
            break;
        }
        let end = work[line..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(work.len(), |i| line + i);
        if let Some((key, _)) = std::str::from_utf8(&work[line..end])
            .ok()
            .and_then(|l| l.split_once('='))
        {
            removed.push(key.trim().to_owned());
        }
        work[line] = b'#';
        let Ok(text) = std::str::from_utf8(&work) else {
            break;
        };
        match toml::from_str::<PolicyFile>(text) {
            Ok(_) => break,
            Err(e) => error = e,
        }
    }
    cx.errors.sort_by_key(|e| (e.line, e.column));
}

/// Parses and validates a policy against the peers the node has configured.
/// Returns every problem found, each with file, line, column and a hint.
pub fn parse(
    file: &Path,
    src: &str,
    peers: &BTreeSet<AgencyId>,
) -> Result<Policy, Vec<PolicyError>> {
    parse_with(file, src, Some(peers), None)
}

/// [`parse`] without a node's peer table: every check but whether a named
/// peer is configured (any well-formed agency id is taken, and any
/// `group:NAME`). For checking a policy's syntax and logic before any
/// node.toml exists.
pub fn parse_any_peer(file: &Path, src: &str) -> Result<Policy, Vec<PolicyError>> {
    parse_with(file, src, None, None)
}

/// [`parse`] for a node that follows a federation directory: any
/// well-formed agency id may be named (membership changes under the
/// policy; a rule naming a non-member reaches nobody), and `group:NAME`
/// means the members of that directory group now (an unknown group is an
/// error naming the groups there are).
pub fn parse_in_directory(
    file: &Path,
    src: &str,
    groups: &DirectoryGroups,
    strict: bool,
) -> Result<Policy, Vec<PolicyError>> {
    parse_with(file, src, None, Some((groups, strict)))
}

fn parse_with(
    file: &Path,
    src: &str,
    peers: Option<&BTreeSet<AgencyId>>,
    directory: Option<(&DirectoryGroups, bool)>,
) -> Result<Policy, Vec<PolicyError>> {
    let mut cx = Ctx {
        file,
        src,
        errors: Vec::new(),
        directory: directory.map(|(g, _)| g),
        strict_groups: directory.is_none_or(|(_, strict)| strict),
        any_peer: peers.is_none() && directory.is_none(),
    };
    let parsed: PolicyFile = match toml::from_str(src) {
        Ok(p) => p,
        Err(e) => {
            every_reading_error(&mut cx, src, e);
            return Err(cx.errors);
        }
    };
    let peer_list = peers
        .into_iter()
        .flatten()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let check_peer = |cx: &mut Ctx<'_>, p: &toml::Spanned<String>| -> Option<AgencyId> {
        match AgencyId::new(p.get_ref().clone()) {
            Ok(id) if peers.is_none_or(|peers| peers.contains(&id)) => Some(id),
            Err(e) if peers.is_none() => {
                cx.err(p.span().start, format!("`{}`: {e}", p.get_ref()), None);
                None
            }
            _ => {
                cx.err(
                    p.span().start,
                    format!("unknown peer `{}`", p.get_ref()),
                    Some(format!("configured peers: {peer_list}")),
                );
                None
            }
        }
    };
    let groups = compile_groups(&mut cx, &parsed, &check_peer);
    let mut rules: Vec<Rule> = Vec::new();
    for spanned in &parsed.rules {
        let rule = compile_rule(&mut cx, spanned, &groups, &check_peer, &rules);
        rules.push(rule);
    }
    let inbound = compile_inbound(&mut cx, &parsed, &groups, check_peer);
    let disclosure = compile_disclosure(&mut cx, &parsed, &groups, check_peer);
    if cx.errors.is_empty() {
        Ok(Policy {
            rules,
            kinds: Default::default(),
            inbound,
            disclosure,
        })
    } else {
        Err(cx.errors)
    }
}

/// `[groups]`: each group's members, each a configured peer.
fn compile_groups(
    cx: &mut Ctx<'_>,
    parsed: &PolicyFile,
    check_peer: &impl Fn(&mut Ctx<'_>, &toml::Spanned<String>) -> Option<AgencyId>,
) -> BTreeMap<String, BTreeSet<AgencyId>> {
    let mut groups = BTreeMap::new();
    for (name, members) in &parsed.groups {
        if members.get_ref().is_empty() {
            cx.err(
                members.span().start,
                format!("group `{name}` has no members"),
                None,
            );
        }
        let (mut set, grouped) = peer_entries(cx, members.get_ref(), check_peer);
        set.extend(grouped);
        groups.insert(name.clone(), set);
    }
    groups
}

/// One `[[rule]]`: its peers, conditions and grant, and whether an
/// earlier rule (`before`) always decides first, so it is never reached.
fn compile_rule(
    cx: &mut Ctx<'_>,
    spanned: &toml::Spanned<RuleFile>,
    groups: &BTreeMap<String, BTreeSet<AgencyId>>,
    check_peer: &impl Fn(&mut Ctx<'_>, &toml::Spanned<String>) -> Option<AgencyId>,
    before: &[Rule],
) -> Rule {
    let r: &RuleFile = spanned.get_ref();
    let at = spanned.span().start;
    let name = r.name.get_ref().clone();
    if before.iter().any(|o| o.name == name) {
        cx.err(
            r.name.span().start,
            format!("rule name `{name}` is used twice"),
            None,
        );
    }
    let (named, mut via_group) = peer_entries(cx, &r.peers, check_peer);
    via_group.extend(resolve_groups(cx, groups, &r.groups));
    if r.peers.is_empty() && r.groups.is_empty() {
        cx.err(
            at,
            format!("rule `{name}` names no peer and no group, so it never applies"),
            Some("add peers = [...] or groups = [...]".into()),
        );
    }
    let when = compile_when(cx, &r.when, r.effect == Effect::Share, &name);
    let grant = compile_share(cx, r, &name);
    let line = cx.src[..at.min(cx.src.len())].matches('\n').count() + 1;
    let rule = Rule {
        name,
        line,
        effect: r.effect,
        named,
        via_group,
        when,
        grant,
    };
    // Shadowing: an earlier rule that applies to all of this rule's peers
    // under the same or no conditions always decides first.
    if let Some(earlier) = before.iter().find(|e| {
        (e.when.is_unconditional() || e.when == rule.when)
            && e.all_peers().is_superset(&rule.all_peers())
    }) {
        cx.err(
            r.name.span().start,
            format!(
                "rule `{}` is never reached: rule `{}` (line {}) applies first to all its peers under {}",
                rule.name,
                earlier.name,
                earlier.line,
                if earlier.when.is_unconditional() { "no conditions" } else { "the same conditions" }
            ),
            Some(format!("move `{}` above `{}`, or narrow `{}`", rule.name, earlier.name, earlier.name)),
        );
    }
    rule
}

/// A `peers` list: the agency ids it names, and the members of the
/// directory groups it names as `group:NAME`.
fn peer_entries(
    cx: &mut Ctx<'_>,
    list: &[toml::Spanned<String>],
    check_peer: &impl Fn(&mut Ctx<'_>, &toml::Spanned<String>) -> Option<AgencyId>,
) -> (BTreeSet<AgencyId>, BTreeSet<AgencyId>) {
    let (mut named, mut grouped) = (BTreeSet::new(), BTreeSet::new());
    for p in list {
        let Some(group) = p.get_ref().strip_prefix(DIRECTORY_GROUP) else {
            named.extend(check_peer(cx, p));
            continue;
        };
        match cx.directory {
            Some(groups) => match groups.get(group) {
                Some(members) => grouped.extend(members.iter().cloned()),
                None if !cx.strict_groups => tracing::warn!(
                    policy = %cx.file.display(),
                    group,
                    "the policy names a group the directory in force does not define: it reaches no one"
                ),
                None => {
                    let known: Vec<&str> = groups.keys().map(String::as_str).collect();
                    cx.err(
                        p.span().start,
                        format!("unknown directory group `{group}`"),
                        Some(match known.is_empty() {
                            true => "the directory in force defines no group".into(),
                            false => {
                                format!("groups in the directory in force: {}", known.join(", "))
                            }
                        }),
                    )
                }
            },
            None if cx.any_peer => {}
            None => cx.err(
                p.span().start,
                format!(
                    "`{}` names a group of the federation directory, but this node follows none",
                    p.get_ref()
                ),
                Some("name the peers, or define a group under [groups]".into()),
            ),
        }
    }
    (named, grouped)
}

fn resolve_groups(
    cx: &mut Ctx<'_>,
    groups: &BTreeMap<String, BTreeSet<AgencyId>>,
    names: &[toml::Spanned<String>],
) -> BTreeSet<AgencyId> {
    let mut out = BTreeSet::new();
    for g in names {
        match groups.get(g.get_ref()) {
            Some(members) => out.extend(members.iter().cloned()),
            None => cx.err(
                g.span().start,
                format!("unknown group `{}`", g.get_ref()),
                Some(format!(
                    "define it under [groups], e.g. {} = [\"...\"]",
                    g.get_ref()
                )),
            ),
        }
    }
    out
}

/// Compiles `[[inbound]]` rules, reporting the same kinds of problems as for
/// share rules (unknown peers and groups, empty conditions, shadowing).
fn compile_inbound(
    cx: &mut Ctx<'_>,
    parsed: &PolicyFile,
    groups: &BTreeMap<String, BTreeSet<AgencyId>>,
    check_peer: impl Fn(&mut Ctx<'_>, &toml::Spanned<String>) -> Option<AgencyId>,
) -> Vec<InboundRule> {
    let mut out: Vec<InboundRule> = Vec::new();
    for spanned in &parsed.inbound {
        let r = spanned.get_ref();
        let name = r.name.get_ref().clone();
        if out.iter().any(|o| o.name == name) {
            cx.err(
                r.name.span().start,
                format!("inbound rule name `{name}` is used twice"),
                None,
            );
        }
        let (mut from, grouped) = peer_entries(cx, &r.peers, &check_peer);
        from.extend(grouped);
        from.extend(resolve_groups(cx, groups, &r.groups));
        let from = (!r.peers.is_empty() || !r.groups.is_empty()).then_some(from);
        let when = compile_when(cx, &r.when, false, &name);
        let at = spanned.span().start;
        let rule = InboundRule {
            line: cx.src[..at.min(cx.src.len())].matches('\n').count() + 1,
            name,
            refuse: r.effect == model::InboundEffect::Refuse,
            from,
            when,
        };
        let covers = |e: &InboundRule| match (&e.from, &rule.from) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a.is_superset(b),
        };
        if let Some(earlier) = out
            .iter()
            .find(|e| (e.when.is_unconditional() || e.when == rule.when) && covers(e))
        {
            cx.err(
                r.name.span().start,
                format!(
                    "inbound rule `{}` is never reached: inbound rule `{}` (line {}) applies first to all its peers",
                    rule.name, earlier.name, earlier.line
                ),
                Some(format!("move `{}` above `{}`, or narrow `{}`", rule.name, earlier.name, earlier.name)),
            );
        }
        out.push(rule);
    }
    out
}

/// `shares`: the conditions belong to a share rule (which can never share TLP:RED).
fn compile_when(cx: &mut Ctx<'_>, w: &model::When, shares: bool, name: &str) -> Conditions {
    let empty = |cx: &mut Ctx<'_>, span: std::ops::Range<usize>, what: &str| {
        cx.err(
            span.start,
            format!("rule `{name}`: an empty `{what}` list matches no alert"),
            Some(format!("remove `{what}` to match any value")),
        );
    };
    let categories = w.categories.as_ref().map(|c| {
        if c.get_ref().is_empty() {
            empty(cx, c.span(), "categories");
        }
        wire(c.get_ref(), category_wire)
    });
    let tlp = w.tlp.as_ref().map(|t| {
        if t.get_ref().is_empty() {
            empty(cx, t.span(), "tlp");
        }
        if shares && !t.get_ref().is_empty() && t.get_ref().iter().all(|l| *l == TlpName::Red) {
            cx.err(
                t.span().start,
                format!("rule `{name}` can never share: TLP:RED alerts never leave the node"),
                Some("remove the rule, or share other TLP levels".into()),
            );
        }
        wire(t.get_ref(), tlp_wire)
    });
    let handling = w.handling_codes.as_ref().map(|h| {
        if h.get_ref().is_empty() {
            empty(cx, h.span(), "handling_codes");
        }
        wire(h.get_ref(), handling_wire)
    });
    let indicators = |list: &[String], offset: usize, cx: &mut Ctx<'_>| -> BTreeSet<i32> {
        let mut out = BTreeSet::new();
        for i in list {
            match indicator(i) {
                Some(v) => {
                    out.insert(v);
                }
                None => cx.err(offset, format!("rule `{name}`: unknown indicator `{i}`"), Some("indicator names are those of proto Indicator in lower case without the prefix, e.g. debt_bondage".into())),
            }
        }
        out
    };
    let indicators_any = w.indicators_any.as_ref().map(|l| {
        if l.get_ref().is_empty() {
            empty(cx, l.span(), "indicators_any");
        }
        indicators(l.get_ref(), l.span().start, cx)
    });
    let indicators_all = w
        .indicators_all
        .as_ref()
        .map_or_else(BTreeSet::new, |l| indicators(l, 0, cx));
    let identifier_types = w.identifier_types.as_ref().map(|t| {
        if t.get_ref().is_empty() {
            empty(cx, t.span(), "identifier_types");
        }
        wire(t.get_ref(), |t| id_type(t) as i32)
    });
    let max_age = w.max_age_days.as_ref().map(|d| {
        if *d.get_ref() == 0 {
            cx.err(
                d.span().start,
                format!("rule `{name}`: max_age_days = 0 matches no alert"),
                Some("use 1 or more".into()),
            );
        }
        Duration::from_secs(u64::from(*d.get_ref()) * 86_400)
    });
    Conditions {
        categories,
        min_severity: w.min_severity.map(severity_wire),
        min_confidence: w.min_confidence.map(confidence_wire),
        tlp,
        handling,
        indicators_any,
        indicators_all,
        identifier_types,
        max_age,
    }
}

/// The wire values of the names a policy file writes.
fn category_wire(c: model::CategoryName) -> i32 {
    (match c {
        model::CategoryName::LabourExploitation => Category::LabourExploitation,
        model::CategoryName::SexualExploitation => Category::SexualExploitation,
        model::CategoryName::CriminalExploitation => Category::CriminalExploitation,
        model::CategoryName::ChildTrafficking => Category::ChildTrafficking,
        model::CategoryName::OrganRemoval => Category::OrganRemoval,
        model::CategoryName::Other => Category::Other,
    }) as i32
}

fn tlp_wire(l: TlpName) -> i32 {
    (match l {
        TlpName::Clear => Tlp::Clear,
        TlpName::Green => Tlp::Green,
        TlpName::Amber => Tlp::Amber,
        TlpName::AmberStrict => Tlp::AmberStrict,
        TlpName::Red => Tlp::Red,
    }) as i32
}

fn handling_wire(c: model::HandlingName) -> i32 {
    (match c {
        model::HandlingName::H0 => HandlingCode::H0,
        model::HandlingName::H1 => HandlingCode::H1,
        model::HandlingName::H2 => HandlingCode::H2,
        model::HandlingName::H3 => HandlingCode::H3,
    }) as i32
}

fn severity_wire(s: model::SeverityName) -> i32 {
    (match s {
        model::SeverityName::Low => Severity::Low,
        model::SeverityName::Medium => Severity::Medium,
        model::SeverityName::High => Severity::High,
        model::SeverityName::Critical => Severity::Critical,
    }) as i32
}

fn confidence_wire(c: model::ConfidenceName) -> i32 {
    (match c {
        model::ConfidenceName::Low => Confidence::Low,
        model::ConfidenceName::Moderate => Confidence::Moderate,
        model::ConfidenceName::High => Confidence::High,
        model::ConfidenceName::Confirmed => Confidence::Confirmed,
    }) as i32
}

fn compile_share(cx: &mut Ctx<'_>, r: &RuleFile, name: &str) -> Grant {
    let Some(share) = &r.share else {
        return Grant::nothing();
    };
    if r.effect == Effect::Deny {
        cx.err(
            share.span().start,
            format!("rule `{name}` denies, so its [share] table would never be used"),
            Some("remove the share table or make the rule effect = \"share\"".into()),
        );
    }
    let s = share.get_ref();
    let mut identifiers = BTreeMap::new();
    for (t, level) in &s.identifiers {
        if *level.get_ref() >= IdLevel::Fuzzy && *t != IdType::Person {
            cx.err(
                level.span().start,
                format!("rule `{name}`: only persons have a fuzzy encoding"),
                Some("use \"exact\" for this identifier type".into()),
            );
        }
        identifiers.insert(id_type(*t) as i32, *level.get_ref());
    }
    Grant {
        location: s.location.unwrap_or(model::LocationLevel::None),
        time: s.time.unwrap_or(model::TimeLevel::None),
        narrative: s.narrative == Some(model::TextLevel::Full),
        indicators: s.indicators == Some(model::TextLevel::Full),
        identifiers,
    }
}

/// Compiles the `[[disclosure]]` rules, reporting unknown peers and groups,
/// rules that never apply, empty legal bases and shadowed rules.
fn compile_disclosure(
    cx: &mut Ctx<'_>,
    parsed: &model::PolicyFile,
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
        let (named, mut via_group) = peer_entries(cx, &r.peers, &check_peer);
        via_group.extend(resolve_groups(cx, groups, &r.groups));
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
        let when = compile_when(cx, &r.when, true, &name);
        let release = r.release.get_ref();
        let max = Release {
            location: release.location.unwrap_or(LocationLevel::None),
            time: release.time.unwrap_or(TimeLevel::None),
            narrative: release.narrative == Some(model::TextLevel::Full),
            indicators: release.indicators == Some(model::TextLevel::Full),
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

fn basis(b: LegalBasisName) -> i32 {
    (match b {
        LegalBasisName::Directive2023977 => LegalBasis::Directive2023977,
        LegalBasisName::PrumIi => LegalBasis::PrumIi,
        LegalBasisName::MutualLegalAssistance => LegalBasis::MutualLegalAssistance,
        LegalBasisName::VictimReferralConsent => LegalBasis::VictimReferralConsent,
        LegalBasisName::NationalLaw => LegalBasis::NationalLaw,
    }) as i32
}

#[cfg(test)]
mod tests;
