//! The store's layout on disk: its trees (opened once), the counters that
//! number its logs, how a big-endian position is read back, and what a
//! store directory looks like (this format, or sled's before it).

use std::path::Path;

use super::StoreError;
use super::engine::{Db, EngineError, Tree};

/// `settings` key of the release that last opened the store for writing.
pub(super) const RELEASE_SETTING: &str = "release";

/// The trees of the store, opened once.
pub(crate) struct Trees {
    pub(super) alerts: Tree,
    pub(super) outbox: Tree,
    pub(super) requests: Tree,
    pub(super) tokens: Tree,
    pub(super) fuzzy: Tree,
    pub(super) pending: Tree,
    pub(super) hits: Tree,
    pub(super) hit_keys: Tree,
    pub(super) hit_others: Tree,
    pub(super) lookups: Tree,
    pub(super) policies: Tree,
    pub(super) refusals: Tree,
    pub(super) retention: Tree,
    pub(super) purges: Tree,
    pub(super) audit: Tree,
    pub(super) audit_checkpoints: Tree,
    pub(super) audit_meta: Tree,
    pub(super) counters: Tree,
    pub(super) shares: Tree,
    pub(super) hit_numbers: Tree,
    pub(super) hit_reviews: Tree,
    pub(super) disclosures: Tree,
    pub(super) disclosure_log: Tree,
    pub(super) disclosure_order: Tree,
    pub(super) releases: Tree,
    pub(super) release_order: Tree,
    pub(super) release_retention: Tree,
    pub(super) settings: Tree,
    pub(super) alert_log: Tree,
    pub(super) alert_log_pos: Tree,
    pub(super) imports: Tree,
    pub(super) tokens_pending: Tree,
    pub(super) stats: Tree,
    pub(super) intake: Tree,
    pub(super) intake_index: Tree,
    pub(super) intake_meta: Tree,
    /// Data keys of sealed records (`engine::sealed`): not in [`TREES`],
    /// because a backup seals its own copy of them under a key of its own.
    pub(super) data_keys: Tree,
}

/// Every tree the store keeps, by name (a migration and a backup copy these).
pub const TREES: [&str; 36] = [
    "alerts",
    "outbox",
    "requests",
    "tokens",
    "fuzzy",
    "match_pending",
    "hits",
    "hit_keys",
    "hit_others",
    "lookups",
    "policies",
    "refusals",
    "retention",
    "purges",
    "audit",
    "audit_checkpoints",
    "audit_meta",
    "counters",
    "shares",
    "hit_numbers",
    "hit_reviews",
    "disclosures",
    "disclosure_log",
    "disclosure_order",
    "releases",
    "release_order",
    "release_retention",
    "settings",
    "alert_log",
    "alert_log_pos",
    "imports",
    "tokens_pending",
    "stats",
    "intake",
    "intake_index",
    "intake_meta",
];

impl Trees {
    pub(super) fn open(db: &Db) -> Result<Self, EngineError> {
        Ok(Self {
            alerts: db.tree("alerts")?,
            outbox: db.tree("outbox")?,
            requests: db.tree("requests")?,
            tokens: db.tree("tokens")?,
            fuzzy: db.tree("fuzzy")?,
            pending: db.tree("match_pending")?,
            hits: db.tree("hits")?,
            hit_keys: db.tree("hit_keys")?,
            hit_others: db.tree("hit_others")?,
            lookups: db.tree("lookups")?,
            policies: db.tree("policies")?,
            refusals: db.tree("refusals")?,
            retention: db.tree("retention")?,
            purges: db.tree("purges")?,
            audit: db.tree("audit")?,
            audit_checkpoints: db.tree("audit_checkpoints")?,
            audit_meta: db.tree("audit_meta")?,
            counters: db.tree("counters")?,
            shares: db.tree("shares")?,
            hit_numbers: db.tree("hit_numbers")?,
            hit_reviews: db.tree("hit_reviews")?,
            disclosures: db.tree("disclosures")?,
            disclosure_log: db.tree("disclosure_log")?,
            disclosure_order: db.tree("disclosure_order")?,
            releases: db.tree("releases")?,
            release_order: db.tree("release_order")?,
            release_retention: db.tree("release_retention")?,
            settings: db.tree("settings")?,
            alert_log: db.tree("alert_log")?,
            alert_log_pos: db.tree("alert_log_pos")?,
            imports: db.tree("imports")?,
            tokens_pending: db.tree("tokens_pending")?,
            stats: db.tree("stats")?,
            intake: db.tree("intake")?,
            intake_index: db.tree("intake_index")?,
            intake_meta: db.tree("intake_meta")?,
            data_keys: db.tree(super::engine::sealed::DATA_KEYS)?,
        })
    }
}

/// The sequences the store hands out, each kept in `counters` and advanced
/// in the transaction that uses it, so a number is never given twice, even
/// after a crash or a restore.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Outbox,
    /// Hit numbers: 1, 2, 3, ... one per hit.
    Hits,
    /// Positions in the hit log (`hits` tree): one per hit found and per
    /// review of it. A store written before reviews existed has no such
    /// counter; its log positions equal its hit numbers, so the count goes
    /// on from `Hits`.
    HitLog,
    /// Positions in the disclosure request log.
    Disclosures,
    Lookups,
    Refusals,
    Purges,
    /// Positions in the alert log.
    AlertLog,
}

impl Counter {
    pub(crate) const ALL: [Counter; 8] = [
        Self::Outbox,
        Self::Hits,
        Self::HitLog,
        Self::Disclosures,
        Self::Lookups,
        Self::Refusals,
        Self::Purges,
        Self::AlertLog,
    ];

    pub(super) fn key(self) -> &'static [u8] {
        match self {
            Self::Outbox => b"outbox",
            Self::Hits => b"hits",
            Self::HitLog => b"hit_log",
            Self::Disclosures => b"disclosures",
            Self::Lookups => b"lookups",
            Self::Refusals => b"refusals",
            Self::Purges => b"purges",
            Self::AlertLog => b"alert_log",
        }
    }
}

/// A big-endian u64 key or value of `what`, or `what` named as corrupt.
pub(super) fn be_u64(what: &str, v: &[u8]) -> Result<u64, StoreError> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::corrupt(what, "not a number"))
}

/// `fsync` of a directory, so the entries created in it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Whether `dir` holds a sled database: sled writes `conf` and `db` there,
/// the current engine neither.
pub fn is_sled_store(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// Whether `dir` holds a store in the current format.
pub fn is_store(dir: &Path) -> bool {
    Db::exists(dir)
}
