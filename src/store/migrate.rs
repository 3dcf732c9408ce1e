//! Converting a store written by sled (CaseBridge before the fjall engine)
//! into the current engine.
//!
//! The key and value formats did not change with the engine, so a
//! migration copies every tree as it is: alerts, outbox, indexes, hits,
//! logs, policy versions and the audit chain with its checkpoints (which is
//! why `audit verify` passes on the result with the same key). Two things
//! sled kept outside the trees are carried over explicitly:
//! - sled handed out outbox, hit, lookup, refusal and purge sequence numbers
//!   from one database-wide counter; every counter of the new store starts
//!   after sled's next id, so no number is ever given twice;
//! - marks of matching that a crash interrupted (`match_pending`) are kept,
//!   and the node redoes that matching when it starts.
//!
//! The old directory is opened but never changed by us (sled may rewrite
//! its own metadata on open) and is kept until the operator deletes it.

use std::path::Path;

use super::StoreError;
use super::backup::copy_tree;
use super::engine::{Db, EngineError, Options, Range};
use super::trees::{Counter, TREES, is_sled_store, sync_dir};

/// What a migration carried over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateStats {
    /// Entries per tree, in [`TREES`] order (trees sled did not have are 0).
    pub trees: Vec<(String, u64)>,
    /// The first sequence number the new store will give out.
    pub next_sequence: u64,
}

impl MigrateStats {
    pub fn entries(&self, tree: &str) -> u64 {
        self.trees
            .iter()
            .find(|(n, _)| n == tree)
            .map_or(0, |(_, c)| *c)
    }
}

fn sled_error(e: sled::Error) -> StoreError {
    StoreError::Migrate(format!("reading the sled store: {e}"))
}

/// A sled tree as a range of the storage interface.
fn entries(tree: sled::Tree) -> Range {
    Box::new(tree.iter().map(|item| {
        item.map(|(k, v)| (k.to_vec(), v.to_vec()))
            .map_err(|e| EngineError::Io(format!("reading the sled store: {e}")))
    }))
}

/// Copies the sled store in `from` into a new store in `to` (which must not
/// exist), syncs it and checks every tree's count against the source.
pub fn migrate_sled(from: &Path, to: &Path) -> Result<MigrateStats, StoreError> {
    if !is_sled_store(from) {
        return Err(StoreError::Migrate(format!(
            "{} is not a sled store (no conf and db files)",
            from.display()
        )));
    }
    if to.exists() {
        return Err(StoreError::Migrate(format!(
            "{} already exists; migrate into a new directory",
            to.display()
        )));
    }
    let old = sled::Config::new().path(from).open().map_err(|e| {
        StoreError::Migrate(format!(
            "{}: {e} (is a node still running on it?)",
            from.display()
        ))
    })?;
    let result = copy_all(&old, to);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(to);
    }
    result
}

fn copy_all(old: &sled::Db, to: &Path) -> Result<MigrateStats, StoreError> {
    // Owner only before the engine writes a byte into it (the store
    // refuses to open a directory others can enter).
    crate::secrets::create_private_dir(to)
        .map_err(|e| StoreError::Migrate(format!("{}: {e}", to.display())))?;
    let new = Db::open(to, &Options::default())?;
    let mut trees = Vec::new();
    for name in TREES {
        let exists = old
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == name.as_bytes());
        let copied = if exists {
            let tree = old.open_tree(name).map_err(sled_error)?;
            let expected = tree.len() as u64;
            let copied = copy_tree(&new, name, entries(tree))?;
            if copied != expected {
                return Err(StoreError::Migrate(format!(
                    "tree {name}: {copied} entries copied of {expected}"
                )));
            }
            copied
        } else {
            0
        };
        trees.push((name.to_string(), copied));
    }
    // Every sequence sled gave out is below its next id.
    let next_sequence = old.generate_id().map_err(sled_error)? + 1;
    let counters = new.tree("counters")?;
    new.transaction(|tx| {
        for c in Counter::ALL {
            tx.insert(counters, c.key(), (next_sequence - 1).to_be_bytes())?;
        }
        Ok::<_, EngineError>(())
    })?;
    new.sync()?;
    drop(new);
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(|e| StoreError::Migrate(format!("{}: {e}", parent.display())))?;
    }
    // Read the copy back: every tree as many entries as the source had.
    let check = Db::open(to, &Options::default())?;
    for (name, copied) in &trees {
        let held = check.len(check.tree(name)?)?;
        if name != "counters" && held != *copied {
            return Err(StoreError::Migrate(format!(
                "tree {name}: the new store holds {held} entries, the old one {copied}"
            )));
        }
    }
    Ok(MigrateStats {
        trees,
        next_sequence,
    })
}
