//! `casebridge store …`: an online backup of a running node's store,
//! restoring a stopped node's store from one, and migrating a store written
//! by an earlier version (sled) to the current engine.

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
    /// written under its `store.backup_dir`; writes go on during the copy.
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
    /// Convert a STOPPED node's store written by CaseBridge before the
    /// storage engine change (sled) into a new directory in the current
    /// format. Everything is carried over; the old directory is kept until
    /// you delete it. Point `[store] dir` at the new directory afterwards.
    Migrate {
        /// The old (sled) store directory.
        #[arg(long)]
        from: PathBuf,
        /// Where to write the converted store; must not exist.
        #[arg(long)]
        to: PathBuf,
    },
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    failure(Exit::Usage, e.into())
}

/// Opens a store that no node is running on.
pub(super) fn open_stopped(dir: &Path) -> Result<Store, Failure> {
    if crate::store::is_sled_store(dir) {
        return Err(failure(
            Exit::DataErr,
            anyhow!(crate::store::StoreError::Legacy {
                dir: dir.display().to_string()
            }),
        ));
    }
    if !crate::store::is_store(dir) {
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
                "{}: {} alerts, {} audit entries, {} bytes; copied in {} ms while writes went on",
                done.path, done.alerts, done.audit_entries, done.bytes, done.copy_ms
            );
            Ok(())
        }
        StoreCommand::Migrate { from, to } => migrate(&from, &to),
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

fn migrate(from: &Path, to: &Path) -> Result<(), Failure> {
    if !crate::store::is_sled_store(from) {
        let hint = if crate::store::is_store(from) {
            " (it is already in the current format)"
        } else {
            ""
        };
        return Err(usage(anyhow!(
            "{}: not a store written by an earlier CaseBridge{hint}",
            from.display()
        )));
    }
    if to.exists() {
        return Err(usage(anyhow!(
            "{}: already exists; migrate into a new directory",
            to.display()
        )));
    }
    let stats =
        crate::store::migrate_sled(from, to).map_err(|e| failure(Exit::DataErr, anyhow!(e)))?;
    println!("migrated {} -> {}", from.display(), to.display());
    for (tree, n) in &stats.trees {
        if *n > 0 {
            println!("  {tree:<18} {n:>10}");
        }
    }
    println!(
        "sequence numbers continue at {}. The old store is kept at {}: check the new one \
         (`casebridge audit verify --data-dir {} --public-key …`), point [store] dir at it, \
         start the node, then delete the old directory.",
        stats.next_sequence,
        from.display(),
        to.display()
    );
    Ok(())
}
