//! `store backup` on a node under load, then `store restore` on the stopped
//! node: the restored node serves exactly the alerts in the copy, which holds
//! every alert acknowledged before the backup began; its audit log verifies,
//! and the node goes on exchanging.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use casebridge::proto::v1::{BackupStoreRequest, SubmitAlertRequest};
use common::*;

const SUBMITTERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_to_a_node_serving_the_same_alerts() {
    let mut fed = TestFederation::start(&["police", "ngo"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..SUBMITTERS {
        let mut c = fed.client("police", "cms").await;
        let (stop, acked) = (stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            // Bounded: the test stops it long before this.
            while !stop.load(Ordering::Relaxed) && n < 5_000 {
                let a = c
                    .alerts
                    .submit_alert(SubmitAlertRequest {
                        draft: Some(sample_draft(&format!("load {i}/{n}"))),
                        request_id: String::new(),
                        validate_only: false,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                acked.lock().unwrap().push((a.id, Instant::now()));
                n += 1;
            }
        }));
    }
    eventually("some load acknowledged", || {
        std::future::ready((acked.lock().unwrap().len() >= 60).then_some(()))
    })
    .await;

    let mut admin = fed.client("police", "admin").await;
    let began = Instant::now();
    let backup = admin
        .admin
        .backup_store(BackupStoreRequest {
            label: "under-load".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // Writes go on after the copy.
    let after_backup = acked.lock().unwrap().len();
    eventually("more load after the backup", || {
        std::future::ready((acked.lock().unwrap().len() >= after_backup + 20).then_some(()))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let before: BTreeSet<String> = acked
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| id.clone())
        .collect();
    let all: BTreeSet<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    println!(
        "backup of {} alerts ({} acknowledged before it began, {} in all), copied in {} ms",
        backup.alerts,
        before.len(),
        all.len(),
        backup.copy_ms
    );
    assert!(backup.alerts as usize >= before.len());
    assert!(
        (backup.alerts as usize) < all.len(),
        "the load went on after the copy"
    );

    let backup_dir = backup.path.clone();
    let public = fed.pki("police").join("audit-signing.key.pub");
    let (code, out, err) = cli(&[
        "audit",
        "verify",
        "--data-dir",
        &backup_dir,
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "the copy's audit log verifies: {out}{err}");

    // Restore refuses while the node runs (it holds the store's lock).
    let node_toml = fed.layout.agencies[&agency("police")].node_config.clone();
    let node_toml = node_toml.to_str().unwrap();
    let restore = || {
        cli(&[
            "store",
            "restore",
            "--config",
            node_toml,
            "--from",
            &backup_dir,
        ])
    };
    let (code, out, err) = restore();
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("is the node running?"), "{err}");

    fed.stop_node("police").await;
    let (code, out, err) = restore();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("previous store kept at"), "{out}");
    // The data went back to the copy; the audit log did not: it still holds
    // what the node logged after the backup, then the restore, one chain.
    let (code, out, err) = cli(&["audit", "verify", "--config", node_toml]);
    assert_eq!(code, 0, "the restored log verifies: {out}{err}");
    fed.start_node("police").await;

    let served: BTreeSet<String> = fed.alert_ids("police").await.into_iter().collect();
    assert_eq!(
        served.len() as u64,
        backup.alerts,
        "exactly the copy's alerts"
    );
    assert!(
        before.is_subset(&served),
        "every alert acknowledged before the backup is served: missing {:?}",
        before.difference(&served).collect::<Vec<_>>()
    );
    assert!(
        served.is_subset(&all),
        "nothing that was never acknowledged"
    );
    // Every submit acknowledged after the copy is gone from the data but
    // still in the log, before the one entry that records the restore.
    let mut admin = fed.client("police", "admin").await;
    let log = audit_after(&mut admin, 0).await;
    let restores: Vec<usize> = (0..log.len())
        .filter(|i| log[*i].action == "store.restore")
        .collect();
    assert_eq!(restores.len(), 1, "one restore entry");
    let restore = restores[0];
    let carried: usize = log[restore].detail["carried_entries"].parse().unwrap();
    assert!(carried > 0, "{:?}", log[restore]);
    let gone: Vec<&String> = all.difference(&served).collect();
    assert!(!gone.is_empty(), "the load went on after the copy");
    for id in gone {
        assert!(
            log[..restore]
                .iter()
                .any(|e| e.action == "alert.submit" && e.objects.contains(id)),
            "the submit of {id}, acknowledged after the backup, is not in the log"
        );
    }

    // The restored node works: a new alert reaches ngo.
    let mut cms = fed.client("police", "cms").await;
    let fresh = submit(&mut cms, "after the restore").await;
    fed.held("ngo", &fresh.id).await;
    fed.shutdown().await;
}
