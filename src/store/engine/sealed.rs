//! Sealing at the engine boundary: a backend wrapper that seals the values
//! of the trees holding case data before they reach the engine, and opens
//! them on the way back (docs/encryption.md).
//!
//! Keys stay in clear, so ranges keep their byte order and every other
//! promise of the contract holds unchanged (the conformance suite runs
//! over this wrapper too). Each value is sealed for its place — its tree
//! and its key — so a value copied onto another record does not open; the
//! [`Sealer`] decides which trees are sealed and under which key, and
//! finds a key again by the id the sealed value names.
//!
//! A record that can be purged (an alert, a release) is sealed under a
//! **data key** of its owner instead, kept in the [`DATA_KEYS`] tree and
//! itself sealed there like any value. A purge removes the data key in the
//! transaction that empties the record: every older copy of the record —
//! in an old segment, in a backup — then names a key that no longer
//! exists, and once the epoch (or backup key) that wrapped the data key is
//! destroyed, no copy of the data key opens either.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

use zeroize::Zeroizing;

use super::{Backend, Db, EngineError, Options, Range, Read, Tree, Write};
use crate::vault::{self, Epochs, Place, Secret};

/// The tree of data keys: the slot of an owner → its generation and key.
pub const DATA_KEYS: &str = "data_keys";

/// Which values are sealed, and under which key.
pub trait Sealer: Send + Sync {
    /// Whether the values of tree `name` are sealed (decided once per tree).
    fn seals(&self, name: &str) -> bool;
    /// Who owns the record `key` of tree `name`, when it is sealed under
    /// a data key of its own (something a purge destroys).
    fn owner(&self, name: &str, key: &[u8]) -> Option<Vec<u8>>;
    /// The key to seal a value under, and the id the sealed value names.
    fn sealing_key(&self) -> (Vec<u8>, Secret);
    /// The key a sealed value names.
    fn opening_key(&self, id: &[u8]) -> Result<Secret, EngineError>;
}

/// Every sealed value under the key of the epoch in force (or its
/// owner's data key): what is written during an epoch opens while that
/// epoch is kept, or until the next one re-wraps it.
pub struct EpochSealer {
    epochs: RwLock<Epochs>,
    sealed: fn(&str) -> bool,
    owned: fn(&str, &[u8]) -> Option<Vec<u8>>,
}

impl EpochSealer {
    pub fn new(
        epochs: Epochs,
        sealed: fn(&str) -> bool,
        owned: fn(&str, &[u8]) -> Option<Vec<u8>>,
    ) -> Self {
        Self {
            epochs: RwLock::new(epochs),
            sealed,
            owned,
        }
    }

    /// Reads the epochs (shared with every value being sealed or opened).
    pub fn epochs(&self) -> std::sync::RwLockReadGuard<'_, Epochs> {
        self.epochs.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the epochs: start the next one, destroy old ones. Values
    /// sealed meanwhile wait for the change, never see half of it.
    pub fn epochs_mut(&self) -> std::sync::RwLockWriteGuard<'_, Epochs> {
        self.epochs.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sealer for EpochSealer {
    fn seals(&self, name: &str) -> bool {
        name == DATA_KEYS || (self.sealed)(name)
    }

    fn owner(&self, name: &str, key: &[u8]) -> Option<Vec<u8>> {
        (self.owned)(name, key)
    }

    fn sealing_key(&self) -> (Vec<u8>, Secret) {
        let epochs = self.epochs();
        let (id, key) = epochs.current_key();
        (id.key_id(), key.clone())
    }

    fn opening_key(&self, id: &[u8]) -> Result<Secret, EngineError> {
        self.epochs()
            .key_by_id(id)
            .cloned()
            .map_err(|e| EngineError::Sealed(e.to_string()))
    }
}

/// Where an owner's data key is kept: a digest of the owner, so the id a
/// sealed value names stays short whatever the owner's length.
pub fn data_key_slot(owner: &[u8]) -> [u8; 16] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"casebridge/data-key/v1\0");
    ctx.update(owner);
    let digest = ctx.finish();
    digest.as_ref()[..16]
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// A data key's id in a sealed value: `d`, its slot, its generation (a
/// new key for the same owner after a purge has another generation).
fn data_key_id(slot: &[u8; 16], generation: u32) -> Vec<u8> {
    let mut id = Vec::with_capacity(21);
    id.push(b'd');
    id.extend_from_slice(slot);
    id.extend_from_slice(&generation.to_be_bytes());
    id
}

/// The data key a sealed value (as on disk) names: its slot and
/// generation; `None` for a value under an epoch or backup key.
pub fn data_key_of(sealed: &[u8]) -> Option<([u8; 16], u32)> {
    parse_data_key_id(vault::peek_key_id(sealed).ok()?)
}

fn parse_data_key_id(id: &[u8]) -> Option<([u8; 16], u32)> {
    let rest = id.strip_prefix(b"d").filter(|r| r.len() == 20)?;
    let slot = rest[..16].try_into().ok()?;
    let generation = u32::from_be_bytes(rest[16..].try_into().ok()?);
    Some((slot, generation))
}

/// Data keys made in the transaction under way, by slot.
type Made = HashMap<[u8; 16], (u32, Secret)>;

/// Where a value being opened finds the data key a slot holds.
type DataKeys<'a> = dyn Fn(&[u8; 16]) -> Result<Option<(u32, Secret)>, EngineError> + 'a;

/// The same, for a range that outlives the call making it.
type RangeKeys = Arc<dyn Fn(&[u8; 16]) -> Result<Option<(u32, Secret)>, EngineError> + Send + Sync>;

/// What the wrapper knows of each tree: its name, and whether it is sealed.
#[derive(Default)]
struct Names(RwLock<HashMap<Tree, (String, bool)>>);

struct Shared {
    sealer: Arc<dyn Sealer>,
    names: Names,
    data_keys: Tree,
    /// The key of [`Db::keyed_digest`], once read or made.
    hash_key: std::sync::OnceLock<Secret>,
}

/// The owner of the keyed-hash key among the data keys: never purged,
/// re-wrapped at every epoch, copied into backups like the others.
const HASH_KEY_OWNER: &[u8] = b"store\0keyed-hash";

fn named(name: &str, key: &[u8], e: impl std::fmt::Display) -> String {
    format!(
        "tree {name}, key {}: {e}",
        crate::text::hex(&key[..key.len().min(48)])
    )
}

impl Shared {
    /// The tree's name when its values are sealed.
    fn sealed_name(&self, tree: Tree) -> Option<String> {
        let names = self.names.0.read().unwrap_or_else(|p| p.into_inner());
        names
            .get(&tree)
            .and_then(|(name, sealed)| sealed.then(|| name.clone()))
    }

    /// The data key in `slot` as `view` holds it: its generation and key.
    fn data_key(
        &self,
        view: &dyn Read,
        slot: &[u8; 16],
    ) -> Result<Option<(u32, Secret)>, EngineError> {
        let Some(sealed) = view.get(self.data_keys, slot)? else {
            return Ok(None);
        };
        // Opened under the epoch (or backup) key it names, never under
        // another data key: a crafted entry cannot send this round a loop.
        let id = vault::peek_key_id(&sealed)
            .map_err(|e| EngineError::Sealed(named(DATA_KEYS, slot, e)))?;
        let key = self.sealer.opening_key(id)?;
        let plain = Zeroizing::new(self.open_with(&key, DATA_KEYS, slot, &sealed)?);
        match (plain.get(..4), plain.get(4..).and_then(Secret::from_slice)) {
            (Some(g), Some(dk)) => Ok(Some((
                u32::from_be_bytes(g.try_into().expect("4 bytes")),
                dk,
            ))),
            _ => Err(EngineError::Sealed(named(
                DATA_KEYS,
                slot,
                "not a data key",
            ))),
        }
    }

    /// The data key of `owner` in the transaction `w`, made (and noted in
    /// `made`) when it has none.
    fn data_key_for(
        &self,
        w: &mut dyn Write,
        made: &mut Made,
        owner: &[u8],
    ) -> Result<(Vec<u8>, Secret), EngineError> {
        let slot = data_key_slot(owner);
        if let Some((generation, dk)) = self.data_key(&*w, &slot)? {
            return Ok((data_key_id(&slot, generation), dk));
        }
        let mut generation = [0u8; 4];
        aws_lc_rs::rand::fill(&mut generation).expect("the system RNG is available");
        let generation = u32::from_be_bytes(generation);
        let dk = Secret::random();
        let mut plain = Zeroizing::new(generation.to_be_bytes().to_vec());
        plain.extend_from_slice(dk.expose());
        let sealed = self.seal_epoch(DATA_KEYS, &slot, &plain);
        w.insert(self.data_keys, &slot, &sealed)?;
        made.insert(slot, (generation, dk.clone()));
        Ok((data_key_id(&slot, generation), dk))
    }

    fn seal_epoch(&self, name: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        let (id, secret) = self.sealer.sealing_key();
        vault::seal(&secret, &id, Place::Record { tree: name, key }, value)
    }

    /// `value` sealed for its place, under its owner's data key if it has one.
    fn seal(
        &self,
        w: &mut dyn Write,
        made: &mut Made,
        name: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>, EngineError> {
        let Some(owner) = self.sealer.owner(name, key) else {
            return Ok(self.seal_epoch(name, key, value));
        };
        let (id, dk) = self.data_key_for(w, made, &owner)?;
        Ok(vault::seal(
            &dk,
            &id,
            Place::Record { tree: name, key },
            value,
        ))
    }

    fn open_with(
        &self,
        secret: &Secret,
        name: &str,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, EngineError> {
        vault::open(secret, Place::Record { tree: name, key }, sealed)
            .map_err(|e| EngineError::Sealed(named(name, key, e)))
    }

    /// Opens a value, finding a data key it names through `keys`.
    fn open(
        &self,
        keys: &DataKeys<'_>,
        name: &str,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, EngineError> {
        let id =
            vault::peek_key_id(sealed).map_err(|e| EngineError::Sealed(named(name, key, e)))?;
        let secret = match parse_data_key_id(id) {
            Some((slot, generation)) => match keys(&slot)? {
                Some((g, dk)) if g == generation => dk,
                _ => {
                    return Err(EngineError::Shredded(named(
                        name,
                        key,
                        "sealed under a purged data key",
                    )));
                }
            },
            None => self
                .sealer
                .opening_key(id)
                .map_err(|e| EngineError::Sealed(named(name, key, e)))?,
        };
        self.open_with(&secret, name, key, sealed)
    }
}

/// A backend whose sealed trees hold only sealed values.
pub(super) struct Sealed {
    inner: Arc<dyn Backend>,
    shared: Arc<Shared>,
}

impl Db {
    /// Opens the default engine in `dir` with the values of the trees
    /// `sealer` names sealed.
    pub fn open_sealed(
        dir: &Path,
        options: &Options,
        sealer: Arc<dyn Sealer>,
    ) -> Result<Self, EngineError> {
        Db::open(dir, options)?.sealed_by(sealer)
    }

    /// This database with the trees `sealer` names sealed.
    fn sealed_by(self, sealer: Arc<dyn Sealer>) -> Result<Self, EngineError> {
        let data_keys = self.backend.open_tree(DATA_KEYS)?;
        let names = Names::default();
        names
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(data_keys, (DATA_KEYS.to_owned(), true));
        Ok(Self {
            backend: Arc::new(Sealed {
                inner: self.backend,
                shared: Arc::new(Shared {
                    sealer,
                    names,
                    data_keys,
                    hash_key: std::sync::OnceLock::new(),
                }),
            }),
        })
    }
}

impl Backend for Sealed {
    fn open_tree(&self, name: &str) -> Result<Tree, EngineError> {
        let tree = self.inner.open_tree(name)?;
        let sealed = self.shared.sealer.seals(name);
        let mut names = self
            .shared
            .names
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner());
        names.insert(tree, (name.to_owned(), sealed));
        Ok(tree)
    }

    fn tree_names(&self) -> Vec<String> {
        self.inner.tree_names()
    }

    fn snapshot(&self) -> Box<dyn Read + Send + Sync> {
        Box::new(Opening {
            inner: Arc::from(self.inner.snapshot()),
            shared: self.shared.clone(),
        })
    }

    fn write(&self, body: &mut dyn FnMut(&mut dyn Write) -> bool) -> Result<(), EngineError> {
        let shared = self.shared.clone();
        let backend = self.inner.clone();
        self.inner.write(&mut |w| {
            body(&mut Sealing {
                inner: w,
                shared: &shared,
                backend: &backend,
                made: Made::new(),
            })
        })
    }

    fn sync(&self) -> Result<(), EngineError> {
        self.inner.sync()
    }

    fn disk_bytes(&self) -> Result<u64, EngineError> {
        self.inner.disk_bytes()
    }

    fn unsealed(&self) -> Option<Arc<dyn Backend>> {
        Some(self.inner.clone())
    }

    fn keyed_digest(&self, data: &[u8]) -> Result<Option<[u8; 32]>, EngineError> {
        let key = match self.shared.hash_key.get() {
            Some(key) => key,
            None => {
                let key = self.hash_key()?;
                self.shared.hash_key.get_or_init(|| key)
            }
        };
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.expose());
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
        ctx.update(b"casebridge/keyed-hash/v1\0");
        ctx.update(data);
        let tag = ctx.sign();
        Ok(Some(
            tag.as_ref().try_into().expect("HMAC-SHA-256 is 32 bytes"),
        ))
    }
}

impl Sealed {
    /// The keyed-hash key, read from the data keys or made there (in the
    /// engine's own transaction: data keys are read and written sealed).
    fn hash_key(&self) -> Result<Secret, EngineError> {
        let mut found = None;
        self.inner.write(&mut |w| {
            let mut made = Made::new();
            let key = self.shared.data_key_for(w, &mut made, HASH_KEY_OWNER);
            let ok = key.is_ok();
            found = Some(key.map(|(_, k)| k));
            ok
        })?;
        found.expect("the body ran")
    }
}

/// Opens what `shared` sealed, reading through `view`.
fn get(
    view: &dyn Read,
    shared: &Shared,
    tree: Tree,
    key: &[u8],
) -> Result<Option<Vec<u8>>, EngineError> {
    let value = view.get(tree, key)?;
    match (value, shared.sealed_name(tree)) {
        (Some(v), Some(name)) => {
            // A point read finds data keys in the same view (a transaction
            // sees the keys it made).
            let keys = |slot: &[u8; 16]| shared.data_key(view, slot);
            shared.open(&keys, &name, key, &v).map(Some)
        }
        (value, _) => Ok(value),
    }
}

/// The entries of `tree` in `view`, opened; data keys are looked up with
/// `keys`, which lives as long as the range does.
fn range(
    view: &dyn Read,
    keys: RangeKeys,
    shared: &Arc<Shared>,
    tree: Tree,
    low: Bound<&[u8]>,
    high: Bound<&[u8]>,
) -> Range {
    let entries = view.range(tree, low, high);
    match shared.sealed_name(tree) {
        None => entries,
        Some(name) => {
            let shared = shared.clone();
            Box::new(entries.map(move |item| {
                let (key, value) = item?;
                let value = shared.open(&*keys, &name, &key, &value)?;
                Ok((key, value))
            }))
        }
    }
}

struct Opening {
    inner: Arc<dyn Read + Send + Sync>,
    shared: Arc<Shared>,
}

impl Read for Opening {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        get(&*self.inner, &self.shared, tree, key)
    }

    fn range(&self, tree: Tree, low: Bound<&[u8]>, high: Bound<&[u8]>) -> Range {
        let (view, shared) = (self.inner.clone(), self.shared.clone());
        let keys: RangeKeys = Arc::new(move |slot| shared.data_key(&*view, slot));
        range(&*self.inner, keys, &self.shared, tree, low, high)
    }
}

struct Sealing<'a> {
    inner: &'a mut dyn Write,
    shared: &'a Arc<Shared>,
    backend: &'a Arc<dyn Backend>,
    made: Made,
}

impl Read for Sealing<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        get(&*self.inner, self.shared, tree, key)
    }

    /// A range cannot borrow the transaction it may outlive, so it finds
    /// data keys among those this transaction made, then in what is
    /// committed.
    /// The committed view is taken only when a value names a data key,
    /// so a range over a tree of epoch-sealed or clear values costs none.
    fn range(&self, tree: Tree, low: Bound<&[u8]>, high: Bound<&[u8]>) -> Range {
        if self.shared.sealed_name(tree).is_none() {
            return self.inner.range(tree, low, high);
        }
        let committed = std::sync::OnceLock::<Box<dyn Read + Send + Sync>>::new();
        let (made, shared, backend) =
            (self.made.clone(), self.shared.clone(), self.backend.clone());
        let keys: RangeKeys = Arc::new(move |slot| match made.get(slot) {
            Some(k) => Ok(Some(k.clone())),
            None => shared.data_key(&**committed.get_or_init(|| backend.snapshot()), slot),
        });
        range(&*self.inner, keys, self.shared, tree, low, high)
    }
}

impl Write for Sealing<'_> {
    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        match self.shared.sealed_name(tree) {
            Some(name) => {
                let sealed =
                    self.shared
                        .seal(&mut *self.inner, &mut self.made, &name, key, value)?;
                self.inner.insert(tree, key, &sealed)
            }
            None => self.inner.insert(tree, key, value),
        }
    }

    fn remove(&mut self, tree: Tree, key: &[u8]) -> Result<(), EngineError> {
        self.inner.remove(tree, key)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Reads;
    use super::super::conformance::sealed_engine;
    use super::*;

    fn files(dir: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files(&path));
            } else {
                out.push(std::fs::read(&path).unwrap());
            }
        }
        out
    }

    /// What a sealed tree holds is on disk only sealed, after a sync and
    /// after a clean close; it reads back whole, through gets and ranges.
    #[test]
    fn no_value_of_a_sealed_tree_reaches_the_disk_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let canary = b"Ioana Popescu, +40 721 555 013, RO49AAAA1B31007593840000";
        {
            let db = sealed_engine(dir.path());
            let t = db.tree("alerts").unwrap();
            db.transaction(|tx| {
                for i in 0u32..200 {
                    let mut v = canary.to_vec();
                    v.extend_from_slice(&i.to_be_bytes());
                    tx.insert(t, i.to_be_bytes(), v)?;
                }
                Ok::<_, EngineError>(())
            })
            .unwrap();
            db.sync().unwrap();
            let back: Vec<_> = db.range::<&[u8]>(t, ..).map(|e| e.unwrap()).collect();
            assert_eq!(back.len(), 200);
            assert!(back[7].1.starts_with(canary));
        }
        let db = sealed_engine(dir.path());
        let t = db.tree("alerts").unwrap();
        assert!(
            db.get(t, 3u32.to_be_bytes())
                .unwrap()
                .unwrap()
                .starts_with(canary)
        );
        drop(db);
        for bytes in files(dir.path()) {
            assert!(
                !bytes.windows(13).any(|w| w == &canary[..13]),
                "a name in clear on disk"
            );
        }
    }

    /// A sealed value copied onto another key does not open: the read
    /// fails naming the tree and the key, and nothing panics.
    #[test]
    fn a_value_moved_to_another_record_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let raw_db = super::super::conformance::default_engine(&dir.path().join("db"));
        let sealer = Arc::new(EpochSealer::new(epochs(dir.path()), |_| true, |_, _| None));
        let db = raw_db.clone().sealed_by(sealer).unwrap();
        let t = db.tree("alerts").unwrap();
        db.transaction(|tx| tx.insert(t, b"alert-a", b"the narrative of a"))
            .unwrap();
        // The sealed bytes, as the engine below holds them, copied.
        let raw = raw_db.get(t, b"alert-a").unwrap().unwrap();
        raw_db
            .transaction(|tx| tx.insert(t, b"alert-b", &raw))
            .unwrap();
        let err = db.get(t, b"alert-b").unwrap_err();
        assert!(matches!(err, EngineError::Sealed(_)), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("tree alerts") && message.contains(&crate::text::hex(b"alert-b")),
            "{message}"
        );
        assert_eq!(
            db.get(t, b"alert-a").unwrap().unwrap(),
            b"the narrative of a"
        );
        let all: Vec<_> = db.snapshot().range::<&[u8]>(t, ..).collect();
        assert!(all[1].is_err(), "a range reports it too");
    }

    /// A record under its owner's data key: once the key is destroyed and
    /// the record emptied, a copy of the old record (an old segment, a
    /// backup) names a key that is gone and does not open; the emptied
    /// record opens under its new key.
    #[test]
    fn a_destroyed_data_key_takes_every_copy_of_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let raw_db = super::super::conformance::default_engine(&dir.path().join("db"));
        let owned = |name: &str, key: &[u8]| (name == "alerts").then(|| key.to_vec());
        let sealer = Arc::new(EpochSealer::new(epochs(dir.path()), |_| true, owned));
        let db = raw_db.clone().sealed_by(sealer).unwrap();
        let (t, keys) = (db.tree("alerts").unwrap(), db.tree(DATA_KEYS).unwrap());
        db.transaction(|tx| tx.insert(t, b"a-1", b"the narrative"))
            .unwrap();
        let old = raw_db.get(t, b"a-1").unwrap().unwrap();
        assert!(data_key_of(&old).is_some(), "sealed under a data key");
        db.transaction(|tx| {
            tx.remove(keys, data_key_slot(b"a-1"))?;
            tx.insert(t, b"a-1", b"purged")
        })
        .unwrap();
        assert_eq!(db.get(t, b"a-1").unwrap().unwrap(), b"purged");
        raw_db.transaction(|tx| tx.insert(t, b"a-1", &old)).unwrap();
        let err = db.get(t, b"a-1").unwrap_err();
        assert!(matches!(err, EngineError::Shredded(_)), "{err}");
        assert!(err.to_string().contains("tree alerts"), "{err}");
    }

    fn epochs(dir: &Path) -> Epochs {
        let kek = crate::vault::FileKek::create(&dir.join("kek.toml")).unwrap();
        Epochs::open(&dir.join("keys"), Arc::new(kek)).unwrap()
    }

    /// Once the epoch a value was sealed in is destroyed, the value is
    /// gone for good: the read names the epoch.
    #[test]
    fn a_value_of_a_destroyed_epoch_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let raw_db = super::super::conformance::default_engine(&dir.path().join("db"));
        let sealer = Arc::new(EpochSealer::new(epochs(dir.path()), |_| true, |_, _| None));
        let db = raw_db.sealed_by(sealer.clone()).unwrap();
        let t = db.tree("alerts").unwrap();
        db.transaction(|tx| tx.insert(t, b"old", b"purged content"))
            .unwrap();
        let next = sealer.epochs.write().unwrap().advance().unwrap();
        db.transaction(|tx| tx.insert(t, b"new", b"kept content"))
            .unwrap();
        sealer.epochs.write().unwrap().destroy_before(next).unwrap();
        assert_eq!(db.get(t, b"new").unwrap().unwrap(), b"kept content");
        let err = db.get(t, b"old").unwrap_err().to_string();
        assert!(err.contains("epoch 1 is not kept"), "{err}");
    }
}
