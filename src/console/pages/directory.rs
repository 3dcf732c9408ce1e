//! The federation directory (role `admin`): the version in force, who
//! signed it and when it expires (a countdown, and a warning once it has
//! expired), every member with its groups and the state of this node's
//! link to it, and the versions adopted before. Read-only: a directory is
//! published with `casebridge directory publish`.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use crate::console::Console;
use crate::console::rpc::request;
use crate::console::view::{Chrome, PageError, Viewer, page, when};
use crate::directory::Signed;
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::{
    DirectoryHealth, GetDirectoryRequest, GetStatusRequest, ListPeersRequest, PeerStatus,
};

pub fn routes() -> Router<Console> {
    Router::new().route("/directory", get(show))
}

pub struct MemberRow {
    pub agency: String,
    pub name: String,
    pub kind: String,
    pub groups: String,
    pub endpoints: String,
    pub suspended: bool,
    /// This node's link to it (`up`, `down`, `left`…), "this node" for itself.
    pub link: String,
    pub held: u64,
}

pub struct SignerRow {
    pub name: String,
    pub signed: bool,
}

pub struct AdoptionRow {
    pub version: u64,
    pub at: String,
    pub source: String,
}

/// The directory in force, as shown.
pub struct InForce {
    pub federation: String,
    pub version: u64,
    pub issued: String,
    pub expires: String,
    /// "in 29 days 23 hours", or how long ago it expired.
    pub countdown: String,
    pub threshold: u32,
    pub signers: Vec<SignerRow>,
    pub members: Vec<MemberRow>,
}

#[derive(Template)]
#[template(path = "console/directory.html")]
struct DirectoryPage {
    chrome: Chrome,
    current: Option<InForce>,
    health: Option<DirectoryHealth>,
    hold_at: String,
    adopted: Vec<AdoptionRow>,
}

async fn show(State(c): State<Console>, viewer: Viewer) -> Result<Response, PageError> {
    let state = c
        .admin
        .get_directory(request(&viewer, GetDirectoryRequest {}, ""))
        .await?
        .into_inner();
    let health = c
        .admin
        .get_status(request(&viewer, GetStatusRequest {}, ""))
        .await?
        .into_inner()
        .directory;
    let peers = c
        .admin
        .list_peers(request(&viewer, ListPeersRequest {}, ""))
        .await?
        .into_inner()
        .peers;
    let current = state
        .current
        .and_then(|c| Signed::open(c).ok())
        .map(|s| in_force(&s, &peers, &viewer.client.agency.to_string()));
    page(DirectoryPage {
        chrome: Chrome::new(&viewer, "directory"),
        current,
        hold_at: when(health.as_ref().and_then(|h| h.hold_at.as_ref())),
        health,
        adopted: state
            .adopted
            .iter()
            .map(|a| AdoptionRow {
                version: a.version,
                at: when(a.adopted_at.as_ref()),
                source: a.source.clone(),
            })
            .collect(),
    })
}

fn in_force(s: &Signed, peers: &[PeerStatus], own: &str) -> InForce {
    let d = s.directory();
    let set = d.signers.clone().unwrap_or_default();
    let by = s.signed_by(&set);
    let signers = set
        .signers
        .iter()
        .map(|x| SignerRow {
            name: x.name.clone(),
            signed: crate::ed25519::PublicKey::from_raw(&x.public_key)
                .is_some_and(|k| by.contains(&k)),
        })
        .collect();
    let members = d
        .members
        .iter()
        .map(|m| {
            let peer = peers.iter().find(|p| p.agency_id == m.agency_id);
            MemberRow {
                agency: m.agency_id.clone(),
                name: m.display_name.clone(),
                kind: m.kind.replace('_', " "),
                groups: m.groups.join(", "),
                endpoints: m.endpoints.join(", "),
                suspended: m.suspended,
                link: match peer {
                    _ if m.agency_id == own => "this node".into(),
                    Some(p) => p.state.clone(),
                    None => "—".into(),
                },
                held: peer.map_or(0, |p| p.held.values().sum()),
            }
        })
        .collect();
    let at = |secs: i64| {
        when(Some(&pbjson_types::Timestamp {
            seconds: secs,
            nanos: 0,
        }))
    };
    InForce {
        federation: d.federation.clone(),
        version: d.version,
        issued: at(d.issued_at),
        expires: at(d.expires_at),
        countdown: countdown(d.expires_at - crate::time::now_ms() / 1000),
        threshold: set.threshold,
        signers,
        members,
    }
}

/// "in 3 days 4 hours", "in 12 minutes", or "3 hours ago".
fn countdown(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let (days, hours, minutes) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    let span = if days > 0 {
        format!("{days} days {hours} hours")
    } else if hours > 0 {
        format!("{hours} hours {minutes} minutes")
    } else {
        format!("{minutes} minutes")
    };
    if secs >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn countdowns_read_plainly() {
        assert_eq!(super::countdown(30 * 86_400 - 60), "in 29 days 23 hours");
        assert_eq!(super::countdown(3_660), "in 1 hours 1 minutes");
        assert_eq!(super::countdown(-7_200), "2 hours 0 minutes ago");
    }
}
