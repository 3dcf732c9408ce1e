//! Key bytes in memory: 32 bytes, zeroized when dropped, never printed.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit key (an AES-256 key at every level of the vault).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl Secret {
    /// A fresh key from the system's random generator (aws-lc-rs).
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG is available");
        Self(bytes)
    }

    /// Exactly 32 bytes, or nothing (the caller names what it read).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}
