//! Acknowledged means on disk. The kill -9 tests cannot see a missing sync
//! (the page cache survives the process), so this test watches the sync
//! system calls themselves: both nodes of a two-agency federation run as
//! real processes under `strace`, which records every `fsync`/`fdatasync`
//! with its start and duration, and the test records when each request left
//! and when its acknowledgement came back. Every acknowledgement — a
//! client's submit, sequential or concurrent, and a receiving node's
//! delivery ack to its peer — must come after a real sync of the store's
//! journal that began after the request was made.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use casebridge::config::NodeConfig;
use casebridge::proto::v1::{BackupStoreRequest, QueryAuditRequest};
use common::process::{connect_when_up, two_agencies};
use common::*;

/// One `fsync`/`fdatasync` of a store's journal, in seconds since the epoch.
#[derive(Debug, Clone, Copy)]
struct Sync {
    start: f64,
    end: f64,
}

/// A node process under strace. Dropping it kills the node and strace
/// (strace alone would only detach, leaving the node running).
struct Traced {
    strace: Child,
    out: PathBuf,
}

impl Traced {
    fn spawn(config: &Path, out: PathBuf) -> Self {
        let strace = Command::new("strace")
            .args(["-f", "-qq", "-ttt", "-T", "-y"])
            .args(["-e", "trace=fsync,fdatasync"])
            .arg("-o")
            .arg(&out)
            .arg(env!("CARGO_BIN_EXE_casebridge"))
            .args(["node", "run", "--config"])
            .arg(config)
            .env("CASEBRIDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("strace runs");
        Self { strace, out }
    }

    /// The node's pid: strace's one child.
    fn node_pid(&self) -> Option<String> {
        let pid = self.strace.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next().map(str::to_owned)
    }

    /// Stops the node with SIGTERM (a clean shutdown) and waits for strace.
    fn stop(mut self) -> PathBuf {
        if let Some(pid) = self.node_pid() {
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
        }
        let _ = self.strace.wait();
        self.out.clone()
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Some(pid) = self.node_pid() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}

/// Whether an strace line is about a journal file of the store in `dir`
/// (`-y` prints each descriptor's path: `fsync(12</path/to/store/3.jnl>)`).
fn is_journal(line: &str, dir: &Path) -> bool {
    let prefix = format!("<{}/", dir.display());
    line.split(&prefix)
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .is_some_and(|name| !name.contains('/') && name.ends_with(".jnl"))
}

/// The pid, time and call of one strace line (strace pads the pid with
/// spaces to a fixed width, so the separator is not always one space).
fn strace_fields(line: &str) -> Option<(&str, &str, &str)> {
    let (pid, rest) = line.trim_start().split_once(' ')?;
    let (ts, call) = rest.trim_start().split_once(' ')?;
    Some((pid, ts, call))
}

/// The syncs of the journal of the store in `dir` in a strace output.
fn syncs_of(trace: &Path, dir: &Path) -> Vec<Sync> {
    let text = std::fs::read_to_string(trace).expect("strace wrote its output");
    let mut pending: std::collections::HashMap<String, f64> = Default::default();
    let mut out = Vec::new();
    let duration = |line: &str| -> Option<f64> {
        let d = line.rsplit_once('<')?.1.strip_suffix('>')?;
        d.parse().ok()
    };
    for line in text.lines() {
        let Some((pid, ts, rest)) = strace_fields(line) else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        let call = rest.starts_with("fsync(") || rest.starts_with("fdatasync(");
        if call && is_journal(rest, dir) {
            if rest.ends_with("<unfinished ...>") {
                pending.insert(pid.to_owned(), ts);
            } else if rest.contains(") = 0") {
                out.push(Sync {
                    start: ts,
                    end: ts + duration(rest).unwrap_or(0.0),
                });
            }
        } else if (rest.starts_with("<... fsync resumed>")
            || rest.starts_with("<... fdatasync resumed>"))
            && let Some(start) = pending.remove(pid)
            && rest.contains(") = 0")
        {
            out.push(Sync {
                start,
                end: start + duration(rest).unwrap_or(ts - start),
            });
        }
    }
    out
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64()
}

/// Request windows `(sent, acknowledged)` with no real sync inside them.
fn unsynced(windows: &[(f64, f64)], syncs: &[Sync]) -> Vec<(f64, f64)> {
    windows
        .iter()
        .copied()
        .filter(|&(sent, acked)| !syncs.iter().any(|s| s.start >= sent && s.end <= acked))
        .collect()
}

fn store_dir(node_toml: &Path) -> PathBuf {
    let cfg = NodeConfig::load(node_toml).unwrap();
    std::fs::canonicalize(&cfg.store.dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledgement_follows_a_real_sync() {
    if Command::new("strace").arg("-V").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "strace is not installed: .ci/run installs it, and this test needs it"
        );
        eprintln!("SKIPPED: strace is not installed (apt-get install strace)");
        return;
    }
    const SEQUENTIAL: usize = 12;
    const WRITERS: usize = 4;
    const EACH: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let layout = two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let ngo = &layout.agencies[&agency("ngo")];
    let ngo_node = Traced::spawn(&ngo.node_config, dir.path().join("ngo.strace"));
    let police_node = Traced::spawn(&police.node_config, dir.path().join("police.strace"));
    let mut cms = connect_when_up(police.client_config("cms")).await;
    let admin = connect_when_up(police.client_config("admin")).await;
    connect_when_up(ngo.client_config("cms")).await;

    // One client, one request at a time; after each, wait for ngo's ack of
    // its delivery (police logs the share when the ack arrives).
    let mut submits = Vec::new();
    let mut deliveries = Vec::new();
    for i in 0..SEQUENTIAL {
        let sent = secs(SystemTime::now());
        let id = submit(&mut cms, &format!("sequential alert {i}")).await.id;
        let acked = secs(SystemTime::now());
        submits.push((sent, acked));
        let shared = eventually("the delivery ack to be logged", || {
            let (mut admin, id) = (admin.clone(), id.clone());
            async move {
                let page = admin
                    .admin
                    .query_audit(QueryAuditRequest {
                        action: "alert.share".into(),
                        alert_id: id,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                let t = page.entries.first()?.time?;
                Some(t.seconds as f64 + f64::from(t.nanos) / 1e9)
            }
        })
        .await;
        // From the request on (police may deliver before its ack reaches
        // us); the log's times have millisecond precision.
        deliveries.push((sent, shared + 0.001));
    }

    // Concurrent clients: acknowledgements share group-commit syncs.
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let mut c = cms.clone();
        tasks.push(tokio::spawn(async move {
            let mut windows = Vec::new();
            for i in 0..EACH {
                let sent = secs(SystemTime::now());
                submit(&mut c, &format!("writer {t} alert {i}")).await;
                windows.push((sent, secs(SystemTime::now())));
            }
            windows
        }));
    }
    let mut concurrent = Vec::new();
    for t in tasks {
        concurrent.extend(t.await.unwrap());
    }

    // An online backup is on disk when it is reported done: its files, its
    // directories and its own entry in the backup directory.
    let backup = admin
        .clone()
        .admin
        .backup_store(BackupStoreRequest {
            label: "synced".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let backup = std::fs::canonicalize(&backup.path).unwrap();

    let police_trace = police_node.stop();
    let trace = std::fs::read_to_string(&police_trace).unwrap();
    assert!(
        trace
            .lines()
            .any(|l| l.contains("fsync(") && is_journal(l, &backup)),
        "the backup's journal was not synced"
    );
    for synced in [backup.clone(), backup.parent().unwrap().to_owned()] {
        assert!(
            trace
                .lines()
                .any(|l| l.contains("fsync(") && l.contains(&format!("<{}>", synced.display()))),
            "the backup's {} was not synced",
            synced.display()
        );
    }
    let ngo_trace = ngo_node.stop();
    let police_syncs = syncs_of(&police_trace, &store_dir(&police.node_config));
    let ngo_syncs = syncs_of(&ngo_trace, &store_dir(&ngo.node_config));
    let requests = SEQUENTIAL + WRITERS * EACH;
    println!(
        "police: {} syncs of the store journal for {requests} acknowledged submits ({:.2} per submit); \
         ngo: {} syncs for {SEQUENTIAL} delivery acks",
        police_syncs.len(),
        police_syncs.len() as f64 / requests as f64,
        ngo_syncs.len()
    );
    assert!(
        !police_syncs.is_empty(),
        "no sync of the police store journal seen at all"
    );
    assert_eq!(
        unsynced(&submits, &police_syncs),
        [],
        "sequential submits acknowledged without a sync after their request"
    );
    assert_eq!(
        unsynced(&concurrent, &police_syncs),
        [],
        "concurrent submits acknowledged without a sync after their request"
    );
    assert_eq!(
        unsynced(&deliveries, &ngo_syncs),
        [],
        "deliveries acknowledged to the peer without a sync after they were sent"
    );
}
