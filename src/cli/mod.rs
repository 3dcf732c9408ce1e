//! The `casebridge` command line. `anyhow` lives here, at the binary's edge;
//! the library below returns typed errors.

mod audit;
mod demo;
mod output;
mod policy;
mod pseudo;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Args, Parser, Subcommand};
use tonic::Code;

use crate::certs;
use crate::client::{ClientError, NodeClient};
use crate::config::{ConfigError, EXIT_CONFIG, NodeConfig};
use crate::identity::TlsError;
use crate::ids::{AgencyId, FederationName};
use crate::node::NodeError;
use crate::proto::v1::{
    AlertDraft, Category, GetAlertRequest, GetStatusRequest, ListAlertsRequest, ListPeersRequest,
    RetractAlertRequest, SubmitAlertRequest, UpdateAlertRequest,
};

/// sysexits.h codes, so scripts can tell bad input from an unreachable node.
const EXIT_DATAERR: u8 = 65;
const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Parser)]
#[command(
    name = "casebridge",
    version,
    about = "Cross-agency exchange for pseudonymized trafficking case alerts"
)]
struct Cli {
    /// Client config written by `certs init` (client.toml), for alert/peers/status.
    #[arg(long, global = true, env = "CASEBRIDGE_CLIENT_CONFIG")]
    client_config: Option<PathBuf>,
    /// Machine-readable output (canonical protobuf JSON).
    #[arg(long, global = true)]
    json: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `casebridge=debug`.
    #[arg(long, global = true, env = "CASEBRIDGE_LOG")]
    log: Option<String>,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    /// Why you make this call; recorded with it in the node's audit log
    /// (printable ASCII, at most 256 bytes), e.g. a case number.
    #[arg(long, global = true, env = "CASEBRIDGE_PURPOSE")]
    purpose: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Development PKI.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Submit, read, update and retract alerts through your node.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
    /// Hits: your alerts that relate to other agencies' alerts.
    Hits {
        #[command(subcommand)]
        command: HitsCommand,
    },
    /// Delivery state of each peer (admin role).
    Peers,
    /// Node status (admin role).
    Status,
    /// Start a three-agency demo federation on this machine.
    Demo(demo::DemoArgs),
    /// The federation's matching key ring.
    Keys {
        #[command(subcommand)]
        command: pseudo::KeysCommand,
    },
    /// Sharing policy: validate and explain before going live.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Show how one identifier is normalized and tokenized.
    Pseudo {
        #[command(subcommand)]
        command: pseudo::PseudoCommand,
    },
    /// The tamper-evident audit log: verify, export, query.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Back up a running node's store; restore a stopped node's.
    Store {
        #[command(subcommand)]
        command: audit::StoreCommand,
    },
}

#[derive(Subcommand)]
enum HitsCommand {
    /// Print hits after a sequence number, then keep streaming new ones
    /// (reconnecting after an interruption) until Ctrl-C.
    Watch {
        /// Resume after this hit sequence (the last one you processed).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Print the hits found so far and exit.
        #[arg(long)]
        backlog_only: bool,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Serve the peer and client APIs until SIGINT/SIGTERM.
    Run {
        #[arg(long, env = "CASEBRIDGE_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a development federation: CA, node and client certificates, configs.
    Init {
        #[arg(long)]
        federation: String,
        /// Comma-separated agency ids, e.g. police,labour,ngo.
        #[arg(long, value_delimiter = ',', required = true)]
        agencies: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a development certificate: add it to its CA's revocation list.
    /// Nodes pick the new list up within `tls.crl_reload_secs`, and open
    /// connections end within `tls.max_connection_age_secs`.
    Revoke {
        /// The federation directory written by `certs init`.
        #[arg(long)]
        dir: PathBuf,
        /// The agency whose node certificate (or client, with --client) to revoke.
        #[arg(long)]
        agency: String,
        /// Revoke this client certificate of the agency instead of its node's.
        #[arg(long)]
        client: Option<String>,
    },
}

#[derive(Subcommand)]
enum AlertCommand {
    /// Submit a new alert from a JSON file (canonical protobuf JSON of AlertDraft).
    Submit {
        #[arg(long)]
        file: PathBuf,
        /// Idempotency key: resubmitting with the same key returns the first alert.
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Show one alert.
    Get { id: String },
    /// List alerts (all pages).
    List(ListArgs),
    /// Replace an alert's content and subjects (new version).
    Update {
        id: String,
        #[arg(long)]
        file: PathBuf,
        /// Fail unless the alert is at this version (0 = any).
        #[arg(long, default_value_t = 0)]
        expected_version: u64,
    },
    /// Ask the federation whether anyone holds an identifier (tokenized
    /// here; raw values never leave your node).
    Lookup {
        #[command(flatten)]
        id: pseudo::IdentifierArgs,
        /// Ask only these agencies (repeatable); default: every peer.
        #[arg(long = "peer")]
        peers: Vec<String>,
    },
    /// Retract an alert: a tombstone version that purges it at every peer.
    Retract {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, default_value_t = 0)]
        expected_version: u64,
    },
}

#[derive(Args)]
struct ListArgs {
    /// Only alerts from this agency.
    #[arg(long)]
    origin: Option<String>,
    /// Only this category, e.g. LABOUR_EXPLOITATION.
    #[arg(long)]
    category: Option<String>,
    #[arg(long)]
    include_retracted: bool,
    /// Stop after this many alerts.
    #[arg(long)]
    limit: Option<usize>,
}

/// An error with the exit code it should produce.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        let code = if let Some(status) = error.downcast_ref::<tonic::Status>() {
            match status.code() {
                Code::InvalidArgument => EXIT_DATAERR,
                Code::Unavailable | Code::DeadlineExceeded => EXIT_UNAVAILABLE,
                _ => 1,
            }
        } else if is_config_error(&error) {
            EXIT_CONFIG as u8
        } else if matches!(
            error.downcast_ref::<ClientError>(),
            Some(ClientError::Tls(_))
        ) || matches!(
            error.downcast_ref::<NodeError>(),
            Some(NodeError::Bind { .. })
        ) {
            EXIT_UNAVAILABLE
        } else {
            1
        };
        Failure { code, error }
    }
}

/// Errors an operator fixes by editing the config or the files it names
/// (exit 64, so a supervisor does not restart in a loop).
fn is_config_error(error: &anyhow::Error) -> bool {
    let tls_file = |e: &TlsError| !matches!(e, TlsError::Connect { .. });
    error.downcast_ref::<ConfigError>().is_some()
        || match error.downcast_ref::<ClientError>() {
            Some(ClientError::Config(_) | ClientError::Purpose(_)) => true,
            Some(ClientError::Tls(e)) => tls_file(e),
            None => false,
        }
        || error
            .downcast_ref::<crate::pseudo::KeyRingError>()
            .is_some()
        || match error.downcast_ref::<NodeError>() {
            Some(NodeError::Tls(e)) => tls_file(e),
            Some(
                NodeError::WrongCertificate { .. }
                | NodeError::Sharing(_)
                | NodeError::KeyRing(_)
                | NodeError::KeyRingFederation { .. },
            ) => true,
            _ => false,
        }
}

fn failure(code: u8, error: anyhow::Error) -> Failure {
    Failure { code, error }
}

/// A refused SetPolicy, with each problem as `FILE:line:column: message`,
/// the way `policy validate` prints them.
fn status_failure(status: tonic::Status, file: &Path) -> Failure {
    use tonic_types::StatusExt;
    let violations = status
        .get_details_bad_request()
        .map(|b| b.field_violations)
        .unwrap_or_default();
    if status.code() != Code::InvalidArgument || violations.is_empty() {
        return status.into();
    }
    let lines: Vec<String> = violations
        .iter()
        .map(|v| format!("{}:{}", file.display(), v.description))
        .collect();
    failure(
        EXIT_DATAERR,
        anyhow!("{}\n{}", status.message(), lines.join("\n")),
    )
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", render_error(&f.error));
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match cli.command {
        Command::Node { .. } => "info",
        _ => "warn",
    };
    let filter = cli
        .log
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    use std::io::IsTerminal;
    // Colour only for a person at a terminal, not in journald or a file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Shows a gRPC status with its field violations, or an error with its causes.
fn render_error(e: &anyhow::Error) -> String {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        use tonic_types::StatusExt;
        let mut s = format!("{:?}: {}", status.code(), status.message());
        if let Some(bad) = status.get_details_bad_request() {
            for v in bad.field_violations {
                s.push_str(&format!("\n  {}: {}", v.field, v.description));
            }
        }
        return s;
    }
    format!("{e:#}")
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    if let Some(p) = &cli.purpose {
        let purpose = crate::client::Purpose::new(p)?;
        let _ = PURPOSE.set(purpose);
    }
    match cli.command {
        Command::Node {
            command: NodeCommand::Run { config },
        } => run_node(&config).await,
        Command::Certs {
            command:
                CertsCommand::Init {
                    federation,
                    agencies,
                    out,
                },
        } => certs_init(&federation, &agencies, &out),
        Command::Certs {
            command:
                CertsCommand::Revoke {
                    dir,
                    agency,
                    client,
                },
        } => {
            let usage = |e: crate::ids::IdError| failure(EXIT_CONFIG as u8, anyhow!(e));
            let agency = AgencyId::new(agency).map_err(usage)?;
            let target = match client {
                Some(name) => certs::RevokeTarget::Client(
                    agency,
                    crate::ids::ClientName::new(name).map_err(usage)?,
                ),
                None => certs::RevokeTarget::Node(agency),
            };
            let (crl, serial) =
                certs::revoke(&dir, &target).map_err(|e| failure(EXIT_DATAERR, anyhow!(e)))?;
            println!("revoked serial {serial}; {} updated", crl.display());
            Ok(())
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Keys { command } => pseudo::keys(command),
        Command::Policy { command } => {
            policy::run(command, json, cli.client_config.as_deref()).await
        }
        Command::Pseudo { command } => pseudo::pseudo(command, json),
        Command::Audit { command } => audit::audit(command, cli.client_config.as_deref()).await,
        Command::Store { command } => audit::store(command, cli.client_config.as_deref()).await,
        Command::Alert { command } => {
            let client = connect(cli.client_config.as_deref()).await?;
            alert(client, command, json).await
        }
        Command::Hits {
            command:
                HitsCommand::Watch {
                    after,
                    backlog_only,
                },
        } => watch_hits(cli.client_config.as_deref(), after, backlog_only, json).await,
        Command::Peers => {
            let mut client = connect(cli.client_config.as_deref()).await?;
            let peers = client
                .admin
                .list_peers(ListPeersRequest {})
                .await?
                .into_inner();
            output::peers(&peers, json);
            Ok(())
        }
        Command::Status => {
            let mut client = connect(cli.client_config.as_deref()).await?;
            let status = client
                .admin
                .get_status(GetStatusRequest {})
                .await?
                .into_inner();
            output::status(&status, json);
            Ok(())
        }
    }
}

/// Streams hits, resuming from the last printed sequence after a dropped
/// connection (bounded backoff), until Ctrl-C or, with `backlog_only`, the end
/// of the backlog.
async fn watch_hits(
    config: Option<&Path>,
    mut after: u64,
    backlog_only: bool,
    json: bool,
) -> Result<(), Failure> {
    use crate::proto::v1::WatchHitsRequest;
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        let mut client = connect(config).await?;
        let mut stream = client
            .alerts
            .watch_hits(WatchHitsRequest {
                after_sequence: after,
                backlog_only,
            })
            .await?
            .into_inner();
        loop {
            let next = tokio::select! {
                _ = shutdown_signal() => return Ok(()),
                next = stream.message() => next,
            };
            match next {
                Ok(Some(hit)) => {
                    after = hit.sequence;
                    output::hit(&hit, json);
                    delay = std::time::Duration::from_millis(500);
                }
                Ok(None) if backlog_only => return Ok(()),
                Ok(None) => break,
                Err(status) if status.code() == Code::Unavailable => {
                    eprintln!(
                        "connection lost ({}); resuming after hit {after}",
                        status.message()
                    );
                    break;
                }
                Err(status) => return Err(status.into()),
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(30));
    }
}

async fn run_node(config: &Path) -> Result<(), Failure> {
    let config = NodeConfig::load(config)?;
    let listeners = crate::node::Listeners::bind(&config).await?;
    let node = crate::node::start(config, listeners).await?;
    #[cfg(unix)]
    tokio::spawn(reload_policy_on_sighup(node.core().sharing.clone()));
    node.run_until(shutdown_signal()).await?;
    Ok(())
}

/// SIGHUP re-reads the sharing policy file. A file that cannot be read or
/// does not validate is reported and the policy in force stays.
#[cfg(unix)]
async fn reload_policy_on_sighup(sharing: std::sync::Arc<crate::sharing::Sharing>) {
    use crate::sharing::Reload;
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload the policy with SetPolicy");
        return;
    };
    while hup.recv().await.is_some() {
        match sharing.reload_file().await {
            Ok(Reload::Installed(v)) => {
                tracing::info!(version = v.version, "SIGHUP: sharing policy reloaded");
            }
            Ok(Reload::Unchanged(v)) => {
                tracing::info!(version = v, "SIGHUP: policy file unchanged");
            }
            Err(e) => {
                // One line per event, so log collectors keep it together.
                let error = e.to_string().replace('\n', "; ");
                tracing::error!(%error, version = sharing.version(), "SIGHUP: policy NOT reloaded; the version in force stays");
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM (systemd and Kubernetes stop with SIGTERM).
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
}

fn certs_init(federation: &str, agencies: &[String], out: &Path) -> Result<(), Failure> {
    let usage = |e: crate::ids::IdError| failure(EXIT_CONFIG as u8, anyhow!(e));
    let federation = FederationName::new(federation).map_err(usage)?;
    let mut ids = Vec::new();
    for a in agencies {
        let id = AgencyId::new(a.trim()).map_err(usage)?;
        if ids.contains(&id) {
            return Err(failure(
                EXIT_CONFIG as u8,
                anyhow!("agency `{id}` is listed twice"),
            ));
        }
        ids.push(id);
    }
    let addrs = certs::free_loopback_addrs(&ids)?;
    let layout = certs::init_federation(&federation, &addrs, out)?;
    println!(
        "development federation `{federation}` written to {}",
        out.display()
    );
    for (agency, a) in &layout.agencies {
        println!(
            "  {agency}: peer {} client {}  node config {}",
            a.addrs.peer,
            a.addrs.client,
            a.node_config.display()
        );
    }
    println!(
        "start a node:    casebridge node run --config {}",
        layout
            .agencies
            .values()
            .next()
            .map_or(String::new(), |a| a.node_config.display().to_string())
    );
    println!(
        "use its client:  export CASEBRIDGE_CLIENT_CONFIG={}",
        layout.agencies.values().next().map_or(String::new(), |a| a
            .client_config("cms")
            .display()
            .to_string())
    );
    Ok(())
}

/// An RFC 3339 time given on the command line, for a request field.
fn time_flag(flag: &str, s: &str) -> Result<pbjson_types::Timestamp, Failure> {
    crate::time::parse_ms(s)
        .map(crate::time::ms_timestamp)
        .ok_or_else(|| {
            failure(
                EXIT_CONFIG as u8,
                anyhow!("--{flag} `{s}` is not an RFC 3339 time, e.g. 2026-11-01T00:00:00Z"),
            )
        })
}

/// The `--purpose` every client call of this process states.
static PURPOSE: std::sync::OnceLock<crate::client::Purpose> = std::sync::OnceLock::new();

async fn connect(path: Option<&Path>) -> Result<NodeClient, Failure> {
    let path = path.ok_or_else(|| {
        failure(
            EXIT_CONFIG as u8,
            anyhow!("no client config: pass --client-config FILE or set CASEBRIDGE_CLIENT_CONFIG"),
        )
    })?;
    let client = NodeClient::connect_file(path).await?;
    Ok(match PURPOSE.get() {
        Some(p) => client.purpose(p.clone()),
        None => client,
    })
}

/// Reads an AlertDraft in canonical protobuf JSON; errors name file, line and column.
fn read_draft(path: &Path) -> Result<AlertDraft, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))
        .map_err(|e| failure(EXIT_DATAERR, e))?;
    serde_json::from_str(&text).map_err(|e| {
        failure(
            EXIT_DATAERR,
            anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()),
        )
    })
}

async fn alert(mut client: NodeClient, command: AlertCommand, json: bool) -> Result<(), Failure> {
    let api = &mut client.alerts;
    match command {
        AlertCommand::Submit { file, request_id } => {
            let draft = read_draft(&file)?;
            let alert = api
                .submit_alert(SubmitAlertRequest {
                    draft: Some(draft),
                    request_id,
                })
                .await?
                .into_inner();
            output::alert(&alert, json);
        }
        AlertCommand::Lookup { id, peers } => {
            let answer = api
                .lookup(crate::proto::v1::LookupRequest {
                    identifiers: vec![crate::proto::v1::Identifier {
                        kind: Some(id.kind()),
                    }],
                    peers,
                })
                .await?
                .into_inner();
            output::lookup(&answer, json);
        }
        AlertCommand::Get { id } => {
            let alert = api.get_alert(GetAlertRequest { id }).await?.into_inner();
            output::alert(&alert, json);
        }
        AlertCommand::Update {
            id,
            file,
            expected_version,
        } => {
            let draft = read_draft(&file)?;
            let alert = api
                .update_alert(UpdateAlertRequest {
                    id,
                    expected_version,
                    draft: Some(draft),
                })
                .await?
                .into_inner();
            output::alert(&alert, json);
        }
        AlertCommand::Retract {
            id,
            reason,
            expected_version,
        } => {
            let alert = api
                .retract_alert(RetractAlertRequest {
                    id,
                    expected_version,
                    reason,
                })
                .await?
                .into_inner();
            output::alert(&alert, json);
        }
        AlertCommand::List(args) => {
            let category = match args.category.as_deref() {
                None => Category::Unspecified,
                Some(c) => {
                    let name = c.to_ascii_uppercase();
                    let name = if name.starts_with("CATEGORY_") {
                        name
                    } else {
                        format!("CATEGORY_{name}")
                    };
                    Category::from_str_name(&name)
                        .ok_or_else(|| failure(EXIT_DATAERR, anyhow!("unknown category `{c}`")))?
                }
            };
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = api
                    .list_alerts(ListAlertsRequest {
                        origin: args.origin.clone().unwrap_or_default(),
                        category: category as i32,
                        include_retracted: args.include_retracted,
                        page_size: 500,
                        page_token,
                    })
                    .await?
                    .into_inner();
                all.extend(page.alerts);
                if page.next_page_token.is_empty() || args.limit.is_some_and(|l| all.len() >= l) {
                    break;
                }
                page_token = page.next_page_token;
            }
            if let Some(l) = args.limit {
                all.truncate(l);
            }
            output::alerts(&all, json);
        }
    }
    Ok(())
}
