//! The first page: is the node well, are the peers getting what we send,
//! what was found lately.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use futures_util::StreamExt;

use crate::config::Role;
use crate::console::Console;
use crate::console::guard::Viewer;
use crate::console::rpc::request;
use crate::console::view::{Chrome, PageError, label, page, when};
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::{
    CountHitsRequest, GetStatusRequest, Hit, HitChange, ListPeersRequest, NodeStatus, PeerStatus,
    WatchHitsRequest,
};

/// Hits the overview lists.
const RECENT_HITS: u64 = 10;

pub struct PeerRow {
    pub agency: String,
    pub state: String,
    pub queue: u64,
    pub oldest: String,
    pub last_ack: String,
    pub last_error: String,
}

pub struct HitRow {
    pub number: u64,
    pub kind: String,
    pub strength: String,
    pub other_agency: String,
    pub detected: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct Overview {
    chrome: Chrome,
    status: Option<NodeStatus>,
    started: String,
    peers: Vec<PeerRow>,
    hits: Vec<HitRow>,
}

pub async fn show(State(c): State<Console>, viewer: Viewer) -> Result<Response, PageError> {
    let (status, peers) = if viewer.may(Role::Admin) {
        let status = c
            .admin
            .get_status(request(&viewer, GetStatusRequest {}, ""))
            .await?
            .into_inner();
        let peers = c
            .admin
            .list_peers(request(&viewer, ListPeersRequest {}, ""))
            .await?
            .into_inner()
            .peers;
        (Some(status), peers)
    } else {
        (None, Vec::new())
    };
    let hits = if viewer.may(Role::Read) {
        recent_hits(&c, &viewer).await?
    } else {
        Vec::new()
    };
    page(Overview {
        chrome: Chrome::new(&viewer, "overview"),
        started: when(status.as_ref().and_then(|s| s.started_at.as_ref())),
        status,
        peers: peers.iter().map(peer_row).collect(),
        hits: hits
            .iter()
            .rev()
            .filter(|h| h.change() == HitChange::Found)
            .map(hit_row)
            .collect(),
    })
}

/// The last hits of the log, oldest first.
pub async fn recent_hits(c: &Console, viewer: &Viewer) -> Result<Vec<Hit>, PageError> {
    let latest = c
        .alerts
        .count_hits(request(viewer, CountHitsRequest { after_sequence: 0 }, ""))
        .await?
        .into_inner()
        .latest_sequence;
    let watch = WatchHitsRequest {
        after_sequence: latest.saturating_sub(RECENT_HITS),
        backlog_only: true,
    };
    let mut stream = c
        .alerts
        .watch_hits(request(viewer, watch, ""))
        .await?
        .into_inner();
    let mut hits = Vec::new();
    while let Some(hit) = stream.next().await {
        hits.push(hit?);
    }
    Ok(hits)
}

fn peer_row(p: &PeerStatus) -> PeerRow {
    PeerRow {
        agency: p.agency_id.clone(),
        state: p.state.clone(),
        queue: p.queue_depth,
        oldest: when(p.oldest_undelivered_at.as_ref()),
        last_ack: when(p.last_ack_at.as_ref()),
        last_error: p.last_error.clone(),
    }
}

pub fn hit_row(h: &Hit) -> HitRow {
    HitRow {
        number: h.number,
        kind: label(h.r#type().as_str_name(), "IDENTIFIER_TYPE_"),
        strength: if h.fuzzy {
            format!(
                "fuzzy, {}",
                label(h.strength().as_str_name(), "MATCH_STRENGTH_").to_lowercase()
            )
        } else {
            "exact".into()
        },
        other_agency: h.other_agency.clone(),
        detected: when(h.detected_at.as_ref()),
    }
}
