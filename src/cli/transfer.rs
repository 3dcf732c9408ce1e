//! `casebridge alert import`, `alert export` and `alert watch`: an
//! agency's register in, alerts out, and a feed of every change.
//!
//! An import streams the file (see `tabular::read`), sends each row to the
//! node's `ImportAlert` with a bounded number in flight, and can be run
//! again at any time: the node keeps source id → alert id in the alert's
//! own transaction, so a run interrupted anywhere and run again ends where
//! one uninterrupted run would.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tonic::Code;

use super::exit::{Exit, Failure, failure};
use crate::client::NodeClient;
use crate::proto::v1::alert_service_client::AlertServiceClient;
use crate::proto::v1::{
    ImportAlertRequest, ImportAlertResponse, ImportOutcome, ListAlertsRequest, ListImportedRequest,
    RetractAlertRequest,
};
use crate::tabular::{self, CellProblem, Converted, Item, Loaded, cell_name};

#[derive(Args)]
pub struct ImportArgs {
    /// The register: .csv, .tsv, .xlsx, .xlsm, .ods, .xls, .xlsb, or .jsonl
    /// (one ImportAlertRequest or exported Alert per line, protobuf JSON).
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

/// What an import did, for the summary.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    pub rows: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub retracted: u64,
    pub rejected: u64,
    pub empty: u64,
    pub seconds: f64,
    pub dry_run: bool,
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
            Loaded::parse(
                Path::new("<command line>"),
                &format!("source = {source:?}\nid_column = \"sourceId\"\n"),
            )
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
    fn write(&mut self, cells: &[String], reasons: &str) -> Result<(), Failure> {
        let err = |e: csv::Error| failure(Exit::Failure, anyhow!("{}: {e}", self.path.display()));
        if self.writer.is_none() {
            let mut w = csv::WriterBuilder::new()
                .flexible(true)
                .from_path(&self.path)
                .map_err(err)?;
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

/// How a row ended up.
enum Done {
    Imported(ImportOutcome),
    Rejected(Vec<String>),
}

/// One row sent to the node: retried while the node is unavailable (an
/// import is idempotent per source id, so a retry never duplicates).
async fn send(
    mut api: AlertServiceClient<crate::client::Svc>,
    request: ImportAlertRequest,
) -> Result<ImportAlertResponse, tonic::Status> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        match api.import_alert(request.clone()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s)
                if attempt < 8
                    && matches!(
                        s.code(),
                        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded
                    ) =>
            {
                attempt += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(s) => return Err(s),
        }
    }
}

/// A field path as a person reads it: `draft.subjects[0].identifiers[1].phone.number`
/// → "phone number".
fn field_label(path: &str) -> String {
    path.split('.')
        .map(|part| part.split('[').next().unwrap_or(part))
        .filter(|part| !matches!(*part, "draft" | "content" | "subjects" | "identifiers"))
        .collect::<Vec<_>>()
        .join(" ")
        .replace('_', " ")
}

/// The node's INVALID_ARGUMENT, each field at the column it came from,
/// with the cell's value.
fn node_problems(
    status: &tonic::Status,
    converted: &Converted,
    cells: &[String],
) -> Vec<CellProblem> {
    use tonic_types::StatusExt;
    match status.get_details_bad_request() {
        Some(b) if !b.field_violations.is_empty() => b
            .field_violations
            .iter()
            .map(|v| {
                let column = converted.column_of(&v.field);
                let label = field_label(&v.field);
                let value = column
                    .and_then(|c| cells.get(c))
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty());
                CellProblem {
                    column,
                    message: match value {
                        Some(value) => format!("{label} \"{value}\": {}", v.description),
                        None => format!("{label}: {}", v.description),
                    },
                }
            })
            .collect(),
        _ => vec![CellProblem {
            column: None,
            message: status.message().to_owned(),
        }],
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

/// A 128-bit digest of a source id: what the file's ids are remembered by
/// (duplicates in the file, `--retract-missing`), so a million-row file
/// costs tens of megabytes, not its ids' text.
fn id_key(source_id: &str) -> u128 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, source_id.as_bytes());
    u128::from_be_bytes(d.as_ref()[..16].try_into().expect("32-byte digest"))
}

pub async fn import(client: NodeClient, args: ImportArgs, json: bool) -> Result<(), Failure> {
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
    let mut reader = opened.map_err(|e| failure(Exit::DataErr, e))?;
    if !reader.skipped.is_empty() {
        eprintln!(
            "note: {} has no column {}: skipped, as the mapping allows",
            file.display(),
            reader.skipped.join(", ")
        );
    }
    let m = &loaded.mapping;
    let mut rejected = Rejected {
        path: args.rejected.clone().unwrap_or_else(|| {
            let stem = file
                .file_stem()
                .map_or_else(|| "import".into(), |s| s.to_string_lossy().into_owned());
            file.with_file_name(format!("{stem}.rejected.csv"))
        }),
        writer: None,
        headers: if reader.headers.is_empty() {
            vec!["line".into()]
        } else {
            reader.headers.clone()
        },
        header_row: if reader.headers.is_empty() {
            1
        } else {
            m.header_row
        },
        first_row: if reader.headers.is_empty() {
            2
        } else {
            m.first_row.unwrap_or(m.header_row + 1)
        },
    };
    let mut summary = Summary {
        dry_run: args.dry_run,
        ..Default::default()
    };
    let mut progress = Progress::new(reader.total);
    let mut seen: HashMap<u128, u32> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    let limit = usize::from(args.concurrency);
    let mut reading = true;
    let mut fatal: Option<Failure> = None;
    let mut shown = 0u64;
    let (input, sheet) = (reader.file.clone(), reader.sheet.clone());
    const SHOWN: u64 = 200;
    let report =
        |progress: &Progress, shown: &mut u64, row: u32, problems: &[CellProblem]| -> String {
            let mut reasons = Vec::new();
            for p in problems {
                if *shown < SHOWN {
                    progress.println(&format!(
                        "{}: {}",
                        place(&input, sheet.as_deref(), row, p.column),
                        p.message
                    ));
                }
                *shown += 1;
                reasons.push(match p.column {
                    Some(c) => format!("{}: {}", tabular::column_letter(c), p.message),
                    None => p.message.clone(),
                });
            }
            reasons.join("; ")
        };
    while reading || !in_flight.is_empty() {
        tokio::select! {
            item = reader.items.recv(), if reading && in_flight.len() < limit && fatal.is_none() => {
                let Some(item) = item else {
                    reading = false;
                    continue;
                };
                let (item, position) = item.map_err(|e| failure(Exit::DataErr, e))?;
                summary.rows += 1;
                match item {
                    Item::Empty { .. } => summary.empty += 1,
                    Item::Rejected { row, problems, cells } => {
                        summary.rejected += 1;
                        let reasons = report(&progress, &mut shown, row, &problems);
                        if !args.dry_run {
                            rejected.write(&cells, &reasons)?;
                        }
                    }
                    Item::Record { row, converted, cells } => {
                        let key = id_key(&converted.source_id);
                        if let Some(first) = seen.get(&key) {
                            summary.rejected += 1;
                            let problems = [CellProblem {
                                column: None,
                                message: format!(
                                    "the case id {:?} is also in row {first}: one row a case",
                                    converted.source_id
                                ),
                            }];
                            let reasons = report(&progress, &mut shown, row, &problems);
                            if !args.dry_run {
                                rejected.write(&cells, &reasons)?;
                            }
                        } else {
                            seen.insert(key, row);
                            let request = ImportAlertRequest {
                                source: source.clone(),
                                source_id: converted.source_id.clone(),
                                draft: Some(converted.draft.clone()),
                                validate_only: args.dry_run,
                            };
                            let api = client.alerts.clone();
                            in_flight.push(async move {
                                let result = send(api, request).await;
                                (row, converted, cells, result)
                            });
                        }
                    }
                }
                progress.update(position, &summary);
            }
            Some((row, converted, cells, result)) = in_flight.next(), if !in_flight.is_empty() => {
                let done = match result {
                    Ok(r) => Done::Imported(r.outcome()),
                    Err(s) if s.code() == Code::InvalidArgument => {
                        let problems = node_problems(&s, &converted, &cells);
                        Done::Rejected(vec![report(&progress, &mut shown, row, &problems)])
                    }
                    Err(s) => {
                        // The node refused for a reason no row can fix
                        // (permission, storage): stop sending, finish what
                        // is in flight, and say how to go on.
                        if fatal.is_none() {
                            fatal = Some(failure(
                                Exit::of_status(s.code()),
                                anyhow!(
                                    "{}: the node refused the import ({}: {}); rows sent so far \
                                     are stored; run the same import again to go on",
                                    place(&input, sheet.as_deref(), row, None),
                                    s.code(),
                                    s.message()
                                ),
                            ));
                        }
                        continue;
                    }
                };
                match done {
                    Done::Imported(ImportOutcome::Created) => summary.created += 1,
                    Done::Imported(ImportOutcome::Updated) => summary.updated += 1,
                    Done::Imported(_) => summary.unchanged += 1,
                    Done::Rejected(reasons) => {
                        summary.rejected += 1;
                        if !args.dry_run {
                            rejected.write(&cells, &reasons.join("; "))?;
                        }
                    }
                }
                progress.update(0, &summary);
            }
        }
        if fatal.is_some() && in_flight.is_empty() {
            break;
        }
    }
    if let Some(f) = fatal {
        progress.finish();
        return Err(f);
    }
    if args.retract_missing {
        summary.retracted =
            retract_missing(&client, &source, &seen, args.dry_run, summary.rows).await?;
    }
    progress.finish();
    summary.seconds = progress.started.elapsed().as_secs_f64();
    if shown > SHOWN {
        eprintln!("… and {} more problems", shown - SHOWN);
    }
    let rejected_file = rejected.finish()?;
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

/// Retracts the alerts of `source` whose case ids the file no longer has.
async fn retract_missing(
    client: &NodeClient,
    source: &str,
    seen: &HashMap<u128, u32>,
    dry_run: bool,
    rows: u64,
) -> Result<u64, Failure> {
    let mut api = client.alerts.clone();
    if rows == 0 {
        return Err(failure(
            Exit::DataErr,
            anyhow!(
                "the file has no rows: refusing to retract every alert of source {source:?} \
                 (--retract-missing retracts what the file no longer has)"
            ),
        ));
    }
    let mut gone = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = api
            .list_imported(ListImportedRequest {
                source: source.to_owned(),
                page_size: 10_000,
                page_token,
            })
            .await?
            .into_inner();
        gone.extend(
            page.records
                .into_iter()
                .filter(|r| !r.retracted && !seen.contains_key(&id_key(&r.source_id))),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if dry_run {
        for r in &gone {
            eprintln!(
                "would retract {} (case {:?} is no longer in the file)",
                r.alert_id, r.source_id
            );
        }
        return Ok(gone.len() as u64);
    }
    let mut retracted = 0;
    for r in gone {
        let reason = format!("case {} is no longer in the register {source}", r.source_id);
        match api
            .retract_alert(RetractAlertRequest {
                id: r.alert_id.clone(),
                expected_version: r.version,
                reason,
            })
            .await
        {
            Ok(_) => retracted += 1,
            // Changed or retracted since it was listed: a run of the same
            // import again settles it.
            Err(s) if s.code() == Code::FailedPrecondition || s.code() == Code::Aborted => {
                eprintln!("{}: not retracted: {}", r.alert_id, s.message());
            }
            Err(s) => return Err(s.into()),
        }
    }
    Ok(retracted)
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
    mut client: NodeClient,
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
    let (mut count, mut partial_rows) = (0u64, 0u64);
    let mut page_token = String::new();
    loop {
        let page = client
            .alerts
            .list_alerts(ListAlertsRequest {
                origin: own.clone().unwrap_or_default(),
                include_retracted: args.include_retracted,
                received_only: args.received,
                created_after,
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        for alert in &page.alerts {
            if !writer.write(alert).map_err(|e| failure(Exit::Failure, e))? {
                partial_rows += 1;
            }
            count += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
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
