//! What a node acknowledged survives `kill -9` of the real binary.

mod common;

use std::process::Stdio;

use casebridge::proto::v1::ListPeersRequest;
use common::process::{NodeProcess, connect_when_up, lost_alerts, two_agencies};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_alerts_survive_kill_9() {
    const N: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let layout = two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];

    // ngo stays down, so every acknowledged alert must also stay queued for it.
    let mut node = NodeProcess::spawn(&police.node_config, "warn", Stdio::inherit());
    let client = connect_when_up(police.client_config("cms")).await;
    // Concurrent submitters, so acknowledgements share group-commit flushes.
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..N / 4 {
                acked.push(submit(&mut c, &format!("submitter {t} alert {i}")).await.id);
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    // No graceful anything: SIGKILL right after the last acknowledgement.
    node.kill_9();
    drop(node);

    let _node = NodeProcess::spawn(&police.node_config, "warn", Stdio::inherit());
    let mut admin = connect_when_up(police.client_config("admin")).await;
    assert_eq!(
        node_status(&mut admin).await.local_alerts,
        N as u64,
        "every acknowledged alert is on disk"
    );
    let peers = admin
        .admin
        .list_peers(ListPeersRequest {})
        .await
        .unwrap()
        .into_inner()
        .peers;
    assert_eq!(
        peers[0].queue_depth, N as u64,
        "and queued for the peer that was down"
    );
    let mut analyst = connect_when_up(police.client_config("analyst")).await;
    let lost = lost_alerts(&mut analyst, &acked).await;
    assert!(lost.is_empty(), "acknowledged alerts lost: {lost:?}");
}
