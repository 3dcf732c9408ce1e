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
use casebridge::pseudo::clk::{
    Clk, dice, encode, encode_by_name_sound, encode_fields, salt, sound_keys,
};
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
    // `LINKAGE_BLOCKS=year` (what nodes share today), `year+sound` (plus
    // the name-sound encodings), or `fields` (year and name-sound blocks,
    // each pair scored from separate name and date filters).
    let blocks_env = std::env::var("LINKAGE_BLOCKS").unwrap_or_default();
    let fields = blocks_env.contains("fields");
    let rule_min = std::env::var("LINKAGE_RULE").is_ok_and(|r| r == "min");
    let with_sound = fields || blocks_env.contains("sound");
    // Every encoding of every record, by block (salt): a pair found in
    // several blocks is one pair, with its best similarity.
    let encoded: Vec<Vec<(String, Clk, Option<Clk>)>> = rows
        .iter()
        .map(|r| {
            let (g, f, d) = (field(r, 2), field(r, 3), field(r, 4));
            if fields {
                let mut salts = vec![salt(&d)];
                salts.extend(sound_keys(&g, &f).into_iter().map(|k| format!("sound:{k}")));
                return salts
                    .into_iter()
                    .map(|s| {
                        let (name, date) = encode_fields(key, &s, &g, &f, &d);
                        (s, name, date)
                    })
                    .collect();
            }
            let mut all = vec![encode(key, &g, &f, &d)];
            if with_sound {
                all.extend(encode_by_name_sound(key, &g, &f, &d));
            }
            all.into_iter().map(|(s, c)| (s, c, None)).collect()
        })
        .collect();
    // `LINKAGE_DUMP=1` prints, instead of pairs, what a peer would see of
    // each record: its blocks and filters (`record block filter-hex`; in
    // `fields` mode the name filter), for the frequency attack in
    // benches/linkage/frequency_attack.py.
    if std::env::var("LINKAGE_DUMP").is_ok() {
        for (i, encodings) in encoded.iter().enumerate() {
            for (salt, clk, _) in encodings {
                let bytes = clk.to_bytes();
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                println!("{i}\t{salt}\t{hex}");
            }
        }
        return;
    }
    let mut blocks: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (i, encodings) in encoded.iter().enumerate() {
        for (e, (salt, _, _)) in encodings.iter().enumerate() {
            blocks.entry(salt.as_str()).or_default().push((i, e));
        }
    }
    let mut candidates = 0u64;
    let mut best: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    // With `LINKAGE_RULE=em`: per pair the best (name, date) agreement over
    // its blocks, scored afterwards by Fellegi-Sunter weights learnt by EM.
    let rule_em = std::env::var("LINKAGE_RULE").is_ok_and(|r| r == "em");
    let mut agreement: BTreeMap<(usize, usize), (f64, Option<f64>)> = BTreeMap::new();
    for members in blocks.values() {
        for (x, &(a, ea)) in members.iter().enumerate() {
            for &(b, eb) in &members[x + 1..] {
                if a == b {
                    continue;
                }
                candidates += 1;
                let (ra, rb) = (&encoded[a][ea], &encoded[b][eb]);
                let name = dice(&ra.1.0, &rb.1.0);
                let date = match (&ra.2, &rb.2) {
                    (Some(da), Some(db)) => Some(dice(&da.0, &db.0)),
                    _ => None,
                };
                if rule_em {
                    let e = agreement.entry((a.min(b), a.max(b))).or_insert((0.0, None));
                    if name + date.unwrap_or(0.0) > e.0 + e.1.unwrap_or(0.0) {
                        *e = (name, date);
                    }
                    continue;
                }
                let s = match (fields, date) {
                    // Both fields when both dates are known (`LINKAGE_RULE`:
                    // their mean, or the weaker of the two so both must
                    // agree); a missing date is weaker evidence than an
                    // agreeing one.
                    (true, Some(date)) => {
                        if rule_min {
                            name.min(date)
                        } else {
                            (name + date) / 2.0
                        }
                    }
                    (true, None) => name * 0.85,
                    (false, _) => name,
                };
                if s >= LOWEST {
                    let e = best.entry((a.min(b), a.max(b))).or_insert(0.0);
                    *e = e.max(s);
                }
            }
        }
    }
    if rule_em {
        for (pair, p) in fellegi_sunter(&agreement) {
            if p >= LOWEST {
                best.insert(pair, p);
            }
        }
    }
    let pairs: Vec<_> = best
        .iter()
        .map(|((a, b), s)| serde_json::json!([a, b, s]))
        .collect();
    let shares_block = |a: usize, b: usize| {
        encoded[a]
            .iter()
            .any(|(sa, _, _)| encoded[b].iter().any(|(sb, _, _)| sa == sb))
    };
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

/// Agreement levels of a name similarity (0 = weakest).
fn name_level(s: f64) -> usize {
    match s {
        s if s >= 0.95 => 4,
        s if s >= 0.85 => 3,
        s if s >= 0.75 => 2,
        s if s >= 0.6 => 1,
        _ => 0,
    }
}

/// Agreement levels of a date similarity; the last level is "missing".
fn date_level(s: Option<f64>) -> usize {
    match s {
        Some(s) if s >= 0.95 => 0,
        Some(s) if s >= 0.8 => 1,
        Some(s) if s >= 0.6 => 2,
        Some(_) => 3,
        None => 4,
    }
}

/// Fellegi-Sunter without labels: two classes (match, non-match), the name
/// and date agreement levels independent within a class, parameters
/// estimated by EM over the candidate pairs. Returns each pair's posterior
/// probability of being a match.
fn fellegi_sunter(
    pairs: &BTreeMap<(usize, usize), (f64, Option<f64>)>,
) -> Vec<((usize, usize), f64)> {
    let levels: Vec<((usize, usize), usize, usize)> = pairs
        .iter()
        .map(|(k, (n, d))| (*k, name_level(*n), date_level(*d)))
        .collect();
    let (mut p, mut m_n, mut u_n, mut m_d, mut u_d) = (
        0.01,
        [0.05, 0.1, 0.15, 0.3, 0.4],
        [0.5, 0.3, 0.12, 0.06, 0.02],
        [0.5, 0.2, 0.1, 0.05, 0.15],
        [0.05, 0.15, 0.3, 0.4, 0.1],
    );
    let posterior = |p: f64,
                     m_n: &[f64; 5],
                     u_n: &[f64; 5],
                     m_d: &[f64; 5],
                     u_d: &[f64; 5],
                     n: usize,
                     d: usize| {
        let m = p * m_n[n] * m_d[d];
        let u = (1.0 - p) * u_n[n] * u_d[d];
        if m + u == 0.0 { 0.0 } else { m / (m + u) }
    };
    for _ in 0..50 {
        let (mut sp, mut cm_n, mut cu_n, mut cm_d, mut cu_d) =
            (0.0, [1e-9; 5], [1e-9; 5], [1e-9; 5], [1e-9; 5]);
        for &(_, n, d) in &levels {
            let g = posterior(p, &m_n, &u_n, &m_d, &u_d, n, d);
            sp += g;
            cm_n[n] += g;
            cu_n[n] += 1.0 - g;
            cm_d[d] += g;
            cu_d[d] += 1.0 - g;
        }
        let total = levels.len() as f64;
        p = (sp / total).clamp(1e-6, 0.5);
        let norm = |c: [f64; 5]| {
            let s: f64 = c.iter().sum();
            c.map(|x| x / s)
        };
        (m_n, u_n, m_d, u_d) = (norm(cm_n), norm(cu_n), norm(cm_d), norm(cu_d));
    }
    levels
        .into_iter()
        .map(|(k, n, d)| (k, posterior(p, &m_n, &u_n, &m_d, &u_d, n, d)))
        .collect()
}
