//! SIGTERM during load: the real binary drains and exits 0, and every
//! acknowledged alert is there after a restart.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use casebridge::proto::v1::{GetAlertRequest, SubmitAlertRequest};
use common::process::{NodeProcess, connect_when_up, two_agencies};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_exits_0_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let layout = two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let mut node = NodeProcess::spawn(&police.node_config, "error", Stdio::inherit());
    let client = connect_when_up(police.client_config("cms")).await;
    let acks = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut c = client.clone();
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            for i in 0..500 {
                let req = SubmitAlertRequest {
                    draft: Some(sample_draft(&format!("submitter {t} alert {i}"))),
                    request_id: String::new(),
                    validate_only: false,
                };
                match c.alerts.submit_alert(req).await {
                    Ok(a) => {
                        ok.push(a.into_inner().id);
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break, // refused or cut off while draining: not acknowledged
                }
            }
            ok
        }));
    }
    eventually("some load", || async {
        (acks.load(Ordering::Relaxed) >= 20).then_some(())
    })
    .await;
    node.signal("-TERM");
    // Bounded wait for the exit: drain grace (2 s) + in-flight drain (10 s).
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    drop(node);

    let _node = NodeProcess::spawn(&police.node_config, "error", Stdio::inherit());
    let mut analyst = connect_when_up(police.client_config("analyst")).await;
    let mut lost = 0;
    for id in &acked {
        if analyst
            .alerts
            .get_alert(GetAlertRequest { id: id.clone() })
            .await
            .is_err()
        {
            lost += 1;
        }
    }
    eprintln!(
        "{} acknowledged before and during the drain, {lost} lost",
        acked.len()
    );
    assert_eq!(lost, 0);
}
