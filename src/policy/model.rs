//! The policy file as written by an administrator (TOML).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// What a rule does when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Share,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationLevel {
    None,
    Country,
    Region,
    City,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeLevel {
    None,
    Year,
    Month,
    Day,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextLevel {
    None,
    Full,
}

/// How one identifier type is shared: not at all, as exact tokens, or (for
/// persons) as tokens plus fuzzy encodings: blocked by year of birth only
/// (`fuzzy`), or also by the sound of each name word (`fuzzy_wide`), which
/// finds a person whose year of birth is wrong or missing at the price of
/// letting the peer group that agency's persons by name sound across years
/// (see docs/linkage.md, "What a peer can learn").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdLevel {
    None,
    Exact,
    Fuzzy,
    #[serde(rename = "fuzzy_wide")]
    FuzzyWide,
}

impl Effect {
    /// As a policy file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Share => "share",
            Self::Deny => "deny",
        }
    }
}

/// The policy file's spelling of each level, so what the node says (the
/// audit log's `levels`, `explain`, the console) is what a policy author
/// writes: `fuzzy_wide`, not Rust's `FuzzyWide`.
impl LocationLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Country => "country",
            Self::Region => "region",
            Self::City => "city",
        }
    }
}

impl TimeLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Year => "year",
            Self::Month => "month",
            Self::Day => "day",
        }
    }
}

impl IdLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Exact => "exact",
            Self::Fuzzy => "fuzzy",
            Self::FuzzyWide => "fuzzy_wide",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdType {
    Phone,
    Email,
    Person,
    Document,
    Iban,
    CryptoWallet,
    OnlineHandle,
    VehiclePlate,
    AdvertUrl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CategoryName {
    LabourExploitation,
    SexualExploitation,
    CriminalExploitation,
    ChildTrafficking,
    OrganRemoval,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeverityName {
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfidenceName {
    Low,
    Moderate,
    High,
    Confirmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlpName {
    Clear,
    Green,
    Amber,
    AmberStrict,
    Red,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlingName {
    H0,
    H1,
    H2,
    H3,
}

/// Conditions on the alert; all given ones must hold. Absent = no condition.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    pub categories: Option<Spanned<Vec<CategoryName>>>,
    pub min_severity: Option<SeverityName>,
    pub min_confidence: Option<ConfidenceName>,
    pub tlp: Option<Spanned<Vec<TlpName>>>,
    pub handling_codes: Option<Spanned<Vec<HandlingName>>>,
    pub indicators_any: Option<Spanned<Vec<String>>>,
    pub indicators_all: Option<Vec<String>>,
    /// The alert must carry at least one identifier of these types.
    pub identifier_types: Option<Spanned<Vec<IdType>>>,
    pub max_age_days: Option<Spanned<u32>>,
}

/// What a share rule sends, field by field. Absent = `none`: only what a
/// rule names leaves the node.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareSpec {
    pub location: Option<LocationLevel>,
    pub time: Option<TimeLevel>,
    pub narrative: Option<TextLevel>,
    pub indicators: Option<TextLevel>,
    #[serde(default)]
    pub identifiers: BTreeMap<IdType, Spanned<IdLevel>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub name: Spanned<String>,
    pub effect: Effect,
    #[serde(default)]
    pub peers: Vec<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub when: When,
    pub share: Option<Spanned<ShareSpec>>,
}

/// What an inbound rule does with a delivery from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundEffect {
    Accept,
    Refuse,
}

/// What this node accepts from whom. No `peers` and no `groups` means any peer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundRuleFile {
    pub name: Spanned<String>,
    pub effect: InboundEffect,
    #[serde(default)]
    pub peers: Vec<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub when: When,
}

/// The legal bases a disclosure rule may accept (proto `LegalBasis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasisName {
    #[serde(rename = "directive_2023_977")]
    Directive2023977,
    PrumIi,
    MutualLegalAssistance,
    VictimReferralConsent,
    NationalLaw,
}

/// The most a disclosure rule lets an officer release: content field
/// levels as in a share rule, and the identifier types that may go in
/// clear. Absent = nothing of that field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    pub location: Option<LocationLevel>,
    pub time: Option<TimeLevel>,
    pub narrative: Option<TextLevel>,
    pub indicators: Option<TextLevel>,
    #[serde(default)]
    pub identifiers: Vec<Spanned<IdType>>,
}

/// Who may request which of our alerts, under which legal bases, and the
/// most a decision may release. Rules are read top to bottom; the first
/// whose peers and conditions match decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosureRuleFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub peers: Vec<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    pub legal_bases: Spanned<Vec<LegalBasisName>>,
    #[serde(default)]
    pub when: When,
    pub release: Spanned<ReleaseSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    #[serde(default, rename = "rules")]
    pub rules: Vec<Spanned<RuleFile>>,
    #[serde(default)]
    pub inbound: Vec<Spanned<InboundRuleFile>>,
    #[serde(default)]
    pub disclosure: Vec<Spanned<DisclosureRuleFile>>,
}
