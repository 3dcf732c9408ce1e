//! Keys and sealing for what a node keeps at rest (docs/encryption.md).
//!
//! Three levels, each wrapping the one below with AES-256-GCM from
//! aws-lc-rs (which has a FIPS-validated build):
//!
//! - the **key-encryption key** (KEK, [`kek`]): a file readable by its owner
//!   only, or a key inside a PKCS#11 token; it never leaves its place and
//!   only wraps epoch keys;
//! - **epoch keys** ([`epochs`]): one per epoch (default a day), each in a
//!   file of its own, wrapped under the KEK. A file is the only copy of its
//!   key, so destroying it is what makes everything wrapped under that
//!   epoch unrecoverable, from every copy of the store the node ever made;
//! - **data keys**: one per thing that can be purged (an alert, a request,
//!   a release), wrapped under the current epoch key and re-wrapped at each
//!   epoch; a purge deletes the data key.
//!
//! Every ciphertext names the key it was sealed with and binds its place
//! (the store tree and key, or the epoch, or the data key's owner) as
//! associated data ([`mod@seal`]): a value copied onto another record does not
//! open. Key bytes live in [`Secret`]s, zeroized when dropped.

pub mod epochs;
mod error;
pub mod kek;
pub mod seal;
mod secret;

pub use epochs::{EpochId, Epochs};
pub use error::VaultError;
pub use kek::{FileKek, Kek};
pub use seal::{Place, open, peek_key_id, seal};
pub use secret::Secret;
