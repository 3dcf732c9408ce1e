//! Receipts: what a reporter keeps instead of an account (GlobaLeaks'
//! form). Sixteen random digits, shown once; the node keeps only a slow,
//! keyed hash of them (Argon2id, with the node's own secret as the salt,
//! so the hash can be looked up and is worthless without the secret).
//! Guessing is bounded three ways: each try costs a slow hash, tries are
//! hashed a few at a time, and failures share one budget a minute for the
//! whole node (`reports::Reports`, with the node's token buckets) —
//! nothing records who tried.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::{Zeroize, Zeroizing};

/// Digits in a receipt: 10^16 ≈ 2^53 receipts, so a guess at a node with
/// a million reports succeeds about once in nine billion tries.
pub const DIGITS: usize = 16;
/// Bytes of the node's secret salt.
pub const SECRET_LEN: usize = 32;
/// Bytes of a receipt's hash.
pub const HASH_LEN: usize = 32;

/// Argon2id cost: 19 MiB, two passes, one lane — OWASP's recommended
/// minimum for Argon2id (Password Storage Cheat Sheet), in the tens of
/// milliseconds a try on one core. Changing it changes every hash, so it
/// is fixed: a later release that needs more keeps these for old receipts.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Why a receipt was not read or hashed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("a receipt is {DIGITS} digits")]
    Malformed,
    #[error("hashing the receipt: {0}")]
    Hash(String),
}

/// A receipt's digits, wiped from memory when dropped.
#[derive(Clone)]
pub struct Receipt(Zeroizing<String>);

impl Receipt {
    /// A new receipt from the system's RNG, each digit uniform (bytes of
    /// 250 or more are drawn again, so no digit is likelier than another).
    pub fn generate() -> Self {
        let mut digits = Zeroizing::new(String::with_capacity(DIGITS));
        let mut buf = Zeroizing::new([0u8; 64]);
        while digits.len() < DIGITS {
            aws_lc_rs::rand::fill(&mut buf[..]).expect("the system RNG is available");
            for b in buf.iter().filter(|b| **b < 250) {
                if digits.len() < DIGITS {
                    digits.push(char::from(b'0' + b % 10));
                }
            }
        }
        Self(digits)
    }

    /// A receipt as a person types it back: digits, with any spaces or
    /// dashes between them; nothing else, and exactly [`DIGITS`] digits.
    pub fn parse(typed: &str) -> Result<Self, ReceiptError> {
        if typed.len() > 4 * DIGITS {
            return Err(ReceiptError::Malformed);
        }
        let mut digits = Zeroizing::new(String::with_capacity(DIGITS));
        for c in typed.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '\u{a0}' => {}
                _ => return Err(ReceiptError::Malformed),
            }
        }
        if digits.len() != DIGITS {
            return Err(ReceiptError::Malformed);
        }
        Ok(Self(digits))
    }

    /// In groups of four, as the reporter is shown it once.
    pub fn grouped(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(DIGITS + DIGITS / 4));
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }
}

/// The node's receipt hasher: its secret salt and Argon2id's cost.
pub struct Hasher {
    secret: Zeroizing<[u8; SECRET_LEN]>,
}

impl Hasher {
    /// A hasher under the node's secret (kept in its store, sealed when
    /// the store is).
    pub fn new(secret: [u8; SECRET_LEN]) -> Self {
        let mut s = secret;
        let hasher = Self {
            secret: Zeroizing::new(s),
        };
        s.zeroize();
        hasher
    }

    /// A new secret for a node that has none yet.
    pub fn new_secret() -> Zeroizing<[u8; SECRET_LEN]> {
        let mut s = Zeroizing::new([0u8; SECRET_LEN]);
        aws_lc_rs::rand::fill(&mut s[..]).expect("the system RNG is available");
        s
    }

    /// The hash `receipt` is kept and looked up by. Slow on purpose: run
    /// it off the async workers, and a few at a time (`reports::Reports` does).
    pub fn hash(&self, receipt: &Receipt) -> Result<[u8; HASH_LEN], ReceiptError> {
        let params = Params::new(MEMORY_KIB, PASSES, LANES, Some(HASH_LEN))
            .map_err(|e| ReceiptError::Hash(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut out = [0u8; HASH_LEN];
        argon
            .hash_password_into(receipt.0.as_bytes(), &self.secret[..], &mut out)
            .map_err(|e| ReceiptError::Hash(e.to_string()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_is_sixteen_digits_read_back_however_spaced() {
        let r = Receipt::generate();
        let shown = r.grouped();
        assert_eq!(shown.len(), DIGITS + 3);
        assert!(shown.split(' ').all(|g| g.len() == 4));
        let typed = Receipt::parse(&shown.replace(' ', "-")).unwrap();
        let h = Hasher::new([7; SECRET_LEN]);
        assert_eq!(h.hash(&typed).unwrap(), h.hash(&r).unwrap());
        for bad in [
            "",
            "123",
            "1234 5678 9012 345x",
            "12345678901234567",
            "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦",
        ] {
            assert_eq!(
                Receipt::parse(bad).err(),
                Some(ReceiptError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_hash_depends_on_the_node_s_secret() {
        let r = Receipt::parse("0000 1111 2222 3333").unwrap();
        let a = Hasher::new([1; SECRET_LEN]).hash(&r).unwrap();
        let b = Hasher::new([2; SECRET_LEN]).hash(&r).unwrap();
        assert_ne!(a, b);
        let other = Receipt::parse("0000 1111 2222 3334").unwrap();
        assert_ne!(Hasher::new([1; SECRET_LEN]).hash(&other).unwrap(), a);
    }

    #[test]
    fn digits_are_spread_evenly() {
        let mut counts = [0u32; 10];
        for _ in 0..1000 {
            for c in Receipt::generate().0.chars() {
                counts[c as usize - '0' as usize] += 1;
            }
        }
        // 1,600 each expected; 5 standard deviations is about ±190.
        assert!(
            counts.iter().all(|n| (1400..=1800).contains(n)),
            "{counts:?}"
        );
    }

    proptest::proptest! {
        /// Anything typed is read as a receipt or refused, never a panic;
        /// what is read has exactly sixteen digits.
        #[test]
        fn any_text_is_a_receipt_or_refused(s in "\\PC{0,80}") {
            if let Ok(r) = Receipt::parse(&s) {
                proptest::prop_assert_eq!(r.0.len(), DIGITS);
                proptest::prop_assert!(r.0.bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
