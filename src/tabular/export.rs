//! Alerts out, for the agency's own analysts: rows with HTCDS column
//! names where HTCDS has the field (and `cb_` names for the rest), as CSV
//! or XLSX, or every alert whole as JSON Lines. An export holds what the
//! agency holds — its own alerts with their subjects, received alerts
//! without — and never a token or a person encoding (an `Alert` has no
//! field for either). The built-in `export` mapping reads the rows back.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::proto::v1::identifier::Kind;
use crate::proto::v1::{
    AgeBand, Alert, Category, Confidence, DocumentType, Gender, HandlingCode, Indicator,
    InformationAccuracy, RecruitmentMethod, Severity, SourceReliability, Subject, SubjectRole, Tlp,
    VictimProfile,
};

/// The columns of a CSV or XLSX export, in order.
pub const COLUMNS: [&str; 51] = [
    "cb_AlertId",
    "cb_Origin",
    "cb_Version",
    "cb_Created",
    "cb_Updated",
    "hte_Type",
    "vic_MethodsOfControl",
    "cb_Severity",
    "cb_Confidence",
    "cb_Tlp",
    "cb_HandlingCode",
    "cb_SourceReliability",
    "cb_InformationAccuracy",
    "hte_Country",
    "hte_State",
    "hte_City",
    "hte_Date",
    "cb_EndDate",
    "hte_Description",
    "cb_RetentionUntil",
    "cb_Role",
    "prs_FirstName",
    "prs_SecondName",
    "prs_Birthdate",
    "prs_MobilePhone",
    "prs_Email",
    "cb_Iban",
    "cb_DocumentType",
    "prs_IdentityNumber",
    "cb_DocumentCountry",
    "cb_Subject2Role",
    "cb_Subject2FirstName",
    "cb_Subject2SecondName",
    "cb_Subject2Birthdate",
    "cb_Subject2Phone",
    "cb_Subject2Email",
    "cb_Subject2Iban",
    "cb_Subject2DocumentType",
    "cb_Subject2IdentityNumber",
    "cb_Subject2DocumentCountry",
    "cb_Retracted",
    // This agency's own reference and title (its own alerts only).
    "cb_CaseReference",
    "cb_Title",
    // Each subject's victim profile (exports before 0.5 lack these).
    "prs_Gender",
    "prs_Citizenship",
    "cb_AgeBand",
    "vic_MethodOfRecruitment",
    "cb_Subject2Gender",
    "cb_Subject2Citizenship",
    "cb_Subject2AgeBand",
    "cb_Subject2Recruitment",
];

/// Where the flags and local fields sit in a row.
const RETRACTED: usize = 40;
const CASE_REFERENCE: usize = 41;
const TITLE: usize = 42;
/// Where the subjects' profiles start, and the columns one takes.
const FIRST_PROFILE: usize = 43;
const PROFILE_COLUMNS: usize = 4;

/// The columns one subject takes.
const SUBJECT_COLUMNS: usize = 10;
const FIRST_SUBJECT: usize = 20;

#[derive(Debug, Error)]
pub enum ExportError {
    #[error("{}: {message}", file.display())]
    Write { file: PathBuf, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Xlsx,
    Jsonl,
}

/// An enum value's name as policies and mappings write it.
fn name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

fn enum_name<E: TryFrom<i32>>(v: i32, prefix: &str, as_str: impl Fn(E) -> &'static str) -> String {
    if v == 0 {
        return String::new();
    }
    E::try_from(v).map_or_else(|_| v.to_string(), |e| name(as_str(e), prefix))
}

fn rfc3339(t: &Option<pbjson_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(crate::time::rfc3339)
        .unwrap_or_default()
}

/// One alert as a row of [`COLUMNS`], and whether the row holds all of
/// it: a row has room for two subjects, each with one person, phones,
/// e-mails, IBANs and one document; wallets, handles, plates, advert URLs,
/// a third subject or a phone read in a region other than the node's are
/// only in the JSON Lines export.
pub fn row_of(alert: &Alert) -> (Vec<String>, bool) {
    let mut row = vec![String::new(); COLUMNS.len()];
    row[0] = alert.id.clone();
    row[1] = alert.origin.clone();
    row[2] = alert.version.to_string();
    row[3] = rfc3339(&alert.created_at);
    row[4] = rfc3339(&alert.updated_at);
    row[RETRACTED] = alert.retracted.to_string();
    row[CASE_REFERENCE] = alert.case_reference.clone();
    row[TITLE] = alert.title.clone();
    let mut whole = true;
    if let Some(c) = &alert.content {
        row[5] = enum_name(c.category, "CATEGORY_", |e: Category| e.as_str_name());
        row[6] = c
            .indicators
            .iter()
            .map(|i| enum_name(*i, "INDICATOR_", |e: Indicator| e.as_str_name()))
            .collect::<Vec<_>>()
            .join(";");
        row[7] = enum_name(c.severity, "SEVERITY_", |e: Severity| e.as_str_name());
        row[8] = enum_name(c.confidence, "CONFIDENCE_", |e: Confidence| e.as_str_name());
        row[9] = enum_name(c.tlp, "TLP_", |e: Tlp| e.as_str_name());
        row[10] = enum_name(c.handling_code, "HANDLING_CODE_", |e: HandlingCode| {
            e.as_str_name()
        });
        row[11] = enum_name(
            c.source_reliability,
            "SOURCE_RELIABILITY_",
            |e: SourceReliability| e.as_str_name(),
        );
        row[12] = enum_name(
            c.information_accuracy,
            "INFORMATION_ACCURACY_",
            |e: InformationAccuracy| e.as_str_name(),
        );
        if let Some(l) = &c.location {
            row[13] = l.country.clone();
            row[14] = l.region.clone();
            row[15] = l.city.clone();
        }
        if let Some(w) = &c.time_window {
            row[16] = rfc3339(&w.start);
            row[17] = rfc3339(&w.end);
        }
        row[18] = c.narrative.clone();
        row[19] = rfc3339(&c.retention_until);
    }
    if alert.subjects.len() > 2 {
        whole = false;
    }
    for (i, s) in alert.subjects.iter().take(2).enumerate() {
        let at = FIRST_SUBJECT + i * SUBJECT_COLUMNS;
        whole &= subject_cells(s, &mut row[at..at + SUBJECT_COLUMNS]);
        if let Some(p) = &s.profile {
            let at = FIRST_PROFILE + i * PROFILE_COLUMNS;
            profile_cells(p, &mut row[at..at + PROFILE_COLUMNS]);
        }
    }
    (row, whole)
}

/// A victim profile's cells: gender, citizenship, age band, recruitment.
fn profile_cells(p: &VictimProfile, cells: &mut [String]) {
    cells[0] = enum_name(p.gender, "GENDER_", |e: Gender| e.as_str_name());
    cells[1] = p.citizenship.clone();
    cells[2] = enum_name(p.age_band, "AGE_BAND_", |e: AgeBand| e.as_str_name());
    cells[3] = p
        .recruitment
        .iter()
        .map(|m| {
            enum_name(*m, "RECRUITMENT_METHOD_", |e: RecruitmentMethod| {
                e.as_str_name()
            })
        })
        .collect::<Vec<_>>()
        .join(";");
}

/// A subject's cells; whether they hold all of it.
fn subject_cells(s: &Subject, cells: &mut [String]) -> bool {
    let mut whole = true;
    cells[0] = enum_name(s.role, "SUBJECT_ROLE_", |e: SubjectRole| e.as_str_name());
    let (mut phones, mut emails, mut ibans) = (Vec::new(), Vec::new(), Vec::new());
    let (mut person, mut document) = (false, false);
    let fits = |v: &str| !v.contains(';') && v.trim() == v;
    for id in &s.identifiers {
        match &id.kind {
            Some(Kind::Person(p)) if !person => {
                person = true;
                cells[1] = p.given_names.clone();
                cells[2] = p.family_name.clone();
                cells[3] = p.date_of_birth.clone();
                whole &= p.given_names.trim() == p.given_names
                    && p.family_name.trim() == p.family_name
                    && p.date_of_birth.trim() == p.date_of_birth;
            }
            Some(Kind::Phone(p)) => {
                whole &= p.region.is_empty() && fits(&p.number);
                phones.push(p.number.clone());
            }
            Some(Kind::Email(e)) => {
                whole &= fits(&e.address);
                emails.push(e.address.clone());
            }
            Some(Kind::Iban(i)) => {
                whole &= fits(&i.iban);
                ibans.push(i.iban.clone());
            }
            Some(Kind::Document(d)) if !document => {
                document = true;
                cells[7] = enum_name(d.r#type, "DOCUMENT_TYPE_", |e: DocumentType| {
                    e.as_str_name()
                });
                cells[8] = d.number.clone();
                cells[9] = d.issuing_country.clone();
                whole &= d.number.trim() == d.number;
            }
            _ => whole = false,
        }
    }
    cells[4] = phones.join(";");
    cells[5] = emails.join(";");
    cells[6] = ibans.join(";");
    whole
}

/// A cell a spreadsheet program would run as a formula gets a leading
/// quote in CSV (OWASP's CSV injection advice); the importer takes it off.
fn guard(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// What an export wrote: alerts, and how many of them did not fit a row
/// whole (a third subject, wallets, handles…: only JSON Lines holds those).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub alerts: u64,
    pub incomplete_rows: u64,
}

/// Why an export stopped: the node refused a page, or the file failed.
#[derive(Debug, Error)]
pub enum ExportRunError {
    #[error("{0}")]
    Node(Box<tonic::Status>),
    #[error(transparent)]
    Write(#[from] ExportError),
}

/// Writes every alert of the pages `next_page` returns (asked with an
/// empty token first, then each page's `next_page_token`) until a page
/// has no next token or `limit` alerts are written: the one export loop
/// of the command line and the console.
pub async fn write_pages<F, Fut>(
    writer: &mut Writer,
    limit: u64,
    mut next_page: F,
) -> Result<Exported, ExportRunError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<crate::proto::v1::ListAlertsResponse, tonic::Status>>,
{
    let mut done = Exported::default();
    let mut token = String::new();
    loop {
        let page = next_page(token)
            .await
            .map_err(|s| ExportRunError::Node(Box::new(s)))?;
        for alert in &page.alerts {
            if !writer.write(alert)? {
                done.incomplete_rows += 1;
            }
            done.alerts += 1;
        }
        if page.next_page_token.is_empty() || done.alerts >= limit {
            return Ok(done);
        }
        token = page.next_page_token;
    }
}

/// An export being written.
pub enum Writer {
    Csv(Box<csv::Writer<File>>, PathBuf),
    Xlsx {
        workbook: Box<rust_xlsxwriter::Workbook>,
        row: u32,
        path: PathBuf,
    },
    Jsonl(BufWriter<File>, PathBuf),
}

impl Writer {
    pub fn create(path: &Path, format: ExportFormat) -> Result<Self, ExportError> {
        let err = |message: String| ExportError::Write {
            file: path.to_owned(),
            message,
        };
        Ok(match format {
            ExportFormat::Csv => {
                let file = crate::secrets::create_private(path).map_err(|e| err(e.to_string()))?;
                let mut w = csv::Writer::from_writer(file);
                w.write_record(COLUMNS).map_err(|e| err(e.to_string()))?;
                Self::Csv(Box::new(w), path.to_owned())
            }
            ExportFormat::Xlsx => {
                // Created 0600 now: the workbook is saved over it at the
                // end, and a file that exists keeps its mode.
                crate::secrets::create_private(path).map_err(|e| err(e.to_string()))?;
                let mut workbook = Box::new(rust_xlsxwriter::Workbook::new());
                let sheet = workbook
                    .add_worksheet_with_constant_memory()
                    .map_err(|e| err(e.to_string()))?
                    .set_name("Alerts")
                    .map_err(|e| err(e.to_string()))?;
                for (c, h) in COLUMNS.iter().enumerate() {
                    sheet
                        .write_string(0, c as u16, *h)
                        .map_err(|e| err(e.to_string()))?;
                }
                Self::Xlsx {
                    workbook,
                    row: 1,
                    path: path.to_owned(),
                }
            }
            ExportFormat::Jsonl => Self::Jsonl(
                BufWriter::new(
                    crate::secrets::create_private(path).map_err(|e| err(e.to_string()))?,
                ),
                path.to_owned(),
            ),
        })
    }

    /// Writes one alert; returns whether the file holds all of it.
    pub fn write(&mut self, alert: &Alert) -> Result<bool, ExportError> {
        match self {
            Self::Csv(w, path) => {
                let (row, whole) = row_of(alert);
                w.write_record(row.iter().map(|c| guard(c).into_owned()))
                    .map_err(|e| ExportError::Write {
                        file: path.clone(),
                        message: e.to_string(),
                    })?;
                Ok(whole)
            }
            Self::Xlsx {
                workbook,
                row,
                path,
            } => {
                let (cells, whole) = row_of(alert);
                let err = |e: rust_xlsxwriter::XlsxError| ExportError::Write {
                    file: path.clone(),
                    message: e.to_string(),
                };
                let sheet = workbook.worksheet_from_index(0).map_err(err)?;
                for (c, v) in cells.iter().enumerate() {
                    if !v.is_empty() {
                        sheet.write_string(*row, c as u16, v).map_err(err)?;
                    }
                }
                *row += 1;
                Ok(whole)
            }
            Self::Jsonl(w, path) => {
                let err = |message: String| ExportError::Write {
                    file: path.clone(),
                    message,
                };
                serde_json::to_writer(&mut *w, alert).map_err(|e| err(e.to_string()))?;
                w.write_all(b"\n").map_err(|e| err(e.to_string()))?;
                Ok(true)
            }
        }
    }

    /// Flushes and closes the file, synced to disk.
    pub fn finish(self) -> Result<(), ExportError> {
        let (result, path) = match self {
            Self::Csv(mut w, path) => (
                w.flush()
                    .map_err(|e| e.to_string())
                    .and_then(|()| w.into_inner().map_err(|e| e.to_string()))
                    .and_then(|f| f.sync_all().map_err(|e| e.to_string())),
                path,
            ),
            Self::Xlsx {
                mut workbook, path, ..
            } => (
                workbook
                    .save(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        File::open(&path)
                            .and_then(|f| f.sync_all())
                            .map_err(|e| e.to_string())
                    }),
                path,
            ),
            Self::Jsonl(w, path) => (
                w.into_inner()
                    .map_err(|e| e.to_string())
                    .and_then(|f| f.sync_all().map_err(|e| e.to_string())),
                path,
            ),
        };
        result.map_err(|message| ExportError::Write {
            file: path,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{AlertContent, Identifier, Phone};

    #[test]
    fn the_columns_are_the_export_mappings_columns() {
        let loaded = std::sync::Arc::new(super::super::Loaded::load("export").unwrap());
        let headers: Vec<String> = COLUMNS.iter().map(|s| s.to_string()).collect();
        super::super::convert::Bound::new(&loaded, &headers).unwrap();
        for c in loaded.columns() {
            assert!(COLUMNS.contains(&c), "{c}");
        }
    }

    #[test]
    fn formulas_are_quoted_and_what_a_row_cannot_hold_is_said() {
        assert_eq!(guard("=1+1"), "'=1+1");
        assert_eq!(guard("+31 6"), "'+31 6");
        assert_eq!(guard("plain"), "plain");
        let alert = Alert {
            content: Some(AlertContent::default()),
            subjects: vec![Subject {
                profile: None,
                role: 1,
                identifiers: vec![Identifier {
                    kind: Some(Kind::Phone(Phone {
                        number: "0612345678".into(),
                        region: "NL".into(),
                    })),
                }],
            }],
            ..Default::default()
        };
        let (row, whole) = row_of(&alert);
        assert_eq!(row[FIRST_SUBJECT + 4], "0612345678");
        assert!(!whole, "a phone read in region NL");
    }

    mod round_trip {
        use super::super::super::Loaded;
        use super::super::super::read::{Item, open};
        use super::*;
        use crate::proto::v1::{
            AlertContent, AlertDraft, Email, Iban, Identifier, IdentityDocument, Location,
            PersonName, Phone, TimeWindow,
        };
        use pbjson_types::Timestamp;
        use proptest::prelude::*;
        use std::sync::Arc;

        fn text(max: usize) -> impl Strategy<Value = String> {
            proptest::string::string_regex(&format!("[A-Za-z0-9][A-Za-z0-9 .,:/éü]{{0,{max}}}"))
                .unwrap()
                .prop_map(|s| s.trim().to_owned())
        }

        fn timestamp() -> impl Strategy<Value = Timestamp> {
            (0i64..4_102_444_800, 0i32..1_000_000_000)
                .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos })
        }

        fn content() -> impl Strategy<Value = AlertContent> {
            (
                (
                    1..=6i32,
                    proptest::sample::subsequence((1..=14i32).collect::<Vec<_>>(), 0..4),
                ),
                (1..=4i32, 0..=4i32, 1..=5i32, 0..=4i32, 0..=6i32, 0..=6i32),
                proptest::option::of((
                    prop_oneof![Just("NL"), Just("RO"), Just("BE")],
                    proptest::option::of(text(12)),
                    proptest::option::of(text(12)),
                )),
                proptest::option::of((timestamp(), proptest::option::of(timestamp()))),
                proptest::option::of(text(80)),
                proptest::option::of(timestamp()),
            )
                .prop_map(
                    |((category, indicators), e, location, window, narrative, retention)| {
                        AlertContent {
                            category,
                            indicators,
                            severity: e.0,
                            confidence: e.1,
                            tlp: e.2,
                            handling_code: e.3,
                            source_reliability: e.4,
                            information_accuracy: e.5,
                            location: location.map(|(country, region, city)| Location {
                                country: country.into(),
                                region: region.unwrap_or_default(),
                                city: city.unwrap_or_default(),
                            }),
                            time_window: window.map(|(start, end)| TimeWindow {
                                start: Some(start),
                                end,
                            }),
                            narrative: narrative.unwrap_or_default(),
                            retention_until: retention,
                        }
                    },
                )
        }

        fn subject() -> impl Strategy<Value = Subject> {
            (
                0..=4i32,
                proptest::option::of((
                    text(10),
                    text(10),
                    prop_oneof![Just(""), Just("1990"), Just("1990-02"), Just("1990-02-01")],
                )),
                proptest::collection::vec("\\+31 6 [0-9]{8}", 0..3),
                proptest::collection::vec("[a-z]{1,8}@[a-z]{1,8}\\.nl", 0..2),
                proptest::option::of("NL[0-9]{2}ABNA[0-9]{10}"),
                proptest::option::of((
                    1..=3i32,
                    "[A-Z0-9]{6,9}",
                    prop_oneof![Just("NL"), Just("RO")],
                )),
                (
                    0..=3i32,
                    prop_oneof![Just(""), Just("RO"), Just("UA")],
                    0..=5i32,
                    proptest::sample::subsequence((1..=9i32).collect::<Vec<_>>(), 0..=3),
                ),
            )
                .prop_filter_map(
                    "a subject has an identifier",
                    |(role, person, phones, emails, iban, doc, profile)| {
                        let mut ids = Vec::new();
                        if let Some((g, f, d)) = person {
                            ids.push(Kind::Person(PersonName {
                                given_names: g,
                                family_name: f,
                                date_of_birth: d.into(),
                            }));
                        }
                        ids.extend(phones.into_iter().map(|number| {
                            Kind::Phone(Phone {
                                number,
                                region: String::new(),
                            })
                        }));
                        ids.extend(
                            emails
                                .into_iter()
                                .map(|address| Kind::Email(Email { address })),
                        );
                        ids.extend(iban.map(|iban| Kind::Iban(Iban { iban })));
                        ids.extend(doc.map(|(t, number, c)| {
                            Kind::Document(IdentityDocument {
                                r#type: t,
                                number,
                                issuing_country: c.into(),
                            })
                        }));
                        let (gender, citizenship, age_band, recruitment) = profile;
                        // Only a potential victim has one; all empty is none.
                        let profile = Some(VictimProfile {
                            gender,
                            citizenship: citizenship.into(),
                            age_band,
                            recruitment,
                        })
                        .filter(|p| role == 1 && *p != VictimProfile::default());
                        (!ids.is_empty()).then(|| Subject {
                            profile,
                            role,
                            identifiers: ids
                                .into_iter()
                                .map(|k| Identifier { kind: Some(k) })
                                .collect(),
                        })
                    },
                )
        }

        fn alert() -> impl Strategy<Value = Alert> {
            (
                "[a-f0-9]{8}",
                content(),
                proptest::collection::vec(subject(), 0..=2),
            )
                .prop_map(|(id, content, subjects)| Alert {
                    id: format!("police:{id}"),
                    origin: "police".into(),
                    version: 1,
                    content: Some(content),
                    subjects,
                    ..Default::default()
                })
        }

        /// Writes `alerts` in `format`, reads the file back with the
        /// built-in `export` mapping (JSON Lines need none) and returns the
        /// drafts by source id.
        fn export_and_import(alerts: &[Alert], format: ExportFormat) -> Vec<(String, AlertDraft)> {
            let dir = tempfile::tempdir().unwrap();
            let ext = match format {
                ExportFormat::Csv => "csv",
                ExportFormat::Xlsx => "xlsx",
                ExportFormat::Jsonl => "jsonl",
            };
            let path = dir.path().join(format!("export.{ext}"));
            let mut w = Writer::create(&path, format).unwrap();
            for a in alerts {
                assert!(
                    w.write(a).unwrap(),
                    "the generator makes alerts a row holds"
                );
            }
            w.finish().unwrap();
            let mapping = match format {
                ExportFormat::Jsonl => Loaded::parse(
                    std::path::Path::new("cli"),
                    "source = \"x\"\nid_column = \"sourceId\"\n",
                )
                .unwrap(),
                _ => Loaded::load("export").unwrap(),
            };
            let mut reader = open(&path, Arc::new(mapping)).unwrap();
            let mut out = Vec::new();
            while let Some(item) = reader.items.blocking_recv() {
                match item.unwrap().0 {
                    Item::Record { converted, .. } => {
                        out.push((converted.source_id.clone(), converted.draft.clone()))
                    }
                    other => panic!("{other:?}"),
                }
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            /// Export, then import: every alert comes back with the same
            /// content and subjects, in all three formats.
            #[test]
            fn export_then_import_gives_the_same_alerts(
                alerts in proptest::collection::vec(alert(), 1..4)
            ) {
                let expected: Vec<(String, AlertDraft)> = alerts
                    .iter()
                    .map(|a| (a.id.clone(), AlertDraft {
                        content: a.content.clone(),
                        subjects: a.subjects.clone(),
                        case_reference: a.case_reference.clone(),
                        title: a.title.clone(),
                    }))
                    .collect();
                for format in [ExportFormat::Csv, ExportFormat::Xlsx, ExportFormat::Jsonl] {
                    prop_assert_eq!(&export_and_import(&alerts, format), &expected, "{:?}", format);
                }
            }
        }
    }
}
