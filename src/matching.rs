//! Hit detection rules. Pure: the store applies them in the matching pass
//! inside each write's transaction (see `store::index`), so an alert, its
//! index entries and the hits it causes commit, and are synced, together.
//!
//! A hit is recorded when two alerts from **different agencies** share a
//! token (same identifier type, key version and value), or hold person
//! encodings of one block whose score reaches the review band's lower end,
//! and at least one of them is this agency's own: a node does not track
//! relations between two other agencies' alerts. Each (own alert, other
//! alert, type) is recorded once, however often either side is updated or
//! redelivered. An equal token is `exact`; a score from the likely
//! threshold up `likely`; below it `possible`, which waits for a person
//! (see `store::hits`).
//!
//! - [`Band`]: the review band, `likely` and `possible` thresholds.
//! - [`Comparable`]: a person encoding as comparisons and the fuzzy index
//!   read it, either scheme.
//! - [`FoundHits`]: one matching pass's hits merged by the rule: one per
//!   pair and identifier type, exact beating fuzzy, the best score kept
//!   with its evidence, candidates ranked.
//! - [`MatchedBy`]: how a hit was found, which tells the notice gate
//!   ([`NoticeGate`]) the level a match needs.

use std::collections::BTreeSet;

use crate::directory::roster::Roster;
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::{
    BlockKind, Hit, MatchStrength, PersonEncoding, PersonEvidence, StoredAlert,
};
use crate::pseudo::clk::{CLK_BITS, Clk, dice};
use crate::pseudo::person::{self, Packed};

/// Whose alerts count as "own", and which agencies may be sent hit notices.
#[derive(Debug, Clone)]
pub struct MatchScope {
    pub own: AgencyId,
    /// The peers now (hit notices go to those only).
    pub peers: Roster,
    pub band: Band,
}

/// The review band of fuzzy person matches: a score at or above `likely`
/// makes a likely hit, one from `possible` up a possible hit that waits for
/// a person's review, anything lower no hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub likely: f64,
    pub possible: f64,
}

impl Band {
    /// The strength a fuzzy score earns, if any.
    pub fn strength(&self, score: f64) -> Option<MatchStrength> {
        if score >= self.likely {
            Some(MatchStrength::Likely)
        } else if score >= self.possible {
            Some(MatchStrength::Possible)
        } else {
            None
        }
    }
}

impl Default for Band {
    fn default() -> Self {
        Self {
            likely: DEFAULT_LIKELY_THRESHOLD,
            possible: DEFAULT_POSSIBLE_THRESHOLD,
        }
    }
}

/// Default likely threshold: precision 0.98–1.00 on FEBRL 1-4 and both
/// generated sets with every block (`docs/linkage.md`), so a likely hit
/// is told to the other agency without waiting for a person.
pub const DEFAULT_LIKELY_THRESHOLD: f64 = 0.80;
/// Default possible threshold, the lower end of the review band: with
/// every block the band held 0.85–1.00 true pairs on FEBRL 1-4 and 0.12–
/// 0.13 on the generated sets, whose false ones are namesakes born in the
/// same year and month, which only a reviewer with the files can tell
/// apart; lower, even FEBRL's band fills with false pairs.
pub const DEFAULT_POSSIBLE_THRESHOLD: f64 = 0.75;

/// One fuzzy comparison: the score and, for scheme-2 encodings, why.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonMatch {
    pub score: f64,
    pub evidence: Option<PersonEvidence>,
}

/// A person encoding in the form comparisons read: scheme 1's filter, or
/// scheme 2 packed (`person::Packed`). Also what a fuzzy index entry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparable {
    Scheme1(Clk),
    Scheme2(Packed),
}

impl Comparable {
    /// `None` for a malformed encoding.
    pub fn of(e: &PersonEncoding) -> Option<Self> {
        if e.kind == 0 {
            Clk::from_bytes(&e.bloom).map(Self::Scheme1)
        } else {
            Packed::of(e).map(Self::Scheme2)
        }
    }

    /// How the encoding is kept as the value of its fuzzy index entry:
    /// scheme 1 as the bare 128-byte filter (as stores written before
    /// scheme 2 hold it), scheme 2 packed (`person::PACKED_BYTES`, never
    /// 128).
    pub fn index_value(&self) -> Vec<u8> {
        match self {
            Self::Scheme1(clk) => clk.to_bytes(),
            Self::Scheme2(p) => p.to_bytes(),
        }
    }

    /// The encoding in a fuzzy index value, read without allocating.
    pub fn from_index_value(v: &[u8]) -> Option<Self> {
        if v.len() == CLK_BITS / 8 {
            Clk::from_bytes(v).map(Self::Scheme1)
        } else {
            Packed::from_bytes(v).map(Self::Scheme2)
        }
    }

    /// Compares two encodings of the same block: scheme 1 by the Dice
    /// similarity of the record-level filters, scheme 2 by name similarity
    /// and date agreement (`person::Packed::compare`), with the evidence.
    /// `None` across schemes.
    pub fn compare(&self, other: &Self) -> Option<PersonMatch> {
        match (self, other) {
            (Self::Scheme1(a), Self::Scheme1(b)) => Some(PersonMatch {
                score: dice(&a.0, &b.0),
                evidence: None,
            }),
            (Self::Scheme2(a), Self::Scheme2(b)) => {
                let c = a.compare(b);
                Some(PersonMatch {
                    score: c.score,
                    evidence: Some(PersonEvidence {
                        name_similarity: c.name,
                        date: c.date as i32,
                        block: a.kind() as i32,
                        ..Default::default()
                    }),
                })
            }
            _ => None,
        }
    }
}

/// Compares two person encodings of the same block (see
/// [`Comparable::compare`]); `None` across schemes or when either is
/// malformed.
pub fn compare(a: &PersonEncoding, b: &PersonEncoding) -> Option<PersonMatch> {
    Comparable::of(a)?.compare(&Comparable::of(b)?)
}

/// What is wrong with a person encoding from a peer, if anything: scheme 1
/// needs a key version, a 16-byte block and a 128-byte filter; scheme 2 a
/// known block kind, a 128-byte name filter and 8-byte date tags.
pub fn encoding_problem(e: &PersonEncoding) -> Option<String> {
    let filter = CLK_BITS / 8;
    if e.key_version == 0 {
        return Some("needs a key version".into());
    }
    match BlockKind::try_from(e.kind) {
        Ok(BlockKind::Unspecified) => (e.block.len() != person::BLOCK_BYTES
            || e.bloom.len() != filter)
            .then(|| {
                format!(
                    "needs a {}-byte block and a {filter}-byte filter",
                    person::BLOCK_BYTES
                )
            }),
        Ok(_) => (!person::well_formed(e) || !e.bloom.is_empty()).then(|| {
            format!(
                "needs a {}-byte block, a {filter}-byte name filter, {}-byte date tags and no record-level filter",
                person::BLOCK_BYTES,
                person::TAG_BYTES
            )
        }),
        Err(_) => Some(format!("unknown block kind {}", e.kind)),
    }
}

/// Why two persons matched, in words for a reviewer: `name 0.88, day and
/// month swapped or year off by one, birth-year block, best of 2
/// candidates`.
pub fn describe_evidence(e: &PersonEvidence) -> String {
    use crate::proto::v1::DateAgreement as D;
    let date = match D::try_from(e.date) {
        Ok(D::Same) => "same date of birth",
        Ok(D::Misread) => "date of birth with day and month swapped or year off by one",
        Ok(D::TwoOfThree) => "two of year, month and day of birth agree",
        Ok(D::Partial) => "date of birth agrees as far as both are known",
        Ok(D::Missing) => "date of birth unknown on one side",
        Ok(D::Different) => "different date of birth",
        _ => "date of birth not compared",
    };
    let block = match BlockKind::try_from(e.block) {
        Ok(BlockKind::NameSound) => "name-sound block",
        _ => "birth-year block",
    };
    let rank = match (e.rank, e.candidates) {
        (_, 0 | 1) => String::new(),
        (1, n) => format!(", best of {n} candidates"),
        (r, n) => format!(", candidate {r} of {n}"),
    };
    format!("name {:.2}, {date}, {block}{rank}", e.name_similarity)
}

/// How a hit was found, for the notice gate: through an equal token, or by
/// comparing person encodings in a block of this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    Token,
    Encoding(BlockKind),
}

impl MatchedBy {
    /// How an encoding of this block kind matches.
    pub fn of_encoding(e: &PersonEncoding) -> Self {
        Self::Encoding(BlockKind::try_from(e.kind).unwrap_or(BlockKind::Unspecified))
    }

    /// How a match (a hit, a lookup answer) was found: `fuzzy` or not,
    /// and in which block by its evidence (scheme 1 has none).
    pub fn found(fuzzy: bool, evidence: Option<&PersonEvidence>) -> Self {
        if !fuzzy {
            return Self::Token;
        }
        Self::Encoding(
            evidence
                .and_then(|e| BlockKind::try_from(e.block).ok())
                .unwrap_or(BlockKind::Unspecified),
        )
    }

    pub fn of(hit: &Hit) -> Self {
        Self::found(hit.fuzzy, hit.evidence.as_ref())
    }
}

/// One person encoding as an index key prefix: key version, salt block.
pub fn encoding_block(e: &PersonEncoding) -> Vec<u8> {
    let mut k = e.key_version.to_be_bytes().to_vec();
    k.extend_from_slice(&e.block);
    k
}

/// The distinct person encodings of a stored alert (none for a tombstone).
pub fn encodings_of(record: &StoredAlert) -> Vec<&PersonEncoding> {
    let mut out: Vec<&PersonEncoding> = record
        .pseudonyms
        .iter()
        .flat_map(|s| s.encodings.iter())
        .collect();
    out.sort_by(|a, b| {
        (a.key_version, &a.block, &a.bloom, &a.name).cmp(&(
            b.key_version,
            &b.block,
            &b.bloom,
            &b.name,
        ))
    });
    out.dedup();
    out
}

/// One token as an index key: type, key version, value.
pub type TokenKey = (i32, u32, Vec<u8>);

/// The distinct tokens of a stored alert (none for a tombstone).
pub fn tokens_of(record: &StoredAlert) -> BTreeSet<TokenKey> {
    record
        .pseudonyms
        .iter()
        .flat_map(|s| s.tokens.iter())
        .map(|t| (t.r#type, t.key_version, t.value.clone()))
        .collect()
}

/// If `a` and `b` (sharing a token) make a hit for this node, the pair
/// (own alert, other alert).
pub fn hit_pair(scope: &MatchScope, a: &AlertId, b: &AlertId) -> Option<(AlertId, AlertId)> {
    if a.origin() == b.origin() {
        return None;
    }
    if a.origin() == &scope.own {
        Some((a.clone(), b.clone()))
    } else if b.origin() == &scope.own {
        Some((b.clone(), a.clone()))
    } else {
        None
    }
}

/// The hits one matching pass finds, merged by the hit rule: one per (own
/// alert, other alert, identifier type). Found both through an exact token
/// and through person encodings, a hit counts as exact (an exact match needs
/// the lesser disclosure level before its notice may go, and an equal token
/// is stronger evidence than any score); found in several blocks, the best
/// score and its evidence are kept. `hit.fuzzy` and `hit.strength` say how
/// each was found.
#[derive(Debug, Default)]
pub struct FoundHits(Vec<Hit>);

impl FoundHits {
    /// Adds a hit (`fuzzy` set for one found through person encodings).
    pub fn add(&mut self, hit: Hit) {
        let same = |h: &Hit| {
            h.local_alert_id == hit.local_alert_id
                && h.other_alert_id == hit.other_alert_id
                && h.r#type == hit.r#type
        };
        let Some(h) = self.0.iter_mut().find(|h| same(h)) else {
            self.0.push(hit);
            return;
        };
        if hit.fuzzy && h.fuzzy {
            if hit.similarity > h.similarity {
                *h = hit;
            }
            return;
        }
        // One exact, one fuzzy: the exact hit, with the fuzzy one's evidence.
        let (exact, fuzzy) = if h.fuzzy {
            (hit, h.clone())
        } else {
            (h.clone(), hit)
        };
        let evidence = fuzzy.evidence.or(exact.evidence);
        *h = Hit { evidence, ..exact };
    }

    /// Ranks the fuzzy person hits of the pass: they all concern the one
    /// alert being matched, so where it matched several persons the
    /// reviewer is told which scored best and how many there were.
    pub fn rank(&mut self) {
        let scores: Vec<f64> = self
            .0
            .iter()
            .filter(|h| h.fuzzy)
            .map(|h| h.similarity)
            .collect();
        for h in self.0.iter_mut().filter(|h| h.fuzzy) {
            if let Some(e) = h.evidence.as_mut() {
                e.rank = 1 + scores.iter().filter(|s| **s > h.similarity).count() as u32;
                e.candidates = scores.len() as u32;
            }
        }
    }

    /// Each distinct hit.
    pub fn iter(&self) -> impl Iterator<Item = &Hit> {
        self.0.iter()
    }
}

/// Whether the other side should be told about a hit found here.
pub fn notify(scope: &MatchScope, other: &AlertId) -> bool {
    scope.peers.now().is_peer(other.origin())
}

/// Decides whether a hit notice about one of our alerts may go to a peer. A
/// notice tells the peer that we hold an alert with the same identifier, so
/// it is a disclosure like any other: the node's sharing policy implements
/// this (see `sharing`), allowing a notice only when the policy would send
/// that peer the alert with that identifier type at that level anyway.
pub trait NoticeGate: Send + Sync {
    /// `by`: how the hit was found (an equal token, or encodings in which
    /// kind of block): a notice may only say what the peer would be sent.
    fn may_disclose(&self, own: &StoredAlert, peer: &AgencyId, kind: i32, by: MatchedBy) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> MatchScope {
        MatchScope {
            own: AgencyId::new("police").unwrap(),
            peers: Roster::new(crate::directory::roster::Members::ids([AgencyId::new(
                "ngo",
            )
            .unwrap()])),
            band: Band::default(),
        }
    }

    fn id(origin: &str) -> AlertId {
        AlertId::generate(&AgencyId::new(origin).unwrap())
    }

    #[test]
    fn only_cross_agency_pairs_involving_an_own_alert() {
        let s = scope();
        let (mine, mine2, ngo, labour) = (id("police"), id("police"), id("ngo"), id("labour"));
        assert_eq!(hit_pair(&s, &ngo, &mine), Some((mine.clone(), ngo.clone())));
        assert_eq!(hit_pair(&s, &mine, &ngo), Some((mine.clone(), ngo.clone())));
        assert_eq!(hit_pair(&s, &mine, &mine2), None, "same agency");
        assert_eq!(hit_pair(&s, &ngo, &labour), None, "not ours");
        assert!(notify(&s, &ngo));
        assert!(!notify(&s, &labour), "not a configured peer");
    }

    #[test]
    fn found_hits_merge_exact_over_fuzzy_keep_the_best_score_and_rank() {
        let hit = |other: &str, kind: i32, similarity: f64, fuzzy: bool| Hit {
            local_alert_id: "police:1".into(),
            other_alert_id: other.into(),
            r#type: kind,
            similarity,
            fuzzy,
            strength: if fuzzy {
                MatchStrength::Likely
            } else {
                MatchStrength::Exact
            } as i32,
            evidence: fuzzy.then(|| PersonEvidence {
                name_similarity: similarity,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut found = FoundHits::default();
        found.add(hit("ngo:1", 7, 0.8, true));
        found.add(hit("ngo:1", 7, 1.0, false));
        found.add(hit("ngo:1", 7, 0.9, true));
        found.add(hit("ngo:1", 2, 1.0, false));
        found.add(hit("ngo:2", 7, 0.85, true));
        found.add(hit("ngo:3", 7, 0.8, true));
        found.add(hit("ngo:3", 7, 0.95, true));
        found.rank();
        type Row<'a> = (&'a str, i32, f64, bool, i32, Option<(f64, u32, u32)>);
        let got: Vec<Row<'_>> = found
            .iter()
            .map(|h| {
                (
                    h.other_alert_id.as_str(),
                    h.r#type,
                    h.similarity,
                    h.fuzzy,
                    h.strength,
                    h.evidence
                        .as_ref()
                        .map(|e| (e.name_similarity, e.rank, e.candidates)),
                )
            })
            .collect();
        let (exact, likely) = (MatchStrength::Exact as i32, MatchStrength::Likely as i32);
        assert_eq!(
            got,
            [
                ("ngo:1", 7, 1.0, false, exact, Some((0.9, 0, 0))),
                ("ngo:1", 2, 1.0, false, exact, None),
                ("ngo:2", 7, 0.85, true, likely, Some((0.85, 2, 2))),
                ("ngo:3", 7, 0.95, true, likely, Some((0.95, 1, 2))),
            ]
        );
    }

    #[test]
    fn the_band_sorts_scores() {
        let band = Band {
            likely: 0.85,
            possible: 0.75,
        };
        assert_eq!(band.strength(0.9), Some(MatchStrength::Likely));
        assert_eq!(band.strength(0.85), Some(MatchStrength::Likely));
        assert_eq!(band.strength(0.8), Some(MatchStrength::Possible));
        assert_eq!(band.strength(0.75), Some(MatchStrength::Possible));
        assert_eq!(band.strength(0.74), None);
    }
}
