//! Linkage quality and speed of fuzzy person matching as nodes do it
//! (scheme 2: `pseudo::person` encodings in every block, scored by
//! `matching::compare`).
//!
//! Run: `cargo bench --bench linkage`. Deterministic (seeded) synthetic data:
//! agency A holds 4,000 people; agency B holds about half of them again,
//! written with the errors real case files have (typos, swapped name fields,
//! missing given names, transliteration variants, partial or mistyped dates of
//! birth, now and then a wrong birth year), plus 2,000 people A does not have.
//! Every B record is compared with every A record in each block they share,
//! a pair counting once with its best score; pairs at or above a threshold
//! are predicted matches. Reports precision, recall and F1 per threshold, an
//! exact-token baseline, and the speed of comparisons: Dice on the name
//! filters against a bare popcount loop over the same words (the bound), and
//! whole comparisons (name Dice, date tags, score) per second.
//!
//! The side-by-side figures with clkhash + anonlink, on FEBRL and the
//! generated naming traditions, come from `benches/linkage/side_by_side.sh`.

use std::hint::black_box;
use std::time::Instant;

use casebridge::ids::FederationName;
use casebridge::matching::{Comparable, compare};
use casebridge::proto::v1::PersonEncoding;
use casebridge::pseudo::clk::{CLK_WORDS, Clk, dice};
use casebridge::pseudo::normalize;
use casebridge::pseudo::person::{Blocks, encode};
use casebridge::pseudo::{KeyRing, keyring};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const GIVEN: &[&str] = &[
    "Maria",
    "Ana",
    "Elena",
    "Ioana",
    "Andreea",
    "Mihai",
    "Andrei",
    "Ion",
    "Vasile",
    "Olena",
    "Oksana",
    "Iryna",
    "Oleksandr",
    "Dmytro",
    "Natalia",
    "Svetlana",
    "Aleksandr",
    "Sergei",
    "Chinonso",
    "Blessing",
    "Joy",
    "Precious",
    "Emeka",
    "Chukwuemeka",
    "Adaeze",
    "Ngozi",
    "Thi Lan",
    "Van Minh",
    "Thu Trang",
    "Quang",
    "Linh",
    "Hoa",
    "Arben",
    "Besnik",
    "Elira",
    "Fatjon",
    "Dritan",
    "Mohammed",
    "Ahmed",
    "Fatima",
    "Aisha",
    "Omar",
    "Youssef",
    "Samira",
    "Jean-Pierre",
    "Marie-Claire",
    "Li Wei",
    "Zhang Min",
    "Priya",
    "Rahul",
    "Anjali",
    "Rosa",
    "Juan Carlos",
    "Luz Maria",
    "Daniela",
    "Kateryna",
    "Yuliia",
    "Bogdan",
    "Florin",
    "Gabriela",
];
const FAMILY: &[&str] = &[
    "Popescu",
    "Ionescu",
    "Popa",
    "Dumitru",
    "Stan",
    "Stoica",
    "Gheorghe",
    "Rusu",
    "Munteanu",
    "Shevchenko",
    "Kovalenko",
    "Bondarenko",
    "Tkachenko",
    "Kravchenko",
    "Ivanova",
    "Petrova",
    "Okafor",
    "Okonkwo",
    "Eze",
    "Nwosu",
    "Adeyemi",
    "Obi",
    "Nguyen",
    "Tran",
    "Le",
    "Pham",
    "Hoang",
    "Vu",
    "Hoxha",
    "Krasniqi",
    "Gashi",
    "Berisha",
    "Shehu",
    "El Amrani",
    "Benali",
    "Haddad",
    "Mansour",
    "Rahman",
    "Hussain",
    "Khan",
    "Silva",
    "Santos",
    "Oliveira",
    "Garcia",
    "Rodriguez",
    "Martinez",
    "Kowalski",
    "Nowak",
    "Wisniewski",
    "Horvath",
    "Nagy",
    "Toth",
    "Dimitrov",
    "Georgiev",
    "Petrov",
    "Yilmaz",
    "Kaya",
    "Demir",
    "Singh",
    "Kumar",
];
/// Spelling variants seen across agencies and transliterations.
const VARIANTS: &[(&str, &str)] = &[
    ("Mohammed", "Muhammad"),
    ("Aleksandr", "Alexander"),
    ("Oleksandr", "Olexandr"),
    ("Yuliia", "Yulia"),
    ("Natalia", "Nataliya"),
    ("Sergei", "Sergey"),
    ("Kateryna", "Katerina"),
    ("Shevchenko", "Ševčenko"),
    ("Nguyen", "Nguyễn"),
    ("Hoxha", "Hodža"),
    ("Youssef", "Yusuf"),
    ("Iryna", "Irina"),
    ("Okafor", "Okafo"),
    ("Ivanova", "Иванова"),
];

#[derive(Clone)]
struct Person {
    id: usize,
    given: String,
    family: String,
    dob: String,
}

fn typo(rng: &mut StdRng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 3 {
        return s.to_owned();
    }
    let i = rng.random_range(1..c.len() - 1);
    match rng.random_range(0..4) {
        0 => c[i] = (b'a' + rng.random_range(0..26u8)) as char,
        1 => {
            c.remove(i);
        }
        2 => c.insert(i, (b'a' + rng.random_range(0..26u8)) as char),
        _ => c.swap(i, i + 1),
    }
    c.into_iter().collect()
}

fn variant(s: &str) -> String {
    VARIANTS
        .iter()
        .find_map(|(a, b)| {
            (*a == s)
                .then(|| (*b).to_owned())
                .or_else(|| (*b == s).then(|| (*a).to_owned()))
        })
        .unwrap_or_else(|| s.to_owned())
}

fn corrupt(rng: &mut StdRng, p: &Person) -> Person {
    let mut q = p.clone();
    if rng.random_bool(0.3) {
        q.given = typo(rng, &q.given);
    }
    if rng.random_bool(0.3) {
        q.family = typo(rng, &q.family);
    }
    if rng.random_bool(0.15) {
        q.given = variant(&q.given);
        q.family = variant(&q.family);
    }
    if rng.random_bool(0.1) {
        std::mem::swap(&mut q.given, &mut q.family);
    }
    if rng.random_bool(0.1) {
        q.given.clear();
    }
    let (y, rest) = q.dob.split_at(4);
    let roll: f64 = rng.random();
    q.dob = if roll < 0.08 {
        y.to_owned() // year only
    } else if roll < 0.15 {
        format!("{y}{}", &rest[..3]) // year-month
    } else if roll < 0.2 {
        let d: u32 = rest[4..].parse::<u32>().unwrap() % 28 + 1;
        format!("{y}{}-{d:02}", &rest[..3]) // mistyped day
    } else if roll < 0.23 {
        format!("{}{rest}", y.parse::<u32>().unwrap() + 1) // a year off: met by name sound
    } else {
        q.dob.clone()
    };
    q
}

fn person(rng: &mut StdRng, id: usize) -> Person {
    let given = GIVEN[rng.random_range(0..GIVEN.len())].to_owned();
    let family = FAMILY[rng.random_range(0..FAMILY.len())].to_owned();
    let dob = format!(
        "{}-{:02}-{:02}",
        rng.random_range(1965..2009),
        rng.random_range(1..13),
        rng.random_range(1..29)
    );
    Person {
        id,
        given,
        family,
        dob,
    }
}

/// The same three popcounts per word as Dice, summed with no division or
/// call per pair, compiled for the same CPU targets: the throughput bound.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vpopcntdq",
    "x86_64+avx2+popcnt",
    "x86_64+popcnt",
    "aarch64+neon"
))]
fn popcounts(filters: &[[u64; CLK_WORDS]], probe: &[u64; CLK_WORDS]) -> u32 {
    let mut ones = 0u32;
    for f in filters {
        for i in 0..CLK_WORDS {
            ones = ones.wrapping_add(
                (f[i] & probe[i]).count_ones() + f[i].count_ones() + probe[i].count_ones(),
            );
        }
    }
    ones
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    keyring::generate(&path, &FederationName::new("bench.cb").unwrap()).unwrap();
    let ring = KeyRing::load(&path).unwrap();
    let key = ring.key(1).unwrap();
    let mut rng = StdRng::seed_from_u64(20261128);

    let a: Vec<Person> = (0..4000).map(|i| person(&mut rng, i)).collect();
    let mut b: Vec<Person> = Vec::new();
    for p in &a {
        if rng.random_bool(0.5) {
            b.push(corrupt(&mut rng, p));
        }
    }
    let true_links = b.len();
    b.extend((0..2000).map(|i| person(&mut rng, 100_000 + i)));

    let t = Instant::now();
    let enc = |p: &Person| {
        encode(
            key,
            &p.given,
            &p.family,
            &p.dob,
            Blocks::BirthYearAndNameSound,
        )
    };
    let ea: Vec<Vec<PersonEncoding>> = a.iter().map(enc).collect();
    let eb: Vec<Vec<PersonEncoding>> = b.iter().map(enc).collect();
    let encode_rate = (a.len() + b.len()) as f64 / t.elapsed().as_secs_f64();

    // A's encodings by block, then every B encoding against its block.
    let mut blocks: std::collections::HashMap<&[u8], Vec<(usize, &PersonEncoding)>> =
        std::collections::HashMap::new();
    for (i, encodings) in ea.iter().enumerate() {
        for e in encodings {
            blocks.entry(&e.block).or_default().push((i, e));
        }
    }
    let mut best: std::collections::HashMap<(usize, usize), f64> = Default::default();
    let mut candidates = 0usize;
    for (j, encodings) in eb.iter().enumerate() {
        for e in encodings {
            for (i, other) in blocks.get(e.block.as_slice()).into_iter().flatten() {
                candidates += 1;
                let score = compare(e, other).expect("well formed").score;
                let slot = best.entry((*i, j)).or_insert(0.0);
                *slot = slot.max(score);
            }
        }
    }
    let scored: Vec<(f64, bool)> = best
        .iter()
        .map(|((i, j), s)| (*s, a[*i].id == b[*j].id))
        .collect();
    println!(
        "synthetic linkage: A {} people, B {} records ({} true links, {} non-matching), {} comparisons in {} blocks; encoding {:.0} records/s",
        a.len(),
        b.len(),
        true_links,
        b.len() - true_links,
        candidates,
        blocks.len(),
        encode_rate
    );
    println!(
        "{:>9} {:>9} {:>9} {:>9}",
        "threshold", "precision", "recall", "F1"
    );
    for t in [0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95] {
        let tp = scored.iter().filter(|(s, m)| *s >= t && *m).count() as f64;
        let fp = scored.iter().filter(|(s, m)| *s >= t && !*m).count() as f64;
        let precision = if tp + fp == 0.0 { 1.0 } else { tp / (tp + fp) };
        let recall = tp / true_links as f64;
        let f1 = 2.0 * precision * recall / (precision + recall);
        println!("{t:>9.2} {precision:>9.3} {recall:>9.3} {f1:>9.3}");
    }
    let exact = b
        .iter()
        .filter(|pb| {
            a.iter().any(|pa| {
                pa.id == pb.id
                    && normalize::name(&pa.given) == normalize::name(&pb.given)
                    && normalize::name(&pa.family) == normalize::name(&pb.family)
                    && pa.dob == pb.dob
            })
        })
        .count();
    println!(
        "exact person token (name + full date) recall: {:.3}",
        exact as f64 / true_links as f64
    );

    // Speed: Dice over a realistic working set of name filters vs a bare
    // popcount loop over the same words (the machine's popcount bound for
    // this data), and whole comparisons.
    let stored: Vec<&PersonEncoding> = ea.iter().flatten().collect();
    let filters: Vec<[u64; CLK_WORDS]> = stored
        .iter()
        .map(|e| Clk::from_bytes(&e.name).unwrap().0)
        .collect();
    let probe_encoding = &eb[0][0];
    let probe = Clk::from_bytes(&probe_encoding.name).unwrap().0;
    // As the matching pass reads them: the probe packed once, each
    // candidate read from its index value.
    let probe_comparable = Comparable::of(probe_encoding).unwrap();
    let index_values: Vec<Vec<u8>> = stored
        .iter()
        .map(|e| Comparable::of(e).unwrap().index_value())
        .collect();
    let rounds = 50;
    let (mut best_dice, mut best_pop, mut best_compare) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        let mut acc = 0.0;
        for _ in 0..rounds {
            for f in &filters {
                acc += dice(black_box(f), black_box(&probe));
            }
        }
        black_box(acc);
        best_dice = best_dice.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut ones = 0u32;
        for _ in 0..rounds {
            ones = ones.wrapping_add(popcounts(black_box(&filters), &probe));
        }
        black_box(ones);
        best_pop = best_pop.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut acc = 0.0;
        for _ in 0..rounds {
            for v in &index_values {
                acc += Comparable::from_index_value(black_box(v))
                    .and_then(|c| probe_comparable.compare(&c))
                    .map_or(0.0, |m| m.score);
            }
        }
        black_box(acc);
        best_compare = best_compare.min(t.elapsed().as_secs_f64());
    }
    let n = (rounds * filters.len()) as f64;
    println!(
        "Dice comparisons: {:.1} M/s; popcount bound (same words, no division, same CPU dispatch): {:.1} M/s; Dice reaches {:.0}% of it",
        n / best_dice / 1e6,
        n / best_pop / 1e6,
        100.0 * best_pop / best_dice
    );
    println!(
        "whole comparisons as the matching pass makes them (index value read, name Dice, date tags, score): {:.1} M/s per core",
        n / best_compare / 1e6
    );
}
