//! The first page: is the node well, are the peers getting what we send,
//! what was found lately, which requests are late, and the last two weeks
//! in pictures.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::common::{CaseRow, case_row};
use crate::config::Role;
use crate::console::Console;
use crate::console::chart::{Series, bars};
use crate::console::rpc::request;
use crate::console::view::{Chrome, PageError, Viewer, label, page, when};
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::disclosure_service_server::DisclosureService;
use crate::proto::v1::{
    ActivityDay, CountHitsRequest, GetActivityRequest, GetStatusRequest, Hit, HitChange,
    ListDisclosureRequestsRequest, ListPeersRequest, NodeStatus, PeerStatus,
};

/// Hits the overview lists.
const RECENT_HITS: u64 = 10;
/// Days the charts cover.
const CHART_DAYS: u32 = 14;

pub struct PeerRow {
    pub agency: String,
    pub state: String,
    /// The peer's release, and the capabilities it announced (its title).
    pub release: String,
    pub capabilities: String,
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
    overdue: Vec<CaseRow>,
    sees_requests: bool,
    charts: Vec<Chart>,
}

/// One chart with its caption, and the same in words.
pub struct Chart {
    pub title: &'static str,
    pub summary: String,
    pub svg: String,
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
    let sees_requests = viewer.may(Role::Request) || viewer.may(Role::Disclose);
    let overdue = if sees_requests {
        let req = ListDisclosureRequestsRequest {
            overdue_only: true,
            page_size: 20,
            ..Default::default()
        };
        c.disclosure
            .list_disclosure_requests(request(&viewer, req, ""))
            .await?
            .into_inner()
            .requests
            .iter()
            .map(case_row)
            .collect()
    } else {
        Vec::new()
    };
    let charts = if viewer.may(Role::Read) || viewer.may(Role::Admin) {
        let days = c
            .admin
            .get_activity(request(
                &viewer,
                GetActivityRequest { days: CHART_DAYS },
                "",
            ))
            .await?
            .into_inner()
            .days;
        charts(&days)
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
        overdue,
        sees_requests,
        charts,
    })
}

/// Alerts, hits and delivery latency per day, as SVG.
fn charts(days: &[ActivityDay]) -> Vec<Chart> {
    let labels: Vec<String> = days.iter().map(|d| d.day.clone()).collect();
    let total = |f: fn(&ActivityDay) -> u64| days.iter().map(f).sum::<u64>();
    let series = |f: fn(&ActivityDay) -> u64| days.iter().map(|d| f(d) as f64).collect();
    let deliveries = total(|d| d.deliveries);
    let mean_latency: Vec<f64> = days
        .iter()
        .map(|d| {
            if d.deliveries == 0 {
                0.0
            } else {
                d.delivery_latency_ms_total as f64 / d.deliveries as f64 / 1000.0
            }
        })
        .collect();
    let slowest = days
        .iter()
        .map(|d| d.delivery_latency_ms_max)
        .max()
        .unwrap_or(0) as f64
        / 1000.0;
    vec![
        chart(
            "Alerts per day",
            format!(
                "{} recorded here and {} received in the last {} days",
                total(|d| d.submitted),
                total(|d| d.received),
                days.len()
            ),
            &labels,
            &[
                Series {
                    name: "recorded here",
                    values: series(|d| d.submitted),
                    color: "#0b5cad",
                },
                Series {
                    name: "received",
                    values: series(|d| d.received),
                    color: "#7cc4fa",
                },
            ],
            "",
        ),
        chart(
            "Hits per day",
            format!(
                "{} hits found in the last {} days",
                total(|d| d.hits),
                days.len()
            ),
            &labels,
            &[Series {
                name: "hits",
                values: series(|d| d.hits),
                color: "#1a7f37",
            }],
            "",
        ),
        chart(
            "Delivery time (seconds, mean per day)",
            format!("{deliveries} deliveries acknowledged; the slowest took {slowest:.1} s"),
            &labels,
            &[Series {
                name: "mean seconds to acknowledgement",
                values: mean_latency,
                color: "#8a5300",
            }],
            " s",
        ),
    ]
}

fn chart(
    title: &'static str,
    summary: String,
    labels: &[String],
    series: &[Series],
    unit: &str,
) -> Chart {
    Chart {
        svg: bars(title, &summary, labels, series, unit),
        title,
        summary,
    }
}

/// The last hits of the log, oldest first.
pub async fn recent_hits(c: &Console, viewer: &Viewer) -> Result<Vec<Hit>, PageError> {
    let latest = c
        .alerts
        .count_hits(request(viewer, CountHitsRequest { after_sequence: 0 }, ""))
        .await?
        .into_inner()
        .latest_sequence;
    super::common::log_after(c, viewer, latest.saturating_sub(RECENT_HITS)).await
}

fn peer_row(p: &PeerStatus) -> PeerRow {
    PeerRow {
        agency: p.agency_id.clone(),
        state: p.state.clone(),
        release: p.release.clone(),
        capabilities: p.capabilities.join(" "),
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
        strength: super::common::strength(h).0,
        other_agency: h.other_agency.clone(),
        detected: when(h.detected_at.as_ref()),
    }
}
