//! The disclosure request form, about a confirmed hit (on the hit page)
//! or about an alert a lookup found (`/requests/new?alert=ID`, as
//! `casebridge requests send --alert`): one set of fields, one way of
//! sending, the node's problems at their fields.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::form::{Choice, FormState, choices, explained_choices};
use super::people;
use crate::console::Console;
use crate::console::guard::Posted;
use crate::console::rpc::{request, violations};
use crate::console::view::{Chrome, PageError, Viewer, page};
use crate::proto::v1::disclosure_service_server::DisclosureService;
use crate::proto::v1::send_disclosure_request::About;
use crate::proto::v1::{DocumentType, LegalBasis, SendDisclosureRequest, Urgency};

pub fn routes() -> Router<Console> {
    Router::new().route("/requests/new", get(new_form).post(send_new))
}

/// The choices the form's fields offer.
pub struct RequestChoices {
    pub bases: Vec<Choice>,
    pub urgencies: Vec<Choice>,
    /// One identifiers block, for the holder's verification.
    pub blocks: Vec<usize>,
    pub roles: Vec<Choice>,
    pub document_types: Vec<Choice>,
}

impl Default for RequestChoices {
    fn default() -> Self {
        Self {
            bases: explained_choices!(LegalBasis, |b| crate::policy::disclosure::basis_words(b)
                .to_owned()),
            // A custom deadline needs a date this form does not ask for
            // (`requests send --urgency custom --due`).
            urgencies: choices!(Urgency, "URGENCY_")
                .into_iter()
                .filter(|u| u.value != Urgency::Custom.as_str_name())
                .collect(),
            blocks: vec![0],
            roles: Vec::new(),
            document_types: choices!(DocumentType, "DOCUMENT_TYPE_"),
        }
    }
}

/// Sets the defaults of a new request form.
pub fn prefill(form: &mut FormState) {
    if form.value("urgency").is_empty() {
        form.set("urgency", Urgency::Normal.as_str_name());
    }
}

/// Sends the request the form describes, as the viewer: the new request's
/// id, or the form with the node's problems at their fields.
pub async fn send(
    c: &Console,
    viewer: &Viewer,
    about: About,
    mut form: FormState,
) -> Result<Result<String, FormState>, PageError> {
    for (path, input) in [
        ("legal_basis", "legal_basis"),
        ("citation", "citation"),
        ("purpose", "reason"),
        ("case_reference", "case_reference"),
        ("urgency", "urgency"),
        ("hit_number", "legal_basis"),
        ("alert_id", "legal_basis"),
    ] {
        form.map_path(path, input);
    }
    let legal_basis = LegalBasis::from_str_name(form.value("legal_basis")).unwrap_or_default();
    let urgency = Urgency::from_str_name(form.value("urgency")).unwrap_or_default();
    let req = SendDisclosureRequest {
        about: Some(about),
        legal_basis: legal_basis as i32,
        citation: form.value("citation").to_owned(),
        purpose: form.value("reason").to_owned(),
        case_reference: form.value("case_reference").to_owned(),
        urgency: urgency as i32,
        due_at: None,
        verification: people::identifiers_of(&mut form, 0, "verification"),
    };
    if form.has_errors() {
        return Ok(Err(form));
    }
    let purpose = form.value("case_reference").to_owned();
    match c
        .disclosure
        .send_request(request(viewer, req, &purpose))
        .await
    {
        Ok(case) => Ok(Ok(case
            .into_inner()
            .request
            .map(|r| r.id)
            .unwrap_or_default())),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            if s.code() == tonic::Code::FailedPrecondition {
                form.general.push(s.message().to_owned());
            }
            form.add_violations(&violations(&s));
            Ok(Err(form))
        }
        Err(s) => Err(s.into()),
    }
}

/// Where a sent request is shown.
pub fn see_request(id: &str) -> Response {
    Redirect::to(&format!("/requests/{id}")).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AboutAlert {
    alert: String,
}

#[derive(Template)]
#[template(path = "console/request_new.html")]
struct NewRequestPage {
    chrome: Chrome,
    alert: String,
    holder: String,
    choices: RequestChoices,
    form: FormState,
}

fn new_page(viewer: &Viewer, alert: String, form: FormState) -> NewRequestPage {
    let holder = alert.split(':').next().unwrap_or_default().to_owned();
    NewRequestPage {
        chrome: Chrome::new(viewer, "requests"),
        alert,
        holder,
        choices: RequestChoices::default(),
        form,
    }
}

async fn new_form(viewer: Viewer, Query(about): Query<AboutAlert>) -> Result<Response, PageError> {
    let mut form = FormState::default();
    prefill(&mut form);
    page(new_page(&viewer, about.alert, form))
}

async fn send_new(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let form = FormState::from_fields(&posted.fields);
    let alert = form.value("alert").to_owned();
    match send(&c, &posted.viewer, About::AlertId(alert.clone()), form).await? {
        Ok(id) => Ok(see_request(&id)),
        Err(form) => {
            let html = page(new_page(&posted.viewer, alert, form))?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
    }
}
