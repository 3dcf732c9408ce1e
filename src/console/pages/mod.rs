//! The console's pages, one module a section. Handlers are thin: take the
//! viewer (or a posted form), call the node's services through
//! [`super::rpc`], and render a template.

mod admin;
mod alert_form;
mod alerts;
mod assets;
mod audit;
mod common;
mod form;
mod hits;
mod import;
mod lookup;
mod overview;
mod people;
mod policy;
mod release_offer;
mod releases;
mod request_form;
mod requests;

use axum::Router;
use axum::routing::get;

use super::Console;

pub use import::clear_uploads;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/", get(overview::show))
        .route("/assets/console.css", get(assets::stylesheet))
        .merge(alerts::routes())
        .merge(hits::routes())
        .merge(lookup::routes())
        .merge(requests::routes())
        .merge(releases::routes())
        .merge(request_form::routes())
        .merge(policy::routes())
        .merge(audit::routes())
        .merge(admin::routes())
        .merge(import::routes())
        .fallback(not_found)
}

async fn not_found() -> super::view::PageError {
    super::view::PageError::NotFound("there is no such page in the console".into())
}
