//! `casebridge alert import` and `alert export`: an agency's register in,
//! alerts out. (`alert watch`, the feed of every change, is in `alert`.)
//!
//! An import streams the file (see `tabular::read`), sends each row to the
//! node's `ImportAlert` with a bounded number in flight, and can be run
//! again at any time: the node keeps source id → alert id in the alert's
//! own transaction, so a run interrupted anywhere and run again ends where
//! one uninterrupted run would.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::{Args, ValueEnum};

use super::exit::{Exit, Failure, failure};
use crate::client::NodeClient;
use crate::proto::v1::alert_service_client::AlertServiceClient;
use crate::proto::v1::{
    ImportAlertRequest, ImportAlertResponse, ListAlertsRequest, ListImportedRequest,
    RetractAlertRequest,
};
use crate::tabular::job::{self, Summary};
use crate::tabular::{self, CellProblem, Loaded, cell_name};

#[derive(Args)]
pub struct ImportArgs {
    /// The register: .csv, .tsv, .xlsx, .xlsm, .ods, or .jsonl
    /// (one ImportAlertRequest or exported Alert per line, protobuf JSON);
    /// .xls and .xlsb are refused: save them as .xlsx.
    #[arg(required_unless_present = "print_mapping")]
    file: Option<PathBuf>,
    /// A mapping file (TOML), or a built-in mapping: htcds, export.
    #[arg(long)]
    mapping: Option<String>,
    /// Print a built-in mapping (htcds, export) to start your own from, and exit.
    #[arg(long, value_name = "NAME")]
    print_mapping: Option<String>,
    /// The register's name on the node (default: the mapping's `source`;
    /// required for JSON Lines without a mapping).
    #[arg(long)]
    source: Option<String>,
    /// Check every row, here and with the node's own validation, and say
    /// what an import would do; store nothing.
    #[arg(long)]
    dry_run: bool,
    /// Retract the alerts of this source whose rows are no longer in the file.
    #[arg(long)]
    retract_missing: bool,
    /// Rows sent to the node at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=512))]
    concurrency: u16,
    /// Where rejected rows go (default: next to the file, `NAME.rejected.csv`).
    #[arg(long)]
    rejected: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Csv,
    Xlsx,
    Jsonl,
}

#[derive(Args)]
pub struct ExportArgs {
    /// csv or xlsx (HTCDS column names where HTCDS has the field; the
    /// built-in `export` mapping reads them back), or jsonl (every alert
    /// whole, as protobuf JSON).
    #[arg(long, value_enum)]
    format: FormatArg,
    /// The file to write.
    #[arg(long, short)]
    output: PathBuf,
    /// Only alerts received from other agencies.
    #[arg(long, conflicts_with = "own")]
    received: bool,
    /// Only this agency's own alerts.
    #[arg(long)]
    own: bool,
    /// Only alerts created at or after this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    since: Option<String>,
    /// Also retracted alerts (tombstones without content).
    #[arg(long)]
    include_retracted: bool,
}

impl ImportArgs {
    /// The built-in mapping to print instead of importing.
    pub fn print_mapping(&self) -> Option<&str> {
        self.print_mapping.as_deref()
    }
}

/// Prints a built-in mapping.
pub fn print_mapping(name: &str) -> Result<(), Failure> {
    let (_, text) = tabular::mapping::BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| {
            failure(
                Exit::Usage,
                tabular::MappingError::UnknownBuiltIn(name.into()),
            )
        })?;
    print!("{text}");
    Ok(())
}

/// The mapping for `file`: JSON Lines need none (a source name suffices).
fn mapping_for(args: &ImportArgs, file: &Path) -> Result<Arc<Loaded>, Failure> {
    let is_jsonl = tabular::read::Format::of(file) == Some(tabular::read::Format::Jsonl);
    let loaded = match (&args.mapping, is_jsonl) {
        (Some(m), _) => Loaded::load(m).map_err(|e| failure(Exit::DataErr, e))?,
        (None, true) => {
            let source = args.source.as_deref().ok_or_else(|| {
                failure(
                    Exit::Usage,
                    anyhow!("JSON Lines need --source NAME (the register's name on the node)"),
                )
            })?;
            Loaded::json_lines(source, Path::new("<command line>"))
                .map_err(|e| failure(Exit::Usage, e))?
        }
        (None, false) => {
            return Err(failure(
                Exit::Usage,
                anyhow!(
                    "--mapping FILE is needed for {} (or a built-in one: htcds, export; \
                     `--print-mapping htcds` prints one to start from)",
                    file.display()
                ),
            ));
        }
    };
    Ok(Arc::new(loaded))
}

/// Where a row is, as a person finds it: `file.xlsx:Cases!C17`.
fn place(file: &Path, sheet: Option<&str>, row: u32, column: Option<usize>) -> String {
    format!("{}:{}", file.display(), cell_name(sheet, row, column))
}

/// The rejected-rows file: the input's header and rows where they were
/// (so the same mapping reads it), each rejected row with its reasons in
/// a last column. Created at the first rejected row.
struct Rejected {
    path: PathBuf,
    writer: Option<csv::Writer<std::fs::File>>,
    headers: Vec<String>,
    header_row: u32,
    first_row: u32,
}

impl Rejected {
    fn write(&mut self, cells: &[String], reasons: &str) -> Result<(), String> {
        let err = |e: csv::Error| format!("{}: {e}", self.path.display());
        if self.writer.is_none() {
            let file = crate::secrets::create_private(&self.path)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            let mut w = csv::WriterBuilder::new().flexible(true).from_writer(file);
            for _ in 1..self.header_row {
                w.write_record([""]).map_err(err)?;
            }
            let mut header = self.headers.clone();
            header.push("casebridge_error".into());
            w.write_record(&header).map_err(err)?;
            for _ in self.header_row + 1..self.first_row {
                w.write_record([""]).map_err(err)?;
            }
            self.writer = Some(w);
        }
        let w = self.writer.as_mut().expect("created above");
        let mut row: Vec<&str> = cells.iter().map(String::as_str).collect();
        row.resize(self.headers.len().max(row.len()), "");
        row.push(reasons);
        w.write_record(&row).map_err(err)
    }

    fn finish(self) -> Result<Option<PathBuf>, Failure> {
        match self.writer {
            Some(mut w) => {
                w.flush()
                    .map_err(|e| failure(Exit::Failure, anyhow!("{}: {e}", self.path.display())))?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}

/// Progress: a bar on a terminal, a line every few seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: Instant,
    total: Option<u64>,
    position: u64,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% ETA {eta} {msg}"
            } else {
                "{spinner} [{elapsed_precise}] {msg}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
            total,
            position: 0,
        }
    }

    fn rate(&self, rows: u64) -> f64 {
        rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    fn update(&mut self, position: u64, s: &Summary) {
        self.position = self.position.max(position);
        let msg = format!(
            "{} rows, {:.0} rows/s, {} rejected",
            s.rows,
            self.rate(s.rows),
            s.rejected
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.position);
                bar.set_message(msg);
            }
            None if self.last_line.elapsed() >= Duration::from_secs(5) => {
                self.last_line = Instant::now();
                let share = self
                    .total
                    .filter(|t| *t > 0)
                    .map(|t| {
                        format!(
                            ", {:.0}% of the file",
                            100.0 * self.position as f64 / t as f64
                        )
                    })
                    .unwrap_or_default();
                eprintln!(
                    "import: {msg} (created {}, updated {}, unchanged {}){share}",
                    s.created, s.updated, s.unchanged
                );
            }
            None => {}
        }
    }

    /// A line above the bar (a rejected row).
    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The CLI's view of a run: the progress bar (or log lines), the problems
/// on stderr, the rejected-rows file.
struct Cli<'a> {
    progress: Progress,
    rejected: Rejected,
    dry_run: bool,
    input: &'a Path,
    sheet: Option<String>,
    shown: u64,
}

/// Problems printed; the rejected-rows file has them all.
const SHOWN: u64 = 200;

impl job::Observer for Cli<'_> {
    fn progress(&mut self, position: u64, summary: &Summary) {
        self.progress.update(position, summary);
    }

    fn rejected(
        &mut self,
        row: u32,
        problems: &[CellProblem],
        cells: &[String],
    ) -> Result<(), String> {
        let mut reasons = Vec::new();
        for p in problems {
            if self.shown < SHOWN {
                self.progress.println(&format!(
                    "{}: {}",
                    place(self.input, self.sheet.as_deref(), row, p.column),
                    p.with_hint()
                ));
            }
            self.shown += 1;
            reasons.push(match p.column {
                Some(c) => format!("{}: {}", tabular::column_letter(c), p.with_hint()),
                None => p.with_hint(),
            });
        }
        if self.dry_run {
            return Ok(());
        }
        self.rejected.write(cells, &reasons.join("; "))
    }

    fn retracted(&mut self, r: &crate::proto::v1::ImportedRecord) {
        if self.dry_run {
            self.progress.println(&format!(
                "would retract {} (case {:?} is no longer in the file)",
                r.alert_id, r.source_id
            ));
        }
    }
}

/// The node over gRPC.
#[derive(Clone)]
struct Grpc {
    /// One client per connection; rows go round-robin.
    connections: Arc<Vec<AlertServiceClient<crate::client::Svc>>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
}

impl Grpc {
    /// The next connection's client (rows spread over them all).
    fn client(&self) -> AlertServiceClient<crate::client::Svc> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.connections[i % self.connections.len()].clone()
    }
}

impl job::Sink for Grpc {
    async fn import(
        &self,
        request: ImportAlertRequest,
    ) -> Result<ImportAlertResponse, tonic::Status> {
        self.client()
            .import_alert(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn list_imported(
        &self,
        request: ListImportedRequest,
    ) -> Result<crate::proto::v1::ListImportedResponse, tonic::Status> {
        self.client()
            .list_imported(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn retract(&self, request: RetractAlertRequest) -> Result<(), tonic::Status> {
        self.client().retract_alert(request).await.map(|_| ())
    }
}

/// Connections an import spreads its rows over: one connection's TLS and
/// HTTP/2 framing is one task on the node, several use every core.
pub const CONNECTIONS: usize = 4;

/// `clients`: one per connection (see [`CONNECTIONS`]).
pub async fn import(clients: Vec<NodeClient>, args: ImportArgs, json: bool) -> Result<(), Failure> {
    let file = args
        .file
        .clone()
        .expect("clap requires FILE without --print-mapping");
    let loaded = mapping_for(&args, &file)?;
    let source = args
        .source
        .clone()
        .unwrap_or_else(|| loaded.mapping.source.get_ref().clone());
    let opened = {
        let (file, loaded) = (file.clone(), loaded.clone());
        tokio::task::spawn_blocking(move || tabular::read::open(&file, loaded))
            .await
            .map_err(|e| failure(Exit::Failure, anyhow!("reader: {e}")))?
    };
    let reader = opened.map_err(|e| failure(Exit::DataErr, e))?;
    if !reader.skipped.is_empty() {
        eprintln!(
            "note: {} has no column {}: skipped, as the mapping allows",
            file.display(),
            reader.skipped.join(", ")
        );
    }
    let m = &loaded.mapping;
    let tabular_file = !reader.headers.is_empty();
    let mut cli = Cli {
        progress: Progress::new(reader.total),
        rejected: Rejected {
            path: args.rejected.clone().unwrap_or_else(|| {
                let stem = file
                    .file_stem()
                    .map_or_else(|| "import".into(), |s| s.to_string_lossy().into_owned());
                file.with_file_name(format!("{stem}.rejected.csv"))
            }),
            writer: None,
            headers: if tabular_file {
                reader.headers.clone()
            } else {
                vec!["line".into()]
            },
            header_row: if tabular_file { m.header_row } else { 1 },
            first_row: if tabular_file {
                m.first_row.unwrap_or(m.header_row + 1)
            } else {
                2
            },
        },
        dry_run: args.dry_run,
        input: &file,
        sheet: reader.sheet.clone(),
        shown: 0,
    };
    let options = job::Options {
        source,
        dry_run: args.dry_run,
        retract_missing: args.retract_missing,
        concurrency: usize::from(args.concurrency),
    };
    let sink = Grpc {
        connections: Arc::new(clients.iter().map(|c| c.alerts.clone()).collect()),
        next: Arc::default(),
    };
    let result = job::run(reader, sink, &options, &mut cli).await;
    cli.progress.finish();
    let summary = result.map_err(|e| {
        let exit = match &e {
            job::JobError::Read(_) | job::JobError::Retract(_) => Exit::DataErr,
            job::JobError::Refused { code, .. } => Exit::of_status(*code),
            job::JobError::Observer(_) => Exit::Failure,
        };
        failure(exit, anyhow!("{}: {e}", file.display()))
    })?;
    if cli.shown > SHOWN {
        eprintln!("… and {} more problems", cli.shown - SHOWN);
    }
    let rejected_file = cli.rejected.finish()?;
    print_summary(&summary, rejected_file.as_deref(), json);
    if summary.rejected > 0 {
        return Err(failure(
            Exit::DataErr,
            anyhow!(
                "{} row(s) rejected{}",
                summary.rejected,
                rejected_file
                    .map(|p| format!(
                        ": they are in {} with the reason in its last column",
                        p.display()
                    ))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

fn print_summary(s: &Summary, rejected: Option<&Path>, json: bool) {
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
        return;
    }
    let would = if s.dry_run { "would be " } else { "" };
    println!(
        "{} rows in {:.1} s ({:.0} rows/s): {would}created {}, {would}updated {}, unchanged {}, \
         {would}retracted {}, rejected {}, empty {}",
        s.rows,
        s.seconds,
        s.rows as f64 / s.seconds.max(1e-3),
        s.created,
        s.updated,
        s.unchanged,
        s.retracted,
        s.rejected,
        s.empty
    );
    if let Some(p) = rejected {
        println!("rejected rows: {}", p.display());
    }
}

/// A `--since` bound: RFC 3339 or a date (midnight UTC).
fn since(text: &str) -> Result<pbjson_types::Timestamp, Failure> {
    tabular::convert::parse_timestamp(text, &[]).ok_or_else(|| {
        failure(
            Exit::Usage,
            anyhow!("--since {text:?}: write an RFC 3339 time or YYYY-MM-DD"),
        )
    })
}

/// `own_agency`: the node's agency, from the client config (for `--own`).
pub async fn export(
    client: NodeClient,
    args: ExportArgs,
    own_agency: &str,
    json: bool,
) -> Result<(), Failure> {
    use tabular::export::{ExportFormat, Writer};
    let format = match args.format {
        FormatArg::Csv => ExportFormat::Csv,
        FormatArg::Xlsx => ExportFormat::Xlsx,
        FormatArg::Jsonl => ExportFormat::Jsonl,
    };
    let created_after = args.since.as_deref().map(since).transpose()?;
    let own = args.own.then(|| own_agency.to_owned());
    // Write next to the target, then rename: a failed export leaves no
    // half-written file under the name asked for.
    let partial = args.output.with_extension("partial");
    let mut writer = Writer::create(&partial, format).map_err(|e| failure(Exit::Failure, e))?;
    let request = |page_token| ListAlertsRequest {
        origin: own.clone().unwrap_or_default(),
        include_retracted: args.include_retracted,
        received_only: args.received,
        created_after,
        page_size: 1000,
        page_token,
        ..Default::default()
    };
    let written = tabular::export::write_pages(&mut writer, u64::MAX, |token| {
        let mut client = client.clone();
        let req = request(token);
        async move { Ok(client.alerts.list_alerts(req).await?.into_inner()) }
    })
    .await
    .map_err(|e| match e {
        tabular::export::ExportRunError::Node(s) => Failure::from(*s),
        e => failure(Exit::Failure, e),
    })?;
    let (count, partial_rows) = (written.alerts, written.incomplete_rows);
    writer.finish().map_err(|e| failure(Exit::Failure, e))?;
    std::fs::rename(&partial, &args.output)
        .map_err(|e| failure(Exit::Failure, anyhow!("{}: {e}", args.output.display())))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"alerts": count, "incomplete_rows": partial_rows, "file": args.output})
        );
    } else {
        println!("{count} alerts written to {}", args.output.display());
    }
    if partial_rows > 0 {
        eprintln!(
            "{partial_rows} alert(s) hold more than a row has room for (a third subject, \
             wallets, handles, plates, advert URLs, or a phone read in another region): \
             --format jsonl holds them whole"
        );
    }
    Ok(())
}
