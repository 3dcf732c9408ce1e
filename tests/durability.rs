//! What a node acknowledged survives `kill -9` of the real binary.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use casebridge::certs::{free_loopback_addrs, init_federation};
use casebridge::client::NodeClient;
use casebridge::ids::FederationName;
use casebridge::proto::v1::{GetStatusRequest, ListPeersRequest};
use common::*;

struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_node(config: &std::path::Path) -> NodeProcess {
    NodeProcess(
        Command::new(env!("CARGO_BIN_EXE_casebridge"))
            .args(["node", "run", "--config"])
            .arg(config)
            .env("CASEBRIDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

async fn connect_when_up(client_toml: &std::path::Path) -> NodeClient {
    let deadline = Instant::now() + WAIT;
    loop {
        match NodeClient::connect_file(client_toml).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node did not come up: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_alerts_survive_kill_9() {
    const N: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let ids = [agency("police"), agency("ngo")];
    let addrs = free_loopback_addrs(&ids).unwrap();
    let layout = init_federation(
        &FederationName::new(FEDERATION).unwrap(),
        &addrs,
        dir.path(),
    )
    .unwrap();
    let police = &layout.agencies[&agency("police")];

    // ngo stays down, so every acknowledged alert must also stay queued for it.
    let mut node = spawn_node(&police.node_config);
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
    node.0.kill().unwrap();
    node.0.wait().unwrap();
    drop(node);

    let _node = spawn_node(&police.node_config);
    let mut admin = connect_when_up(police.client_config("admin")).await;
    let status = admin
        .admin
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.local_alerts, N as u64,
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
    for id in &acked {
        analyst
            .alerts
            .get_alert(casebridge::proto::v1::GetAlertRequest { id: id.clone() })
            .await
            .unwrap_or_else(|e| panic!("acknowledged alert {id} lost: {e}"));
    }
}
