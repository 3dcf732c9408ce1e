//! What `peers` says about a link is a fact: an idle, reachable peer is up
//! (the node greets it at start and now and then), a peer that went away is
//! down with the error and its time, and once it is back the old error is
//! gone rather than shown as if current.

mod common;

use casebridge::config::Bounded;
use casebridge::proto::v1::PeerStatus;
use common::*;

async fn ngo_as_seen_by_police(fed: &TestFederation) -> PeerStatus {
    fed.peers("police")
        .await
        .into_iter()
        .find(|p| p.agency_id == "ngo")
        .expect("ngo is a configured peer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_peer_is_up_a_gone_one_down_and_an_old_error_goes() {
    let mut fed = TestFederation::start_with(&["police", "ngo"], &[], |_, c| {
        c.delivery.probe_interval_secs = Bounded::new(1);
    })
    .await;
    // Nothing is ever submitted: no delivery stream, only greetings.
    let idle = eventually("ngo up while idle", || async {
        let p = ngo_as_seen_by_police(&fed).await;
        (p.state == "up").then_some(p)
    })
    .await;
    assert_eq!(idle.queue_depth, 0);
    assert!(idle.last_contact_at.is_some());
    // ngo greets police too: police knows when ngo's certificate ends
    // (development certificates: 397 days).
    let known = eventually("ngo's certificate end known", || async {
        let p = ngo_as_seen_by_police(&fed).await;
        p.certificate_not_after.is_some().then_some(p)
    })
    .await;
    assert!(
        (390..=397).contains(&known.certificate_days_left),
        "{known:?}"
    );
    let status = fed.status("police").await;
    let names: Vec<&str> = status
        .certificates
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["node", "federation CA", "client CA"]);
    assert!(
        status.certificates.iter().all(|c| c.days_left > 300),
        "{status:?}"
    );
    assert!(idle.last_error.is_empty() && idle.last_error_at.is_none());

    fed.stop_node("ngo").await;
    let gone = eventually("ngo down once it is gone", || async {
        let p = ngo_as_seen_by_police(&fed).await;
        (p.state == "down").then_some(p)
    })
    .await;
    assert!(!gone.last_error.is_empty(), "{gone:?}");
    assert!(gone.last_error_at.is_some());

    fed.start_node("ngo").await;
    let back = eventually("ngo up again", || async {
        let p = ngo_as_seen_by_police(&fed).await;
        (p.state == "up").then_some(p)
    })
    .await;
    assert!(
        back.last_error.is_empty() && back.last_error_at.is_none(),
        "a recovered link shows no old error: {back:?}"
    );
    fed.shutdown().await;
}
