//! `casebridge stats …`: the federation's private statistics as a node
//! holds them (docs/statistics.md): the plan in force, the releases with
//! their cells (suppressed ones marked), a run at the leader, and a CSV
//! export for spreadsheets. `--json` gives scripts the API's own answer.

use std::path::Path;

use clap::{Subcommand, ValueEnum};

use super::exit::Failure;
use super::output;
use super::session::connect;
use crate::proto::v1::{
    ListStatsRequest, ListStatsResponse, RunStatsRequest, StatsReleaseRef, StatsReleaseView,
};

#[derive(Subcommand)]
pub enum StatsCommand {
    /// The statistics plan of the directory in force: tables, epsilon and
    /// budget, minimum cell, aggregators (role `read`).
    Plan,
    /// The releases this node knows, each table with its cells (role `read`).
    Show {
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Only this quarter (`2026-Q3`).
        #[arg(long)]
        period: Option<String>,
    },
    /// At the plan's leader: run a release now, before the collection
    /// days are over, or a recount (round 2 on), which spends budget again
    /// (role `admin`).
    Run {
        /// The table, as the plan names it.
        #[arg(long)]
        table: String,
        /// The quarter (`2026-Q3`).
        #[arg(long)]
        period: String,
        /// 1 for the quarter's release; a recount is 2 or more.
        #[arg(long, default_value_t = 1)]
        round: u32,
    },
    /// Every published cell, one line each, for a spreadsheet (role `read`).
    Export {
        /// The output format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
    },
}

/// What `stats export` writes.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// Comma-separated, with a header line; suppressed cells empty.
    Csv,
}

pub async fn run(
    command: StatsCommand,
    client_config: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    let mut client = connect(client_config).await?;
    if let StatsCommand::Run {
        table,
        period,
        round,
    } = command
    {
        let release = StatsReleaseRef {
            table,
            period,
            round,
        };
        let done = client
            .admin
            .run_stats(RunStatsRequest {
                release: Some(release.clone()),
            })
            .await?
            .into_inner();
        if json {
            println!("{}", output::to_json(&done, true).unwrap_or_default());
        } else if done.done {
            println!(
                "{}: summed, noised and sent to every member",
                crate::analytics::label(&release)
            );
        } else {
            println!(
                "{}: waiting ({}); it goes on by itself",
                crate::analytics::label(&release),
                crate::text::escape(&done.waiting)
            );
        }
        return Ok(());
    }
    let list = client
        .admin
        .list_stats(ListStatsRequest {})
        .await?
        .into_inner();
    match command {
        StatsCommand::Plan if json => {
            println!("{}", output::to_json(&list.plan, true).unwrap_or_default())
        }
        StatsCommand::Plan => print_plan(&list),
        StatsCommand::Show { table, period } => {
            let keep = |v: &&StatsReleaseView| {
                let r = v.release.as_ref();
                table
                    .as_ref()
                    .is_none_or(|t| r.is_some_and(|r| &r.table == t))
                    && period
                        .as_ref()
                        .is_none_or(|p| r.is_some_and(|r| &r.period == p))
            };
            let shown: Vec<&StatsReleaseView> = list.releases.iter().filter(keep).collect();
            if json {
                println!("{}", output::to_json(&shown, true).unwrap_or_default());
            } else if shown.is_empty() {
                println!("no statistics releases here yet");
            } else {
                shown.iter().for_each(|v| print_release(v));
            }
        }
        StatsCommand::Export {
            format: Format::Csv,
        } => print!("{}", csv(&list.releases)),
        StatsCommand::Run { .. } => unreachable!("handled above"),
    }
    Ok(())
}

fn print_plan(list: &ListStatsResponse) {
    let Some(p) = &list.plan else {
        println!("the directory in force has no statistics plan");
        return;
    };
    println!(
        "aggregators: {} (leader), {} (helper)",
        p.aggregators[0], p.aggregators[1]
    );
    println!(
        "from {}, quarterly; {} days to contribute; cells under {} suppressed",
        p.first_period, p.collect_days, p.min_cell
    );
    println!(
        "countries with a row of their own: {}",
        p.countries.join(" ")
    );
    for t in &p.tables {
        let kind = crate::stats::plan::TableKind::name_of(t.kind).to_owned();
        println!(
            "  {:<16} {:<14} epsilon {} per release, {} per quarter",
            t.name,
            kind,
            epsilon(t.epsilon_milli),
            epsilon(t.budget_milli)
        );
    }
}

fn epsilon(milli: u32) -> String {
    format!("{}", f64::from(milli) / 1000.0)
}

fn print_release(v: &StatsReleaseView) {
    let r = v.release.clone().unwrap_or_default();
    println!("{} — {}", crate::analytics::label(&r), status(v));
    if v.released_at == 0 {
        return;
    }
    let width = v
        .rows
        .iter()
        .map(|r| r.chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    print!("  {:width$}", "");
    for c in &v.columns {
        print!(" {c:>12}");
    }
    println!();
    for (i, row) in v.rows.iter().enumerate() {
        print!("  {row:width$}");
        for j in 0..v.columns.len() {
            match v.cells.get(i * v.columns.len() + j) {
                Some(n) if *n >= 0 => print!(" {n:>12}"),
                _ => print!(" {:>12}", "<k"),
            }
        }
        println!();
    }
}

/// One line on where a release stands.
fn status(v: &StatsReleaseView) -> String {
    if !v.refused.is_empty() {
        return format!("refused: {}", crate::text::escape(&v.refused));
    }
    if v.released_at == 0 {
        return match v.contributed_at {
            0 => "not yet".into(),
            _ => format!(
                "this node sent {} reports; waiting for the sums",
                v.reports_sent
            ),
        };
    }
    format!(
        "computed from {} agencies, {} reports; epsilon {} spent of {} this quarter; cells under {} shown as <k",
        v.members,
        v.reports,
        epsilon(v.spent_milli),
        epsilon(v.budget_milli),
        v.min_cell
    )
}

/// Every published cell: table, period, round, row, column, value (empty
/// when suppressed), epsilon and agencies. Labels are ours (country codes,
/// fixed names), never text from a peer, so no quoting is needed.
fn csv(releases: &[StatsReleaseView]) -> String {
    let mut out = String::from("table,period,round,row,column,value,epsilon,agencies\n");
    for v in releases.iter().filter(|v| v.released_at != 0) {
        let r = v.release.clone().unwrap_or_default();
        for (i, row) in v.rows.iter().enumerate() {
            for (j, column) in v.columns.iter().enumerate() {
                let value = v
                    .cells
                    .get(i * v.columns.len() + j)
                    .filter(|n| **n >= 0)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{},{},{},{row},{column},{value},{},{}\n",
                    r.table,
                    r.period,
                    r.round,
                    epsilon(v.epsilon_milli),
                    v.members
                ));
            }
        }
    }
    out
}
