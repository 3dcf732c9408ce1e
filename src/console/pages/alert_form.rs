//! The alert form <-> draft mapping: the inputs of the console's alert
//! form as the `AlertDraft` the node checks (each field path mapped back
//! to its input, so the node's problems show at their fields), and an own
//! alert as the form that would make it, to edit it. The people blocks are
//! [`super::people`]'s.

use super::common::{chosen, parse_date};
use super::form::FormState;
use super::people;
use crate::console::view::day;
use crate::proto::v1::identifier::Kind;
use crate::proto::v1::{
    Alert, AlertContent, AlertDraft, Category, Confidence, HandlingCode, Identifier, Indicator,
    InformationAccuracy, IntakeReportRecord, Location, PersonName, Phone, Severity,
    SourceReliability, Subject, TimeWindow, Tlp, VehiclePlate,
};

fn date_field(form: &mut FormState, name: &str) -> Option<pbjson_types::Timestamp> {
    let value = form.value(name).to_owned();
    if value.is_empty() {
        return None;
    }
    let parsed = parse_date(&value);
    if parsed.is_none() {
        form.add_error(name, "write the date as YYYY-MM-DD, e.g. 2026-03-31");
    }
    parsed
}

/// The draft the form describes, with each field path mapped to its input;
/// problems only the form can find (an unknown option, a date that is not
/// one) are added to the form.
pub fn draft_of(form: &mut FormState) -> AlertDraft {
    let c = "draft.content";
    for (path, input) in [
        ("category", "category"),
        ("indicators", "indicators"),
        ("severity", "severity"),
        ("confidence", "confidence"),
        ("tlp", "tlp"),
        ("handling_code", "handling_code"),
        ("source_reliability", "source_reliability"),
        ("information_accuracy", "information_accuracy"),
        ("location", "country"),
        ("location.country", "country"),
        ("location.region", "region"),
        ("location.city", "city"),
        ("time_window", "window_start"),
        ("time_window.start", "window_start"),
        ("time_window.end", "window_end"),
        ("narrative", "narrative"),
        ("retention_until", "retention_until"),
    ] {
        form.map_path(format!("{c}.{path}"), input);
    }
    form.map_path("draft.content", "category");
    form.map_path("draft.case_reference", "case_reference");
    form.map_path("draft.title", "title");
    // Why the person acts travels as the call's purpose.
    form.map_path(crate::audit::PURPOSE_HEADER, "purpose");
    form.map_path(crate::audit::PURPOSE_BIN_HEADER, "purpose");
    let mut indicators = Vec::new();
    for value in form
        .values("indicators")
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    {
        match Indicator::from_str_name(&value) {
            Some(i) => indicators.push(i as i32),
            None => form.add_error("indicators", "choose among the listed indicators"),
        }
    }
    let (country, region, city) = (
        form.value("country").to_uppercase(),
        form.value("region").to_owned(),
        form.value("city").to_owned(),
    );
    let location =
        (!(country.is_empty() && region.is_empty() && city.is_empty())).then_some(Location {
            country,
            region,
            city,
        });
    let start = date_field(form, "window_start");
    let end = date_field(form, "window_end").map(|mut t| {
        t.seconds += 86_399; // the whole last day
        t
    });
    let time_window = (start.is_some() || end.is_some()).then_some(TimeWindow { start, end });
    let retention_until = date_field(form, "retention_until");
    let content = AlertContent {
        category: chosen(form, "category", Category::from_str_name) as i32,
        indicators,
        severity: chosen(form, "severity", Severity::from_str_name) as i32,
        confidence: chosen(form, "confidence", Confidence::from_str_name) as i32,
        location,
        time_window,
        narrative: form.value("narrative").to_owned(),
        tlp: chosen(form, "tlp", Tlp::from_str_name) as i32,
        handling_code: chosen(form, "handling_code", HandlingCode::from_str_name) as i32,
        source_reliability: chosen(form, "source_reliability", SourceReliability::from_str_name)
            as i32,
        information_accuracy: chosen(
            form,
            "information_accuracy",
            InformationAccuracy::from_str_name,
        ) as i32,
        retention_until,
    };
    let mut subjects = Vec::new();
    for block in 0..people::blocks_posted(form) {
        if let Some(s) = people::subject_of(form, block, subjects.len()) {
            subjects.push(s);
        }
    }
    AlertDraft {
        content: Some(content),
        subjects,
        case_reference: form.value("case_reference").to_owned(),
        title: form.value("title").to_owned(),
    }
}

/// An own alert as the form that would make it (to edit it).
pub fn form_of(alert: &Alert) -> FormState {
    let mut f = FormState::default();
    f.set("expected_version", alert.version.to_string());
    let content = alert.content.clone().unwrap_or_default();
    let enum_value = |name: &str| {
        if name.ends_with("UNSPECIFIED") {
            String::new()
        } else {
            name.to_owned()
        }
    };
    f.set("category", enum_value(content.category().as_str_name()));
    f.set("severity", enum_value(content.severity().as_str_name()));
    f.set("confidence", enum_value(content.confidence().as_str_name()));
    f.set("tlp", enum_value(content.tlp().as_str_name()));
    f.set(
        "handling_code",
        enum_value(content.handling_code().as_str_name()),
    );
    f.set(
        "source_reliability",
        enum_value(content.source_reliability().as_str_name()),
    );
    f.set(
        "information_accuracy",
        enum_value(content.information_accuracy().as_str_name()),
    );
    for i in content.indicators() {
        f.push("indicators", i.as_str_name());
    }
    if let Some(l) = &content.location {
        f.set("country", l.country.clone());
        f.set("region", l.region.clone());
        f.set("city", l.city.clone());
    }
    if let Some(w) = &content.time_window {
        f.set("window_start", date_value(w.start.as_ref()));
        f.set("window_end", date_value(w.end.as_ref()));
    }
    f.set("narrative", content.narrative.clone());
    f.set("case_reference", alert.case_reference.clone());
    f.set("title", alert.title.clone());
    f.set(
        "retention_until",
        date_value(content.retention_until.as_ref()),
    );
    people::fill(&mut f, &alert.subjects);
    f
}

fn date_value(ts: Option<&pbjson_types::Timestamp>) -> String {
    match ts {
        Some(_) => day(ts),
        None => String::new(),
    }
}

/// The alert form a public report suggests, for a caseworker to check and
/// complete: where, what happened (with what the form asked in words:
/// when, workplaces), and each person named with their phone and plate.
/// A report without the reporter's consent to the police is prefilled
/// H2 (no onward disclosure without this agency's consent).
pub fn form_of_report(r: &IntakeReportRecord) -> FormState {
    let mut f = FormState::default();
    f.set("report", r.id.clone());
    f.set("tlp", Tlp::Amber.as_str_name());
    if !r.police_consent {
        f.set("handling_code", HandlingCode::H2.as_str_name());
    }
    f.set("country", r.country.clone());
    f.set("city", r.town.clone());
    f.set("narrative", report_narrative(r));
    f.set(
        "title",
        format!(
            "Public report: {}",
            crate::reports::triage::excerpt(&r.what, 60)
        ),
    );
    let subjects: Vec<Subject> = r
        .people
        .iter()
        .filter_map(|p| person_of_report(p, &r.country))
        .collect();
    people::fill(&mut f, &subjects);
    f
}

/// What happened, then what else the reporter wrote in words.
fn report_narrative(r: &IntakeReportRecord) -> String {
    let mut text = r.what.clone();
    if !r.when.is_empty() {
        text.push_str(&format!("\n\nWhen (as reported): {}", r.when));
    }
    for (i, p) in r.people.iter().enumerate() {
        if !p.workplace.is_empty() {
            text.push_str(&format!("\nWorkplace of person {}: {}", i + 1, p.workplace));
        }
    }
    text.push_str("\n\nFrom a report through the public intake.");
    if !r.police_consent {
        text.push_str(" The reporter did not agree to it being passed to the police.");
    }
    text
}

/// A person a report names as an alert's subject, with the identifiers
/// CaseBridge matches on (a name is split at its last word).
fn person_of_report(p: &crate::proto::v1::IntakePerson, country: &str) -> Option<Subject> {
    let mut identifiers = Vec::new();
    let name = p.name.trim();
    if !name.is_empty() {
        let (given, family) = name.rsplit_once(' ').unwrap_or(("", name));
        identifiers.push(Kind::Person(PersonName {
            given_names: given.trim().to_owned(),
            family_name: family.to_owned(),
            date_of_birth: String::new(),
        }));
    }
    if !p.phone.trim().is_empty() {
        identifiers.push(Kind::Phone(Phone {
            number: p.phone.trim().to_owned(),
            region: country.to_owned(),
        }));
    }
    if !p.plate.trim().is_empty() {
        identifiers.push(Kind::VehiclePlate(VehiclePlate {
            country: country.to_owned(),
            plate: p.plate.trim().to_owned(),
        }));
    }
    (!identifiers.is_empty()).then(|| Subject {
        identifiers: identifiers
            .into_iter()
            .map(|k| Identifier { kind: Some(k) })
            .collect(),
        ..Default::default()
    })
}
