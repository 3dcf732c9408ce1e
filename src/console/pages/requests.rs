//! Disclosure requests and releases: the inbox (requests this agency was
//! sent, decided by `disclose` officers), the outbox (requests it sent),
//! the decision and clarification forms, and the releases received.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::common::{CaseRow, case_row, handling_label, span};
use super::form::{Choice, FormState, choices, explained_choices};
use super::release_offer::ReleaseOffer;
use crate::config::Role;
use crate::console::Console;
use crate::console::guard::Posted;
use crate::console::rpc::{request, violations};
use crate::console::view::{Chrome, PageError, Viewer, label, page, when};
use crate::proto::v1::disclosure_service_server::DisclosureService;
use crate::proto::v1::{
    AnswerClarificationRequest, DecideRequest, DisclosureCase, DisclosureState,
    GetDisclosureRequestRequest, HandlingCode, IdentifierType, ListDisclosureRequestsRequest,
    LocationDetail, RefusalGround, ReleaseSelection, RequestStatsRequest, RequestStatsRow,
    TimeDetail,
};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/requests", get(list))
        .route("/requests/stats", get(stats))
        .route("/requests/{id}", get(detail))
        .route("/requests/{id}/decide", post(decide))
        .route("/requests/{id}/answer", post(answer))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Box {
    /// "in" (received) or "out" (sent).
    r#box: String,
    page: String,
}

#[derive(Template)]
#[template(path = "console/requests.html")]
struct ListPage {
    chrome: Chrome,
    inbox: bool,
    rows: Vec<CaseRow>,
    next: String,
}

async fn list(
    State(c): State<Console>,
    viewer: Viewer,
    Query(b): Query<Box>,
) -> Result<Response, PageError> {
    let inbox = match b.r#box.as_str() {
        "in" => true,
        "out" => false,
        _ => viewer.may(Role::Disclose) || !viewer.may(Role::Request),
    };
    let req = ListDisclosureRequestsRequest {
        outgoing: Some(!inbox),
        page_size: 50,
        page_token: b.page.clone(),
        ..Default::default()
    };
    let answer = c
        .disclosure
        .list_disclosure_requests(request(&viewer, req, ""))
        .await?
        .into_inner();
    page(ListPage {
        chrome: Chrome::new(&viewer, "requests"),
        inbox,
        rows: answer.requests.iter().map(case_row).collect(),
        next: if answer.next_page_token.is_empty() {
            String::new()
        } else {
            format!(
                "/requests?box={}&page={}",
                if inbox { "in" } else { "out" },
                answer.next_page_token
            )
        },
    })
}

struct Event {
    step: String,
    at: String,
    by: String,
    note: String,
}

struct Verification {
    kind: String,
    matched: bool,
    detail: String,
}

#[derive(Template)]
#[template(path = "console/request.html")]
struct DetailPage {
    chrome: Chrome,
    case: DisclosureCase,
    row: CaseRow,
    citation: String,
    purpose: String,
    case_reference: String,
    urgency: String,
    requester_alert: String,
    events: Vec<Event>,
    verification: Vec<Verification>,
    decision: Option<(String, String, String)>,
    release_id: String,
    can_decide: bool,
    can_answer: bool,
    outcomes: Vec<Choice>,
    grounds: Vec<Choice>,
    offer: ReleaseOffer,
    handling_codes: Vec<Choice>,
    form: FormState,
}

async fn get_case(c: &Console, viewer: &Viewer, id: &str) -> Result<DisclosureCase, PageError> {
    Ok(c.disclosure
        .get_request(request(
            viewer,
            GetDisclosureRequestRequest { id: id.to_owned() },
            "",
        ))
        .await?
        .into_inner())
}

async fn detail(
    State(c): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let case = get_case(&c, &viewer, &id).await?;
    page(detail_page(&viewer, case, FormState::default()))
}

/// A decision as the page shows it: what (with the ground), the note, by
/// whom and when.
fn decision_view(d: &crate::proto::v1::DisclosureDecision) -> (String, String, String) {
    let what = label(d.outcome().as_str_name(), "DISCLOSURE_STATE_");
    let ground = if d.ground() == RefusalGround::Unspecified {
        String::new()
    } else {
        label(d.ground().as_str_name(), "REFUSAL_GROUND_")
    };
    let by = if d.automatic {
        "the holder's policy, automatically".to_string()
    } else {
        format!("{} at {}", d.decided_by, when(d.decided_at.as_ref()))
    };
    (
        format!(
            "{what}{}",
            if ground.is_empty() {
                String::new()
            } else {
                format!(" — {ground}")
            }
        ),
        d.note.clone(),
        by,
    )
}

fn detail_page(viewer: &Viewer, case: DisclosureCase, mut form: FormState) -> DetailPage {
    let r = case.request.clone().unwrap_or_default();
    let undecided = matches!(case.state(), DisclosureState::Open);
    // The form starts at the least: an officer adds what the requester
    // needs, up to the rule's maximum, rather than trimming it down.
    if form.value("location").is_empty() {
        form.set("location", LocationDetail::None.as_str_name());
        form.set("time", TimeDetail::None.as_str_name());
        form.set("retention_days", "90");
    }
    let decision = case.decision.as_ref().map(decision_view);
    DetailPage {
        chrome: Chrome::new(viewer, "requests"),
        row: case_row(&case),
        citation: r.citation.clone(),
        purpose: r.purpose.clone(),
        case_reference: r.case_reference.clone(),
        urgency: label(r.urgency().as_str_name(), "URGENCY_"),
        requester_alert: r.requester_alert_id.clone(),
        events: case
            .history
            .iter()
            .map(|e| Event {
                step: e.step.clone(),
                at: when(e.at.as_ref()),
                by: e.by.clone(),
                note: e.note.clone(),
            })
            .collect(),
        verification: case
            .verification
            .iter()
            .map(|v| Verification {
                kind: label(v.r#type().as_str_name(), "IDENTIFIER_TYPE_"),
                matched: v.matched,
                detail: match &v.evidence {
                    Some(e) => crate::matching::describe_evidence(e),
                    None if v.matched => "equal tokens".into(),
                    None => "differs".into(),
                },
            })
            .collect(),
        release_id: case
            .decision
            .as_ref()
            .map(|d| d.release_id.clone())
            .unwrap_or_default(),
        can_decide: !case.outgoing && undecided && viewer.may(Role::Disclose),
        can_answer: case.outgoing
            && case.state() == DisclosureState::Clarification
            && viewer.may(Role::Request),
        decision,
        outcomes: [
            DisclosureState::Approved,
            DisclosureState::PartiallyApproved,
            DisclosureState::Refused,
            DisclosureState::Clarification,
        ]
        .into_iter()
        .map(|s| Choice {
            value: s.as_str_name().to_owned(),
            label: match s {
                DisclosureState::Approved => "Approve".into(),
                DisclosureState::PartiallyApproved => "Approve in part".into(),
                DisclosureState::Refused => "Refuse".into(),
                _ => "Ask the requester a question".into(),
            },
        })
        .collect(),
        grounds: choices!(RefusalGround, "REFUSAL_GROUND_"),
        offer: ReleaseOffer::new(case.release_limit.as_ref()),
        handling_codes: explained_choices!(HandlingCode, |v| {
            handling_label(HandlingCode::try_from(v).unwrap_or_default())
        }),
        form,
        case,
    }
}

fn back_to(id: &str) -> Response {
    Redirect::to(&format!("/requests/{id}")).into_response()
}

async fn form_again(
    c: &Console,
    viewer: &Viewer,
    id: &str,
    mut form: FormState,
    status: &tonic::Status,
) -> Result<Response, PageError> {
    if status.code() != tonic::Code::InvalidArgument {
        form.general.push(status.message().to_owned());
    }
    form.add_violations(&violations(status));
    let case = get_case(c, viewer, id).await?;
    let html = page(detail_page(viewer, case, form))?;
    Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
}

/// After a step on request `id`: back to its page, or the form again with
/// what was wrong (invalid input, or a step the request's state forbids).
async fn settle<T>(
    c: &Console,
    viewer: &Viewer,
    id: &str,
    form: FormState,
    done: Result<tonic::Response<T>, tonic::Status>,
) -> Result<Response, PageError> {
    match done {
        Ok(_) => Ok(back_to(id)),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            form_again(c, viewer, id, form, &s).await
        }
        Err(s) => Err(s.into()),
    }
}

async fn decide(
    State(c): State<Console>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    for (path, input) in [
        ("outcome", "outcome"),
        ("ground", "ground"),
        ("note", "note"),
        ("release", "release_identifiers"),
        ("release.location", "location"),
        ("release.time", "time"),
        ("contact_point", "contact_point"),
        ("handling", "handling"),
        ("retention_days", "retention_days"),
    ] {
        form.map_path(path, input);
    }
    let outcome = DisclosureState::from_str_name(form.value("outcome")).unwrap_or_default();
    let approving = matches!(
        outcome,
        DisclosureState::Approved | DisclosureState::PartiallyApproved
    );
    let retention_days = match form.value("retention_days") {
        "" => 0,
        v => match v.parse::<u32>() {
            Ok(d) => d,
            Err(_) => {
                form.add_error("retention_days", "a whole number of days, 1 to 365");
                0
            }
        },
    };
    let release = approving.then(|| ReleaseSelection {
        location: LocationDetail::from_str_name(form.value("location")).unwrap_or_default() as i32,
        time: TimeDetail::from_str_name(form.value("time")).unwrap_or_default() as i32,
        narrative: form.has("narrative", "yes"),
        indicators: form.has("indicators", "yes"),
        identifiers: form
            .values("release_identifiers")
            .iter()
            .filter_map(|v| IdentifierType::from_str_name(v))
            .map(|t| t as i32)
            .collect(),
    });
    if form.has_errors() {
        let case = get_case(&c, &posted.viewer, &id).await?;
        let html = page(detail_page(&posted.viewer, case, form))?;
        return Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
    }
    let req = DecideRequest {
        id: id.clone(),
        outcome: outcome as i32,
        ground: RefusalGround::from_str_name(form.value("ground")).unwrap_or_default() as i32,
        note: form.value("note").to_owned(),
        release,
        contact_point: if approving {
            form.value("contact_point").to_owned()
        } else {
            String::new()
        },
        handling: HandlingCode::from_str_name(form.value("handling")).unwrap_or_default() as i32,
        retention_days: if approving { retention_days } else { 0 },
    };
    let done = c
        .disclosure
        .decide(request(&posted.viewer, req, form.value("purpose")))
        .await;
    settle(&c, &posted.viewer, &id, form, done).await
}

async fn answer(
    State(c): State<Console>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    form.map_path("answer", "answer");
    let req = AnswerClarificationRequest {
        id: id.clone(),
        answer: form.value("answer").to_owned(),
    };
    let done = c
        .disclosure
        .answer_clarification(request(&posted.viewer, req, ""))
        .await;
    settle(&c, &posted.viewer, &id, form, done).await
}

/// One row of the statistics page.
pub struct StatsRow {
    pub peer: String,
    pub direction: &'static str,
    pub row: RequestStatsRow,
    pub median: String,
    pub p90: String,
}

#[derive(Template)]
#[template(path = "console/request_stats.html")]
struct StatsPage {
    chrome: Chrome,
    rows: Vec<StatsRow>,
}

/// Requests by peer and direction, outcome and answer time: the figures
/// Directive 2023/977 asks for (`requests stats`).
async fn stats(State(c): State<Console>, viewer: Viewer) -> Result<Response, PageError> {
    let answer = c
        .disclosure
        .request_stats(request(&viewer, RequestStatsRequest::default(), ""))
        .await?
        .into_inner();
    let time = |r: &RequestStatsRow, secs: f64| {
        if r.answered == 0 {
            "none answered".to_string()
        } else {
            span(secs.round() as i64)
        }
    };
    let rows = answer
        .rows
        .into_iter()
        .map(|r| StatsRow {
            peer: r.peer.clone(),
            direction: if r.outgoing { "sent" } else { "received" },
            median: time(&r, r.median_answer_seconds),
            p90: time(&r, r.p90_answer_seconds),
            row: r,
        })
        .collect();
    page(StatsPage {
        chrome: Chrome::new(&viewer, "requests"),
        rows,
    })
}
