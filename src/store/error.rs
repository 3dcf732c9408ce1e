//! What a store operation can fail with: [`StoreError`], and [`TxError`]
//! for a transaction the caller's own step may refuse.

use thiserror::Error;

use super::engine::EngineError;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Engine(#[from] EngineError),
    #[error("stored record {key} cannot be decoded: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("sync failed: {0}")]
    Flush(String),
    #[error("backup: {0}")]
    Backup(String),
    #[error(
        "{dir} holds a store written by an earlier CaseBridge (sled); convert it with \
         `casebridge store migrate --from {dir} --to NEW_DIR` and point [store] dir at NEW_DIR"
    )]
    Legacy { dir: String },
    #[error("migrate: {0}")]
    Migrate(String),
    /// Written by a newer release than this one: refused rather than
    /// misread.
    #[error(
        "the store was last written by CaseBridge {found}, newer than this release ({ours}); \
         run {found} or later, or restore the backup taken before the upgrade"
    )]
    Newer { found: String, ours: &'static str },
    /// The store's directory could be read by other local users.
    #[error("{0}")]
    Exposed(String),
    /// A store opened for its audit log only (the key service's) was asked
    /// to match: it has no scope to match in.
    #[error("this store was opened for its audit log only; it does not match alerts")]
    AuditOnly,
    /// Encryption at rest: keys, epochs, a store sealed or in clear.
    #[error("encryption at rest: {0}")]
    Vault(String),
}

impl StoreError {
    /// A stored record (named by `key`) that cannot be read back as what it
    /// should be.
    pub fn corrupt(key: impl Into<String>, reason: impl ToString) -> Self {
        Self::Corrupt {
            key: key.into(),
            reason: reason.to_string(),
        }
    }

    /// A record that is there but cannot be read back: altered, sealed
    /// value moved to another record, sealed under a key that is gone. Not
    /// an outage: retrying does not help, and the rest of the store serves.
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            Self::Corrupt { .. } | Self::Engine(EngineError::Sealed(_) | EngineError::Shredded(_))
        )
    }
}

/// A transaction that failed either in storage or by the caller's own decision.
#[derive(Debug, Error)]
pub enum TxError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rejected(E),
}

impl<E> From<EngineError> for TxError<E> {
    fn from(e: EngineError) -> Self {
        Self::Store(e.into())
    }
}
