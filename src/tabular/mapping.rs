//! Import mappings: which column of a register holds what of an alert, as
//! a TOML file (`casebridge alert import --mapping FILE`) or built in
//! (`htcds`). A mapping is checked whole before the first row is read:
//! every mistake is reported at its line and column, and a column it names
//! that the file's header row lacks is reported before anything is sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::policy::cases::enum_value;
use crate::proto::v1::{
    AgeBand, Category, Confidence, DocumentType, Gender, HandlingCode, Indicator,
    InformationAccuracy, RecruitmentMethod, Severity, SourceReliability, SubjectRole, Tlp,
};

/// The built-in mappings, by the name `--mapping` and `--print-mapping`
/// take.
pub const BUILT_IN: [(&str, &str); 2] = [
    ("htcds", include_str!("htcds.toml")),
    ("export", include_str!("export.toml")),
];

#[derive(Debug, Error)]
pub enum MappingError {
    #[error("{}:{line}:{column}: {message}", file.display())]
    At {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no built-in mapping {0:?}: the built-in mappings are {names}",
        names = BUILT_IN.map(|(n, _)| n).join(", ")
    )]
    UnknownBuiltIn(String),
}

/// One column, or several: a name in the header row, or `#C` for the
/// column letter C (for a column without a header).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Columns(Spanned<OneOrMany>);

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Columns {
    pub fn names(&self) -> Vec<&str> {
        match self.0.get_ref() {
            OneOrMany::One(c) => vec![c.as_str()],
            OneOrMany::Many(cs) => cs.iter().map(String::as_str).collect(),
        }
    }

    /// Where the mapping names them.
    pub fn span(&self) -> std::ops::Range<usize> {
        self.0.span()
    }
}

fn one() -> u32 {
    1
}

fn semicolon() -> String {
    ";".into()
}

/// The whole mapping file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The register's name, under which the node keeps its records.
    pub source: Spanned<String>,
    /// The column with the agency's own stable case id.
    pub id_column: Columns,
    /// The sheet of a workbook (default: the first).
    #[serde(default)]
    pub sheet: Option<String>,
    /// The row holding the column names (1-based).
    #[serde(default = "one")]
    pub header_row: u32,
    /// A column the mapping names that the file lacks: `error` (the
    /// default: a typo is caught before anything is sent) or `skip` (for
    /// mappings written for several layouts, like the built-in `htcds`;
    /// the import says which it skipped). The id column is never skipped.
    #[serde(default)]
    pub missing_columns: MissingColumns,
    /// The first row of data (default: the one after the header row).
    #[serde(default)]
    pub first_row: Option<u32>,
    /// CSV field delimiter (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// What separates several values in one cell (indicators, phones).
    #[serde(default = "semicolon")]
    pub list_separator: String,
    /// Formats of dates written as text, in the `time` crate's format
    /// description syntax (`[day]/[month]/[year]`); tried in order after
    /// the ISO forms. Spreadsheet date cells need none.
    #[serde(default)]
    pub date_formats: Vec<Spanned<String>>,
    /// The region of phone numbers written without a country code.
    #[serde(default)]
    pub phone_region: Option<Spanned<String>>,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub content: ContentColumns,
    /// This agency's own reference and title for each alert, kept on the
    /// node and never shared.
    #[serde(default)]
    pub case: CaseColumns,
    #[serde(default)]
    pub subjects: Vec<SubjectColumns>,
    /// Value maps: what a cell says → the value it stands for.
    #[serde(default)]
    pub values: Values,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingColumns {
    #[default]
    Error,
    Skip,
}

/// `[case]`: what people here tell an alert by. Without `reference`, the
/// case id (`id_column`) is the reference.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseColumns {
    /// The column with the agency's own reference, when it is not the id.
    pub reference: Option<Columns>,
    /// A short title; several columns are joined with " · ".
    pub title: Option<Columns>,
}

/// Values for every row whose cell is empty (or that has no such column).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub category: Option<Spanned<String>>,
    pub severity: Option<Spanned<String>>,
    pub confidence: Option<Spanned<String>>,
    pub tlp: Option<Spanned<String>>,
    pub handling_code: Option<Spanned<String>>,
    pub country: Option<Spanned<String>>,
    /// Retention: this many days after the row's start date (when the row
    /// has none, the node's default retention applies).
    pub retention_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentColumns {
    /// Several columns: the first non-empty one.
    pub category: Option<Columns>,
    /// Several columns, several values a cell: all of them.
    pub indicators: Option<Columns>,
    pub severity: Option<Columns>,
    pub confidence: Option<Columns>,
    pub tlp: Option<Columns>,
    pub handling_code: Option<Columns>,
    /// Admiralty code letters (A-F) and digits (1-6).
    pub source_reliability: Option<Columns>,
    pub information_accuracy: Option<Columns>,
    pub country: Option<Columns>,
    pub region: Option<Columns>,
    pub city: Option<Columns>,
    pub start: Option<Columns>,
    pub end: Option<Columns>,
    /// Several columns: joined, each under its column's name.
    pub narrative: Option<Columns>,
    pub retention_until: Option<Columns>,
}

/// One subject of each row (a mapping may describe several: a victim and
/// a suspect, or two victims). A subject whose cells are all empty is left
/// out of that row's alert.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectColumns {
    /// The role, fixed; or `role_column` for a column that says it.
    pub role: Option<Spanned<String>>,
    pub role_column: Option<Columns>,
    /// Several columns: joined with a space (first and middle names).
    pub given_names: Option<Columns>,
    pub family_name: Option<Columns>,
    pub date_of_birth: Option<Columns>,
    /// Several columns, several values a cell: one identifier each.
    pub phones: Option<Columns>,
    pub emails: Option<Columns>,
    pub ibans: Option<Columns>,
    pub document: Option<DocumentColumns>,
    #[serde(default)]
    pub handles: Vec<HandleColumns>,
    /// A potential victim's profile, for the federated statistics (read
    /// only when the row's role for this subject is potential victim: the
    /// profile of anyone else is not kept).
    pub gender: Option<Columns>,
    pub citizenship: Option<Columns>,
    pub age_band: Option<Columns>,
    /// Several values a cell: all of them.
    pub recruitment: Option<Columns>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentColumns {
    /// passport, national_id or residence_permit, fixed; or `type_column`
    /// for a column that says it.
    pub r#type: Option<Spanned<String>>,
    pub type_column: Option<Columns>,
    pub number: Columns,
    /// The issuing state's column; `default_country` when it is empty.
    pub country: Option<Columns>,
    pub default_country: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandleColumns {
    /// The platform, e.g. "telegram".
    pub platform: Spanned<String>,
    pub column: Columns,
}

/// Cell text (compared trimmed and case-insensitively) → a value name as
/// in policies (`sexual_exploitation`, `debt_bondage`), or `ignore`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Values {
    #[serde(default)]
    pub category: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub indicators: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub severity: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub confidence: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub tlp: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub handling_code: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub role: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub gender: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub age_band: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub recruitment: BTreeMap<String, Spanned<String>>,
    /// Cell text → ISO 3166-1 alpha-2 (names the reader does not know).
    #[serde(default)]
    pub country: BTreeMap<String, Spanned<String>>,
    /// The enumerations without a value map (always empty).
    #[serde(skip)]
    pub none: BTreeMap<String, Spanned<String>>,
}

/// The enumerations a cell can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnumKind {
    Category,
    Indicator,
    Severity,
    Confidence,
    Tlp,
    HandlingCode,
    Role,
    Document,
    SourceReliability,
    InformationAccuracy,
    Gender,
    AgeBand,
    Recruitment,
}

impl EnumKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Category => "category",
            Self::Indicator => "indicator",
            Self::Severity => "severity",
            Self::Confidence => "confidence",
            Self::Tlp => "tlp",
            Self::HandlingCode => "handling_code",
            Self::Role => "role",
            Self::Document => "document type",
            Self::SourceReliability => "source_reliability",
            Self::InformationAccuracy => "information_accuracy",
            Self::Gender => "gender",
            Self::AgeBand => "age_band",
            Self::Recruitment => "recruitment",
        }
    }

    /// The value `name` stands for (`sexual_exploitation`, `H2`, `amber`).
    pub fn parse(self, name: &str) -> Option<i32> {
        let name = name.trim().replace([' ', '-'], "_");
        let r = match self {
            Self::Category => enum_value("category", "CATEGORY_", &name, |n| {
                Category::from_str_name(n).map(|v| v as i32)
            }),
            Self::Indicator => enum_value("indicator", "INDICATOR_", &name, |n| {
                Indicator::from_str_name(n).map(|v| v as i32)
            }),
            Self::Severity => enum_value("severity", "SEVERITY_", &name, |n| {
                Severity::from_str_name(n).map(|v| v as i32)
            }),
            Self::Confidence => enum_value("confidence", "CONFIDENCE_", &name, |n| {
                Confidence::from_str_name(n).map(|v| v as i32)
            }),
            Self::Tlp => enum_value("tlp", "TLP_", &name, |n| {
                Tlp::from_str_name(n).map(|v| v as i32)
            }),
            Self::HandlingCode => enum_value("handling_code", "HANDLING_CODE_", &name, |n| {
                HandlingCode::from_str_name(n).map(|v| v as i32)
            }),
            Self::Role => enum_value("role", "SUBJECT_ROLE_", &name, |n| {
                SubjectRole::from_str_name(n).map(|v| v as i32)
            }),
            Self::Document => enum_value("document type", "DOCUMENT_TYPE_", &name, |n| {
                DocumentType::from_str_name(n).map(|v| v as i32)
            }),
            Self::SourceReliability => {
                enum_value("source_reliability", "SOURCE_RELIABILITY_", &name, |n| {
                    SourceReliability::from_str_name(n).map(|v| v as i32)
                })
            }
            Self::InformationAccuracy => enum_value(
                "information_accuracy",
                "INFORMATION_ACCURACY_",
                &name,
                |n| InformationAccuracy::from_str_name(n).map(|v| v as i32),
            ),
            Self::Gender => enum_value("gender", "GENDER_", &name, |n| {
                Gender::from_str_name(n).map(|v| v as i32)
            }),
            Self::AgeBand => enum_value("age_band", "AGE_BAND_", &name, |n| {
                AgeBand::from_str_name(n).map(|v| v as i32)
            }),
            Self::Recruitment => enum_value("recruitment", "RECRUITMENT_METHOD_", &name, |n| {
                RecruitmentMethod::from_str_name(n).map(|v| v as i32)
            }),
        };
        r.ok().filter(|v| *v != 0)
    }

    /// The names this kind accepts, for error messages.
    pub fn names(self) -> Vec<String> {
        let strip = |full: &str, prefix: &str| {
            full.strip_prefix(prefix)
                .unwrap_or(full)
                .to_ascii_lowercase()
        };
        (1..32)
            .filter_map(|v| {
                let full = match self {
                    Self::Category => Category::try_from(v).ok()?.as_str_name(),
                    Self::Indicator => Indicator::try_from(v).ok()?.as_str_name(),
                    Self::Severity => Severity::try_from(v).ok()?.as_str_name(),
                    Self::Confidence => Confidence::try_from(v).ok()?.as_str_name(),
                    Self::Tlp => Tlp::try_from(v).ok()?.as_str_name(),
                    Self::HandlingCode => HandlingCode::try_from(v).ok()?.as_str_name(),
                    Self::Role => SubjectRole::try_from(v).ok()?.as_str_name(),
                    Self::Document => DocumentType::try_from(v).ok()?.as_str_name(),
                    Self::SourceReliability => SourceReliability::try_from(v).ok()?.as_str_name(),
                    Self::InformationAccuracy => {
                        InformationAccuracy::try_from(v).ok()?.as_str_name()
                    }
                    Self::Gender => Gender::try_from(v).ok()?.as_str_name(),
                    Self::AgeBand => AgeBand::try_from(v).ok()?.as_str_name(),
                    Self::Recruitment => RecruitmentMethod::try_from(v).ok()?.as_str_name(),
                };
                let prefix = match self {
                    Self::Category => "CATEGORY_",
                    Self::Indicator => "INDICATOR_",
                    Self::Severity => "SEVERITY_",
                    Self::Confidence => "CONFIDENCE_",
                    Self::Tlp => "TLP_",
                    Self::HandlingCode => "HANDLING_CODE_",
                    Self::Role => "SUBJECT_ROLE_",
                    Self::Document => "DOCUMENT_TYPE_",
                    Self::SourceReliability => "SOURCE_RELIABILITY_",
                    Self::InformationAccuracy => "INFORMATION_ACCURACY_",
                    Self::Gender => "GENDER_",
                    Self::AgeBand => "AGE_BAND_",
                    Self::Recruitment => "RECRUITMENT_METHOD_",
                };
                Some(strip(full, prefix))
            })
            .collect()
    }
}

/// A value map's target that leaves a value out (an indicator the
/// federation has no code for).
pub const IGNORE: &str = "ignore";

/// A mapping read and checked, with where it came from.
#[derive(Debug)]
pub struct Loaded {
    pub mapping: Mapping,
    /// Date formats, compiled.
    pub date_formats: Vec<::time::format_description::OwnedFormatItem>,
}

impl Loaded {
    /// The built-in mapping `name`, or the mapping file at `name`.
    pub fn load(name: &str) -> Result<Self, MappingError> {
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| *n == name) {
            return Self::parse(Path::new(&format!("<built-in {name}>")), text);
        }
        if !name.contains(['/', '.']) && !Path::new(name).exists() {
            return Err(MappingError::UnknownBuiltIn(name.into()));
        }
        let file = Path::new(name);
        let text = std::fs::read_to_string(file).map_err(|source| MappingError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(file, &text)
    }

    /// The mapping of a JSON Lines register, which needs nothing but its
    /// name on the node: each line carries its own `sourceId` and draft.
    /// `origin` names where the name came from in errors (a command line,
    /// a form field).
    pub fn json_lines(source: &str, origin: &Path) -> Result<Self, MappingError> {
        Self::parse(
            origin,
            &format!("source = {source:?}\nid_column = \"sourceId\"\n"),
        )
    }

    /// Parses and checks a mapping; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, MappingError> {
        let c = Checker { file, text };
        let mapping: Mapping = toml::from_str(text).map_err(|e| {
            c.at(
                e.span().map_or(0, |s| s.start),
                e.message().trim().to_owned(),
            )
        })?;
        c.layout(&mapping)?;
        c.defaults_and_values(&mapping)?;
        c.subjects(&mapping)?;
        let date_formats = c.date_formats(&mapping)?;
        Ok(Self {
            mapping,
            date_formats,
        })
    }

    /// Every column the mapping names.
    pub fn columns(&self) -> Vec<&str> {
        let m = &self.mapping;
        let c = &m.content;
        let mut all: Vec<&Columns> = vec![&m.id_column];
        all.extend([&m.case.reference, &m.case.title].into_iter().flatten());
        all.extend(
            [
                &c.category,
                &c.indicators,
                &c.severity,
                &c.confidence,
                &c.tlp,
                &c.handling_code,
                &c.source_reliability,
                &c.information_accuracy,
                &c.country,
                &c.region,
                &c.city,
                &c.start,
                &c.end,
                &c.narrative,
                &c.retention_until,
            ]
            .into_iter()
            .flatten(),
        );
        for s in &m.subjects {
            all.extend(
                [
                    &s.role_column,
                    &s.given_names,
                    &s.family_name,
                    &s.date_of_birth,
                    &s.phones,
                    &s.emails,
                    &s.ibans,
                    &s.gender,
                    &s.citizenship,
                    &s.age_band,
                    &s.recruitment,
                ]
                .into_iter()
                .flatten(),
            );
            if let Some(d) = &s.document {
                all.push(&d.number);
                all.extend(&d.country);
                all.extend(&d.type_column);
            }
            all.extend(s.handles.iter().map(|h| &h.column));
        }
        all.into_iter().flat_map(Columns::names).collect()
    }
}

/// The checks of a mapping file beyond its TOML shape, each problem at
/// its file, line and column.
struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn at(&self, offset: usize, message: String) -> MappingError {
        let (line, column) = crate::config::line_col(self.text, offset);
        MappingError::At {
            file: self.file.to_owned(),
            line,
            column,
            message,
        }
    }

    /// A value of one of the node's enumerations (or `ignore`, where allowed).
    fn enum_value(
        &self,
        kind: EnumKind,
        v: &Spanned<String>,
        ignore_ok: bool,
    ) -> Result<(), MappingError> {
        if (ignore_ok && v.get_ref() == IGNORE) || kind.parse(v.get_ref()).is_some() {
            return Ok(());
        }
        Err(self.at(
            v.span().start,
            format!(
                "unknown {} `{}`: one of {}{}",
                kind.name(),
                v.get_ref(),
                kind.names().join(", "),
                if ignore_ok { ", or ignore" } else { "" }
            ),
        ))
    }

    fn country(&self, v: &Spanned<String>) -> Result<(), MappingError> {
        if crate::ids::CountryCode::is_valid(v.get_ref()) {
            return Ok(());
        }
        Err(self.at(
            v.span().start,
            format!(
                "`{}` is not an ISO 3166-1 alpha-2 country code (upper case, e.g. \"NL\")",
                v.get_ref()
            ),
        ))
    }

    /// The register's name, and where its rows are.
    fn layout(&self, mapping: &Mapping) -> Result<(), MappingError> {
        let source = &mapping.source;
        if let Err(e) = crate::ids::SourceName::new(source.get_ref().as_str()) {
            return Err(self.at(source.span().start, format!("source: {e}")));
        }
        if mapping.header_row == 0 {
            return Err(self.at(0, "header_row: rows count from 1".into()));
        }
        if let Some(first) = mapping.first_row
            && first <= mapping.header_row
        {
            return Err(self.at(0, "first_row must come after header_row".into()));
        }
        if mapping.list_separator.is_empty() {
            return Err(self.at(0, "list_separator must not be empty".into()));
        }
        Ok(())
    }

    /// `[defaults]`, `phone_region` and the `[values.*]` maps.
    fn defaults_and_values(&self, mapping: &Mapping) -> Result<(), MappingError> {
        let d = &mapping.defaults;
        for (kind, v) in [
            (EnumKind::Category, &d.category),
            (EnumKind::Severity, &d.severity),
            (EnumKind::Confidence, &d.confidence),
            (EnumKind::Tlp, &d.tlp),
            (EnumKind::HandlingCode, &d.handling_code),
        ] {
            if let Some(v) = v {
                self.enum_value(kind, v, false)?;
            }
        }
        for c in [&d.country, &mapping.phone_region].into_iter().flatten() {
            self.country(c)?;
        }
        let vals = &mapping.values;
        for (kind, map) in [
            (EnumKind::Category, &vals.category),
            (EnumKind::Indicator, &vals.indicators),
            (EnumKind::Severity, &vals.severity),
            (EnumKind::Confidence, &vals.confidence),
            (EnumKind::Tlp, &vals.tlp),
            (EnumKind::HandlingCode, &vals.handling_code),
            (EnumKind::Role, &vals.role),
            (EnumKind::Gender, &vals.gender),
            (EnumKind::AgeBand, &vals.age_band),
            (EnumKind::Recruitment, &vals.recruitment),
        ] {
            for v in map.values() {
                // A profile value no code fits ("unknown") is left out.
                let may_ignore = matches!(
                    kind,
                    EnumKind::Indicator
                        | EnumKind::Recruitment
                        | EnumKind::Gender
                        | EnumKind::AgeBand
                );
                self.enum_value(kind, v, may_ignore)?;
            }
        }
        for v in vals.country.values() {
            self.country(v)?;
        }
        Ok(())
    }

    /// Each `[[subjects]]` table's role and document.
    fn subjects(&self, mapping: &Mapping) -> Result<(), MappingError> {
        for s in &mapping.subjects {
            if let Some(r) = &s.role {
                self.enum_value(EnumKind::Role, r, false)?;
            }
            let Some(doc) = &s.document else { continue };
            match (&doc.r#type, &doc.type_column) {
                (Some(t), None) => self.enum_value(EnumKind::Document, t, false)?,
                (None, Some(_)) => {}
                (Some(t), Some(_)) => {
                    return Err(self.at(
                        t.span().start,
                        "document: type or type_column, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(self.at(0, "[subjects.document] needs type or type_column".into()));
                }
            }
            if let Some(c) = &doc.default_country {
                self.country(c)?;
            }
        }
        Ok(())
    }

    /// `date_formats`, compiled.
    fn date_formats(
        &self,
        mapping: &Mapping,
    ) -> Result<Vec<::time::format_description::OwnedFormatItem>, MappingError> {
        mapping
            .date_formats
            .iter()
            .map(|f| {
                ::time::format_description::parse_owned::<2>(f.get_ref())
                    .map_err(|e| self.at(f.span().start, format!("date format: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Loaded, String> {
        Loaded::parse(Path::new("m.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_built_in_mappings_are_valid() {
        for (name, _) in BUILT_IN {
            Loaded::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn mistakes_are_reported_at_their_line_and_column() {
        let base = "source = \"reg\"\nid_column = \"Case\"\n";
        let e = parse(&format!("{base}[defaults]\ncategory = \"sexual\"\n")).unwrap_err();
        assert!(
            e.starts_with("m.toml:4:12: unknown category `sexual`"),
            "{e}"
        );
        assert!(e.contains("sexual_exploitation"), "{e}");
        let e = parse(&format!(
            "{base}[values.indicators]\n\"Debt\" = \"debts\"\n"
        ))
        .unwrap_err();
        assert!(
            e.starts_with("m.toml:4:10: unknown indicator `debts`"),
            "{e}"
        );
        assert!(e.ends_with(", or ignore"), "{e}");
        let e = parse(&format!("{base}[values.age_band]\n\"Adult\" = \"18+\"\n")).unwrap_err();
        assert!(
            e.starts_with("m.toml:4:11: unknown age_band `18+`: one of 0_17, 18_24"),
            "{e}"
        );
        let e = parse(&format!("{base}phone_region = \"nl\"\n")).unwrap_err();
        assert!(e.starts_with("m.toml:3:16:"), "{e}");
        let e = parse(&format!("{base}colour = 1\n")).unwrap_err();
        assert!(e.starts_with("m.toml:3:1: unknown field `colour`"), "{e}");
        let e = parse("source = \"Reg\"\nid_column = \"Case\"\n").unwrap_err();
        assert!(e.starts_with("m.toml:1:10: source:"), "{e}");
        let e = parse(&format!("{base}date_formats = [\"[day]/[mnth]\"]\n")).unwrap_err();
        assert!(e.starts_with("m.toml:3:17: date format:"), "{e}");
    }

    #[test]
    fn enum_names_are_read_as_policies_write_them() {
        assert_eq!(
            EnumKind::Category.parse("sexual exploitation"),
            Some(Category::SexualExploitation as i32)
        );
        assert_eq!(
            EnumKind::Tlp.parse("AMBER-STRICT"),
            Some(Tlp::AmberStrict as i32)
        );
        assert_eq!(
            EnumKind::HandlingCode.parse("h2"),
            Some(HandlingCode::H2 as i32)
        );
        assert_eq!(EnumKind::Category.parse("unspecified"), None);
        assert!(
            EnumKind::Role
                .names()
                .contains(&"potential_victim".to_string())
        );
    }
}
