//! CaseBridge's person matching on records from a file, for
//! `benches/linkage/side_by_side.py` (which runs clkhash + anonlink on the
//! same records in the same run).
//!
//! Input: a tab-separated file with a header, columns `id entity given
//! family dob` (records of one entity are true matches). Every record is
//! encoded as a node encodes a person (`pseudo::clk::encode`, under a fresh
//! key ring), records are compared pairwise within their salt block, as
//! matching does, and the output is one JSON object: the number of
//! candidate pairs, the recall ceiling of the blocking (true pairs that
//! share a block), and every pair at or above 0.60 with its similarity.
//!
//! Run through the script: `benches/linkage/side_by_side.sh`.

use std::collections::BTreeMap;

use casebridge::ids::FederationName;
use casebridge::pseudo::clk::{dice, encode};
use casebridge::pseudo::{KeyRing, keyring};

const LOWEST: f64 = 0.60;

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
    let encoded: Vec<(String, _)> = rows
        .iter()
        .map(|r| encode(key, &field(r, 2), &field(r, 3), &field(r, 4)))
        .collect();
    let mut blocks: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (salt, _)) in encoded.iter().enumerate() {
        blocks.entry(salt.as_str()).or_default().push(i);
    }
    let mut candidates = 0u64;
    let mut pairs = Vec::new();
    for members in blocks.values() {
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                candidates += 1;
                let s = dice(&encoded[a].1.0, &encoded[b].1.0);
                if s >= LOWEST {
                    pairs.push(serde_json::json!([a, b, s]));
                }
            }
        }
    }
    // True pairs, and how many of them share a salt block.
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
                if encoded[a].0 == encoded[b].0 {
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
