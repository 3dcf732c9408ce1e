//! What the report form accepts: every field bounded, and every problem
//! named at its field with a message of the catalog, so the page shows it
//! in the reporter's language next to what they typed. A person may leave
//! out everything but what happened and how to reach them.

use crate::ids::CountryCode;

/// Fields a posted form may have at most (the form has fewer; a body with
/// more is not the form's and is read no further).
pub const MAX_FIELDS: usize = 64;
/// People a report may name.
pub const MAX_PEOPLE: usize = 4;
/// Characters of the account of what happened.
pub const MAX_WHAT: usize = 5_000;
/// Characters of a short field (town, time, a person's name, workplace).
pub const MAX_SHORT: usize = 200;

/// How the reporter wants to be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// Only when they come back with their receipt.
    ReceiptOnly,
    Phone,
    Email,
}

/// One person the report names: any of these may be empty, not all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub phone: String,
    pub workplace: String,
    pub plate: String,
}

/// A report as the form sent it, every field within its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub what: String,
    pub country: Option<CountryCode>,
    pub town: String,
    pub when: String,
    pub people: Vec<Person>,
    /// `None`: not answered.
    pub in_danger: Option<bool>,
    pub contact: Contact,
    /// The phone number or e-mail address, for those ways.
    pub contact_value: String,
    pub police_consent: bool,
}

/// A problem at one field: the field's name and the catalog message (with
/// its arguments) that says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: &'static str,
    pub args: Vec<(&'static str, String)>,
}

/// The input name of a person's field: `p0_name`, `p1_phone`.
pub fn person_field(i: usize, field: &str) -> String {
    format!("p{i}_{field}")
}

/// Reads the posted `fields` (name, value), as many as [`MAX_FIELDS`]:
/// the report, or every problem at once.
pub fn read(fields: &[(String, String)]) -> Result<Report, Vec<Problem>> {
    let fields = &fields[..fields.len().min(MAX_FIELDS)];
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.trim())
    };
    let mut problems = Vec::new();
    let mut text = |name: &str, max: usize, required: bool| -> String {
        let value = get(name);
        if required && value.is_empty() {
            problems.push(problem(name, "error-required", Vec::new()));
        } else if value.chars().count() > max {
            problems.push(problem(
                name,
                "error-too-long",
                vec![("max", max.to_string())],
            ));
        } else if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            problems.push(problem(name, "error-characters", Vec::new()));
        } else {
            return value.to_owned();
        }
        String::new()
    };
    let what = text("what", MAX_WHAT, true);
    let town = text("town", MAX_SHORT, false);
    let when = text("when", MAX_SHORT, false);
    let mut people = Vec::new();
    for i in 0..MAX_PEOPLE {
        let person = Person {
            name: text(&person_field(i, "name"), MAX_SHORT, false),
            phone: text(&person_field(i, "phone"), 40, false),
            workplace: text(&person_field(i, "workplace"), MAX_SHORT, false),
            plate: text(&person_field(i, "plate"), 20, false),
        };
        if person != Person::default() {
            people.push(person);
        }
    }
    let contact_value = text("contact_value", MAX_SHORT, false);
    let country = match get("country") {
        "" => None,
        c => CountryCode::new(c).ok().or_else(|| {
            problems.push(problem("country", "error-choose", Vec::new()));
            None
        }),
    };
    let in_danger = match get("in_danger") {
        "" => None,
        "yes" => Some(true),
        "no" => Some(false),
        _ => {
            problems.push(problem("in_danger", "error-choose", Vec::new()));
            None
        }
    };
    let contact = match get("contact") {
        "receipt" => Contact::ReceiptOnly,
        "phone" => Contact::Phone,
        "email" => Contact::Email,
        _ => {
            problems.push(problem("contact", "error-choose", Vec::new()));
            Contact::ReceiptOnly
        }
    };
    if contact != Contact::ReceiptOnly && contact_value.is_empty() {
        problems.push(problem("contact_value", "error-required", Vec::new()));
    }
    if !problems.is_empty() {
        problems.dedup_by(|a, b| a.field == b.field);
        return Err(problems);
    }
    Ok(Report {
        what,
        country,
        town,
        when,
        people,
        in_danger,
        contact_value: if contact == Contact::ReceiptOnly {
            String::new()
        } else {
            contact_value
        },
        contact,
        police_consent: get("consent") == "yes",
    })
}

fn problem(field: &str, message: &'static str, args: Vec<(&'static str, String)>) -> Problem {
    Problem {
        field: field.to_owned(),
        message,
        args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_short_report_needs_only_what_happened_and_a_way_back() {
        let r = read(&posted(&[
            ("what", " Workers locked in at night "),
            ("contact", "receipt"),
        ]))
        .unwrap();
        assert_eq!(r.what, "Workers locked in at night");
        assert_eq!(
            (r.contact, r.police_consent, r.people.len()),
            (Contact::ReceiptOnly, false, 0)
        );
        let full = read(&posted(&[
            ("what", "x"),
            ("country", "NL"),
            ("p1_phone", "+31 6 1234 5678"),
            ("in_danger", "no"),
            ("contact", "phone"),
            ("contact_value", "+31 6 0000 0000"),
            ("consent", "yes"),
        ]))
        .unwrap();
        assert_eq!(full.people[0].phone, "+31 6 1234 5678");
        assert_eq!((full.in_danger, full.police_consent), (Some(false), true));
    }

    #[test]
    fn every_problem_is_named_at_its_field() {
        let long = "x".repeat(MAX_SHORT + 1);
        let problems = read(&posted(&[
            ("country", "Narnia"),
            ("town", &long),
            ("in_danger", "maybe"),
            ("contact", "email"),
        ]))
        .unwrap_err();
        let at: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.message))
            .collect();
        assert_eq!(
            at,
            [
                ("what", "error-required"),
                ("town", "error-too-long"),
                ("country", "error-choose"),
                ("in_danger", "error-choose"),
                ("contact_value", "error-required"),
            ]
        );
        assert_eq!(problems[1].args, [("max", MAX_SHORT.to_string())]);
    }

    proptest::proptest! {
        /// Any posted fields give a report within every bound, or problems
        /// each naming a field the form has.
        #[test]
        fn any_post_is_read_within_bounds(
            pairs in proptest::collection::vec(
                (proptest::sample::select(vec!["what", "town", "when", "country", "in_danger",
                    "contact", "contact_value", "consent", "p0_name", "p3_plate", "other"]),
                 "\\PC{0,300}"),
                0..100)
        ) {
            let pairs: Vec<(String, String)> =
                pairs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
            match read(&pairs) {
                Ok(r) => {
                    proptest::prop_assert!(!r.what.is_empty() && r.what.chars().count() <= MAX_WHAT);
                    proptest::prop_assert!(r.people.len() <= MAX_PEOPLE);
                    proptest::prop_assert!(r.town.chars().count() <= MAX_SHORT);
                }
                Err(problems) => {
                    proptest::prop_assert!(!problems.is_empty());
                    proptest::prop_assert!(problems.iter().all(|p| p.field != "other"));
                }
            }
        }
    }
}
