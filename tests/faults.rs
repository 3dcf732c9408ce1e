//! Guarantees under faults and time: retention purges on every node,
//! expired alerts are never delivered, and a retraction made while a peer is
//! down reaches it later (and shows as pending meanwhile).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use casebridge::config::Bounded;
use casebridge::ids::AlertId;
use casebridge::proto::v1::RetractAlertRequest;
use common::*;

/// Submits the sample alert with a retention deadline `secs` from now.
async fn submit_expiring(fed: &TestFederation, narrative: &str, secs: u64) -> String {
    let mut d = sample_draft(narrative);
    let until = SystemTime::now() + Duration::from_secs(secs);
    d.content.as_mut().unwrap().retention_until = Some(pbjson_types::Timestamp {
        seconds: until.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64,
        nanos: 0,
    });
    submit_draft(&mut fed.client("police", "cms").await, d)
        .await
        .id
}

fn quick_purge(_: &casebridge::ids::AgencyId, c: &mut casebridge::config::NodeConfig) {
    c.alerts.purge_interval_secs = Bounded::new(1);
}

async fn purged_at(fed: &TestFederation, agency: &str, id: &str) {
    let core = fed.node(agency).core().clone();
    let id: AlertId = id.parse().unwrap();
    eventually(&format!("{id} purged at {agency}"), || async {
        let rec = core.store.get(&id).unwrap()?;
        let a = rec.alert.as_ref().unwrap();
        (a.retracted && a.content.is_none() && rec.pseudonyms.is_empty()).then_some(())
    })
    .await;
    let a = core.store.get(&id).unwrap().unwrap().alert.unwrap();
    assert_eq!(a.retraction_reason, casebridge::store::PURGED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_retention_deadline_purges_content_on_every_node() {
    let fed = TestFederation::start_with(&["police", "ngo"], &[], quick_purge).await;
    let short = submit_expiring(&fed, "short-lived", 3).await;
    let long = submit_expiring(&fed, "long-lived", 3600).await;
    for id in [&short, &long] {
        fed.held("ngo", id).await;
    }
    purged_at(&fed, "police", &short).await;
    purged_at(&fed, "ngo", &short).await;
    // Tokens went with the content, at the origin and at the receiver: a
    // lookup for the phone finds only the long one at police, and ngo's
    // index holds no token of the purged alert.
    let mut analyst = fed.client("ngo", "analyst").await;
    let answer = analyst
        .alerts
        .lookup(casebridge::proto::v1::LookupRequest {
            identifiers: vec![phone_id("+31 6 5555 0101", "")],
            peers: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let at_police: Vec<&str> = answer
        .answers
        .iter()
        .find(|a| a.agency == "police")
        .unwrap()
        .matches
        .iter()
        .map(|m| m.alert_id.as_str())
        .collect();
    assert_eq!(at_police, [long.as_str()]);
    assert!(stored_token_types(&fed, "ngo", &short).is_empty());
    assert!(!stored_token_types(&fed, "ngo", &long).is_empty());
    for agency in ["police", "ngo"] {
        let held = fed.alerts(agency).await;
        let kept = held.iter().find(|a| a.id == long).unwrap();
        assert!(
            !kept.retracted && kept.content.is_some(),
            "{agency} purged too early"
        );
        assert_eq!(fed.status(agency).await.purged_alerts, 1, "{agency}");
    }
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_expires_while_queued_is_never_delivered() {
    let mut fed = TestFederation::start_with(&["police", "ngo"], &["ngo"], quick_purge).await;
    let short = submit_expiring(&fed, "expires in the queue", 2).await;
    purged_at(&fed, "police", &short).await;
    let marker = submit_expiring(&fed, "marker", 3600).await;
    fed.start_node("ngo").await;
    fed.held("ngo", &marker).await;
    assert!(!fed.alerts("ngo").await.iter().any(|a| a.id == short));
    let peer = fed
        .peer_when("police", "an empty queue", |p| p.queue_depth == 0)
        .await;
    assert_eq!(peer.expired_total, 1);
    assert!(
        peer.retries >= 1,
        "ngo was down: at least one failed attempt"
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retraction_made_while_a_peer_is_down_reaches_it_later() {
    let mut fed = TestFederation::start(&["police", "ngo"]).await;
    let mut cms = fed.client("police", "cms").await;
    let alert = submit(&mut cms, "to be retracted").await;
    fed.held("ngo", &alert.id).await;
    fed.stop_node("ngo").await;
    cms.alerts
        .retract_alert(RetractAlertRequest {
            id: alert.id.clone(),
            expected_version: 1,
            reason: "victim withdrew consent".into(),
        })
        .await
        .unwrap();
    let peer = fed.peers("police").await.remove(0);
    assert_eq!(peer.pending_retractions, 1);
    assert_eq!(peer.pending_retraction_ids, std::slice::from_ref(&alert.id));
    assert!(peer.oldest_undelivered_at.is_some());

    fed.start_node("ngo").await;
    let id: AlertId = alert.id.parse().unwrap();
    let ngo = fed.node("ngo").core().clone();
    eventually("the tombstone at ngo", || async {
        let rec = ngo.store.get(&id).unwrap()?;
        let a = rec.alert.as_ref()?;
        (a.retracted && a.version == 2 && a.content.is_none() && rec.pseudonyms.is_empty())
            .then_some(())
    })
    .await;
    let peer = fed
        .peer_when("police", "the retraction acknowledged", |p| {
            p.queue_depth == 0
        })
        .await;
    assert_eq!(peer.pending_retractions, 0);
    assert!(peer.oldest_undelivered_at.is_none());
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_over_their_rate_get_resource_exhausted() {
    let fed = TestFederation::start_with(&["police", "ngo"], &[], |a, c| {
        if a.as_str() == "police" {
            c.limits.requests_per_second_per_client = Bounded::new(1);
            c.limits.requests_per_second_per_peer = Bounded::new(1);
        }
    })
    .await;
    let mut analyst = fed.client("police", "analyst").await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = analyst
            .alerts
            .list_alerts(casebridge::proto::v1::ListAlertsRequest::default())
            .await;
        codes.push(r.err().map(|e| e.code()));
    }
    assert_eq!(codes[0], None, "the first call is within the burst");
    assert!(
        codes.contains(&Some(tonic::Code::ResourceExhausted)),
        "{codes:?}"
    );
    // Limits are per caller: another client still gets through.
    fed.status("police").await;

    let mut peer = fed.peer_client("ngo", "police").await;
    let mut refused = false;
    for _ in 0..6 {
        if let Err(e) = peer.hello(hello_as("ngo")).await {
            assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
            refused = true;
        }
    }
    assert!(refused, "a peer over its rate was served");
    fed.shutdown().await;
}
