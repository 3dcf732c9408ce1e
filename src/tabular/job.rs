//! One import run, whoever drives the node: the CLI over gRPC, the console
//! in-process. The rows come from a [`Reader`]; each goes to the node's
//! `ImportAlert` through a [`Sink`], at most `concurrency` at a time; what
//! happens is told to an [`Observer`] (a progress bar and a rejected-rows
//! file, or a console page).

use std::collections::HashMap;
use std::future::Future;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use thiserror::Error;
use tonic::Code;

use super::{CellProblem, Converted, Item, ReadError, Reader};
use crate::proto::v1::{
    ImportAlertRequest, ImportAlertResponse, ImportOutcome, ImportedRecord, ListImportedRequest,
    ListImportedResponse, RetractAlertRequest,
};

/// The node, as an import sees it.
pub trait Sink: Clone + Send + Sync + 'static {
    fn import(
        &self,
        request: ImportAlertRequest,
    ) -> impl Future<Output = Result<ImportAlertResponse, tonic::Status>> + Send;
    fn list_imported(
        &self,
        request: ListImportedRequest,
    ) -> impl Future<Output = Result<ListImportedResponse, tonic::Status>> + Send;
    fn retract(
        &self,
        request: RetractAlertRequest,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send;
}

/// What happens during a run, as it happens.
pub trait Observer {
    /// After every row read or answered: how far into the file, and the
    /// counts so far.
    fn progress(&mut self, position: u64, summary: &Summary);
    /// A row refused, here or by the node, with every problem.
    fn rejected(
        &mut self,
        row: u32,
        problems: &[CellProblem],
        cells: &[String],
    ) -> Result<(), String>;
    /// A row the node took (or, in a dry run, would take).
    fn imported(&mut self, _row: u32, _source_id: &str, _outcome: ImportOutcome, _alert: &str) {}
    /// An alert `--retract-missing` retracted (or would).
    fn retracted(&mut self, _record: &ImportedRecord) {}
}

#[derive(Debug, Clone)]
pub struct Options {
    pub source: String,
    pub dry_run: bool,
    pub retract_missing: bool,
    pub concurrency: usize,
}

/// What a run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
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

#[derive(Debug, Error)]
pub enum JobError {
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The node refused for a reason no row can fix (a role, the store):
    /// the rows answered so far are stored, and running the same import
    /// again goes on from there.
    #[error(
        "row {row}: the node refused the import ({code}: {message}); rows sent so far are \
         stored; run the same import again to go on"
    )]
    Refused {
        row: u32,
        code: Code,
        message: String,
    },
    #[error("{0}")]
    Retract(String),
    #[error("{0}")]
    Observer(String),
}

/// A field path as a person reads it:
/// `draft.subjects[0].identifiers[1].phone.number` → "phone number".
pub fn field_label(path: &str) -> String {
    path.split('.')
        .map(|part| part.split('[').next().unwrap_or(part))
        .filter(|part| !matches!(*part, "draft" | "content" | "subjects" | "identifiers"))
        .collect::<Vec<_>>()
        .join(" ")
        .replace('_', " ")
}

/// The node's INVALID_ARGUMENT, each field at the column it came from,
/// with the cell's value.
pub fn node_problems(
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
                    hint: None,
                    column,
                    message: match value {
                        Some(value) => format!("{label} \"{value}\": {}", v.description),
                        None => format!("{label}: {}", v.description),
                    },
                }
            })
            .collect(),
        _ => vec![CellProblem {
            hint: None,
            column: None,
            message: status.message().to_owned(),
        }],
    }
}

/// A 64-bit digest of a source id: what the file's ids are remembered by
/// (duplicates in the file, `retract_missing`), so a million-row file
/// costs about 30 MB, not its ids' text. Two of a million ids share one
/// with a probability of about 3·10⁻⁸ (the second would be reported as a
/// duplicate, never stored over the first).
fn id_key(source_id: &str) -> u64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, source_id.as_bytes());
    u64::from_be_bytes(d.as_ref()[..8].try_into().expect("32-byte digest"))
}

/// How long one row is retried while the node asks the importer to slow
/// down (its per-client rate limit, RESOURCE_EXHAUSTED).
const THROTTLED_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// One row sent: retried while the node is unavailable (up to 8 times) or
/// throttles the client (for up to [`THROTTLED_FOR`]): an import is
/// idempotent per source id, so a retry never duplicates.
async fn send<S: Sink>(
    sink: S,
    request: ImportAlertRequest,
) -> Result<ImportAlertResponse, tonic::Status> {
    let started = std::time::Instant::now();
    let mut delay = std::time::Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        match sink.import(request.clone()).await {
            Ok(r) => return Ok(r),
            Err(s) if s.code() == Code::ResourceExhausted && started.elapsed() < THROTTLED_FOR => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
            Err(s)
                if attempt < 8
                    && matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) =>
            {
                attempt += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            Err(s) => return Err(s),
        }
    }
}

/// One row sent to the node, with what the importer already found wrong
/// with it (`prior`: then the row is rejected whatever the node says, and
/// was only sent to be checked, never stored).
struct Sent {
    row: u32,
    converted: Box<Converted>,
    cells: Vec<String>,
    prior: Vec<CellProblem>,
    result: Result<ImportAlertResponse, tonic::Status>,
}

/// A row to send: the request, and what [`Sent`] keeps of the row.
struct ToSend {
    request: ImportAlertRequest,
    row: u32,
    converted: Box<Converted>,
    cells: Vec<String>,
    prior: Vec<CellProblem>,
}

/// Sends one row.
async fn send_row<S: Sink>(sink: S, r: ToSend) -> Sent {
    let result = send(sink, r.request).await;
    Sent {
        row: r.row,
        converted: r.converted,
        cells: r.cells,
        prior: r.prior,
        result,
    }
}

/// What the node found wrong with the rest of a row the importer had
/// already rejected: only problems at other columns than those the
/// importer named (a field left empty because its cell was unreadable
/// is not news), and only those at a column.
fn rest_problems(
    status: &tonic::Status,
    converted: &Converted,
    cells: &[String],
    prior: &[CellProblem],
) -> Vec<CellProblem> {
    node_problems(status, converted, cells)
        .into_iter()
        .filter(|p| {
            p.column
                .is_some_and(|c| prior.iter().all(|q| q.column != Some(c)))
        })
        .collect()
}

/// Runs one import of `reader` into `sink`.
pub async fn run<S: Sink>(
    mut reader: Reader,
    sink: S,
    options: &Options,
    observer: &mut impl Observer,
) -> Result<Summary, JobError> {
    let started = std::time::Instant::now();
    let mut summary = Summary {
        dry_run: options.dry_run,
        ..Default::default()
    };
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    let limit = options.concurrency.max(1);
    let mut reading = true;
    let mut fatal: Option<JobError> = None;
    while reading || !in_flight.is_empty() {
        tokio::select! {
            item = reader.items.recv(), if reading && in_flight.len() < limit && fatal.is_none() => {
                let Some(item) = item else {
                    reading = false;
                    continue;
                };
                let (item, position) = item?;
                summary.rows += 1;
                if let Some(row) = take_item(item, options, &mut seen, &mut summary, observer)? {
                    in_flight.push(send_row(sink.clone(), row));
                }
                observer.progress(position, &summary);
            }
            Some(sent) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = answered(sent, &mut summary, observer)? {
                    // Stop sending; let what is in flight finish.
                    fatal.get_or_insert(e);
                }
                observer.progress(0, &summary);
            }
        }
        if fatal.is_some() && in_flight.is_empty() {
            break;
        }
    }
    if let Some(f) = fatal {
        return Err(f);
    }
    if options.retract_missing {
        summary.retracted = retract_missing(&sink, options, &seen, summary.rows, observer).await?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Takes one item read: counts and reports what needs no node, and
/// returns what must be sent (a row to import, or the rest of a rejected
/// row to check).
fn take_item(
    item: Item,
    options: &Options,
    seen: &mut HashMap<u64, u32>,
    summary: &mut Summary,
    observer: &mut impl Observer,
) -> Result<Option<ToSend>, JobError> {
    let request = |converted: &Converted, validate_only: bool| ImportAlertRequest {
        source: options.source.clone(),
        source_id: converted.source_id.clone(),
        draft: Some(converted.draft.clone()),
        validate_only,
    };
    let (request, row, converted, cells, prior) = match item {
        Item::Empty { .. } => {
            summary.empty += 1;
            return Ok(None);
        }
        Item::Rejected {
            row,
            problems,
            cells,
            rest: Some(rest),
        } => (request(&rest, true), row, rest, cells, problems),
        Item::Rejected {
            row,
            problems,
            cells,
            rest: None,
        } => {
            summary.rejected += 1;
            observer
                .rejected(row, &problems, &cells)
                .map_err(JobError::Observer)?;
            return Ok(None);
        }
        Item::Record {
            row,
            converted,
            cells,
        } => {
            let key = id_key(&converted.source_id);
            if let Some(first) = seen.get(&key) {
                summary.rejected += 1;
                let problems = [CellProblem {
                    hint: None,
                    column: None,
                    message: format!(
                        "the case id {:?} is also in row {first}: one row a case",
                        converted.source_id
                    ),
                }];
                observer
                    .rejected(row, &problems, &cells)
                    .map_err(JobError::Observer)?;
                return Ok(None);
            }
            seen.insert(key, row);
            (
                request(&converted, options.dry_run),
                row,
                converted,
                cells,
                Vec::new(),
            )
        }
    };
    Ok(Some(ToSend {
        request,
        row,
        converted,
        cells,
        prior,
    }))
}

/// Takes the node's answer about one row: counted and reported; a refusal
/// other than the row's content comes back as the error that stops the
/// import.
fn answered(
    sent: Sent,
    summary: &mut Summary,
    observer: &mut impl Observer,
) -> Result<Result<(), JobError>, JobError> {
    let Sent {
        row,
        converted,
        cells,
        mut prior,
        result,
    } = sent;
    if !prior.is_empty() {
        // A rejected row whose rest was checked: every problem at once.
        if let Err(s) = &result
            && s.code() == Code::InvalidArgument
        {
            let rest = rest_problems(s, &converted, &cells, &prior);
            prior.extend(rest);
        }
        summary.rejected += 1;
        observer
            .rejected(row, &prior, &cells)
            .map_err(JobError::Observer)?;
        return Ok(Ok(()));
    }
    match result {
        Ok(r) => {
            let outcome = r.outcome();
            match outcome {
                ImportOutcome::Created => summary.created += 1,
                ImportOutcome::Updated => summary.updated += 1,
                _ => summary.unchanged += 1,
            }
            let id = r.alert.as_ref().map(|a| a.id.as_str()).unwrap_or("");
            observer.imported(row, &converted.source_id, outcome, id);
        }
        Err(s) if s.code() == Code::InvalidArgument => {
            summary.rejected += 1;
            let problems = node_problems(&s, &converted, &cells);
            observer
                .rejected(row, &problems, &cells)
                .map_err(JobError::Observer)?;
        }
        Err(s) => {
            return Ok(Err(JobError::Refused {
                row,
                code: s.code(),
                message: s.message().to_owned(),
            }));
        }
    }
    Ok(Ok(()))
}

/// Retracts the alerts of the source whose case ids the file no longer has.
async fn retract_missing<S: Sink>(
    sink: &S,
    options: &Options,
    seen: &HashMap<u64, u32>,
    rows: u64,
    observer: &mut impl Observer,
) -> Result<u64, JobError> {
    let source = &options.source;
    if rows == 0 {
        return Err(JobError::Retract(format!(
            "the file has no rows: refusing to retract every alert of source {source:?} \
             (retract-missing retracts what the file no longer has)"
        )));
    }
    let mut gone = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = sink
            .list_imported(ListImportedRequest {
                source: source.clone(),
                page_size: 10_000,
                page_token,
            })
            .await
            .map_err(|s| {
                JobError::Retract(format!("listing source {source:?}: {}", s.message()))
            })?;
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
    let mut retracted = 0;
    for r in gone {
        if !options.dry_run {
            let reason = format!("case {} is no longer in the register {source}", r.source_id);
            match sink
                .retract(RetractAlertRequest {
                    id: r.alert_id.clone(),
                    expected_version: r.version,
                    reason,
                })
                .await
            {
                Ok(()) => {}
                // Changed or retracted since it was listed: the same
                // import run again settles it.
                Err(s) if matches!(s.code(), Code::FailedPrecondition | Code::Aborted) => continue,
                Err(s) => {
                    return Err(JobError::Retract(format!(
                        "{}: {}",
                        r.alert_id,
                        s.message()
                    )));
                }
            }
        }
        observer.retracted(&r);
        retracted += 1;
    }
    Ok(retracted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_read_as_words() {
        assert_eq!(
            field_label("draft.subjects[0].identifiers[1].phone.number"),
            "phone number"
        );
        assert_eq!(field_label("draft.content.category"), "category");
        assert_eq!(
            field_label("draft.content.location.country"),
            "location country"
        );
    }
}
