//! The real `casebridge` binary as a child process, for tests that kill,
//! signal or restart it.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use casebridge::certs::{FederationLayout, free_loopback_addrs, init_federation};
use casebridge::client::NodeClient;
use casebridge::ids::FederationName;

use super::{FEDERATION, agency, eventually};

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
        Self(
            Command::new(env!("CARGO_BIN_EXE_casebridge"))
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
}

/// A fresh police + ngo federation on free loopback ports, for real processes.
pub fn two_agencies(dir: &Path) -> FederationLayout {
    let ids = [agency("police"), agency("ngo")];
    let addrs = free_loopback_addrs(&ids).unwrap();
    init_federation(&FederationName::new(FEDERATION).unwrap(), &addrs, dir).unwrap()
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
