//! The embedded engine: fjall 3 (an LSM tree with a write-ahead journal), in
//! its single-writer transactional mode.
//!
//! - Trees are fjall keyspaces.
//! - A write transaction holds fjall's single-writer lock from start to
//!   commit, and its reads and range scans see its own writes; nothing else
//!   commits meanwhile, so a body runs once and never conflicts.
//! - Commits go to the journal's buffer only (`manual_journal_persist`):
//!   [`Db::sync`](super::Db::sync) is `persist(SyncAll)`, an `fsync` of the
//!   active journal under the journal's lock, so it covers every commit made
//!   before it from every thread. Sealed journals, tables and their
//!   directories are synced by fjall itself when it writes them.
//! - After a failed sync fjall poisons the database: every later write fails
//!   until the process restarts, which is what we want (we cannot know what
//!   a failed fsync lost).
//! - It is the default engine: [`Db::open`](super::Db::open) and
//!   [`Db::exists`](super::Db::exists) are written here, so the interface in
//!   [`super`] names no engine.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

use fjall::{
    KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace,
};

use super::{Backend, Db, EngineError, Options, Range, Read, Tree, Write};

/// The journal's cap. fjall's minimum; a journal pinned by a rarely written
/// tree (fjall issue #288) makes fjall flush that tree's memtable once the
/// cap is reached, so this bounds both the journal on disk and replay time
/// at open.
const MAX_JOURNAL_BYTES: u64 = 64 << 20;

impl From<fjall::Error> for EngineError {
    fn from(e: fjall::Error) -> Self {
        match e {
            fjall::Error::Locked => Self::Locked,
            fjall::Error::Poisoned => Self::Poisoned,
            other => Self::Io(other.to_string()),
        }
    }
}

/// How long [`Db::open`] waits for another holder of the lock to let go: a
/// previous instance that is still exiting (a supervisor restarting the
/// process, or a node restarted inside one process whose last tasks are
/// still unwinding) holds it for a moment.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// fjall is the default engine: `Db` opens it.
impl Db {
    /// Opens (or creates) the database in `dir` with the default engine,
    /// retrying a held lock for a bounded time.
    pub fn open(dir: &Path, options: &Options) -> Result<Self, EngineError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match Fjall::open(dir, options) {
                Err(EngineError::Locked) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => {
                    return other.map(|b| Self {
                        backend: Arc::new(b),
                    });
                }
            }
        }
    }

    /// Whether `dir` holds a database of the default engine.
    pub fn exists(dir: &Path) -> bool {
        Fjall::exists(dir)
    }
}

type Trees = std::sync::Arc<RwLock<Vec<(String, SingleWriterTxKeyspace)>>>;

pub(super) struct Fjall {
    db: SingleWriterTxDatabase,
    write_buffer_bytes: u64,
    /// Keyspaces by [`Tree`] index; only ever appended to.
    trees: Trees,
}

impl Fjall {
    /// fjall writes a `version` file and a `keyspaces` folder at creation.
    pub(super) fn exists(dir: &Path) -> bool {
        dir.join("version").is_file() && dir.join("keyspaces").is_dir()
    }

    pub(super) fn open(dir: &Path, options: &Options) -> Result<Self, EngineError> {
        let db = SingleWriterTxDatabase::builder(dir)
            .cache_size(options.cache_bytes)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .manual_journal_persist(true)
            .open()?;
        Ok(Self {
            db,
            write_buffer_bytes: options.write_buffer_bytes,
            trees: Trees::default(),
        })
    }
}

fn keyspace(trees: &Trees, tree: Tree) -> SingleWriterTxKeyspace {
    let trees = trees.read().unwrap_or_else(|p| p.into_inner());
    trees[tree.0].1.clone()
}

fn collect(iter: fjall::Iter) -> Range {
    Box::new(iter.map(|guard| {
        let (k, v) = guard.into_inner()?;
        Ok((k.to_vec(), v.to_vec()))
    }))
}

fn owned(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether `low..high` holds no key at all (fjall wants a well-formed range).
fn empty(low: Bound<&[u8]>, high: Bound<&[u8]>) -> bool {
    match (low, high) {
        (Bound::Included(l), Bound::Included(h)) => l > h,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(h))
        | (Bound::Excluded(l), Bound::Included(h)) => l >= h,
        _ => false,
    }
}

fn range_of(
    view: &impl Readable,
    ks: &SingleWriterTxKeyspace,
    low: Bound<&[u8]>,
    high: Bound<&[u8]>,
) -> Range {
    if empty(low, high) {
        return Box::new(std::iter::empty());
    }
    collect(view.range(ks, (owned(low), owned(high))))
}

impl Backend for Fjall {
    fn open_tree(&self, name: &str) -> Result<Tree, EngineError> {
        let mut trees = self.trees.write().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = trees.iter().position(|(n, _)| n == name) {
            return Ok(Tree(i));
        }
        let size = self.write_buffer_bytes;
        let ks = self.db.keyspace(name, || {
            KeyspaceCreateOptions::default().max_memtable_size(size)
        })?;
        trees.push((name.to_owned(), ks));
        Ok(Tree(trees.len() - 1))
    }

    fn tree_names(&self) -> Vec<String> {
        self.db
            .list_keyspace_names()
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    fn snapshot(&self) -> Box<dyn Read + Send + Sync> {
        Box::new(View {
            snapshot: self.db.read_tx(),
            trees: self.trees.clone(),
        })
    }

    fn write(&self, body: &mut dyn FnMut(&mut dyn Write) -> bool) -> Result<(), EngineError> {
        let mut tx = TxView {
            tx: self.db.write_tx(),
            trees: &self.trees,
        };
        if body(&mut tx) {
            tx.tx.commit()?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), EngineError> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    fn disk_bytes(&self) -> Result<u64, EngineError> {
        Ok(self.db.disk_space()?)
    }
}

struct View {
    snapshot: fjall::Snapshot,
    trees: Trees,
}

impl Read for View {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let ks = keyspace(&self.trees, tree);
        Ok(self.snapshot.get(&ks, key)?.map(|v| v.to_vec()))
    }

    fn range(&self, tree: Tree, low: Bound<&[u8]>, high: Bound<&[u8]>) -> Range {
        range_of(&self.snapshot, &keyspace(&self.trees, tree), low, high)
    }
}

struct TxView<'a> {
    tx: fjall::SingleWriterWriteTx<'a>,
    trees: &'a Trees,
}

impl Read for TxView<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let ks = keyspace(self.trees, tree);
        Ok(self.tx.get(&ks, key)?.map(|v| v.to_vec()))
    }

    fn range(&self, tree: Tree, low: Bound<&[u8]>, high: Bound<&[u8]>) -> Range {
        range_of(&self.tx, &keyspace(self.trees, tree), low, high)
    }
}

impl Write for TxView<'_> {
    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        let ks = keyspace(self.trees, tree);
        self.tx.insert(&ks, key, value);
        Ok(())
    }

    fn remove(&mut self, tree: Tree, key: &[u8]) -> Result<(), EngineError> {
        let ks = keyspace(self.trees, tree);
        self.tx.remove(&ks, key);
        Ok(())
    }
}
