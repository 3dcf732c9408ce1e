//! The tamper-evident audit log: who did what to which alert, when, why,
//! and with what outcome.
//!
//! Lawful data sharing between agencies rests on being able to account for
//! every collection, consultation, disclosure and erasure, so every client
//! and peer call, every share and receipt, every hit, purge, policy change
//! and refused connection leaves one [`Event`]. The store appends each one as
//! an [`Entry`] with the next sequence number and chains it:
//! `hash(n) = SHA-256(hash(n-1) ‖ body(n))`, where `body(n)` is the entry's
//! exact JSON bytes. Editing, deleting or reordering an entry breaks the chain
//! at that entry. Rewriting the whole tail consistently is caught by the
//! signed [`Checkpoint`]s the node writes periodically and on shutdown
//! ([`signing`]); removing the tail is caught because a checkpoint then
//! points past the end.
//!
//! Entries never carry identifiers, names, narratives or key material: only
//! ids, peer and client names, rule names, field levels and counts.

pub mod call;
pub mod export;
pub mod query;
pub mod signing;
pub mod verify;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::format_ms;

pub use call::{CallEntry, PURPOSE_BIN_HEADER, PURPOSE_HEADER, check_purpose};
pub use verify::{Broken, ChainStart, Summary, verify};

/// SHA-256 output: entry and chain hashes.
pub type Hash = [u8; 32];

/// The hash the first entry chains from.
pub const GENESIS: Hash = [0; 32];

/// Audit entries older than this are never pruned, whatever the config says:
/// one year is the minimum the regulations this log serves ask for.
pub const MIN_RETENTION_DAYS: usize = 365;

macro_rules! actions {
    ($($variant:ident = $name:literal,)*) => {
        /// What was done. The names are the stable, documented vocabulary of
        /// the log (`docs/operator-guide.md`); new actions only ever get added.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action { $($variant,)* }

        impl Action {
            pub const ALL: &[Action] = &[$(Action::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Action::$variant => $name,)* }
            }
        }
    };
}

actions! {
    AlertSubmit = "alert.submit",
    AlertUpdate = "alert.update",
    AlertRetract = "alert.retract",
    AlertGet = "alert.get",
    AlertSharing = "alert.sharing",
    AlertList = "alert.list",
    AlertImport = "alert.import",
    AlertImported = "alert.imported",
    AlertsWatch = "alerts.watch",
    HitsWatch = "hits.watch",
    HitsCount = "hits.count",
    HitGet = "hit.get",
    HitReview = "hit.review",
    AlertNetwork = "alert.network",
    LookupAsk = "lookup.ask",
    DisclosureRequest = "disclosure.request",
    DisclosureList = "disclosure.list",
    DisclosureGet = "disclosure.get",
    DisclosureWatch = "disclosure.watch",
    DisclosureDecide = "disclosure.decide",
    DisclosureAnswer = "disclosure.answer",
    DisclosureStats = "disclosure.stats",
    ReleaseList = "release.list",
    ReleaseView = "release.view",
    ReleaseWithdraw = "release.withdraw",
    // Peer API calls received.
    PeerHello = "peer.hello",
    PeerLookup = "peer.lookup",
    PeerDeliver = "peer.deliver",
    // The exchange, one entry per envelope.
    AlertShare = "alert.share",
    NoticeSend = "hit.notify",
    AlertReceive = "alert.receive",
    AlertRefuse = "alert.refuse",
    NoticeReceive = "hit.notice",
    ReviewSend = "hit.review_send",
    ReviewReceive = "hit.review_receive",
    DisclosureRequestSend = "disclosure.request_send",
    DisclosureRequestReceive = "disclosure.request_receive",
    DisclosureDecisionSend = "disclosure.decision_send",
    DisclosureDecisionReceive = "disclosure.decision_receive",
    DisclosureAnswerSend = "disclosure.answer_send",
    DisclosureAnswerReceive = "disclosure.answer_receive",
    ReleaseSend = "release.send",
    ReleaseReceive = "release.receive",
    ReleaseWithdrawSend = "release.withdraw_send",
    ReleaseWithdrawReceive = "release.withdraw_receive",
    ReleasePurge = "release.purge",
    // A decided disclosure request past its retention, emptied.
    DisclosurePurge = "disclosure.purge",
    HitFound = "hit.found",
    AlertPurge = "alert.purge",
    // Federated statistics (docs/statistics.md): a member's reports made
    // and queued, report shares and noisy sums sent and received, the
    // helper's calls from the leader, an aggregator's sum, a release
    // combined (with the budget spent), a release refused.
    StatsContribute = "stats.contribute",
    StatsRun = "stats.run",
    StatsList = "stats.list",
    StatsReportsSend = "stats.reports_send",
    StatsReportsReceive = "stats.reports_receive",
    StatsSumSend = "stats.sum_send",
    StatsCallSend = "stats.call_send",
    StatsCallReceive = "stats.call_receive",
    StatsSumReceive = "stats.sum_receive",
    StatsPrepare = "stats.prepare",
    StatsCommit = "stats.commit",
    StatsSum = "stats.sum",
    StatsRelease = "stats.release",
    StatsRefuse = "stats.refuse",
    // The public intake (docs/intake.md): a report received, a receipt
    // that opened one, the reporter's answer — each with the actor
    // `reporter` and nothing that identifies them.
    IntakeReport = "intake.report",
    IntakeOpen = "intake.open",
    IntakeAnswer = "intake.answer",
    // A report past its retention, purged with its data key.
    IntakePurge = "intake.purge",
    // A caseworker's triage (the `intake` role, ReportService): the inbox
    // read, a report read, a reply to its reporter, reports closed, a
    // report linked to the alert made of it.
    IntakeList = "intake.list",
    IntakeGet = "intake.get",
    IntakeReply = "intake.reply",
    IntakeClose = "intake.close",
    IntakeLink = "intake.link",
    // Administration.
    StatusGet = "admin.status",
    PeersList = "admin.peers",
    PolicyGet = "policy.get",
    PolicySet = "policy.set",
    PolicyInstall = "policy.install",
    ClientsReload = "clients.reload",
    PolicyExplain = "policy.explain",
    PolicyDiff = "policy.diff",
    PolicyHistory = "policy.history",
    PolicyTest = "policy.test",
    AuditVerify = "audit.verify",
    ActivityGet = "activity.get",
    Reshare = "policy.reshare",
    RetractFromPeer = "policy.retract_from_peer",
    AuditQuery = "audit.query",
    AuditPrune = "audit.prune",
    StoreBackup = "store.backup",
    StoreRestore = "store.restore",
    // Encryption at rest: an epoch ended, live data keys and data sealed
    // again, old epoch keys and expired backup keys destroyed.
    StoreEpoch = "store.epoch",
    StoreRotateKek = "store.rotate_kek",
    // The federation directory: offered by an administrator, read back,
    // adopted or refused (from any source), served to a peer.
    DirectoryPublish = "directory.publish",
    DirectoryGet = "directory.get",
    DirectoryAdopt = "directory.adopt",
    DirectoryRefuse = "directory.refuse",
    DirectoryExpire = "directory.expire",
    PeerDirectory = "peer.directory",
    // Transport and lifecycle.
    Handshake = "tls.handshake",
    NodeStart = "node.start",
    NodeStop = "node.stop",
    // Exact tokens (issue 18): on a node, tokens derived for alerts stored
    // while the key service was unreachable.
    TokensDerive = "tokens.derive",
    // The OPRF key service's own log (counts per node, never values).
    KeyServiceEvaluate = "keyservice.evaluate",
    KeyServiceKeys = "keyservice.keys",
    KeyServiceStart = "keyservice.start",
    KeyServiceStop = "keyservice.stop",
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action `{0}`")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction(s.to_owned()))
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The actor of work the node does by itself (delivery, purges, matching).
pub const NODE: &str = "node";

/// Longest purpose kept; a longer one is refused, not cut, so the log never
/// holds a purpose the caller did not give.
pub const MAX_PURPOSE_BYTES: usize = 256;

/// One thing that happened, before the log gives it a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `client:<name>`, `peer:<agency>`, `node`, or for a caller without a
    /// usable certificate its SPIFFE id or `unauthenticated:<address>`.
    pub actor: String,
    pub action: Action,
    /// Alert ids (and for hits, both alerts' ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// `OK` or the gRPC code name for calls; `stored`, `duplicate`,
    /// `rejected`, `expired` for deliveries.
    pub outcome: String,
    /// Why the caller did it, as the caller stated (`x-casebridge-purpose`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub purpose: String,
    /// Action-specific facts: peer, rule, version, disclosed field levels,
    /// counts. Never identifiers or free text from an alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
}

impl Event {
    pub fn new(actor: impl Into<String>, action: Action, outcome: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action,
            objects: Vec::new(),
            outcome: outcome.into(),
            purpose: String::new(),
            detail: BTreeMap::new(),
        }
    }

    pub fn object(mut self, id: impl Into<String>) -> Self {
        self.objects.push(id.into());
        self
    }

    pub fn detail(mut self, key: &str, value: impl ToString) -> Self {
        self.detail.insert(key.to_owned(), value.to_string());
        self
    }

    pub fn purpose(mut self, purpose: &str) -> Self {
        self.purpose = purpose.to_owned();
        self
    }
}

/// An event in its place in the chain: what `body` bytes encode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// RFC 3339, UTC, milliseconds; never earlier than the previous entry's.
    pub time: String,
    #[serde(flatten)]
    pub event: Event,
}

/// An entry as stored: its chain hash and its exact body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub seq: u64,
    pub hash: Hash,
    pub body: Vec<u8>,
}

impl RawEntry {
    pub fn entry(&self) -> Result<Entry, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// The chain step: the hash of an entry given the hash before it.
pub fn link(prev: &Hash, body: &[u8]) -> Hash {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(prev);
    ctx.update(body);
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Places `event` after `prev` at `seq` and `time_ms`: the stored form.
pub fn seal(prev: &Hash, seq: u64, time_ms: i64, event: Event) -> RawEntry {
    let entry = Entry {
        seq,
        time: format_ms(time_ms),
        event,
    };
    let body = serde_json::to_vec(&entry).expect("audit entries always serialize");
    RawEntry {
        seq,
        hash: link(prev, &body),
        body,
    }
}

/// A signed statement that the chain had `hash` at `seq` at `time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    pub time: String,
    /// Ed25519 over [`Checkpoint::message`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes: a fixed context string, so a checkpoint signature
    /// can never be replayed as a signature over anything else.
    pub fn message(seq: u64, hash: &Hash, time: &str) -> Vec<u8> {
        format!(
            "casebridge audit checkpoint v1\n{seq}\n{}\n{time}",
            hex(hash)
        )
        .into_bytes()
    }
}

/// Where the retained log starts after a prune: the last pruned entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneMark {
    pub through_seq: u64,
    #[serde(with = "hex_hash")]
    pub through_hash: Hash,
}

pub use crate::text::{hex, unhex};

pub fn unhex_hash(s: &str) -> Option<Hash> {
    unhex(s)?.try_into().ok()
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &super::Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Hash, D::Error> {
        let s = String::deserialize(d)?;
        super::unhex_hash(&s).ok_or_else(|| serde::de::Error::custom("not a 32-byte hex hash"))
    }
}

/// The canonical gRPC code name, as the log and `grpcurl` write it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests;
