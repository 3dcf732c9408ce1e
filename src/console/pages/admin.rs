//! Administration (role `admin`): what the command line lets the NGO's
//! administrator do besides the policy and the audit log — back up the
//! store while the node runs, share its alerts again with a peer, and
//! withdraw them from one — each a form whose dry run says what would
//! happen before anything does.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::form::{Choice, FormState, choices};
use crate::console::Console;
use crate::console::guard::Posted;
use crate::console::rpc::{request, violations};
use crate::console::view::{Chrome, PageError, Viewer, page};
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::{
    AlertFilter, BackfillResponse, BackupStoreRequest, BackupStoreResponse, Category,
    ListPeersRequest, ReshareRequest, RetractFromPeerRequest,
};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/admin", get(show))
        .route("/admin/backup", post(backup))
        .route("/admin/reshare", post(reshare))
        .route("/admin/withdraw", post(withdraw))
}

/// What the last action did, shown above the forms.
enum Done {
    Backup(BackupStoreResponse),
    Backfill {
        what: &'static str,
        peer: String,
        dry_run: bool,
        answer: BackfillResponse,
    },
}

#[derive(Template)]
#[template(path = "console/admin.html")]
struct AdminPage {
    chrome: Chrome,
    peers: Vec<String>,
    categories: Vec<Choice>,
    done: Option<Done>,
    form: FormState,
}

async fn render(
    c: &Console,
    viewer: &Viewer,
    done: Option<Done>,
    form: FormState,
) -> Result<Response, PageError> {
    let peers = c
        .admin
        .list_peers(request(viewer, ListPeersRequest {}, ""))
        .await?
        .into_inner()
        .peers
        .into_iter()
        .map(|p| p.agency_id)
        .collect();
    page(AdminPage {
        chrome: Chrome::new(viewer, "admin"),
        peers,
        categories: choices!(Category, "CATEGORY_"),
        done,
        form,
    })
}

async fn show(State(c): State<Console>, viewer: Viewer) -> Result<Response, PageError> {
    let mut form = FormState::default();
    form.set("dry_run", "yes");
    render(&c, &viewer, None, form).await
}

/// The form again with the node's refusal at its fields (422).
async fn refused(
    c: &Console,
    viewer: &Viewer,
    mut form: FormState,
    status: &tonic::Status,
) -> Result<Response, PageError> {
    form.add_violations(&violations(status));
    let html = render(c, viewer, None, form).await?;
    Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
}

async fn backup(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    form.map_path("label", "label");
    let req = BackupStoreRequest {
        label: form.value("label").to_owned(),
    };
    match c.admin.backup_store(request(&posted.viewer, req, "")).await {
        Ok(r) => {
            let done = Done::Backup(r.into_inner());
            render(&c, &posted.viewer, Some(done), FormState::default()).await
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            refused(&c, &posted.viewer, form, &s).await
        }
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            form.add_error("label", s.message().to_owned());
            let html = render(&c, &posted.viewer, None, form).await?;
            Ok((axum::http::StatusCode::CONFLICT, html).into_response())
        }
        Err(s) => Err(s.into()),
    }
}

/// The peer, filter and dry-run choice of a reshare or withdrawal form.
fn backfill_of(form: &mut FormState) -> (String, AlertFilter, bool) {
    form.map_path("peer", "peer");
    form.map_path("filter.category", "category");
    let category = Category::from_str_name(form.value("category")).unwrap_or_default();
    (
        form.value("peer").to_owned(),
        AlertFilter {
            category: category as i32,
            ..Default::default()
        },
        form.has("dry_run", "yes"),
    )
}

async fn reshare(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    let (peer, filter, dry_run) = backfill_of(&mut form);
    let req = ReshareRequest {
        peer: peer.clone(),
        filter: Some(filter),
        dry_run,
    };
    let answer = c.admin.reshare(request(&posted.viewer, req, "")).await;
    let what = ("share again with", peer, dry_run);
    backfilled(&c, &posted.viewer, form, what, answer).await
}

async fn withdraw(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let mut form = FormState::from_fields(&posted.fields);
    let (peer, filter, dry_run) = backfill_of(&mut form);
    form.map_path("reason", "reason");
    let req = RetractFromPeerRequest {
        peer: peer.clone(),
        filter: Some(filter),
        reason: form.value("reason").to_owned(),
        dry_run,
    };
    let answer = c
        .admin
        .retract_from_peer(request(&posted.viewer, req, ""))
        .await;
    let what = ("withdraw from", peer, dry_run);
    backfilled(&c, &posted.viewer, form, what, answer).await
}

/// The page after a reshare or withdrawal: what it did (or would do), or
/// the form with the node's refusal at its fields.
async fn backfilled(
    c: &Console,
    viewer: &Viewer,
    form: FormState,
    (what, peer, dry_run): (&'static str, String, bool),
    answer: Result<tonic::Response<BackfillResponse>, tonic::Status>,
) -> Result<Response, PageError> {
    match answer {
        Ok(r) => {
            let done = Done::Backfill {
                what,
                peer,
                dry_run,
                answer: r.into_inner(),
            };
            render(c, viewer, Some(done), form).await
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => refused(c, viewer, form, &s).await,
        Err(s) => Err(s.into()),
    }
}
