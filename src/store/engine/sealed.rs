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

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::{Backend, Db, EngineError, Options, Range, Read, Tree, Write};
use crate::vault::{self, EpochId, Epochs, Place, Secret};

/// Which values are sealed, and under which key.
pub trait Sealer: Send + Sync {
    /// Whether the values of tree `name` are sealed (decided once per tree).
    fn seals(&self, name: &str) -> bool;
    /// The key to seal a value under, and the id the sealed value names.
    fn sealing_key(&self) -> (Vec<u8>, Secret);
    /// The key a sealed value names.
    fn opening_key(&self, id: &[u8]) -> Result<Secret, EngineError>;
}

/// Every sealed value under the key of the epoch in force: what is
/// written during an epoch opens while that epoch is kept.
pub struct EpochSealer {
    epochs: RwLock<Epochs>,
    sealed: fn(&str) -> bool,
}

impl EpochSealer {
    pub fn new(epochs: Epochs, sealed: fn(&str) -> bool) -> Self {
        Self {
            epochs: RwLock::new(epochs),
            sealed,
        }
    }
}

impl EpochSealer {
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
        (self.sealed)(name)
    }

    fn sealing_key(&self) -> (Vec<u8>, Secret) {
        let epochs = self.epochs.read().unwrap_or_else(|p| p.into_inner());
        let (id, key) = epochs.current_key();
        (id.key_id(), key.clone())
    }

    fn opening_key(&self, id: &[u8]) -> Result<Secret, EngineError> {
        let epoch = EpochId::from_key_id(id)
            .ok_or_else(|| EngineError::Sealed("a value sealed under no epoch".into()))?;
        let epochs = self.epochs.read().unwrap_or_else(|p| p.into_inner());
        epochs
            .key(epoch)
            .cloned()
            .map_err(|e| EngineError::Sealed(e.to_string()))
    }
}

/// What the wrapper knows of each tree: its name, and whether it is sealed.
#[derive(Default)]
struct Names(RwLock<HashMap<Tree, (String, bool)>>);

struct Shared {
    sealer: Arc<dyn Sealer>,
    names: Names,
}

impl Shared {
    /// The tree's name when its values are sealed.
    fn sealed_name(&self, tree: Tree) -> Option<String> {
        let names = self.names.0.read().unwrap_or_else(|p| p.into_inner());
        names
            .get(&tree)
            .and_then(|(name, sealed)| sealed.then(|| name.clone()))
    }

    fn seal(&self, name: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        let (id, secret) = self.sealer.sealing_key();
        vault::seal(&secret, &id, Place::Record { tree: name, key }, value)
    }

    fn open(&self, name: &str, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, EngineError> {
        let place = Place::Record { tree: name, key };
        let refused = |e: vault::VaultError| {
            EngineError::Sealed(format!(
                "tree {name}, key {}: {e}",
                crate::text::hex(&key[..key.len().min(48)])
            ))
        };
        let id = vault::peek_key_id(sealed).map_err(refused)?;
        let secret = self.sealer.opening_key(id)?;
        vault::open(&secret, place, sealed).map_err(refused)
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
        Ok(Db::open(dir, options)?.sealed_by(sealer))
    }

    /// This database with the trees `sealer` names sealed.
    fn sealed_by(self, sealer: Arc<dyn Sealer>) -> Self {
        Self {
            backend: Arc::new(Sealed {
                inner: self.backend,
                shared: Arc::new(Shared {
                    sealer,
                    names: Names::default(),
                }),
            }),
        }
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
            inner: self.inner.snapshot(),
            shared: self.shared.clone(),
        })
    }

    fn write(&self, body: &mut dyn FnMut(&mut dyn Write) -> bool) -> Result<(), EngineError> {
        let shared = self.shared.clone();
        self.inner.write(&mut |w| {
            body(&mut Sealing {
                inner: w,
                shared: &shared,
            })
        })
    }

    fn sync(&self) -> Result<(), EngineError> {
        self.inner.sync()
    }

    fn disk_bytes(&self) -> Result<u64, EngineError> {
        self.inner.disk_bytes()
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
        (Some(v), Some(name)) => shared.open(&name, key, &v).map(Some),
        (value, _) => Ok(value),
    }
}

fn range(
    view: &dyn Read,
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
                let value = shared.open(&name, &key, &value)?;
                Ok((key, value))
            }))
        }
    }
}

struct Opening {
    inner: Box<dyn Read + Send + Sync>,
    shared: Arc<Shared>,
}

impl Read for Opening {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        get(&*self.inner, &self.shared, tree, key)
    }

    fn range(&self, tree: Tree, low: Bound<&[u8]>, high: Bound<&[u8]>) -> Range {
        range(&*self.inner, &self.shared, tree, low, high)
    }
}

struct Sealing<'a> {
    inner: &'a mut dyn Write,
    shared: &'a Arc<Shared>,
}

impl Read for Sealing<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        get(&*self.inner, self.shared, tree, key)
    }

    fn range(&self, tree: Tree, low: Bound<&[u8]>, high: Bound<&[u8]>) -> Range {
        range(&*self.inner, self.shared, tree, low, high)
    }
}

impl Write for Sealing<'_> {
    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        match self.shared.sealed_name(tree) {
            Some(name) => {
                let sealed = self.shared.seal(&name, key, value);
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
        let sealer = Arc::new(EpochSealer::new(epochs(dir.path()), |_| true));
        let db = raw_db.clone().sealed_by(sealer);
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
        let sealer = Arc::new(EpochSealer::new(epochs(dir.path()), |_| true));
        let db = raw_db.sealed_by(sealer.clone());
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
