//! Certificates over time: a revoked peer or client is refused at the
//! handshake once the CRL is reloaded, and an open connection does not
//! outlive the connection-age bound; a certificate without the clientAuth
//! purpose is refused.

mod common;

use std::time::Duration;

use casebridge::certs::{FaultyClient, RevokeTarget, revoke};
use casebridge::client::NodeClient;
use casebridge::config::Bounded;
use casebridge::ids::ClientName;
use casebridge::proto::v1::GetStatusRequest;
use common::*;

fn fast_revocation(_: &casebridge::ids::AgencyId, c: &mut casebridge::config::NodeConfig) {
    c.tls.crl_reload_secs = Bounded::new(1);
    c.tls.max_connection_age_secs = Bounded::new(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_peer_is_cut_off_within_the_reload_and_age_bounds() {
    let fed = TestFederation::start_with(&["police", "ngo"], &[], fast_revocation).await;
    let mut cms = fed.client("police", "cms").await;
    let before = submit(&mut cms, "before revocation").await;
    fed.held("ngo", &before.id).await;
    // An open peer connection, as police, made before the revocation.
    let mut open = fed.peer_client("police", "ngo").await;
    open.hello(hello_as("police")).await.unwrap();

    revoke(&fed.layout.dir, &RevokeTarget::Node(agency("police"))).unwrap();
    // Reload (1 s) plus the age bound (3 s): the open connection is refused
    // from then on, and so is every new handshake.
    eventually("the open connection cut off", || {
        let mut open = open.clone();
        async move { open.hello(hello_as("police")).await.is_err().then_some(()) }
    })
    .await;
    for _ in 0..5 {
        assert!(
            open.hello(hello_as("police")).await.is_err(),
            "a revoked peer was served"
        );
        assert!(
            fed.peer_client_from(fed.pki("police"), &fed.layout.federation_ca, "ngo")
                .await
                .map(|_| ())
                .is_err()
                || fed
                    .peer_client("police", "ngo")
                    .await
                    .hello(hello_as("police"))
                    .await
                    .is_err(),
            "a new handshake with a revoked certificate succeeded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Police's own delivery to ngo stops too: the new alert stays queued.
    let after = submit(&mut cms, "after revocation").await;
    let peer = fed
        .peer_when("police", "a refused delivery attempt", |p| {
            p.queue_depth == 1 && p.retries > 0
        })
        .await;
    assert!(!peer.last_error.is_empty());
    assert!(!fed.alerts("ngo").await.iter().any(|a| a.id == after.id));
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_expired_and_wrong_purpose_client_certificates_are_refused() {
    let fed = TestFederation::start_with(&["police", "ngo"], &[], fast_revocation).await;
    let mut admin = fed.client("police", "admin").await;
    node_status(&mut admin).await;
    revoke(
        &fed.layout.dir,
        &RevokeTarget::Client(agency("police"), ClientName::new("admin").unwrap()),
    )
    .unwrap();
    eventually("the revoked client cut off", || {
        let mut admin = admin.clone();
        async move {
            admin
                .admin
                .get_status(GetStatusRequest {})
                .await
                .is_err()
                .then_some(())
        }
    })
    .await;
    if let Ok(mut c) = NodeClient::connect_file(fed.client_toml("police", "admin")).await {
        assert!(c.admin.get_status(GetStatusRequest {}).await.is_err());
    }
    // Other clients of the same CA are unaffected.
    let mut analyst = fed.client("police", "analyst").await;
    analyst
        .alerts
        .list_alerts(casebridge::proto::v1::ListAlertsRequest::default())
        .await
        .unwrap();

    // Signed by the right CA, but for serverAuth only, or expired.
    for fault in [FaultyClient::ServerAuthOnly, FaultyClient::Expired] {
        let (cert, key) = fed.faulty_client("police", "analyst", fault);
        if let Ok(mut c) = fed.client_presenting((&cert, &key), "police").await {
            assert!(
                c.alerts
                    .list_alerts(casebridge::proto::v1::ListAlertsRequest::default())
                    .await
                    .is_err(),
                "a {fault:?} certificate was accepted"
            );
        }
    }
    fed.shutdown().await;
}
