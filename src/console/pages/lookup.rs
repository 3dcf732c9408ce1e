//! Asking the federation (role `read`): does any agency hold this phone,
//! this person, this wallet? The identifiers are typed as on the alert
//! form, tokenized by this node (they never leave it), and every agency
//! answers about its own alerts only, as `casebridge alert lookup` does.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::form::{Choice, FormState, choices};
use super::people;
use crate::console::Console;
use crate::console::guard::Posted;
use crate::console::rpc::{request, violations};
use crate::console::view::{Chrome, PageError, Viewer, label, page};
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::{DocumentType, LookupRequest, LookupResponse};

pub fn routes() -> Router<Console> {
    Router::new().route("/lookup", get(show).post(ask))
}

/// One match an agency reported.
pub struct Found {
    pub kind: String,
    pub alert: String,
    /// This node holds the alert (shared with it): link to it.
    pub held_here: bool,
    pub how: String,
}

/// One agency's answer.
pub struct Answer {
    pub agency: String,
    pub answered: bool,
    pub error: String,
    pub found: Vec<Found>,
}

#[derive(Template)]
#[template(path = "console/lookup.html")]
struct LookupPage {
    chrome: Chrome,
    form: FormState,
    blocks: Vec<usize>,
    roles: Vec<Choice>,
    document_types: Vec<Choice>,
    answers: Option<Vec<Answer>>,
}

fn lookup_page(viewer: &Viewer, form: FormState, answers: Option<Vec<Answer>>) -> LookupPage {
    LookupPage {
        chrome: Chrome::new(viewer, "lookup"),
        form,
        blocks: vec![0],
        roles: Vec::new(),
        document_types: choices!(DocumentType, "DOCUMENT_TYPE_"),
        answers,
    }
}

async fn show(viewer: Viewer) -> Result<Response, PageError> {
    page(lookup_page(&viewer, FormState::default(), None))
}

async fn answers_of(c: &Console, viewer: &Viewer, r: LookupResponse) -> Vec<Answer> {
    let mut held = std::collections::BTreeSet::new();
    for m in r.answers.iter().flat_map(|a| &a.matches) {
        if super::common::held_here(c, viewer, &m.alert_id).await {
            held.insert(m.alert_id.clone());
        }
    }
    r.answers
        .into_iter()
        .map(|a| Answer {
            found: a
                .matches
                .iter()
                .map(|m| Found {
                    kind: label(m.r#type().as_str_name(), "IDENTIFIER_TYPE_"),
                    held_here: held.contains(&m.alert_id),
                    alert: m.alert_id.clone(),
                    how: match &m.evidence {
                        Some(e) => format!(
                            "score {:.2}; {}",
                            m.similarity,
                            crate::matching::describe_evidence(e)
                        ),
                        None => "equal tokens".into(),
                    },
                })
                .collect(),
            agency: a.agency,
            answered: a.answered,
            error: a.error,
        })
        .collect()
}

async fn ask(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    let identifiers = people::identifiers_of(&mut form, 0, "identifiers");
    if identifiers.is_empty() && !form.has_errors() {
        form.general
            .push("type at least one identifier to ask about".into());
    }
    if form.has_errors() {
        let html = page(lookup_page(&posted.viewer, form, None))?;
        return Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
    }
    let req = LookupRequest {
        identifiers,
        peers: Vec::new(),
    };
    let purpose = posted.get("purpose").to_owned();
    match c
        .alerts
        .lookup(request(&posted.viewer, req, &purpose))
        .await
    {
        Ok(r) => {
            let answers = answers_of(&c, &posted.viewer, r.into_inner()).await;
            page(lookup_page(&posted.viewer, form, Some(answers)))
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            form.add_violations(&violations(&s));
            let html = page(lookup_page(&posted.viewer, form, None))?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
        Err(s) => Err(s.into()),
    }
}
