//! The intake as JSON, for hotline apps (docs/intake.md, "For app
//! developers"): a report in the shape an app builds, read by the same
//! rules as the form — it becomes the form's fields, so one reader checks
//! both, and each problem is named back at its JSON path
//! (`people[1].phone`).

use serde::Deserialize;

use super::form::{MAX_PEOPLE, Problem, person_field};

/// A report as an app sends it. Unknown members are refused: a typo in a
/// member's name must not drop what the reporter wrote.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonReport {
    /// The reporter's language (`ro`); else `Accept-Language` decides.
    pub language: String,
    pub what: String,
    pub country: String,
    pub town: String,
    pub when: String,
    pub people: Vec<JsonPerson>,
    pub in_danger: Option<bool>,
    /// `receipt` (the default), `phone` or `email`.
    pub contact: Option<String>,
    pub contact_value: String,
    pub police_consent: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonPerson {
    pub name: String,
    pub phone: String,
    pub workplace: String,
    pub plate: String,
}

/// A receipt, and an answer to add (the conversation calls).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonReceipt {
    pub language: String,
    pub receipt: String,
    pub text: String,
}

impl JsonReport {
    /// The form's fields for this report, or the problem of naming more
    /// people than the form holds.
    pub fn fields(&self) -> Result<Vec<(String, String)>, Problem> {
        if self.people.len() > MAX_PEOPLE {
            return Err(Problem {
                field: "people".into(),
                message: "error-too-many",
                args: vec![("max", MAX_PEOPLE.to_string())],
            });
        }
        let mut f: Vec<(String, String)> = vec![
            ("what".into(), self.what.clone()),
            ("country".into(), self.country.clone()),
            ("town".into(), self.town.clone()),
            ("when".into(), self.when.clone()),
            (
                "contact".into(),
                self.contact.clone().unwrap_or_else(|| "receipt".into()),
            ),
            ("contact_value".into(), self.contact_value.clone()),
        ];
        if let Some(danger) = self.in_danger {
            f.push(("in_danger".into(), if danger { "yes" } else { "no" }.into()));
        }
        if self.police_consent {
            f.push(("consent".into(), "yes".into()));
        }
        for (i, p) in self.people.iter().enumerate() {
            for (name, value) in [
                ("name", &p.name),
                ("phone", &p.phone),
                ("workplace", &p.workplace),
                ("plate", &p.plate),
            ] {
                f.push((person_field(i, name), value.clone()));
            }
        }
        Ok(f)
    }
}

/// The JSON path of a form field: `p1_phone` → `people[1].phone`,
/// `consent` → `police_consent`; the others are the same.
pub fn path_of(field: &str) -> String {
    if field == "consent" {
        return "police_consent".into();
    }
    let person = field
        .strip_prefix('p')
        .and_then(|rest| rest.split_once('_'))
        .filter(|(i, _)| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    match person {
        Some((i, name)) => format!("people[{i}].{name}"),
        None => field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::form;
    use proptest::prelude::*;

    #[test]
    fn a_json_report_is_read_as_the_form_reads_it() {
        let report: JsonReport = serde_json::from_str(
            r#"{"what":"Locked in","country":"NL","people":[{"phone":"+31 6 5555 0101"}],
                "in_danger":false,"police_consent":true}"#,
        )
        .unwrap();
        let read = form::read(&report.fields().unwrap()).unwrap();
        assert_eq!(read.what, "Locked in");
        assert_eq!(read.people[0].phone, "+31 6 5555 0101");
        assert_eq!(read.in_danger, Some(false));
        assert_eq!(read.contact, form::Contact::ReceiptOnly);
        assert!(read.police_consent);
    }

    #[test]
    fn problems_are_named_at_their_json_paths() {
        let report = JsonReport {
            people: vec![
                JsonPerson::default(),
                JsonPerson {
                    phone: "9".repeat(41),
                    ..Default::default()
                },
            ],
            contact: Some("pigeon".into()),
            ..Default::default()
        };
        let problems = form::read(&report.fields().unwrap()).unwrap_err();
        let paths: Vec<String> = problems.iter().map(|p| path_of(&p.field)).collect();
        assert_eq!(paths, ["what", "people[1].phone", "contact"]);
        let crowd = JsonReport {
            people: (0..=MAX_PEOPLE).map(|_| JsonPerson::default()).collect(),
            ..Default::default()
        };
        assert_eq!(crowd.fields().unwrap_err().field, "people");
        let typo = serde_json::from_str::<JsonReport>(r#"{"wat":"x"}"#).unwrap_err();
        assert!(typo.to_string().contains("unknown field `wat`"), "{typo}");
    }

    proptest! {
        /// Whatever an app sends that parses, the reader answers with a
        /// report or problems at paths the JSON has — never a panic.
        #[test]
        fn any_parsed_report_reads_without_panic(
            what in ".{0,300}",
            phone in ".{0,60}",
            people in 0usize..7,
            contact in proptest::option::of("[a-z]{0,8}"),
        ) {
            let report = JsonReport {
                what,
                people: (0..people).map(|_| JsonPerson { phone: phone.clone(), ..Default::default() }).collect(),
                contact,
                ..Default::default()
            };
            match report.fields() {
                Err(p) => prop_assert_eq!(p.field, "people"),
                Ok(fields) => {
                    if let Err(problems) = form::read(&fields) {
                        for p in problems {
                            let path = path_of(&p.field);
                            prop_assert!(
                                ["what", "contact", "contact_value"].contains(&path.as_str())
                                    || path.starts_with("people["),
                                "{}", path
                            );
                        }
                    }
                }
            }
        }
    }
}
