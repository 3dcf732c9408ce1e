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

/// Hello tells each side the other's release and capabilities (`peers`
/// shows them); a caller of the previous release — protocol 1, nothing
/// announced — is answered with protocol 1; protocol ranges that do not
/// meet are refused naming both; a hostile announcement is refused naming
/// its entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_negotiates_the_protocol_and_announces_capabilities() {
    use casebridge::proto::v1::HelloRequest;
    use casebridge::proto::v1::peer_exchange_client::PeerExchangeClient;
    use casebridge::release::{Capabilities, PROTOCOL, RELEASE};
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let known = eventually("ngo's release known to police", || async {
        let p = ngo_as_seen_by_police(&fed).await;
        (!p.release.is_empty()).then_some(p)
    })
    .await;
    assert_eq!(known.release, RELEASE);
    assert_eq!(known.capabilities, Capabilities::ours().names());

    let mut peer = PeerExchangeClient::new(fed.peer_channel("ngo", "police").await);
    let previous = peer
        .hello(hello_as_unannounced_release("ngo"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        previous.protocol_version, 1,
        "a release from before announcements compares for equality"
    );
    assert_eq!(previous.release, RELEASE);
    let current = peer.hello(hello_as("ngo")).await.unwrap().into_inner();
    assert_eq!(current.protocol_version, PROTOCOL.newest);

    let future = peer
        .hello(HelloRequest {
            protocol_version: 9,
            oldest_protocol_version: 7,
            ..hello_as("ngo")
        })
        .await
        .unwrap_err();
    assert_eq!(future.code(), tonic::Code::FailedPrecondition);
    assert!(
        future.message().contains("7-9") && future.message().contains(&PROTOCOL.to_string()),
        "{}",
        future.message()
    );
    let hostile = HelloRequest {
        capabilities: vec!["alert".into(), "ALERT\nforged".into()],
        ..hello_as("ngo")
    };
    assert_invalid(peer.hello(hostile).await, "capabilities[1]");
}
