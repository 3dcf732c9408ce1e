//! The node's audit signing key (Ed25519) and the checkpoints it signs.
//!
//! The key is separate from the TLS key on purpose: the TLS key is rotated
//! with certificates and may live in a secrets store the node only reads at
//! start, while checkpoints must stay verifiable with one published public
//! key for as long as the log is kept. Auditors get the public key
//! (`casebridge audit public-key`); the private key never leaves the node.

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use rustls::pki_types::PrivateKeyDer;

use super::{Checkpoint, Hash, hex, unhex};
use crate::time::format_ms;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
}

fn file_err(path: &Path, reason: impl ToString) -> SigningError {
    SigningError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw
/// 32-byte key follows it.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Loads the key, refusing a file that group or others can read.
    pub fn load(path: &Path) -> Result<Self, SigningError> {
        let der = crate::identity::load_private_key(path).map_err(|e| file_err(path, e))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(file_err(path, "not a PKCS#8 private key"));
        };
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.secret_pkcs8_der())
            .map_err(|_| file_err(path, "not an Ed25519 PKCS#8 key"))?;
        Ok(Self { pair })
    }

    /// Writes a new key (mode 0600) and its public key next to it as
    /// `<path>.pub`; refuses to overwrite an existing key.
    pub fn create(path: &Path) -> Result<Self, SigningError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| file_err(path, "key generation failed"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| file_err(path, e))?;
        }
        crate::secrets::create_new(path, pem("PRIVATE KEY", doc.as_ref()).as_bytes(), true)
            .map_err(|e| file_err(path, e))?;
        let key = Self::load(path)?;
        let pub_path = public_key_path(path);
        std::fs::write(&pub_path, key.public().to_pem()).map_err(|e| file_err(&pub_path, e))?;
        Ok(key)
    }

    /// The configured key, created at first start if it does not exist yet,
    /// so a node always signs its log without any set-up step.
    pub fn load_or_create(path: &Path) -> Result<Self, SigningError> {
        if path.exists() {
            Self::load(path)
        } else {
            tracing::info!(path = %path.display(), "creating the audit signing key");
            Self::create(path)
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(
            self.pair
                .public_key()
                .as_ref()
                .try_into()
                .expect("Ed25519 public keys are 32 bytes"),
        )
    }

    pub fn sign(&self, seq: u64, hash: Hash, time_ms: i64) -> Checkpoint {
        let time = format_ms(time_ms);
        let signature = hex(self
            .pair
            .sign(&Checkpoint::message(seq, &hash, &time))
            .as_ref());
        Checkpoint {
            seq,
            hash,
            time,
            signature,
        }
    }
}

/// Where [`SigningKey::create`] puts the public half.
pub fn public_key_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The public half of the signing key at `key`: the `.pub` file written
    /// beside it, else derived from the key itself.
    pub fn of_signing_key(key: &Path) -> Result<Self, SigningError> {
        let public = public_key_path(key);
        if public.exists() {
            return Self::load(&public);
        }
        Ok(SigningKey::load(key)?.public())
    }

    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem("PUBLIC KEY", &der)
    }

    pub fn from_pem(text: &str) -> Option<Self> {
        let body: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect();
        if !text.contains("-----BEGIN PUBLIC KEY-----") {
            return None;
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .ok()?;
        let raw = der.strip_prefix(&SPKI_PREFIX[..])?;
        Some(Self(raw.try_into().ok()?))
    }

    pub fn load(path: &Path) -> Result<Self, SigningError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
        Self::from_pem(&text)
            .ok_or_else(|| file_err(path, "not an Ed25519 public key in PEM (BEGIN PUBLIC KEY)"))
    }

    pub fn verify(&self, message: &[u8], signature_hex: &str) -> bool {
        let Some(sig) = unhex(signature_hex) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, &sig)
            .is_ok()
    }
}
