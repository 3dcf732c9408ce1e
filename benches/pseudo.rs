//! Pseudonymization and matching costs.
//!
//! Run: `cargo bench --bench pseudo` (env `BENCH_TOKENS`, default 1_000_000
//! indexed tokens for the hit-detection part).
//!
//! 1. Token derivation (domain-separated, length-prefixed HMAC-SHA256 via the
//!    key ring) against a bare aws-lc-rs HMAC-SHA256 of the same normalized
//!    value: the ratio is the cost of our framing.
//! 2. Normalization + token for phone numbers (libphonenumber parse included).
//! 3. Hit detection with a large token index: the latency of a durable local
//!    submit whose token matches an indexed one, vs. one that matches nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use casebridge::ids::{AgencyId, AlertId, FederationName};
use casebridge::matching::MatchScope;
use casebridge::proto::v1::{Alert, IdentifierType, SharedSubject, StoredAlert, Token};
use casebridge::pseudo::normalize::{Normalized, phone};
use casebridge::pseudo::{KeyRing, Pseudonymizer, keyring};
use casebridge::store::Store;
use time::OffsetDateTime;

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() * 99) / 100])
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let ring_path = dir.path().join("keys.toml");
    keyring::generate(&ring_path, &FederationName::new("bench.cb").unwrap()).unwrap();
    let ring = KeyRing::load(&ring_path).unwrap();
    let pseudo = Pseudonymizer::new(Some(ring), None);
    let now = OffsetDateTime::now_utc();

    // 1. Tokens vs bare HMAC on the same inputs.
    let values: Vec<Normalized> = (0..100_000u32)
        .map(|i| Normalized {
            kind: IdentifierType::Phone,
            value: format!("+3161{i:07}"),
        })
        .collect();
    let raw_key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
    let mut best = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        for v in &values {
            black_box(pseudo.tokens(black_box(v), now));
        }
        let ours = t.elapsed();
        let t = Instant::now();
        for v in &values {
            black_box(hmac::sign(&raw_key, black_box(v.value.as_bytes())));
        }
        let bare = t.elapsed();
        best = (best.0.min(ours), best.1.min(bare));
    }
    println!(
        "token derivation: {:.0}/s; bare HMAC-SHA256: {:.0}/s; ratio {:.2} (best of 5 x {} values)",
        per_sec(values.len(), best.0),
        per_sec(values.len(), best.1),
        best.0.as_secs_f64() / best.1.as_secs_f64(),
        values.len()
    );

    // 2. Normalization + token for phones written the way people write them.
    let spellings: Vec<String> = (0..20_000u32)
        .map(|i| format!("06-{:08}", 10_000_000 + i * 7))
        .collect();
    let t = Instant::now();
    for s in &spellings {
        let e164 = phone(s, "NL", None).unwrap();
        black_box(pseudo.tokens(
            &Normalized {
                kind: IdentifierType::Phone,
                value: e164,
            },
            now,
        ));
    }
    println!(
        "phone normalize + token: {:.0}/s",
        per_sec(spellings.len(), t.elapsed())
    );

    // 3. Hit detection against a large index.
    let total: usize = std::env::var("BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let police = AgencyId::new("police").unwrap();
        let ngo = AgencyId::new("ngo").unwrap();
        let store = Store::open(
            &dir.path().join("store"),
            256 << 20,
            MatchScope {
                own: police.clone(),
                peers: casebridge::directory::roster::Roster::new(casebridge::directory::roster::Members::ids([ngo.clone()])),
                band: Default::default(),
            },
        )
        .unwrap();
        let token = |i: u64| Token {
            r#type: IdentifierType::Phone as i32,
            key_version: 1,
            value: aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &i.to_be_bytes()).as_ref().to_vec(),
        };
        let record = |id: &AlertId, tokens: Vec<Token>| StoredAlert {
            tokens_pending: false,
            alert: Some(Alert {
                id: id.to_string(),
                origin: id.origin().to_string(),
                version: 1,
                ..Default::default()
            }),
            shared_with: vec![],
            withdrawn_from: vec![],
            pseudonyms: vec![SharedSubject { role: 0, tokens, encodings: vec![] }],
        };
        // Received alerts from ngo, 4 tokens each, in batches of 1000.
        let per_alert = 4u64;
        let start = Instant::now();
        let mut next = 0u64;
        while (next as usize) < total {
            let batch: Vec<StoredAlert> = (0..1000)
                .map(|_| {
                    let tokens = (0..per_alert).map(|k| token(next + k)).collect();
                    next += per_alert;
                    record(&AlertId::generate(&ngo), tokens)
                })
                .collect();
            store.apply_received_batch(batch).await.unwrap();
        }
        println!("indexed {next} tokens from {} received alerts in {:.1?}", next / per_alert, start.elapsed());

        let mut hit_lat = Vec::new();
        let mut miss_lat = Vec::new();
        for i in 0..200u64 {
            let matching = token((i * 7919) % next);
            let fresh = token(next + 1_000_000 + i);
            for (tok, lat) in [(matching, &mut hit_lat), (fresh, &mut miss_lat)] {
                let id = AlertId::generate(&police);
                let rec = record(&id, vec![tok]);
                let t = Instant::now();
                store.write_local(&id, None, |_| Ok::<_, ()>((rec.clone(), vec![]))).await.unwrap();
                lat.push(t.elapsed());
            }
        }
        let hits = store.hits_after(0, 1000).unwrap().len();
        assert_eq!(hits, 200, "every matching submit produced exactly one hit");
        let (h50, h99) = median(hit_lat);
        let (m50, m99) = median(miss_lat);
        println!(
            "durable local submit with {next} tokens indexed: matching one (hit recorded + notice queued) p50 {h50:.2?} p99 {h99:.2?}; matching none p50 {m50:.2?} p99 {m99:.2?}"
        );
        store.close().await.unwrap();
    });
}
