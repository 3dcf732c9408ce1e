//! Generic gRPC tooling works on both listeners: standard health and server
//! reflection. Health goes NOT_SERVING as soon as shutdown starts, while
//! open connections are still served during the drain grace.

mod common;

use casebridge::config::Bounded;
use common::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn status(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> Result<i32, tonic::Status> {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
}

async fn try_services(channel: tonic::transport::Channel) -> Result<Vec<String>, tonic::Status> {
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    match stream.message().await?.unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            let mut names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
            names.sort();
            Ok(names)
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn services(channel: tonic::transport::Channel) -> Vec<String> {
    try_services(channel).await.unwrap()
}

/// Health and reflection are for callers that may use the listener: on the
/// peer listener a configured peer only (not another agency of the
/// federation, not this node's own certificate); and each listener's
/// reflection lists the services it serves, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_only_who_may_use_the_listener() {
    let fed = TestFederation::start_with(&["police", "ngo", "labour"], &[], |a, c| {
        if a.as_str() == "police" {
            c.peers
                .retain(|p| p.agency_id.get_ref().as_str() != "labour");
            c.sharing.policy = None; // the development policy names labour
        }
    })
    .await;
    for stranger in ["labour", "police"] {
        let channel = fed.peer_channel(stranger, "police").await;
        let health = status(&mut HealthClient::new(channel.clone()), "").await;
        assert_eq!(
            health.map_err(|s| s.code()),
            Err(tonic::Code::PermissionDenied),
            "{stranger}'s node certificate got health"
        );
        let listed = try_services(channel).await;
        assert_eq!(
            listed.map_err(|s| s.code()),
            Err(tonic::Code::PermissionDenied),
            "{stranger}'s node certificate got reflection"
        );
    }
    let peer = fed.peer_channel("ngo", "police").await;
    assert_eq!(
        status(&mut HealthClient::new(peer.clone()), "")
            .await
            .unwrap(),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        services(peer).await,
        [
            "casebridge.v1.PeerExchange",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection"
        ]
    );
    let client = fed.client("police", "analyst").await.channel;
    assert_eq!(
        services(client).await,
        [
            "casebridge.v1.AdminService",
            "casebridge.v1.AlertService",
            "casebridge.v1.DisclosureService",
            "casebridge.v1.ReportService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection"
        ]
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_on_both_listeners_and_not_serving_while_draining() {
    let mut fed = TestFederation::start_with(&["police", "ngo"], &[], |a, c| {
        if a.as_str() == "police" {
            c.limits.drain_grace_secs = Bounded::new(2);
            c.metrics.listen = Some(toml::Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()));
        }
    })
    .await;
    let client_channel = fed.client("police", "analyst").await.channel;
    let peer_channel = fed.peer_channel("ngo", "police").await;
    let mut on_client = HealthClient::new(client_channel.clone());
    let mut on_peer = HealthClient::new(peer_channel.clone());
    let serving = ServingStatus::Serving as i32;
    assert_eq!(status(&mut on_client, "").await.unwrap(), serving);
    assert_eq!(
        status(&mut on_client, "casebridge.v1.AlertService")
            .await
            .unwrap(),
        serving
    );
    assert_eq!(
        status(&mut on_peer, "casebridge.v1.PeerExchange")
            .await
            .unwrap(),
        serving
    );
    let listed = services(client_channel.clone()).await;
    for s in [
        "casebridge.v1.AlertService",
        "casebridge.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(listed.iter().any(|l| l == s), "{s} not in {listed:?}");
    }
    let listed = services(peer_channel.clone()).await;
    assert!(
        listed.iter().any(|l| l == "casebridge.v1.PeerExchange"),
        "{listed:?}"
    );

    let http = fed.node("police").metrics_addr().unwrap();
    assert!(http_get(http, "/readyz").await.0.contains("200"));
    let node = fed.take_node("police");
    let stopping = tokio::spawn(node.shutdown());
    let not_serving = ServingStatus::NotServing as i32;
    eventually("NOT_SERVING on the client listener", || {
        let mut c = on_client.clone();
        async move { (status(&mut c, "").await.ok()? == not_serving).then_some(()) }
    })
    .await;
    assert_eq!(
        status(&mut on_peer, "casebridge.v1.PeerExchange")
            .await
            .unwrap(),
        not_serving
    );
    stopping.await.unwrap().unwrap();
    assert!(
        status(&mut on_client, "").await.is_err(),
        "served after shutdown"
    );
    fed.shutdown().await;
}
