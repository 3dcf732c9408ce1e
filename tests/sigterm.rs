//! SIGTERM during load: the real binary drains and exits 0, and every
//! acknowledged alert is there after a restart.

mod common;

use std::process::Stdio;

use common::process::{Load, NodeProcess, connect_when_up, lost_alerts, two_agencies};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_exits_0_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let layout = two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let mut node = NodeProcess::spawn(&police.node_config, "error", Stdio::inherit());
    let client = connect_when_up(police.client_config("cms")).await;
    let load = Load::start(&client, 4, 500, "");
    load.wait_for(20, "some load").await;
    node.signal("-TERM");
    // Bounded wait for the exit: drain grace (2 s) + in-flight drain (10 s).
    let status = node.exit_status("SIGTERM").await;
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    let acked = load.acked().await;
    drop(node);

    let _node = NodeProcess::spawn(&police.node_config, "error", Stdio::inherit());
    let mut analyst = connect_when_up(police.client_config("analyst")).await;
    let lost = lost_alerts(&mut analyst, &acked).await.len();
    eprintln!(
        "{} acknowledged before and during the drain, {lost} lost",
        acked.len()
    );
    assert_eq!(lost, 0);
}
