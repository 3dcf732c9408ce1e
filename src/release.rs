//! Which release this build is, which peer protocol versions it speaks, and
//! which capabilities it understands — what two nodes of different releases
//! tell each other in `Hello`, so agencies can upgrade one at a time.
//!
//! A **capability** names one envelope kind or one wire feature whose loss
//! would change meaning (person encoding scheme 2, the "not understood" ack).
//! A node never sends a peer what the peer has not announced; the entry
//! waits in the outbox instead (see `exchange::outbound`). Names are
//! stable: the next releases rely on them, so a name is never reused for
//! something else, and a feature that changes meaning gets a new name.
//!
//! A peer that announces nothing runs a release from before announcements
//! ([`UNANNOUNCED`], 0.3.0: protocol 1), whose capabilities are known:
//! [`Capabilities::unannounced`]. It is older than [`PREVIOUS`], the
//! release CI runs beside this one; this build still speaks to it.
//!
//! The protocol version is a range: a caller says the newest it speaks and
//! the oldest it still accepts; the callee answers with the newest version
//! both speak ([`negotiate`]). Version 1 is the previous release's (it
//! compares for equality, so a node answers it with 1); version 2 adds the
//! release and capabilities to `Hello`.

use std::collections::BTreeSet;
use std::fmt;

/// This build's release (semver, from `Cargo.toml`).
pub const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// A release agencies run, pinned by its version and the commit it was
/// built from.
#[derive(Debug, Clone, Copy)]
pub struct Pinned {
    pub version: &'static str,
    pub commit: &'static str,
}

/// The release before this one: what CI builds to run beside this one,
/// and whose wire contract `proto/previous/` keeps.
pub const PREVIOUS: Pinned = Pinned {
    version: "0.4.0",
    commit: "cbaabebed049a80d40657d1c63e0f19bf4676059",
};

/// The last release before `Hello` announced a release and capabilities:
/// what a peer that announces nothing runs.
pub const UNANNOUNCED: &str = "0.3.0";

/// How release `found` (recorded by whoever wrote a store) compares with
/// this build's.
pub fn compare_with_ours(found: &str) -> Result<std::cmp::Ordering, semver::Error> {
    let found = semver::Version::parse(found)?;
    let ours = semver::Version::parse(RELEASE)?;
    Ok(found.cmp_precedence(&ours))
}

/// The peer protocol versions a node speaks, oldest to newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolRange {
    pub oldest: u32,
    pub newest: u32,
}

impl ProtocolRange {
    /// What a caller's `Hello` says: its newest version, and its oldest
    /// (0, unset, is an older node: it speaks its newest only).
    pub fn announced(newest: u32, oldest: u32) -> Self {
        let oldest = if oldest == 0 {
            newest
        } else {
            oldest.min(newest)
        };
        Self { oldest, newest }
    }

    pub fn contains(self, version: u32) -> bool {
        (self.oldest..=self.newest).contains(&version)
    }
}

impl fmt::Display for ProtocolRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.oldest == self.newest {
            write!(f, "{}", self.newest)
        } else {
            write!(f, "{}-{}", self.oldest, self.newest)
        }
    }
}

/// The peer protocol versions this build speaks.
pub const PROTOCOL: ProtocolRange = ProtocolRange {
    oldest: 1,
    newest: 2,
};

/// The newest version both ranges hold, if they overlap.
pub fn negotiate(ours: ProtocolRange, theirs: ProtocolRange) -> Option<u32> {
    let newest = ours.newest.min(theirs.newest);
    (newest >= ours.oldest.max(theirs.oldest)).then_some(newest)
}

/// Something a receiver must understand to take an envelope (or a part of
/// one) without changing its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Shared alert versions, updates and retractions (`Envelope.alert`).
    Alert,
    /// Hit notices.
    HitNotice,
    /// Reviews of a hit sent to the other agency.
    HitReview,
    DisclosureRequest,
    DisclosureDecision,
    ClarificationAnswer,
    /// Released data after an approval.
    Release,
    ReleaseWithdrawal,
    /// Fuzzy person encodings, scheme 2 (blocks, name filters, date tags).
    PersonEncoding2,
    /// Federation lookups (`PeerExchange.Lookup`).
    Lookup,
    /// Answers "not understood, keep it" instead of refusing what it cannot
    /// read, and reads the capabilities an envelope says it needs.
    NotUnderstood,
    /// Serves the signed federation directory it follows
    /// (`PeerExchange.FetchDirectory`) and names its version in Hello.
    Directory,
    /// Federated statistics: takes report shares and noisy sums
    /// (`StatsReports`, `StatsAggregate`) and, as an aggregator, the
    /// leader's `StatsPrepare` and `StatsCommit`.
    Stats,
}

impl Capability {
    /// Every capability this build knows, in a fixed order.
    pub const ALL: [Capability; 13] = [
        Self::Alert,
        Self::HitNotice,
        Self::HitReview,
        Self::DisclosureRequest,
        Self::DisclosureDecision,
        Self::ClarificationAnswer,
        Self::Release,
        Self::ReleaseWithdrawal,
        Self::PersonEncoding2,
        Self::Lookup,
        Self::NotUnderstood,
        Self::Directory,
        Self::Stats,
    ];

    /// The name announced on the wire and shown to operators (stable).
    pub fn name(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::HitNotice => "hit-notice",
            Self::HitReview => "hit-review",
            Self::DisclosureRequest => "disclosure-request",
            Self::DisclosureDecision => "disclosure-decision",
            Self::ClarificationAnswer => "clarification-answer",
            Self::Release => "release",
            Self::ReleaseWithdrawal => "release-withdrawal",
            Self::PersonEncoding2 => "person-encoding-2",
            Self::Lookup => "lookup",
            Self::NotUnderstood => "not-understood",
            Self::Directory => "directory",
            Self::Stats => "stats",
        }
    }

    /// What operators read about a held entry: "until ngo understands …".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Alert => "alerts",
            Self::HitNotice => "hit notices",
            Self::HitReview => "hit reviews",
            Self::DisclosureRequest => "disclosure requests",
            Self::DisclosureDecision => "disclosure decisions",
            Self::ClarificationAnswer => "clarification answers",
            Self::Release => "releases",
            Self::ReleaseWithdrawal => "release withdrawals",
            Self::PersonEncoding2 => "person encodings (scheme 2)",
            Self::Lookup => "lookups",
            Self::NotUnderstood => "the not-understood acknowledgement",
            Self::Directory => "the federation directory",
            Self::Stats => "statistics shares and sums",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether a release from before announcements ([`UNANNOUNCED`])
    /// understood it.
    fn before_announcements(self) -> bool {
        !matches!(self, Self::NotUnderstood | Self::Directory | Self::Stats)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// At most this many names in one announcement.
pub const MAX_ANNOUNCED: usize = 64;
/// At most this many bytes in one announced name.
pub const MAX_NAME_BYTES: usize = 64;

/// Why a peer's announcement is refused (the index names the entry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnouncementError {
    #[error("capabilities: {0} names, at most {MAX_ANNOUNCED}")]
    TooMany(usize),
    #[error(
        "capabilities[{0}]: 1 to {MAX_NAME_BYTES} bytes of lower-case letters, digits, `-` and `.`"
    )]
    Malformed(usize),
    #[error("release: at most {MAX_NAME_BYTES} printable ASCII characters")]
    Release,
}

impl AnnouncementError {
    /// The field it is about (`capabilities[3]`).
    pub fn field(&self) -> String {
        match self {
            Self::TooMany(_) => "capabilities".into(),
            Self::Malformed(i) => format!("capabilities[{i}]"),
            Self::Release => "release".into(),
        }
    }

    /// What is wrong with it, without the field's name.
    pub fn description(&self) -> String {
        let text = self.to_string();
        match text.split_once(": ") {
            Some((_, why)) => why.to_owned(),
            None => text,
        }
    }
}

/// The capabilities one node announced: those this build knows, and the
/// names of newer ones it does not (kept to show, never acted on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    known: BTreeSet<Capability>,
    unknown: BTreeSet<String>,
}

impl Capabilities {
    /// What this build understands.
    pub fn ours() -> Self {
        Self {
            known: Capability::ALL.into_iter().collect(),
            unknown: BTreeSet::new(),
        }
    }

    /// What a release from before announcements understood: the set of a
    /// peer that announces nothing.
    pub fn unannounced() -> Self {
        Self {
            known: Capability::ALL
                .into_iter()
                .filter(|c| c.before_announcements())
                .collect(),
            unknown: BTreeSet::new(),
        }
    }

    /// A peer's announcement, bounded before it is read: an empty one is
    /// the set of a release from before announcements.
    pub fn announced(names: &[String]) -> Result<Self, AnnouncementError> {
        if names.is_empty() {
            return Ok(Self::unannounced());
        }
        if names.len() > MAX_ANNOUNCED {
            return Err(AnnouncementError::TooMany(names.len()));
        }
        let mut set = Self {
            known: BTreeSet::new(),
            unknown: BTreeSet::new(),
        };
        for (i, name) in names.iter().enumerate() {
            if !well_formed(name) {
                return Err(AnnouncementError::Malformed(i));
            }
            match Capability::from_name(name) {
                Some(c) => {
                    set.known.insert(c);
                }
                None => {
                    set.unknown.insert(name.clone());
                }
            }
        }
        Ok(set)
    }

    /// This set less `withheld`.
    pub fn without(&self, withheld: &[Capability]) -> Self {
        let mut set = self.clone();
        for c in withheld {
            set.known.remove(c);
        }
        set
    }

    pub fn has(&self, c: Capability) -> bool {
        self.known.contains(&c)
    }

    /// Of `needed`, those this set lacks, in order.
    pub fn missing(&self, needed: &[Capability]) -> Vec<Capability> {
        needed.iter().copied().filter(|c| !self.has(*c)).collect()
    }

    /// Every name, known ones first in their fixed order, then unknown
    /// ones sorted: what is announced and shown.
    pub fn names(&self) -> Vec<String> {
        Capability::ALL
            .into_iter()
            .filter(|c| self.has(*c))
            .map(|c| c.name().to_owned())
            .chain(self.unknown.iter().cloned())
            .collect()
    }

    /// What both sides understand (known capabilities only).
    pub fn common(&self, other: &Self) -> Self {
        Self {
            known: self.known.intersection(&other.known).copied().collect(),
            unknown: BTreeSet::new(),
        }
    }
}

fn well_formed(name: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// A peer's release as announced: printable ASCII, bounded; empty is a
/// release from before announcements ([`UNANNOUNCED`]).
pub fn announced_release(release: &str) -> Result<&str, AnnouncementError> {
    if release.is_empty() {
        return Ok(UNANNOUNCED);
    }
    if release.len() > MAX_NAME_BYTES || !release.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AnnouncementError::Release);
    }
    Ok(release)
}

/// `casebridge --version`: the release, the protocol range, the
/// capabilities, and the previous release it interoperates with.
pub fn long_version() -> String {
    format!(
        "{RELEASE}\npeer protocol: {PROTOCOL}\ncapabilities: {}\nprevious release: {} ({})",
        Capabilities::ours().names().join(" "),
        PREVIOUS.version,
        &PREVIOUS.commit[..12],
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn names() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(Capability::ALL.to_vec()).prop_map(|c| c.name().to_owned()),
                "[a-z][a-z0-9.-]{0,20}",
            ],
            0..12,
        )
    }

    fn range() -> impl Strategy<Value = ProtocolRange> {
        (0u32..6, 0u32..6).prop_map(|(a, b)| ProtocolRange::announced(a.max(b), a.min(b)))
    }

    proptest! {
        /// Whatever two nodes announce, what they share is the same seen
        /// from either side, and neither lacks any of it.
        #[test]
        fn common_capabilities_are_symmetric_and_held_by_both(a in names(), b in names()) {
            let (a, b) = (Capabilities::announced(&a).unwrap(), Capabilities::announced(&b).unwrap());
            let common = a.common(&b);
            prop_assert_eq!(&common, &b.common(&a));
            for c in Capability::ALL {
                prop_assert_eq!(common.has(c), a.has(c) && b.has(c));
            }
        }

        /// A well-formed announcement reads back as announced: every known
        /// name as its capability, the others kept as names.
        #[test]
        fn an_announcement_reads_back(a in names()) {
            prop_assume!(!a.is_empty());
            let set = Capabilities::announced(&a).unwrap();
            let mut expected: Vec<String> = a.clone();
            expected.sort();
            expected.dedup();
            let mut got = set.names();
            got.sort();
            prop_assert_eq!(got, expected);
        }

        /// The negotiated version lies in both ranges, is the newest such,
        /// and is missing exactly when the ranges do not meet.
        #[test]
        fn negotiation_picks_the_newest_common_version(a in range(), b in range()) {
            let both: Vec<u32> = (0..8).filter(|v| a.contains(*v) && b.contains(*v)).collect();
            prop_assert_eq!(negotiate(a, b), both.last().copied());
            prop_assert_eq!(negotiate(a, b), negotiate(b, a));
        }
    }

    #[test]
    fn an_empty_announcement_is_a_release_from_before_announcements() {
        let previous = Capabilities::announced(&[]).unwrap();
        assert_eq!(previous, Capabilities::unannounced());
        assert!(previous.has(Capability::PersonEncoding2));
        assert!(previous.has(Capability::ReleaseWithdrawal));
        assert!(!previous.has(Capability::NotUnderstood));
        assert_eq!(announced_release("").unwrap(), UNANNOUNCED);
        assert!(!previous.has(Capability::Directory));
        assert_eq!(
            previous.missing(&[Capability::Alert, Capability::NotUnderstood]),
            [Capability::NotUnderstood]
        );
    }

    #[test]
    fn hostile_announcements_are_refused_naming_the_entry() {
        let long = "a".repeat(MAX_NAME_BYTES + 1);
        for (names, expected) in [
            (
                vec!["alert".into(), "Alert".into()],
                AnnouncementError::Malformed(1),
            ),
            (vec![long], AnnouncementError::Malformed(0)),
            (vec![String::new()], AnnouncementError::Malformed(0)),
            (
                vec!["alert".to_owned(); MAX_ANNOUNCED + 1],
                AnnouncementError::TooMany(MAX_ANNOUNCED + 1),
            ),
        ] {
            assert_eq!(Capabilities::announced(&names), Err(expected));
        }
        assert!(announced_release("0.4.0\nforged").is_err());
        assert!(announced_release(&"9".repeat(65)).is_err());
    }

    #[test]
    fn a_release_from_before_announcements_speaks_protocol_one_only() {
        // It sends protocol_version 1 and no oldest: it meets us at 1.
        let previous = ProtocolRange::announced(1, 0);
        assert_eq!(negotiate(PROTOCOL, previous), Some(1));
        assert_eq!(negotiate(PROTOCOL, ProtocolRange::announced(2, 1)), Some(2));
        assert_eq!(negotiate(PROTOCOL, ProtocolRange::announced(9, 7)), None);
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let names: BTreeSet<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Capability::ALL.len());
        assert!(names.iter().all(|n| well_formed(n)));
        assert!(long_version().starts_with(RELEASE));
    }
}
