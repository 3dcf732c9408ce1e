//! The machine's part of the path after a hit, on loopback over real mTLS:
//! a request sent (ngo → police), delivered, approved at once by a client
//! watching police's requests, and the release stored at ngo — next to one
//! A→B alert delivery (police → ngo) measured in the same run, alternating,
//! so both see the same machine.
//!
//! Run: `cargo bench --bench disclosure` (env `BENCH_ROUNDS`, default 300).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::time::{Duration, Instant};

use casebridge::proto::v1::send_disclosure_request::About;
use casebridge::proto::v1::{
    DecideRequest, DisclosureState, IdentifierType, LegalBasis, LocationDetail, ReleaseSelection,
    SendDisclosureRequest, SubmitAlertRequest, TimeDetail, Urgency, WatchDisclosureRequestsRequest,
};
use common::{TestFederation, phone_id, sample_draft};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let fed = TestFederation::start_with(&["police", "ngo"], &[], |_, c| {
        c.limits.requests_per_second_per_client = casebridge::config::Bounded::new(1_000_000);
    })
    .await;
    let mut police_cms = fed.client("police", "cms").await;
    let mut d = sample_draft("advert");
    d.subjects[0].identifiers = vec![phone_id("06-55550199", "NL")];
    let held = police_cms
        .alerts
        .submit_alert(SubmitAlertRequest {
            draft: Some(d),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut ngo = fed.client("ngo", "analyst").await;
    let mut legal = fed.client("police", "legal").await;
    let mut holder_watch = legal
        .disclosure
        .watch_disclosure_requests(WatchDisclosureRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut requester_watch = ngo
        .disclosure
        .watch_disclosure_requests(WatchDisclosureRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut received = fed.node("ngo").subscribe_received();
    println!(
        "casebridge disclosure bench: {rounds} rounds, each one A->B alert delivery then one request -> decision -> release, on 127.0.0.1 over mTLS"
    );
    let (mut alert, mut delivered, mut path) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        // One alert, police -> ngo, until durable at ngo.
        let t = Instant::now();
        let a = police_cms
            .alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(sample_draft(&format!("probe {i}"))),
                request_id: String::new(),
                validate_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        while received.recv().await.unwrap().alert_id != a.id {}
        alert.push(t.elapsed());

        // One request, ngo -> police, approved at once, release at ngo.
        let t = Instant::now();
        let sent = ngo
            .disclosure
            .send_request(SendDisclosureRequest {
                about: Some(About::AlertId(held.id.clone())),
                legal_basis: LegalBasis::VictimReferralConsent as i32,
                citation: String::new(),
                purpose: "bench".into(),
                case_reference: format!("BENCH-{i}"),
                urgency: Urgency::Urgent as i32,
                due_at: None,
                verification: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let id = sent.request.unwrap().id;
        loop {
            let c = holder_watch.message().await.unwrap().unwrap();
            if c.request.as_ref().is_some_and(|r| r.id == id)
                && c.state == DisclosureState::Open as i32
            {
                break;
            }
        }
        delivered.push(t.elapsed());
        legal
            .disclosure
            .decide(DecideRequest {
                id: id.clone(),
                outcome: DisclosureState::Approved as i32,
                ground: 0,
                note: String::new(),
                release: Some(ReleaseSelection {
                    location: LocationDetail::City as i32,
                    time: TimeDetail::Day as i32,
                    narrative: true,
                    indicators: true,
                    identifiers: vec![IdentifierType::Phone as i32],
                }),
                contact_point: "bench desk".into(),
                handling: 0,
                retention_days: 1,
            })
            .await
            .unwrap();
        loop {
            let c = requester_watch.message().await.unwrap().unwrap();
            let done = c.request.as_ref().is_some_and(|r| r.id == id)
                && c.history
                    .last()
                    .is_some_and(|e| e.step == "release received");
            if done {
                break;
            }
        }
        path.push(t.elapsed());
    }
    for v in [&mut alert, &mut delivered, &mut path] {
        v.sort();
    }
    let row = |name: &str, v: &[Duration]| {
        println!(
            "{name:<58} p50 {:>9.2?}  p99 {:>9.2?}",
            measure::percentile(v, 0.5),
            measure::percentile(v, 0.99)
        );
    };
    row(
        "A->B alert delivery (submit to durable at the receiver)",
        &alert,
    );
    row(
        "request sent -> open at the holder (its watch stream)",
        &delivered,
    );
    row(
        "request sent -> approved -> release durable at requester",
        &path,
    );
    println!(
        "ratio, whole path / one A->B delivery: p50 {:.2}  p99 {:.2}",
        measure::percentile(&path, 0.5).as_secs_f64()
            / measure::percentile(&alert, 0.5).as_secs_f64(),
        measure::percentile(&path, 0.99).as_secs_f64()
            / measure::percentile(&alert, 0.99).as_secs_f64()
    );
    fed.shutdown().await;
}
