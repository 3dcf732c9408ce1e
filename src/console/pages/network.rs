//! The network view of one alert (role `read`): the cases this node knows
//! to be linked to it through hits — exact, likely or confirmed, with the
//! identifier type and agency of each link — drawn as a graph with the
//! same in a table, hubs capped, and "find the chain" to another alert.
//! Other agencies' alerts appear by id and agency only.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use crate::console::Console;
use crate::console::graph::{draw, short};
use crate::console::rpc::request;
use crate::console::view::{Chrome, PageError, Viewer, page};
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::{GetAlertNetworkRequest, IdentifierType, MatchStrength};

pub fn routes() -> Router<Console> {
    Router::new().route("/alerts/{id}/network", get(show))
}

#[derive(Deserialize)]
struct Find {
    #[serde(default)]
    to: String,
}

/// One link, in words.
pub struct LinkRow {
    pub from: String,
    pub to: String,
    pub to_id: String,
    pub to_agency: String,
    pub link: String,
}

#[derive(Template)]
#[template(path = "console/network.html")]
struct NetworkPage {
    chrome: Chrome,
    id: String,
    to: String,
    svg: String,
    summary: String,
    links: Vec<LinkRow>,
    path: Vec<String>,
    truncated: bool,
}

async fn show(
    State(c): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(find): Query<Find>,
) -> Result<Response, PageError> {
    let to = find.to.trim().to_owned();
    let req = GetAlertNetworkRequest {
        alert_id: id.clone(),
        to_alert_id: to.clone(),
    };
    let net = c
        .alerts
        .get_alert_network(request(&viewer, req, ""))
        .await?
        .into_inner();
    let agencies: std::collections::BTreeSet<&str> = net
        .nodes
        .iter()
        .filter(|n| n.hub_links == 0)
        .map(|n| n.agency.as_str())
        .collect();
    let summary = format!(
        "{} alerts of {} agencies linked to this one by {} links{}",
        net.nodes
            .iter()
            .filter(|n| n.hub_links == 0)
            .count()
            .saturating_sub(1),
        agencies.len(),
        net.edges.len(),
        if net.nodes.iter().any(|n| n.hub_links > 0) {
            "; identifiers linking many alerts are shown as one hub"
        } else {
            ""
        }
    );
    let links = net
        .edges
        .iter()
        .map(|e| {
            let node = net.nodes.iter().find(|n| n.id == e.to);
            LinkRow {
                from: short(&e.from),
                to: node.filter(|n| n.hub_links > 0).map_or_else(
                    || short(&e.to),
                    |n| format!("{} alerts (not shown)", n.hub_links),
                ),
                to_id: if node.is_some_and(|n| n.hub_links > 0) {
                    String::new()
                } else {
                    e.to.clone()
                },
                to_agency: node.map(|n| n.agency.clone()).unwrap_or_default(),
                link: words(e.r#type, e.strength, e.confirmed),
            }
        })
        .collect();
    page(NetworkPage {
        chrome: Chrome::new(&viewer, "alerts"),
        svg: draw(&net, &summary),
        summary,
        links,
        path: net.path.iter().map(|p| short(p)).collect(),
        truncated: net.truncated,
        id,
        to,
    })
}

/// "phone, exact", "person, likely, confirmed".
fn words(kind: i32, strength: i32, confirmed: bool) -> String {
    let kind = IdentifierType::try_from(kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("IDENTIFIER_TYPE_")
                .to_lowercase()
                .replace('_', " ")
        })
        .unwrap_or_default();
    let strength = MatchStrength::try_from(strength)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("MATCH_STRENGTH_")
                .to_lowercase()
        })
        .unwrap_or_default();
    match (strength.as_str(), confirmed) {
        ("unspecified", _) => kind,
        (s, true) => format!("{kind}, {s}, confirmed"),
        (s, false) => format!("{kind}, {s}"),
    }
}
