//! Importing a register from the browser: upload a spreadsheet with a
//! mapping, see the check of every row (the dry run: the node's own
//! validation, nothing stored), then run it and follow its progress. The
//! same `tabular::job` the CLI runs, calling the node's `ImportAlert` as
//! the viewer (so each row is authorized and audited as that RPC, with
//! `channel=console`).
//!
//! Uploads and their reports live in memory and a private temporary
//! directory for as long as the node keeps the job (the last
//! [`KEEP`](crate::console::imports::KEEP)), and only the certificate that
//! uploaded a job may see it: a register is case data.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::console::Console;
use crate::console::guard::{Posted, Uploaded};
use crate::console::imports::{Job, JobState, REPORTED, RowReport};
use crate::console::rpc::request;
use crate::console::view::{Chrome, PageError, Viewer, page};
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::{
    ImportAlertRequest, ImportAlertResponse, ImportOutcome, ImportedRecord, ListImportedRequest,
    ListImportedResponse, RetractAlertRequest,
};
use crate::tabular::job::{self, Summary};
use crate::tabular::{self, CellProblem, Loaded, cell_name};

/// Rows in flight, as the CLI's default.
const CONCURRENCY: usize = 32;

/// Empties the uploads directory (what a crash or a stop left there: the
/// jobs that used it are gone) and makes sure only the node's user can
/// enter it. Called once, when the console starts.
pub fn clear_uploads(dir: &std::path::Path) -> Result<(), String> {
    if dir.exists() {
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    crate::secrets::private_dir(dir, "uploads directory")
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route(
            "/import",
            get(form)
                .post(start)
                .layer(DefaultBodyLimit::max(crate::console::guard::MAX_UPLOAD)),
        )
        .route("/import/{id}", get(show))
        .route("/import/{id}/run", post(run_checked))
        .route("/import/{id}/rejected.csv", get(rejected_csv))
}

/// The node, as the viewer, in-process.
#[derive(Clone)]
struct AsViewer {
    console: Console,
    viewer: Viewer,
}

impl job::Sink for AsViewer {
    async fn import(&self, req: ImportAlertRequest) -> Result<ImportAlertResponse, tonic::Status> {
        self.console
            .alerts
            .import_alert(request(&self.viewer, req, ""))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn list_imported(
        &self,
        req: ListImportedRequest,
    ) -> Result<ListImportedResponse, tonic::Status> {
        self.console
            .alerts
            .list_imported(request(&self.viewer, req, ""))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn retract(&self, req: RetractAlertRequest) -> Result<(), tonic::Status> {
        self.console
            .alerts
            .retract_alert(request(&self.viewer, req, ""))
            .await
            .map(|_| ())
    }
}

/// What a run tells the page.
struct Report {
    job: Arc<Job>,
    headers: Vec<String>,
    /// The id column(s), to name the case of a rejected row.
    id_columns: Vec<usize>,
    rejected: Option<csv::Writer<Vec<u8>>>,
}

impl Report {
    fn push(&self, r: RowReport) {
        let mut s = self.job.state();
        if s.rows.len() < REPORTED {
            s.rows.push(r);
        } else {
            s.more += 1;
        }
    }
}

impl job::Observer for Report {
    fn progress(&mut self, position: u64, summary: &Summary) {
        let mut s = self.job.state();
        s.position = s.position.max(position);
        s.summary = summary.clone();
    }

    fn rejected(
        &mut self,
        row: u32,
        problems: &[CellProblem],
        cells: &[String],
    ) -> Result<(), String> {
        let sheet = self
            .job
            .sheet
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let id_col = self
            .id_columns
            .iter()
            .filter_map(|&c| cells.get(c))
            .find(|v| !v.trim().is_empty())
            .cloned()
            .unwrap_or_default();
        // Each problem at its column, named as the register's header
        // names it ("Born (J2)"), in the caseworker's words (the mapping
        // author's hints are the command line's).
        let reasons: Vec<String> = problems
            .iter()
            .map(|p| {
                let cell = cell_name(sheet.as_deref(), row, p.column);
                match p.column.and_then(|c| self.headers.get(c)) {
                    Some(h) if !h.trim().is_empty() => {
                        format!("{} ({cell}): {}", h.trim(), p.message)
                    }
                    _ => format!("{cell}: {}", p.message),
                }
            })
            .collect();
        if !self.job.dry_run {
            let w = self.rejected.get_or_insert_with(|| {
                let mut w = csv::WriterBuilder::new()
                    .flexible(true)
                    .from_writer(Vec::new());
                let mut h = self.headers.clone();
                h.push("casebridge_error".into());
                let _ = w.write_record(&h);
                w
            });
            let mut rec = cells.to_vec();
            rec.resize(self.headers.len().max(rec.len()), String::new());
            rec.push(reasons.join("; "));
            w.write_record(&rec).map_err(|e| e.to_string())?;
        }
        self.push(RowReport {
            row,
            case_id: id_col,
            outcome: "rejected".into(),
            alert: String::new(),
            problems: reasons,
        });
        Ok(())
    }

    fn imported(&mut self, row: u32, source_id: &str, outcome: ImportOutcome, alert: &str) {
        let word = match (outcome, self.job.dry_run) {
            (ImportOutcome::Created, true) => "would be created",
            (ImportOutcome::Updated, true) => "would be updated",
            (ImportOutcome::Created, false) => "created",
            (ImportOutcome::Updated, false) => "updated",
            _ => "unchanged",
        };
        self.push(RowReport {
            row,
            case_id: source_id.to_owned(),
            outcome: word.into(),
            alert: alert.to_owned(),
            problems: Vec::new(),
        });
    }

    fn retracted(&mut self, r: &ImportedRecord) {
        self.push(RowReport {
            row: 0,
            case_id: r.source_id.clone(),
            outcome: if self.job.dry_run {
                "would be retracted (no longer in the file)".into()
            } else {
                "retracted (no longer in the file)".into()
            },
            alert: r.alert_id.clone(),
            problems: Vec::new(),
        });
    }
}

/// Starts `job` in the background as `viewer`.
fn spawn(console: Console, viewer: Viewer, job: Arc<Job>) {
    job.state().running = true;
    tokio::spawn(async move {
        // Opening (AES-GCM over up to 64 MiB, a copy into memory) and the
        // reader's start both block: off the async workers.
        let opened = {
            let (uploads, opening) = (console.core.settings.uploads_dir.clone(), job.clone());
            tokio::task::spawn_blocking(move || {
                let revealed = reveal(&uploads, &opening)
                    .map_err(|e| format!("cannot read the upload: {e}"))?;
                let shown = revealed.path.display().to_string();
                let reader = tabular::read::open(&revealed.path, opening.loaded.clone())
                    .map_err(|e| e.to_string().replace(&shown, &opening.file_name))?;
                // The reader holds the file open now: the plaintext goes with it.
                Ok::<_, String>((reader, shown))
            })
            .await
        };
        let (reader, shown) = match opened {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return finish(&job, Err(e)),
            Err(e) => return finish(&job, Err(format!("the reader stopped: {e}"))),
        };
        *job.total.lock().unwrap_or_else(|p| p.into_inner()) = reader.total;
        *job.sheet.lock().unwrap_or_else(|p| p.into_inner()) = reader.sheet.clone();
        let options = job::Options {
            source: job.source.clone(),
            dry_run: job.dry_run,
            retract_missing: job.retract_missing,
            concurrency: CONCURRENCY,
        };
        let id_columns = tabular::convert::Bound::new(&job.loaded, &reader.headers)
            .map(|b| b.id_columns().to_vec())
            .unwrap_or_default();
        let mut report = Report {
            job: job.clone(),
            headers: reader.headers.clone(),
            id_columns,
            rejected: None,
        };
        let result = job::run(reader, AsViewer { console, viewer }, &options, &mut report).await;
        if let Some(w) = report.rejected.take()
            && let Ok(bytes) = w.into_inner()
        {
            job.state().rejected = bytes;
        }
        finish(
            &job,
            result.map_err(|e| e.to_string().replace(&shown, &job.file_name)),
        );
    });
}

/// An upload opened for one read: its plaintext in an anonymous memory
/// file (never on disk), reached through a link named like the upload in
/// a private directory; both go when this is dropped.
struct Revealed {
    _dir: tempfile::TempDir,
    _memory: std::fs::File,
    path: std::path::PathBuf,
}

/// The upload of `job`, opened with the job's key into memory (a link to
/// it in a private directory under `uploads`).
fn reveal(uploads: &std::path::Path, job: &Job) -> std::io::Result<Revealed> {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    let sealed = std::fs::read(&job.path)?;
    let plain = zeroize::Zeroizing::new(
        crate::vault::open(&job.key, upload_place(&job.file_name), &sealed)
            .map_err(std::io::Error::other)?,
    );
    let fd = rustix::fs::memfd_create(c"casebridge-upload", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut memory = std::fs::File::from(fd);
    memory.write_all(&plain)?;
    let dir = tempfile::Builder::new()
        .prefix("read-")
        .tempdir_in(uploads)?;
    let path = dir.path().join(upload_name(&job.file_name));
    std::os::unix::fs::symlink(format!("/proc/self/fd/{}", memory.as_raw_fd()), &path)?;
    Ok(Revealed {
        _dir: dir,
        _memory: memory,
        path,
    })
}

/// What an upload is sealed for: the upload of that file name.
fn upload_place(file_name: &str) -> crate::vault::Place<'_> {
    crate::vault::Place::Record {
        tree: "console-upload",
        key: file_name.as_bytes(),
    }
}

/// `register.<ext>`: the reader knows a file's type by its extension.
fn upload_name(file_name: &str) -> String {
    let ext = std::path::Path::new(file_name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    format!("register.{ext}")
}

fn finish(job: &Job, result: Result<Summary, String>) {
    let mut s = job.state();
    s.running = false;
    match result {
        Ok(summary) => s.summary = summary,
        Err(e) => s.error = Some(e),
    }
}

pub struct JobRow {
    pub id: u64,
    pub file: String,
    pub what: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "console/import.html")]
struct FormPage {
    chrome: Chrome,
    jobs: Vec<JobRow>,
    mapping: String,
    source: String,
    errors: Vec<(String, String)>,
}

impl FormPage {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

fn status_of(job: &Job) -> String {
    let s = job.state();
    if s.running {
        return format!("running: {} rows so far", s.summary.rows);
    }
    if let Some(e) = &s.error {
        return format!("stopped: {e}");
    }
    summary_line(&s.summary)
}

fn summary_line(s: &Summary) -> String {
    let would = if s.dry_run { "would be " } else { "" };
    format!(
        "{} rows: {would}created {}, {would}updated {}, unchanged {}, {would}retracted {}, rejected {}, empty {}",
        s.rows, s.created, s.updated, s.unchanged, s.retracted, s.rejected, s.empty
    )
}

fn job_rows(c: &Console, viewer: &Viewer) -> Vec<JobRow> {
    c.imports
        .of(viewer)
        .iter()
        .map(|j| JobRow {
            id: j.id,
            file: j.file_name.clone(),
            what: if j.dry_run {
                "check".into()
            } else {
                "import".into()
            },
            status: status_of(j),
        })
        .collect()
}

async fn form(State(c): State<Console>, viewer: Viewer) -> Result<Response, PageError> {
    page(FormPage {
        jobs: job_rows(&c, &viewer),
        chrome: Chrome::new(&viewer, "import"),
        mapping: "htcds".into(),
        source: String::new(),
        errors: Vec::new(),
    })
}

/// The upload: checked (mapping, file type), kept, and a job started.
async fn start(State(c): State<Console>, mut form: Uploaded) -> Result<Response, PageError> {
    let viewer = form.viewer.clone();
    let mut errors = Vec::new();
    let register = form.file("register");
    let mapping_upload = form.file("mapping_file");
    let mapping_name = form.get("mapping").to_owned();
    let source_override = form.get("source").to_owned();
    let dry_run = form.get("action") != "run";
    let retract_missing = form.get("retract_missing") == "yes";
    let file_name = register
        .map(|f| f.name.clone())
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let format = tabular::read::Format::of(std::path::Path::new(&file_name));
    match register {
        None => errors.push(("register".into(), "Choose the register's file.".into())),
        Some(f) if f.bytes.is_empty() => {
            errors.push(("register".into(), "The file is empty.".into()))
        }
        Some(_) if format.is_none() => errors.push((
            "register".into(),
            "Use a .csv, .tsv, .xlsx, .xlsm, .ods or .jsonl file (save .xls and .xlsb files as .xlsx).".into(),
        )),
        Some(_) => {}
    }
    let loaded = layout_of(mapping_upload, format, &mapping_name, &source_override);
    let loaded = match loaded {
        Ok(l) => Some(l),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    if !source_override.is_empty()
        && let Err(e) = crate::ids::SourceName::new(source_override.as_str())
    {
        errors.push(("source".into(), format!("{e}.")));
    }
    let (Some(_), Some(loaded), true) = (register, loaded, errors.is_empty()) else {
        return page(FormPage {
            jobs: job_rows(&c, &viewer),
            chrome: Chrome::new(&viewer, "import"),
            mapping: mapping_name,
            source: source_override,
            errors,
        })
        .map(|mut r| {
            *r.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            r
        });
    };
    let mapping_name = mapping_upload
        .filter(|m| !m.bytes.is_empty())
        .map_or(mapping_name, |m| m.name.clone());
    let bytes = form
        .take_file("register")
        .map(|f| f.bytes)
        .unwrap_or_default();
    let (dir, path, key) = keep_upload(&c, &file_name, bytes).await?;
    let source = if source_override.is_empty() {
        loaded.mapping.source.get_ref().clone()
    } else {
        source_override
    };
    let job = c.imports.add(Job {
        id: c.imports.next.fetch_add(1, Ordering::Relaxed) + 1,
        owner: viewer.client.spiffe_uri().to_owned(),
        file_name,
        mapping_name,
        source,
        dry_run,
        retract_missing,
        dir: Arc::new(dir),
        path,
        key,
        loaded: Arc::new(loaded),
        total: Mutex::new(None),
        sheet: Mutex::new(None),
        state: Mutex::new(JobState::default()),
    });
    spawn(c, viewer, job.clone());
    Ok(Redirect::to(&format!("/import/{}", job.id)).into_response())
}

/// The layout a register is read with: an uploaded mapping file, JSON
/// Lines by their own fields, or a built-in layout by name; a problem is
/// named with the input it belongs to.
fn layout_of(
    mapping_upload: Option<&crate::console::guard::Upload>,
    format: Option<tabular::read::Format>,
    mapping_name: &str,
    source_override: &str,
) -> Result<Loaded, (String, String)> {
    match (mapping_upload.filter(|m| !m.bytes.is_empty()), format) {
        (Some(m), _) => {
            let text = String::from_utf8_lossy(&m.bytes).into_owned();
            Loaded::parse(std::path::Path::new(&m.name), &text)
                .map_err(|e| ("mapping_file".to_string(), e.to_string()))
        }
        (None, Some(tabular::read::Format::Jsonl)) => {
            let source = if source_override.is_empty() {
                "console-import"
            } else {
                source_override
            };
            Loaded::json_lines(source, std::path::Path::new("<form>"))
                .map_err(|e| ("source".to_string(), e.to_string()))
        }
        (None, _) => Loaded::load(mapping_name).map_err(|e| ("mapping".to_string(), e.to_string())),
    }
}

/// Keeps an uploaded register in the node's own uploads directory (owner
/// only, emptied at start), sealed under a key of the job's own that only
/// memory holds: the file on disk reveals nothing, and a crash (or the
/// job's end) leaves nothing that opens. Sealing and writing up to the
/// upload limit run off the async workers, which serve everyone else.
/// Returns the directory (removed with the job), the file and the key.
async fn keep_upload(
    c: &Console,
    file_name: &str,
    bytes: Vec<u8>,
) -> Result<(tempfile::TempDir, std::path::PathBuf, crate::vault::Secret), PageError> {
    let uploads = c.core.settings.uploads_dir.clone();
    let file_name = file_name.to_owned();
    tokio::task::spawn_blocking(move || {
        let failed =
            |e: std::io::Error| PageError::Internal(format!("cannot keep the upload: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(&uploads)
            .map_err(failed)?;
        let key = crate::vault::Secret::random();
        let sealed = crate::vault::seal(&key, b"upload", upload_place(&file_name), &bytes);
        drop(bytes);
        let path = dir
            .path()
            .join(format!("{}.sealed", upload_name(&file_name)));
        crate::secrets::create_private(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &sealed))
            .map_err(failed)?;
        Ok((dir, path, key))
    })
    .await
    .map_err(|e| PageError::Internal(format!("cannot keep the upload: {e}")))?
}

/// "Run the import": the file and mapping of a checked job, for real.
async fn run_checked(
    State(c): State<Console>,
    Path(id): Path<u64>,
    form: Posted,
) -> Result<Response, PageError> {
    let checked = c.imports.get(id, &form.viewer)?;
    if checked.state().running {
        return Err(PageError::Conflict("the check is still running".into()));
    }
    let job = c.imports.add(Job {
        id: c.imports.next.fetch_add(1, Ordering::Relaxed) + 1,
        owner: checked.owner.clone(),
        file_name: checked.file_name.clone(),
        mapping_name: checked.mapping_name.clone(),
        source: checked.source.clone(),
        dry_run: false,
        retract_missing: checked.retract_missing,
        dir: checked.dir.clone(),
        path: checked.path.clone(),
        key: checked.key.clone(),
        loaded: checked.loaded.clone(),
        total: Mutex::new(None),
        sheet: Mutex::new(None),
        state: Mutex::new(JobState::default()),
    });
    spawn(c, form.viewer, job.clone());
    Ok(Redirect::to(&format!("/import/{}", job.id)).into_response())
}

#[derive(Template)]
#[template(path = "console/import_job.html")]
struct JobPage {
    chrome: Chrome,
    id: u64,
    file: String,
    mapping: String,
    source: String,
    dry_run: bool,
    retract_missing: bool,
    running: bool,
    percent: u64,
    summary: String,
    error: String,
    rows: Vec<RowReport>,
    more: u64,
    has_rejected: bool,
    can_run: bool,
}

async fn show(
    State(c): State<Console>,
    viewer: Viewer,
    Path(id): Path<u64>,
) -> Result<Response, PageError> {
    let job = c.imports.get(id, &viewer)?;
    let total = *job.total.lock().unwrap_or_else(|p| p.into_inner());
    let mut s = job.state();
    let percent = match (s.running, total) {
        (false, _) => 100,
        (true, Some(t)) if t > 0 => (s.position * 100 / t).min(99),
        _ => 0,
    };
    // Rows are answered out of order (several in flight): show them in
    // the file's order, retractions last.
    s.rows.sort_by_key(|r| (r.row == 0, r.row));
    let rows = std::mem::take(&mut s.rows);
    let view = JobPage {
        chrome: Chrome::new(&viewer, "import"),
        id,
        file: job.file_name.clone(),
        mapping: job.mapping_name.clone(),
        source: job.source.clone(),
        dry_run: job.dry_run,
        retract_missing: job.retract_missing,
        running: s.running,
        percent,
        summary: summary_line(&s.summary),
        error: s.error.clone().unwrap_or_default(),
        more: s.more,
        has_rejected: !s.rejected.is_empty(),
        can_run: job.dry_run
            && !s.running
            && s.error.is_none()
            && viewer.may(crate::config::Role::Submit),
        rows,
    };
    let rendered = view.render();
    // The rows go back: the page is drawn again while the job runs.
    s.rows = view.rows;
    drop(s);
    let mut response = axum::response::Html(rendered?).into_response();
    if view.running {
        // No script: the browser asks again by itself while the job runs.
        response
            .headers_mut()
            .insert("refresh", axum::http::HeaderValue::from_static("2"));
    }
    Ok(response)
}

async fn rejected_csv(
    State(c): State<Console>,
    viewer: Viewer,
    Path(id): Path<u64>,
) -> Result<Response, PageError> {
    let job = c.imports.get(id, &viewer)?;
    let bytes = job.state().rejected.clone();
    if bytes.is_empty() {
        return Err(PageError::NotFound("this import rejected no row".into()));
    }
    let stem = job
        .file_name
        .rsplit_once('.')
        .map_or(job.file_name.as_str(), |(s, _)| s)
        .replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
            "_",
        );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{stem}.rejected.csv\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
