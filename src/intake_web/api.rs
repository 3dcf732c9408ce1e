//! The intake as JSON for hotline apps (docs/intake.md, "For app
//! developers"): send a report, read the conversation and answer with the
//! receipt. The same reports, budgets, bounds and anonymity as the form:
//! the receipt travels in the body of each call (never a URL, never a
//! cookie), a wrong one spends the node's budget, and nothing says who
//! called. Problems come back in the reporter's language, at JSON paths.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::site::Site;
use super::words::{Words, words};
use crate::intake::form::{self, Problem};
use crate::intake::json::{JsonReceipt, JsonReport, path_of};
use crate::proto::v1::{IntakeAuthor, IntakeReportRecord};
use crate::reports::MAX_MESSAGE;

pub fn routes() -> Router<Arc<Site>> {
    Router::new()
        .route("/api/v1/reports", post(submit))
        .route("/api/v1/conversation", post(conversation))
        .route("/api/v1/conversation/answer", post(answer))
}

#[derive(Serialize)]
struct Error {
    field: String,
    code: String,
    message: String,
}

#[derive(Serialize)]
struct Errors {
    errors: Vec<Error>,
}

#[derive(Serialize)]
struct Line {
    from: &'static str,
    text: String,
    /// The hour it was written (RFC 3339): all the node keeps of a time.
    hour: String,
}

#[derive(Serialize)]
struct Conversation {
    what: String,
    messages: Vec<Line>,
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).expect("serializes");
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        bytes,
    )
        .into_response()
}

fn problem(status: StatusCode, field: &str, code: &str, message: String) -> Response {
    let error = Error {
        field: field.to_owned(),
        code: code.to_owned(),
        message,
    };
    json(
        status,
        &Errors {
            errors: vec![error],
        },
    )
}

/// Why a body was not read: its status, code and words.
struct Unread(StatusCode, &'static str, String);

impl IntoResponse for Unread {
    fn into_response(self) -> Response {
        problem(self.0, "", self.1, self.2)
    }
}

/// The body read as `T` (JSON only), or why not: 415 for another type,
/// 400 naming the line and column of malformed JSON.
fn body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, Unread> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !json_type {
        let why = "send application/json".to_owned();
        return Err(Unread(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "media-type",
            why,
        ));
    }
    // serde_json's message names the line and column ("… at line 2
    // column 9"), and nests no deeper than 128 before refusing.
    serde_json::from_slice(bytes)
        .map_err(|e| Unread(StatusCode::BAD_REQUEST, "malformed", e.to_string()))
}

fn invalid(t: &Words<'_>, problems: &[Problem]) -> Response {
    let errors = problems
        .iter()
        .map(|p| Error {
            field: path_of(&p.field),
            code: p.message.to_owned(),
            message: t.problem(p),
        })
        .collect();
    json(StatusCode::UNPROCESSABLE_ENTITY, &Errors { errors })
}

/// "Try again later", alike for a full queue, a spent budget and a store
/// that cannot write.
fn busy(t: &Words<'_>) -> Response {
    let mut r = problem(StatusCode::SERVICE_UNAVAILABLE, "", "busy", t.get("busy"));
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

fn chosen(language: &str) -> Option<&str> {
    (!language.is_empty() && language.len() <= 8).then_some(language)
}

async fn submit(State(site): State<Arc<Site>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let sent: JsonReport = match body(&headers, &bytes) {
        Ok(r) => r,
        Err(unread) => return unread.into_response(),
    };
    let t = words(&site, chosen(&sent.language), &headers);
    let report = match sent.fields().map(|f| form::read(&f)) {
        Err(p) => return invalid(&t, &[p]),
        Ok(Err(problems)) => return invalid(&t, &problems),
        Ok(Ok(report)) => report,
    };
    match site.reports.submit(report, t.code()).await {
        Ok(receipt) => {
            #[derive(Serialize)]
            struct Stored {
                receipt: String,
                language: &'static str,
            }
            let stored = Stored {
                receipt: receipt.grouped().to_string(),
                language: t.code(),
            };
            json(StatusCode::CREATED, &stored)
        }
        Err(e) => {
            super::site::note(&e);
            busy(&t)
        }
    }
}

/// The report a receipt opens, or the answer for a wrong one (alike for
/// every reason) or a spent budget.
async fn opened(site: &Site, t: &Words<'_>, receipt: &str) -> Result<IntakeReportRecord, Response> {
    match site.reports.open_by_receipt(receipt).await {
        Ok(Some(report)) => Ok(report),
        Ok(None) => Err(problem(
            StatusCode::UNAUTHORIZED,
            "receipt",
            "receipt-wrong",
            t.get("receipt-wrong"),
        )),
        Err(e) => {
            super::site::note(&e);
            Err(busy(t))
        }
    }
}

fn view(report: &IntakeReportRecord) -> Conversation {
    let hour = |secs: i64| {
        crate::time::rfc3339(&pbjson_types::Timestamp {
            seconds: secs,
            nanos: 0,
        })
        .unwrap_or_default()
    };
    Conversation {
        what: report.what.clone(),
        messages: report
            .messages
            .iter()
            .map(|m| Line {
                from: if m.author == IntakeAuthor::Caseworker as i32 {
                    "caseworker"
                } else {
                    "reporter"
                },
                text: m.text.clone(),
                hour: hour(m.at_hour),
            })
            .collect(),
    }
}

async fn conversation(State(site): State<Arc<Site>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let sent: JsonReceipt = match body(&headers, &bytes) {
        Ok(r) => r,
        Err(unread) => return unread.into_response(),
    };
    let t = words(&site, chosen(&sent.language), &headers);
    match opened(&site, &t, &sent.receipt).await {
        Ok(report) => json(StatusCode::OK, &view(&report)),
        Err(answer) => answer,
    }
}

async fn answer(State(site): State<Arc<Site>>, headers: HeaderMap, bytes: Bytes) -> Response {
    let sent: JsonReceipt = match body(&headers, &bytes) {
        Ok(r) => r,
        Err(unread) => return unread.into_response(),
    };
    let t = words(&site, chosen(&sent.language), &headers);
    let text = sent.text.trim();
    let wrong = if text.is_empty() {
        Some(("error-required", Vec::new()))
    } else if text.chars().count() > MAX_MESSAGE {
        Some(("error-too-long", vec![("max", MAX_MESSAGE.to_string())]))
    } else {
        None
    };
    if let Some((message, args)) = wrong {
        let p = Problem {
            field: "text".into(),
            message,
            args,
        };
        return invalid(&t, &[p]);
    }
    let report = match opened(&site, &t, &sent.receipt).await {
        Ok(report) => report,
        Err(answer) => return answer,
    };
    match site.reports.answer(&report.id, text).await {
        Ok(updated) => json(StatusCode::OK, &view(&updated)),
        Err(e) => {
            super::site::note(&e);
            busy(&t)
        }
    }
}
