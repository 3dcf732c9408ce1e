//! A peer down during 10,000 submits, then up: everything queued on disk
//! meanwhile is delivered, each alert exactly once.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use casebridge::proto::v1::SubmitAlertRequest;
use common::*;

const ALERTS: usize = 10_000;
const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_down_during_10000_submits_gets_all_of_them_once() {
    let mut fed = TestFederation::start_with(&["police", "ngo"], &["ngo"], |_, _| {}).await;
    let rss_start = casebridge::metrics::resident_mib();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = fed.client("police", "cms").await;
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            // Small drafts without subjects: this test is about the queue.
            while next.fetch_add(1, Ordering::Relaxed) < ALERTS {
                let mut d = sample_draft("queued while ngo is down");
                d.subjects.clear();
                let a = c
                    .alerts
                    .submit_alert(SubmitAlertRequest {
                        draft: Some(d),
                        request_id: String::new(),
                        validate_only: false,
                    })
                    .await
                    .unwrap();
                ids.push(a.into_inner().id);
            }
            ids
        }));
    }
    let mut acked = BTreeSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(acked.len(), ALERTS);
    let rss_queued = casebridge::metrics::resident_mib();
    let peer = fed.peers("police").await.remove(0);
    assert_eq!(
        peer.queue_depth, ALERTS as u64,
        "all queued on disk for ngo"
    );

    fed.start_node("ngo").await;
    let ngo = fed.node("ngo").core().clone();
    let mut rss_peak = rss_queued;
    eventually("the backlog delivered", || {
        rss_peak = rss_peak.max(casebridge::metrics::resident_mib());
        let (_, held) = ngo.store.count_alerts(&agency("ngo")).unwrap();
        std::future::ready((held == ALERTS as u64).then_some(()))
    })
    .await;
    let peer = fed
        .peer_when("police", "police's queue empty", |p| p.queue_depth == 0)
        .await;
    eprintln!(
        "RSS {rss_start} MiB at start, {rss_queued} MiB with {ALERTS} queued, peak {rss_peak} MiB while draining; {} stored, {} resends",
        ngo.inbound.stored_total(),
        ngo.inbound.duplicate_total()
    );
    assert_eq!(
        ngo.inbound.stored_total(),
        ALERTS as u64,
        "each alert stored once"
    );
    for id in &acked {
        let id: casebridge::ids::AlertId = id.parse().unwrap();
        assert!(ngo.store.get(&id).unwrap().is_some(), "{id} missing at ngo");
    }
    assert_eq!(peer.delivered_total, ALERTS as u64);
    fed.shutdown().await;
}
