//! What every key file of a federation shares — the matching key ring
//! ([`super::keyring`]), the key service's OPRF seeds and the public keys
//! nodes pin ([`super::oprf_keys`]): a federation name and a list of
//! versioned keys, each with a validity window in RFC 3339, checked whole
//! when loaded (a problem names the file and the version), rotated by
//! ending the open keys at the end of an overlap, and written 0600 through
//! a temporary file so a crash never leaves half a key file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ids::FederationName;

/// A key file that cannot be used, naming the file (and the key).
#[derive(Debug, Error)]
pub enum KeyFileError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}: key version {version}: {reason}")]
    Key {
        path: PathBuf,
        version: u32,
        reason: String,
    },
}

impl KeyFileError {
    pub(super) fn file(path: &Path, reason: impl ToString) -> Self {
        Self::File {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(super) fn key(path: &Path, version: u32, reason: impl ToString) -> Self {
        Self::Key {
            path: path.to_owned(),
            version,
            reason: reason.to_string(),
        }
    }
}

/// A key file: the federation it belongs to and its entries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyFile<E> {
    pub federation: FederationName,
    /// The KEK the secrets of this file are sealed under (the key
    /// service's seeds, docs/encryption.md), relative to the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_file: Option<std::path::PathBuf>,
    pub keys: Vec<E>,
}

/// A key file's entry: its version and validity window, whatever the key.
pub(super) trait Entry {
    fn version(&self) -> u32;
    fn window(&self) -> (&str, Option<&str>);
    /// Where the end of the window is written (a rotation ends open keys).
    fn valid_until_mut(&mut self) -> &mut Option<String>;
}

/// Implements [`Entry`] for entry structs with `version`, `valid_from`
/// and `valid_until` fields (every key file's entries have them).
macro_rules! entry {
    ($($t:ty),+) => {$(
        impl $crate::pseudo::keyfile::Entry for $t {
            fn version(&self) -> u32 {
                self.version
            }
            fn window(&self) -> (&str, Option<&str>) {
                (&self.valid_from, self.valid_until.as_deref())
            }
            fn valid_until_mut(&mut self) -> &mut Option<String> {
                &mut self.valid_until
            }
        }
    )+};
}
pub(super) use entry;

/// A validity window: from `valid_from` (inclusive), until `valid_until`
/// (exclusive) or open-ended.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub valid_from: OffsetDateTime,
    pub valid_until: Option<OffsetDateTime>,
}

impl Window {
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        self.valid_from <= at && self.valid_until.is_none_or(|u| at < u)
    }

    fn parse(from: &str, until: Option<&str>) -> Result<Self, String> {
        let valid_from = parse_time(from)?;
        let valid_until = until.map(parse_time).transpose()?;
        if valid_until.is_some_and(|u| u <= valid_from) {
            return Err("valid_until is not after valid_from".into());
        }
        Ok(Self {
            valid_from,
            valid_until,
        })
    }
}

pub(super) fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
}

pub(super) fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("RFC 3339 formats every UTC time")
}

/// Reads and parses the key file at `path` (permissions are the caller's
/// to check: a public key file may be readable by all).
pub(super) fn read<E: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<KeyFile<E>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyFileError::file(path, e))?;
    toml::from_str(&text).map_err(|e| KeyFileError::file(path, e))
}

/// Every entry of a key file with its version, its key as `parse` reads it
/// and its window, in file order. Refused: a file without keys (`none`
/// says so in the file's own words), a version listed twice.
pub(super) fn entries<E: Entry, T>(
    path: &Path,
    list: &[E],
    none: &str,
    parse: impl Fn(&E) -> Result<T, String>,
) -> Result<Vec<(u32, T, Window)>, KeyFileError> {
    if list.is_empty() {
        return Err(KeyFileError::file(path, none));
    }
    let mut out: Vec<(u32, T, Window)> = Vec::with_capacity(list.len());
    for e in list {
        let key_err = |reason: String| KeyFileError::key(path, e.version(), reason);
        if out.iter().any(|(v, _, _)| *v == e.version()) {
            return Err(key_err("listed twice".into()));
        }
        let key = parse(e).map_err(key_err)?;
        let (from, until) = e.window();
        let window = Window::parse(from, until).map_err(key_err)?;
        out.push((e.version(), key, window));
    }
    Ok(out)
}

/// Makes room for a new key valid from `until`'s overlap: every key open
/// past `until` now ends there. Returns the version the new key takes.
pub(super) fn end_open_keys<E: Entry>(keys: &mut [E], until: OffsetDateTime) -> u32 {
    for k in keys.iter_mut() {
        let ends_later = match k.valid_until_mut() {
            None => true,
            Some(u) => parse_time(u).is_ok_and(|u| u > until),
        };
        if ends_later {
            *k.valid_until_mut() = Some(format_time(until));
        }
    }
    keys.iter().map(Entry::version).max().unwrap_or(0) + 1
}

/// Writes `header` and `file` to `path` with mode 0600, atomically (temp
/// file + rename); refuses to replace an existing file unless `overwrite`.
pub(super) fn write<E: Serialize>(
    path: &Path,
    header: &str,
    file: &KeyFile<E>,
    overwrite: bool,
) -> Result<(), KeyFileError> {
    let text = toml::to_string(file).map_err(|e| KeyFileError::file(path, e))?;
    write_private(path, &format!("{header}{text}"), overwrite)
}

/// Writes `text` to `path` with mode 0600 through a temporary file and a
/// rename, so a crash leaves the old file or the new one, never half.
pub(super) fn write_private(path: &Path, text: &str, overwrite: bool) -> Result<(), KeyFileError> {
    let file_err = |e: std::io::Error| KeyFileError::file(path, e);
    if !overwrite && path.exists() {
        return Err(KeyFileError::file(
            path,
            "already exists; refusing to overwrite",
        ));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(file_err)?;
    // NamedTempFile is created 0600 on unix.
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(file_err)?;
    tmp.as_file().sync_all().map_err(file_err)?;
    tmp.persist(path).map_err(|e| file_err(e.error))?;
    Ok(())
}
