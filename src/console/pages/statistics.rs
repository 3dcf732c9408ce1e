//! The federation's private statistics (role `read`): the plan in force
//! (tables, epsilon spent and left per quarter, the aggregators), and each
//! release as a table with its suppressed cells marked, a bar chart of its
//! rows and a trend of its totals across quarters, each with the same in
//! words. Everything shown is the noisy, published result every member
//! holds; nothing of one agency's own counts exists to show.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use crate::console::Console;
use crate::console::chart::{Series, bars};
use crate::console::rpc::request;
use crate::console::view::{Chrome, PageError, Viewer, page};
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::{ListStatsRequest, StatisticsPlan, StatsReleaseView};

pub fn routes() -> Router<Console> {
    Router::new().route("/statistics", get(show))
}

/// One table of the plan, as shown.
pub struct PlanRow {
    pub name: String,
    pub kind: String,
    pub epsilon: String,
    pub budget: String,
}

/// One release, as shown.
pub struct ReleaseBlock {
    pub heading: String,
    pub status: String,
    pub released: bool,
    pub columns: Vec<String>,
    /// Row label, then each cell: `None` when suppressed.
    pub rows: Vec<(String, Vec<Option<i64>>)>,
    pub min_cell: u32,
    pub chart: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "console/statistics.html")]
struct StatisticsPage {
    chrome: Chrome,
    plan: Option<StatisticsPlan>,
    tables: Vec<PlanRow>,
    releases: Vec<ReleaseBlock>,
    trends: Vec<(String, String, String)>,
}

async fn show(State(c): State<Console>, viewer: Viewer) -> Result<Response, PageError> {
    let list = c
        .admin
        .list_stats(request(&viewer, ListStatsRequest {}, ""))
        .await?
        .into_inner();
    let tables = list.plan.as_ref().map_or_else(Vec::new, |p| {
        p.tables
            .iter()
            .map(|t| PlanRow {
                name: t.name.clone(),
                kind: crate::stats::plan::TableKind::name_of(t.kind).replace('-', " "),
                epsilon: epsilon(t.epsilon_milli),
                budget: epsilon(t.budget_milli),
            })
            .collect()
    });
    page(StatisticsPage {
        chrome: Chrome::new(&viewer, "statistics"),
        trends: trends(&list.releases),
        releases: list.releases.iter().rev().map(block).collect(),
        plan: list.plan,
        tables,
    })
}

fn epsilon(milli: u32) -> String {
    format!("{}", f64::from(milli) / 1000.0)
}

fn block(v: &StatsReleaseView) -> ReleaseBlock {
    let r = v.release.clone().unwrap_or_default();
    let width = v.columns.len().max(1);
    let rows: Vec<(String, Vec<Option<i64>>)> = v
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let cells = (0..v.columns.len())
                .map(|j| v.cells.get(i * width + j).copied().filter(|n| *n >= 0))
                .collect();
            (row.clone(), cells)
        })
        .collect();
    let totals: Vec<f64> = rows
        .iter()
        .map(|(_, cells)| cells.iter().flatten().sum::<i64>() as f64)
        .collect();
    let labels: Vec<String> = rows.iter().map(|(r, _)| r.clone()).collect();
    let shown = v.cells.iter().filter(|c| **c >= 0).count();
    let summary = match totals.iter().zip(&labels).max_by(|a, b| a.0.total_cmp(b.0)) {
        Some((top, label)) if *top > 0.0 => format!(
            "{shown} of {} cells shown; the largest row is {label} with about {top:.0}",
            v.cells.len()
        ),
        _ => format!("every cell is under {} and suppressed", v.min_cell),
    };
    let title = format!("{} {}", r.table, r.period);
    ReleaseBlock {
        heading: format!("{} — {} (round {})", r.table, r.period, r.round),
        status: status(v),
        released: v.released_at != 0,
        columns: v.columns.clone(),
        chart: bars(
            &title,
            &summary,
            &labels,
            &[Series {
                name: "shown cells, summed",
                values: totals,
                color: "#0b5cad",
            }],
            "",
        ),
        summary,
        rows,
        min_cell: v.min_cell,
    }
}

/// Where a release stands, in words.
fn status(v: &StatsReleaseView) -> String {
    if !v.refused.is_empty() {
        return format!("Refused: {}", v.refused);
    }
    if v.released_at == 0 {
        return if v.contributed_at == 0 {
            "Not computed yet.".into()
        } else {
            "This node has sent its reports; waiting for the aggregators' sums.".into()
        };
    }
    format!(
        "Computed from {} agencies. Epsilon {} spent of {} this quarter, {} left. Cells under {} are not shown.",
        v.members,
        epsilon(v.spent_milli),
        epsilon(v.budget_milli),
        epsilon(v.budget_milli.saturating_sub(v.spent_milli)),
        v.min_cell
    )
}

/// Per table with more than one released quarter: a chart of its shown
/// totals by quarter (title, svg, summary).
fn trends(releases: &[StatsReleaseView]) -> Vec<(String, String, String)> {
    let mut by_table: std::collections::BTreeMap<String, Vec<(String, f64)>> = Default::default();
    for v in releases.iter().filter(|v| v.released_at != 0) {
        let r = v.release.clone().unwrap_or_default();
        let total = v.cells.iter().filter(|c| **c >= 0).sum::<i64>() as f64;
        by_table.entry(r.table).or_default().push((r.period, total));
    }
    by_table
        .into_iter()
        .filter(|(_, points)| points.len() > 1)
        .map(|(table, points)| {
            let labels: Vec<String> = points.iter().map(|(p, _)| p.clone()).collect();
            let values: Vec<f64> = points.iter().map(|(_, t)| *t).collect();
            let summary = format!(
                "{table}: from about {:.0} in {} to about {:.0} in {}",
                values[0],
                labels[0],
                values[values.len() - 1],
                labels[labels.len() - 1]
            );
            let title = format!("{table} by quarter");
            let svg = bars(
                &title,
                &summary,
                &labels,
                &[Series {
                    name: "shown cells, summed",
                    values,
                    color: "#0b5cad",
                }],
                "",
            );
            (title, svg, summary)
        })
        .collect()
}
