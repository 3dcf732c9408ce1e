//! The node's audit signing key (Ed25519) and the checkpoints it signs.
//!
//! The key is separate from the TLS key on purpose: the TLS key is rotated
//! with certificates and may live in a secrets store the node only reads at
//! start, while checkpoints must stay verifiable with one published public
//! key for as long as the log is kept. Auditors get the public key
//! (`casebridge audit public-key`); the private key never leaves the node.
//! The key files themselves are `crate::ed25519`'s.

pub use crate::ed25519::{KeyFileError as SigningError, PublicKey, SigningKey, public_key_path};

use super::{Checkpoint, Hash, hex, unhex};
use crate::time::format_ms;

/// Signs checkpoint `seq` (the chain's hash there, at `time_ms`).
pub fn sign_checkpoint(key: &SigningKey, seq: u64, hash: Hash, time_ms: i64) -> Checkpoint {
    let time = format_ms(time_ms);
    let signature = hex(&key.sign(&Checkpoint::message(seq, &hash, &time)));
    Checkpoint {
        seq,
        hash,
        time,
        signature,
    }
}

/// Whether `signature_hex` (a checkpoint's) signs `message` under `key`.
pub fn verify_hex(key: &PublicKey, message: &[u8], signature_hex: &str) -> bool {
    unhex(signature_hex).is_some_and(|sig| key.verify(message, &sig))
}
