//! `casebridge store …`: an online backup of a running node's store, and
//! restoring a stopped node's store from one.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Subcommand;

use super::connect;
use super::exit::{Exit, Failure, failure};
use crate::audit::signing::PublicKey;
use crate::config::NodeConfig;
use crate::proto::v1::BackupStoreRequest;
use crate::store::Store;

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
    failure(Exit::Usage, e.into())
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
            Exit::Unavailable,
            anyhow!(
                "{}: {e} (is the node running? verify a backup instead: `casebridge store backup`)",
                dir.display()
            ),
        )
    })
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
            let key = PublicKey::of_signing_key(&cfg.audit_signing_key()).map_err(usage)?;
            // The backup must be whole before anything is moved.
            let backup = open_stopped(&from)?;
            let checked = backup.audit_verify(&key, &[]);
            backup.close().await?;
            drop(backup);
            let summary = checked.map_err(|b| {
                failure(
                    Exit::DataErr,
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
