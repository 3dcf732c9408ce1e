//! The narrow storage interface the store is written against.
//!
//! Everything `store` needs from a storage engine is here, and nothing more:
//! a database of named trees (ordered byte keys → byte values), read views
//! (point reads and ordered range scans over one consistent snapshot), write
//! transactions that can read, write and range-scan, see their own writes,
//! and commit atomically across trees, and a durable [`Db::sync`] that covers
//! every transaction committed before it ([`Db`], [`Tree`], [`Snapshot`],
//! [`Tx`]). The typed `Store` operations are built on these; nothing
//! outside `store` learns which engine runs below.
//!
//! The contract a backend must keep (checked by the `conformance` suite,
//! a test module here):
//! - **Atomic across trees**: a transaction's writes all become visible at
//!   its commit, or none do (an error from the body rolls everything back),
//!   also after a crash.
//! - **Read your writes**: inside a transaction, point reads and range scans
//!   see the transaction's own inserts and removals.
//! - **Serialized writers**: write transactions never interleave, so a body
//!   runs exactly once (no conflict retries) and may read-modify-write freely.
//! - **Byte order**: ranges come back in ascending byte order of their keys,
//!   and in reverse from the back.
//! - **Snapshots**: a read view sees exactly the transactions committed
//!   before it was taken, whatever commits meanwhile.
//! - **Crash consistency**: after a kill -9, reopening finds a prefix of the
//!   committed transactions, each whole, and at least everything a completed
//!   [`Db::sync`] covered.
//! - **Real syncs**: [`Db::sync`] returns only after an `fsync`/`fdatasync`
//!   that makes every earlier commit durable against power loss. Commits
//!   alone need not be durable; the store's group commit calls `sync` once
//!   for many writers and acknowledges nothing before it returns.
//!
//! Why an interface and not the engine's API directly: the engine has changed
//! once (sled 0.34, whose flush never issued a real sync, to fjall), and a
//! PostgreSQL backend for agencies that want replication is expected to come
//! later behind the same contract. Iterators are `'static` (they own their
//! snapshot), so reads never borrow the database.

mod fjall;
pub mod sealed;

#[cfg(test)]
pub(crate) mod conformance;

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use thiserror::Error;

/// What the engine reports. Opaque on purpose: callers decide by kind, never
/// by engine-specific detail, which is kept in the message for the log.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Another process (or an instance still closing) holds the database.
    #[error("the database is locked by another process")]
    Locked,
    /// A write or sync failed earlier (for example the disk filled up): the
    /// engine refuses every later write until the process restarts.
    #[error("the database refuses writes after an earlier I/O failure; restart the node")]
    Poisoned,
    /// A key outside what every backend takes: 1 to [`MAX_KEY`] bytes.
    #[error("invalid key of {0} bytes (keys are 1 to 65535 bytes)")]
    Key(usize),
    /// A sealed value that does not open (altered, moved to another
    /// record, sealed under a key this node does not have): named, never
    /// misread.
    #[error("a stored value does not open: {0}")]
    Sealed(String),
    /// A value sealed under a data key a purge destroyed: what it held is
    /// gone on purpose (a leftover read from an older copy of the store).
    #[error("a stored value was purged: {0}: its data key was destroyed")]
    Shredded(String),
    #[error("{0}")]
    Io(String),
}

/// The longest key a backend must take.
pub const MAX_KEY: usize = 65_535;

fn check_key(key: &[u8]) -> Result<(), EngineError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(EngineError::Key(key.len()));
    }
    Ok(())
}

/// A tree of one database, opened by name with [`Db::tree`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tree(usize);

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// An ordered range of entries. It owns the snapshot it reads, so it never
/// borrows the database; it sees the state at the moment it was created.
pub type Range = Box<dyn DoubleEndedIterator<Item = Result<Entry, EngineError>> + Send>;

/// Limits for opening a database. Memory is bounded by `cache_bytes` plus
/// the engine's write buffers (`write_buffer_bytes` per tree at most, usually
/// far less: idle trees hold almost nothing).
#[derive(Debug, Clone)]
pub struct Options {
    pub cache_bytes: u64,
    pub write_buffer_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            write_buffer_bytes: 8 << 20,
        }
    }
}

/// What a backend implements. Only this module's types call it.
pub trait Backend: Send + Sync {
    fn open_tree(&self, name: &str) -> Result<Tree, EngineError>;
    fn tree_names(&self) -> Vec<String>;
    fn snapshot(&self) -> Box<dyn Read + Send + Sync>;
    /// Runs `body` in a write transaction and commits it when `body`
    /// returns true; rolls it back otherwise.
    fn write(&self, body: &mut dyn FnMut(&mut dyn Write) -> bool) -> Result<(), EngineError>;
    fn sync(&self) -> Result<(), EngineError>;
    fn disk_bytes(&self) -> Result<u64, EngineError>;
    /// The engine below a sealing wrapper (values as they are on disk).
    fn unsealed(&self) -> Option<Arc<dyn Backend>> {
        None
    }
    /// A keyed hash of `data` under a key of this database's own, when it
    /// is sealed (see [`Db::keyed_digest`]).
    fn keyed_digest(&self, _data: &[u8]) -> Result<Option<[u8; 32]>, EngineError> {
        Ok(None)
    }
}

/// Reads of one consistent view: a snapshot, or a transaction (which also
/// sees its own writes).
pub trait Read {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;
    fn range(&self, tree: Tree, low: Bound<&[u8]>, high: Bound<&[u8]>) -> Range;
}

/// A write transaction.
pub trait Write: Read {
    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), EngineError>;
    fn remove(&mut self, tree: Tree, key: &[u8]) -> Result<(), EngineError>;
}

/// An open database. Cheap to clone; closed when the last clone drops.
#[derive(Clone)]
pub struct Db {
    backend: Arc<dyn Backend>,
}

impl Db {
    /// Opens a tree by name, creating it if it does not exist.
    pub fn tree(&self, name: &str) -> Result<Tree, EngineError> {
        self.backend.open_tree(name)
    }

    /// Names of the trees the database holds.
    pub fn tree_names(&self) -> Vec<String> {
        self.backend.tree_names()
    }

    /// A consistent read view of everything committed so far.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.backend.snapshot())
    }

    /// The same database without its sealing: values as the engine holds
    /// them, for tools that sort sealed values by the key they name.
    /// `None` when it is not sealed.
    pub fn unsealed(&self) -> Option<Db> {
        self.backend.unsealed().map(|backend| Db { backend })
    }

    /// HMAC-SHA-256 of `data` under a key kept with the sealed database's
    /// data keys (made at the first call, in a transaction of its own: not
    /// to be called inside one), so an index key can stand for a person's
    /// or a case's id without naming it. `None` for a database in clear.
    pub fn keyed_digest(&self, data: &[u8]) -> Result<Option<[u8; 32]>, EngineError> {
        self.backend.keyed_digest(data)
    }

    /// Point read of the latest committed value.
    pub fn get(&self, tree: Tree, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, EngineError> {
        self.backend.snapshot().get(tree, key.as_ref())
    }

    /// Entries of `tree` within `range`, in key order, as committed now.
    pub fn range<K: AsRef<[u8]>>(&self, tree: Tree, range: impl RangeBounds<K>) -> Range {
        let (low, high) = bounds(&range);
        self.backend.snapshot().range(tree, low, high)
    }

    /// Entries of `tree` whose key starts with `prefix`, in key order.
    pub fn prefix(&self, tree: Tree, prefix: impl AsRef<[u8]>) -> Range {
        self.snapshot().prefix(tree, prefix)
    }

    /// Number of entries in `tree` (a scan: for reports, not hot paths).
    pub fn len(&self, tree: Tree) -> Result<u64, EngineError> {
        self.snapshot().len(tree)
    }

    /// Runs `body` in a write transaction. The transaction commits when
    /// `body` returns `Ok` and rolls back when it returns `Err`, whose error
    /// is returned as it is. Write transactions are serialized: `body` runs
    /// exactly once, and nothing else commits while it runs. Committed is
    /// not durable: see [`Db::sync`].
    pub fn transaction<T, E: From<EngineError>>(
        &self,
        body: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut body = Some(body);
        let mut out = None;
        let committed = self.backend.write(&mut |w| {
            let Some(body) = body.take() else {
                return false; // a backend that ran a body twice: refuse to commit
            };
            let result = body(&mut Tx(w));
            let ok = result.is_ok();
            out = Some(result);
            ok
        });
        match (committed, out) {
            (Ok(()), Some(result)) => result,
            // The body's own error wins over the rollback it caused.
            (_, Some(Err(e))) => Err(e),
            (Err(e), _) => Err(e.into()),
            (Ok(()), None) => {
                Err(EngineError::Io("the transaction body did not run".into()).into())
            }
        }
    }

    /// Makes every transaction committed before the call durable: returns
    /// only after a real `fsync`/`fdatasync`. Blocks; call it off the async
    /// workers.
    pub fn sync(&self) -> Result<(), EngineError> {
        self.backend.sync()
    }

    /// Bytes the database occupies on disk.
    pub fn disk_bytes(&self) -> Result<u64, EngineError> {
        self.backend.disk_bytes()
    }
}

/// The reads of a consistent view, the same for a [`Snapshot`] and a [`Tx`]
/// (which also sees its own writes made before the call).
pub trait Reads {
    /// The backend's view underneath.
    fn view(&self) -> &dyn Read;

    fn get(&self, tree: Tree, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, EngineError> {
        self.view().get(tree, key.as_ref())
    }

    /// Entries within `range`, in key order.
    fn range<K: AsRef<[u8]>>(&self, tree: Tree, range: impl RangeBounds<K>) -> Range {
        let (low, high) = bounds(&range);
        self.view().range(tree, low, high)
    }

    /// Entries whose key starts with `prefix`, in key order.
    fn prefix(&self, tree: Tree, prefix: impl AsRef<[u8]>) -> Range {
        prefix_range(self.view(), tree, prefix.as_ref())
    }

    /// Number of entries in `tree` (a scan: for reports, not hot paths).
    fn len(&self, tree: Tree) -> Result<u64, EngineError> {
        let mut n = 0;
        for item in self.view().range(tree, Bound::Unbounded, Bound::Unbounded) {
            item?;
            n += 1;
        }
        Ok(n)
    }
}

/// A consistent read view.
pub struct Snapshot(Box<dyn Read + Send + Sync>);

impl Reads for Snapshot {
    fn view(&self) -> &dyn Read {
        &*self.0
    }
}

/// A write transaction (see [`Db::transaction`]).
pub struct Tx<'a>(&'a mut dyn Write);

impl Reads for Tx<'_> {
    fn view(&self) -> &dyn Read {
        &*self.0
    }
}

impl Tx<'_> {
    pub fn insert(
        &mut self,
        tree: Tree,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), EngineError> {
        check_key(key.as_ref())?;
        self.0.insert(tree, key.as_ref(), value.as_ref())
    }

    pub fn remove(&mut self, tree: Tree, key: impl AsRef<[u8]>) -> Result<(), EngineError> {
        check_key(key.as_ref())?;
        self.0.remove(tree, key.as_ref())
    }
}

fn bounds<'a, K: AsRef<[u8]> + 'a>(
    range: &'a impl RangeBounds<K>,
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    fn map<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<&[u8]> {
        match b {
            Bound::Included(k) => Bound::Included(k.as_ref()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (map(range.start_bound()), map(range.end_bound()))
}

/// The smallest key greater than every key starting with `prefix`, if any
/// (none when the prefix is all 0xff bytes, or empty).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn prefix_range(view: &dyn Read, tree: Tree, prefix: &[u8]) -> Range {
    let end = prefix_end(prefix);
    let high = match &end {
        Some(e) => Bound::Excluded(e.as_slice()),
        None => Bound::Unbounded,
    };
    view.range(tree, Bound::Included(prefix), high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
