//! `casebridge audit …` and `casebridge store …`: reading, exporting and
//! verifying the audit log, and backing up and restoring the store.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Subcommand;

use super::{EXIT_DATAERR, Failure, connect, failure};
use crate::audit::export::{anchors_from_export, checkpoint_line, entry_line, verify_export};
use crate::audit::signing::{PublicKey, SigningKey, public_key_path};
use crate::audit::{Summary, hex};
use crate::config::{EXIT_CONFIG, NodeConfig};
use crate::proto::v1::{BackupStoreRequest, QueryAuditRequest};
use crate::store::Store;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain and signed checkpoints. Exit 0 when intact; exit
    /// 1 naming the first bad entry (edited, deleted, moved, or cut off).
    Verify {
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
    },
    /// Export entries and checkpoints from a running node (admin role) as
    /// JSON Lines, verifiable with `audit verify --file`.
    Export {
        /// RFC 3339 time, e.g. 2026-11-01T00:00:00Z.
        #[arg(long)]
        since: String,
        #[arg(long)]
        until: Option<String>,
        /// Only `jsonl`.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Search the log of a running node (admin role).
    Query {
        /// `client:<name>`, `peer:<agency>` or `node`.
        #[arg(long)]
        actor: Option<String>,
        /// e.g. `alert.get`, `alert.share`, `tls.handshake`.
        #[arg(long)]
        action: Option<String>,
        /// Entries naming this alert id.
        #[arg(long)]
        alert: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// Stop after this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Print the node's audit public key, for auditors.
    PublicKey {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Ask a running node (admin role) for a consistent copy of its store,
    /// written under its `store.backup_dir`; writes pause for the copy.
    Backup {
        /// Name of the copy (letters, digits, `-`, `_`); default: the time.
        #[arg(long)]
        label: Option<String>,
    },
    /// Replace a STOPPED node's store with a backup: checks the backup's
    /// audit log, moves the current store aside, copies the backup in.
    Restore {
        #[arg(long)]
        config: PathBuf,
        /// The backup directory (as printed by `store backup`).
        #[arg(long)]
        from: PathBuf,
    },
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    failure(EXIT_CONFIG as u8, e.into())
}

use super::time_flag as timestamp;

/// The node's public key: the `.pub` beside its signing key, else derived
/// from the key itself.
pub(super) fn node_public_key(config: &NodeConfig) -> Result<PublicKey, Failure> {
    let key = config.audit_signing_key();
    let public = public_key_path(&key);
    if public.exists() {
        return PublicKey::load(&public).map_err(usage);
    }
    Ok(SigningKey::load(&key).map_err(usage)?.public())
}

/// Opens a store that no node is running on.
pub(super) fn open_stopped(dir: &Path) -> Result<Store, Failure> {
    if !dir.join("db").exists() {
        return Err(usage(anyhow!("{}: not a store directory", dir.display())));
    }
    let scope = crate::matching::MatchScope {
        own: crate::ids::AgencyId::new("audit-verify").expect("a valid agency id"),
        peers: Default::default(),
        fuzzy_threshold: 1.0,
    };
    Store::open(dir, 64 << 20, scope).map_err(|e| {
        failure(
            super::EXIT_UNAVAILABLE,
            anyhow!(
                "{}: {e} (is the node running? verify a backup instead: `casebridge store backup`)",
                dir.display()
            ),
        )
    })
}

fn print_summary(what: &str, s: &Summary) {
    let signed = match s.last_signed {
        Some(seq) => format!(
            "last signed checkpoint at entry {seq} ({} entries after it unsigned)",
            s.unsigned_tail()
        ),
        None => "no signed checkpoint yet".into(),
    };
    println!(
        "{what}: audit log intact: {} entries ({}..={}), {} checkpoints verified, {signed}; head {}",
        s.entries,
        s.first,
        s.last,
        s.checkpoints,
        hex(&s.head)
    );
}

pub async fn audit(command: AuditCommand, client_config: Option<&Path>) -> Result<(), Failure> {
    match command {
        AuditCommand::Verify {
            config,
            data_dir,
            file,
            public_key,
            anchors,
        } => {
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
                    .map_err(|e| failure(EXIT_DATAERR, e))?;
                held.extend(
                    anchors_from_export(std::io::BufReader::new(f), &key)
                        .map_err(|e| failure(EXIT_DATAERR, anyhow!("{}: {e}", path.display())))?,
                );
            }
            if !anchors.is_empty() {
                println!(
                    "{} checkpoints of this node found in the anchors",
                    held.len()
                );
            }
            let (what, result) = if let Some(path) = &file {
                let f = std::fs::File::open(path)
                    .with_context(|| format!("{}: cannot read", path.display()))
                    .map_err(|e| failure(EXIT_DATAERR, e))?;
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
                let store = open_stopped(&dir)?;
                let result = store.audit_verify(&key, &held);
                store.close().await?;
                (dir.display().to_string(), result)
            };
            match result {
                Ok(summary) => {
                    print_summary(&what, &summary);
                    Ok(())
                }
                Err(broken) => Err(failure(1, anyhow!("{what}: {broken}"))),
            }
        }
        AuditCommand::Export {
            since,
            until,
            format,
            out,
        } => {
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
                    std::fs::File::create(path)
                        .with_context(|| format!("{}: cannot write", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut written = 0u64;
            loop {
                let page = client.admin.query_audit(req.clone()).await?.into_inner();
                for e in &page.entries {
                    let prev: [u8; 32] = e.prev_hash.as_slice().try_into().unwrap_or([0; 32]);
                    let hash: [u8; 32] = e.hash.as_slice().try_into().unwrap_or([0; 32]);
                    writeln!(sink, "{}", entry_line(e.sequence, &prev, &hash, &e.body))?;
                    written += 1;
                }
                for c in page.checkpoints {
                    let cp = crate::audit::Checkpoint {
                        seq: c.sequence,
                        hash: c.hash.as_slice().try_into().unwrap_or([0; 32]),
                        time: c.time,
                        signature: c.signature,
                    };
                    writeln!(sink, "{}", checkpoint_line(&cp))?;
                }
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
        AuditCommand::Query {
            actor,
            action,
            alert,
            since,
            until,
            limit,
        } => {
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
                ..Default::default()
            };
            let mut client = connect(client_config).await?;
            let mut shown = 0;
            while shown < limit {
                let page = client.admin.query_audit(req.clone()).await?.into_inner();
                for e in page.entries.into_iter().take(limit - shown) {
                    let detail: Vec<String> =
                        e.detail.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let time = e
                        .body
                        .split("\"time\":\"")
                        .nth(1)
                        .and_then(|t| t.split('"').next())
                        .unwrap_or("");
                    println!(
                        "{:>8} {time} {:<22} {:<24} {:<18} {}{}{}",
                        e.sequence,
                        e.actor,
                        e.action,
                        e.outcome,
                        e.objects.join(","),
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
            Ok(())
        }
        AuditCommand::PublicKey { config } => {
            let cfg = NodeConfig::load(&config).map_err(usage)?;
            print!("{}", node_public_key(&cfg)?.to_pem());
            Ok(())
        }
    }
}

pub async fn store(command: StoreCommand, client_config: Option<&Path>) -> Result<(), Failure> {
    match command {
        StoreCommand::Backup { label } => {
            let mut client = connect(client_config).await?;
            let done = client
                .admin
                .backup_store(BackupStoreRequest {
                    label: label.unwrap_or_default(),
                })
                .await?
                .into_inner();
            println!(
                "{}: {} alerts, {} audit entries, {} bytes; writes paused {} ms",
                done.path, done.alerts, done.audit_entries, done.bytes, done.paused_ms
            );
            Ok(())
        }
        StoreCommand::Restore { config, from } => {
            let cfg = NodeConfig::load(&config).map_err(usage)?;
            let key = node_public_key(&cfg)?;
            // The backup must be whole before anything is moved.
            let backup = open_stopped(&from)?;
            let checked = backup.audit_verify(&key, &[]);
            backup.close().await?;
            drop(backup);
            let summary = checked.map_err(|b| {
                failure(
                    EXIT_DATAERR,
                    anyhow!("{}: not restored: {b}", from.display()),
                )
            })?;
            let dir = &cfg.store.dir;
            let mut aside = None;
            if dir.exists() {
                // Proves the node is stopped: a running node holds the lock.
                let current = open_stopped(dir)?;
                current.close().await?;
                drop(current);
                let stamp = crate::time::format_ms(crate::time::now_ms())
                    .replace([':', '-'], "")
                    .replace('.', "-");
                let moved = PathBuf::from(format!("{}.pre-restore-{stamp}", dir.display()));
                std::fs::rename(dir, &moved)
                    .with_context(|| format!("cannot move {} aside", dir.display()))?;
                aside = Some(moved);
            }
            crate::store::copy_store(&from, dir)?;
            if let Some(moved) = aside {
                println!("previous store kept at {}", moved.display());
            }
            println!(
                "restored {} into {}; audit log intact to entry {}. Start the node: peers re-deliver what they still hold queued",
                from.display(),
                dir.display(),
                summary.last
            );
            Ok(())
        }
    }
}
