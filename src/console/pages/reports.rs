//! Reports: the public intake's inbox (new, waiting for the reporter,
//! closed), one report with its conversation, a reply its reporter reads
//! with their receipt, closing (one, or many at once, as spam too), and
//! the way to the alert form prefilled from a report (`/alerts/new?report=`,
//! the alerts section's). Role `intake`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::common::hour;
use super::form::FormState;
use crate::config::Role;
use crate::console::Console;
use crate::console::guard::Posted;
use crate::console::rpc::{request, violations};
use crate::console::view::{Chrome, PageError, Viewer, page};
use crate::proto::v1::report_service_server::ReportService;
use crate::proto::v1::{
    CloseReportsRequest, GetReportRequest, IntakeAuthor, IntakeContact, IntakeReportRecord,
    IntakeState, ListReportsRequest, ReplyToReportRequest, ReportSummary,
};

/// Reports an inbox page lists.
const PAGE: u32 = 50;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/reports", get(inbox))
        .route("/reports/close", post(close))
        .route("/reports/{id}", get(report))
        .route("/reports/{id}/reply", post(reply))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Tab {
    /// `new`, `waiting` or `closed`.
    state: String,
    /// The page token of the page before.
    after: String,
}

fn state_of(name: &str) -> IntakeState {
    match name {
        "waiting" => IntakeState::Waiting,
        "closed" => IntakeState::Closed,
        _ => IntakeState::New,
    }
}

fn state_name(state: IntakeState) -> &'static str {
    match state {
        IntakeState::Waiting => "waiting",
        IntakeState::Closed => "closed",
        _ => "new",
    }
}

/// "yes", "no" or "not said": whether the reporter is in danger now.
fn danger(in_danger: u32) -> &'static str {
    match in_danger {
        1 => "yes",
        2 => "no",
        _ => "not said",
    }
}

struct TabLink {
    name: &'static str,
    label: &'static str,
    count: u64,
}

#[derive(Template)]
#[template(path = "console/reports.html")]
struct InboxPage {
    chrome: Chrome,
    state: &'static str,
    tabs: Vec<TabLink>,
    rows: Vec<ReportSummary>,
    next: String,
    form: FormState,
}

impl InboxPage {
    fn received(&self, r: &ReportSummary) -> String {
        hour(r.received_hour)
    }

    fn danger(&self, r: &ReportSummary) -> &'static str {
        danger(r.in_danger)
    }
}

async fn inbox(
    State(c): State<Console>,
    viewer: Viewer,
    Query(tab): Query<Tab>,
) -> Result<Response, PageError> {
    inbox_page(&c, &viewer, &tab, FormState::default()).await
}

async fn inbox_page(
    c: &Console,
    viewer: &Viewer,
    tab: &Tab,
    form: FormState,
) -> Result<Response, PageError> {
    let state = state_of(&tab.state);
    let answer = c
        .reports
        .list_reports(request(
            viewer,
            ListReportsRequest {
                state: state as i32,
                page_size: PAGE,
                page_token: tab.after.clone(),
            },
            "",
        ))
        .await?
        .into_inner();
    let counts = answer.counts.unwrap_or_default();
    page(InboxPage {
        chrome: Chrome::new(viewer, "reports"),
        state: state_name(state),
        tabs: vec![
            TabLink {
                name: "new",
                label: "New",
                count: counts.new,
            },
            TabLink {
                name: "waiting",
                label: "Waiting for the reporter",
                count: counts.waiting,
            },
            TabLink {
                name: "closed",
                label: "Closed",
                count: counts.closed,
            },
        ],
        rows: answer.reports,
        next: answer.next_page_token,
        form,
    })
}

struct Line {
    from: String,
    at: String,
    text: String,
    reporter: bool,
}

#[derive(Template)]
#[template(path = "console/report.html")]
struct ReportPage {
    chrome: Chrome,
    r: IntakeReportRecord,
    received: String,
    retained: String,
    danger: &'static str,
    contact: String,
    lines: Vec<Line>,
    open: bool,
    /// A caseworker who may also submit can make an alert of it.
    can_make_alert: bool,
    form: FormState,
}

async fn report(
    State(c): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    report_page(&c, &viewer, id, FormState::default()).await
}

async fn report_page(
    c: &Console,
    viewer: &Viewer,
    id: String,
    form: FormState,
) -> Result<Response, PageError> {
    let r = c
        .reports
        .get_report(request(viewer, GetReportRequest { id }, ""))
        .await?
        .into_inner();
    let lines = r
        .messages
        .iter()
        .map(|m| {
            let reporter = m.author == IntakeAuthor::Reporter as i32;
            Line {
                from: if reporter {
                    "Reporter".into()
                } else {
                    format!("Caseworker ({})", m.caseworker)
                },
                at: hour(m.at_hour),
                text: m.text.clone(),
                reporter,
            }
        })
        .collect();
    let contact = match r.contact() {
        IntakeContact::Phone => format!("by phone: {}", r.contact_value),
        IntakeContact::Email => format!("by e-mail: {}", r.contact_value),
        _ => "only through the receipt".into(),
    };
    let open = r.state() != IntakeState::Closed;
    page(ReportPage {
        chrome: Chrome::new(viewer, "reports"),
        received: hour(r.received_hour),
        retained: hour(r.retain_until),
        danger: danger(r.in_danger),
        can_make_alert: viewer.may(Role::Submit) && r.alert_id.is_empty(),
        contact,
        lines,
        open,
        form,
        r,
    })
}

/// A question or answer to the reporter: they read it at their next
/// receipt login, and the report waits for them.
async fn reply(
    State(c): State<Console>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    form.map_path("text", "text");
    let req = ReplyToReportRequest {
        id: id.clone(),
        text: form.value("text").to_owned(),
    };
    match c
        .reports
        .reply_to_report(request(&posted.viewer, req, ""))
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/reports/{id}")).into_response()),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            form.add_violations(&violations(&s));
            let html = report_page(&c, &posted.viewer, id, form).await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
        Err(s) => Err(s.into()),
    }
}

/// Closes the reports ticked (the inbox) or the one shown (its page),
/// with a reason, as spam if asked; back where the form was.
async fn close(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    form.map_path("reason", "reason");
    form.map_path("ids", "ids");
    let ids: Vec<String> = form.values("ids").into_iter().map(str::to_owned).collect();
    let spam = form.value("spam") == "yes";
    let req = CloseReportsRequest {
        ids: ids.clone(),
        reason: match (form.value("reason"), spam) {
            ("", true) => "spam".to_owned(),
            (reason, _) => reason.to_owned(),
        },
        spam,
    };
    let back = form.value("from").to_owned();
    match c
        .reports
        .close_reports(request(&posted.viewer, req, ""))
        .await
    {
        Ok(_) if back == "report" && ids.len() == 1 => {
            Ok(Redirect::to(&format!("/reports/{}", ids[0])).into_response())
        }
        Ok(_) => Ok(Redirect::to("/reports").into_response()),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            form.add_violations(&violations(&s));
            let html = match (back.as_str(), ids.first()) {
                ("report", Some(id)) => report_page(&c, &posted.viewer, id.clone(), form).await?,
                _ => inbox_page(&c, &posted.viewer, &Tab::default(), form).await?,
            };
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
        Err(s) => Err(s.into()),
    }
}
