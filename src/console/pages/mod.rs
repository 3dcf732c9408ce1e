//! The console's pages, one module a section. Handlers are thin: take the
//! viewer (or a posted form), call the node's services through
//! [`super::rpc`], and render a template.
//!
//! The sections: `overview`; `alerts` (with the export button); `hits`;
//! `lookup` (asking the federation); `network` (the cases linked to an
//! alert through hits, as a graph, and the chain between two); `requests` (with the statistics) and
//! `releases` (with the holder's withdrawal); `policy`; `audit`; `admin`
//! (backup, reshare, withdrawal from a peer); `directory` (the federation
//! directory in force, its members and history); `statistics` (the
//! federation's private statistics: plan, tables, charts); `reports` (the
//! public intake's inbox, a report, replies and closing); `import` (an upload into
//! `uploads/` beside the store, owner-only and emptied at start; checked
//! row by row, then run with progress through `tabular::job` as the
//! viewer). The components they share: `common` (dates, an alert's content
//! and people, hit strength and log, request rows and countdowns, handling
//! codes in words), `form`, `alert_form` (form <-> draft), `people` (the
//! form's person blocks, any number, each identifier kind a list, so every
//! alert the API takes can be edited), `release_offer` (the decision form,
//! limited to the `[[disclosure]]` maximum) and `request_form` (the
//! disclosure request about a hit or a looked-up alert). No section uses
//! another (`tests/tidy.rs` checks it).

mod admin;
mod alert_form;
mod alerts;
mod assets;
mod audit;
mod common;
mod directory;
mod form;
mod hits;
mod import;
mod lookup;
mod network;
mod overview;
mod people;
mod policy;
mod release_offer;
mod releases;
mod reports;
mod request_form;
mod requests;
mod statistics;

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
        .merge(directory::routes())
        .merge(statistics::routes())
        .merge(network::routes())
        .merge(import::routes())
        .merge(reports::routes())
        .fallback(not_found)
}

async fn not_found() -> super::view::PageError {
    super::view::PageError::NotFound("there is no such page in the console".into())
}
