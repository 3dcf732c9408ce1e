//! The federation's matching key ring: versioned HMAC keys, shared out of
//! band by the federation operator, used only to derive pseudonymous tokens.
//!
//! Rotation: each key has a validity window. While two windows overlap a node
//! derives tokens under both versions, so alerts tokenized under the old key
//! still match new ones until the old key expires.

use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ids::FederationName;

/// Bytes of a generated key (HMAC-SHA256 block-size keys gain nothing past 64;
/// 32 bytes give the full 256-bit security).
pub const KEY_BYTES: usize = 32;

#[derive(Debug, Error)]
pub enum KeyRingError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}: key version {version}: {reason}")]
    Key {
        path: PathBuf,
        version: u32,
        reason: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRingFile {
    federation: FederationName,
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    version: u32,
    /// Base64 of the secret key.
    secret: String,
    /// RFC 3339 instant from which the key is used.
    valid_from: String,
    /// RFC 3339 instant from which the key is no longer used (open-ended if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
}

pub struct MatchingKey {
    pub version: u32,
    key: hmac::Key,
    pub valid_from: OffsetDateTime,
    pub valid_until: Option<OffsetDateTime>,
}

impl MatchingKey {
    fn is_active(&self, at: OffsetDateTime) -> bool {
        self.valid_from <= at && self.valid_until.is_none_or(|u| at < u)
    }

    /// HMAC-SHA256 over length-prefixed parts, so no choice of parts can
    /// produce the same input as another.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(&(p.len() as u32).to_be_bytes());
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

pub struct KeyRing {
    pub federation: FederationName,
    keys: Vec<MatchingKey>,
}

pub(super) fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
}

pub(super) fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("RFC 3339 formats every UTC time")
}

impl KeyRing {
    /// Loads a key ring, refusing a file that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyRingError> {
        let file_err = |reason: String| KeyRingError::File {
            path: path.to_owned(),
            reason,
        };
        crate::secrets::check_owner_only(path, "key ring").map_err(file_err)?;
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let file: KeyRingFile = toml::from_str(&text).map_err(|e| file_err(e.to_string()))?;
        Self::from_file(path, file)
    }

    fn from_file(path: &Path, file: KeyRingFile) -> Result<Self, KeyRingError> {
        let mut keys: Vec<MatchingKey> = Vec::new();
        for e in file.keys {
            let key_err = |reason: String| KeyRingError::Key {
                path: path.to_owned(),
                version: e.version,
                reason,
            };
            if keys.iter().any(|k| k.version == e.version) {
                return Err(key_err("listed twice".into()));
            }
            let secret = B64
                .decode(e.secret.trim())
                .map_err(|_| key_err("secret is not base64".into()))?;
            if secret.len() < KEY_BYTES {
                return Err(key_err(format!(
                    "secret has {} bytes, at least {KEY_BYTES} needed",
                    secret.len()
                )));
            }
            let valid_from = parse_time(&e.valid_from).map_err(key_err)?;
            let valid_until = e
                .valid_until
                .as_deref()
                .map(parse_time)
                .transpose()
                .map_err(key_err)?;
            if valid_until.is_some_and(|u| u <= valid_from) {
                return Err(key_err("valid_until is not after valid_from".into()));
            }
            keys.push(MatchingKey {
                version: e.version,
                key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
                valid_from,
                valid_until,
            });
        }
        if keys.is_empty() {
            return Err(KeyRingError::File {
                path: path.to_owned(),
                reason: "the key ring has no keys".into(),
            });
        }
        keys.sort_by_key(|k| k.version);
        Ok(Self {
            federation: file.federation,
            keys,
        })
    }

    /// Keys in use at `at` (usually one; two during a rotation's overlap).
    pub fn active(&self, at: OffsetDateTime) -> impl Iterator<Item = &MatchingKey> {
        self.keys.iter().filter(move |k| k.is_active(at))
    }

    pub fn key(&self, version: u32) -> Option<&MatchingKey> {
        self.keys.iter().find(|k| k.version == version)
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.version).collect()
    }
}

/// Writes `text` to `path` with mode 0600, atomically (temp file + rename),
/// so a crash never leaves a half-written key ring.
pub(super) fn write_private(path: &Path, text: &str, overwrite: bool) -> Result<(), KeyRingError> {
    let file_err = |reason: String| KeyRingError::File {
        path: path.to_owned(),
        reason,
    };
    if !overwrite && path.exists() {
        return Err(file_err("already exists; refusing to overwrite".into()));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| file_err(e.to_string()))?;
    // NamedTempFile is created 0600 on unix.
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| file_err(e.to_string()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| file_err(e.to_string()))?;
    tmp.persist(path).map_err(|e| file_err(e.to_string()))?;
    Ok(())
}

fn random_secret() -> String {
    let mut secret = [0u8; KEY_BYTES];
    aws_lc_rs::rand::fill(&mut secret).expect("the system RNG is available");
    B64.encode(secret)
}

const HEADER: &str = "# CaseBridge matching key ring. SECRET: every node of the federation holds\n# this same file (mode 0600). Generated by `casebridge keys`.\n";

/// Writes a new key ring with one key (version 1) valid from now.
pub fn generate(path: &Path, federation: &FederationName) -> Result<(), KeyRingError> {
    let file = KeyRingFile {
        federation: federation.clone(),
        keys: vec![KeyEntry {
            version: 1,
            secret: random_secret(),
            valid_from: format_time(OffsetDateTime::now_utc()),
            valid_until: None,
        }],
    };
    let text = toml::to_string(&file).map_err(|e| KeyRingError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    write_private(path, &format!("{HEADER}{text}"), false)
}

/// Adds a new key valid from now and ends every currently open-ended key
/// `overlap` later: during the overlap nodes derive tokens under both.
/// Returns the new version.
pub fn rotate(path: &Path, overlap: time::Duration) -> Result<u32, KeyRingError> {
    KeyRing::load(path)?; // validates the current file and its permissions
    let text = std::fs::read_to_string(path).map_err(|e| KeyRingError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let mut file: KeyRingFile = toml::from_str(&text).map_err(|e| KeyRingError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let now = OffsetDateTime::now_utc();
    let version = file.keys.iter().map(|k| k.version).max().unwrap_or(0) + 1;
    let until = format_time(now + overlap);
    for k in &mut file.keys {
        let ends_later = match &k.valid_until {
            None => true,
            Some(u) => parse_time(u).is_ok_and(|u| u > now + overlap),
        };
        if ends_later {
            k.valid_until = Some(until.clone());
        }
    }
    file.keys.push(KeyEntry {
        version,
        secret: random_secret(),
        valid_from: format_time(now),
        valid_until: None,
    });
    let text = toml::to_string(&file).map_err(|e| KeyRingError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    write_private(path, &format!("{HEADER}{text}"), true)?;
    Ok(version)
}

/// A fresh key ring of federation `t.cb` in a temporary directory, for
/// tests (the directory lives as long as the returned guard).
#[cfg(test)]
pub(crate) fn test_ring() -> (tempfile::TempDir, KeyRing) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("k.toml");
    generate(
        &path,
        &crate::ids::FederationName::new("t.cb").expect("a valid name"),
    )
    .expect("a new key ring");
    let ring = KeyRing::load(&path).expect("the ring just written");
    (dir, ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_rotate_and_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let fed = FederationName::new("demo.cb").unwrap();
        generate(&path, &fed).unwrap();
        assert!(generate(&path, &fed).is_err(), "never overwrites");
        let ring = KeyRing::load(&path).unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(ring.active(now).map(|k| k.version).collect::<Vec<_>>(), [1]);

        assert_eq!(rotate(&path, time::Duration::days(30)).unwrap(), 2);
        let ring = KeyRing::load(&path).unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            ring.active(now).map(|k| k.version).collect::<Vec<_>>(),
            [1, 2],
            "overlap"
        );
        let later = now + time::Duration::days(31);
        assert_eq!(
            ring.active(later).map(|k| k.version).collect::<Vec<_>>(),
            [2],
            "old key expired"
        );
    }

    #[test]
    fn refuses_readable_or_broken_rings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        generate(&path, &FederationName::new("demo.cb").unwrap()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = KeyRing::load(&path)
                .err()
                .expect("world-readable ring accepted");
            assert!(err.to_string().contains("chmod 600"), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let short = "federation = \"demo.cb\"\n[[keys]]\nversion = 1\nsecret = \"c2hvcnQ=\"\nvalid_from = \"2026-01-01T00:00:00Z\"\n";
        write_private(&path, short, true).unwrap();
        assert!(
            KeyRing::load(&path)
                .err()
                .unwrap()
                .to_string()
                .contains("at least 32")
        );
    }
}
