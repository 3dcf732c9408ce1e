//! What can go wrong in the vault, each case told apart for the operator.

/// Why something could not be sealed, opened or kept.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A ciphertext that is not one of ours, was cut short, or whose
    /// header is malformed (nothing was decrypted).
    #[error("sealed value: {0}")]
    Malformed(&'static str),
    /// The tag did not verify: another key, another place, or altered bytes.
    #[error(
        "sealed value does not open under key {key_id} at {place}: another key, another place, or altered bytes"
    )]
    DoesNotOpen { key_id: String, place: String },
    #[error("{path}: {reason}")]
    File {
        path: std::path::PathBuf,
        reason: String,
    },
    /// Wrapped under another KEK than the one this node was given.
    #[error(
        "wrapped under KEK {found}, but this node has KEK {ours}: start it with the KEK its store was written with"
    )]
    WrongKek { found: String, ours: String },
    /// An epoch whose key was destroyed (or never existed here).
    #[error(
        "epoch {0} is not kept: its key was destroyed once the next epoch had re-wrapped everything, or this is another node's store"
    )]
    EpochGone(u64),
    /// The PKCS#11 token (HSM) refused or failed: what was asked, and why.
    #[error("PKCS#11 token: {0}")]
    Token(String),
    /// A backup whose key was destroyed (or never existed here).
    #[error(
        "backup key {0} is not kept: it was destroyed when the backup passed [encryption] backup_retention_days, or the backup is another node's"
    )]
    BackupKeyGone(u64),
}
