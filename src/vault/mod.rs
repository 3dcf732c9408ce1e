//! Keys and sealing for what a node keeps at rest (docs/encryption.md).
//!
//! Levels, each wrapping the one below with AES-256-GCM from aws-lc-rs
//! (which has a FIPS-validated build):
//!
//! - the **key-encryption key** (KEK, [`kek`]): a file readable by its owner
//!   only, or a key inside a PKCS#11 token; it never leaves its place and
//!   only wraps epoch and backup keys;
//! - **epoch keys** and **backup keys** ([`epochs`]): one per epoch
//!   (default a day) and one per backup, each in a file of its own, wrapped
//!   under the KEK. A file is the only copy of its key, so destroying it is
//!   what makes everything wrapped under it unrecoverable, from every copy
//!   the node ever made;
//! - **data keys** (kept by `store::engine::sealed`): one per thing a purge
//!   empties (an alert, a release), wrapped under the current epoch key
//!   and re-wrapped at each epoch; a purge destroys the data key.
//!
//! Every ciphertext names the key it was sealed with and binds its place
//! (the store tree and key, or the epoch, or the backup) as associated
//! data ([`mod@seal`]): a value copied onto another record does not open.
//! Key bytes live in [`Secret`]s, zeroized when dropped.

pub mod epochs;
mod error;
pub mod kek;
pub mod pkcs11;
pub mod seal;
mod secret;

pub use epochs::{BackupKeyId, EpochId, Epochs};
pub use error::VaultError;
pub use kek::{FileKek, Kek};
pub use pkcs11::{Pkcs11Kek, TokenKey, create_in_token, load as load_kek};
pub use seal::{Place, open, peek_key_id, seal};
pub use secret::Secret;
