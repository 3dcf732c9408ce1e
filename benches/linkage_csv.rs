//! CaseBridge's person matching on records from a file, for
//! `benches/linkage/side_by_side.py` (which runs clkhash + anonlink on the
//! same records in the same run).
//!
//! Input: a tab-separated file with a header, columns `id entity given
//! family dob` (records of one entity are true matches). Every record is
//! encoded as a node encodes a person, under a fresh key ring, records are
//! compared pairwise within each block they share, as matching does, a pair
//! found in several blocks counting once with its best score, and the output
//! is one JSON object: the number of candidate pairs, the recall ceiling of
//! the blocking (true pairs that share a block), and every pair at or above
//! 0.50 with its score.
//!
//! `LINKAGE_SCHEME`:
//! - `1`: scheme 1, what nodes shared before (one record-level filter,
//!   year-of-birth blocks, Dice similarity);
//! - `2` (default): scheme 2 as `Pseudonymizer::encodings` makes it and
//!   `matching::compare` scores it; with `LINKAGE_BLOCKS=year` only the
//!   birth-year blocks (a peer the policy grants `fuzzy`), otherwise every
//!   block (`fuzzy_wide`).
//!
//! `LINKAGE_DUMP=1` prints, instead of pairs, what a peer would see of each
//! record: `record block filter-hex` per encoding (scheme 2: the name
//! filter), for `benches/linkage/frequency_attack.py`.
//!
//! Run through the script: `benches/linkage/side_by_side.sh`.

use std::collections::BTreeMap;

use casebridge::ids::FederationName;
use casebridge::matching::compare;
use casebridge::proto::v1::PersonEncoding;
use casebridge::pseudo::clk::{Clk, dice, encode};
use casebridge::pseudo::person::{self, Blocks};
use casebridge::pseudo::{KeyRing, keyring};

const LOWEST: f64 = 0.50;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: linkage_csv FILE.tsv");
    let text = std::fs::read_to_string(&path).expect("readable input");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let ring_path = dir.path().join("keys.toml");
    keyring::generate(&ring_path, &FederationName::new("linkage.cb").unwrap()).unwrap();
    let ring = KeyRing::load(&ring_path).unwrap();
    let key = ring.key(1).unwrap();
    let field = |r: &[&str], i: usize| r.get(i).copied().unwrap_or("").to_string();
    let scheme1 = std::env::var("LINKAGE_SCHEME").is_ok_and(|s| s == "1");
    let blocks = if std::env::var("LINKAGE_BLOCKS").is_ok_and(|b| b == "year") {
        Blocks::BirthYear
    } else {
        Blocks::BirthYearAndNameSound
    };
    // Every encoding of every record; scheme 1's salt stands in for its
    // block, and its filter goes in `bloom`, as a node stores it.
    let encoded: Vec<Vec<PersonEncoding>> = rows
        .iter()
        .map(|r| {
            let (g, f, d) = (field(r, 2), field(r, 3), field(r, 4));
            if scheme1 {
                let (salt, clk) = encode(key, &g, &f, &d);
                return vec![PersonEncoding {
                    key_version: 1,
                    block: salt.into_bytes(),
                    bloom: clk.to_bytes(),
                    ..Default::default()
                }];
            }
            person::encode(key, &g, &f, &d, blocks)
        })
        .collect();
    if std::env::var("LINKAGE_DUMP").is_ok() {
        for (i, encodings) in encoded.iter().enumerate() {
            for e in encodings {
                let filter = if scheme1 { &e.bloom } else { &e.name };
                let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
                println!("{i}\t{}\t{}", hex(&e.block), hex(filter));
            }
        }
        return;
    }
    let mut by_block: BTreeMap<&[u8], Vec<(usize, usize)>> = BTreeMap::new();
    for (i, encodings) in encoded.iter().enumerate() {
        for (e, enc) in encodings.iter().enumerate() {
            by_block.entry(&enc.block).or_default().push((i, e));
        }
    }
    let mut candidates = 0u64;
    let mut best: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    // `LINKAGE_EVIDENCE=1`: per pair the best (name, date level) by score,
    // for choosing the weights (benches/linkage/weights.py).
    let evidence_out = std::env::var("LINKAGE_EVIDENCE").is_ok();
    let mut evidence: BTreeMap<(usize, usize), (f64, f64, i32)> = BTreeMap::new();
    for members in by_block.values() {
        for (x, &(a, ea)) in members.iter().enumerate() {
            for &(b, eb) in &members[x + 1..] {
                if a == b {
                    continue;
                }
                candidates += 1;
                let (ra, rb) = (&encoded[a][ea], &encoded[b][eb]);
                if evidence_out && !scheme1 {
                    let c = compare(ra, rb).expect("well-formed encodings");
                    let e = c.evidence.expect("scheme 2 has evidence");
                    let slot = evidence
                        .entry((a.min(b), a.max(b)))
                        .or_insert((-1.0, 0.0, 0));
                    if c.score > slot.0 {
                        *slot = (c.score, e.name_similarity, e.date);
                    }
                    continue;
                }
                let score = if scheme1 {
                    let (ca, cb) = (
                        Clk::from_bytes(&ra.bloom).unwrap(),
                        Clk::from_bytes(&rb.bloom).unwrap(),
                    );
                    dice(&ca.0, &cb.0)
                } else {
                    compare(ra, rb).expect("well-formed encodings").score
                };
                if score >= LOWEST {
                    let e = best.entry((a.min(b), a.max(b))).or_insert(0.0);
                    *e = e.max(score);
                }
            }
        }
    }
    let pairs: Vec<_> = if evidence_out {
        evidence
            .iter()
            .filter(|(_, (_, name, _))| *name >= 0.4)
            .map(|((a, b), (_, name, date))| serde_json::json!([a, b, name, date]))
            .collect()
    } else {
        best.iter()
            .map(|((a, b), s)| serde_json::json!([a, b, s]))
            .collect()
    };
    let shares_block = |a: usize, b: usize| {
        encoded[a]
            .iter()
            .any(|x| encoded[b].iter().any(|y| x.block == y.block))
    };
    // True pairs, and how many of them share a block.
    let mut by_entity: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_entity
            .entry(r.get(1).copied().unwrap_or(""))
            .or_default()
            .push(i);
    }
    let (mut truth, mut together) = (0u64, 0u64);
    for members in by_entity.values() {
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                truth += 1;
                if shares_block(a, b) {
                    together += 1;
                }
            }
        }
    }
    let out = serde_json::json!({
        "records": rows.len(),
        "candidates": candidates,
        "true_pairs": truth,
        "blocking_recall": if truth == 0 { 1.0 } else { together as f64 / truth as f64 },
        "pairs": pairs,
    });
    println!("{out}");
}
