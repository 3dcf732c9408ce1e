//! Reading a register file, streamed. A reader thread reads rows (CSV with
//! the `csv` crate, XLSX with calamine's cell stream, ODS / XLS / XLSB
//! through calamine's sheet ranges, JSON Lines line by line), converts
//! each with the mapping and hands the results over a bounded channel: at
//! most `BUFFER` rows wait between the file and the caller, whatever the
//! file's size. (calamine reads ODS sheets whole; only XLSX and CSV
//! stream, and those are what large registers are kept in.)
//!
//! Every file is hostile until bounded: a workbook is inspected by
//! [`super::bounds`] before calamine sees it, and each row is bounded as
//! it is read (at most [`MAX_COLUMNS`] cells, [`MAX_CELL_BYTES`] a cell,
//! [`MAX_ROW_BYTES`] a row), so the reader's memory is at most `BUFFER`
//! rows of `MAX_ROW_BYTES` whatever the file declares.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use calamine::{Data, DataRef, Reader as _};
use thiserror::Error;

use super::bounds::{self, MAX_CELL_BYTES, MAX_COLUMNS, MAX_ROW_BYTES};
use super::convert::{Bound, CellProblem, Converted, RowOutcome};
use super::mapping::Loaded;
use crate::proto::v1::ImportAlertRequest;

/// Rows converted ahead of the caller (the job keeps 32 in flight).
const BUFFER: usize = 64;

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("{}: {message}", file.display())]
    File { file: PathBuf, message: String },
    #[error("{}:{}: {message}", file.display(), super::cell_name(sheet.as_deref(), *row, None))]
    Row {
        file: PathBuf,
        sheet: Option<String>,
        row: u32,
        message: String,
    },
}

/// The formats `alert import` reads, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
    /// ODS: through calamine's whole-sheet range. (XLS and XLSB map here
    /// too, and are refused by [`bounds::check_workbook`].)
    Sheet,
    Jsonl,
}

impl Format {
    pub fn of(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" | "tsv" | "txt" => Self::Csv,
            "xlsx" | "xlsm" => Self::Xlsx,
            "ods" | "xls" | "xlsb" => Self::Sheet,
            "jsonl" | "ndjson" => Self::Jsonl,
            _ => return None,
        })
    }
}

/// One row of the file, as the caller gets it.
#[derive(Debug)]
pub enum Item {
    /// A row made into a draft.
    Record {
        row: u32,
        converted: Box<Converted>,
        cells: Vec<String>,
    },
    /// A row with problems, each at its column, and the draft of the rest
    /// of the row when it converted (for the node to check too).
    Rejected {
        row: u32,
        problems: Vec<CellProblem>,
        cells: Vec<String>,
        rest: Option<Box<Converted>>,
    },
    /// A row with nothing but its id.
    Empty { row: u32 },
}

/// A file being read.
pub struct Reader {
    pub file: PathBuf,
    /// The sheet, for cell names (`Cases!C17`); `None` for CSV and JSON Lines.
    pub sheet: Option<String>,
    /// The header row's cells (for the rejected-rows file).
    pub headers: Vec<String>,
    /// Columns the mapping names that the file lacks, skipped (with
    /// `missing_columns = "skip"`).
    pub skipped: Vec<String>,
    /// Progress is counted in bytes (CSV, JSON Lines) or rows (workbooks)
    /// out of this many, when known.
    pub total: Option<u64>,
    /// Each row with the progress made when it was read.
    pub items: tokio::sync::mpsc::Receiver<Result<(Item, u64), ReadError>>,
}

/// A spreadsheet cell as text: integers without ".0" (phone numbers are
/// often typed as numbers), dates as ISO dates, errors refused.
fn cell_text(cell: &DataRef<'_>) -> Result<String, String> {
    Ok(match cell {
        DataRef::Empty => String::new(),
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        DataRef::Float(f) => f.to_string(),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_owned(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(d) if d.is_datetime() => {
            let (y, mo, day, h, mi, s, _) = d.to_ymd_hms_milli();
            if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{day:02}")
            } else {
                format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}Z")
            }
        }
        DataRef::DateTime(d) => d.as_f64().to_string(),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => return Err(format!("the cell holds the error {e}")),
    })
}

fn data_ref(cell: &Data) -> DataRef<'_> {
    match cell {
        Data::Int(i) => DataRef::Int(*i),
        Data::Float(f) => DataRef::Float(*f),
        Data::String(s) => DataRef::SharedString(s),
        Data::Bool(b) => DataRef::Bool(*b),
        Data::DateTime(d) => DataRef::DateTime(*d),
        Data::DateTimeIso(s) => DataRef::DateTimeIso(s.clone()),
        Data::DurationIso(s) => DataRef::DurationIso(s.clone()),
        Data::Error(e) => DataRef::Error(e.clone()),
        Data::Empty => DataRef::Empty,
    }
}

/// A raw row from a file: 1-based number, cells, cells that could not be
/// read, progress.
#[derive(Default)]
struct RawRow {
    number: u32,
    cells: Vec<String>,
    bad: Vec<CellProblem>,
    progress: u64,
    /// Bytes of the cells kept so far.
    bytes: usize,
}

/// Problems listed for one row; a row with more is refused all the same.
const MAX_ROW_PROBLEMS: usize = 16;

impl RawRow {
    fn new(number: u32, progress: u64) -> Self {
        Self {
            number,
            progress,
            ..Self::default()
        }
    }

    /// Puts `text` at column `c0` within the row's bounds; a cell or row
    /// beyond them becomes a problem at its column and its text is not
    /// kept, so a hostile row costs no more than a full legitimate one.
    fn put(&mut self, c0: usize, text: String) {
        let problem = if c0 >= MAX_COLUMNS {
            Some(format!(
                "the row has a cell beyond column {} ({MAX_COLUMNS} columns are read)",
                super::column_letter(MAX_COLUMNS - 1)
            ))
        } else if text.len() > MAX_CELL_BYTES {
            Some(format!(
                "the cell holds {} bytes, at most {} KB are read",
                text.len(),
                MAX_CELL_BYTES >> 10
            ))
        } else if self.bytes + text.len() > MAX_ROW_BYTES {
            Some(format!(
                "the row holds more than {} MB, at most that is read",
                MAX_ROW_BYTES >> 20
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            if self.bad.len() < MAX_ROW_PROBLEMS {
                self.bad.push(CellProblem {
                    hint: None,
                    column: (c0 < MAX_COLUMNS).then_some(c0),
                    message,
                });
            }
            return;
        }
        self.bytes += text.len();
        if self.cells.len() <= c0 {
            self.cells.resize(c0 + 1, String::new());
        }
        self.cells[c0] = text;
    }
}

/// The header row's cells, and the mapped columns it lacks (skipped).
type Header = (Vec<String>, Vec<String>);

/// Where rows go: the first ones (up to the header) set the scene, the
/// rest are converted and sent.
struct Sink {
    tx: tokio::sync::mpsc::Sender<Result<(Item, u64), ReadError>>,
    header_tx: Option<std::sync::mpsc::Sender<Result<Header, ReadError>>>,
    loaded: Arc<Loaded>,
    file: PathBuf,
    sheet: Option<String>,
    /// The mapping bound to the header row, once it has been read.
    bound: Option<Bound>,
}

impl Sink {
    /// Takes one row; `false` when the caller has gone (stop reading).
    fn row(&mut self, raw: RawRow) -> bool {
        let m = &self.loaded.mapping;
        let first = m.first_row.unwrap_or(m.header_row + 1);
        if raw.number < m.header_row {
            return true;
        }
        let Some(bound) = &self.bound else {
            let mut headers = raw.cells;
            if let Some(h) = headers.first_mut()
                && let Some(rest) = h.strip_prefix('\u{feff}')
            {
                *h = rest.to_owned();
            }
            let bound = Bound::new(&self.loaded, &headers);
            if let Err(missing) = &bound {
                let err = ReadError::Row {
                    file: self.file.clone(),
                    sheet: self.sheet.clone(),
                    row: m.header_row,
                    message: format!(
                        "the header row has no column {}: the mapping names {}",
                        missing
                            .iter()
                            .map(|c| format!("{c:?}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if missing.len() == 1 { "it" } else { "them" }
                    ),
                };
                if let Some(h) = self.header_tx.take() {
                    let _ = h.send(Err(err));
                }
                return false;
            }
            let Ok(bound) = bound else { return false };
            if let Some(h) = self.header_tx.take() {
                let _ = h.send(Ok((headers, bound.skipped().to_vec())));
            }
            self.bound = Some(bound);
            return true;
        };
        if raw.number < first {
            return true;
        }
        let item = if !raw.bad.is_empty() {
            Item::Rejected {
                row: raw.number,
                problems: raw.bad,
                cells: raw.cells,
                rest: None,
            }
        } else {
            match bound.convert_with_rest(&raw.cells) {
                Ok(RowOutcome::Alert(converted)) => Item::Record {
                    row: raw.number,
                    converted,
                    cells: raw.cells,
                },
                Ok(RowOutcome::Empty) => Item::Empty { row: raw.number },
                Err((problems, rest)) => Item::Rejected {
                    row: raw.number,
                    problems,
                    cells: raw.cells,
                    rest,
                },
            }
        };
        self.tx.blocking_send(Ok((item, raw.progress))).is_ok()
    }

    fn fail(&mut self, err: ReadError) {
        match self.header_tx.take() {
            Some(h) => {
                let _ = h.send(Err(err));
            }
            None => {
                let _ = self.tx.blocking_send(Err(err));
            }
        }
    }

    /// The file ended before its header row.
    fn finish(&mut self) {
        if let Some(h) = self.header_tx.take() {
            let _ = h.send(Err(ReadError::File {
                file: self.file.clone(),
                message: format!(
                    "the file ends before its header row (row {})",
                    self.loaded.mapping.header_row
                ),
            }));
        }
    }
}

/// Opens `file` and starts reading it with `loaded`. Returns once the
/// header row has been read and bound (or the file failed before it): it
/// blocks, so async callers run it with `spawn_blocking`.
pub fn open(file: &Path, loaded: Arc<Loaded>) -> Result<Reader, ReadError> {
    let format = Format::of(file).ok_or_else(|| ReadError::File {
        file: file.to_owned(),
        message: "unknown file type: .csv, .xlsx, .ods, .xls, .xlsb or .jsonl".into(),
    })?;
    let file_err = |message: String| ReadError::File {
        file: file.to_owned(),
        message,
    };
    let (tx, items) = tokio::sync::mpsc::channel(BUFFER);
    let (header_tx, header_rx) = std::sync::mpsc::channel();
    let (sheet, total) = match format {
        Format::Csv | Format::Jsonl => (
            None,
            std::fs::metadata(file)
                .map_err(|e| file_err(e.to_string()))?
                .len()
                .into(),
        ),
        Format::Xlsx | Format::Sheet => (Some(workbook_sheet(file, &loaded)?), None),
    };
    let mut sink = Sink {
        tx,
        header_tx: Some(header_tx),
        loaded,
        file: file.to_owned(),
        sheet: sheet.clone(),
        bound: None,
    };
    if format == Format::Jsonl {
        // No header row: each line is a whole request.
        sink.header_tx = None;
    }
    let path = file.to_owned();
    let sheet_name = sheet.clone();
    let total_rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let rows_seen = total_rows.clone();
    std::thread::Builder::new()
        .name("import-reader".into())
        .spawn(move || {
            let result = match format {
                Format::Csv => read_csv(&path, &mut sink),
                Format::Xlsx => read_xlsx(
                    &path,
                    sheet_name.as_deref().unwrap_or(""),
                    &mut sink,
                    &rows_seen,
                ),
                Format::Sheet => read_sheet(
                    &path,
                    sheet_name.as_deref().unwrap_or(""),
                    &mut sink,
                    &rows_seen,
                ),
                Format::Jsonl => read_jsonl(&path, &sink),
            };
            match result {
                Err(e) => sink.fail(e),
                Ok(()) => sink.finish(),
            }
        })
        .map_err(|e| file_err(format!("cannot start the reader: {e}")))?;
    let (headers, skipped) = if format == Format::Jsonl {
        (Vec::new(), Vec::new())
    } else {
        header_rx
            .recv()
            .map_err(|_| file_err("the reader stopped".into()))??
    };
    let total = match format {
        Format::Xlsx | Format::Sheet => {
            Some(total_rows.load(std::sync::atomic::Ordering::Relaxed)).filter(|t| *t > 0)
        }
        _ => total,
    };
    Ok(Reader {
        file: file.to_owned(),
        sheet,
        headers,
        skipped,
        total,
        items,
    })
}

/// The sheet of a workbook to read (the mapping's, or the first), once
/// the workbook is inspected within its bounds.
fn workbook_sheet(file: &Path, loaded: &Loaded) -> Result<String, ReadError> {
    let file_err = |message: String| ReadError::File {
        file: file.to_owned(),
        message,
    };
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    bounds::check_workbook(file, &ext).map_err(file_err)?;
    let wb = calamine::open_workbook_auto(file).map_err(|e| file_err(e.to_string()))?;
    let names = wb.sheet_names();
    match &loaded.mapping.sheet {
        Some(s) if names.contains(s) => Ok(s.clone()),
        Some(s) => Err(file_err(format!(
            "no sheet {s:?}; its sheets are {}",
            names.join(", ")
        ))),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| file_err("the workbook has no sheet".into())),
    }
}

fn read_csv(path: &Path, sink: &mut Sink) -> Result<(), ReadError> {
    let delimiter = sink.loaded.mapping.delimiter.unwrap_or_else(|| {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tsv"))
        {
            '\t'
        } else {
            ','
        }
    });
    let delimiter = u8::try_from(delimiter).map_err(|_| ReadError::File {
        file: path.to_owned(),
        message: "delimiter: a CSV delimiter is one ASCII character".into(),
    })?;
    let file = std::fs::File::open(path).map_err(|e| ReadError::File {
        file: path.to_owned(),
        message: e.to_string(),
    })?;
    let limit = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(RecordBound {
            inner: file,
            read: 0,
            limit: limit.clone(),
        });
    let mut record = csv::StringRecord::new();
    loop {
        let number = reader.position().line() as u32;
        // The csv crate holds a whole record: bound what it may read for
        // this one (its own buffer reads ahead a little).
        limit.set(reader.position().byte() + (MAX_ROW_BYTES + CSV_READ_AHEAD) as u64);
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let mut raw = RawRow::new(
                    record.position().map_or(number, |p| p.line() as u32),
                    reader.position().byte(),
                );
                for (c0, cell) in record.iter().enumerate() {
                    raw.put(c0, cell.to_owned());
                    if c0 >= MAX_COLUMNS {
                        break;
                    }
                }
                if !sink.row(raw) {
                    return Ok(());
                }
            }
            Err(e) => {
                let row = e.position().map_or(number, |p| p.line() as u32);
                return Err(ReadError::Row {
                    file: path.to_owned(),
                    sheet: None,
                    row,
                    message: match e.kind() {
                        csv::ErrorKind::Utf8 { .. } => {
                            "is not UTF-8 text: save the file as CSV UTF-8".into()
                        }
                        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::FileTooLarge => {
                            io.to_string()
                        }
                        _ => e.to_string(),
                    },
                });
            }
        }
    }
}

/// Bytes the csv crate reads beyond a record's end (its buffer is 8 KiB).
const CSV_READ_AHEAD: usize = 64 << 10;

/// The CSV file, read no further than `limit` (set before each record).
struct RecordBound {
    inner: std::fs::File,
    read: u64,
    limit: std::rc::Rc<std::cell::Cell<u64>>,
}

impl std::io::Read for RecordBound {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = self.limit.get().saturating_sub(self.read);
        if room == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "the row is longer than {} MB (a quote left open?); rows of at most that \
                     are read",
                    MAX_ROW_BYTES >> 20
                ),
            ));
        }
        let take = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..take])?;
        self.read += n as u64;
        Ok(n)
    }
}

/// XLSX, streamed cell by cell (calamine's `worksheet_cells_reader`): the
/// cells of a row arrive together, rows in order.
fn read_xlsx(
    path: &Path,
    sheet: &str,
    sink: &mut Sink,
    total: &std::sync::atomic::AtomicU64,
) -> Result<(), ReadError> {
    let err = |message: String| ReadError::File {
        file: path.to_owned(),
        message,
    };
    let mut wb: calamine::Xlsx<_> =
        calamine::open_workbook(path).map_err(|e: calamine::XlsxError| err(e.to_string()))?;
    let mut cells = wb
        .worksheet_cells_reader(sheet)
        .map_err(|e| err(e.to_string()))?;
    total.store(
        u64::from(cells.dimensions().end.0) + 1,
        std::sync::atomic::Ordering::Relaxed,
    );
    let mut current: Option<RawRow> = None;
    loop {
        let cell = cells.next_cell().map_err(|e| err(e.to_string()))?;
        let pos = cell.as_ref().map(|c| c.get_position());
        if let Some(row) = current.take_if(|r| pos.is_none_or(|(r0, _)| r0 + 1 != r.number))
            && !sink.row(row)
        {
            return Ok(());
        }
        let Some(cell) = cell else { return Ok(()) };
        let (r0, c0) = cell.get_position();
        let row =
            current.get_or_insert_with(|| RawRow::new(r0.saturating_add(1), u64::from(r0) + 1));
        let c0 = c0 as usize;
        match cell_text(cell.get_value()) {
            Ok(t) => row.put(c0, t),
            Err(message) => row.bad.push(CellProblem {
                hint: None,
                column: Some(c0),
                message,
            }),
        }
    }
}

/// ODS, XLS, XLSB: the sheet as a range (calamine reads these whole).
fn read_sheet(
    path: &Path,
    sheet: &str,
    sink: &mut Sink,
    total: &std::sync::atomic::AtomicU64,
) -> Result<(), ReadError> {
    let err = |message: String| ReadError::File {
        file: path.to_owned(),
        message,
    };
    let mut wb = calamine::open_workbook_auto(path).map_err(|e| err(e.to_string()))?;
    let range = wb.worksheet_range(sheet).map_err(|e| err(e.to_string()))?;
    let Some((r0, c0)) = range.start() else {
        return Ok(());
    };
    total.store(
        u64::from(range.end().map_or(0, |e| e.0 + 1)),
        std::sync::atomic::Ordering::Relaxed,
    );
    for (i, cells) in range.rows().enumerate() {
        let number = r0 + i as u32 + 1;
        let mut row = RawRow::new(number, u64::from(number));
        for (j, cell) in cells.iter().enumerate() {
            let column = c0 as usize + j;
            match cell_text(&data_ref(cell)) {
                Ok(t) if t.is_empty() => {}
                Ok(t) => row.put(column, t),
                Err(message) => row.bad.push(CellProblem {
                    hint: None,
                    column: Some(column),
                    message,
                }),
            }
        }
        if !sink.row(row) {
            return Ok(());
        }
    }
    Ok(())
}

/// JSON Lines: each line the canonical protobuf JSON of an
/// `ImportAlertRequest` (`{"sourceId": "…", "draft": {…}}`; the source
/// comes from the mapping or the command line), or of an `Alert` as the
/// JSON Lines export writes it. Blank lines are skipped.
fn read_jsonl(path: &Path, sink: &Sink) -> Result<(), ReadError> {
    let file = std::fs::File::open(path).map_err(|e| ReadError::File {
        file: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut reader = std::io::BufReader::new(file);
    let (mut bytes, mut number, mut offset) = (Vec::new(), 0u32, 0u64);
    loop {
        bytes.clear();
        let row_err = |message: String| ReadError::Row {
            file: path.to_owned(),
            sheet: None,
            row: number + 1,
            message,
        };
        // One line is one alert: never buffered past the row bound.
        let n = (&mut reader)
            .take(MAX_ROW_BYTES as u64 + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| row_err(e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        if n > MAX_ROW_BYTES && bytes.last() != Some(&b'\n') {
            return Err(row_err(format!(
                "the line is longer than {} MB; one alert a line, of at most that",
                MAX_ROW_BYTES >> 20
            )));
        }
        let line = std::str::from_utf8(&bytes).map_err(|_| row_err("is not UTF-8 text".into()))?;
        number += 1;
        offset += n as u64;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        // An exported alert (`alert export --format jsonl`) has an `id`,
        // which is its source id; anything else is a request.
        let is_alert = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            .is_ok_and(|o| o.contains_key("id"));
        let parsed = if is_alert {
            serde_json::from_str::<crate::proto::v1::Alert>(text).map(|a| ImportAlertRequest {
                source_id: a.id,
                draft: Some(crate::proto::v1::AlertDraft {
                    content: a.content,
                    subjects: a.subjects,
                    case_reference: a.case_reference,
                    title: a.title,
                }),
                ..Default::default()
            })
        } else {
            serde_json::from_str::<ImportAlertRequest>(text)
        };
        let item = match parsed {
            Ok(r) if r.source_id.trim().is_empty() => Item::Rejected {
                rest: None,
                row: number,
                problems: vec![CellProblem {
                    hint: None,
                    column: None,
                    message: "sourceId is empty: every line needs the record's own id".into(),
                }],
                cells: vec![text.to_owned()],
            },
            Ok(r) => Item::Record {
                row: number,
                converted: Box::new(Converted::whole(r.source_id, {
                    let mut draft = r.draft.unwrap_or_default();
                    super::convert::canonical_order(&mut draft);
                    draft
                })),
                cells: vec![text.to_owned()],
            },
            Err(e) => Item::Rejected {
                rest: None,
                row: number,
                problems: vec![CellProblem {
                    hint: None,
                    column: None,
                    message: format!(
                        "not {} in protobuf JSON: {e}",
                        if is_alert {
                            "an Alert"
                        } else {
                            "an ImportAlertRequest"
                        }
                    ),
                }],
                cells: vec![text.to_owned()],
            },
        };
        if sink.tx.blocking_send(Ok((item, offset))).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Loaded;
    use super::*;

    /// An OpenDocument spreadsheet, as LibreOffice saves one (the parts
    /// calamine reads): text, a number typed as a year, a date cell.
    fn write_ods(path: &Path, rows: &[&[&str]]) {
        use std::io::Write;
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        zip.start_file("mimetype", stored).unwrap();
        zip.write_all(b"application/vnd.oasis.opendocument.spreadsheet")
            .unwrap();
        zip.start_file("META-INF/manifest.xml", stored).unwrap();
        zip.write_all(
            br#"<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">
 <manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>
 <manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
</manifest:manifest>"#,
        )
        .unwrap();
        let mut xml = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet><table:table table:name="Cases">"#,
        );
        for row in rows {
            xml.push_str("<table:table-row>");
            for cell in *row {
                if let Some(date) = cell.strip_prefix("date:") {
                    xml.push_str(&format!(
                        r#"<table:table-cell office:value-type="date" office:date-value="{date}"><text:p>{date}</text:p></table:table-cell>"#
                    ));
                } else if let Some(n) = cell.strip_prefix("number:") {
                    xml.push_str(&format!(
                        r#"<table:table-cell office:value-type="float" office:value="{n}"><text:p>{n}</text:p></table:table-cell>"#
                    ));
                } else if cell.is_empty() {
                    xml.push_str("<table:table-cell/>");
                } else {
                    xml.push_str(&format!(
                        r#"<table:table-cell office:value-type="string"><text:p>{cell}</text:p></table:table-cell>"#
                    ));
                }
            }
            xml.push_str("</table:table-row>");
        }
        xml.push_str("</table:table></office:spreadsheet></office:body></office:document-content>");
        zip.start_file("content.xml", stored).unwrap();
        zip.write_all(xml.as_bytes()).unwrap();
        zip.finish().unwrap();
    }

    #[test]
    fn an_ods_sheet_reads_like_a_workbook() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("register.ods");
        write_ods(
            &path,
            &[
                &["Case", "Kind", "Given", "Born", "Seen", "Phone"],
                &[
                    "C-1",
                    "sexual_exploitation",
                    "Ana",
                    "date:1990-03-07",
                    "date:2024-05-02",
                    "+31 6 1234 5678",
                ],
                &["C-2", "robbery", "Ion", "number:1985", "", ""],
            ],
        );
        let mapping = Loaded::parse(
            Path::new("m.toml"),
            r#"
source = "reg"
id_column = "Case"
sheet = "Cases"
[defaults]
severity = "low"
tlp = "amber"
[content]
category = "Kind"
start = "Seen"
[[subjects]]
given_names = "Given"
date_of_birth = "Born"
phones = "Phone"
"#,
        )
        .unwrap();
        let mut reader = open(&path, Arc::new(mapping)).unwrap();
        assert_eq!(reader.sheet.as_deref(), Some("Cases"));
        let (first, _) = reader.items.blocking_recv().unwrap().unwrap();
        let Item::Record { row, converted, .. } = first else {
            panic!("{first:?}")
        };
        assert_eq!((row, converted.source_id.as_str()), (2, "C-1"));
        let draft = &converted.draft;
        assert_eq!(
            draft
                .content
                .as_ref()
                .unwrap()
                .time_window
                .as_ref()
                .unwrap()
                .start
                .unwrap()
                .seconds,
            1_714_608_000,
            "a date cell"
        );
        let Some(crate::proto::v1::identifier::Kind::Person(p)) =
            &draft.subjects[0].identifiers[0].kind
        else {
            panic!("{draft:?}")
        };
        assert_eq!(p.date_of_birth, "1990-03-07");
        let (second, _) = reader.items.blocking_recv().unwrap().unwrap();
        let Item::Rejected { row, problems, .. } = second else {
            panic!("{second:?}")
        };
        assert_eq!(row, 3);
        assert_eq!(problems[0].column, Some(1), "{problems:?}");
        assert!(reader.items.blocking_recv().is_none());
    }
}
