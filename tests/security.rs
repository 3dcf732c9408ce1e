//! Who may talk to a node: certificates, federations, configured peers, roles,
//! and origin checks on delivered envelopes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use casebridge::certs::{NodeAddrs, init_federation, write_foreign_client};
use casebridge::client::NodeClient;
use casebridge::identity::{NodeIdentity, connect_channel};
use casebridge::ids::FederationName;
use casebridge::proto::v1::envelope::Payload;
use casebridge::proto::v1::{
    AckStatus, GetStatusRequest, ListAlertsRequest, SharedAlert, SubmitAlertRequest,
};
use common::*;
use tonic::Code;

fn police_node() -> NodeIdentity {
    NodeIdentity {
        federation: FederationName::new(FEDERATION).unwrap(),
        agency: agency("police"),
    }
}

/// The client API refuses a call; TLS failures surface as a transport-level
/// status (the handshake is rejected before any RPC runs).
async fn assert_refused(mut client: NodeClient) {
    let err = client
        .alerts
        .list_alerts(ListAlertsRequest::default())
        .await
        .expect_err("call without an acceptable certificate succeeded");
    assert_ne!(err.code(), Code::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused() {
    let fed = TestFederation::start(&["police"]).await;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        for c in casebridge::identity::load_certs(&fed.layout.federation_ca).unwrap() {
            roots.add(c).unwrap();
        }
        roots
    })
    .with_no_client_auth();
    let mut tls = tls;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let addr = fed.layout.agencies[&agency("police")]
        .addrs
        .client
        .to_string();
    // The handshake itself may fail, or the first RPC: both are refusals.
    if let Ok(channel) = connect_channel(
        &addr,
        (police_node(), None),
        Arc::new(tls),
        Duration::from_secs(5),
    )
    .await
    {
        assert_refused(NodeClient::from_channel(channel)).await;
    }
    // Control: the same listener serves a client with a proper certificate.
    assert!(fed.alerts("police").await.is_empty());
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_another_ca_is_refused() {
    let fed = TestFederation::start(&["police"]).await;
    // Same SPIFFE id as the real `cms` client, signed by a CA the node does not trust.
    let (cert, key) = write_foreign_client(
        &client_identity("police", "cms"),
        &fed.dir.path().join("foreign"),
    )
    .unwrap();
    if let Ok(client) = fed.client_presenting((&cert, &key), "police").await {
        assert_refused(client).await;
    }
    assert!(fed.alerts("police").await.is_empty());
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_certificate_from_another_federation_is_refused() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    // A second federation that also has an agency called `ngo`.
    let other_dir = fed.dir.path().join("other");
    let mut addrs = BTreeMap::new();
    addrs.insert(
        agency("ngo"),
        NodeAddrs {
            peer: "127.0.0.1:1".parse().unwrap(),
            client: "127.0.0.1:2".parse().unwrap(),
            console: None,
            intake: None,
        },
    );
    let other = init_federation(
        &FederationName::new("other.fed").unwrap(),
        &addrs,
        &other_dir,
    )
    .unwrap();
    let impostor = other.agencies[&agency("ngo")].dir.clone();
    // Even trusting the right CA for the server, the impostor's own cert is refused.
    let result = fed
        .peer_client_from(&impostor, &fed.layout.federation_ca, "police")
        .await;
    if let Ok(mut client) = result {
        let err = client
            .hello(hello_as("ngo"))
            .await
            .expect_err("foreign federation node was accepted");
        assert_ne!(err.code(), Code::Ok);
    }
    // Control: the genuine `ngo` node is accepted on the same listener.
    let mut genuine = fed.peer_client("ngo", "police").await;
    genuine.hello(hello_as("ngo")).await.unwrap();
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_not_in_config_is_refused() {
    // `rogue` holds a valid federation certificate but police does not list it.
    let fed = TestFederation::start_with(&["police", "ngo", "rogue"], &[], |a, cfg| {
        if a.as_str() == "police" {
            cfg.peers
                .retain(|p| p.agency_id.get_ref().as_str() != "rogue");
            // Its generated policy names `rogue`, which is no longer a peer.
            cfg.sharing.policy = None;
        }
    })
    .await;
    let mut rogue = fed.peer_client("rogue", "police").await;
    let err = rogue.hello(hello_as("rogue")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("not a configured peer"),
        "{}",
        err.message()
    );

    // A configured peer is welcome.
    let mut ngo = fed.peer_client("ngo", "police").await;
    let hello = ngo.hello(hello_as("ngo")).await.unwrap().into_inner();
    assert_eq!(hello.agency_id, "police");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced_per_rpc() {
    let fed = TestFederation::start(&["police"]).await;
    let mut analyst = fed.client("police", "analyst").await;
    let err = analyst
        .alerts
        .submit_alert(SubmitAlertRequest {
            draft: Some(sample_draft("x")),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("submit"), "{}", err.message());
    let err = analyst
        .admin
        .get_status(GetStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // cms may submit and read but not administer.
    let mut cms = fed.client("police", "cms").await;
    submit(&mut cms, "allowed").await;
    assert_eq!(
        cms.admin
            .get_status(GetStatusRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(fed.alerts("police").await.len(), 1);
    // A node certificate cannot use the client API: it is not from the client CA.
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_claiming_another_origin_is_rejected() {
    let fed = TestFederation::start(&["police", "labour", "ngo"]).await;
    let forged = SharedAlert {
        id: "labour:01a22300-0000-7000-8000-000000000001".into(),
        origin: "labour".into(),
        version: 1,
        content: sample_draft("forged").content,
        ..Default::default()
    };
    let err = fed
        .deliver_one("ngo", "police", envelope(1, Payload::Alert(forged)))
        .await
        .expect_err("forged envelope was acknowledged");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("labour"), "{}", err.message());

    // The id may also not smuggle another origin behind a truthful origin field.
    let smuggled = SharedAlert {
        id: "labour:01a22300-0000-7000-8000-000000000002".into(),
        origin: "ngo".into(),
        version: 1,
        content: sample_draft("smuggled").content,
        ..Default::default()
    };
    let err = fed
        .deliver_one("ngo", "police", envelope(1, Payload::Alert(smuggled)))
        .await
        .expect_err("smuggled origin was acknowledged");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(fed.alerts("police").await.is_empty(), "nothing stored");

    // A truthful envelope with invalid content is acked REJECTED (no retry loop) and not stored.
    let mut content = sample_draft("bad").content.unwrap();
    content.category = 0;
    let bad = SharedAlert {
        id: "ngo:01a22300-0000-7000-8000-000000000003".into(),
        origin: "ngo".into(),
        version: 1,
        content: Some(content),
        ..Default::default()
    };
    let ack = fed
        .deliver_one("ngo", "police", envelope(9, Payload::Alert(bad)))
        .await
        .unwrap();
    assert_eq!(ack.sequence, 9);
    assert_eq!(ack.status, AckStatus::Rejected as i32);
    assert!(ack.reason.contains("category"), "{}", ack.reason);
    assert!(fed.alerts("police").await.is_empty(), "nothing stored");
    fed.shutdown().await;
}
