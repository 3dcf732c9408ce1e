//! Ed25519 key files, for what a node or an operator signs with a key of
//! its own rather than its TLS key: the audit log's checkpoints
//! (`audit::signing`) and the federation directory (`directory`).
//!
//! The private key is PKCS#8 in PEM, readable by its owner only; the public
//! key a SubjectPublicKeyInfo in PEM (RFC 8410), written beside it as
//! `<key>.pub`. Signing and verification are aws-lc-rs's.

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
}

fn file_err(path: &Path, reason: impl ToString) -> KeyFileError {
    KeyFileError::File {
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
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        crate::secrets::check_owner_only(path, "private key").map_err(|e| file_err(path, e))?;
        let der = PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(file_err(path, "not a PKCS#8 private key"));
        };
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.secret_pkcs8_der())
            .map_err(|_| file_err(path, "not an Ed25519 PKCS#8 key"))?;
        Ok(Self { pair })
    }

    /// Writes a new key (mode 0600) and its public key next to it as
    /// `<path>.pub`; refuses to overwrite an existing key.
    pub fn create(path: &Path) -> Result<Self, KeyFileError> {
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

    /// The key at `path`, created first if it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        if path.exists() {
            Self::load(path)
        } else {
            tracing::info!(path = %path.display(), "creating a signing key");
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

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.pair
            .sign(message)
            .as_ref()
            .try_into()
            .expect("Ed25519 signatures are 64 bytes")
    }
}

/// Where [`SigningKey::create`] puts the public half.
pub fn public_key_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// A raw 32-byte key, as the federation directory carries it.
    pub fn from_raw(raw: &[u8]) -> Option<Self> {
        Some(Self(raw.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The public half of the signing key at `key`: the `.pub` file written
    /// beside it, else derived from the key itself.
    pub fn of_signing_key(key: &Path) -> Result<Self, KeyFileError> {
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
        Self::from_raw(raw)
    }

    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
        Self::from_pem(&text)
            .ok_or_else(|| file_err(path, "not an Ed25519 public key in PEM (BEGIN PUBLIC KEY)"))
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}
