//! The real `casebridge` binary as a child process, for tests that kill,
//! signal or restart it.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use casebridge::certs::{FederationLayout, free_loopback_addrs, init_federation};
use casebridge::client::NodeClient;
use casebridge::ids::FederationName;
use casebridge::proto::v1::{GetAlertRequest, SubmitAlertRequest};
use tokio::task::JoinHandle;

use super::{FEDERATION, WAIT, agency, eventually, sample_draft};

/// A node process, killed and reaped when dropped (so a failing test
/// leaves nothing running).
pub struct NodeProcess(pub Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl NodeProcess {
    /// `casebridge node run` with `config`, logging at `log` to `stderr`.
    pub fn spawn(config: &Path, log: &str, stderr: Stdio) -> Self {
        Self::spawn_binary(
            Path::new(env!("CARGO_BIN_EXE_casebridge")),
            config,
            log,
            stderr,
        )
    }

    /// As [`Self::spawn`], with another release's `binary`.
    pub fn spawn_binary(binary: &Path, config: &Path, log: &str, stderr: Stdio) -> Self {
        Self(
            Command::new(binary)
                .args(["node", "run", "--config"])
                .arg(config)
                .env("CASEBRIDGE_LOG", log)
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        )
    }

    /// `casebridge node run` with `config`, logging at `log`, and its log
    /// lines as they come.
    pub fn spawn_logging(config: &Path, log: &str) -> (Self, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let mut node = Self::spawn(config, log, Stdio::piped());
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = node.0.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (node, rx)
    }

    /// Sends `signal` (e.g. `-TERM`, `-HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {signal} failed");
    }

    /// SIGKILL, and the process reaped: nothing graceful happens.
    pub fn kill_9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// Waits (for at most [`WAIT`]) for the process to exit by itself,
    /// `after` saying what should have ended it.
    pub async fn exit_status(&mut self, after: &str) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not exit after {after}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Clients submitting at once to one node, each until a submit fails (the
/// node killed, draining or gone: that one was not acknowledged).
pub struct Load {
    acks: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<Vec<String>>>,
}

impl Load {
    /// `submitters` tasks on clones of `client`, each submitting up to
    /// `each` sample alerts, narrated "{prefix}submitter {t} alert {i}".
    pub fn start(client: &NodeClient, submitters: usize, each: usize, prefix: &str) -> Self {
        let acks = Arc::new(AtomicUsize::new(0));
        let tasks = (0..submitters)
            .map(|t| {
                let mut c = client.clone();
                let acks = acks.clone();
                let prefix = prefix.to_owned();
                tokio::spawn(async move {
                    let mut ok = Vec::new();
                    for i in 0..each {
                        let req = SubmitAlertRequest {
                            draft: Some(sample_draft(&format!("{prefix}submitter {t} alert {i}"))),
                            request_id: String::new(),
                            validate_only: false,
                        };
                        match c.alerts.submit_alert(req).await {
                            Ok(a) => {
                                ok.push(a.into_inner().id);
                                acks.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => break, // refused or cut off: not acknowledged
                        }
                    }
                    ok
                })
            })
            .collect();
        Self { acks, tasks }
    }

    /// Waits until at least `n` submits were acknowledged.
    pub async fn wait_for(&self, n: usize, what: &str) {
        eventually(what, || async {
            (self.acks.load(Ordering::Relaxed) >= n).then_some(())
        })
        .await;
    }

    /// Waits for every submitter to stop: the ids acknowledged.
    pub async fn acked(self) -> Vec<String> {
        let mut acked = Vec::new();
        for t in self.tasks {
            acked.extend(t.await.unwrap());
        }
        acked
    }
}

/// The ids of `ids` that `reader`'s node does not return, with its answer.
pub async fn lost_alerts<'a>(
    reader: &mut NodeClient,
    ids: impl IntoIterator<Item = &'a String>,
) -> Vec<(String, tonic::Status)> {
    let mut lost = Vec::new();
    for id in ids {
        if let Err(e) = reader
            .alerts
            .get_alert(GetAlertRequest { id: id.clone() })
            .await
        {
            lost.push((id.clone(), e));
        }
    }
    lost
}

/// A fresh police + ngo federation on free loopback ports, for real processes.
pub fn two_agencies(dir: &Path) -> FederationLayout {
    let ids = [agency("police"), agency("ngo")];
    let addrs = free_loopback_addrs(&ids).unwrap();
    let layout = init_federation(&FederationName::new(FEDERATION).unwrap(), &addrs, dir).unwrap();
    super::unseal(&layout);
    layout
}

/// A client of the node at `client_toml`, once the node answers a read.
pub async fn connect_when_up(client_toml: &Path) -> NodeClient {
    eventually("the node to come up", || async {
        let mut c = NodeClient::connect_file(client_toml).await.ok()?;
        c.alerts
            .list_alerts(casebridge::proto::v1::ListAlertsRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .ok()?;
        Some(c)
    })
    .await
}
