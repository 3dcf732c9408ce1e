//! A store's epochs turning (docs/encryption.md): every live data key and
//! every value not under a data key sealed again under the next epoch,
//! then the ended epochs destroyed, and the backup keys past the backup
//! retention; and sealing a copy of a store kept in clear.
//!
//! The order is what keeps acknowledged data: an epoch key is destroyed
//! only after every live value sealed under it was sealed again, synced,
//! and the store recorded so (`sealed_through`); a crash in between
//! leaves the old key in place and the pass is made again at the next
//! start.

use std::path::Path;
use std::time::Duration;

use super::engine::sealed::DATA_KEYS;
use super::engine::{Db, EngineError, Range, Reads};
use super::vault::{OWNED_TREES, SEALED_SETTING, SEALED_THROUGH, Vault, VaultState, sealed_tree};
use super::{Store, StoreError, TREES};
use crate::audit::{Action, Event, NODE};
use crate::vault::{BackupKeyId, EpochId};

/// Entries sealed again per transaction: short enough that writers wait
/// little between two.
const RESEAL_BATCH: usize = 500;

/// What the end of an epoch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochTurn {
    pub started: Option<EpochId>,
    pub resealed: u64,
    pub destroyed: Vec<EpochId>,
    /// Backup keys destroyed: the backups they sealed no longer open.
    pub backups_destroyed: Vec<BackupKeyId>,
}

fn vault_error(e: impl ToString) -> StoreError {
    StoreError::Vault(e.to_string())
}

impl Store {
    /// Where the epochs stand; `None` for a store in clear.
    /// The node's vault; `None` for a store in clear.
    pub fn vault(&self) -> Option<&Vault> {
        self.vault.as_ref()
    }

    pub fn vault_state(&self) -> Option<VaultState> {
        self.vault.as_ref().map(Vault::state)
    }

    /// Ends the epoch in force once it is `epoch` old, and finishes what an
    /// interrupted turn left: every live data key and value under no data
    /// key sealed again under the newest epoch, synced, recorded; then
    /// every older epoch is destroyed, and at a turn every backup key made
    /// more than `retention` ago (audited as `store.epoch`).
    pub async fn turn_epoch(
        &self,
        epoch: Duration,
        retention: Duration,
    ) -> Result<EpochTurn, StoreError> {
        let Some(vault) = &self.vault else {
            return Ok(EpochTurn::default());
        };
        let now = crate::time::now_ms() / 1000;
        let mut turn = EpochTurn::default();
        let (current, started_at) = vault.sealer.epochs().current();
        let mut newest = current;
        if now.saturating_sub(started_at) >= epoch.as_secs() as i64 {
            newest = vault.sealer.epochs_mut().advance().map_err(vault_error)?;
            turn.started = Some(newest);
        }
        let through = self.setting(SEALED_THROUGH)?.and_then(|v| v.parse().ok());
        if through != Some(newest.0) {
            turn.resealed = self.reseal_all()?;
            self.write(|w| {
                w.tx.insert(
                    w.t.settings,
                    SEALED_THROUGH.as_bytes(),
                    newest.0.to_string().as_bytes(),
                )
                .map_err(StoreError::from)
            })?;
            self.db.sync()?;
            // Backups expire at an epoch's end: one taken with no retention
            // stays restorable until the epoch it was taken in ends.
            turn.backups_destroyed = vault
                .sealer
                .epochs_mut()
                .destroy_backups_before(now.saturating_sub(retention.as_secs() as i64))
                .map_err(vault_error)?;
        }
        turn.destroyed = vault
            .sealer
            .epochs_mut()
            .destroy_before(newest)
            .map_err(vault_error)?;
        if turn != EpochTurn::default() {
            self.audit([epoch_event(&turn, newest)]).await?;
        }
        Ok(turn)
    }

    /// Seals every data key, and every value of a sealed tree that is
    /// under no data key, again (under the epoch in force), a batch per
    /// transaction. Records under data keys stay as they are: re-wrapping
    /// their keys is what moves them to the new epoch.
    fn reseal_all(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        let epoch_sealed = TREES
            .iter()
            .filter(|n| sealed_tree(n) && !OWNED_TREES.contains(n));
        for name in epoch_sealed.chain([&DATA_KEYS]) {
            let tree = self.db.tree(name)?;
            let mut after: Option<Vec<u8>> = None;
            loop {
                let (n, last) = self.db.transaction(|tx| {
                    let low = match &after {
                        Some(k) => std::ops::Bound::Excluded(k.as_slice()),
                        None => std::ops::Bound::Unbounded,
                    };
                    let batch: Vec<_> = tx
                        .range::<&[u8]>(tree, (low, std::ops::Bound::Unbounded))
                        .take(RESEAL_BATCH)
                        .collect::<Result<_, EngineError>>()?;
                    for (k, v) in &batch {
                        tx.insert(tree, k, v)?;
                    }
                    Ok::<_, EngineError>((batch.len(), batch.last().map(|(k, _)| k.clone())))
                })?;
                total += n as u64;
                match last {
                    Some(k) if n == RESEAL_BATCH => after = Some(k),
                    _ => break,
                }
            }
        }
        Ok(total)
    }
}

fn epoch_event(turn: &EpochTurn, newest: EpochId) -> Event {
    let list = |ids: Vec<String>| ids.join(",");
    Event::new(NODE, Action::StoreEpoch, "OK")
        .detail("epoch", newest)
        .detail("resealed", turn.resealed)
        .detail(
            "destroyed",
            list(turn.destroyed.iter().map(ToString::to_string).collect()),
        )
        .detail(
            "backup_keys_destroyed",
            list(
                turn.backups_destroyed
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        )
}

/// Seals a copy of the store in clear at `from` into the new directory
/// `to`, under `vault`'s keys (`casebridge store encrypt`): every tree
/// copied whole, the copy marked sealed, synced and counted back. `from`
/// is left as it was; a failed copy is removed.
pub fn encrypt_copy(from: &Path, to: &Path, vault: &Vault) -> Result<u64, StoreError> {
    use super::engine::Options;
    let refuse = |why: String| StoreError::Vault(why);
    if !super::is_store(from) {
        return Err(refuse(format!("{}: not a store directory", from.display())));
    }
    if to.exists() {
        return Err(refuse(format!(
            "{} already exists; seal into a new directory",
            to.display()
        )));
    }
    let old = Db::open(from, &Options::default())?;
    let settings = old.tree("settings")?;
    if let Some(kek) = old.get(settings, SEALED_SETTING)? {
        return Err(refuse(format!(
            "{} is sealed already (under KEK {})",
            from.display(),
            String::from_utf8_lossy(&kek)
        )));
    }
    crate::secrets::create_private_dir(to).map_err(|e| refuse(format!("{}: {e}", to.display())))?;
    let copied = (|| {
        let new = Db::open_sealed(to, &Options::default(), vault.sealer.clone())?;
        new.keyed_digest(b"")?; // the key made before any copying transaction
        let snapshot = old.snapshot();
        let mut total = 0;
        for name in TREES {
            let expected = old.len(old.tree(name)?)?;
            let entries = keyed_entries(&new, name, snapshot.range::<&[u8]>(old.tree(name)?, ..));
            let copied = super::backup::copy_tree(&new, name, entries)?;
            let held = new.len(new.tree(name)?)?;
            if copied != expected || held != expected {
                return Err(refuse(format!(
                    "tree {name}: {copied} entries copied and {held} held of {expected}"
                )));
            }
            total += copied;
        }
        let kek = vault.state().kek_id;
        let settings = new.tree("settings")?;
        new.transaction(|tx| tx.insert(settings, SEALED_SETTING, kek.as_bytes()))?;
        new.sync()?;
        Ok(total)
    })();
    if copied.is_err() {
        let _ = std::fs::remove_dir_all(to);
    }
    copied
}

/// The entries of tree `name` of a store in clear as a sealed store keys
/// them: in `imports` and `requests` the id after the first zero byte (a
/// register's record id, a client's request id) becomes a keyed hash of
/// it under `sealed`'s key, and an import keeps its source id in its
/// (sealed) value instead.
fn keyed_entries(sealed: &Db, name: &'static str, entries: Range) -> Range {
    if name != "imports" && name != "requests" {
        return entries;
    }
    let sealed = sealed.clone();
    Box::new(entries.map(move |item| {
        let (key, mut value) = item?;
        let at = key.iter().position(|b| *b == 0).map_or(0, |at| at + 1);
        let (prefix, id) = key.split_at(at);
        let digest = sealed
            .keyed_digest(id)?
            .ok_or_else(|| EngineError::Sealed("the copy is not sealed".into()))?;
        let digest_end = value.iter().position(|b| *b == 0).map(|at| at + 1 + 32);
        if name == "imports" && digest_end == Some(value.len()) {
            value.extend_from_slice(id);
        }
        Ok(([prefix, &digest[..]].concat(), value))
    }))
}
