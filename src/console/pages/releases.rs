//! Releases: data another agency released to this one after a request,
//! and what this agency released; each with its handling code, and the
//! holder's withdrawal of a release it made (role `disclose`), which
//! purges it at the requester too.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::common::{SubjectView, content_facts, handling_label, subject_view};
use super::form::FormState;
use crate::config::Role;
use crate::console::Console;
use crate::console::guard::Posted;
use crate::console::rpc::{request, violations};
use crate::console::view::{Chrome, PageError, Viewer, page, when};
use crate::proto::v1::disclosure_service_server::DisclosureService;
use crate::proto::v1::{
    GetReleaseRequest, ListReleasesRequest, ReleaseRecord, WithdrawReleaseRequest,
};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/releases", get(releases))
        .route("/releases/{id}", get(release))
        .route("/releases/{id}/withdraw", post(withdraw))
}

pub struct ReleaseRow {
    pub id: String,
    pub peer: String,
    pub alert: String,
    pub handling: String,
    pub released: String,
    pub until: String,
    pub status: String,
    pub outgoing: bool,
}

fn release_row(r: &ReleaseRecord) -> ReleaseRow {
    let rel = r.release.clone().unwrap_or_default();
    ReleaseRow {
        id: rel.id.clone(),
        peer: r.peer.clone(),
        alert: rel.alert_id.clone(),
        handling: handling_label(rel.handling()),
        released: when(rel.released_at.as_ref()),
        until: when(rel.retention_until.as_ref()),
        status: if r.withdrawn_at.is_some() {
            "withdrawn".into()
        } else if r.purged {
            "purged".into()
        } else {
            "held".into()
        },
        outgoing: r.outgoing,
    }
}

#[derive(Template)]
#[template(path = "console/releases.html")]
struct ReleasesPage {
    chrome: Chrome,
    rows: Vec<ReleaseRow>,
}

async fn releases(State(c): State<Console>, viewer: Viewer) -> Result<Response, PageError> {
    let answer = c
        .disclosure
        .list_releases(request(
            &viewer,
            ListReleasesRequest {
                outgoing: None,
                page_size: 100,
                page_token: String::new(),
            },
            "",
        ))
        .await?
        .into_inner();
    page(ReleasesPage {
        chrome: Chrome::new(&viewer, "requests"),
        rows: answer.releases.iter().map(release_row).collect(),
    })
}

#[derive(Template)]
#[template(path = "console/release.html")]
struct ReleasePage {
    chrome: Chrome,
    row: ReleaseRow,
    fields: String,
    contact: String,
    released_by: String,
    request_id: String,
    content: Vec<(String, String)>,
    subjects: Vec<SubjectView>,
    withdraw_reason: String,
    /// The holder's officer may withdraw a release it made, while held.
    can_withdraw: bool,
    form: FormState,
}

async fn release(
    State(c): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    release_page(&c, &viewer, id, FormState::default()).await
}

async fn release_page(
    c: &Console,
    viewer: &Viewer,
    id: String,
    form: FormState,
) -> Result<Response, PageError> {
    let record = c
        .disclosure
        .get_release(request(viewer, GetReleaseRequest { id }, ""))
        .await?
        .into_inner();
    let rel = record.release.clone().unwrap_or_default();
    let content = rel.content.as_ref().map(content_facts).unwrap_or_default();
    let row = release_row(&record);
    page(ReleasePage {
        chrome: Chrome::new(viewer, "requests"),
        can_withdraw: row.outgoing && row.status == "held" && viewer.may(Role::Disclose),
        form,
        row,
        fields: rel.released_fields.clone(),
        contact: rel.contact_point.clone(),
        released_by: rel.released_by.clone(),
        request_id: rel.request_id.clone(),
        content,
        subjects: rel.subjects.iter().map(subject_view).collect(),
        withdraw_reason: record.withdraw_reason.clone(),
    })
}

/// The holder withdraws a release it made: the requester's node purges it
/// and is told why. A reason is required (the node says so at the field).
async fn withdraw(
    State(c): State<Console>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    form.map_path("reason", "reason");
    if form.value("reason").is_empty() {
        form.add_error("reason", "say why: the requester is told");
        let html = release_page(&c, &posted.viewer, id, form).await?;
        return Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
    }
    let req = WithdrawReleaseRequest {
        id: id.clone(),
        reason: form.value("reason").to_owned(),
    };
    match c
        .disclosure
        .withdraw_release(request(&posted.viewer, req, ""))
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/releases/{id}")).into_response()),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            form.add_violations(&violations(&s));
            let html = release_page(&c, &posted.viewer, id, form).await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
        Err(s) => Err(s.into()),
    }
}
