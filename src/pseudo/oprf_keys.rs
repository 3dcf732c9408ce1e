//! The OPRF key files: the key service's secret seeds, and the public keys
//! every node pins.
//!
//! Versions and validity windows work as in the key ring ([`super::keyring`]):
//! during a rotation's overlap a node derives tokens under both versions, so
//! alerts tokenized under the old key still match new ones. OPRF versions
//! start at [`FIRST_VERSION`] so they never share a number with a key ring
//! version (a token's version says which scheme made it).
//!
//! The public file is not secret but it is what makes the key service
//! accountable: a node verifies every answer against it, so it travels with
//! the federation CA, never fetched from the key service itself.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use super::keyfile::Window;
use super::keyfile::{self, Entry, KeyFile, KeyFileError, format_time};
use super::oprf::{FIRST_VERSION, PublicKey, ServerKey};
use crate::ids::FederationName;
use crate::vault::{Kek, Place, Secret};
use zeroize::Zeroizing;

/// Bytes of a generated seed (the RFC's DeriveKeyPair takes 32).
pub const SEED_BYTES: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretEntry {
    version: u32,
    /// Base64 of the 32-byte seed the key pair is derived from, in a file
    /// with no KEK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<String>,
    /// Base64 of the seed sealed under the file's KEK (`kek_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_seed: Option<String>,
    valid_from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicEntry {
    version: u32,
    /// Base64 of the 32-byte compressed ristretto255 public key.
    public_key: String,
    valid_from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
}

/// The key service's keys (secret).
pub struct SecretKeys {
    pub federation: FederationName,
    keys: Vec<(ServerKey, Window)>,
}

/// One pinned public key.
#[derive(Debug, Clone, Copy)]
pub struct Pinned {
    pub version: u32,
    pub key: PublicKey,
    pub window: Window,
}

/// The public keys a node trusts (public).
#[derive(Debug, Clone)]
pub struct PinnedKeys {
    pub federation: FederationName,
    keys: Vec<Pinned>,
}

/// OPRF versions start at [`FIRST_VERSION`], apart from the key ring's.
fn check_versions<E: Entry>(path: &Path, list: &[E]) -> Result<(), KeyFileError> {
    match list.iter().find(|e| e.version() < FIRST_VERSION) {
        Some(e) => Err(KeyFileError::key(
            path,
            e.version(),
            format!(
                "OPRF key versions start at {FIRST_VERSION} (lower numbers are key ring versions)"
            ),
        )),
        None => Ok(()),
    }
}

keyfile::entry!(SecretEntry, PublicEntry);

/// Every entry of an OPRF key file (see [`keyfile::entries`]).
fn entries<E: Entry, T>(
    path: &Path,
    list: &[E],
    parse: impl Fn(&E) -> Result<T, String>,
) -> Result<Vec<(u32, T, Window)>, KeyFileError> {
    check_versions(path, list)?;
    keyfile::entries(path, list, "the file has no keys", parse)
}

impl SecretKeys {
    /// Loads the seeds, refusing a file group or others can read; seeds
    /// sealed under the file's KEK are opened with it (a key file or a
    /// PKCS#11 token), and a seed in clear in such a file is refused.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        crate::secrets::check_owner_only(path, "OPRF key file")
            .map_err(|reason| KeyFileError::file(path, reason))?;
        let file: KeyFile<SecretEntry> = keyfile::read(path)?;
        let kek = kek_of(path, &file)?;
        let federation = file.federation.clone();
        let mut keys: Vec<(ServerKey, Window)> = entries(path, &file.keys, |e: &SecretEntry| {
            let seed = seed_of(e, kek.as_deref(), &federation)?;
            ServerKey::derive(&seed[..], federation.as_str(), e.version).map_err(|e| e.to_string())
        })?
        .into_iter()
        .map(|(_, key, window)| (key, window))
        .collect();
        keys.sort_by_key(|(k, _)| k.version);
        Ok(Self {
            federation: file.federation,
            keys,
        })
    }

    /// The key of `version` with its window.
    pub fn get(&self, version: u32) -> Option<(&ServerKey, Window)> {
        self.keys
            .iter()
            .find(|(k, _)| k.version == version)
            .map(|(k, w)| (k, *w))
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.iter().map(|(k, _)| k.version).collect()
    }

    /// The public file nodes pin (TOML text).
    pub fn public_file(&self) -> String {
        let file = KeyFile {
            federation: self.federation.clone(),
            kek_file: None,
            keys: self
                .keys
                .iter()
                .map(|(k, w)| PublicEntry {
                    version: k.version,
                    public_key: B64.encode(k.public_key().to_bytes()),
                    valid_from: format_time(w.valid_from),
                    valid_until: w.valid_until.map(format_time),
                })
                .collect(),
        };
        format!(
            "{PUBLIC_HEADER}{}",
            toml::to_string(&file).expect("the public key file serializes")
        )
    }
}

impl PinnedKeys {
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let file: KeyFile<PublicEntry> = keyfile::read(path)?;
        let mut keys: Vec<Pinned> = entries(path, &file.keys, |e: &PublicEntry| {
            let bytes = B64
                .decode(e.public_key.trim())
                .map_err(|_| "public_key is not base64".to_string())?;
            PublicKey::from_bytes(&bytes).map_err(|e| e.to_string())
        })?
        .into_iter()
        .map(|(version, key, window)| Pinned {
            version,
            key,
            window,
        })
        .collect();
        keys.sort_by_key(|k| k.version);
        Ok(Self {
            federation: file.federation,
            keys,
        })
    }

    /// The keys a federation directory pins (`key_service.keys`), checked
    /// as a key file is: each a valid point, an OPRF version, a window
    /// that ends after it starts. The directory's own rules already made
    /// versions unique.
    pub fn from_directory(
        federation: FederationName,
        keys: &[crate::proto::v1::DirectoryOprfKey],
    ) -> Result<Self, String> {
        let time = |secs: i64, j: usize| {
            OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|e| format!("key_service.keys[{j}]: {e}"))
        };
        let mut out = Vec::with_capacity(keys.len());
        for (j, k) in keys.iter().enumerate() {
            if k.version < FIRST_VERSION {
                return Err(format!(
                    "key_service.keys[{j}].version: OPRF key versions start at {FIRST_VERSION}"
                ));
            }
            let key = PublicKey::from_bytes(&k.public_key)
                .map_err(|e| format!("key_service.keys[{j}].public_key: {e}"))?;
            let window = Window {
                valid_from: time(k.valid_from, j)?,
                valid_until: (k.valid_until != 0)
                    .then(|| time(k.valid_until, j))
                    .transpose()?,
            };
            if window.valid_until.is_some_and(|u| u <= window.valid_from) {
                return Err(format!(
                    "key_service.keys[{j}].valid_until: not after valid_from"
                ));
            }
            out.push(Pinned {
                version: k.version,
                key,
                window,
            });
        }
        out.sort_by_key(|k| k.version);
        Ok(Self {
            federation,
            keys: out,
        })
    }

    /// The keys as a federation directory lists them ([`Self::from_directory`]'s inverse).
    pub fn to_directory(&self) -> Vec<crate::proto::v1::DirectoryOprfKey> {
        self.keys
            .iter()
            .map(|k| crate::proto::v1::DirectoryOprfKey {
                version: k.version,
                public_key: k.key.to_bytes().to_vec(),
                valid_from: k.window.valid_from.unix_timestamp(),
                valid_until: k.window.valid_until.map_or(0, |u| u.unix_timestamp()),
            })
            .collect()
    }

    /// Keys in use at `at` (usually one; two during a rotation's overlap).
    pub fn active(&self, at: OffsetDateTime) -> impl Iterator<Item = &Pinned> {
        self.keys.iter().filter(move |k| k.window.contains(at))
    }

    pub fn get(&self, version: u32) -> Option<&Pinned> {
        self.keys.iter().find(|k| k.version == version)
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.version).collect()
    }
}

const SECRET_HEADER: &str = "# CaseBridge OPRF key service keys. SECRET: only the key service (and its\n# replicas) hold this file (mode 0600); never a node. Generated by\n# `casebridge keyservice keys`.\n";
const PUBLIC_HEADER: &str = "# CaseBridge OPRF public keys, pinned by every node (`key_service.public_keys`\n# in node.toml). Not secret; distribute it with the federation CA.\n";

/// The KEK a secret key file names (relative to the file), opened.
fn kek_of(
    path: &Path,
    file: &KeyFile<SecretEntry>,
) -> Result<Option<std::sync::Arc<dyn Kek>>, KeyFileError> {
    let Some(kek) = &file.kek_file else {
        return Ok(None);
    };
    let kek = path.parent().unwrap_or(Path::new(".")).join(kek);
    crate::vault::load_kek(&kek)
        .map(Some)
        .map_err(|e| KeyFileError::file(path, format!("kek_file: {e}")))
}

/// Where a seed is sealed: its federation and version, so a sealed seed
/// copied to another entry or file does not open.
fn seed_place(federation: &FederationName, version: u32) -> (String, Vec<u8>) {
    (
        "oprf_seed".to_owned(),
        format!("{federation}/{version}").into_bytes(),
    )
}

/// The seed of entry `e`: opened under `kek` when the file has one.
fn seed_of(
    e: &SecretEntry,
    kek: Option<&dyn Kek>,
    federation: &FederationName,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let (tree, key) = seed_place(federation, e.version);
    let place = Place::Record {
        tree: &tree,
        key: &key,
    };
    match (kek, &e.seed, &e.sealed_seed) {
        (None, Some(seed), None) => {
            let seed = Zeroizing::new(B64.decode(seed.trim()).map_err(|_| "seed is not base64")?);
            if seed.len() != SEED_BYTES {
                return Err(format!("seed has {} bytes, not {SEED_BYTES}", seed.len()));
            }
            Ok(seed)
        }
        (Some(kek), None, Some(sealed)) => {
            let sealed = B64.decode(sealed.trim()).map_err(|_| "sealed_seed is not base64")?;
            let seed = kek.unwrap(place, &sealed).map_err(|e| format!("sealed_seed: {e}"))?;
            Ok(Zeroizing::new(seed.expose().to_vec()))
        }
        (Some(_), Some(_), _) => Err(
            "seed in clear in a file sealed under a KEK: seal it (`casebridge keyservice keys seal`)"
                .into(),
        ),
        (None, _, Some(_)) => Err("sealed_seed without kek_file: the file names no KEK".into()),
        _ => Err("an entry needs one of seed or sealed_seed".into()),
    }
}

/// A new random seed, as an entry writes it: in clear, or sealed under `kek`.
fn new_seed(
    kek: Option<&dyn Kek>,
    federation: &FederationName,
    version: u32,
) -> Result<(Option<String>, Option<String>), String> {
    let seed = Secret::random();
    let Some(kek) = kek else {
        return Ok((Some(B64.encode(seed.expose())), None));
    };
    let (tree, key) = seed_place(federation, version);
    let sealed = kek
        .wrap(
            Place::Record {
                tree: &tree,
                key: &key,
            },
            &seed,
        )
        .map_err(|e| e.to_string())?;
    Ok((None, Some(B64.encode(sealed))))
}

/// Writes a new secret key file with one key ([`FIRST_VERSION`]) valid from
/// now, its seed sealed under the KEK at `kek_file` when one is given
/// (the file then names it; a relative path is relative to the file);
/// never overwrites.
pub fn generate(
    path: &Path,
    federation: &FederationName,
    kek_file: Option<&Path>,
) -> Result<(), KeyFileError> {
    let mut file = KeyFile {
        federation: federation.clone(),
        kek_file: kek_file.map(Path::to_owned),
        keys: Vec::new(),
    };
    let kek = kek_of(path, &file)?;
    let (seed, sealed_seed) = new_seed(kek.as_deref(), federation, FIRST_VERSION)
        .map_err(|e| KeyFileError::key(path, FIRST_VERSION, e))?;
    file.keys.push(SecretEntry {
        version: FIRST_VERSION,
        seed,
        sealed_seed,
        valid_from: format_time(OffsetDateTime::now_utc()),
        valid_until: None,
    });
    keyfile::write(path, SECRET_HEADER, &file, false)
}

/// Seals every seed of the secret key file at `path` in clear under the
/// KEK at `kek_file` (relative to the file), in place (a crash leaves the old file or the new
/// one). Returns how many seeds it sealed.
pub fn seal(path: &Path, kek_file: &Path) -> Result<usize, KeyFileError> {
    SecretKeys::load(path)?; // validates the file, its permissions, its seeds
    let mut file: KeyFile<SecretEntry> = keyfile::read(path)?;
    if file.kek_file.is_some() {
        return Err(KeyFileError::file(
            path,
            "is sealed already (it names a kek_file)",
        ));
    }
    file.kek_file = Some(kek_file.to_owned());
    let kek = kek_of(path, &file)?.expect("a KEK just named");
    let federation = file.federation.clone();
    for e in &mut file.keys {
        let seed =
            seed_of(e, None, &federation).map_err(|r| KeyFileError::key(path, e.version, r))?;
        let secret = Secret::from_slice(&seed).expect("a checked 32-byte seed");
        let (tree, key) = seed_place(&federation, e.version);
        let sealed = kek
            .wrap(
                Place::Record {
                    tree: &tree,
                    key: &key,
                },
                &secret,
            )
            .map_err(|r| KeyFileError::key(path, e.version, r))?;
        (e.seed, e.sealed_seed) = (None, Some(B64.encode(sealed)));
    }
    keyfile::write(path, SECRET_HEADER, &file, true)?;
    Ok(file.keys.len())
}

/// Adds a key valid from `from` and ends every open-ended key `overlap`
/// after it. Publish the new public file to every node before `from`.
/// Returns the new version.
pub fn rotate(
    path: &Path,
    from: OffsetDateTime,
    overlap: time::Duration,
) -> Result<u32, KeyFileError> {
    SecretKeys::load(path)?; // validates the current file and its permissions
    let mut file: KeyFile<SecretEntry> = keyfile::read(path)?;
    let version = keyfile::end_open_keys(&mut file.keys, from + overlap);
    let kek = kek_of(path, &file)?;
    let (seed, sealed_seed) = new_seed(kek.as_deref(), &file.federation, version)
        .map_err(|e| KeyFileError::key(path, version, e))?;
    file.keys.push(SecretEntry {
        version,
        seed,
        sealed_seed,
        valid_from: format_time(from),
        valid_until: None,
    });
    keyfile::write(path, SECRET_HEADER, &file, true)?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds sealed under a KEK: a new file and a rotation write no seed in
    /// clear; sealing a clear file in place keeps its keys; the file opens
    /// only with its KEK, and a sealed seed moved to another version does
    /// not open.
    #[test]
    fn seeds_sealed_under_a_kek_are_nowhere_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let fed = FederationName::new("demo.cb").unwrap();
        let kek = dir.path().join("kek.toml");
        crate::vault::FileKek::create(&kek).unwrap();
        let sealed = dir.path().join("sealed.toml");
        generate(&sealed, &fed, Some(&kek)).unwrap();
        rotate(&sealed, OffsetDateTime::now_utc(), time::Duration::days(1)).unwrap();
        let text = std::fs::read_to_string(&sealed).unwrap();
        assert!(
            !text.contains("\nseed =") && text.contains("sealed_seed"),
            "{text}"
        );
        assert_eq!(SecretKeys::load(&sealed).unwrap().versions().len(), 2);

        let clear = dir.path().join("clear.toml");
        generate(&clear, &fed, None).unwrap();
        let before = SecretKeys::load(&clear).unwrap().public_file();
        assert_eq!(seal(&clear, &kek).unwrap(), 1);
        assert!(seal(&clear, &kek).is_err(), "sealed once");
        assert_eq!(SecretKeys::load(&clear).unwrap().public_file(), before);

        let moved = std::fs::read_to_string(&sealed).unwrap().replacen(
            "version = 1001",
            "version = 1009",
            1,
        );
        std::fs::remove_file(&sealed).unwrap();
        crate::secrets::create_new(&sealed, moved.as_bytes(), true).unwrap();
        let err = SecretKeys::load(&sealed).err().unwrap().to_string();
        assert!(err.contains("sealed_seed") && err.contains("1009"), "{err}");

        std::fs::remove_file(&kek).unwrap();
        crate::vault::FileKek::create(&kek).unwrap();
        let err = SecretKeys::load(&clear).err().unwrap().to_string();
        assert!(err.contains("but this node has KEK"), "another KEK: {err}");
    }

    #[test]
    fn generate_publish_rotate_and_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("oprf-secret.toml");
        let public = dir.path().join("oprf-keys.toml");
        let fed = FederationName::new("demo.cb").unwrap();
        generate(&secret, &fed, None).unwrap();
        assert!(generate(&secret, &fed, None).is_err(), "never overwrites");
        let keys = SecretKeys::load(&secret).unwrap();
        std::fs::write(&public, keys.public_file()).unwrap();
        let pinned = PinnedKeys::load(&public).unwrap();
        let now = OffsetDateTime::now_utc();
        let active: Vec<u32> = pinned.active(now).map(|k| k.version).collect();
        assert_eq!(active, [FIRST_VERSION]);
        assert_eq!(
            pinned.get(FIRST_VERSION).unwrap().key,
            keys.get(FIRST_VERSION).unwrap().0.public_key()
        );

        let v = rotate(&secret, now, time::Duration::days(30)).unwrap();
        assert_eq!(v, FIRST_VERSION + 1);
        let keys = SecretKeys::load(&secret).unwrap();
        std::fs::write(&public, keys.public_file()).unwrap();
        let pinned = PinnedKeys::load(&public).unwrap();
        let at = OffsetDateTime::now_utc();
        assert_eq!(
            pinned.active(at).map(|k| k.version).collect::<Vec<_>>(),
            [FIRST_VERSION, v],
            "overlap"
        );
        let later = at + time::Duration::days(31);
        assert_eq!(
            pinned.active(later).map(|k| k.version).collect::<Vec<_>>(),
            [v]
        );
        assert!(
            !std::fs::read_to_string(&public).unwrap().contains("seed"),
            "the public file holds no seed"
        );
    }

    #[test]
    fn keys_travel_in_a_directory_and_come_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("oprf-secret.toml");
        let fed = FederationName::new("demo.cb").unwrap();
        generate(&secret, &fed, None).unwrap();
        rotate(&secret, OffsetDateTime::now_utc(), time::Duration::days(30)).unwrap();
        let public = dir.path().join("oprf-keys.toml");
        std::fs::write(&public, SecretKeys::load(&secret).unwrap().public_file()).unwrap();
        let listed = PinnedKeys::load(&public).unwrap().to_directory();
        assert_eq!(listed.len(), 2);
        let back = PinnedKeys::from_directory(fed.clone(), &listed).unwrap();
        assert_eq!(back.to_directory(), listed, "nothing lost on the way");

        let mut bad = listed.clone();
        bad[1].public_key = vec![0xff; 32];
        let e = PinnedKeys::from_directory(fed.clone(), &bad).unwrap_err();
        assert!(e.starts_with("key_service.keys[1].public_key"), "{e}");
        let mut bad = listed.clone();
        bad[0].version = 3;
        let e = PinnedKeys::from_directory(fed.clone(), &bad).unwrap_err();
        assert!(e.starts_with("key_service.keys[0].version"), "{e}");
        let mut bad = listed;
        bad[0].valid_until = bad[0].valid_from;
        let e = PinnedKeys::from_directory(fed, &bad).unwrap_err();
        assert!(e.starts_with("key_service.keys[0].valid_until"), "{e}");
    }

    #[test]
    fn low_versions_and_readable_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("oprf-keys.toml");
        let key = ServerKey::derive(&[1u8; 32], "demo.cb", 1001).unwrap();
        let text = format!(
            "federation = \"demo.cb\"\n[[keys]]\nversion = 1\npublic_key = \"{}\"\nvalid_from = \"2026-01-01T00:00:00Z\"\n",
            B64.encode(key.public_key().to_bytes())
        );
        std::fs::write(&public, text).unwrap();
        let err = PinnedKeys::load(&public).unwrap_err().to_string();
        assert!(err.contains("start at 1001"), "{err}");
        let bad = "federation = \"demo.cb\"\n[[keys]]\nversion = 1001\npublic_key = \"AAAA\"\nvalid_from = \"2026-01-01T00:00:00Z\"\n";
        std::fs::write(&public, bad).unwrap();
        let err = PinnedKeys::load(&public).unwrap_err().to_string();
        assert!(err.contains("3 bytes, not 32"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let secret = dir.path().join("s.toml");
            generate(&secret, &FederationName::new("demo.cb").unwrap(), None).unwrap();
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = SecretKeys::load(&secret).err().unwrap().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }
}
