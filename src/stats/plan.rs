//! The statistics plan the federation directory carries, its rules (each
//! breach named by its field, as the rest of the directory's are) and the
//! typed plan a node computes from once the directory is adopted.
//!
//! The plan is federation-wide on purpose: every member must shape its
//! contributions the same way, or the aggregators' sums mean nothing, and
//! the privacy budget is the federation's, not one node's.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use time::{Date, Month, OffsetDateTime};

use crate::ids::{AgencyId, CountryCode};
use crate::proto::v1::{StatisticsPlan, StatisticsTable, StatisticsTableKind};
use crate::violation::FieldViolation;

/// Tables one plan may name: each is a release per quarter, and each
/// release costs every member one report per case.
pub const MAX_TABLES: usize = 16;
/// Countries with a row of their own (the rest share `other`): bounds the
/// length of a measurement, so the size of every report.
pub const MAX_COUNTRIES: usize = 64;
/// The default and CTDC's minimum cell size.
pub const DEFAULT_MIN_CELL: u32 = 11;
/// The largest ε one release or one quarter may be given, in thousandths:
/// beyond 10 the noise protects nobody, and the plan says so early.
pub const MAX_EPSILON_MILLI: u32 = 10_000;

/// A calendar quarter (UTC), the period every release covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: u16,
    quarter: u8,
}

/// Why a period did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a quarter (YYYY-Qn, e.g. 2026-Q1, years 2000 to 2200)")]
pub struct PeriodError(String);

impl Period {
    /// The quarter `year` Q`quarter`, if both are in range.
    pub fn new(year: u16, quarter: u8) -> Option<Self> {
        ((2000..=2200).contains(&year) && (1..=4).contains(&quarter))
            .then_some(Self { year, quarter })
    }

    /// The quarter holding the instant `unix_secs`.
    pub fn containing(unix_secs: i64) -> Option<Self> {
        let t = OffsetDateTime::from_unix_timestamp(unix_secs).ok()?;
        let year = u16::try_from(t.year()).ok()?;
        Self::new(year, (u8::from(t.month()) - 1) / 3 + 1)
    }

    /// Its first second (unix seconds, UTC).
    pub fn start(self) -> i64 {
        first_of(i32::from(self.year), (self.quarter - 1) * 3 + 1)
    }

    /// The first second after it.
    pub fn end(self) -> i64 {
        if self.quarter == 4 {
            first_of(i32::from(self.year) + 1, 1)
        } else {
            first_of(i32::from(self.year), self.quarter * 3 + 1)
        }
    }

    /// The quarter before it, within the years periods may name.
    pub fn previous(self) -> Option<Self> {
        if self.quarter == 1 {
            Self::new(self.year.checked_sub(1)?, 4)
        } else {
            Self::new(self.year, self.quarter - 1)
        }
    }

    /// The last quarter that ended before the instant `unix_secs`.
    pub fn last_ended(unix_secs: i64) -> Option<Self> {
        Self::containing(unix_secs)?.previous()
    }

    /// The quarter after it, within the years periods may name.
    pub fn next(self) -> Option<Self> {
        if self.quarter == 4 {
            Self::new(self.year + 1, 1)
        } else {
            Self::new(self.year, self.quarter + 1)
        }
    }
}

/// Midnight UTC on the first of `month` (1 to 12) of `year`.
fn first_of(year: i32, month: u8) -> i64 {
    let month = Month::try_from(month).expect("a month");
    Date::from_calendar_date(year, month, 1)
        .expect("the first of a month exists")
        .midnight()
        .assume_utc()
        .unix_timestamp()
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-Q{}", self.year, self.quarter)
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PeriodError(s.chars().take(32).collect());
        let (year, quarter) = s.split_once("-Q").ok_or_else(err)?;
        if year.len() != 4 || quarter.len() != 1 {
            return Err(err());
        }
        let year = year.parse().map_err(|_| err())?;
        let quarter = quarter.parse().map_err(|_| err())?;
        Self::new(year, quarter).ok_or_else(err)
    }
}

/// What a table counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableKind {
    Exploitation,
    Indicators,
    CrossAgency,
    Clusters,
    Victims,
    Recruitment,
}

impl TableKind {
    fn from_proto(kind: i32) -> Option<Self> {
        match StatisticsTableKind::try_from(kind).ok()? {
            StatisticsTableKind::Exploitation => Some(Self::Exploitation),
            StatisticsTableKind::Indicators => Some(Self::Indicators),
            StatisticsTableKind::CrossAgency => Some(Self::CrossAgency),
            StatisticsTableKind::Clusters => Some(Self::Clusters),
            StatisticsTableKind::Victims => Some(Self::Victims),
            StatisticsTableKind::Recruitment => Some(Self::Recruitment),
            StatisticsTableKind::Unspecified => None,
        }
    }

    /// The name of a wire kind (`unknown` for one this build lacks).
    pub fn name_of(kind: i32) -> &'static str {
        Self::from_proto(kind).map_or("unknown", Self::as_str)
    }

    /// Whether a case may count in several cells (a 0/1 vector, Prio3SumVec)
    /// rather than in one (a histogram bucket).
    pub fn multi_select(self) -> bool {
        matches!(self, Self::Indicators | Self::Recruitment)
    }

    /// The name a plan file and the command line use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exploitation => "exploitation",
            Self::Indicators => "indicators",
            Self::CrossAgency => "cross-agency",
            Self::Clusters => "clusters",
            Self::Victims => "victims",
            Self::Recruitment => "recruitment",
        }
    }

    /// The kind named `name` (as [`TableKind::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Exploitation,
            Self::Indicators,
            Self::CrossAgency,
            Self::Clusters,
            Self::Victims,
            Self::Recruitment,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

    /// Its wire value.
    pub fn to_proto(self) -> StatisticsTableKind {
        match self {
            Self::Exploitation => StatisticsTableKind::Exploitation,
            Self::Indicators => StatisticsTableKind::Indicators,
            Self::CrossAgency => StatisticsTableKind::CrossAgency,
            Self::Clusters => StatisticsTableKind::Clusters,
            Self::Victims => StatisticsTableKind::Victims,
            Self::Recruitment => StatisticsTableKind::Recruitment,
        }
    }
}

/// One table of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub kind: TableKind,
    /// ε of one release, in thousandths.
    pub epsilon_milli: u32,
    /// ε all releases of one quarter may spend, in thousandths.
    pub budget_milli: u32,
}

/// A plan that follows every rule of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The leader, then the helper.
    pub aggregators: [AgencyId; 2],
    pub min_cell: u32,
    pub countries: Vec<CountryCode>,
    pub collect_days: u32,
    pub tables: Vec<Table>,
    pub first_period: Period,
}

impl Plan {
    /// The plan `p` describes, or every rule it breaks, named under
    /// `at` (`statistics`), as [`check`] names them.
    pub fn from_proto(p: &StatisticsPlan, at: &str) -> Result<Self, Vec<FieldViolation>> {
        let violations = check(p, at);
        if !violations.is_empty() {
            return Err(violations);
        }
        let agency = |s: &str| AgencyId::new(s).expect("checked");
        Ok(Self {
            aggregators: [agency(&p.aggregators[0]), agency(&p.aggregators[1])],
            min_cell: p.min_cell,
            countries: p
                .countries
                .iter()
                .map(|c| CountryCode::new(c).expect("checked"))
                .collect(),
            collect_days: p.collect_days,
            tables: p
                .tables
                .iter()
                .map(|t| Table {
                    name: t.name.clone(),
                    kind: TableKind::from_proto(t.kind).expect("checked"),
                    epsilon_milli: t.epsilon_milli,
                    budget_milli: t.budget_milli,
                })
                .collect(),
            first_period: p.first_period.parse().expect("checked"),
        })
    }

    /// The plan as the directory carries it.
    pub fn to_proto(&self) -> StatisticsPlan {
        StatisticsPlan {
            aggregators: self.aggregators.iter().map(ToString::to_string).collect(),
            min_cell: self.min_cell,
            countries: self.countries.iter().map(ToString::to_string).collect(),
            collect_days: self.collect_days,
            tables: self
                .tables
                .iter()
                .map(|t| StatisticsTable {
                    name: t.name.clone(),
                    kind: t.kind.to_proto().into(),
                    epsilon_milli: t.epsilon_milli,
                    budget_milli: t.budget_milli,
                })
                .collect(),
            first_period: self.first_period.to_string(),
        }
    }

    /// The table named `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Which aggregator `agency` is (0: the leader, 1: the helper).
    pub fn aggregator_index(&self, agency: &AgencyId) -> Option<usize> {
        self.aggregators.iter().position(|a| a == agency)
    }

    /// When the aggregators of `period` verify and sum: `collect_days`
    /// after its end.
    pub fn aggregate_after(&self, period: Period) -> i64 {
        period.end() + i64::from(self.collect_days) * 86_400
    }
}

/// The plan of the directory in force, and the digest of its encoding
/// that every report and sum names: shares shaped by another plan would
/// not add up, so an aggregator refuses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInForce {
    pub plan: Plan,
    pub sha256: [u8; 32],
}

impl PlanInForce {
    /// `p` in force, if it follows the rules (the directory checked it).
    pub fn of(p: &StatisticsPlan) -> Option<Self> {
        use prost::Message;
        let plan = Plan::from_proto(p, "statistics").ok()?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &p.encode_to_vec());
        Some(Self {
            plan,
            sha256: digest.as_ref().try_into().expect("32 bytes"),
        })
    }
}

/// Every rule `p` breaks, each named under `at`; empty when it follows
/// them all. Membership of the aggregators is the directory's to check
/// (`directory::document`), since only it knows the members.
pub fn check(p: &StatisticsPlan, at: &str) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    let field = |f: &str| format!("{at}.{f}");
    check_aggregators(&p.aggregators, &field("aggregators"), &mut out);
    if p.min_cell < 2 {
        out.push(FieldViolation::new(
            field("min_cell"),
            format!("at least 2 (CTDC's is {DEFAULT_MIN_CELL})"),
        ));
    }
    check_countries(&p.countries, &field("countries"), &mut out);
    if !(1..=90).contains(&p.collect_days) {
        out.push(FieldViolation::new(field("collect_days"), "1 to 90 days"));
    }
    if p.first_period.parse::<Period>().is_err() {
        out.push(FieldViolation::new(
            field("first_period"),
            "a quarter, YYYY-Qn (e.g. 2026-Q1)",
        ));
    }
    check_tables(&p.tables, &field("tables"), &mut out);
    out
}

fn check_aggregators(aggregators: &[String], field: &str, out: &mut Vec<FieldViolation>) {
    if aggregators.len() != 2 {
        out.push(FieldViolation::new(
            field,
            "exactly two agency ids, the leader first",
        ));
        return;
    }
    for (i, a) in aggregators.iter().enumerate() {
        if AgencyId::new(a.as_str()).is_err() {
            out.push(FieldViolation::new(format!("{field}[{i}]"), "an agency id"));
        }
    }
    if aggregators[0] == aggregators[1] {
        out.push(FieldViolation::new(
            format!("{field}[1]"),
            "two different agencies: one alone would see every share",
        ));
    }
}

fn check_countries(countries: &[String], field: &str, out: &mut Vec<FieldViolation>) {
    if countries.len() > MAX_COUNTRIES {
        out.push(FieldViolation::new(
            field,
            format!("at most {MAX_COUNTRIES} countries"),
        ));
        return;
    }
    for (i, c) in countries.iter().enumerate() {
        if !CountryCode::is_valid(c) {
            out.push(FieldViolation::new(
                format!("{field}[{i}]"),
                "an ISO 3166-1 alpha-2 code in upper case",
            ));
        } else if i > 0 && countries[i - 1] >= *c {
            out.push(FieldViolation::new(
                format!("{field}[{i}]"),
                "countries are sorted, each once",
            ));
        }
    }
}

fn check_tables(tables: &[StatisticsTable], field: &str, out: &mut Vec<FieldViolation>) {
    if tables.is_empty() || tables.len() > MAX_TABLES {
        out.push(FieldViolation::new(
            field,
            format!("1 to {MAX_TABLES} tables"),
        ));
        return;
    }
    let mut names = BTreeSet::new();
    for (i, t) in tables.iter().enumerate() {
        let at = |f: &str| format!("{field}[{i}].{f}");
        if !valid_table_name(&t.name) {
            out.push(FieldViolation::new(
                at("name"),
                "1 to 32 lower-case letters, digits and dashes",
            ));
        } else if !names.insert(t.name.as_str()) {
            out.push(FieldViolation::new(
                at("name"),
                format!("table {} is named twice", t.name),
            ));
        }
        if TableKind::from_proto(t.kind).is_none() {
            out.push(FieldViolation::new(
                at("kind"),
                "exploitation, indicators, cross-agency or clusters",
            ));
        }
        if !(1..=MAX_EPSILON_MILLI).contains(&t.epsilon_milli) {
            out.push(FieldViolation::new(
                at("epsilon_milli"),
                format!("1 to {MAX_EPSILON_MILLI} (thousandths of epsilon)"),
            ));
        }
        if t.budget_milli < t.epsilon_milli || t.budget_milli > MAX_EPSILON_MILLI {
            out.push(FieldViolation::new(
                at("budget_milli"),
                format!("at least one release's epsilon, at most {MAX_EPSILON_MILLI}"),
            ));
        }
    }
}

/// A table name as plans, commands and Prometheus labels carry it.
pub fn valid_table_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(name: &str, kind: StatisticsTableKind, eps: u32, budget: u32) -> StatisticsTable {
        StatisticsTable {
            name: name.into(),
            kind: kind.into(),
            epsilon_milli: eps,
            budget_milli: budget,
        }
    }

    fn plan() -> StatisticsPlan {
        StatisticsPlan {
            aggregators: vec!["police".into(), "ngo".into()],
            min_cell: 11,
            countries: vec!["NL".into(), "RO".into()],
            collect_days: 14,
            tables: vec![table(
                "exploitation",
                StatisticsTableKind::Exploitation,
                1000,
                2000,
            )],
            first_period: "2026-Q1".into(),
        }
    }

    #[test]
    fn a_good_plan_is_typed_and_every_breach_is_named() {
        let p = Plan::from_proto(&plan(), "statistics").unwrap();
        assert_eq!(p.aggregator_index(&AgencyId::new("ngo").unwrap()), Some(1));
        assert_eq!(
            p.table("exploitation").unwrap().kind,
            TableKind::Exploitation
        );
        let bad = StatisticsPlan {
            aggregators: vec!["police".into(), "police".into()],
            min_cell: 1,
            countries: vec!["RO".into(), "NL".into(), "nl".into()],
            collect_days: 0,
            tables: vec![
                table("a", StatisticsTableKind::Indicators, 1000, 500),
                table("a", StatisticsTableKind::Unspecified, 0, 0),
            ],
            first_period: "2026-Q5".into(),
        };
        let fields: Vec<String> = check(&bad, "statistics")
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "statistics.aggregators[1]",
                "statistics.min_cell",
                "statistics.countries[1]",
                "statistics.countries[2]",
                "statistics.collect_days",
                "statistics.first_period",
                "statistics.tables[0].budget_milli",
                "statistics.tables[1].name",
                "statistics.tables[1].kind",
                "statistics.tables[1].epsilon_milli",
            ]
        );
    }

    #[test]
    fn quarters_have_their_calendar_bounds() {
        let q: Period = "2026-Q4".parse().unwrap();
        assert_eq!(q.start(), 1_790_812_800); // 2026-10-01T00:00:00Z
        assert_eq!(q.end(), 1_798_761_600); // 2027-01-01T00:00:00Z
        assert_eq!(Period::containing(q.end() - 1), Some(q));
        assert_eq!(Period::containing(q.end()), q.next());
    }

    proptest! {
        /// Every quarter prints as it parses, and holds exactly its seconds.
        #[test]
        fn a_quarter_round_trips_and_contains_its_own_seconds(year in 2000u16..=2200, quarter in 1u8..=4) {
            let q = Period::new(year, quarter).unwrap();
            prop_assert_eq!(q.to_string().parse::<Period>(), Ok(q));
            prop_assert_eq!(Period::containing(q.start()), Some(q));
            prop_assert_eq!(Period::containing(q.end() - 1), Some(q));
            if let Some(n) = q.next() {
                prop_assert_eq!(n.previous(), Some(q));
                prop_assert_eq!(Period::last_ended(n.start()), Some(q));
            }
        }

        /// No text makes the parser panic; what it accepts prints back the same.
        #[test]
        fn any_text_parses_or_is_refused(s in "\\PC{0,12}") {
            if let Ok(q) = s.parse::<Period>() {
                prop_assert_eq!(q.to_string(), s);
            }
        }
    }
}
