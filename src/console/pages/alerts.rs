//! Alerts: the list with its filters, one alert with where it went, and the
//! forms that submit, update and retract the agency's own alerts.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::alert_form::{draft_of, form_of, form_of_report};
use super::common::{SubjectView, content_facts, date_bound, subject_view};
use super::form::{Choice, FormState, choices, explained_choices};
use super::people;
use crate::console::Console;
use crate::console::guard::Posted;
use crate::console::rpc::{request, violations};
use crate::console::view::{Chrome, PageError, Viewer, day, label, page, when};
use crate::handling;
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::report_service_server::ReportService;
use crate::proto::v1::{
    Alert, AlertSharing, Category, Confidence, DocumentType, GetAlertRequest, GetReportRequest,
    HandlingCode, Indicator, InformationAccuracy, LinkReportRequest, ListAlertsRequest,
    RetractAlertRequest, Severity, SourceReliability, SubjectRole, SubmitAlertRequest, Tlp,
    UpdateAlertRequest,
};

/// Alerts a list page shows.
const PAGE_SIZE: u32 = 50;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/alerts", get(list))
        .route("/alerts/export", get(export))
        .route("/alerts/new", get(new_form).post(submit))
        .route("/alerts/{id}", get(detail))
        .route("/alerts/{id}/edit", get(edit_form).post(update))
        .route("/alerts/{id}/retract", post(retract))
}

// ----- the list -----

/// The list's filters, as the filter form sends them (GET: they are
/// choices, never case data).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Filters {
    scope: String,
    category: String,
    tlp: String,
    origin: String,
    from: String,
    to: String,
    retracted: String,
    page: String,
    /// The export's format (csv, xlsx, jsonl).
    format: String,
    /// `keep`: download a CSV or XLSX export even though some alerts did
    /// not fit a row whole.
    cut: String,
}

struct Row {
    id: String,
    /// This agency's own reference and title (its own alerts only).
    case_reference: String,
    title: String,
    origin: String,
    own: bool,
    created: String,
    category: String,
    tlp: String,
    tlp_class: String,
    severity: String,
    version: u64,
    retracted: bool,
}

#[derive(Template)]
#[template(path = "console/alerts.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
    filters: Filters,
    categories: Vec<Choice>,
    tlps: Vec<Choice>,
    problems: Vec<String>,
    next_page: String,
}

async fn list(
    State(c): State<Console>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Result<Response, PageError> {
    let mut problems = Vec::new();
    let own = c.core.settings.agency.to_string();
    let req = list_request(&c, &filters, &mut problems);
    let answer = match c.alerts.list_alerts(request(&viewer, req, "")).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            problems.extend(
                violations(&s)
                    .into_iter()
                    .map(|v| format!("{}: {}", v.field, v.description)),
            );
            Default::default()
        }
        Err(s) => return Err(s.into()),
    };
    let rows = answer
        .alerts
        .iter()
        .map(|a| {
            let content = a.content.clone().unwrap_or_default();
            let tlp = content.tlp();
            Row {
                id: a.id.clone(),
                case_reference: a.case_reference.clone(),
                title: a.title.clone(),
                origin: a.origin.clone(),
                own: a.origin == own,
                created: day(a.created_at.as_ref()),
                category: label(content.category().as_str_name(), "CATEGORY_"),
                tlp: tlp_label(tlp),
                tlp_class: tlp_class(tlp),
                severity: label(content.severity().as_str_name(), "SEVERITY_"),
                version: a.version,
                retracted: a.retracted,
            }
        })
        .collect();
    page(ListPage {
        chrome: Chrome::new(&viewer, "alerts"),
        rows,
        next_page: next_page_link(&filters, &answer.next_page_token),
        filters,
        categories: choices!(Category, "CATEGORY_"),
        tlps: choices!(Tlp, "TLP_"),
        problems,
    })
}

/// The list call the filters stand for (the list and its export).
fn list_request(c: &Console, filters: &Filters, problems: &mut Vec<String>) -> ListAlertsRequest {
    let category = Category::from_str_name(&filters.category).unwrap_or(Category::Unspecified);
    let tlp = Tlp::from_str_name(&filters.tlp).unwrap_or(Tlp::Unspecified);
    let created_after = date_bound(&filters.from, "From", problems);
    // "To" includes the day typed.
    let created_before = date_bound(&filters.to, "To", problems).map(|mut t| {
        t.seconds += 86_400;
        t
    });
    let origin = match filters.scope.as_str() {
        "own" => c.core.settings.agency.to_string(),
        _ => filters.origin.clone(),
    };
    ListAlertsRequest {
        origin,
        category: category as i32,
        include_retracted: filters.retracted == "yes",
        page_size: PAGE_SIZE,
        page_token: filters.page.clone(),
        received_only: filters.scope == "received",
        tlp: tlp as i32,
        created_after,
        created_before,
    }
}

/// The most alerts one export holds (the CLI's `alert export` has no limit).
const MAX_EXPORT: u64 = 100_000;

/// Said instead of the file when some alerts did not fit a CSV or XLSX
/// row whole: the person chooses JSON Lines, or the cut file knowingly.
#[derive(Template)]
#[template(path = "console/export_cut.html")]
struct CutPage {
    chrome: Chrome,
    written: crate::tabular::export::Exported,
    format: String,
    jsonl: String,
    anyway: String,
}

/// The export link for the same filters in `format` (`cut`: see [`Filters::cut`]).
fn export_link(f: &Filters, format: &str, cut: &str) -> String {
    format!(
        "/alerts/export?{}",
        f.query(&[("format", format), ("cut", cut)])
    )
}

/// The alerts the filters show, every page, as a file: the HTCDS-named
/// columns of `alert export` (CSV, XLSX) or JSON Lines. Each page read is
/// an `alert.list` audit entry naming its alerts, as in the list.
async fn export(
    State(c): State<Console>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Result<Response, PageError> {
    use crate::tabular::export::{ExportFormat, ExportRunError, Writer, write_pages};
    let (format, ext, mime) = match filters.format.as_str() {
        "csv" => (ExportFormat::Csv, "csv", "text/csv; charset=utf-8"),
        "jsonl" => (ExportFormat::Jsonl, "jsonl", "application/x-ndjson"),
        _ => (
            ExportFormat::Xlsx,
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
    };
    let mut problems = Vec::new();
    let mut req = list_request(&c, &filters, &mut problems);
    if let Some(p) = problems.first() {
        return Err(PageError::BadRequest(p.clone()));
    }
    req.page_size = 1000;
    req.page_token = String::new();
    let dir = tempfile::tempdir()
        .map_err(|e| PageError::Internal(format!("cannot write the export: {e}")))?;
    let path = dir.path().join(format!("export.{ext}"));
    let failed = |e: crate::tabular::export::ExportError| PageError::Internal(e.to_string());
    let mut writer = Writer::create(&path, format).map_err(failed)?;
    let written = write_pages(&mut writer, MAX_EXPORT, |token| {
        let mut req = req.clone();
        req.page_token = token;
        let (c, viewer) = (&c, &viewer);
        async move {
            Ok(c.alerts
                .list_alerts(request(viewer, req, ""))
                .await?
                .into_inner())
        }
    })
    .await
    .map_err(|e| match e {
        ExportRunError::Node(s) => PageError::from(*s),
        ExportRunError::Write(e) => failed(e),
    })?;
    if written.incomplete_rows > 0 && format != ExportFormat::Jsonl && filters.cut != "keep" {
        return page(CutPage {
            chrome: Chrome::new(&viewer, "alerts"),
            written,
            format: ext.to_uppercase(),
            jsonl: export_link(&filters, "jsonl", ""),
            anyway: export_link(&filters, ext, "keep"),
        });
    }
    let bytes = tokio::task::spawn_blocking(move || {
        writer.finish()?;
        std::fs::read(&path).map_err(|e| crate::tabular::export::ExportError::Write {
            file: path.clone(),
            message: e.to_string(),
        })
    })
    .await
    .map_err(|e| PageError::Internal(e.to_string()))?
    .map_err(failed)?;
    let name = format!(
        "{}-alerts-{}.{ext}",
        c.core.settings.agency,
        crate::console::view::day(Some(&crate::time::now()))
    );
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, mime.to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The link to the next page: the same filters, the next page token.
fn next_page_link(f: &Filters, token: &str) -> String {
    if token.is_empty() {
        return String::new();
    }
    format!("/alerts?{}", f.query(&[("page", token)]))
}

impl Filters {
    /// The filters as a query string (empty ones left out), with `more`.
    fn query(&self, more: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("scope", self.scope.as_str()),
            ("category", &self.category),
            ("tlp", &self.tlp),
            ("origin", &self.origin),
            ("from", &self.from),
            ("to", &self.to),
            ("retracted", &self.retracted),
        ];
        pairs.extend_from_slice(more);
        pairs.retain(|(_, v)| !v.is_empty());
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// A handling code with what it asks of whoever holds the alert.
fn handling_words(code: i32) -> String {
    let name = match HandlingCode::try_from(code).unwrap_or_default() {
        HandlingCode::Unspecified => "Not stated".to_owned(),
        h => label(h.as_str_name(), "HANDLING_CODE_"),
    };
    format!("{name} — {}", handling::handling_meaning(code))
}

pub fn tlp_label(tlp: Tlp) -> String {
    match tlp {
        Tlp::Unspecified => "—".into(),
        Tlp::AmberStrict => "TLP:AMBER+STRICT".into(),
        other => format!("TLP:{}", other.as_str_name().trim_start_matches("TLP_")),
    }
}

pub fn tlp_class(tlp: Tlp) -> String {
    tlp.as_str_name()
        .trim_start_matches("TLP_")
        .to_lowercase()
        .replace('_', "-")
}

// ----- one alert -----

struct ShareRow {
    peer: String,
    version: u64,
    what: String,
    rule: String,
    queued: String,
    acked: String,
    status: String,
}

#[derive(Template)]
#[template(path = "console/alert.html")]
struct DetailPage {
    chrome: Chrome,
    alert: Alert,
    own: bool,
    created: String,
    updated: String,
    retention: String,
    facts: Vec<(String, String)>,
    indicators: Vec<String>,
    narrative: String,
    tlp: String,
    tlp_class: String,
    /// What the TLP marking means, in words.
    tlp_meaning: String,
    /// The handling code and what it asks of whoever holds the alert.
    handling: String,
    subjects: Vec<SubjectView>,
    shares: Vec<ShareRow>,
    sharing_known: bool,
}

async fn get_alert(c: &Console, viewer: &Viewer, id: &str) -> Result<Alert, PageError> {
    let req = GetAlertRequest { id: id.to_owned() };
    Ok(c.alerts
        .get_alert(request(viewer, req, ""))
        .await?
        .into_inner())
}

async fn detail(
    State(c): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let alert = get_alert(&c, &viewer, &id).await?;
    let own = alert.origin == c.core.settings.agency.as_str();
    let sharing = if own {
        c.alerts
            .get_alert_sharing(request(&viewer, GetAlertRequest { id }, ""))
            .await
            .ok()
            .map(|r| r.into_inner())
    } else {
        None
    };
    page(detail_page(&viewer, alert, own, sharing))
}

fn detail_page(
    viewer: &Viewer,
    alert: Alert,
    own: bool,
    sharing: Option<AlertSharing>,
) -> DetailPage {
    let content = alert.content.clone().unwrap_or_default();
    // Indicators have a list of their own on this page.
    let facts = content_facts(&content)
        .into_iter()
        .filter(|(k, _)| k != "Indicators")
        .collect();
    let shares = sharing
        .as_ref()
        .map(|s| {
            s.shares
                .iter()
                .map(|r| ShareRow {
                    peer: r.peer.clone(),
                    version: r.version,
                    what: if r.retraction {
                        "retraction".into()
                    } else if r.disclosed.is_empty() {
                        "alert".into()
                    } else {
                        r.disclosed.clone()
                    },
                    rule: if r.rule.is_empty() {
                        "—".into()
                    } else {
                        r.rule.clone()
                    },
                    queued: when(r.queued_at.as_ref()),
                    acked: when(r.acked_at.as_ref()),
                    status: if r.status.is_empty() {
                        "waiting".into()
                    } else {
                        r.status.clone()
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    DetailPage {
        chrome: Chrome::new(viewer, "alerts"),
        own,
        created: when(alert.created_at.as_ref()),
        updated: when(alert.updated_at.as_ref()),
        retention: when(content.retention_until.as_ref()),
        facts,
        indicators: content
            .indicators()
            .map(|i| label(i.as_str_name(), "INDICATOR_"))
            .collect(),
        narrative: content.narrative.clone(),
        tlp: tlp_label(content.tlp()),
        tlp_class: tlp_class(content.tlp()),
        tlp_meaning: handling::tlp_meaning(content.tlp).into(),
        handling: handling_words(content.handling_code),
        subjects: alert.subjects.iter().map(subject_view).collect(),
        sharing_known: sharing.is_some(),
        shares,
        alert,
    }
}

// ----- submit, update, retract -----

#[derive(Template)]
#[template(path = "console/alert_form.html")]
struct FormPage {
    chrome: Chrome,
    /// Empty for a new alert.
    id: String,
    form: FormState,
    categories: Vec<Choice>,
    indicators: Vec<Choice>,
    severities: Vec<Choice>,
    confidences: Vec<Choice>,
    tlps: Vec<Choice>,
    handling_codes: Vec<Choice>,
    reliabilities: Vec<Choice>,
    accuracies: Vec<Choice>,
    roles: Vec<Choice>,
    document_types: Vec<Choice>,
    blocks: Vec<usize>,
    max_blocks: usize,
}

impl FormPage {
    fn new(viewer: &Viewer, id: String, form: FormState) -> Self {
        let blocks = people::blocks_posted(&form);
        Self {
            chrome: Chrome::new(viewer, "alerts"),
            id,
            form,
            categories: choices!(Category, "CATEGORY_"),
            indicators: choices!(Indicator, "INDICATOR_"),
            severities: choices!(Severity, "SEVERITY_"),
            confidences: choices!(Confidence, "CONFIDENCE_"),
            tlps: explained_choices!(Tlp, |v| {
                let t = Tlp::try_from(v).unwrap_or_default();
                format!("{} — {}", tlp_label(t), handling::tlp_meaning(v))
            }),
            handling_codes: explained_choices!(HandlingCode, handling_words),
            reliabilities: explained_choices!(SourceReliability, |v| {
                handling::reliability_meaning(v).to_owned()
            }),
            accuracies: explained_choices!(InformationAccuracy, |v| {
                handling::accuracy_meaning(v).to_owned()
            }),
            roles: choices!(SubjectRole, "SUBJECT_ROLE_"),
            document_types: choices!(DocumentType, "DOCUMENT_TYPE_"),
            blocks: (0..blocks).collect(),
            max_blocks: people::MAX_BLOCKS,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NewFrom {
    /// A public report to prefill the form from (role `intake`).
    report: String,
}

async fn new_form(
    State(c): State<Console>,
    viewer: Viewer,
    Query(from): Query<NewFrom>,
) -> Result<Response, PageError> {
    let mut form = match from.report.as_str() {
        "" => FormState::default(),
        id => {
            let req = GetReportRequest { id: id.to_owned() };
            let report = c.reports.get_report(request(&viewer, req, "")).await?;
            form_of_report(&report.into_inner())
        }
    };
    // The idempotency key of this submission: sending the form twice (a
    // double click, a retry after a timeout) stores one alert.
    form.set("request_id", uuid::Uuid::now_v7().to_string());
    if form.value("tlp").is_empty() {
        form.set("tlp", Tlp::Amber.as_str_name());
    }
    page(FormPage::new(&viewer, String::new(), form))
}

/// "Add another person": the same form back with one more block, nothing
/// checked or stored.
fn with_another_person(
    viewer: &Viewer,
    id: String,
    form: &mut FormState,
) -> Option<Result<Response, PageError>> {
    if form.value("add_person") != "yes" {
        return None;
    }
    let more = (people::blocks_posted(form) + 1).min(people::MAX_BLOCKS);
    form.set("people", more.to_string());
    form.set("add_person", "");
    Some(page(FormPage::new(viewer, id, std::mem::take(form))))
}

async fn submit(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    if let Some(again) = with_another_person(&posted.viewer, String::new(), &mut form) {
        return again;
    }
    let draft = draft_of(&mut form);
    if form.has_errors() {
        return form_again(&posted.viewer, String::new(), form);
    }
    let req = SubmitAlertRequest {
        draft: Some(draft),
        request_id: form.value("request_id").to_owned(),
        validate_only: false,
    };
    let purpose = form.value("purpose").to_owned();
    match c
        .alerts
        .submit_alert(request(&posted.viewer, req, &purpose))
        .await
    {
        Ok(alert) => {
            let id = alert.into_inner().id;
            link_report(&c, &posted.viewer, form.value("report"), &id).await?;
            Ok(see(&id))
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            form.add_violations(&violations(&s));
            form_again(&posted.viewer, String::new(), form)
        }
        Err(s) => Err(s.into()),
    }
}

/// Links the public report the form was made from (if any) to `alert`,
/// the alert just stored. A report linked meanwhile (a second caseworker,
/// or this form sent twice) keeps its first alert; the page says so.
async fn link_report(
    c: &Console,
    viewer: &Viewer,
    report: &str,
    alert: &str,
) -> Result<(), PageError> {
    if report.is_empty() {
        return Ok(());
    }
    let req = LinkReportRequest {
        id: report.to_owned(),
        alert_id: alert.to_owned(),
    };
    match c.reports.link_report(request(viewer, req, "")).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::FailedPrecondition && s.message().contains(alert) => {
            Ok(()) // the same form sent twice: linked to this very alert
        }
        Err(s) => Err(PageError::Conflict(format!(
            "alert {alert} was stored, but the report could not be linked to it: {}",
            s.message()
        ))),
    }
}

/// The form again, with its problems, answered 422 (nothing was stored).
fn form_again(viewer: &Viewer, id: String, form: FormState) -> Result<Response, PageError> {
    let html = page(FormPage::new(viewer, id, form))?;
    Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
}

/// After a change: the alert's page (POST/redirect/GET, so a reload does not
/// send the form again and the history holds no form).
fn see(id: &str) -> Response {
    Redirect::to(&format!("/alerts/{id}")).into_response()
}

async fn edit_form(
    State(c): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let alert = get_alert(&c, &viewer, &id).await?;
    if alert.origin != c.core.settings.agency.as_str() {
        return Err(PageError::Conflict(
            "only the agency that recorded an alert can change it".into(),
        ));
    }
    if alert.retracted {
        return Err(PageError::Conflict(
            "a retracted alert cannot be changed".into(),
        ));
    }
    if let Some(why) = people::beyond_the_form(&alert) {
        return Err(PageError::Conflict(format!(
            "this alert holds {why}, which the console's form cannot show; change it through \
             the API (`casebridge alert update`) so that nothing is lost"
        )));
    }
    page(FormPage::new(&viewer, id, form_of(&alert)))
}

async fn update(
    State(c): State<Console>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    if let Some(again) = with_another_person(&posted.viewer, id.clone(), &mut form) {
        return again;
    }
    let draft = draft_of(&mut form);
    let expected_version = form.value("expected_version").parse::<u64>().unwrap_or(0);
    if form.has_errors() {
        return form_again(&posted.viewer, id, form);
    }
    let req = UpdateAlertRequest {
        id: id.clone(),
        expected_version,
        draft: Some(draft),
    };
    let purpose = form.value("purpose").to_owned();
    match c
        .alerts
        .update_alert(request(&posted.viewer, req, &purpose))
        .await
    {
        Ok(alert) => Ok(see(&alert.into_inner().id)),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            form.add_violations(&violations(&s));
            form_again(&posted.viewer, id, form)
        }
        Err(s) if s.code() == tonic::Code::Aborted => {
            form.general.push(
                "someone changed this alert since you opened the form: open it again to see \
                 the new version"
                    .into(),
            );
            form_again(&posted.viewer, id, form)
        }
        Err(s) => Err(s.into()),
    }
}

async fn retract(
    State(c): State<Console>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, PageError> {
    let req = RetractAlertRequest {
        id: id.clone(),
        expected_version: posted.get("expected_version").parse().unwrap_or(0),
        reason: posted.get("reason").to_owned(),
    };
    let purpose = posted.get("purpose").to_owned();
    c.alerts
        .retract_alert(request(&posted.viewer, req, &purpose))
        .await?;
    Ok(see(&id))
}
