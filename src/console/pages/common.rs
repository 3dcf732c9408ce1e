//! What several sections of the console show alike: dates typed into a
//! filter, an alert's content and people, a hit's strength and the hit
//! log, a disclosure request's row and countdown, a handling code in
//! words, and a choice read from a form. Section pages use these; no
//! section page uses another (`tests/tidy.rs`).

use futures_util::StreamExt;

use super::form::FormState;
use crate::console::Console;
use crate::console::rpc::request;
use crate::console::view::{PageError, Viewer, day, label, when};
use crate::handling;
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::identifier::Kind;
use crate::proto::v1::{
    AlertContent, DisclosureCase, DisclosureState, HandlingCode, Hit, Subject, VictimProfile,
    WatchHitsRequest,
};

pub fn date_bound(
    value: &str,
    field: &str,
    problems: &mut Vec<String>,
) -> Option<pbjson_types::Timestamp> {
    if value.is_empty() {
        return None;
    }
    match parse_date(value) {
        Some(t) => Some(t),
        None => {
            problems.push(format!("{field}: \"{value}\" is not a date (YYYY-MM-DD)"));
            None
        }
    }
}

/// The enum value chosen in `name`, or UNSPECIFIED when none was; a value
/// no option has (a forged form) is a problem at its field.
pub fn chosen<E: Default>(form: &mut FormState, name: &str, parse: fn(&str) -> Option<E>) -> E {
    let value = form.value(name).to_owned();
    if value.is_empty() {
        return E::default();
    }
    match parse(&value) {
        Some(e) => e,
        None => {
            form.add_error(name, "choose one of the listed values");
            E::default()
        }
    }
}

pub struct IdentifierRow {
    pub kind: String,
    pub value: String,
}

pub struct SubjectView {
    pub role: String,
    pub identifiers: Vec<IdentifierRow>,
}

/// What an alert's content says, as labelled facts (an alert's page, a
/// release's).
pub fn content_facts(content: &AlertContent) -> Vec<(String, String)> {
    let location = content
        .location
        .as_ref()
        .map(|l| {
            [l.city.as_str(), l.region.as_str(), l.country.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let window = content
        .time_window
        .as_ref()
        .map(|w| format!("{} – {}", day(w.start.as_ref()), day(w.end.as_ref())))
        .unwrap_or_else(|| "—".into());
    vec![
        (
            "Category".into(),
            label(content.category().as_str_name(), "CATEGORY_"),
        ),
        (
            "Severity".into(),
            label(content.severity().as_str_name(), "SEVERITY_"),
        ),
        (
            "Confidence".into(),
            label(content.confidence().as_str_name(), "CONFIDENCE_"),
        ),
        (
            "Where".into(),
            if location.is_empty() {
                "—".into()
            } else {
                location
            },
        ),
        ("When".into(), window),
        (
            "Source reliability".into(),
            handling::reliability_meaning(content.source_reliability).into(),
        ),
        (
            "Information accuracy".into(),
            handling::accuracy_meaning(content.information_accuracy).into(),
        ),
        ("Indicators".into(), {
            let all: Vec<String> = content
                .indicators()
                .map(|i| label(i.as_str_name(), "INDICATOR_"))
                .collect();
            if all.is_empty() {
                "—".into()
            } else {
                all.join(", ")
            }
        }),
    ]
}

pub fn subject_view(s: &Subject) -> SubjectView {
    let mut view = identifiers_view(s);
    if let Some(p) = &s.profile {
        view.identifiers.extend(profile_rows(p));
    }
    view
}

/// A victim profile as rows after the identifiers, in the statistics'
/// words; what is not stated is left out.
fn profile_rows(p: &VictimProfile) -> Vec<IdentifierRow> {
    use crate::stats::victim::{AGE_BANDS, GENDERS, RECRUITMENT};
    let gender = GENDERS
        .iter()
        .find(|(g, _)| *g as i32 == p.gender && p.gender != 0);
    let age = AGE_BANDS
        .iter()
        .find(|(a, _, _)| *a as i32 == p.age_band && p.age_band != 0);
    let recruited: Vec<&str> = RECRUITMENT
        .iter()
        .filter(|(m, _)| p.recruitment.contains(&(*m as i32)))
        .map(|(_, label)| *label)
        .collect();
    [
        ("Gender", gender.map(|(_, l)| (*l).to_owned())),
        (
            "Citizenship",
            Some(p.citizenship.clone()).filter(|c| !c.is_empty()),
        ),
        ("Age when it began", age.map(|(_, l, _)| (*l).to_owned())),
        (
            "Recruited through",
            Some(recruited.join(", ")).filter(|r| !r.is_empty()),
        ),
    ]
    .into_iter()
    .filter_map(|(kind, value)| {
        value.map(|value| IdentifierRow {
            kind: kind.into(),
            value,
        })
    })
    .collect()
}

fn identifiers_view(s: &Subject) -> SubjectView {
    SubjectView {
        role: label(s.role().as_str_name(), "SUBJECT_ROLE_"),
        identifiers: s
            .identifiers
            .iter()
            .filter_map(|i| i.kind.as_ref())
            .map(|k| {
                let (kind, value) = match k {
                    Kind::Phone(p) => ("Phone", join(&[&p.number, &p.region])),
                    Kind::Email(e) => ("E-mail", e.address.clone()),
                    Kind::Person(p) => (
                        "Person",
                        join(&[&p.given_names, &p.family_name, &p.date_of_birth]),
                    ),
                    Kind::Document(d) => ("Document", join(&[&d.number, &d.issuing_country])),
                    Kind::Iban(i) => ("IBAN", i.iban.clone()),
                    Kind::CryptoWallet(w) => ("Crypto wallet", join(&[&w.chain, &w.address])),
                    Kind::OnlineHandle(h) => ("Online handle", join(&[&h.platform, &h.handle])),
                    Kind::VehiclePlate(v) => ("Vehicle plate", join(&[&v.plate, &v.country])),
                    Kind::AdvertUrl(u) => ("Advert", u.url.clone()),
                };
                IdentifierRow {
                    kind: kind.into(),
                    value,
                }
            })
            .collect(),
    }
}

/// The hit log from `after` to its end.
pub async fn log_after(c: &Console, viewer: &Viewer, after: u64) -> Result<Vec<Hit>, PageError> {
    let watch = WatchHitsRequest {
        after_sequence: after,
        backlog_only: true,
    };
    let mut stream = c
        .alerts
        .watch_hits(request(viewer, watch, ""))
        .await?
        .into_inner();
    let mut hits = Vec::new();
    while let Some(hit) = stream.next().await {
        hits.push(hit?);
    }
    Ok(hits)
}

pub fn strength(h: &Hit) -> (String, String) {
    if !h.fuzzy {
        return ("exact".into(), "exact".into());
    }
    let band = label(h.strength().as_str_name(), "MATCH_STRENGTH_").to_lowercase();
    (format!("fuzzy · {band}"), band)
}

/// Whether this node holds the other agency's alert (it was shared with
/// us), so a page links to it: a read the viewer makes (authorized and
/// audited as `alert.get`), as the console reaches nothing but the
/// node's services.
pub async fn held_here(c: &Console, viewer: &Viewer, id: &str) -> bool {
    let req = crate::proto::v1::GetAlertRequest { id: id.to_owned() };
    c.alerts.get_alert(request(viewer, req, "")).await.is_ok()
}

/// A handling code with what it asks of the person holding the data.
pub fn handling_label(code: HandlingCode) -> String {
    match code {
        HandlingCode::H0 => "H0 — may be shared within the federation".into(),
        HandlingCode::H1 => "H1 — law-enforcement recipients only".into(),
        HandlingCode::H2 => "H2 — do not pass on without the holder's consent".into(),
        HandlingCode::H3 => "H3 — contact the holder before any action".into(),
        HandlingCode::Unspecified => "not stated".into(),
    }
}

pub struct CaseRow {
    pub id: String,
    pub peer: String,
    pub alert: String,
    pub state: String,
    pub due: String,
    pub due_class: String,
    pub basis: String,
    pub officer: String,
}

pub fn case_row(case: &DisclosureCase) -> CaseRow {
    let r = case.request.clone().unwrap_or_default();
    let (due, due_class) = countdown(case);
    CaseRow {
        id: r.id.clone(),
        peer: case.peer.clone(),
        alert: r.holder_alert_id.clone(),
        state: label(case.state().as_str_name(), "DISCLOSURE_STATE_"),
        due,
        due_class,
        basis: crate::policy::disclosure::basis_words(r.legal_basis).to_owned(),
        officer: r.officer.clone(),
    }
}

/// A date typed as YYYY-MM-DD, as its first second (UTC).
pub fn parse_date(value: &str) -> Option<pbjson_types::Timestamp> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(value.trim(), &format).ok()?;
    Some(pbjson_types::Timestamp {
        seconds: date.midnight().assume_utc().unix_timestamp(),
        nanos: 0,
    })
}

fn join(parts: &[&String]) -> String {
    parts
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" · ")
}

/// "due in 2 d 4 h" / "overdue by 3 h" and its emphasis, for an undecided
/// request; the state otherwise.
pub fn countdown(case: &DisclosureCase) -> (String, String) {
    let undecided = matches!(
        case.state(),
        DisclosureState::Open | DisclosureState::Clarification
    );
    if !undecided {
        return (
            format!("answered {}", when(case.answered_at.as_ref())),
            String::new(),
        );
    }
    let Some(due) = case.due_at.as_ref() else {
        return ("—".into(), String::new());
    };
    let left = due.seconds - crate::time::now().seconds;
    if case.state() == DisclosureState::Clarification {
        return (
            "paused: waiting for the requester's answer".into(),
            String::new(),
        );
    }
    if left < 0 {
        (
            format!("overdue by {}", span(-left)),
            "countdown-late".into(),
        )
    } else if left < 86_400 {
        (format!("due in {}", span(left)), "countdown-soon".into())
    } else {
        (format!("due in {}", span(left)), String::new())
    }
}

/// A span of time as people read it: "35 min", "2 h 5 min", "3 d 4 h".
pub fn span(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A time a public report keeps (Unix seconds, to the hour) as the
/// console writes times: `2026-12-02 14:00 UTC`.
pub fn hour(unix_secs: i64) -> String {
    when(Some(&pbjson_types::Timestamp {
        seconds: unix_secs,
        nanos: 0,
    }))
}
