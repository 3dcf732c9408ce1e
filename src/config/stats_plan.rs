//! The statistics plan as an operator writes it (`stats-plan.toml`), for
//! `casebridge directory set-statistics`: read, checked by the plan's
//! own rules (`stats::plan::check`), every breach at its `file:line:column`
//! before the plan goes into a directory anyone signs.
//!
//! ```toml
//! aggregators = ["police", "ngo"]   # the leader, then the helper
//! min_cell = 11
//! countries = ["DE", "NL", "RO"]
//! collect_days = 30
//! first_period = "2026-Q1"
//!
//! [[tables]]
//! name = "exploitation"
//! kind = "exploitation"             # indicators, cross-agency, clusters
//! epsilon = 1.0                     # one release
//! budget = 2.0                      # all releases of one quarter
//! ```

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, at, parse, read_source};
use crate::proto::v1::{StatisticsPlan, StatisticsTable};
use crate::stats::plan::{DEFAULT_MIN_CELL, TableKind, check};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    aggregators: Spanned<Vec<String>>,
    #[serde(default)]
    min_cell: Option<Spanned<u32>>,
    #[serde(default)]
    countries: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    collect_days: Option<Spanned<u32>>,
    first_period: Spanned<String>,
    tables: Spanned<Vec<TableFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    name: Spanned<String>,
    kind: Spanned<String>,
    epsilon: Spanned<f64>,
    /// Defaults to one release's epsilon: no recount.
    #[serde(default)]
    budget: Option<Spanned<f64>>,
}

/// Days members have to send their reports when the file does not say.
const DEFAULT_COLLECT_DAYS: u32 = 30;

/// The plan in `file`, checked; the first breach at its position.
pub fn load_stats_plan(file: &Path) -> Result<StatisticsPlan, ConfigError> {
    let src = read_source(file)?;
    let p: PlanFile = parse(file, &src)?;
    let mut tables = Vec::with_capacity(p.tables.get_ref().len());
    for t in p.tables.get_ref() {
        let kind = TableKind::parse(t.kind.get_ref()).ok_or_else(|| {
            at(
                file,
                &src,
                t.kind.span().start,
                "kind: exploitation, indicators, cross-agency or clusters",
            )
        })?;
        let epsilon = milli(t.epsilon.get_ref()).ok_or_else(|| {
            at(
                file,
                &src,
                t.epsilon.span().start,
                "epsilon: a number above 0 with at most three decimals",
            )
        })?;
        let budget = match &t.budget {
            None => epsilon,
            Some(b) => milli(b.get_ref()).ok_or_else(|| {
                at(
                    file,
                    &src,
                    b.span().start,
                    "budget: a number above 0 with at most three decimals",
                )
            })?,
        };
        tables.push(StatisticsTable {
            name: t.name.get_ref().clone(),
            kind: kind.to_proto().into(),
            epsilon_milli: epsilon,
            budget_milli: budget,
        });
    }
    let plan = StatisticsPlan {
        aggregators: p.aggregators.get_ref().clone(),
        min_cell: p
            .min_cell
            .as_ref()
            .map_or(DEFAULT_MIN_CELL, |m| *m.get_ref()),
        countries: p
            .countries
            .as_ref()
            .map(|c| c.get_ref().clone())
            .unwrap_or_default(),
        collect_days: p
            .collect_days
            .as_ref()
            .map_or(DEFAULT_COLLECT_DAYS, |c| *c.get_ref()),
        tables,
        first_period: p.first_period.get_ref().clone(),
    };
    match check(&plan, "statistics").into_iter().next() {
        None => Ok(plan),
        Some(v) => Err(at(
            file,
            &src,
            offset_of(&p, &v.field),
            format!("{}: {}", v.field, v.description),
        )),
    }
}

/// Thousandths of `x`, if it is a positive number with at most three
/// decimals that fits.
fn milli(x: &f64) -> Option<u32> {
    let m = (x * 1000.0).round();
    (x.is_finite() && *x > 0.0 && (x * 1000.0 - m).abs() < 1e-6 && m <= f64::from(u32::MAX))
        .then_some(m as u32)
}

/// Where in the file the plan field `field` (`statistics.tables[1].name`)
/// was written: its key's value, or its table's, or the file's start.
fn offset_of(p: &PlanFile, field: &str) -> usize {
    let field = field.strip_prefix("statistics.").unwrap_or(field);
    let top = |name: &str| field == name || field.starts_with(&format!("{name}["));
    if top("aggregators") {
        return p.aggregators.span().start;
    }
    if top("countries") {
        return p.countries.as_ref().map_or(0, |c| c.span().start);
    }
    if field == "min_cell" {
        return p.min_cell.as_ref().map_or(0, |m| m.span().start);
    }
    if field == "collect_days" {
        return p.collect_days.as_ref().map_or(0, |c| c.span().start);
    }
    if field == "first_period" {
        return p.first_period.span().start;
    }
    let table = field
        .strip_prefix("tables[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)));
    match table.and_then(|(i, rest)| Some((p.tables.get_ref().get(i)?, rest))) {
        Some((t, ".name")) => t.name.span().start,
        Some((t, ".budget_milli")) => t
            .budget
            .as_ref()
            .map_or(t.epsilon.span().start, |b| b.span().start),
        Some((t, _)) => t.epsilon.span().start,
        None => p.tables.span().start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<StatisticsPlan, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.toml");
        std::fs::write(&file, text).unwrap();
        load_stats_plan(&file).map_err(|e| {
            e.to_string()
                .strip_prefix(file.to_str().unwrap())
                .unwrap()
                .to_owned()
        })
    }

    const GOOD: &str = "aggregators = [\"police\", \"ngo\"]\nfirst_period = \"2026-Q1\"\n\n[[tables]]\nname = \"exploitation\"\nkind = \"exploitation\"\nepsilon = 0.5\nbudget = 1.25\n";

    #[test]
    fn a_plan_file_becomes_the_directory_plan_with_defaults() {
        let p = load(GOOD).unwrap();
        assert_eq!(p.min_cell, 11);
        assert_eq!(p.collect_days, 30);
        assert_eq!(
            (p.tables[0].epsilon_milli, p.tables[0].budget_milli),
            (500, 1250)
        );
    }

    #[test]
    fn each_mistake_is_named_at_its_line_and_column() {
        let cases = [
            (
                GOOD.replace("\"ngo\"]", "\"police\"]"),
                ":1:15: statistics.aggregators[1]",
            ),
            (
                GOOD.replace("2026-Q1", "2026-Q7"),
                ":2:16: statistics.first_period",
            ),
            (
                GOOD.replace("epsilon = 0.5", "epsilon = 0.0001"),
                ":7:11: epsilon",
            ),
            (
                GOOD.replace("budget = 1.25", "budget = 0.25"),
                ":8:10: statistics.tables[0].budget_milli",
            ),
            (
                GOOD.replace("kind = \"exploitation\"", "kind = \"hotspots\""),
                ":6:8: kind",
            ),
            (format!("{GOOD}colour = 1\n"), ":9:1: unknown field"),
        ];
        for (text, want) in cases {
            let got = load(&text).unwrap_err();
            assert!(got.starts_with(want), "{want} in {got}");
        }
    }
}
