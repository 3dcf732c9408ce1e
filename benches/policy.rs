//! Sharing-policy cost: decisions per second with 100 rules and 50 peers,
//! and the policy work a submitted alert adds (evaluate for every peer, build
//! each granted envelope).
//!
//! Run: `cargo bench --bench policy`.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::Path;
use std::time::{Instant, SystemTime};

use casebridge::ids::{AgencyId, AlertId};
use casebridge::policy::shared_view_with;
use casebridge::policy::{evaluate, evaluate_all, parse};
use casebridge::proto::v1::{Alert, AlertContent, Location, SharedSubject, StoredAlert, Token};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CATEGORIES: [&str; 6] = [
    "labour_exploitation",
    "sexual_exploitation",
    "criminal_exploitation",
    "child_trafficking",
    "organ_removal",
    "other",
];
const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
const TLPS: [&str; 4] = ["clear", "green", "amber", "amber_strict"];

fn main() {
    let mut rng = StdRng::seed_from_u64(7);
    let peers: Vec<AgencyId> = (0..50)
        .map(|i| AgencyId::new(format!("agency-{i:02}")).unwrap())
        .collect();
    let peer_set: BTreeSet<AgencyId> = peers.iter().cloned().collect();

    // 10 groups of 5 peers; 100 rules mixing groups and named peers with 1-3
    // conditions each, so most alerts walk deep into the list.
    let mut src = String::from("[groups]\n");
    for g in 0..10 {
        let members: Vec<String> = (0..5)
            .map(|i| format!("\"{}\"", peers[g * 5 + i]))
            .collect();
        src.push_str(&format!("g{g} = [{}]\n", members.join(", ")));
    }
    for r in 0..100 {
        let effect = if r % 7 == 0 { "deny" } else { "share" };
        src.push_str(&format!(
            "\n[[rules]]\nname = \"r{r}\"\neffect = \"{effect}\"\n"
        ));
        if r % 2 == 0 {
            src.push_str(&format!("groups = [\"g{}\"]\n", r % 10));
        } else {
            src.push_str(&format!(
                "peers = [\"{}\", \"{}\"]\n",
                peers[r % 50],
                peers[(r * 7) % 50]
            ));
        }
        src.push_str("[rules.when]\n");
        src.push_str(&format!("categories = [\"{}\"]\n", CATEGORIES[r % 6]));
        src.push_str(&format!("min_severity = \"{}\"\n", SEVERITIES[r % 4]));
        // Distinct ages keep every rule reachable (validation rejects shadowed rules).
        src.push_str(&format!("max_age_days = {}\n", 3650 - r));
        if r % 3 == 0 {
            src.push_str(&format!(
                "tlp = [\"{}\", \"{}\"]\n",
                TLPS[r % 4],
                TLPS[(r + 1) % 4]
            ));
        }
        if effect == "share" {
            src.push_str("[rules.share]\nlocation = \"region\"\ntime = \"month\"\nidentifiers = { phone = \"exact\", person = \"fuzzy\" }\n");
        }
    }
    let policy =
        parse(Path::new("bench.toml"), &src, &peer_set).expect("generated policy validates");
    let own = AgencyId::new("police").unwrap();

    let alerts: Vec<StoredAlert> = (0..1000)
        .map(|_| StoredAlert {
            tokens_pending: false,
            alert: Some(Alert {
                id: AlertId::generate(&own).to_string(),
                origin: own.to_string(),
                version: 1,
                created_at: Some(pbjson_types::Timestamp {
                    seconds: 1_790_000_000,
                    nanos: 0,
                }),
                content: Some(AlertContent {
                    category: rng.random_range(1..=6),
                    severity: rng.random_range(1..=4),
                    tlp: rng.random_range(1..=4),
                    location: Some(Location {
                        country: "NL".into(),
                        region: "Zuid-Holland".into(),
                        city: "Westland".into(),
                    }),
                    narrative: "x".repeat(500),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            shared_with: vec![],
            withdrawn_from: vec![],
            pseudonyms: vec![SharedSubject {
                role: 1,
                tokens: (1..=4)
                    .map(|t| Token {
                        r#type: t,
                        key_version: 1,
                        value: vec![t as u8; 32],
                    })
                    .collect(),
                encodings: vec![],
            }],
        })
        .collect();
    let now = SystemTime::now();

    let mut best = f64::MAX;
    let mut shared = 0usize;
    for _ in 0..5 {
        let t = Instant::now();
        shared = 0;
        for a in &alerts {
            for p in &peers {
                if black_box(evaluate(&policy, a, &own, p, now))
                    .grant
                    .is_some()
                {
                    shared += 1;
                }
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let decisions = (alerts.len() * peers.len()) as f64;
    println!(
        "policy with {} rules, {} peers: {:.2} M decisions/s ({} of {} (alert, peer) pairs shared)",
        policy.rules.len(),
        peers.len(),
        decisions / best / 1e6,
        shared,
        alerts.len() * peers.len()
    );

    // Per submitted alert: decide for all 50 peers and build every granted envelope.
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for a in &alerts {
            for (_, d) in evaluate_all(&policy, a, &own, &peers, now) {
                if let Some(g) = d.grant {
                    black_box(shared_view_with(a, &g));
                }
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "policy work per submitted alert (50 peers, envelopes included): {:.1} µs",
        best / alerts.len() as f64 * 1e6
    );
}
