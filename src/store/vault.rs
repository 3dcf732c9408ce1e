//! The store's side of encryption at rest (docs/encryption.md): which
//! trees hold case data and are sealed, the node's keys for them, and the
//! mark a sealed store carries. The epochs turn in `epoch_turn`.

use std::path::Path;
use std::sync::Arc;

use super::StoreError;
use super::engine::EngineError;
use super::engine::sealed::{EpochSealer, Sealer, data_key_slot};
use crate::proto::v1::StoredAlert;
use crate::vault::{BackupKeyId, EpochId, Epochs, Secret};

/// The setting a sealed store carries: the KEK it was sealed under.
pub(super) const SEALED_SETTING: &str = "sealed";
/// The newest epoch every live value is sealed under (synced); a backup
/// has none, so a store restored from it seals everything again.
pub(super) const SEALED_THROUGH: &str = "sealed_through";
/// The trees whose values hold case data: alert contents and subjects,
/// envelopes, person encodings, hits and their reviews, refusals quoting
/// input, the audit log, disclosure requests and releases, import and
/// request digests, public reports and the receipt secret. The others
/// hold ids, counters, positions and keyed tokens only.
pub fn sealed_tree(name: &str) -> bool {
    matches!(
        name,
        "alerts"
            | "outbox"
            | "fuzzy"
            | "hits"
            | "hit_reviews"
            | "refusals"
            | "audit"
            | "disclosures"
            | "disclosure_log"
            | "releases"
            | "policies"
            | "lookups"
            | "purges"
            | "shares"
            | "imports"
            | "requests"
            | "intake"
            | "intake_meta"
    )
}

/// The trees whose records each have a data key of their own (an alert,
/// own or received; a release; a disclosure request; a public report):
/// what a purge
/// empties, and so destroys the key of. Every other sealed value is under
/// the epoch in force.
pub const OWNED_TREES: [&str; 4] = ["alerts", "releases", "disclosures", "intake"];

/// The owner whose data key seals record `key` of `tree`, if it has one.
pub fn data_key_owner(tree: &str, key: &[u8]) -> Option<Vec<u8>> {
    let kind: &[u8] = match tree {
        "alerts" => b"alert",
        "releases" => b"release",
        "disclosures" => b"request",
        // A public report; the receipt secret (`intake_meta`) is under
        // the epoch in force, the index (`intake_index`) holds no case data.
        "intake" => b"report",
        _ => return None,
    };
    let mut owner = kind.to_vec();
    owner.push(0);
    owner.extend_from_slice(key);
    Some(owner)
}

/// Destroys the data key of record `key` of `tree`, in the transaction
/// that empties the record: every older copy of it, in the store's old
/// segments or in a backup, no longer opens once the key's wrapping is
/// gone (docs/encryption.md). The emptied record written next gets a new
/// key. Nothing to do in a store kept in clear.
pub(super) fn destroy_data_key(
    w: &mut super::Write<'_, '_>,
    tree: &str,
    key: &[u8],
) -> Result<(), StoreError> {
    if let Some(owner) = data_key_owner(tree, key) {
        w.tx.remove(w.t.data_keys, data_key_slot(&owner))?;
    }
    Ok(())
}

/// `prefix` then `id` as an index key of `db`: in a sealed store a keyed
/// hash of `id` stands in for it (a register's record id, a client's
/// request id can name a case), in a store in clear `id` itself. Not
/// inside a transaction.
pub(super) fn keyed(
    db: &super::engine::Db,
    prefix: &[u8],
    id: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let digest = db.keyed_digest(id)?;
    Ok([prefix, digest.as_ref().map_or(id, |d| &d[..])].concat())
}

/// [`destroy_data_key`] for an alert record about to be written without
/// content (retracted, purged, or a peer's tombstone).
pub(super) fn shred_if_emptied(
    w: &mut super::Write<'_, '_>,
    key: &[u8],
    record: &StoredAlert,
) -> Result<(), StoreError> {
    if record.alert.as_ref().is_none_or(|a| a.content.is_none()) {
        destroy_data_key(w, "alerts", key)?;
    }
    Ok(())
}

/// A node's keys for its store: the KEK, the epoch keys beside the store,
/// and the sealer that uses them.
#[derive(Clone)]
pub struct Vault {
    pub(super) sealer: Arc<EpochSealer>,
}

/// Where the epochs stand, for `status` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultState {
    pub kek_id: String,
    pub current: EpochId,
    pub current_started_at: i64,
    pub kept: Vec<EpochId>,
    /// Backup keys kept, each with when it was made (Unix seconds).
    pub backups: Vec<(BackupKeyId, i64)>,
}

fn vault_error(e: impl ToString) -> StoreError {
    StoreError::Vault(e.to_string())
}

impl Vault {
    /// The KEK in `kek_file` (0600) and the epoch keys in `keys_dir`
    /// (0700; the first epoch starts when there is none).
    pub fn open(kek_file: &Path, keys_dir: &Path) -> Result<Self, StoreError> {
        let kek = crate::vault::load_kek(kek_file).map_err(vault_error)?;
        let epochs = Epochs::open(keys_dir, kek).map_err(vault_error)?;
        Ok(Self {
            sealer: Arc::new(EpochSealer::new(epochs, sealed_tree, data_key_owner)),
        })
    }

    /// Wraps every epoch key under the KEK in `kek_file` from now on
    /// (`store rotate-kek`): no data is sealed again, so it takes as long
    /// for a million alerts as for one. Returns (old KEK, new KEK, epochs).
    pub fn rotate_kek(&self, kek_file: &Path) -> Result<(String, String, usize), StoreError> {
        let new = crate::vault::load_kek(kek_file).map_err(vault_error)?;
        let new_id = new.id().to_owned();
        let mut epochs = self.sealer.epochs_mut();
        let old_id = epochs.kek_id().to_owned();
        if old_id == new_id {
            return Err(StoreError::Vault(format!(
                "{} holds KEK {new_id}, the one in use: make a new one with `casebridge store kek-new`",
                kek_file.display()
            )));
        }
        let n = epochs.rewrap(new).map_err(vault_error)?;
        Ok((old_id, new_id, n))
    }

    /// The sealer of a new backup: a key made for it (kept for the
    /// backup retention, then destroyed) seals the data keys and every
    /// value under no data key; records under data keys keep theirs, so a
    /// restore can tell which of them a purge has destroyed since.
    pub(super) fn backup_sealer(&self) -> Result<(BackupKeyId, Arc<dyn Sealer>), StoreError> {
        let (id, key) = self
            .sealer
            .epochs_mut()
            .new_backup_key()
            .map_err(vault_error)?;
        let sealer = BackupSealer {
            id: id.key_id(),
            key,
            node: self.sealer.clone(),
        };
        Ok((id, Arc::new(sealer)))
    }

    pub fn state(&self) -> VaultState {
        let epochs = self.sealer.epochs();
        let (current, current_started_at) = epochs.current();
        VaultState {
            kek_id: epochs.kek_id().to_owned(),
            current,
            current_started_at,
            kept: epochs.kept(),
            backups: epochs.backups(),
        }
    }
}

/// See [`Vault::backup_sealer`].
struct BackupSealer {
    id: Vec<u8>,
    key: Secret,
    node: Arc<EpochSealer>,
}

impl Sealer for BackupSealer {
    fn seals(&self, name: &str) -> bool {
        self.node.seals(name)
    }

    fn owner(&self, name: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.node.owner(name, key)
    }

    fn sealing_key(&self) -> (Vec<u8>, Secret) {
        (self.id.clone(), self.key.clone())
    }

    fn opening_key(&self, id: &[u8]) -> Result<Secret, EngineError> {
        self.node.opening_key(id)
    }
}

/// Refuses a store in clear opened with keys (or the other way round),
/// naming what to do; marks a new store sealed. Reads only what is never
/// sealed (the settings; whether the audit log has an entry), before
/// anything sealed is read. A store is new while it has no audit entry
/// and no recorded release: also one whose first start crashed before
/// anything was synced, which must not be refused as a store in clear.
pub(super) fn check_sealing(
    db: &super::engine::Db,
    t: &super::trees::Trees,
    dir: &Path,
    vault: Option<&Vault>,
) -> Result<(), StoreError> {
    let settings = t.settings;
    let mark = db.get(settings, SEALED_SETTING)?;
    let was_new = db.get(settings, super::trees::RELEASE_SETTING)?.is_none()
        && db.range::<&[u8]>(t.audit, ..).next().is_none();
    match (vault, mark) {
        (None, None) | (Some(_), Some(_)) => Ok(()),
        (None, Some(kek)) => Err(StoreError::Vault(format!(
            "{} is sealed (under KEK {}): give the node its [encryption] kek_file",
            dir.display(),
            String::from_utf8_lossy(&kek)
        ))),
        (Some(v), None) if was_new => {
            let kek = v.state().kek_id;
            db.transaction(|tx| tx.insert(settings, SEALED_SETTING, kek.as_bytes()))?;
            Ok(())
        }
        (Some(_), None) => Err(StoreError::Vault(format!(
            "{dir} holds case data in clear, and [encryption] is configured: seal a copy with \
             `casebridge store encrypt --from {dir} --to NEW_DIR --config node.toml` and point \
             [store] dir at NEW_DIR",
            dir = dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(dir: &Path) -> Vault {
        let kek = dir.join("kek.toml");
        if !kek.exists() {
            crate::vault::FileKek::create(&kek).unwrap();
        }
        Vault::open(&kek, &dir.join("keys")).unwrap()
    }

    /// A store whose first start left an empty database (a crash before
    /// anything was synced) is new, not a store in clear; one that holds
    /// an audit entry in clear is refused, naming `store encrypt`.
    #[tokio::test]
    async fn an_empty_database_is_new_and_one_in_clear_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        crate::secrets::create_private_dir(&data).unwrap();
        drop(super::super::engine::Db::open(&data, &Default::default()).unwrap());
        let sealed = super::super::Store::open_sealed(&data, 8 << 20, None, vault(dir.path()));
        assert!(sealed.is_ok(), "{:?}", sealed.err());
        drop(sealed);

        let clear = dir.path().join("clear");
        let store = super::super::Store::open_audit_only(&clear, 8 << 20).unwrap();
        store
            .audit([crate::audit::Event::new(
                crate::audit::NODE,
                crate::audit::Action::NodeStart,
                "OK",
            )])
            .await
            .unwrap();
        store.close().await.unwrap();
        drop(store);
        let err = super::super::Store::open_sealed(&clear, 8 << 20, None, vault(dir.path()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("casebridge store encrypt"), "{err}");
    }
}
