//! A full disk: the node's store on a size-limited tmpfs mount fills up
//! under submits. Whatever the node acknowledged stays, what it could not
//! store is refused with UNAVAILABLE (never acknowledged), and once there is
//! room again the restarted node holds every acknowledged alert and takes
//! new ones. (sled keeps the first I/O error for the life of the process,
//! so it takes a restart, not just room, to write again.) Needs root for
//! `mount`; CI runs as root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use casebridge::client::NodeClient;
use casebridge::proto::v1::SubmitAlertRequest;
use common::process::{NodeProcess, connect_when_up, lost_alerts, two_agencies};
use common::*;

/// A tmpfs mount, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success(), "remount failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn try_submit(c: &mut NodeClient, i: usize) -> Result<String, tonic::Status> {
    let mut draft = sample_draft(&format!("disk full alert {i} {}", "n".repeat(8000)));
    draft.subjects.clear();
    c.alerts
        .submit_alert(SubmitAlertRequest {
            draft: Some(draft),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .map(|r| r.into_inner().id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_alerts_and_keeps_acknowledged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let layout = two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let Some(mount) = Mount::tmpfs(&dir.path().join("small"), "8m") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot mount a tmpfs (CI runs as root and must be able to)"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    // The store on the small mount; ngo stays down, so the outbox grows too.
    let toml = std::fs::read_to_string(&police.node_config).unwrap();
    let store = mount.0.join("store");
    let toml = toml.replace(
        "[store]\ndir = \"data\"",
        &format!("[store]\ndir = \"{}\"", store.display()),
    );
    std::fs::write(&police.node_config, toml).unwrap();

    let mut node = NodeProcess::spawn(&police.node_config, "warn", Stdio::inherit());
    let mut cms = connect_when_up(police.client_config("cms")).await;
    let mut acked = Vec::new();
    let mut refused = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..20_000 {
        match try_submit(&mut cms, i).await {
            Ok(id) => acked.push(id),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
        assert!(Instant::now() < deadline, "the disk never filled");
    }
    let refused = refused.expect("the 8 MiB store never filled");
    println!(
        "{} alerts acknowledged before the disk filled; then: {:?} {}",
        acked.len(),
        refused.code(),
        refused.message()
    );
    assert!(!acked.is_empty());
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    // Room again, and a restart: every acknowledged alert is there, and
    // the node takes new ones.
    mount.resize("256m");
    node.signal("-TERM");
    let _ = node.0.wait();
    drop(node);
    let _node = NodeProcess::spawn(&police.node_config, "warn", Stdio::inherit());
    let mut reader = connect_when_up(police.client_config("analyst")).await;
    let lost = lost_alerts(&mut reader, &acked).await;
    assert!(lost.is_empty(), "acknowledged alerts lost: {lost:?}");
    let mut cms = connect_when_up(police.client_config("cms")).await;
    try_submit(&mut cms, usize::MAX)
        .await
        .expect("a submit once there is room again");
}
