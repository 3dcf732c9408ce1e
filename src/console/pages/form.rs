//! A form as the person filled it in: the values to show again and the
//! problems to show next to each field, mapped from the field paths the
//! node's validation reports (`draft.subjects[0].identifiers[1].phone.number`)
//! to the inputs that produced them.

use std::collections::BTreeMap;

use crate::violation::FieldViolation;

/// One choice of a select or checkbox group: the wire name and its words.
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// The choices of a wire enum (every value but UNSPECIFIED), in wire order.
macro_rules! choices {
    ($enum:ty, $prefix:literal) => {{
        (1..64)
            .filter_map(|i| <$enum>::try_from(i).ok())
            .map(|e| $crate::console::pages::form::Choice {
                value: e.as_str_name().to_owned(),
                label: $crate::console::view::label(e.as_str_name(), $prefix),
            })
            .collect::<Vec<_>>()
    }};
}
pub(crate) use choices;

/// The choices of a wire enum labelled with what each means (`$words`
/// takes the wire value): codes people choose are explained where they
/// choose them.
macro_rules! explained_choices {
    ($enum:ty, $words:expr) => {{
        (1..64)
            .filter_map(|i| <$enum>::try_from(i).ok())
            .map(|e| $crate::console::pages::form::Choice {
                value: e.as_str_name().to_owned(),
                label: $words(e as i32),
            })
            .collect::<Vec<_>>()
    }};
}
pub(crate) use explained_choices;

#[derive(Default)]
pub struct FormState {
    values: BTreeMap<String, Vec<String>>,
    errors: BTreeMap<String, Vec<String>>,
    /// Problems no input can show (listed at the top).
    pub general: Vec<String>,
    /// Field path prefix → input name and a label its problems begin
    /// with ("line 2" of a list), longest first when matched.
    paths: Vec<(String, String, Option<String>)>,
}

impl FormState {
    pub fn from_fields(fields: &[(String, String)]) -> Self {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in fields {
            if k != "csrf" {
                values.entry(k.clone()).or_default().push(v.clone());
            }
        }
        Self {
            values,
            ..Self::default()
        }
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_owned(), vec![value.into()]);
    }

    /// The value of `name` exactly as sent (a policy text keeps its
    /// indentation and final newline).
    pub fn value_raw(&self, name: &str) -> &str {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Adds one more value of `name` (a checked box).
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.values
            .entry(name.to_owned())
            .or_default()
            .push(value.into());
    }

    /// The value typed into `name`, trimmed ("" when empty).
    pub fn value(&self, name: &str) -> &str {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map(|s| s.trim())
            .unwrap_or("")
    }

    /// Whether `value` is among the values of `name` (a checked box, the
    /// selected option).
    pub fn has(&self, name: &str, value: &str) -> bool {
        self.values
            .get(name)
            .is_some_and(|v| v.iter().any(|x| x == value))
    }

    pub fn values(&self, name: &str) -> Vec<&str> {
        self.values
            .get(name)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Says that problems reported at `path` (and below it) belong to the
    /// input `name`.
    pub fn map_path(&mut self, path: impl Into<String>, name: &str) {
        self.paths.push((path.into(), name.to_owned(), None));
    }

    /// As [`FormState::map_path`], each problem told with `label` first
    /// (which line of a list input it is about).
    pub fn map_path_labelled(
        &mut self,
        path: impl Into<String>,
        name: &str,
        label: Option<String>,
    ) {
        self.paths.push((path.into(), name.to_owned(), label));
    }

    pub fn add_error(&mut self, name: &str, message: impl Into<String>) {
        self.errors
            .entry(name.to_owned())
            .or_default()
            .push(message.into());
    }

    /// Puts each violation next to the input its path belongs to (the
    /// longest mapped prefix), or at the top when none does.
    pub fn add_violations(&mut self, violations: &[FieldViolation]) {
        for v in violations {
            let input = self
                .paths
                .iter()
                .filter(|(p, _, _)| {
                    v.field == *p
                        || v.field.starts_with(&format!("{p}."))
                        || v.field.starts_with(&format!("{p}["))
                })
                .max_by_key(|(p, _, _)| p.len())
                .map(|(_, n, label)| (n.clone(), label.clone()));
            match input {
                Some((name, None)) => self.add_error(&name, v.description.clone()),
                Some((name, Some(label))) => {
                    self.add_error(&name, format!("{label}: {}", v.description))
                }
                None if v.field.is_empty() => self.general.push(v.description.clone()),
                None => self.general.push(format!("{}: {}", v.field, v.description)),
            }
        }
    }

    /// The problems shown next to `name`, joined.
    pub fn error(&self, name: &str) -> &str {
        self.errors
            .get(name)
            .and_then(|e| e.first())
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || !self.general.is_empty()
    }

    /// Every (input, problem) pair, for the summary at the top of the form.
    pub fn summary(&self) -> Vec<(String, String)> {
        self.errors
            .iter()
            .flat_map(|(k, es)| es.iter().map(move |e| (k.clone(), e.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_go_to_the_longest_mapped_input() {
        let mut f = FormState::default();
        f.map_path("draft.subjects[0]", "s0_role");
        f.map_path("draft.subjects[0].identifiers[1]", "s0_phone");
        f.map_path(
            "draft.subjects[0].identifiers[1].phone.region",
            "s0_phone_region",
        );
        f.map_path("draft.content.location.country", "country");
        f.add_violations(&[
            FieldViolation::new(
                "draft.subjects[0].identifiers[1].phone.number",
                "not a phone",
            ),
            FieldViolation::new(
                "draft.subjects[0].identifiers[1].phone.region",
                "bad region",
            ),
            FieldViolation::new("draft.content.location.country", "not a country"),
            FieldViolation::new("draft.content.location.countryx", "other"),
            FieldViolation::new("request_id", "too long"),
        ]);
        assert_eq!(f.error("s0_phone"), "not a phone");
        assert_eq!(f.error("s0_phone_region"), "bad region");
        assert_eq!(f.error("country"), "not a country");
        assert_eq!(
            f.general,
            [
                "draft.content.location.countryx: other",
                "request_id: too long"
            ]
        );
    }
}
