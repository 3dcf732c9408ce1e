//! The `casebridge` command line. `anyhow` lives here, at the binary's edge;
//! the library below returns typed errors.

//!
//! One file per command group: `alert` (alerts, `alert watch`, `hits
//! watch`), `transfer` (`alert import` with bounded concurrency, retries, a
//! rejected-rows file and progress; `alert export`), `node` (run, with the
//! policy and `[clients]` reloaded on SIGHUP; peers, status), `requests`
//! (disclosure requests and releases), `certs`, `keyservice`, `pseudo`
//! (keys and pseudo), `policy`, `audit`, `store` (backup, restore,
//! migrate), `directory` (the operator's federation directory), `demo`;
//! `exit` holds the exit codes (one `Exit` enum) and
//! error rendering, `output` the human and JSON output, `session` what the
//! groups share to reach a node (the connection, following a stream, the
//! stop signal).

mod alert;
mod audit;
mod certs;
mod demo;
mod directory;
mod exit;
mod keyservice;
mod node;
mod output;
mod policy;
mod pseudo;
mod requests;
mod session;
mod stats;
mod store;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::NodeClient;
use exit::{Failure, render_error};

/// `casebridge --version`: the release, peer protocol range, capabilities
/// and the previous release (see [`crate::release::long_version`]).
static LONG_VERSION: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(crate::release::long_version);

#[derive(Parser)]
#[command(
    name = "casebridge",
    version,
    long_version = LONG_VERSION.as_str(),
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
    /// (printable text in any script, at most 256 bytes), e.g. a case number.
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
        command: node::NodeCommand,
    },
    /// Development PKI.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Submit, read, update and retract alerts through your node.
    Alert {
        #[command(subcommand)]
        command: alert::AlertCommand,
    },
    /// Hits: your alerts that relate to other agencies' alerts.
    Hits {
        #[command(subcommand)]
        command: alert::HitsCommand,
    },
    /// Disclosure requests after a hit: send, decide, answer, list, watch.
    Requests {
        #[command(subcommand)]
        command: requests::RequestsCommand,
    },
    /// Releases of approved data: received, sent, withdrawn.
    Releases {
        #[command(subcommand)]
        command: requests::ReleasesCommand,
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
    /// The federation's OPRF key service: run it, manage its keys.
    Keyservice {
        #[command(subcommand)]
        command: keyservice::KeyServiceCommand,
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
    /// Print shell completions (bash, zsh, fish, elvish, powershell), e.g.
    /// `casebridge completions bash > /etc/bash_completion.d/casebridge`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `casebridge man > casebridge.1`.
    Man,
    /// The signed federation directory: build, sign, verify (operators).
    Directory {
        #[command(subcommand)]
        command: directory::DirectoryCommand,
    },
    /// The federation's private statistics: the plan, releases, a run at
    /// the leader, a CSV export.
    Stats {
        #[command(subcommand)]
        command: stats::StatsCommand,
    },
    /// Back up a running node's store; restore a stopped node's.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    quiet_on_closed_stdout();
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
    let client_config = cli.client_config.clone();
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(mut f) => {
            if let Some(path) = client_config
                && exit::may_be_certificate_refusal(&f)
                && let Ok(cfg) = crate::config::ClientConfig::load(&path)
                && let Some(refused) = runtime.block_on(NodeClient::certificate_refused(&cfg))
            {
                f = refused.into();
            }
            eprintln!("error: {}", render_error(&f.error));
            f.exit.into()
        }
    }
}

/// `casebridge alert list | head -1`: once the reader has gone, the next
/// write to stdout fails with EPIPE, and `println!` panics on it. That is the
/// normal end of a pipeline, not an error: exit 0 without a word, as other
/// command-line tools do. (SIGPIPE stays ignored, as Rust sets it: a node's
/// sockets must see EPIPE as an error, not kill the process.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // "failed printing to stdout: Broken pipe (os error 32)": EPIPE.
        if message.starts_with("failed printing to stdout") && message.contains("(os error 32)") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    // The storage engine's own info lines (table flushes, compactions) are
    // not an operator's business.
    let default = match cli.command {
        Command::Node { .. } => "info,fjall=warn,lsm_tree=warn",
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

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    if let Some(p) = &cli.purpose {
        let purpose = crate::client::Purpose::new(p)?;
        let _ = session::PURPOSE.set(purpose);
    }
    let client_config = cli.client_config.as_deref();
    match cli.command {
        Command::Node { command } => node::run(command).await,
        Command::Certs { command } => certs::run(command),
        Command::Demo(args) => demo::run(args).await,
        Command::Keys { command } => pseudo::keys(command),
        Command::Keyservice { command } => keyservice::run(command).await,
        Command::Policy { command } => policy::run(command, json, client_config).await,
        Command::Pseudo { command } => pseudo::pseudo(command, json),
        Command::Audit { command } => audit::audit(command, client_config).await,
        Command::Directory { command } => directory::run(command, client_config).await,
        Command::Store { command } => store::store(command, client_config).await,
        Command::Stats { command } => stats::run(command, client_config, json).await,
        Command::Alert { command } => alert::run(command, client_config, json).await,
        Command::Hits { command } => alert::hits(command, client_config, json).await,
        Command::Requests { command } => requests::run(command, client_config, json).await,
        Command::Releases { command } => requests::releases(command, client_config, json).await,
        Command::Peers => node::peers(client_config, json).await,
        Command::Status => node::status(client_config, json).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "casebridge", &mut text);
            Ok(output::raw(&text)?)
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut text)?;
            Ok(output::raw(&text)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_argument_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "casebridge", &mut missing);
        assert!(missing.is_empty(), "no help line: {missing:#?}");
    }
}
