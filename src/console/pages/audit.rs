//! The audit log for auditors and the administrator: entries filtered by
//! time, actor, action and alert, the chain verified on the running node,
//! and an export that verifies away from it (role `admin`).

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::console::Console;
use crate::console::guard::Posted;
use crate::console::rpc::{request, violations};
use crate::console::view::{Chrome, PageError, Viewer, page};
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::{QueryAuditRequest, VerifyAuditRequest, VerifyAuditResponse};

/// Entries a page shows.
const PAGE: u32 = 100;
/// The most entries one export holds (an auditor narrows the filter for
/// more; the CLI's `audit export` has no limit).
const MAX_EXPORT: usize = 100_000;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/audit", get(list))
        .route("/audit/verify", post(verify))
        .route("/audit/export", post(export))
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
pub struct AuditFilters {
    actor: String,
    action: String,
    alert: String,
    from: String,
    to: String,
    page: String,
    /// `oldest` lists oldest first; anything else (the default) newest first.
    order: String,
}

impl AuditFilters {
    fn oldest_first(&self) -> bool {
        self.order == "oldest"
    }
}

pub struct EntryRow {
    pub sequence: u64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub failed: bool,
    pub objects: Vec<String>,
    pub purpose: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    filters: AuditFilters,
    rows: Vec<EntryRow>,
    head: u64,
    problems: Vec<String>,
    next: String,
    verified: Option<VerifyAuditResponse>,
}

fn query_of(f: &AuditFilters, problems: &mut Vec<String>) -> QueryAuditRequest {
    use super::common::date_bound;
    // "To" includes the day typed.
    let until = date_bound(&f.to, "To", problems).map(|mut t| {
        t.seconds += 86_400;
        t
    });
    QueryAuditRequest {
        actor: f.actor.trim().to_owned(),
        action: f.action.trim().to_owned(),
        alert_id: f.alert.trim().to_owned(),
        since: date_bound(&f.from, "From", problems),
        until,
        page_size: PAGE,
        page_token: f.page.clone(),
        include_checkpoints: false,
        newest_first: !f.oldest_first(),
    }
}

/// Whether an outcome is a refusal or failure (a gRPC code other than OK,
/// or an envelope the peer rejected), to set it apart; `stored`,
/// `duplicate` and the like are successes.
fn refused(outcome: &str) -> bool {
    let code = outcome != "OK" && outcome.chars().all(|c| c.is_ascii_uppercase() || c == '_');
    code || matches!(outcome, "rejected" | "refused" | "expired")
}

/// The entry's details (its body's `detail` object), as `key=value` pairs.
fn details(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return String::new();
    };
    match v.get("detail").and_then(|d| d.as_object()) {
        Some(map) => map
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => format!("{k}={s}"),
                None => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => String::new(),
    }
}

async fn render(
    c: &Console,
    viewer: &Viewer,
    filters: AuditFilters,
    verified: Option<VerifyAuditResponse>,
) -> Result<Response, PageError> {
    let mut problems = Vec::new();
    let req = query_of(&filters, &mut problems);
    let (rows, head, next) = match c.admin.query_audit(request(viewer, req, "")).await {
        Ok(r) => {
            let r = r.into_inner();
            let rows = r
                .entries
                .iter()
                .map(|e| EntryRow {
                    sequence: e.sequence,
                    time: e
                        .time
                        .as_ref()
                        .map(|t| crate::console::view::when(Some(t)))
                        .unwrap_or_default(),
                    actor: e.actor.clone(),
                    action: e.action.clone(),
                    failed: refused(&e.outcome),
                    outcome: e.outcome.clone(),
                    objects: e.objects.clone(),
                    purpose: e.purpose.clone(),
                    detail: details(&e.body),
                })
                .collect();
            let next = if r.next_page_token.is_empty() {
                String::new()
            } else {
                let mut f = filters.clone();
                f.page = r.next_page_token.clone();
                format!(
                    "/audit?{}",
                    serde_urlencoded::to_string([
                        ("actor", &f.actor),
                        ("action", &f.action),
                        ("alert", &f.alert),
                        ("from", &f.from),
                        ("to", &f.to),
                        ("page", &f.page),
                        ("order", &f.order),
                    ])
                    .unwrap_or_default()
                )
            };
            (rows, r.head_sequence, next)
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            problems.extend(
                violations(&s)
                    .into_iter()
                    .map(|v| format!("{}: {}", v.field, v.description)),
            );
            (Vec::new(), 0, String::new())
        }
        Err(s) => return Err(s.into()),
    };
    page(AuditPage {
        chrome: Chrome::new(viewer, "audit"),
        filters,
        rows,
        head,
        problems,
        next,
        verified,
    })
}

async fn list(
    State(c): State<Console>,
    viewer: Viewer,
    Query(filters): Query<AuditFilters>,
) -> Result<Response, PageError> {
    render(&c, &viewer, filters, None).await
}

/// Verifies the whole chain and its signed checkpoints on the running
/// node, and shows the result above the entries.
async fn verify(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let result = c
        .admin
        .verify_audit(request(&posted.viewer, VerifyAuditRequest {}, ""))
        .await?
        .into_inner();
    render(&c, &posted.viewer, AuditFilters::default(), Some(result)).await
}

/// The entries the filters select, as the JSON Lines export `casebridge
/// audit verify --file` checks (with the signed checkpoints among them).
async fn export(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let filters = AuditFilters {
        actor: posted.get("actor").to_owned(),
        action: posted.get("action").to_owned(),
        alert: posted.get("alert").to_owned(),
        from: posted.get("from").to_owned(),
        to: posted.get("to").to_owned(),
        page: String::new(),
        // An export verifies in chain order, whatever the page shows.
        order: "oldest".to_owned(),
    };
    let mut problems = Vec::new();
    let mut req = query_of(&filters, &mut problems);
    if let Some(p) = problems.first() {
        return Err(PageError::BadRequest(p.clone()));
    }
    req.page_size = 1000;
    req.include_checkpoints = true;
    let mut out = String::new();
    let mut entries = 0usize;
    loop {
        let page = c
            .admin
            .query_audit(request(&posted.viewer, req.clone(), ""))
            .await?
            .into_inner();
        entries += page.entries.len();
        for line in crate::audit::export::page_lines(&page) {
            out.push_str(&line);
            out.push('\n');
        }
        if page.next_page_token.is_empty() || entries >= MAX_EXPORT {
            break;
        }
        req.page_token = page.next_page_token;
    }
    let name = format!(
        "audit-{}-{}.jsonl",
        c.core.settings.agency,
        crate::console::view::day(Some(&crate::time::now()))
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_stand_apart_from_successes() {
        for bad in [
            "PERMISSION_DENIED",
            "INVALID_ARGUMENT",
            "rejected",
            "expired",
        ] {
            assert!(refused(bad), "{bad}");
        }
        for good in ["OK", "stored", "duplicate"] {
            assert!(!refused(good), "{good}");
        }
    }

    #[test]
    fn details_read_as_key_value_pairs() {
        let body = r#"{"seq":3,"detail":{"channel":"console","version":2}}"#;
        assert_eq!(details(body), "channel=console version=2");
        assert_eq!(details("not json"), "");
    }
}
