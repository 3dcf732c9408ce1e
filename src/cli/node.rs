//! `casebridge node run`, `peers` and `status`: running a node and asking
//! it how it is doing.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::exit::{Exit, Failure, failure};
use super::output;
use super::session::{connect, shutdown_signal};
use crate::config::NodeConfig;
use crate::proto::v1::{GetStatusRequest, ListPeersRequest};

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Serve the peer and client APIs until SIGINT/SIGTERM.
    Run {
        /// The node's config file (node.toml).
        #[arg(long, env = "CASEBRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Check everything `node run` would (config, certificates and keys,
    /// their permissions, chains and SPIFFE ids, CRLs, key ring, policy,
    /// store) without binding a port; report every problem. Exit 64 if any.
    Check {
        /// The node's config file (node.toml).
        #[arg(long, env = "CASEBRIDGE_CONFIG")]
        config: PathBuf,
    },
}

pub async fn run(command: NodeCommand) -> Result<(), Failure> {
    match command {
        NodeCommand::Run { config } => run_node(&config).await,
        NodeCommand::Check { config } => {
            let config = NodeConfig::load(&config)?;
            let report = crate::node::check::check(&config);
            for line in &report.fine {
                println!("ok       {line}");
            }
            for line in &report.warnings {
                println!("warning  {line}");
            }
            for line in &report.problems {
                println!("problem  {line}");
            }
            if report.ok() {
                println!("{}: ready to run", config.agency());
                Ok(())
            } else {
                Err(failure(
                    Exit::Usage,
                    anyhow::anyhow!(
                        "{} problem(s); the node would not start",
                        report.problems.len()
                    ),
                ))
            }
        }
    }
}

/// Each peer's delivery state (admin role).
pub async fn peers(client_config: Option<&Path>, json: bool) -> Result<(), Failure> {
    let mut client = connect(client_config).await?;
    let peers = client
        .admin
        .list_peers(ListPeersRequest {})
        .await?
        .into_inner();
    output::peers(&peers, json);
    Ok(())
}

/// The node's status (admin role).
pub async fn status(client_config: Option<&Path>, json: bool) -> Result<(), Failure> {
    let mut client = connect(client_config).await?;
    let status = client
        .admin
        .get_status(GetStatusRequest {})
        .await?
        .into_inner();
    output::status(&status, json);
    Ok(())
}

/// A running node or key service creates nothing for other local users to
/// read (its store, backups, uploads, logs of case data), whatever umask
/// it was started with: the unit file's `UMask` is a second line, not the
/// first. Files meant for others (certificates) are written by other
/// commands, with explicit modes.
pub fn owner_only_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

async fn run_node(config_path: &Path) -> Result<(), Failure> {
    owner_only_umask();
    let config = NodeConfig::load(config_path)?;
    // Every file problem first, all of them, as a configuration error: a
    // taken port must not hide a broken certificate.
    let report = crate::node::check::check(&config);
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    if !report.ok() {
        return Err(failure(
            Exit::Usage,
            anyhow::anyhow!("{}", report.problems.join("\n")),
        ));
    }
    let listeners = crate::node::Listeners::bind(&config).await?;
    let node = crate::node::start(config, listeners).await?;
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(
        node.core().clone(),
        config_path.to_owned(),
    ));
    node.run_until(shutdown_signal()).await?;
    Ok(())
}

/// SIGHUP re-reads the sharing policy file and node.toml's `[clients]`
/// table (a client added with its certificate and roles works without a
/// restart; one removed loses access at its next call). A file that cannot
/// be read or does not validate is reported and what is in force stays.
/// Every other setting needs a restart.
#[cfg(unix)]
async fn reload_on_sighup(core: std::sync::Arc<crate::core::NodeCore>, config_path: PathBuf) {
    use crate::sharing::Reload;
    use tokio::signal::unix::{SignalKind, signal};
    let sharing = core.sharing.clone();
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload the policy with SetPolicy");
        return;
    };
    while hup.recv().await.is_some() {
        match NodeConfig::load(&config_path) {
            Ok(config) => match core.reload_clients(config.clients).await {
                Ok(c) if c.is_empty() => tracing::info!("SIGHUP: client roles unchanged"),
                Ok(c) => {
                    // Names as an operator writes them, not Rust's debug form.
                    let names = |v: &[crate::ids::ClientName]| {
                        let n: Vec<&str> = v.iter().map(|c| c.as_str()).collect();
                        if n.is_empty() {
                            "none".to_owned()
                        } else {
                            n.join(", ")
                        }
                    };
                    tracing::info!(
                        added = %names(&c.added),
                        removed = %names(&c.removed),
                        changed = %names(&c.changed),
                        "SIGHUP: client roles reloaded"
                    );
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: client roles NOT reloaded"),
            },
            Err(e) => {
                let error = e.to_string().replace('\n', "; ");
                tracing::error!(%error, "SIGHUP: node.toml does not load; client roles NOT reloaded");
            }
        }
        match sharing.reload_file().await {
            Ok(Reload::Installed(v)) => {
                tracing::info!(version = v.version, "SIGHUP: sharing policy reloaded");
            }
            Ok(Reload::Unchanged(v)) => {
                tracing::info!(
                    version = v,
                    "SIGHUP: policy file unchanged; the version in force stays"
                );
            }
            Ok(Reload::Kept { version, file }) => {
                tracing::warn!(
                    version,
                    file = %file.display(),
                    "SIGHUP: policy file NOT installed: it changed, but the version in force was set \
                     through the API and stays (the warning above names the command that installs it)"
                );
            }
            Err(e) => {
                // One line per event, so log collectors keep it together.
                let error = e.to_string().replace('\n', "; ");
                tracing::error!(%error, version = sharing.version(), "SIGHUP: policy NOT reloaded; the version in force stays");
            }
        }
    }
}
