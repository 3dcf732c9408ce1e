//! kill -9 of the sending node at random moments while clients submit:
//! after a restart, every acknowledged alert is present and is delivered
//! exactly once (lost = 0, duplicates = 0).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use casebridge::config::NodeConfig;
use casebridge::node::{Listeners, start};
use common::process::{Load, NodeProcess, connect_when_up, lost_alerts, two_agencies};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 3;
const SUBMITTERS: usize = 4;
const PER_SUBMITTER: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_acknowledged_and_duplicates_nothing() {
    let seed = fault_seed("kill");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let layout = two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let ngo_config = NodeConfig::load(&layout.agencies[&agency("ngo")].node_config).unwrap();
    let ngo = start(
        ngo_config.clone(),
        Listeners::bind(&ngo_config).await.unwrap(),
    )
    .await
    .unwrap();
    let mut received = ngo.subscribe_received();

    let mut acked: BTreeSet<String> = BTreeSet::new();
    for round in 0..ROUNDS {
        let mut node = NodeProcess::spawn(&police.node_config, "error", Stdio::inherit());
        let client = connect_when_up(police.client_config("cms")).await;
        let load = Load::start(
            &client,
            SUBMITTERS,
            PER_SUBMITTER,
            &format!("round {round} "),
        );
        // SIGKILL at a random moment while the submitters run (once they
        // have got going, so that every round tests something).
        load.wait_for(1, "the first acknowledgement").await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        node.kill_9();
        acked.extend(load.acked().await);
        drop(node);
    }

    // Restart once more and let delivery finish.
    let _node = NodeProcess::spawn(&police.node_config, "error", Stdio::inherit());
    let mut admin = connect_when_up(police.client_config("admin")).await;
    let stored = node_status(&mut admin).await.local_alerts;
    let mut analyst = connect_when_up(police.client_config("analyst")).await;
    let lost = lost_alerts(&mut analyst, &acked).await.len();
    let ngo_core = ngo.core().clone();
    eventually("every stored police alert at ngo", || async {
        let (_, received) = ngo_core.store.count_alerts(&agency("ngo")).unwrap();
        (received == stored).then_some(())
    })
    .await;
    let mut applied: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        match received.try_recv() {
            Ok(r) => *applied.entry(r.alert_id).or_default() += 1,
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
            Err(e) => panic!("lost track of deliveries: {e}"),
        }
    }
    let duplicates: usize = applied.values().map(|n| n - 1).sum();
    let undelivered = acked.iter().filter(|id| !applied.contains_key(*id)).count();
    eprintln!(
        "{ROUNDS} kills: {} acknowledged, {stored} stored, {} delivered; lost {lost}, undelivered {undelivered}, duplicates {duplicates}",
        acked.len(),
        applied.len()
    );
    assert!(
        !acked.is_empty(),
        "nothing was acknowledged: the test exercised nothing"
    );
    assert_eq!((lost, undelivered, duplicates), (0, 0, 0));
    assert_eq!(
        applied.len() as u64,
        stored,
        "everything stored was delivered once"
    );
    ngo.shutdown().await.unwrap();
}
