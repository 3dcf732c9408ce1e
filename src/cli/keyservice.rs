//! `casebridge keyservice …`: run the federation's OPRF key service, and
//! manage its keys (generate, rotate, print the public file nodes pin).

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Subcommand;

use super::exit::{Exit, Failure, failure};
use crate::config::KeyServiceConfig;
use crate::pseudo::oprf_keys::{self, SecretKeys};

#[derive(Subcommand)]
pub enum KeyServiceCommand {
    /// Run the key service (mutual TLS; nodes of the federation call it).
    Run {
        /// keyservice.toml
        #[arg(long)]
        config: PathBuf,
    },
    /// The key service's OPRF keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Elements evaluated and calls refused, per node and UTC day, from a
    /// stopped key service's log (or a copy of its data directory): which
    /// member is asking how much.
    Usage {
        /// keyservice.toml (its data_dir is read).
        #[arg(long, required_unless_present = "data_dir")]
        config: Option<PathBuf>,
        /// The key service's data directory, instead of --config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// JSON Lines, one object per node and day.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Write a new secret key file (one key, valid from now; mode 0600;
    /// never overwritten). Only the key service and its replicas hold it.
    Generate {
        #[command(flatten)]
        new: super::pseudo::NewKeyFile,
        /// Seal the seed under this KEK (a KEK file or a reference to a
        /// key in a PKCS#11 token, `casebridge store kek-new`): the file
        /// then names it, and reveals no seed without it.
        #[arg(long)]
        kek_file: Option<PathBuf>,
    },
    /// Seal every seed of a secret key file under a KEK, in place.
    Seal {
        /// The secret key file.
        #[arg(long)]
        keys: PathBuf,
        /// The KEK (`casebridge store kek-new`).
        #[arg(long)]
        kek_file: PathBuf,
    },
    /// Add a key valid from `--from-days` days on; keys in force now stay
    /// valid `--overlap-days` after that. Publish the new public file to
    /// every node before the new key starts.
    Rotate {
        /// The secret key file to add a key to.
        #[arg(long)]
        keys: PathBuf,
        /// Days from now until the new key starts: time to give every node
        /// the new public file.
        #[arg(long, default_value_t = 7)]
        from_days: u32,
        /// Days the keys in force now stay valid after the new one starts.
        #[arg(long, default_value_t = 30)]
        overlap_days: u32,
    },
    /// Print the public key file (`oprf-keys.toml`) every node pins.
    Public {
        /// The secret key file.
        #[arg(long)]
        keys: PathBuf,
    },
}

pub async fn run(command: KeyServiceCommand) -> Result<(), Failure> {
    match command {
        KeyServiceCommand::Run { config } => {
            super::node::owner_only_umask();
            let config = KeyServiceConfig::load(&config).map_err(|e| failure(Exit::Usage, e))?;
            let listener = crate::keyservice::bind(&config)
                .await
                .map_err(|e| failure(Exit::Usage, e))?;
            let running = crate::keyservice::start(&config, listener)
                .await
                .map_err(|e| failure(Exit::Usage, e))?;
            eprintln!(
                "key service of {} listening on {}",
                config.federation, running.addr
            );
            running
                .run_until(super::session::shutdown_signal())
                .await
                .map_err(|e| failure(Exit::Failure, e))
        }
        KeyServiceCommand::Keys { command } => keys(command),
        KeyServiceCommand::Usage {
            config,
            data_dir,
            json,
        } => {
            let dir = match (data_dir, config) {
                (Some(d), _) => d,
                (None, Some(c)) => {
                    KeyServiceConfig::load(&c)
                        .map_err(|e| failure(Exit::Usage, e))?
                        .data_dir
                }
                (None, None) => {
                    return Err(failure(Exit::Usage, anyhow!("give --config or --data-dir")));
                }
            };
            usage(&dir, json).await
        }
    }
}

/// One node's use on one UTC day.
#[derive(Default, serde::Serialize)]
struct Usage {
    day: String,
    node: String,
    calls: u64,
    elements: u64,
    refused: std::collections::BTreeMap<String, u64>,
}

/// Sums the log's `keyservice.evaluate` entries per UTC day and node.
async fn usage(dir: &std::path::Path, json: bool) -> Result<(), Failure> {
    let store = super::store::open_stopped(dir, None)?;
    let mut table: std::collections::BTreeMap<(String, String), Usage> = Default::default();
    for raw in store.audit_entries(1) {
        let entry = raw
            .map_err(|e| failure(Exit::DataErr, e))?
            .entry()
            .map_err(|e| failure(Exit::DataErr, e))?;
        let e = &entry.event;
        if e.action != crate::audit::Action::KeyServiceEvaluate {
            continue;
        }
        let day = entry.time.get(..10).unwrap_or_default().to_owned();
        let node = e.actor.strip_prefix("node:").unwrap_or(&e.actor).to_owned();
        let row = table
            .entry((day.clone(), node.clone()))
            .or_insert_with(|| Usage {
                day,
                node,
                ..Default::default()
            });
        if e.outcome == "OK" {
            row.calls += 1;
            row.elements += e
                .detail
                .get("elements")
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        } else {
            let why = e
                .detail
                .get("refused")
                .cloned()
                .unwrap_or_else(|| e.outcome.to_ascii_lowercase());
            *row.refused.entry(why).or_default() += 1;
        }
    }
    store.close().await.map_err(|e| failure(Exit::Failure, e))?;
    if json {
        for row in table.values() {
            println!(
                "{}",
                serde_json::to_string(row).map_err(|e| failure(Exit::Failure, e))?
            );
        }
        return Ok(());
    }
    println!(
        "{:<10}  {:<16} {:>8} {:>10}  refused",
        "day (UTC)", "node", "calls", "elements"
    );
    for row in table.values() {
        let refused: Vec<String> = row
            .refused
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!(
            "{:<10}  {:<16} {:>8} {:>10}  {}",
            row.day,
            row.node,
            row.calls,
            row.elements,
            if refused.is_empty() {
                "-".into()
            } else {
                refused.join(", ")
            }
        );
    }
    Ok(())
}

fn keys(command: KeysCommand) -> Result<(), Failure> {
    let data = |e: crate::pseudo::KeyFileError| failure(Exit::DataErr, e);
    match command {
        KeysCommand::Generate { new, kek_file } => {
            let (federation, out) = (new.federation()?, &new.out);
            let kek_file = kek_file
                .map(std::path::absolute)
                .transpose()
                .map_err(|e| failure(Exit::Usage, e))?;
            oprf_keys::generate(out, &federation, kek_file.as_deref()).map_err(data)?;
            println!(
                "wrote {} (secret, mode 0600); print the public file for the nodes with `casebridge keyservice keys public --keys {}`",
                out.display(),
                out.display()
            );
            Ok(())
        }
        KeysCommand::Rotate {
            keys,
            from_days,
            overlap_days,
        } => {
            let from = time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(from_days));
            let version =
                oprf_keys::rotate(&keys, from, time::Duration::days(i64::from(overlap_days)))
                    .map_err(data)?;
            println!(
                "added key version {version}, valid from {from}; publish the new public file to every node before then"
            );
            Ok(())
        }
        KeysCommand::Seal { keys, kek_file } => {
            let kek_file = std::path::absolute(&kek_file).map_err(|e| failure(Exit::Usage, e))?;
            let n = oprf_keys::seal(&keys, &kek_file).map_err(data)?;
            println!(
                "sealed {n} seeds of {} under the KEK in {}",
                keys.display(),
                kek_file.display()
            );
            Ok(())
        }
        KeysCommand::Public { keys } => {
            print!("{}", SecretKeys::load(&keys).map_err(data)?.public_file());
            Ok(())
        }
    }
}
