//! A TCP proxy between two nodes drops, stalls, slices and resets
//! connections for a while, then heals: every alert arrives exactly once,
//! and each alert's versions are applied in order.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use casebridge::proto::v1::{RetractAlertRequest, UpdateAlertRequest};
use common::proxy::ChaosProxy;
use common::*;

const ALERTS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_arrives_once_and_in_version_order_through_a_faulty_network() {
    let seed = fault_seed("fault");
    let proxy = ChaosProxy::start(seed).await;
    let via = proxy.addr.to_string();
    let fed = TestFederation::start_with(&["police", "ngo"], &[], move |a, cfg| {
        if a.as_str() == "police" {
            for p in &mut cfg.peers {
                p.address = toml::Spanned::new(0..0, via.clone());
            }
        }
    })
    .await;
    proxy.set_upstream(fed.layout.agencies[&agency("ngo")].addrs.peer);
    let mut received = fed.node("ngo").subscribe_received();
    // ngo already holds the phone every police alert carries: each police
    // alert makes exactly one hit at ngo, however often it is resent.
    let mut ngo_cms = fed.client("ngo", "cms").await;
    submit(&mut ngo_cms, "ngo's own case").await;

    // Three submitters: each alert gets an update, every fifth a retraction.
    let mut tasks = Vec::new();
    for t in 0..3 {
        let mut c = fed.client("police", "cms").await;
        tasks.push(tokio::spawn(async move {
            let mut finals = Vec::new();
            for i in 0..ALERTS / 3 {
                let a = submit(&mut c, &format!("submitter {t} alert {i}")).await;
                let mut d = sample_draft(&format!("submitter {t} alert {i}, v2"));
                d.content.as_mut().unwrap().narrative.push_str(" updated");
                c.alerts
                    .update_alert(UpdateAlertRequest {
                        id: a.id.clone(),
                        expected_version: 1,
                        draft: Some(d),
                    })
                    .await
                    .unwrap();
                let mut last = 2;
                if i % 5 == 0 {
                    c.alerts
                        .retract_alert(RetractAlertRequest {
                            id: a.id.clone(),
                            expected_version: 2,
                            reason: "test".into(),
                        })
                        .await
                        .unwrap();
                    last = 3;
                }
                finals.push((a.id, last));
            }
            finals
        }));
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        expected.extend(t.await.unwrap());
    }
    // Keep the faults going after the last submit, until the proxy has cut a
    // dozen connections (bounded in time), then heal.
    let chaos_until = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.counts.connections.load(Ordering::Relaxed) < 12
        && std::time::Instant::now() < chaos_until
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.heal();

    let from_police = || async {
        let mut held = fed.alerts("ngo").await;
        held.retain(|a| a.origin == "police");
        held
    };
    eventually("every alert at its final version at ngo", || async {
        let held = from_police().await;
        (held.len() == ALERTS && held.iter().all(|a| expected.get(&a.id) == Some(&a.version)))
            .then_some(())
    })
    .await;
    for a in from_police().await {
        assert_eq!(a.retracted, expected[&a.id] == 3, "{}", a.id);
        assert_eq!(a.content.is_none(), a.retracted, "{}", a.id);
    }

    // What ngo stored, in the order it stored it: each (alert, version) at
    // most once, versions only going up.
    let mut applied: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    while let Ok(r) = received.try_recv() {
        applied.entry(r.alert_id).or_default().push(r.version);
    }
    let mut duplicates = 0;
    for (id, versions) in &applied {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{id}: versions applied out of order or twice: {versions:?}"
        );
        duplicates += versions.len()
            - versions
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len();
    }
    let lost = expected
        .keys()
        .filter(|id| !applied.contains_key(*id))
        .count();
    let c = &proxy.counts;
    eprintln!(
        "faults: {} connections, {} dropped, {} stalled, {} sliced, {} reset; lost {lost}, duplicates {duplicates}",
        c.connections.load(Ordering::Relaxed),
        c.dropped.load(Ordering::Relaxed),
        c.stalled.load(Ordering::Relaxed),
        c.sliced.load(Ordering::Relaxed),
        c.reset.load(Ordering::Relaxed),
    );
    assert_eq!((lost, duplicates), (0, 0));
    assert!(
        c.connections.load(Ordering::Relaxed) > 1,
        "the proxy never forced a reconnect: the faults were not exercised"
    );
    // Resent deliveries (acks lost with the cut connections) made no second hit.
    let ngo_hits = fed.node("ngo").core().store.hits_after(0, 10_000).unwrap();
    let mut pairs: Vec<_> = ngo_hits
        .iter()
        .map(|h| (h.local_alert_id.clone(), h.other_alert_id.clone(), h.r#type))
        .collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), ngo_hits.len(), "a duplicate hit");
    let phone_hits = ngo_hits
        .iter()
        .filter(|h| h.r#type == casebridge::proto::v1::IdentifierType::Phone as i32)
        .count();
    assert_eq!(phone_hits, ALERTS, "one phone hit per police alert");
    let peer = fed
        .peer_when("police", "an empty queue", |p| p.queue_depth == 0)
        .await;
    assert!(peer.retries > 0);
    fed.shutdown().await;
}

/// Requests (ngo → police) and decisions and releases (police → ngo) each
/// through a faulty proxy: every request reaches police once, every
/// approval and release reaches ngo once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_decision_and_release_arrives_once_through_a_faulty_network() {
    use casebridge::proto::v1::send_disclosure_request::About;
    use casebridge::proto::v1::{
        DecideRequest, DisclosureState, IdentifierType, LegalBasis, ListDisclosureRequestsRequest,
        ListReleasesRequest, LocationDetail, ReleaseSelection, SendDisclosureRequest, TimeDetail,
        Urgency,
    };
    const REQUESTS: usize = 20;
    let seed = fault_seed("fault");
    let to_ngo = ChaosProxy::start(seed).await;
    let to_police = ChaosProxy::start(seed.wrapping_add(1)).await;
    let (via_ngo, via_police) = (to_ngo.addr.to_string(), to_police.addr.to_string());
    let fed = TestFederation::start_with(&["police", "ngo"], &[], move |a, cfg| {
        let via = if a.as_str() == "police" {
            &via_ngo
        } else {
            &via_police
        };
        for p in &mut cfg.peers {
            p.address = toml::Spanned::new(0..0, via.clone());
        }
    })
    .await;
    to_ngo.set_upstream(fed.layout.agencies[&agency("ngo")].addrs.peer);
    to_police.set_upstream(fed.layout.agencies[&agency("police")].addrs.peer);
    let held = submit(&mut fed.client("police", "cms").await, "advert").await;
    let mut ngo = fed.client("ngo", "analyst").await;
    let mut legal = fed.client("police", "legal").await;
    let mut ids = Vec::new();
    for i in 0..REQUESTS {
        let case = ngo
            .disclosure
            .send_request(SendDisclosureRequest {
                about: Some(About::AlertId(held.id.clone())),
                legal_basis: LegalBasis::VictimReferralConsent as i32,
                citation: String::new(),
                purpose: "referral".into(),
                case_reference: format!("NGO-{i}"),
                urgency: Urgency::Urgent as i32,
                due_at: None,
                verification: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(case.request.unwrap().id);
    }
    // Approve each as it arrives, while the faults go on.
    let mut approved = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while approved.len() < REQUESTS && std::time::Instant::now() < deadline {
        let open = disclosure_cases(
            &mut legal,
            ListDisclosureRequestsRequest {
                states: vec![DisclosureState::Open as i32],
                ..Default::default()
            },
        )
        .await;
        for c in open {
            let id = c.request.unwrap().id;
            legal
                .disclosure
                .decide(DecideRequest {
                    id: id.clone(),
                    outcome: DisclosureState::Approved as i32,
                    release: Some(ReleaseSelection {
                        location: LocationDetail::City as i32,
                        time: TimeDetail::None as i32,
                        narrative: true,
                        indicators: false,
                        identifiers: vec![IdentifierType::Phone as i32],
                    }),
                    contact_point: "desk".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            approved.insert(id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(approved.len(), REQUESTS, "every request reached police");
    to_ngo.heal();
    to_police.heal();
    let releases = eventually("every release at ngo", || {
        let mut ngo = ngo.clone();
        async move {
            let r = ngo
                .disclosure
                .list_releases(ListReleasesRequest {
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .releases;
            (r.len() >= REQUESTS).then_some(r)
        }
    })
    .await;
    assert_eq!(releases.len(), REQUESTS, "one release each, none twice");
    let every = ListDisclosureRequestsRequest {
        page_size: 1000,
        ..Default::default()
    };
    let at_police = disclosure_cases(&mut legal, every.clone()).await;
    assert_eq!(at_police.len(), REQUESTS, "each request once at police");
    let at_ngo = disclosure_cases(&mut ngo, every).await;
    for c in &at_ngo {
        let steps: Vec<&str> = c.history.iter().map(|e| e.step.as_str()).collect();
        assert_eq!(
            steps.iter().filter(|s| **s == "approved").count(),
            1,
            "{steps:?}"
        );
        assert_eq!(
            steps.iter().filter(|s| **s == "release received").count(),
            1,
            "{steps:?}"
        );
        assert_eq!(c.state, DisclosureState::Approved as i32);
    }
    let faults = to_ngo.counts.connections.load(Ordering::Relaxed)
        + to_police.counts.connections.load(Ordering::Relaxed);
    assert!(faults > 2, "the proxies never forced a reconnect");
    fed.shutdown().await;
}
