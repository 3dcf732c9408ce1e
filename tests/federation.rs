//! Delivery between real nodes over mTLS: reach, durability, catch-up,
//! updates and retractions.

mod common;

use std::collections::BTreeMap;

use casebridge::proto::v1::{
    GetAlertRequest, RetractAlertRequest, SubmitAlertRequest, UpdateAlertRequest,
};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_reaches_every_peer_without_subjects() {
    let fed = TestFederation::start(&["police", "labour", "ngo"]).await;
    let mut cms = fed.client("police", "cms").await;
    let sent = submit(&mut cms, "passports held by recruiter").await;
    assert_eq!(sent.subjects.len(), 1, "origin keeps its subjects");
    assert_eq!(sent.version, 1);
    assert!(sent.id.starts_with("police:"));

    for receiver in ["labour", "ngo"] {
        let got = eventually("delivery", || async {
            fed.alerts(receiver)
                .await
                .into_iter()
                .find(|a| a.id == sent.id)
        })
        .await;
        assert_eq!(got.origin, "police");
        assert_eq!(got.version, 1);
        assert_eq!(
            got.content, sent.content,
            "content arrives intact at {receiver}"
        );
        assert!(got.subjects.is_empty(), "raw subjects leaked to {receiver}");
    }
    // The origin's outbox drains once both peers acknowledged.
    eventually("outbox drained", || async {
        let peers = fed.peers("police").await;
        peers
            .iter()
            .all(|p| p.queue_depth == 0 && p.delivered_total == 1 && p.last_ack_at.is_some())
            .then_some(())
    })
    .await;
    let peers = fed.peers("police").await;
    assert_eq!(peers.len(), 2);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_survive_a_restart() {
    let mut fed = TestFederation::start(&["police", "ngo"]).await;
    let mut cms = fed.client("police", "cms").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit(&mut cms, &format!("alert {i}")).await.id);
    }
    eventually("delivery to ngo", || async {
        (fed.alerts("ngo").await.len() == 5).then_some(())
    })
    .await;

    fed.stop_node("police").await;
    fed.stop_node("ngo").await;
    fed.start_node("police").await;
    fed.start_node("ngo").await;

    let police = fed.alert_ids("police").await;
    assert_eq!(
        police, ids,
        "origin keeps every acknowledged alert, in id order"
    );
    let ngo = fed.alert_ids("ngo").await;
    assert_eq!(ngo, ids, "receiver keeps what it acknowledged");
    let mut cms = fed.client("police", "cms").await;
    let got = cms
        .alerts
        .get_alert(GetAlertRequest { id: ids[0].clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.subjects.len(), 1);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_down_during_submits_receives_everything_exactly_once() {
    const N: usize = 40;
    let mut fed = TestFederation::start_with(&["police", "ngo"], &["ngo"], |_, _| {}).await;
    let mut cms = fed.client("police", "cms").await;
    let mut sent = Vec::new();
    for i in 0..N {
        sent.push(submit(&mut cms, &format!("alert {i}")).await.id);
    }
    // While ngo is down, the queue is durable on police's side and errors are visible.
    let peers = fed.peers("police").await;
    assert_eq!(peers[0].queue_depth, N as u64);
    assert!(!peers[0].connected);
    eventually("a connect error recorded", || async {
        let p = fed.peers("police").await;
        (!p[0].last_error.is_empty()).then_some(())
    })
    .await;

    // Restart police too: the queue must survive it.
    fed.stop_node("police").await;
    fed.start_node("police").await;
    fed.start_node("ngo").await;

    let held = eventually("catch-up", || async {
        let a = fed.alerts("ngo").await;
        (a.len() >= N).then_some(a)
    })
    .await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for a in &held {
        *counts.entry(a.id.clone()).or_default() += 1;
    }
    assert_eq!(counts.len(), N);
    assert!(counts.values().all(|c| *c == 1));
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), sent);

    eventually("outbox drained", || async {
        let p = fed.peers("police").await;
        (p[0].queue_depth == 0).then_some(())
    })
    .await;
    // The receiver's own count agrees: N records, no duplicates.
    let status = fed.status("ngo").await;
    assert_eq!(status.received_alerts, N as u64);
    assert_eq!(
        status.local_alerts, 0,
        "received alerts are not counted as ngo's own"
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_retractions_reach_peers_in_order() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut cms = fed.client("police", "cms").await;
    let first = submit(&mut cms, "first version").await;
    let updated = cms
        .alerts
        .update_alert(UpdateAlertRequest {
            id: first.id.clone(),
            expected_version: 1,
            draft: Some(sample_draft("second version")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);
    // A stale expected version is refused and changes nothing.
    let stale = cms
        .alerts
        .update_alert(UpdateAlertRequest {
            id: first.id.clone(),
            expected_version: 1,
            draft: Some(sample_draft("lost update")),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted);

    let got = eventually("version 2 at ngo", || async {
        fed.alerts("ngo")
            .await
            .into_iter()
            .find(|a| a.id == first.id && a.version == 2)
    })
    .await;
    assert_eq!(got.content.unwrap().narrative, "second version");

    let retracted = cms
        .alerts
        .retract_alert(RetractAlertRequest {
            id: first.id.clone(),
            expected_version: 2,
            reason: "entered in error".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retracted.retracted);
    assert_eq!(retracted.version, 3);
    assert!(retracted.content.is_none() && retracted.subjects.is_empty());

    let tomb = eventually("tombstone at ngo", || async {
        fed.alerts("ngo")
            .await
            .into_iter()
            .find(|a| a.id == first.id && a.version == 3)
    })
    .await;
    assert!(tomb.retracted);
    assert!(
        tomb.content.is_none(),
        "retraction purges content at the receiver"
    );
    assert_eq!(tomb.retraction_reason, "entered in error");

    // Who got what: ngo acknowledged each version, the retraction last,
    // each under the rule that allowed it (none for the tombstone).
    let sharing = eventually("the retraction acknowledged", || async {
        let s = cms
            .clone()
            .alerts
            .get_alert_sharing(GetAlertRequest {
                id: first.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        (s.shares.len() == 3).then_some(s)
    })
    .await;
    assert_eq!(sharing.shared_with, ["ngo"]);
    let got: Vec<(&str, u64, bool, &str)> = sharing
        .shares
        .iter()
        .map(|r| (r.peer.as_str(), r.version, r.retraction, r.status.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("ngo", 1, false, "stored"),
            ("ngo", 2, false, "stored"),
            ("ngo", 3, true, "stored")
        ]
    );
    assert!(sharing.shares.iter().all(|r| r.acked_at.is_some()));
    assert!(
        sharing.shares[..2]
            .iter()
            .all(|r| !r.rule.is_empty() && !r.disclosed.is_empty())
    );
    let (code, out, err) = fed.cli_as("police", "cms", &["alert", "get", &first.id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("shared with: ngo") && out.contains("v3 retraction"),
        "{out}"
    );
    // Only the origin answers it.
    let mut ngo = fed.client("ngo", "cms").await;
    let refused = ngo
        .alerts
        .get_alert_sharing(GetAlertRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // A retracted alert cannot be changed again.
    let again = cms
        .alerts
        .update_alert(UpdateAlertRequest {
            id: first.id.clone(),
            expected_version: 0,
            draft: Some(sample_draft("zombie")),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    // Nor can a receiver change the origin's alert.
    let mut ngo_cms = fed.client("ngo", "cms").await;
    let foreign = ngo_cms
        .alerts
        .retract_alert(RetractAlertRequest {
            id: first.id.clone(),
            expected_version: 0,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::FailedPrecondition);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_with_a_request_id_is_idempotent() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut cms = fed.client("police", "cms").await;
    let req = SubmitAlertRequest {
        draft: Some(sample_draft("once")),
        request_id: "cms-case-4711".into(),
        validate_only: false,
    };
    let a = cms
        .alerts
        .submit_alert(req.clone())
        .await
        .unwrap()
        .into_inner();
    let b = cms
        .alerts
        .submit_alert(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.id, b.id);
    // The same key with another draft is a client bug: refused, named.
    let other = SubmitAlertRequest {
        draft: Some(sample_draft("a different alert")),
        ..req
    };
    let refused = assert_invalid(cms.alerts.submit_alert(other).await, "request_id");
    assert!(refused.message().contains(&a.id), "{refused:?}");
    assert_eq!(fed.alerts("police").await.len(), 1);
    eventually("delivery", || async {
        (fed.alerts("ngo").await.len() == 1).then_some(())
    })
    .await;
    fed.shutdown().await;
}
