//! What a register file may expand to, checked before a reader allocates
//! anything for it.
//!
//! A spreadsheet is a small file that describes a large thing: an XLSX
//! of 1.5 KB can name the cell `LXQEASV1` (four billion columns to the
//! left of it), a 511 KB one can hold one inline string that unpacks to
//! 512 MB, a string table can declare four billion entries, and an ODS
//! row can repeat one cell 16,384 times a million times. calamine
//! allocates for what the file declares, and an allocation that fails
//! aborts the whole process (every listener of the node with it). So the
//! file is inspected first, streaming and with bounded buffers, and only
//! a file within every bound below reaches calamine:
//!
//! - every part of the archive unpacks to at most [`MAX_PART_BYTES`], all
//!   together to at most [`MAX_UNPACKED_BYTES`], in at most [`MAX_PARTS`]
//!   parts (the unpacked bytes are counted, not the sizes the archive
//!   declares);
//! - no XML token (a tag or a run of text) is longer than
//!   [`MAX_TOKEN_BYTES`], so no parser ever buffers more;
//! - the XLSX string table, which calamine holds whole, unpacks to at most
//!   [`MAX_STRING_TABLE_BYTES`] and declares at most [`MAX_STRINGS`];
//! - no XLSX cell lies beyond column [`MAX_COLUMNS`], and the sheet's
//!   declared dimensions are well formed;
//! - an ODS sheet (read whole, as a range) spans at most
//!   [`MAX_SHEET_CELLS`] cells, repeats counted.
//!
//! CSV and JSON Lines are bounded row by row by the reader
//! ([`MAX_ROW_BYTES`]). XLS and XLSB are binary formats whose declared
//! dimensions calamine reserves memory for before reading a cell; they
//! are refused with a request to save the file as XLSX or CSV.

use std::io::{self, BufReader, Read};
use std::path::Path;

use quick_xml::events::{BytesStart, Event};

/// Columns a register row may have (HTCDS has fewer than 100).
pub const MAX_COLUMNS: usize = 1024;
/// Bytes one cell (or one JSON Lines line) may hold: the largest narrative
/// a node can be configured to take.
pub const MAX_CELL_BYTES: usize = 1 << 20;
/// Bytes one row may hold, all cells together. The reader keeps a bounded
/// number of rows in flight, so this bounds its memory.
pub const MAX_ROW_BYTES: usize = 2 << 20;
/// Parts an archive may hold.
pub const MAX_PARTS: usize = 10_000;
/// Bytes one part may unpack to (sheets are streamed, so this bounds time).
pub const MAX_PART_BYTES: u64 = 512 << 20;
/// Bytes all parts together may unpack to.
pub const MAX_UNPACKED_BYTES: u64 = 1 << 30;
/// Longest XML tag or text run.
pub const MAX_TOKEN_BYTES: u64 = MAX_CELL_BYTES as u64;
/// Bytes the XLSX string table may unpack to (calamine holds it whole).
pub const MAX_STRING_TABLE_BYTES: u64 = 32 << 20;
/// Entries the XLSX string table may declare.
pub const MAX_STRINGS: u64 = 1_000_000;
/// Rows a sheet may declare (the XLSX format's own maximum).
pub const MAX_ROWS: u64 = 1_048_576;
/// Cells an ODS sheet's range may span (calamine builds it whole).
pub const MAX_SHEET_CELLS: u64 = 2_000_000;

/// Why a file was not read: one sentence for the person who sent it.
pub type Refusal = String;

/// Inspects a workbook before calamine opens it (`ext` is the file's
/// lower-case extension). CSV and JSON Lines need nothing here.
pub fn check_workbook(path: &Path, ext: &str) -> Result<(), Refusal> {
    match ext {
        "xlsx" | "xlsm" => check_archive(path, Kind::Xlsx),
        "ods" => check_archive(path, Kind::Ods),
        "xls" | "xlsb" => Err(format!(
            ".{ext} files are not read: their binary format declares sheet sizes that are \
             reserved in memory before a cell is read; save the file as .xlsx or .csv"
        )),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Xlsx,
    Ods,
}

fn check_archive(path: &Path, kind: Kind) -> Result<(), Refusal> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("not a readable workbook (ZIP archive): {e}"))?;
    if zip.len() > MAX_PARTS {
        return Err(format!(
            "the workbook holds {} parts, at most {MAX_PARTS} are read",
            zip.len()
        ));
    }
    let mut total = 0u64;
    for i in 0..zip.len() {
        let part = zip
            .by_index(i)
            .map_err(|e| format!("a part of the workbook cannot be read: {e}"))?;
        let name = part.name().to_owned();
        let limit = if kind == Kind::Xlsx && name == "xl/sharedStrings.xml" {
            MAX_STRING_TABLE_BYTES
        } else {
            MAX_PART_BYTES
        };
        let mut counted = Counted {
            inner: part,
            read: 0,
            limit,
        };
        let xml = name.ends_with(".xml") || name.ends_with(".rels");
        let result = if xml {
            let mut tokens = Tokens::new(&mut counted);
            match (kind, name.as_str()) {
                (Kind::Xlsx, "xl/sharedStrings.xml") => check_string_table(&mut tokens),
                (Kind::Xlsx, n) if n.starts_with("xl/worksheets/") => check_worksheet(&mut tokens),
                (Kind::Ods, "content.xml") => check_ods_content(&mut tokens),
                _ => drain_xml(&mut tokens),
            }
        } else {
            io::copy(&mut counted, &mut io::sink())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        result.map_err(|e| format!("{name}: {e}"))?;
        total += counted.read;
        if total > MAX_UNPACKED_BYTES {
            return Err(format!(
                "the workbook unpacks to more than {} MB; split it into smaller files",
                MAX_UNPACKED_BYTES >> 20
            ));
        }
    }
    Ok(())
}

/// A part's unpacked bytes, refused past `limit` (whatever the archive
/// declares its size to be).
struct Counted<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unpacks to more than {} MB", self.limit >> 20),
            ));
        }
        Ok(n)
    }
}

/// Bytes handed to the XML parser, refused once a tag or a run of text
/// grows past [`MAX_TOKEN_BYTES`]: the parser buffers one token at a time,
/// so this bounds its memory whatever the part holds.
struct TokenBound<R> {
    inner: R,
    in_tag: bool,
    run: u64,
}

impl<R: Read> Read for TokenBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            match (b, self.in_tag) {
                (b'<', _) => (self.in_tag, self.run) = (true, 0),
                (b'>', true) => (self.in_tag, self.run) = (false, 0),
                _ => self.run += 1,
            }
            if self.run > MAX_TOKEN_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "holds a {} longer than {} KB",
                        if self.in_tag { "tag" } else { "text" },
                        MAX_TOKEN_BYTES >> 10
                    ),
                ));
            }
        }
        Ok(n)
    }
}

/// An XML part, event by event, with bounded tokens.
struct Tokens<R: Read> {
    reader: quick_xml::Reader<BufReader<TokenBound<R>>>,
    buf: Vec<u8>,
}

impl<R: Read> Tokens<R> {
    fn new(inner: R) -> Self {
        let bound = TokenBound {
            inner,
            in_tag: false,
            run: 0,
        };
        Self {
            reader: quick_xml::Reader::from_reader(BufReader::new(bound)),
            buf: Vec::new(),
        }
    }

    /// The next start (or empty) element, as a self-contained value;
    /// `None` at the end of the part. Other events are skipped.
    fn next_start(&mut self) -> Result<Option<(BytesStart<'static>, bool)>, String> {
        loop {
            self.buf.clear();
            match self.reader.read_event_into(&mut self.buf) {
                Ok(Event::Start(e)) => return Ok(Some((e.into_owned(), false))),
                Ok(Event::Empty(e)) => return Ok(Some((e.into_owned(), true))),
                Ok(Event::Eof) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(xml_error(&e)),
            }
        }
    }
}

/// quick-xml wraps our I/O refusals; the person wants the refusal.
fn xml_error(e: &quick_xml::Error) -> String {
    match e {
        quick_xml::Error::Io(io) => io.to_string(),
        other => format!("is not well-formed XML: {other}"),
    }
}

/// The value of attribute `name`, as written.
fn attribute(e: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, String> {
    for a in e.attributes() {
        let a = a.map_err(|e| format!("is not well-formed XML: {e}"))?;
        if a.key.as_ref() == name {
            // Raw: counts and cell references hold no entities (one that
            // does is refused as malformed, never read more leniently).
            return Ok(Some(String::from_utf8_lossy(&a.value).into_owned()));
        }
    }
    Ok(None)
}

/// A count attribute: absent is `default`, anything but a decimal number
/// is refused.
fn count(e: &BytesStart<'_>, name: &[u8], default: u64) -> Result<u64, String> {
    match attribute(e, name)? {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            format!(
                "{} is not a count: {v:?}",
                String::from_utf8_lossy(name).into_owned()
            )
        }),
    }
}

fn drain_xml<R: Read>(tokens: &mut Tokens<R>) -> Result<(), String> {
    while tokens.next_start()?.is_some() {}
    Ok(())
}

fn check_string_table<R: Read>(tokens: &mut Tokens<R>) -> Result<(), String> {
    let mut entries = 0u64;
    while let Some((e, _)) = tokens.next_start()? {
        match e.local_name().as_ref() {
            b"sst" => {
                let declared = count(&e, b"uniqueCount", 0)?.max(count(&e, b"count", 0)?);
                if declared > MAX_STRINGS {
                    return Err(format!(
                        "declares {declared} strings, at most {MAX_STRINGS} are read"
                    ));
                }
            }
            b"si" => entries += 1,
            _ => {}
        }
        if entries > MAX_STRINGS {
            return Err(format!("holds more than {MAX_STRINGS} strings"));
        }
    }
    Ok(())
}

/// A cell reference (`C17`, `XFD1048576`) as 0-based (row, column); `None`
/// when it is not one or lies beyond the sheet a register may use.
fn cell_ref(r: &str) -> Option<(u64, usize)> {
    let split = r.find(|c: char| c.is_ascii_digit())?;
    let (letters, digits) = r.split_at(split);
    let column = super::column_number(letters)?;
    let row: u64 = digits.parse().ok()?;
    (digits.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_ROWS).contains(&row))
        .then(|| (row - 1, column))
}

fn check_worksheet<R: Read>(tokens: &mut Tokens<R>) -> Result<(), String> {
    while let Some((e, _)) = tokens.next_start()? {
        match e.local_name().as_ref() {
            b"c" => {
                let Some(r) = attribute(&e, b"r")? else {
                    continue;
                };
                match cell_ref(&r) {
                    Some((_, column)) if column < MAX_COLUMNS => {}
                    Some(_) => {
                        return Err(format!(
                            "the cell {r} lies beyond column {} ({MAX_COLUMNS} columns are read)",
                            super::column_letter(MAX_COLUMNS - 1)
                        ));
                    }
                    None => return Err(format!("{r:?} is not a cell of a sheet")),
                }
            }
            b"dimension" => {
                let Some(r) = attribute(&e, b"ref")? else {
                    continue;
                };
                let corners: Vec<_> = r.split(':').map(cell_ref).collect();
                let ok = match corners[..] {
                    [Some(_)] => true,
                    [Some((r0, c0)), Some((r1, c1))] => r0 <= r1 && c0 <= c1,
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "the sheet's dimension {r:?} is not a range of cells"
                    ));
                }
            }
            b"f" if count(&e, b"si", 0)? > MAX_ROWS => {
                return Err("a shared formula's index is out of range".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// The span of an ODS sheet as calamine builds it: the rows from the first
/// to the last with a value (repeats counted) by the columns from the
/// first to the last value; and the cells it stores while reading (every
/// repeated value, and the empty cells before a value in its row).
#[derive(Default)]
struct OdsSpan {
    rows: u64,
    /// Rows since the last row with a value (they count only once a later
    /// row has one).
    pending_rows: u64,
    started: bool,
    width: u64,
    stored: u64,
}

impl OdsSpan {
    fn check(&self) -> Result<(), String> {
        let cells = self.rows.saturating_mul(self.width);
        if cells > MAX_SHEET_CELLS || self.stored > MAX_SHEET_CELLS {
            return Err(format!(
                "a sheet spans more than {MAX_SHEET_CELLS} cells (repeated rows and columns \
                 counted); save the register as .csv"
            ));
        }
        if self.width > MAX_COLUMNS as u64 {
            return Err(format!(
                "a sheet has values beyond column {MAX_COLUMNS}; at most {MAX_COLUMNS} \
                 columns are read"
            ));
        }
        Ok(())
    }
}

fn check_ods_content<R: Read>(tokens: &mut Tokens<R>) -> Result<(), String> {
    let mut span = OdsSpan::default();
    // The row being read: its repeats, its column, whether it has a value.
    let (mut repeats, mut column, mut valued) = (1u64, 0u64, false);
    // The column after the row's last value: calamine stores the cells up
    // to it (the empty ones before a value too, at most 16,384 a row).
    let mut stored_to = 0u64;
    while let Some((e, empty)) = tokens.next_start()? {
        match e.name().as_ref() {
            b"table:table" => {
                span = OdsSpan::default();
            }
            b"table:table-row" => {
                repeats = count(&e, b"table:number-rows-repeated", 1)?.max(1);
                (column, valued, stored_to) = (0, false, 0);
                // A row's content comes before its end; account for the
                // previous row now that the new one begins.
                span.pending_rows = span.pending_rows.saturating_add(repeats);
            }
            b"table:table-cell" | b"table:covered-table-cell" => {
                let n = count(&e, b"table:number-columns-repeated", 1)?.max(1);
                let has_value = attribute(&e, b"office:value-type")?.is_some()
                    || attribute(&e, b"table:formula")?.is_some()
                    || !empty;
                column = column.saturating_add(n);
                if has_value {
                    let to = column.min(16_384);
                    span.stored = span.stored.saturating_add(to - stored_to.min(to));
                    stored_to = to;
                    span.width = span.width.max(column);
                    if !valued {
                        valued = true;
                        // This row and every empty one since the last row
                        // with a value now lie inside the span.
                        if span.started {
                            span.rows = span.rows.saturating_add(span.pending_rows);
                        } else {
                            span.started = true;
                            span.rows = repeats;
                        }
                        span.pending_rows = 0;
                    }
                }
                span.check()?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tokens(xml: &str) -> Tokens<&[u8]> {
        Tokens::new(xml.as_bytes())
    }

    #[test]
    fn cell_references_within_a_register() {
        assert_eq!(cell_ref("A1"), Some((0, 0)));
        assert_eq!(cell_ref("C17"), Some((16, 2)));
        assert_eq!(cell_ref("LXQEASV1"), None);
        assert_eq!(cell_ref("A0"), None);
        assert_eq!(cell_ref("A99999999999"), None);
        assert_eq!(cell_ref("1A"), None);
    }

    #[test]
    fn a_cell_far_to_the_right_is_refused() {
        let ok = r#"<worksheet><dimension ref="A1:C3"/><sheetData><row r="1"><c r="AMJ1"/></row></sheetData></worksheet>"#;
        assert!(check_worksheet(&mut tokens(ok)).is_ok());
        let far = r#"<worksheet><sheetData><row r="1"><c r="AMK1"/></row></sheetData></worksheet>"#;
        let e = check_worksheet(&mut tokens(far)).unwrap_err();
        assert!(e.contains("AMK1") && e.contains("beyond column AMJ"), "{e}");
        let bomb =
            r#"<worksheet><sheetData><row r="1"><c r="LXQEASV1"/></row></sheetData></worksheet>"#;
        assert!(check_worksheet(&mut tokens(bomb)).is_err());
        let reversed = r#"<worksheet><dimension ref="B2:A1"/></worksheet>"#;
        assert!(check_worksheet(&mut tokens(reversed)).is_err());
    }

    #[test]
    fn a_string_table_declaring_billions_is_refused() {
        let e = check_string_table(&mut tokens(r#"<sst uniqueCount="4000000000"/>"#));
        assert!(e.unwrap_err().contains("4000000000"));
        assert!(check_string_table(&mut tokens(r#"<sst count="2"><si/><si/></sst>"#)).is_ok());
    }

    /// A string table past its size is refused by what it unpacks to,
    /// whatever the archive declares (stored here, so the test is fast).
    #[test]
    fn a_string_table_past_its_size_is_refused() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strings.xlsx");
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        zip.start_file("xl/sharedStrings.xml", stored).unwrap();
        zip.write_all(b"<sst>").unwrap();
        let entry = format!("<si><t>{}</t></si>", "a".repeat(4096));
        for _ in 0..=(MAX_STRING_TABLE_BYTES as usize / entry.len()) {
            zip.write_all(entry.as_bytes()).unwrap();
        }
        zip.write_all(b"</sst>").unwrap();
        zip.finish().unwrap();
        let e = check_workbook(&path, "xlsx").unwrap_err();
        assert!(
            e.contains("xl/sharedStrings.xml") && e.contains("unpacks to more than 32 MB"),
            "{e}"
        );
    }

    #[test]
    fn a_long_text_run_is_refused_before_it_is_buffered() {
        let xml = format!("<a>{}</a>", "x".repeat(MAX_TOKEN_BYTES as usize + 1));
        let e = drain_xml(&mut tokens(&xml)).unwrap_err();
        assert!(e.contains("text longer than"), "{e}");
        let xml = format!("<a b=\"{}\"/>", "x".repeat(MAX_TOKEN_BYTES as usize + 1));
        assert!(
            drain_xml(&mut tokens(&xml))
                .unwrap_err()
                .contains("tag longer")
        );
    }

    #[test]
    fn an_ods_span_counts_repeats() {
        let filler = r#"<table:table><table:table-row><table:table-cell office:value-type="string"><text:p>a</text:p></table:table-cell><table:table-cell table:number-columns-repeated="16000"/></table:table-row><table:table-row table:number-rows-repeated="1048000"><table:table-cell table:number-columns-repeated="1024"/></table:table-row></table:table>"#;
        assert!(
            check_ods_content(&mut tokens(filler)).is_ok(),
            "LibreOffice's filler"
        );
        let wide = r#"<table:table><table:table-row table:number-rows-repeated="100000"><table:table-cell table:number-columns-repeated="1000" office:value-type="float" office:value="1"/></table:table-row></table:table>"#;
        assert!(check_ods_content(&mut tokens(wide)).is_err());
        let corners = r#"<table:table><table:table-row><table:table-cell office:value-type="float" office:value="1"/></table:table-row><table:table-row table:number-rows-repeated="1000000"/><table:table-row><table:table-cell table:number-columns-repeated="900"/><table:table-cell office:value-type="float" office:value="1"/></table:table-row></table:table>"#;
        assert!(check_ods_content(&mut tokens(corners)).is_err());
    }

    proptest! {
        /// Every cell a register may use is read back where it is, and
        /// no column past the bound passes.
        #[test]
        fn cell_references_round_trip(row in 0u64..MAX_ROWS, column in 0usize..18_278) {
            let r = format!("{}{}", crate::tabular::column_letter(column), row + 1);
            prop_assert_eq!(cell_ref(&r), Some((row, column)));
            let sheet = format!("<worksheet><sheetData><row><c r=\"{r}\"/></row></sheetData></worksheet>");
            prop_assert_eq!(check_worksheet(&mut tokens(&sheet)).is_ok(), column < MAX_COLUMNS);
        }
    }
}
