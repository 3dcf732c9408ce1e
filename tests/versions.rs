//! Two releases side by side, played by a node that withholds a capability
//! (`[compat] withhold_capabilities`, as an older release would lack it):
//! what a peer has not announced waits in the sender's outbox, counted as
//! held in `peers` and Prometheus, and goes once the peer announces it —
//! after its "upgrade", exactly once. A receiver answers what it does not
//! understand with "not understood" (the sender keeps it), never a refusal
//! for good; a sender of the previous release, which does not take that
//! answer, has its stream ended instead, with nothing acknowledged.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use casebridge::config::Bounded;
use casebridge::proto::v1::envelope::Payload;
use casebridge::proto::v1::peer_exchange_client::PeerExchangeClient;
use casebridge::proto::v1::{AckStatus, Envelope, SharedAlert};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_peer_does_not_understand_waits_and_goes_once_it_does() {
    let old_ngo = Arc::new(AtomicBool::new(true));
    let withholding = old_ngo.clone();
    let mut fed = TestFederation::start_with(&["police", "ngo"], &[], move |a, c| {
        if a.as_str() == "ngo" && withholding.load(Ordering::SeqCst) {
            c.compat.withhold_capabilities = vec![toml::Spanned::new(0..0, "alert".into())];
        }
        if a.as_str() == "police" {
            c.metrics.listen = Some(toml::Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()));
        }
        c.delivery.probe_interval_secs = Bounded::new(1);
    })
    .await;
    let mut police = fed.client("police", "cms").await;
    let alert = submit(&mut police, "held until ngo understands alerts").await;
    let held = fed
        .peer_when("police", "the alert held for ngo", |p| {
            p.agency_id == "ngo" && p.held.values().sum::<u64>() == 1
        })
        .await;
    assert_eq!(held.queue_depth, 1, "held, not dropped");
    assert_eq!(held.rejected_total, 0);
    assert!(!held.capabilities.contains(&"alert".to_owned()));
    assert_eq!(
        held.held.keys().collect::<Vec<_>>(),
        ["until ngo understands alerts"]
    );
    let metrics = fed.node("police").metrics_addr().unwrap();
    let (_, text) = http_get(metrics, "/metrics").await;
    assert!(
        text.contains("casebridge_outbox_held{peer=\"ngo\"} 1"),
        "{text}"
    );
    let (code, out, err) = fed.cli_as("police", "admin", &["peers"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 held until ngo understands alerts"), "{out}");
    assert!(fed.alerts("ngo").await.is_empty(), "nothing reached ngo");

    // ngo is upgraded in place: same store, everything announced.
    old_ngo.store(false, Ordering::SeqCst);
    fed.stop_node("ngo").await;
    fed.start_node("ngo").await;
    fed.held("ngo", &alert.id).await;
    let done = fed
        .peer_when("police", "police's outbox for ngo empty", |p| {
            p.agency_id == "ngo" && p.queue_depth == 0
        })
        .await;
    assert_eq!(done.held.values().sum::<u64>(), 0);
    assert_eq!(done.delivered_total, 1, "delivered exactly once");
    let copies = fed
        .alerts("ngo")
        .await
        .into_iter()
        .filter(|a| a.id == alert.id)
        .count();
    assert_eq!(copies, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answers_not_understood_and_keeps_nothing() {
    // labour's node is not started: the test speaks as labour.
    let fed = TestFederation::start_with(&["police", "ngo", "labour"], &["labour"], |a, c| {
        if a.as_str() == "ngo" {
            c.compat.withhold_capabilities = vec![toml::Spanned::new(0..0, "alert".into())];
        }
    })
    .await;
    let mut labour = PeerExchangeClient::new(fed.peer_channel("labour", "ngo").await);
    let answer = labour.hello(hello_as("labour")).await.unwrap().into_inner();
    assert!(!answer.capabilities.contains(&"alert".to_owned()));
    let alert = Payload::Alert(SharedAlert::default());
    let future = Envelope {
        requires: vec!["sealed-narrative".into()],
        ..envelope(3, Payload::Alert(SharedAlert::default()))
    };
    let unknown_kind = Envelope {
        sequence: 2,
        ..Default::default()
    };
    let mut acks = deliver_stream(
        &mut labour,
        vec![envelope(1, alert.clone()), unknown_kind, future],
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while let Some(ack) = acks.message().await.unwrap() {
        seen.push((ack.sequence, ack.status, ack.reason));
    }
    let not_understood = AckStatus::NotUnderstood as i32;
    assert_eq!(
        seen,
        [
            (1, not_understood, "needs alert".to_owned()),
            (
                2,
                not_understood,
                "an envelope kind this release does not know".to_owned()
            ),
            (
                3,
                not_understood,
                "needs alert, sealed-narrative".to_owned()
            ),
        ]
    );
    assert!(fed.alerts("ngo").await.is_empty());

    // As a release from before announcements (0.3.0), which does not
    // take that answer: the stream ends unacknowledged, so the sender
    // keeps the envelope.
    labour
        .hello(hello_as_unannounced_release("labour"))
        .await
        .unwrap();
    let mut acks = deliver_stream(&mut labour, vec![envelope(4, alert)])
        .await
        .unwrap();
    let ended = acks.message().await.unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    assert!(
        ended.message().contains("needs alert"),
        "{}",
        ended.message()
    );
}

/// A federation release 0.3.0 wrote — its configs, its key service and
/// its stores, made by `tests/fixtures/store-0.3.0/make.sh` with 0.3.0's
/// binary — carries on under this release after the upgrade notes' one
/// step for stores (`chmod 700`, 0.3.0 created them 0755): what police had
/// queued for ngo is delivered, both keep their alerts and hits, each
/// store now records this release, and each node sees the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_the_previous_release_wrote_carries_on() {
    use std::os::unix::fs::PermissionsExt;

    use casebridge::client::NodeClient;
    use casebridge::config::{KeyServiceConfig, NodeConfig};
    use casebridge::node::{Listeners, start};
    use casebridge::proto::v1::ListAlertsRequest;
    use common::fixture::unpack_fixture;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/store-0.3.0/fed.tar.gz"
    );
    let tmp = tempfile::tempdir().unwrap();
    let fed = unpack_fixture(FIXTURE, tmp.path());
    for dir in ["police/data", "ngo/data", "keyservice/data"] {
        std::fs::set_permissions(fed.join(dir), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let ks = KeyServiceConfig::load(&fed.join("keyservice/keyservice.toml")).unwrap();
    let key_service =
        casebridge::keyservice::start(&ks, casebridge::keyservice::bind(&ks).await.unwrap())
            .await
            .unwrap();
    let mut nodes = Vec::new();
    for a in ["police", "ngo"] {
        let config = NodeConfig::load(&fed.join(a).join("node.toml")).unwrap();
        let listeners = Listeners::bind(&config).await.unwrap();
        nodes.push(start(config, listeners).await.unwrap());
    }
    let alerts = |a: &'static str| {
        let path = fed.join(a).join("client.toml");
        async move {
            let mut c = NodeClient::connect_file(&path).await.unwrap();
            c.alerts
                .list_alerts(ListAlertsRequest {
                    include_retracted: true,
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .alerts
        }
    };
    let city = |a: &casebridge::proto::v1::Alert| {
        a.content
            .as_ref()
            .and_then(|c| c.location.as_ref())
            .map(|l| l.city.clone())
            .unwrap_or_default()
    };
    let queued = eventually("police's queued alert at ngo", || async {
        alerts("ngo").await.into_iter().find(|a| city(a) == "Venlo")
    })
    .await;
    assert_eq!(queued.origin, "police");
    let at_police = alerts("police").await;
    assert!(at_police.iter().any(|a| a.version == 2), "the update kept");
    assert!(at_police.iter().any(|a| a.retracted), "the retraction kept");
    assert!(
        at_police.iter().any(|a| a.origin == "ngo"),
        "ngo's alert kept"
    );
    let seen = eventually("ngo's release known to police", || async {
        let status = nodes[0].core().outbound.states();
        status
            .into_iter()
            .find(|(id, _, s)| id.as_str() == "ngo" && s.release.is_some())
            .and_then(|(_, _, s)| s.release)
    })
    .await;
    assert_eq!(seen, casebridge::release::RELEASE);
    for node in nodes {
        node.shutdown().await.unwrap();
    }
    key_service.shutdown().await.unwrap();
    for a in ["police", "ngo"] {
        let store =
            casebridge::store::Store::open_audit_only(&fed.join(a).join("data"), 8 << 20).unwrap();
        assert_eq!(
            store.setting("release").unwrap().as_deref(),
            Some(casebridge::release::RELEASE),
            "{a}'s store moved forward"
        );
        // One audit chain across both releases, signed to its end.
        let key =
            casebridge::audit::signing::PublicKey::load(&fed.join(a).join("audit-signing.key.pub"))
                .unwrap();
        let summary = store.audit_verify(&key, &[]).unwrap();
        assert_eq!(summary.last_signed, Some(summary.last), "{a}: {summary:?}");
    }
}
