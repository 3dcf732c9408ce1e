//! One row → one alert draft, by a mapping bound to the file's header row.
//! Every problem of a row is reported at once, each at its column; the
//! node's own validation (the same as a submit's) runs after this, and
//! `Converted::column_of` takes its field paths back to columns.

use std::collections::HashMap;

use ::time::format_description::well_known::Rfc3339;
use pbjson_types::Timestamp;

use super::mapping::{Columns, EnumKind, IGNORE, Loaded, MissingColumns};
use super::{column_letter, column_number};
use crate::proto::v1::identifier::Kind;
use crate::proto::v1::{
    AlertContent, AlertDraft, Email, Iban, Identifier, IdentityDocument, Location, OnlineHandle,
    PersonName, Phone, Subject, SubjectRole, TimeWindow, VictimProfile,
};

/// A problem with one row, at a column when one is to blame. `message`
/// is for whoever keeps the register (a caseworker: what is wrong with
/// the value and what to write instead); `hint`, when there is one, is
/// for whoever keeps the mapping file (how to make the importer accept
/// the value as it is). The console shows the message; the command line
/// and the rejected-rows file both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellProblem {
    pub column: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl CellProblem {
    /// The message with the mapping author's hint, for the command line.
    pub fn with_hint(&self) -> String {
        match &self.hint {
            Some(h) => format!("{} ({h})", self.message),
            None => self.message.clone(),
        }
    }
}

fn problem(column: Option<usize>, message: impl Into<String>) -> CellProblem {
    CellProblem {
        column,
        message: message.into(),
        hint: None,
    }
}

fn hinted(
    column: Option<usize>,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> CellProblem {
    CellProblem {
        column,
        message: message.into(),
        hint: Some(hint.into()),
    }
}

/// A row made into a draft, with the column each part came from.
#[derive(Debug, Clone)]
pub struct Converted {
    pub source_id: String,
    pub draft: AlertDraft,
    /// Field path (as the node names fields: `draft.content.category`,
    /// `draft.subjects[0].identifiers[1]`) → the column it came from.
    provenance: Vec<(String, usize)>,
}

impl Converted {
    /// A record given whole (a JSON Lines line): no columns to point at.
    pub fn whole(source_id: String, draft: AlertDraft) -> Self {
        Self {
            source_id,
            draft,
            provenance: Vec::new(),
        }
    }

    /// The column a field path the node reported comes from: the longest
    /// recorded path that is a prefix of it.
    pub fn column_of(&self, field: &str) -> Option<usize> {
        self.provenance
            .iter()
            .filter(|(path, _)| {
                field == path
                    || field
                        .strip_prefix(path.as_str())
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
            .max_by_key(|(path, _)| path.len())
            .map(|(_, col)| *col)
    }
}

/// What a row is.
#[derive(Debug)]
pub enum RowOutcome {
    Alert(Box<Converted>),
    /// Nothing but (at most) its id: a blank line of the register.
    Empty,
}

/// A mapping bound to a header row: every column it names, found.
pub struct Bound {
    loaded: std::sync::Arc<Loaded>,
    columns: HashMap<String, usize>,
    id: Vec<usize>,
    skipped: Vec<String>,
}

/// `#C` names column C; anything else a header cell (exact first, then
/// ignoring case and surrounding spaces).
fn find(headers: &[String], name: &str) -> Option<usize> {
    if let Some(letters) = name.strip_prefix('#') {
        return column_number(letters);
    }
    headers.iter().position(|h| h == name).or_else(|| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name.trim()))
    })
}

impl Bound {
    /// Binds `loaded` to `headers`; the error lists every column the
    /// header row lacks (all of them, or with `missing_columns = "skip"`
    /// the id column only).
    pub fn new(loaded: &std::sync::Arc<Loaded>, headers: &[String]) -> Result<Self, Vec<String>> {
        let mut columns = HashMap::new();
        let mut missing = Vec::new();
        for name in loaded.columns() {
            match find(headers, name) {
                Some(i) => {
                    columns.insert(name.to_owned(), i);
                }
                None if !missing.iter().any(|m| m == name) => missing.push(name.to_owned()),
                None => {}
            }
        }
        let id_names = loaded.mapping.id_column.names();
        let id: Vec<usize> = id_names
            .iter()
            .filter_map(|n| columns.get(*n).copied())
            .collect();
        let skip = loaded.mapping.missing_columns == MissingColumns::Skip;
        if !missing.is_empty() && (!skip || id.is_empty()) {
            if skip {
                missing.retain(|m| id_names.contains(&m.as_str()));
            }
            return Err(missing);
        }
        Ok(Self {
            loaded: loaded.clone(),
            columns,
            id,
            skipped: missing,
        })
    }

    /// The columns the mapping names that the file lacks, skipped.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The column indexes of `cols`.
    fn idx(&self, cols: &Option<Columns>) -> Vec<usize> {
        cols.as_ref()
            .map(|c| {
                c.names()
                    .iter()
                    .filter_map(|n| self.columns.get(*n).copied())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The id column(s).
    pub fn id_columns(&self) -> &[usize] {
        &self.id
    }

    /// Converts one row (its cells in column order).
    pub fn convert(&self, cells: &[String]) -> Result<RowOutcome, Vec<CellProblem>> {
        self.convert_with_rest(cells)
            .map_err(|(problems, _)| problems)
    }

    /// Converts one row; a row with problems comes back with the draft of
    /// what did convert (when it has its case id), so the node can check
    /// the rest of the row too and a person learns every problem of the
    /// row at once, not one per attempt.
    pub fn convert_with_rest(
        &self,
        cells: &[String],
    ) -> Result<RowOutcome, (Vec<CellProblem>, Option<Box<Converted>>)> {
        let cell = |i: usize| cells.get(i).map(|s| unquote(s.trim())).unwrap_or("");
        let m = &self.loaded.mapping;
        // The id: the first non-empty id column.
        let id = self
            .id
            .iter()
            .map(|&i| (i, cell(i)))
            .find(|(_, v)| !v.is_empty());
        let others_empty = cells
            .iter()
            .enumerate()
            .all(|(i, c)| self.id.contains(&i) || c.trim().is_empty());
        if others_empty {
            return Ok(RowOutcome::Empty);
        }
        let mut problems = Vec::new();
        let Some((_, source_id)) = id else {
            let col = self.id.first().copied();
            return Err((
                vec![problem(
                    col,
                    "the case id is empty: every row needs one, so that importing the file again updates it",
                )],
                None,
            ));
        };
        let mut row = Row {
            bound: self,
            cell: &cell,
            problems: &mut problems,
            provenance: Vec::new(),
        };
        let content = row.content();
        let mut subjects = Vec::new();
        for s in &m.subjects {
            if let Some(subject) = row.subject(s, subjects.len()) {
                subjects.push(subject);
            }
        }
        let (case_reference, title) = row.case();
        let converted = Box::new(Converted {
            source_id: source_id.to_owned(),
            draft: AlertDraft {
                content: Some(content),
                subjects,
                case_reference,
                title,
            },
            provenance: row.provenance,
        });
        if !problems.is_empty() {
            return Err((problems, Some(converted)));
        }
        Ok(RowOutcome::Alert(converted))
    }
}

/// The inverse of the CSV export's guard against formulas: a cell
/// written as `'=…` (or `'+`, `'-`, `'@`) is read without the quote.
fn unquote(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@']) => rest,
        _ => s,
    }
}

/// An identifier of a subject, the column it came from, and where its
/// parts came from (field path suffix → column).
type Found = (Identifier, usize, Vec<(String, usize)>);

/// One row being converted.
struct Row<'a, 'c> {
    bound: &'a Bound,
    cell: &'a dyn Fn(usize) -> &'c str,
    problems: &'a mut Vec<CellProblem>,
    provenance: Vec<(String, usize)>,
}

impl Row<'_, '_> {
    fn loaded(&self) -> &Loaded {
        &self.bound.loaded
    }

    /// The first non-empty cell of `cols`, with its column.
    fn first(&self, cols: &Option<Columns>) -> Option<(usize, &str)> {
        self.bound
            .idx(cols)
            .into_iter()
            .map(|i| (i, (self.cell)(i)))
            .find(|(_, v)| !v.is_empty())
    }

    /// Every value of `cols`: each cell split at the list separator.
    fn all(&self, cols: &Option<Columns>) -> Vec<(usize, String)> {
        let sep = &self.loaded().mapping.list_separator;
        self.bound
            .idx(cols)
            .into_iter()
            .flat_map(|i| {
                (self.cell)(i)
                    .split(sep.as_str())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| (i, v.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn note(&mut self, path: impl Into<String>, col: usize) {
        self.provenance.push((path.into(), col));
    }

    /// The agency's own reference (empty: the node takes the case id) and
    /// title of the row, from `[case]`.
    fn case(&mut self) -> (String, String) {
        let m = &self.loaded().mapping.case;
        let reference = self.first(&m.reference).map(|(c, v)| (c, v.to_owned()));
        let parts: Vec<(usize, String)> = self
            .bound
            .idx(&m.title)
            .into_iter()
            .map(|i| (i, (self.cell)(i).to_owned()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if let Some((c, _)) = &reference {
            self.note("draft.case_reference", *c);
        }
        if let Some((c, _)) = parts.first() {
            self.note("draft.title", *c);
        }
        let title = parts
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
            .join(" · ");
        (reference.map(|(_, v)| v).unwrap_or_default(), title)
    }

    /// A cell's enumeration value: the mapping's value map first, then the
    /// value's own name. `None` for "ignore".
    fn enum_of(&mut self, kind: EnumKind, col: usize, text: &str) -> Option<i32> {
        let maps = &self.loaded().mapping.values;
        let map = match kind {
            EnumKind::Category => &maps.category,
            EnumKind::Indicator => &maps.indicators,
            EnumKind::Severity => &maps.severity,
            EnumKind::Confidence => &maps.confidence,
            EnumKind::Tlp => &maps.tlp,
            EnumKind::HandlingCode => &maps.handling_code,
            EnumKind::Role => &maps.role,
            EnumKind::Gender => &maps.gender,
            EnumKind::AgeBand => &maps.age_band,
            EnumKind::Recruitment => &maps.recruitment,
            EnumKind::SourceReliability | EnumKind::InformationAccuracy => &maps.none,
            EnumKind::Document => {
                return kind.parse(text).or_else(|| {
                    self.problems.push(problem(
                        Some(col),
                        format!(
                            "\"{text}\" is not a document type (one of {})",
                            kind.names().join(", ")
                        ),
                    ));
                    None
                });
            }
        };
        let key = text.trim();
        let mapped = map
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v.get_ref().as_str());
        if mapped == Some(IGNORE) {
            return None;
        }
        match kind.parse(mapped.unwrap_or(key)) {
            Some(v) => Some(v),
            None => {
                self.problems.push(hinted(
                    Some(col),
                    format!(
                        "\"{text}\" is not a {} CaseBridge knows: write one of {}",
                        kind.name().replace('_', " "),
                        kind.names().join(", ")
                    ),
                    format!(
                        "or map it under [values.{}] in the mapping",
                        match kind {
                            EnumKind::Indicator => "indicators",
                            _ => kind.name(),
                        }
                    ),
                ));
                None
            }
        }
    }

    /// A single enumeration field: its column(s), else the default.
    fn enum_field(
        &mut self,
        kind: EnumKind,
        cols: &Option<Columns>,
        default: Option<&toml::Spanned<String>>,
        path: &str,
    ) -> i32 {
        if let Some((col, text)) = self.first(cols) {
            let text = text.to_owned();
            self.note(path, col);
            return self.enum_of(kind, col, &text).unwrap_or(0);
        }
        // Empty: a node's "is required" points at the (first) column.
        if let Some(&col) = self.bound.idx(cols).first() {
            self.note(path, col);
        }
        default.and_then(|d| kind.parse(d.get_ref())).unwrap_or(0)
    }

    fn content(&mut self) -> AlertContent {
        let m = &self.bound.loaded.mapping;
        let (c, d) = (&m.content, &m.defaults);
        let mut content = AlertContent {
            category: self.enum_field(
                EnumKind::Category,
                &c.category,
                d.category.as_ref(),
                "draft.content.category",
            ),
            severity: self.enum_field(
                EnumKind::Severity,
                &c.severity,
                d.severity.as_ref(),
                "draft.content.severity",
            ),
            confidence: self.enum_field(
                EnumKind::Confidence,
                &c.confidence,
                d.confidence.as_ref(),
                "draft.content.confidence",
            ),
            tlp: self.enum_field(EnumKind::Tlp, &c.tlp, d.tlp.as_ref(), "draft.content.tlp"),
            handling_code: self.enum_field(
                EnumKind::HandlingCode,
                &c.handling_code,
                d.handling_code.as_ref(),
                "draft.content.handling_code",
            ),
            source_reliability: self.enum_field(
                EnumKind::SourceReliability,
                &c.source_reliability,
                None,
                "draft.content.source_reliability",
            ),
            information_accuracy: self.enum_field(
                EnumKind::InformationAccuracy,
                &c.information_accuracy,
                None,
                "draft.content.information_accuracy",
            ),
            ..Default::default()
        };
        for (col, text) in self.all(&c.indicators) {
            if let Some(v) = self.enum_of(EnumKind::Indicator, col, &text)
                && !content.indicators.contains(&v)
            {
                let path = format!("draft.content.indicators[{}]", content.indicators.len());
                self.note(path, col);
                content.indicators.push(v);
            }
        }
        let country = match self.first(&c.country) {
            Some((col, text)) => {
                let text = text.to_owned();
                self.note("draft.content.location.country", col);
                self.country(col, &text)
            }
            None => d.country.as_ref().map(|c| c.get_ref().clone()),
        };
        let region = self.text(&c.region, "draft.content.location.region");
        let city = self.text(&c.city, "draft.content.location.city");
        if country.is_some() || !region.is_empty() || !city.is_empty() {
            content.location = Some(Location {
                country: country.unwrap_or_default(),
                region,
                city,
            });
        }
        let start = self.timestamp(&c.start, "draft.content.time_window.start");
        let end = self.timestamp(&c.end, "draft.content.time_window.end");
        if start.is_some() || end.is_some() {
            content.time_window = Some(TimeWindow { start, end });
        }
        content.retention_until = self
            .timestamp(&c.retention_until, "draft.content.retention_until")
            .or_else(|| {
                let days = i64::from(d.retention_days?);
                let s = start?;
                Some(Timestamp {
                    seconds: s.seconds + days * 86_400,
                    nanos: s.nanos,
                })
            });
        content.narrative = self.narrative(&c.narrative);
        content
    }

    /// A text field: the first non-empty column.
    fn text(&mut self, cols: &Option<Columns>, path: &str) -> String {
        match self.first(cols) {
            Some((col, v)) => {
                let v = v.to_owned();
                self.note(path, col);
                v
            }
            None => String::new(),
        }
    }

    /// The narrative: one column as it is; several joined, each under its
    /// column's name.
    fn narrative(&mut self, cols: &Option<Columns>) -> String {
        let Some(c) = cols else { return String::new() };
        let names = c.names();
        if names.len() == 1 {
            return self.text(cols, "draft.content.narrative");
        }
        let mut parts = Vec::new();
        for n in names {
            let Some(&col) = self.bound.columns.get(n) else {
                continue;
            };
            let v = (self.cell)(col);
            if !v.is_empty() {
                if parts.is_empty() {
                    self.note("draft.content.narrative", col);
                }
                parts.push(format!("{n}: {v}"));
            }
        }
        parts.join("\n\n")
    }

    fn country(&mut self, col: usize, text: &str) -> Option<String> {
        match country_code(&self.loaded().mapping.values.country, text) {
            Some(c) => Some(c),
            None => {
                self.problems.push(hinted(
                    Some(col),
                    format!(
                        "\"{text}\" is not a country CaseBridge knows: write its English name \
                         (Netherlands) or its code (NL)"
                    ),
                    "or map it under [values.country] in the mapping",
                ));
                None
            }
        }
    }

    fn timestamp(&mut self, cols: &Option<Columns>, path: &str) -> Option<Timestamp> {
        let (col, text) = self.first(cols)?;
        let text = text.to_owned();
        self.note(path, col);
        match parse_timestamp(&text, &self.loaded().date_formats) {
            Some(t) => Some(t),
            None => {
                self.problems.push(hinted(
                    Some(col),
                    format!("\"{text}\" is not a date: write it as 2024-03-14"),
                    "or add its format to date_formats in the mapping",
                ));
                None
            }
        }
    }

    /// One subject of the row; `None` when all its cells are empty.
    fn subject(&mut self, s: &super::mapping::SubjectColumns, index: usize) -> Option<Subject> {
        let base = format!("draft.subjects[{index}]");
        let mut ids: Vec<Found> = Vec::new();
        // In this order (docs/import-export.md): the same record from a
        // spreadsheet and from JSON Lines is the same draft.
        ids.extend(self.person(s));
        ids.extend(self.listed(s));
        if let Some(doc) = &s.document {
            ids.extend(self.document(doc));
        }
        ids.extend(self.handles(s));
        if ids.is_empty() {
            return None;
        }
        let role = match (&s.role, self.first(&s.role_column)) {
            (_, Some((col, text))) => {
                let text = text.to_owned();
                self.note(format!("{base}.role"), col);
                self.enum_of(EnumKind::Role, col, &text).unwrap_or(0)
            }
            (Some(r), None) => EnumKind::Role.parse(r.get_ref()).unwrap_or(0),
            (None, None) => 0,
        };
        let mut identifiers = Vec::with_capacity(ids.len());
        for (j, (id, col, notes)) in ids.into_iter().enumerate() {
            let path = format!("{base}.identifiers[{j}]");
            for (suffix, c) in notes {
                self.note(format!("{path}{suffix}"), c);
            }
            self.note(path, col);
            identifiers.push(id);
        }
        let profile = if role == SubjectRole::PotentialVictim as i32 {
            self.profile(s, &format!("{base}.profile"))
        } else {
            None
        };
        Some(Subject {
            role,
            identifiers,
            profile,
        })
    }

    /// A potential victim's profile from its columns; `None` when they are
    /// all empty (or the mapping names none).
    fn profile(&mut self, s: &super::mapping::SubjectColumns, at: &str) -> Option<VictimProfile> {
        let gender = self.enum_field(EnumKind::Gender, &s.gender, None, &format!("{at}.gender"));
        let age_band = self.enum_field(
            EnumKind::AgeBand,
            &s.age_band,
            None,
            &format!("{at}.age_band"),
        );
        let citizenship = match self.first(&s.citizenship) {
            Some((col, text)) => {
                let text = text.to_owned();
                self.note(format!("{at}.citizenship"), col);
                self.country(col, &text).unwrap_or_default()
            }
            None => String::new(),
        };
        let mut recruitment = Vec::new();
        for (col, text) in self.all(&s.recruitment) {
            if let Some(v) = self.enum_of(EnumKind::Recruitment, col, &text)
                && !recruitment.contains(&v)
            {
                self.note(format!("{at}.recruitment[{}]", recruitment.len()), col);
                recruitment.push(v);
            }
        }
        let profile = VictimProfile {
            gender,
            citizenship,
            age_band,
            recruitment,
        };
        (profile != VictimProfile::default()).then_some(profile)
    }

    /// The subject's name and date of birth, as one person identifier.
    fn person(&mut self, s: &super::mapping::SubjectColumns) -> Option<Found> {
        let given = self.joined(&s.given_names);
        let family = self.first(&s.family_name).map(|(c, v)| (c, v.to_owned()));
        let dob = self.first(&s.date_of_birth).map(|(c, v)| (c, v.to_owned()));
        if given.is_none() && family.is_none() && dob.is_none() {
            return None;
        }
        let mut notes = Vec::new();
        let mut first_col = None;
        if let Some((c, _)) = &given {
            notes.push((".person.given_names".to_owned(), *c));
            first_col.get_or_insert(*c);
        }
        if let Some((c, _)) = &family {
            notes.push((".person.family_name".to_owned(), *c));
            first_col.get_or_insert(*c);
        }
        let date_of_birth = match &dob {
            Some((c, text)) => {
                notes.push((".person.date_of_birth".to_owned(), *c));
                first_col.get_or_insert(*c);
                self.date_of_birth(*c, text)
            }
            None => String::new(),
        };
        Some((
            Identifier {
                kind: Some(Kind::Person(PersonName {
                    given_names: given.map(|(_, v)| v).unwrap_or_default(),
                    family_name: family.map(|(_, v)| v).unwrap_or_default(),
                    date_of_birth,
                })),
            },
            first_col.unwrap_or(0),
            notes,
        ))
    }

    /// A date of birth as the node takes it (as partial as written), or a
    /// problem at its cell.
    fn date_of_birth(&mut self, col: usize, text: &str) -> String {
        match date_of_birth(text, &self.loaded().date_formats) {
            Some(d) => d,
            None => {
                self.problems.push(hinted(
                    Some(col),
                    format!(
                        "\"{text}\" is not a date of birth: write it as 1999-03-14, \
                         or 1999-03 or 1999 when that is all that is known"
                    ),
                    "or add its format to date_formats in the mapping",
                ));
                String::new()
            }
        }
    }

    /// Phones, e-mails and IBANs: every value of their columns.
    fn listed(&mut self, s: &super::mapping::SubjectColumns) -> Vec<Found> {
        let region = self
            .loaded()
            .mapping
            .phone_region
            .as_ref()
            .map(|r| r.get_ref().clone())
            .unwrap_or_default();
        let one = |kind: Kind, col: usize| -> Found {
            (Identifier { kind: Some(kind) }, col, Vec::new())
        };
        let mut ids = Vec::new();
        for (col, number) in self.all(&s.phones) {
            let region = region.clone();
            ids.push(one(Kind::Phone(Phone { number, region }), col));
        }
        for (col, address) in self.all(&s.emails) {
            ids.push(one(Kind::Email(Email { address }), col));
        }
        for (col, iban) in self.all(&s.ibans) {
            ids.push(one(Kind::Iban(Iban { iban }), col));
        }
        ids
    }

    /// Online handles: every value of each platform's column.
    fn handles(&mut self, s: &super::mapping::SubjectColumns) -> Vec<Found> {
        let mut ids = Vec::new();
        for h in &s.handles {
            for (col, handle) in self.all(&Some(h.column.clone())) {
                let platform = h.platform.get_ref().clone();
                let kind = Kind::OnlineHandle(OnlineHandle { platform, handle });
                ids.push((Identifier { kind: Some(kind) }, col, Vec::new()));
            }
        }
        ids
    }

    /// The subject's identity document, when its number cell is filled.
    fn document(&mut self, doc: &super::mapping::DocumentColumns) -> Option<Found> {
        let (col, number) = self.first(&Some(doc.number.clone()))?;
        let number = number.to_owned();
        let mut notes = Vec::new();
        let r#type = match (&doc.r#type, self.first(&doc.type_column)) {
            (Some(t), _) => EnumKind::Document.parse(t.get_ref()).unwrap_or(0),
            (None, Some((c, text))) => {
                let text = text.to_owned();
                notes.push((".document.type".to_owned(), c));
                self.enum_of(EnumKind::Document, c, &text).unwrap_or(0)
            }
            (None, None) => {
                let c = self.bound.idx(&doc.type_column).first().copied();
                self.problems
                    .push(problem(c, "the document's type is empty"));
                0
            }
        };
        let issuing_country = match self.first(&doc.country) {
            Some((c, text)) => {
                let text = text.to_owned();
                notes.push((".document.issuing_country".to_owned(), c));
                self.country(c, &text).unwrap_or_default()
            }
            None => match &doc.default_country {
                Some(d) => d.get_ref().clone(),
                None => {
                    let c = self.bound.idx(&doc.country).first().copied().or(Some(col));
                    self.problems.push(hinted(
                        c,
                        "the document's issuing country is empty: write the country that \
                         issued it",
                        "or set default_country in the mapping if it is always the same",
                    ));
                    String::new()
                }
            },
        };
        let document = IdentityDocument {
            r#type,
            number,
            issuing_country,
        };
        Some((
            Identifier {
                kind: Some(Kind::Document(document)),
            },
            col,
            notes,
        ))
    }

    /// Several columns joined with a space (first and middle names).
    fn joined(&self, cols: &Option<Columns>) -> Option<(usize, String)> {
        let parts: Vec<(usize, &str)> = self
            .bound
            .idx(cols)
            .into_iter()
            .map(|i| (i, (self.cell)(i)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let first = parts.first()?.0;
        Some((
            first,
            parts.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(" "),
        ))
    }
}

/// Puts each subject's identifiers in the order rows are read in (person,
/// phones, e-mails, IBANs, document, handles, then the rest; stable within
/// a kind). The order carries no meaning, so a record imported once from a
/// spreadsheet and once from JSON Lines is the same draft, not a change.
pub fn canonical_order(draft: &mut AlertDraft) {
    let rank = |i: &Identifier| match &i.kind {
        Some(Kind::Person(_)) => 0,
        Some(Kind::Phone(_)) => 1,
        Some(Kind::Email(_)) => 2,
        Some(Kind::Iban(_)) => 3,
        Some(Kind::Document(_)) => 4,
        Some(Kind::OnlineHandle(_)) => 5,
        Some(Kind::CryptoWallet(_)) => 6,
        Some(Kind::VehiclePlate(_)) => 7,
        Some(Kind::AdvertUrl(_)) => 8,
        None => 9,
    };
    for s in &mut draft.subjects {
        s.identifiers.sort_by_key(rank);
    }
}

/// A country cell as an ISO 3166-1 alpha-2 code: the value map, then the
/// code itself in any case, the alpha-3 code, or the English name.
pub fn country_code(
    map: &std::collections::BTreeMap<String, toml::Spanned<String>>,
    text: &str,
) -> Option<String> {
    let t = text.trim();
    if let Some((_, v)) = map.iter().find(|(k, _)| k.trim().eq_ignore_ascii_case(t)) {
        return Some(v.get_ref().clone());
    }
    let code = isocountry::CountryCode::for_alpha2_caseless(t)
        .or_else(|_| isocountry::CountryCode::for_alpha3_caseless(t))
        .ok()
        .or_else(|| {
            isocountry::CountryCode::iter()
                .find(|c| c.name().eq_ignore_ascii_case(t))
                .copied()
        })?;
    Some(code.alpha2().to_owned())
}

/// A date of birth as the node reads it: kept as written when the node
/// accepts it, else read with the mapping's formats into its ISO form
/// (`1990`, `1990-03`, `1990-03-07`), as partial as the cell.
pub fn date_of_birth(
    text: &str,
    formats: &[::time::format_description::OwnedFormatItem],
) -> Option<String> {
    if crate::pseudo::normalize::date_of_birth(text).is_ok() {
        return Some(text.to_owned());
    }
    for f in formats {
        let mut parsed = ::time::parsing::Parsed::new();
        if let Ok(rest) = parsed.parse_item(text.as_bytes(), f)
            && rest.is_empty()
            && let Some(year) = parsed.year()
        {
            let iso = match (parsed.month(), parsed.day()) {
                (Some(m), Some(d)) => format!("{year:04}-{:02}-{:02}", m as u8, d.get()),
                (Some(m), None) => format!("{year:04}-{:02}", m as u8),
                _ => format!("{year:04}"),
            };
            if crate::pseudo::normalize::date_of_birth(&iso).is_ok() {
                return Some(iso);
            }
        }
    }
    None
}

/// A time cell: RFC 3339, an ISO date (midnight UTC), or a date in one of
/// the mapping's formats.
pub fn parse_timestamp(
    text: &str,
    formats: &[::time::format_description::OwnedFormatItem],
) -> Option<Timestamp> {
    if let Ok(t) = ::time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some(Timestamp {
            seconds: t.unix_timestamp(),
            nanos: t.nanosecond() as i32,
        });
    }
    let iso = ::time::macros::format_description!("[year]-[month]-[day]");
    let date = ::time::Date::parse(text, &iso).ok().or_else(|| {
        formats.iter().find_map(|f| {
            let mut parsed = ::time::parsing::Parsed::new();
            let rest = parsed.parse_item(text.as_bytes(), f).ok()?;
            if !rest.is_empty() {
                return None;
            }
            ::time::Date::from_calendar_date(parsed.year()?, parsed.month()?, parsed.day()?.get())
                .ok()
        })
    })?;
    Some(Timestamp {
        seconds: date.midnight().assume_utc().unix_timestamp(),
        nanos: 0,
    })
}

/// Where a problem is, as a person finds it in the file: `Cases!C17`
/// (or `C17` in a CSV file).
pub fn cell_name(sheet: Option<&str>, row: u32, column: Option<usize>) -> String {
    let cell = match column {
        Some(c) => format!("{}{row}", column_letter(c)),
        None => format!("row {row}"),
    };
    match sheet {
        Some(s) => format!("{s}!{cell}"),
        None => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Category, Indicator};
    use proptest::prelude::*;
    use std::path::Path;

    fn loaded(text: &str) -> std::sync::Arc<Loaded> {
        std::sync::Arc::new(Loaded::parse(Path::new("m.toml"), text).unwrap())
    }

    const MAPPING: &str = r#"
source = "reg"
id_column = "Case"
date_formats = ["[day]/[month]/[year]", "[month]/[year]"]
phone_region = "NL"
[defaults]
severity = "medium"
tlp = "amber"
[content]
category = "Kind"
indicators = ["Control", "More control"]
country = "Where"
start = "Seen"
[[subjects]]
role = "potential_victim"
given_names = ["First", "Middle"]
family_name = "Last"
date_of_birth = "Born"
phones = "Phones"
[[subjects]]
role = "suspected_trafficker"
phones = "Suspect phone"
[values.category]
"sexual" = "sexual_exploitation"
[values.indicators]
"debt" = "debt_bondage"
"other" = "ignore"
"#;

    fn headers() -> Vec<String> {
        [
            "Case",
            "Kind",
            "Control",
            "More control",
            "Where",
            "Seen",
            "First",
            "Middle",
            "Last",
            "Born",
            "Phones",
            "Suspect phone",
        ]
        .map(String::from)
        .to_vec()
    }

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_row_becomes_a_draft_with_its_provenance() {
        let l = loaded(MAPPING);
        let b = Bound::new(&l, &headers()).unwrap();
        let out = b
            .convert(&row(&[
                "C-1",
                "Sexual",
                "debt;other",
                "deception",
                "Netherlands",
                "07/03/2024",
                "Ana",
                "Maria",
                "Popescu",
                "03/1990",
                "+31 6 1234 5678; 0612345679",
                "",
            ]))
            .unwrap();
        let RowOutcome::Alert(c) = out else {
            panic!("empty")
        };
        assert_eq!(c.source_id, "C-1");
        let content = c.draft.content.as_ref().unwrap();
        assert_eq!(content.category, Category::SexualExploitation as i32);
        assert_eq!(
            content.indicators,
            vec![Indicator::DebtBondage as i32, Indicator::Deception as i32]
        );
        assert_eq!(content.location.as_ref().unwrap().country, "NL");
        assert_eq!(
            content.time_window.as_ref().unwrap().start.unwrap().seconds,
            1_709_769_600
        );
        assert_eq!(c.draft.subjects.len(), 1, "the suspect's cells are empty");
        let ids = &c.draft.subjects[0].identifiers;
        let Some(Kind::Person(p)) = &ids[0].kind else {
            panic!()
        };
        assert_eq!(
            (
                p.given_names.as_str(),
                p.family_name.as_str(),
                p.date_of_birth.as_str()
            ),
            ("Ana Maria", "Popescu", "1990-03")
        );
        assert_eq!(ids.len(), 3, "a person and two phones");
        assert_eq!(
            c.column_of("draft.subjects[0].identifiers[2].phone.number"),
            Some(10)
        );
        assert_eq!(
            c.column_of("draft.subjects[0].identifiers[0].person.date_of_birth"),
            Some(9)
        );
        assert_eq!(c.column_of("draft.content.indicators[1]"), Some(3));
        assert_eq!(c.column_of("draft.content.location.country"), Some(4));
        assert_eq!(c.column_of("draft.content.severity"), None);
    }

    #[test]
    fn every_problem_of_a_row_is_named_at_its_column() {
        let l = loaded(MAPPING);
        let b = Bound::new(&l, &headers()).unwrap();
        let problems = b
            .convert(&row(&[
                "C-2",
                "robbery",
                "debt",
                "",
                "Atlantis",
                "yesterday",
                "",
                "",
                "",
                "",
                "",
                "",
            ]))
            .unwrap_err();
        let cols: Vec<Option<usize>> = problems.iter().map(|p| p.column).collect();
        assert_eq!(cols, vec![Some(1), Some(4), Some(5)], "{problems:?}");
        assert!(!problems[0].message.contains("mapping"), "{problems:?}");
        assert!(
            problems[0]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("[values.category]")),
            "{problems:?}"
        );
        let missing_id = b
            .convert(&row(&[
                "", "sexual", "", "", "", "", "", "", "", "", "", "",
            ]))
            .unwrap_err();
        assert_eq!(missing_id[0].column, Some(0));
        assert!(matches!(
            b.convert(&row(&["C-9", "", "", "", "", "", "", "", "", "", "", ""])),
            Ok(RowOutcome::Empty)
        ));
    }

    #[test]
    fn a_header_row_without_a_mapped_column_is_refused_whole() {
        let l = loaded(MAPPING);
        let mut h = headers();
        h.retain(|c| c != "Born" && c != "Kind");
        let missing = Bound::new(&l, &h).err().unwrap();
        assert_eq!(missing, vec!["Kind".to_string(), "Born".to_string()]);
    }

    #[test]
    fn cells_are_named_as_spreadsheets_name_them() {
        assert_eq!(cell_name(Some("Cases"), 17, Some(2)), "Cases!C17");
        assert_eq!(cell_name(None, 4, Some(27)), "AB4");
        assert_eq!(cell_name(None, 4, None), "row 4");
    }

    proptest! {
        /// Any partial date written in one of the mapping's formats reads
        /// as the same ISO date of birth.
        #[test]
        fn partial_dates_of_birth_read_back(y in 1900i32..2100, m in 1u8..=12, d in 1u8..=28, kind in 0..3) {
            let l = loaded(MAPPING);
            let formats = &l.date_formats;
            let (text, iso) = match kind {
                0 => (format!("{d:02}/{m:02}/{y}"), format!("{y}-{m:02}-{d:02}")),
                1 => (format!("{m:02}/{y}"), format!("{y}-{m:02}")),
                _ => (format!("{y}"), format!("{y}")),
            };
            prop_assert_eq!(date_of_birth(&text, formats), Some(iso));
        }

        /// Whatever a cell holds, conversion answers (a draft or problems)
        /// and never panics.
        #[test]
        fn any_row_converts_or_says_why(cells in proptest::collection::vec(".{0,12}", 0..14)) {
            let l = loaded(MAPPING);
            let b = Bound::new(&l, &headers()).unwrap();
            let _ = b.convert(&cells);
        }
    }
}
