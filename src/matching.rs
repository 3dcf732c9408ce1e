//! Hit detection rules. Pure: the store applies them in the matching pass
//! inside each write's transaction (see `store::index`), so an alert, its
//! index entries and the hits it causes commit, and are synced, together.
//!
//! A hit is recorded when two alerts from **different agencies** share a
//! token (same identifier type, key version and value) and at least one of
//! them is this agency's own: a node does not track relations between two
//! other agencies' alerts. Each (own alert, other alert, type) is recorded
//! once, however often either side is updated or redelivered.

use std::collections::BTreeSet;

use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::{Hit, PersonEncoding, StoredAlert};
use crate::pseudo::clk::{Clk, dice};

/// Whose alerts count as "own", and which agencies may be sent hit notices.
#[derive(Debug, Clone)]
pub struct MatchScope {
    pub own: AgencyId,
    pub peers: BTreeSet<AgencyId>,
    /// Least Dice similarity of two person encodings that makes a fuzzy hit.
    pub fuzzy_threshold: f64,
}

/// Default fuzzy threshold: the best F1 on the `linkage` bench's synthetic
/// data (precision 0.96, recall 0.90, F1 0.93 at 0.75; 0.80 gives precision
/// 0.99 at recall 0.83 for agencies that prefer fewer false hits).
pub const DEFAULT_FUZZY_THRESHOLD: f64 = 0.75;

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
        (a.key_version, &a.block, &a.bloom).cmp(&(b.key_version, &b.block, &b.bloom))
    });
    out.dedup();
    out
}

/// Dice similarity of two encodings of the same block, if well-formed.
pub fn similarity(a: &[u8], b: &[u8]) -> Option<f64> {
    let (a, b) = (Clk::from_bytes(a)?, Clk::from_bytes(b)?);
    Some(dice(&a.0, &b.0))
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
/// the lesser disclosure level before its notice may go), and the best
/// similarity is kept.
#[derive(Debug, Default)]
pub struct FoundHits(Vec<(Hit, bool)>);

impl FoundHits {
    /// Adds a hit; `fuzzy`: found through person encodings.
    pub fn add(&mut self, hit: Hit, fuzzy: bool) {
        let same = |h: &Hit| {
            h.local_alert_id == hit.local_alert_id
                && h.other_alert_id == hit.other_alert_id
                && h.r#type == hit.r#type
        };
        match self.0.iter_mut().find(|(h, _)| same(h)) {
            Some((h, f)) => {
                *f &= fuzzy;
                h.similarity = h.similarity.max(hit.similarity);
            }
            None => self.0.push((hit, fuzzy)),
        }
    }

    /// Each distinct hit, with whether it was found only through encodings.
    pub fn iter(&self) -> impl Iterator<Item = (&Hit, bool)> {
        self.0.iter().map(|(h, f)| (h, *f))
    }
}

/// Whether the other side should be told about a hit found here.
pub fn notify(scope: &MatchScope, other: &AlertId) -> bool {
    scope.peers.contains(other.origin())
}

/// Decides whether a hit notice about one of our alerts may go to a peer. A
/// notice tells the peer that we hold an alert with the same identifier, so
/// it is a disclosure like any other: the node's sharing policy implements
/// this (see `sharing`), allowing a notice only when the policy would send
/// that peer the alert with that identifier type at that level anyway.
pub trait NoticeGate: Send + Sync {
    /// `fuzzy`: the hit came from person encodings rather than exact tokens.
    fn may_disclose(&self, own: &StoredAlert, peer: &AgencyId, kind: i32, fuzzy: bool) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> MatchScope {
        MatchScope {
            own: AgencyId::new("police").unwrap(),
            peers: [AgencyId::new("ngo").unwrap()].into(),
            fuzzy_threshold: DEFAULT_FUZZY_THRESHOLD,
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
    fn found_hits_merge_exact_over_fuzzy_and_keep_the_best_similarity() {
        let hit = |other: &str, kind: i32, similarity: f64| Hit {
            local_alert_id: "police:1".into(),
            other_alert_id: other.into(),
            r#type: kind,
            similarity,
            ..Default::default()
        };
        let mut found = FoundHits::default();
        found.add(hit("ngo:1", 7, 0.8), true);
        found.add(hit("ngo:1", 7, 1.0), false);
        found.add(hit("ngo:1", 7, 0.9), true);
        found.add(hit("ngo:1", 2, 1.0), false);
        found.add(hit("ngo:2", 7, 0.85), true);
        let got: Vec<(&str, i32, f64, bool)> = found
            .iter()
            .map(|(h, f)| (h.other_alert_id.as_str(), h.r#type, h.similarity, f))
            .collect();
        assert_eq!(
            got,
            [
                ("ngo:1", 7, 1.0, false),
                ("ngo:1", 2, 1.0, false),
                ("ngo:2", 7, 0.85, true)
            ]
        );
    }
}
