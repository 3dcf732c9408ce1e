//! The intake's pages: the form, the receipt shown once, the receipt
//! login and the reporter's conversation. Thin: the rules are in
//! `intake`, the work in `reports`; these read what a browser sent,
//! within bounds, and say what happened in the reporter's language.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use super::session::Sessions;
use super::site::{MAX_BODY, Site};
use super::words::{Words, words};
use crate::intake::form::{self, MAX_PEOPLE};
use crate::reports::MAX_MESSAGE;

const STYLESHEET: &str = include_str!("intake.css");
/// No script, no frame, no other origin; the stylesheet from here only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

type Posted = Form<Vec<(String, String)>>;

pub fn routes(site: Arc<Site>) -> Router {
    Router::new()
        .route("/", get(form_page))
        .route("/report", axum::routing::post(submit))
        .route("/receipt", get(login_page).post(login))
        .route("/my-report", get(report_page).post(answer))
        .route("/intake.css", get(stylesheet))
        .merge(super::api::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(headers))
        .with_state(site)
}

/// The headers every answer carries: nothing kept, nothing framed, no
/// script, no referrer.
async fn headers(req: axum::extract::Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn query_lang(uri: &Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("lang="))
        .filter(|v| v.len() <= 8)
}

fn field<'a>(posted: &'a [(String, String)], name: &str) -> Option<&'a str> {
    posted
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// What a page is given back of the form: the values as typed.
pub struct Values(Vec<(String, String)>);

impl Values {
    pub fn get(&self, name: impl AsRef<str>) -> &str {
        field(&self.0, name.as_ref()).unwrap_or("")
    }
}

/// The problems of a posted form, by field, in the reporter's language.
pub struct Errors(Vec<(String, String)>);

impl Errors {
    pub fn at(&self, name: impl AsRef<str>) -> String {
        self.0
            .iter()
            .filter(|(f, _)| f == name.as_ref())
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The input names of one person block, and its legend.
pub struct PersonInputs {
    pub legend: String,
    pub name: String,
    pub phone: String,
    pub workplace: String,
    pub plate: String,
}

#[derive(Template)]
#[template(path = "intake/form.html")]
struct FormPage<'a> {
    t: Words<'a>,
    path: &'static str,
    emergency_number: &'a str,
    errors: Errors,
    values: Values,
    countries: &'a [(&'static str, String)],
    people: Vec<PersonInputs>,
}

#[derive(Template)]
#[template(path = "intake/receipt.html")]
struct ReceiptPage<'a> {
    t: Words<'a>,
    path: &'static str,
    receipt: String,
}

#[derive(Template)]
#[template(path = "intake/login.html")]
struct LoginPage<'a> {
    t: Words<'a>,
    path: &'static str,
    error: String,
}

#[derive(Template)]
#[template(path = "intake/report.html")]
struct ReportPage<'a> {
    t: Words<'a>,
    path: &'static str,
    what: String,
    /// (from a caseworker, text)
    messages: Vec<(bool, String)>,
    answered: bool,
    sent: bool,
    error: String,
}

#[derive(Template)]
#[template(path = "intake/message.html")]
struct MessagePage<'a> {
    t: Words<'a>,
    path: &'static str,
    heading: &'static str,
}

fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Every country, by its English name, for the form's list.
fn form(site: &Site, t: Words<'_>, values: Values, errors: Errors, status: StatusCode) -> Response {
    let countries = t.countries();
    let people = (0..MAX_PEOPLE)
        .map(|i| PersonInputs {
            legend: t.with("person-legend", &[("number", &(i + 1).to_string())]),
            name: form::person_field(i, "name"),
            phone: form::person_field(i, "phone"),
            workplace: form::person_field(i, "workplace"),
            plate: form::person_field(i, "plate"),
        })
        .collect();
    let page = FormPage {
        t,
        path: "/",
        emergency_number: &site.emergency_number,
        errors,
        values,
        countries,
        people,
    };
    render(status, page)
}

async fn form_page(State(site): State<Arc<Site>>, uri: Uri, headers: HeaderMap) -> Response {
    let t = words(&site, query_lang(&uri), &headers);
    form(
        &site,
        t,
        Values(Vec::new()),
        Errors(Vec::new()),
        StatusCode::OK,
    )
}

/// "Many reports are arriving": the same for a full queue, a spent
/// budget and anything the node cannot do now.
fn busy(t: Words<'_>, path: &'static str) -> Response {
    let page = MessagePage {
        t,
        path,
        heading: "busy",
    };
    let mut r = render(StatusCode::SERVICE_UNAVAILABLE, page);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

async fn submit(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    Form(posted): Posted,
) -> Response {
    let t = words(&site, field(&posted, "lang"), &headers);
    let report = match form::read(&posted) {
        Ok(r) => r,
        Err(problems) => {
            let errors = problems
                .iter()
                .map(|p| (p.field.clone(), t.problem(p)))
                .collect();
            return form(
                &site,
                t,
                Values(posted),
                Errors(errors),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    match site.reports.submit(report, t.code()).await {
        Ok(receipt) => {
            // No language links here: leaving the page loses the receipt,
            // which is shown this once.
            let page = ReceiptPage {
                receipt: receipt.grouped().to_string(),
                t,
                path: "",
            };
            render(StatusCode::OK, page)
        }
        Err(e) => {
            super::site::note(&e);
            busy(t, "/")
        }
    }
}

async fn login_page(State(site): State<Arc<Site>>, uri: Uri, headers: HeaderMap) -> Response {
    let t = words(&site, query_lang(&uri), &headers);
    render(
        StatusCode::OK,
        LoginPage {
            t,
            path: "/receipt",
            error: String::new(),
        },
    )
}

async fn login(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    Form(posted): Posted,
) -> Response {
    let t = words(&site, field(&posted, "lang"), &headers);
    let typed = field(&posted, "receipt").unwrap_or("");
    match site.reports.open_by_receipt(typed).await {
        Ok(Some(report)) => {
            let now = crate::time::now_ms() / 1000;
            let Some(token) = site.sessions.open(&report.id, now) else {
                return busy(t, "/receipt");
            };
            let mut r = Redirect::to(&format!("/my-report?lang={}", t.code())).into_response();
            if let Ok(v) = HeaderValue::from_str(&Sessions::cookie(&token)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Ok(None) => {
            let error = t.get("receipt-wrong");
            render(
                StatusCode::UNAUTHORIZED,
                LoginPage {
                    t,
                    path: "/receipt",
                    error,
                },
            )
        }
        Err(e) => {
            super::site::note(&e);
            busy(t, "/receipt")
        }
    }
}

/// The report the request's session opened, if it has one.
fn session_report(
    site: &Site,
    headers: &HeaderMap,
) -> Option<crate::proto::v1::IntakeReportRecord> {
    let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
    let token = Sessions::token_of(cookie)?;
    let id = site.sessions.report(token, crate::time::now_ms() / 1000)?;
    site.reports.report(&id).ok().flatten()
}

fn conversation<'a>(
    t: Words<'a>,
    report: &crate::proto::v1::IntakeReportRecord,
    sent: bool,
    error: String,
) -> ReportPage<'a> {
    let caseworker = crate::proto::v1::IntakeAuthor::Caseworker as i32;
    let messages: Vec<(bool, String)> = report
        .messages
        .iter()
        .map(|m| (m.author == caseworker, m.text.clone()))
        .collect();
    ReportPage {
        t,
        path: "/my-report",
        what: report.what.clone(),
        answered: messages.iter().any(|(c, _)| *c),
        messages,
        sent,
        error,
    }
}

async fn report_page(State(site): State<Arc<Site>>, uri: Uri, headers: HeaderMap) -> Response {
    let t = words(&site, query_lang(&uri), &headers);
    match session_report(&site, &headers) {
        Some(report) => render(
            StatusCode::OK,
            conversation(t, &report, false, String::new()),
        ),
        None => Redirect::to(&format!("/receipt?lang={}", t.code())).into_response(),
    }
}

async fn answer(
    State(site): State<Arc<Site>>,
    headers: HeaderMap,
    Form(posted): Posted,
) -> Response {
    let t = words(&site, field(&posted, "lang"), &headers);
    let Some(report) = session_report(&site, &headers) else {
        return Redirect::to(&format!("/receipt?lang={}", t.code())).into_response();
    };
    let text = field(&posted, "text").unwrap_or("").trim();
    let problem = if text.is_empty() {
        Some(t.get("error-required"))
    } else if text.chars().count() > MAX_MESSAGE {
        Some(t.with("error-too-long", &[("max", &MAX_MESSAGE.to_string())]))
    } else {
        None
    };
    if let Some(error) = problem {
        return render(
            StatusCode::UNPROCESSABLE_ENTITY,
            conversation(t, &report, false, error),
        );
    }
    match site.reports.answer(&report.id, text).await {
        Ok(updated) => render(
            StatusCode::OK,
            conversation(t, &updated, true, String::new()),
        ),
        Err(e) => {
            super::site::note(&e);
            busy(t, "/my-report")
        }
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn not_found(State(site): State<Arc<Site>>, uri: Uri, headers: HeaderMap) -> Response {
    let t = words(&site, query_lang(&uri), &headers);
    render(
        StatusCode::NOT_FOUND,
        MessagePage {
            t,
            path: "/",
            heading: "not-found",
        },
    )
}
