//! `casebridge audit …`: reading, exporting and verifying the audit log.

use crate::text::escape as esc;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};

use super::exit::{Exit, Failure, failure};
use super::session::connect;
use super::store::open_stopped;
use crate::audit::export::{anchors_from_export, page_lines, verify_export};
use crate::audit::signing::PublicKey;
use crate::audit::{Summary, hex};
use crate::config::NodeConfig;
use crate::proto::v1::QueryAuditRequest;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain and signed checkpoints. Exit 0 when intact; exit
    /// 1 naming the first bad entry (edited, deleted, moved, or cut off).
    Verify(VerifyArgs),
    /// Export entries and checkpoints from a running node (admin role) as
    /// JSON Lines, verifiable with `audit verify --file`.
    Export(ExportArgs),
    /// Search the log of a running node (admin role).
    Query(QueryArgs),
    /// Print the node's audit public key, for auditors.
    PublicKey {
        /// The node's config file (node.toml): its audit signing key.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Args)]
pub struct VerifyArgs {
    /// A stopped node's config: verifies its store with its key.
    #[arg(long, conflicts_with_all = ["data_dir", "file"])]
    config: Option<PathBuf>,
    /// A store directory (a stopped node's, or a backup).
    #[arg(long, conflicts_with = "file")]
    data_dir: Option<PathBuf>,
    /// An export written by `audit export`.
    #[arg(long)]
    file: Option<PathBuf>,
    /// The node's public key (`audit public-key`); with --config, the
    /// node's own key is used.
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// A peer's export (`audit export` on the peer): the checkpoints of
    /// this node that the peer holds are checked too, which catches a cut
    /// even if this node's own checkpoints were deleted. Repeatable.
    #[arg(long)]
    anchors: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// RFC 3339 time, e.g. 2026-11-01T00:00:00Z.
    #[arg(long)]
    since: String,
    /// RFC 3339 time; entries before it (default: up to now).
    #[arg(long)]
    until: Option<String>,
    /// Only `jsonl`.
    #[arg(long, default_value = "jsonl")]
    format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct QueryArgs {
    /// `client:<name>`, `peer:<agency>` or `node`.
    #[arg(long)]
    actor: Option<String>,
    /// e.g. `alert.get`, `alert.share`, `tls.handshake`.
    #[arg(long)]
    action: Option<String>,
    /// Entries naming this alert id.
    #[arg(long)]
    alert: Option<String>,
    /// RFC 3339 time; entries from it.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 time; entries before it.
    #[arg(long)]
    until: Option<String>,
    /// Stop after this many entries.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Newest entry first (with --limit: the latest entries).
    #[arg(long)]
    newest_first: bool,
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    failure(Exit::Usage, e.into())
}

use super::session::time_flag as timestamp;

/// The node's audit public key (see [`PublicKey::of_signing_key`]).
pub(super) fn node_public_key(config: &NodeConfig) -> Result<PublicKey, Failure> {
    PublicKey::of_signing_key(&config.audit_signing_key()).map_err(usage)
}

fn print_summary(what: &str, s: &Summary) {
    let signed = match s.last_signed {
        Some(seq) => format!(
            "last signed checkpoint at entry {seq} ({} after it unsigned)",
            super::output::count(s.unsigned_tail(), "entry", "entries")
        ),
        None => "no signed checkpoint yet".into(),
    };
    println!(
        "{what}: audit log intact: {} ({} to {}), {} verified, {signed}; head {}",
        super::output::count(s.entries, "entry", "entries"),
        s.first,
        s.last,
        super::output::count(s.checkpoints as u64, "checkpoint", "checkpoints"),
        hex(&s.head)
    );
}

pub async fn audit(command: AuditCommand, client_config: Option<&Path>) -> Result<(), Failure> {
    match command {
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Export(args) => export(args, client_config).await,
        AuditCommand::Query(args) => query(args, client_config).await,
        AuditCommand::PublicKey { config } => {
            let cfg = NodeConfig::load(&config).map_err(usage)?;
            print!("{}", node_public_key(&cfg)?.to_pem());
            Ok(())
        }
    }
}

/// `audit verify`: the chain and checkpoints of a stopped node's store, a
/// backup or an export, with checkpoints peers hold as extra anchors.
async fn verify(args: VerifyArgs) -> Result<(), Failure> {
    let VerifyArgs {
        config,
        data_dir,
        file,
        public_key,
        anchors,
    } = args;
    let loaded = config
        .as_deref()
        .map(NodeConfig::load)
        .transpose()
        .map_err(usage)?;
    let key = match (&public_key, &loaded) {
        (Some(p), _) => PublicKey::load(p).map_err(usage)?,
        (None, Some(cfg)) => node_public_key(cfg)?,
        (None, None) => {
            return Err(usage(anyhow!(
                "--public-key is required with --data-dir or --file"
            )));
        }
    };
    let mut held = Vec::new();
    for path in &anchors {
        let f = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot read", path.display()))
            .map_err(|e| failure(Exit::DataErr, e))?;
        held.extend(
            anchors_from_export(std::io::BufReader::new(f), &key)
                .map_err(|e| failure(Exit::DataErr, anyhow!("{}: {e}", path.display())))?,
        );
    }
    if !anchors.is_empty() {
        println!(
            "{} of this node found in the anchors",
            super::output::count(held.len() as u64, "checkpoint", "checkpoints")
        );
    }
    let (what, result) = if let Some(path) = &file {
        let f = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot read", path.display()))
            .map_err(|e| failure(Exit::DataErr, e))?;
        (
            path.display().to_string(),
            verify_export(std::io::BufReader::new(f), &key, &held),
        )
    } else {
        let dir = match (&loaded, &data_dir) {
            (_, Some(d)) => d.clone(),
            (Some(cfg), None) => cfg.store.dir.clone(),
            (None, None) => {
                return Err(usage(anyhow!("give --config, --data-dir or --file")));
            }
        };
        let vault = match &loaded {
            Some(cfg) => super::store::vault_of(cfg)?,
            None => None,
        };
        let store = open_stopped(&dir, vault.as_ref())?;
        let result = store.audit_verify(&key, &held);
        store.close().await?;
        (dir.display().to_string(), result)
    };
    match result {
        Ok(summary) => {
            print_summary(&what, &summary);
            Ok(())
        }
        Err(broken) => Err(failure(Exit::Failure, anyhow!("{what}: {broken}"))),
    }
}

/// `audit export`: entries and checkpoints as JSON Lines, verifiable away
/// from the node.
async fn export(args: ExportArgs, client_config: Option<&Path>) -> Result<(), Failure> {
    let ExportArgs {
        since,
        until,
        format,
        out,
    } = args;
    if format != "jsonl" {
        return Err(usage(anyhow!("--format: only `jsonl` is supported")));
    }
    let mut req = QueryAuditRequest {
        since: Some(timestamp("since", &since)?),
        until: until
            .as_deref()
            .map(|u| timestamp("until", u))
            .transpose()?,
        page_size: 1000,
        include_checkpoints: true,
        ..Default::default()
    };
    let mut client = connect(client_config).await?;
    let mut sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(
            crate::secrets::create_private(path)
                .with_context(|| format!("{}: cannot write", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut written = 0u64;
    loop {
        let page = client.admin.query_audit(req.clone()).await?.into_inner();
        for line in page_lines(&page) {
            writeln!(sink, "{line}")?;
        }
        written += page.entries.len() as u64;
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    sink.flush()?;
    if out.is_some() {
        eprintln!("exported {written} entries");
    }
    Ok(())
}

/// `audit query`: matching entries, one line each.
async fn query(args: QueryArgs, client_config: Option<&Path>) -> Result<(), Failure> {
    let QueryArgs {
        actor,
        action,
        alert,
        since,
        until,
        limit,
        newest_first,
    } = args;
    let mut req = QueryAuditRequest {
        actor: actor.unwrap_or_default(),
        action: action.unwrap_or_default(),
        alert_id: alert.unwrap_or_default(),
        since: since
            .as_deref()
            .map(|s| timestamp("since", s))
            .transpose()?,
        until: until
            .as_deref()
            .map(|u| timestamp("until", u))
            .transpose()?,
        page_size: limit.clamp(1, 1000) as u32,
        newest_first,
        ..Default::default()
    };
    let mut client = connect(client_config).await?;
    let mut shown = 0;
    while shown < limit {
        let page = client.admin.query_audit(req.clone()).await?.into_inner();
        for e in page.entries.into_iter().take(limit - shown) {
            // Entries name what peers and clients sent: printed escaped, so
            // no value can start a line of its own or drive the terminal.
            let detail: Vec<String> = e
                .detail
                .iter()
                .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
                .collect();
            let objects: Vec<_> = e.objects.iter().map(|o| esc(o)).collect();
            let time = e
                .body
                .split("\"time\":\"")
                .nth(1)
                .and_then(|t| t.split('"').next())
                .unwrap_or("");
            println!(
                "{:>8} {time} {:<22} {:<24} {:<18} {}{}{}",
                e.sequence,
                esc(&e.actor),
                esc(&e.action),
                esc(&e.outcome),
                objects.join(","),
                if e.purpose.is_empty() {
                    String::new()
                } else {
                    format!(" purpose={:?}", e.purpose)
                },
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" {}", detail.join(" "))
                },
            );
            shown += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    if shown == 0 {
        // Silence would read as a failure to connect, or a broken filter.
        println!("no entries match");
    }
    Ok(())
}
