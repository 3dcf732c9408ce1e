//! `casebridge store …`: an online backup of a running node's store,
//! restoring a stopped node's store from one, and migrating a store written
//! by an earlier version (sled) to the current engine.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Subcommand;

use super::exit::{Exit, Failure, failure};
use super::session::connect;
use crate::audit::signing::PublicKey;
use crate::audit::{Action, Checkpoint, Event, RawEntry};
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
    /// audit log, moves the current store aside, copies the backup in, and
    /// keeps the audit log whole (the entries written since the backup are
    /// carried over; the restore is logged after them).
    Restore {
        /// The stopped node's config file (node.toml): its store and audit key.
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
    /// Seal a copy of a store kept in clear (a stopped node's, or one of
    /// the previous release) into a new directory, under the KEK and epoch
    /// keys `[encryption]` of the node config names (docs/encryption.md).
    /// The old directory is left as it was: delete it (and its backups)
    /// once the node runs on the new one.
    Encrypt {
        /// The store in clear (the node stopped).
        #[arg(long)]
        from: PathBuf,
        /// Where to write the sealed store; must not exist.
        #[arg(long)]
        to: PathBuf,
        /// The node config whose `[encryption]` to use.
        #[arg(long)]
        config: PathBuf,
    },
    /// Wrap a running node's epoch keys under a new KEK (admin role): the
    /// node serves throughout and no data is sealed again. Then point
    /// `[encryption] kek_file` at the new file; the old KEK opens nothing.
    RotateKek {
        /// The new KEK file, on the node's machine (`store kek-new`).
        #[arg(long)]
        kek_file: PathBuf,
    },
    /// Write a new key-encryption key file (0600, never overwritten), for
    /// `[encryption] kek_file`. With `--pkcs11-module`, make the KEK inside
    /// a PKCS#11 token (an HSM) instead, where it stays, and write the file
    /// that refers to it.
    KekNew {
        /// Where to write it (refused if it exists).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        token: TokenArgs,
    },
}

/// Where `store kek-new` makes a KEK inside a PKCS#11 token.
#[derive(clap::Args)]
pub struct TokenArgs {
    /// The token's PKCS#11 module (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, requires_all = ["token", "key_label", "pin_file"])]
    pkcs11_module: Option<PathBuf>,
    /// The label of the token to make the KEK in.
    #[arg(long, requires = "pkcs11_module")]
    token: Option<String>,
    /// The label to give the new key (refused if the token has one).
    #[arg(long, requires = "pkcs11_module")]
    key_label: Option<String>,
    /// A file (0600) holding the token's user PIN.
    #[arg(long, requires = "pkcs11_module")]
    pin_file: Option<PathBuf>,
}

/// Makes the KEK `store kek-new` asks for; prints its id.
fn kek_new(out: &Path, token: TokenArgs) -> Result<(), Failure> {
    let absolute = |p: PathBuf| std::path::absolute(&p).map_err(usage);
    let (id, place) = match token {
        TokenArgs {
            pkcs11_module: Some(module),
            token: Some(token),
            key_label: Some(key),
            pin_file: Some(pin_file),
        } => {
            let reference = crate::vault::TokenKey {
                id: String::new(),
                pkcs11_module: absolute(module)?,
                token: token.clone(),
                key,
                pin_file: absolute(pin_file)?,
            };
            let kek = crate::vault::create_in_token(out, reference).map_err(usage)?;
            (
                crate::vault::Kek::id(&kek).to_owned(),
                format!(" in token {token}"),
            )
        }
        _ => {
            let kek = crate::vault::FileKek::create(out).map_err(usage)?;
            (crate::vault::Kek::id(&kek).to_owned(), String::new())
        }
    };
    println!("wrote {} (KEK {id}{place})", out.display());
    Ok(())
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    failure(Exit::Usage, e.into())
}

/// The keys a node config's `[encryption]` names, if any: what opens its
/// sealed store (and its backups) offline.
pub(super) fn vault_of(cfg: &NodeConfig) -> Result<Option<crate::store::Vault>, Failure> {
    cfg.encryption
        .as_ref()
        .map(|e| crate::store::Vault::open(e.kek_file.get_ref(), &cfg.epoch_keys_dir()))
        .transpose()
        .map_err(|e| failure(Exit::DataErr, anyhow!(e)))
}

/// Opens a store that no node is running on (a sealed one with `vault`).
pub(super) fn open_stopped(
    dir: &Path,
    vault: Option<&crate::store::Vault>,
) -> Result<Store, Failure> {
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
        band: Default::default(),
    };
    let opened = match vault {
        Some(v) => Store::open_sealed(dir, 64 << 20, Some(scope), v.clone()),
        None => Store::open(dir, 64 << 20, scope),
    };
    opened.map_err(|e| match e {
        // Held by a running node: say what to do instead.
        crate::store::StoreError::Engine(crate::store::engine::EngineError::Locked) => failure(
            Exit::Unavailable,
            anyhow!(
                "{}: {e} (is the node running? verify a backup instead: `casebridge store backup`)",
                dir.display()
            ),
        ),
        other => failure(Exit::DataErr, anyhow!("{}: {other}", dir.display())),
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
        StoreCommand::Encrypt { from, to, config } => encrypt(&from, &to, &config),
        StoreCommand::RotateKek { kek_file } => {
            let absolute = std::path::absolute(&kek_file).map_err(usage)?;
            let mut client = connect(client_config).await?;
            let done = client
                .admin
                .rotate_kek(crate::proto::v1::RotateKekRequest {
                    kek_file: absolute.display().to_string(),
                })
                .await?
                .into_inner();
            println!(
                "{} epoch keys now wrapped under KEK {} (was {}) in {} ms; point [encryption] \
                 kek_file at {} before the node's next start",
                done.epochs,
                done.new_kek_id,
                done.old_kek_id,
                done.elapsed_ms,
                absolute.display()
            );
            Ok(())
        }
        StoreCommand::KekNew { out, token } => kek_new(&out, token),
        StoreCommand::Restore { config, from } => restore(&config, &from).await,
    }
}

/// Replaces a stopped node's store with a backup, keeping the audit log
/// whole: the entries the replaced store wrote after the backup was taken
/// (and their checkpoints) are carried into the restored store, and the
/// restore itself is an entry chained after them. So the log still holds
/// everything the node ever did, and says when its data went back.
async fn restore(config: &Path, from: &Path) -> Result<(), Failure> {
    let cfg = NodeConfig::load(config).map_err(usage)?;
    let key = PublicKey::of_signing_key(&cfg.audit_signing_key()).map_err(usage)?;
    let refuse = |why: String| {
        failure(
            Exit::DataErr,
            anyhow!("{}: not restored: {why}", from.display()),
        )
    };
    // The backup must be whole before anything is moved.
    let vault = vault_of(&cfg)?;
    let backup = open_stopped(from, vault.as_ref())?;
    backup
        .audit_verify(&key, &[])
        .map_err(|b| refuse(b.to_string()))?;
    let dir = &cfg.store.dir;
    let mut carried = (Vec::new(), Vec::new());
    let mut aside = None;
    if dir.exists() {
        // Proves the node is stopped: a running node holds the lock.
        let current = open_stopped(dir, vault.as_ref())?;
        carried = written_since(&current, &backup).map_err(refuse)?;
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
    let (backup_head, _) = backup.audit_head();
    backup.close().await?;
    drop(backup);
    crate::store::copy_store(from, dir)?;
    let restored = open_stopped(dir, vault.as_ref())?;
    let purges = carry_purges(&restored, aside.as_deref(), vault.as_ref()).await?;
    restored.audit_carry(&carried.0, &carried.1)?;
    let previous = aside
        .as_ref()
        .map_or("none".to_string(), |p| p.display().to_string());
    restored
        .audit([Event::new("cli:store restore", Action::StoreRestore, "OK")
            .detail("from", from.display())
            .detail("backup_head", backup_head)
            .detail("carried_entries", carried.0.len())
            .detail("purged_since_alerts", purges.purged_alerts)
            .detail("purged_since_releases", purges.purged_releases)
            .detail("purged_since_requests", purges.purged_requests)
            .detail("purged_since_reports", purges.purged_reports)
            .detail("previous_store", &previous)])
        .await?;
    let (head, _) = restored.audit_head();
    restored.close().await?;
    if let Some(moved) = aside {
        println!("previous store kept at {}", moved.display());
    }
    if purges.purged_alerts + purges.purged_releases + purges.purged_requests > 0 {
        println!(
            "{} alerts, {} releases and {} disclosure requests of the backup were purged after \
             it was taken: they stay purged (their data keys are destroyed)",
            purges.purged_alerts, purges.purged_releases, purges.purged_requests
        );
    }
    if purges.purged_reports > 0 {
        println!(
            "{} public reports of the backup were purged after it was taken: they stay purged",
            purges.purged_reports
        );
    }
    println!(
        "restored {} into {}: the data as of audit entry {backup_head}; the {} entries written \
         since then kept in the log, and the restore recorded as entry {head}. Start the node: \
         peers re-deliver what they still hold queued",
        from.display(),
        dir.display(),
        carried.0.len(),
    );
    Ok(())
}

/// Gives a restored sealed store the data keys of the store it replaces
/// (moved aside to `previous`): what was purged after the backup was taken
/// stays purged. Nothing to carry for a store in clear or a first restore.
async fn carry_purges(
    restored: &Store,
    previous: Option<&Path>,
    vault: Option<&crate::store::Vault>,
) -> Result<crate::store::Carried, Failure> {
    let (Some(previous), Some(vault)) = (previous, vault) else {
        return Ok(Default::default());
    };
    let live = open_stopped(previous, Some(vault))?;
    let carried = restored
        .carry_data_keys(&live)
        .map_err(|e| failure(Exit::DataErr, anyhow!(e)))?;
    live.close().await?;
    Ok(carried)
}

/// What `current` logged after `backup`'s last entry (entries and the
/// checkpoints over them): nothing when the backup is as new as the current
/// store or newer. Refused when the two logs are not one history.
fn written_since(
    current: &Store,
    backup: &Store,
) -> Result<(Vec<RawEntry>, Vec<Checkpoint>), String> {
    let (backup_seq, backup_hash) = backup.audit_head();
    let (current_seq, current_hash) = current.audit_head();
    let entry_at = |store: &Store, seq: u64| -> Result<Option<RawEntry>, String> {
        if seq == 0 {
            return Ok(None);
        }
        match store.audit_entries(seq).next() {
            Some(Ok(e)) if e.seq == seq => Ok(Some(e)),
            Some(Err(e)) => Err(e.to_string()),
            _ => Ok(None),
        }
    };
    if current_seq < backup_seq {
        // The backup is newer: it must hold the current head.
        return match entry_at(backup, current_seq)? {
            Some(e) if e.hash == current_hash => Ok((Vec::new(), Vec::new())),
            _ if current_seq == 0 => Ok((Vec::new(), Vec::new())),
            _ => Err(format!(
                "the backup's audit log does not contain this store's entry {current_seq}: \
                 they are not one history (a backup of another node?)"
            )),
        };
    }
    match entry_at(current, backup_seq)? {
        Some(e) if e.hash == backup_hash => {}
        None if backup_seq == 0 => {}
        Some(_) => {
            return Err(format!(
                "entry {backup_seq} of the backup's audit log differs from this store's: \
                 they are not one history (a backup of another node?)"
            ));
        }
        None => {
            return Err(format!(
                "this store's audit log no longer holds entry {backup_seq} (pruned since the \
                 backup): the entries written after the backup could not be carried over"
            ));
        }
    }
    let entries = current
        .audit_entries(backup_seq + 1)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let checkpoints = current
        .audit_checkpoints(backup_seq + 1, u64::MAX)
        .map_err(|e| e.to_string())?;
    Ok((entries, checkpoints))
}

fn encrypt(from: &Path, to: &Path, config: &Path) -> Result<(), Failure> {
    let cfg = NodeConfig::load(config).map_err(usage)?;
    let Some(e) = &cfg.encryption else {
        return Err(usage(anyhow!(
            "{}: no [encryption] section names the KEK to seal with",
            config.display()
        )));
    };
    let vault = crate::store::Vault::open(e.kek_file.get_ref(), &cfg.epoch_keys_dir())
        .map_err(|e| failure(Exit::DataErr, anyhow!(e)))?;
    let n = crate::store::encrypt_copy(from, to, &vault)
        .map_err(|e| failure(Exit::DataErr, anyhow!(e)))?;
    println!(
        "sealed {} entries of {} into {} under KEK {}; point [store] dir at it",
        n,
        from.display(),
        to.display(),
        vault.state().kek_id
    );
    Ok(())
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
