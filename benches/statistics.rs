//! Private federated statistics, measured on the code the nodes run
//! (`stats::tables`, `stats::vdaf`, `stats::publish`), in one process:
//!
//! 1. A generated federation of 5 members and 20,000 cases
//!    (`BENCH_CASES`), about a fifth of the people held by two agencies and
//!    some by three, each case linked to the others' alerts as hits link
//!    them. Each member measures its cases (the one-victim rule), shards
//!    them, and the leader and helper verify, sum and noise them; the
//!    released exploitation table is compared with the truth at
//!    epsilon 0.5, 1 and 2 (`BENCH_RUNS` releases each, default 5):
//!    the median relative error of cells whose true count is at least 50.
//! 2. Deduplication: people counted more than once (the pairwise rule's
//!    bound, chains of three where the first and last do not know each
//!    other) and people not counted at all.
//! 3. CPU time: one member sharding 10,000 cases; one aggregator's share
//!    of verifying and summing them (leader and helper apart).
//! 4. Bytes on the wire per case: the report shares a member sends both
//!    aggregators, and the verification traffic between the two.
//!
//! Run: `cargo bench --bench statistics`.

use std::time::Instant;

use casebridge::ids::{AlertId, CountryCode};
use casebridge::proto::v1::{Category, Indicator};
use casebridge::stats::plan::TableKind;
use casebridge::stats::publish;
use casebridge::stats::tables::{Case, Measurement, Shape, represents};
use casebridge::stats::vdaf::{Report, ReportShare, TableVdaf, VERIFY_KEY_LEN};

const MEMBERS: [&str; 5] = ["border", "labour", "ngo", "police", "shelter"];
const COUNTRIES: [&str; 8] = ["BG", "DE", "ES", "FR", "IT", "NL", "PL", "RO"];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (the bench's data, not its noise).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// One person: where and how exploited, and which members hold a case.
struct Person {
    country: usize,
    category: Category,
    holders: Vec<usize>,
    /// For three holders: whether the first and last know of each other.
    closed: bool,
}

fn people(cases: usize, rng: &mut Lcg) -> Vec<Person> {
    let categories = [
        Category::LabourExploitation,
        Category::SexualExploitation,
        Category::CriminalExploitation,
    ];
    let mut out = Vec::new();
    let mut n = 0;
    while n < cases {
        // Skewed: some countries and forms are hotspots.
        let country = rng.next(COUNTRIES.len()).min(rng.next(COUNTRIES.len()));
        let category = categories[rng.next(3).min(rng.next(3))];
        let holders = match rng.next(10) {
            0 => 3,
            1 | 2 => 2,
            _ => 1,
        };
        let mut hs: Vec<usize> = Vec::new();
        while hs.len() < holders {
            let m = rng.next(MEMBERS.len());
            if !hs.contains(&m) {
                hs.push(m);
            }
        }
        n += hs.len();
        out.push(Person {
            country,
            category,
            holders: hs,
            closed: rng.next(2) == 0,
        });
    }
    out
}

/// Each member's cases, with the alerts each is linked to by hits.
fn cases(people: &[Person], rng: &mut Lcg) -> Vec<Vec<Case>> {
    let mut by_member: Vec<Vec<Case>> = vec![Vec::new(); MEMBERS.len()];
    for p in people {
        let ids: Vec<AlertId> = p
            .holders
            .iter()
            .map(|m| {
                // Recorded in any order: which holder came first is chance.
                let serial = rng.next(1 << 40) as u128;
                format!(
                    "{}:{}",
                    MEMBERS[*m],
                    uuid::Uuid::from_u128(serial).hyphenated()
                )
                .parse()
                .unwrap()
            })
            .collect();
        for (i, m) in p.holders.iter().enumerate() {
            // A chain a–b–c: b knows both, a and c each other only if closed.
            let linked = ids
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i && (p.closed || i.abs_diff(*j) == 1))
                .map(|(_, id)| id.clone())
                .collect();
            by_member[*m].push(Case {
                alert: ids[i].clone(),
                country: Some(CountryCode::new(COUNTRIES[p.country]).unwrap()),
                category: p.category,
                indicators: vec![Indicator::Deception],
                linked,
                victim: None,
            });
        }
    }
    by_member
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let total = env_or("BENCH_CASES", 20_000);
    let runs = env_or("BENCH_RUNS", 5);
    let mut rng = Lcg(31);
    let people = people(total, &mut rng);
    let by_member = cases(&people, &mut rng);
    let countries: Vec<CountryCode> = COUNTRIES
        .iter()
        .map(|c| CountryCode::new(c).unwrap())
        .collect();
    let shape = Shape::of(TableKind::Exploitation, &countries);
    let vdaf = TableVdaf::new(&shape).unwrap();
    let ctx = b"casebridge bench";

    // The truth: each person once, in their cell.
    let mut truth = vec![0i128; shape.measurement_len()];
    for p in &people {
        let case = Case {
            alert: "x:00000000-0000-0000-0000-000000000001".parse().unwrap(),
            country: Some(countries[p.country]),
            category: p.category,
            indicators: Vec::new(),
            linked: Vec::new(),
            victim: None,
        };
        if let Measurement::Bucket(b) = shape.measure(&case, true, &countries) {
            truth[b] += 1;
        }
    }

    // Measurements, the one-victim rule, and the dedup error.
    let started = Instant::now();
    let mut counted_per_person = vec![0usize; people.len()];
    let mut reports: Vec<Report> = Vec::new();
    let mut shard_secs = Vec::new();
    for member in &by_member {
        let t = Instant::now();
        for case in member {
            let counted = represents(case);
            let m = shape.measure(case, counted, &countries);
            reports.push(vdaf.shard(ctx, &m).unwrap());
        }
        shard_secs.push((t.elapsed().as_secs_f64(), member.len()));
    }
    // How often each person was counted: their cases are in `people`
    // order within each member's list.
    let mut cursor: Vec<usize> = vec![0; MEMBERS.len()];
    for (p_idx, p) in people.iter().enumerate() {
        for m in &p.holders {
            counted_per_person[p_idx] += usize::from(represents(&by_member[*m][cursor[*m]]));
            cursor[*m] += 1;
        }
    }
    let twice = counted_per_person.iter().filter(|c| **c > 1).count();
    let never = counted_per_person.iter().filter(|c| **c == 0).count();
    let shared = people.iter().filter(|p| p.holders.len() > 1).count();
    println!(
        "federation: {} members, {} cases, {} people, {} of them held by 2 or 3 agencies ({:.1} s to generate and shard)",
        MEMBERS.len(),
        by_member.iter().map(Vec::len).sum::<usize>(),
        people.len(),
        shared,
        started.elapsed().as_secs_f64()
    );
    println!(
        "deduplication: {twice} people counted more than once ({:.2} % of people), {never} not counted",
        100.0 * twice as f64 / people.len() as f64
    );
    let (secs, n) = shard_secs
        .iter()
        .fold((0.0, 0), |(s, n), (a, b)| (s + a, n + b));
    println!(
        "CPU: sharding {:.0} µs per case, so {:.2} s for 10,000 cases",
        1e6 * secs / n as f64,
        1e4 * secs / n as f64
    );

    // Verification, as the two aggregators run it.
    let key = [42u8; VERIFY_KEY_LEN];
    let side = |i: usize| -> Vec<ReportShare<'_>> { reports.iter().map(|r| r.share(i)).collect() };
    let (leader_side, helper_side) = (side(0), side(1));
    let t = Instant::now();
    let leader_shares = vdaf.leader_shares(&key, ctx, &leader_side);
    let leader_first = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let messages = vdaf.helper_messages(&key, ctx, &helper_side, &leader_shares);
    let helper_first = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let leader = vdaf.finish(0, &key, ctx, &leader_side, &messages);
    let leader_secs = leader_first + t.elapsed().as_secs_f64();
    let t = Instant::now();
    let helper = vdaf.finish(1, &key, ctx, &helper_side, &messages);
    let helper_secs = helper_first + t.elapsed().as_secs_f64();
    assert_eq!(leader.count, reports.len());
    let per10k = |s: f64| 1e4 * s / reports.len() as f64;
    println!(
        "CPU: verifying and summing 10,000 reports: leader {:.2} s, helper {:.2} s",
        per10k(leader_secs),
        per10k(helper_secs)
    );
    let sizes = vdaf.sizes();
    let prepare: usize = leader_shares.iter().flatten().map(Vec::len).sum::<usize>()
        + messages.iter().flatten().map(Vec::len).sum::<usize>()
        + 2 * 16 * reports.len();
    println!(
        "bytes per case: {} to the leader, {} to the helper (public share, input share, nonce), {:.0} between the aggregators to verify it; the table has {} cells",
        sizes[0] + sizes[1] + 16,
        sizes[0] + sizes[2] + 16,
        prepare as f64 / reports.len() as f64,
        shape.cells()
    );

    // Accuracy of the released table at three epsilons.
    println!(
        "\n{:>8} {:>22} {:>22} {:>14}",
        "epsilon", "median rel. error ≥50", "max rel. error ≥50", "cells ≥50"
    );
    for eps_milli in [500u32, 1000, 2000] {
        let mut medians = Vec::new();
        let mut worst: f64 = 0.0;
        let mut big = 0;
        for _ in 0..runs {
            let a = vdaf
                .add_noise(&leader.aggregate, eps_milli, leader.count)
                .unwrap();
            let b = vdaf
                .add_noise(&helper.aggregate, eps_milli, helper.count)
                .unwrap();
            let noisy = vdaf.unshard([&a, &b], leader.count).unwrap();
            let errors: Vec<f64> = (0..shape.cells())
                .filter(|i| truth[*i] >= 50)
                .map(|i| ((noisy[i] - truth[i]) as f64 / truth[i] as f64).abs())
                .collect();
            big = errors.len();
            worst = errors.iter().copied().fold(worst, f64::max);
            medians.push(median(errors));
            let _ = publish::cells(&shape, &noisy, 11);
        }
        println!(
            "{:>8} {:>21.2}% {:>21.2}% {:>14}",
            f64::from(eps_milli) / 1000.0,
            100.0 * median(medians),
            100.0 * worst,
            big
        );
    }
}
