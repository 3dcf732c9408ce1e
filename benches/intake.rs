//! The public intake's costs, on the code a node runs (`intake`,
//! `reports`, the store), in one process:
//!
//! 1. The receipt hash (Argon2id, 19 MiB, two passes): the CPU time one
//!    login attempt costs, median of `BENCH_HASHES` (default 30).
//! 2. Reports kept durably: `BENCH_REPORTS` (default 400) reports through
//!    `Reports::submit` (a receipt, its hash, the record and its indexes in
//!    one synced transaction) from `BENCH_CLIENTS` (default 8) at once:
//!    reports a second, and each submit's p50 and p99.
//!
//! What it leaves out: TLS and HTTP in front (the console bench measures
//! that path for the console; the intake's pages are as thin).
//!
//! Run: `cargo bench --bench intake`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use casebridge::intake::form::{Contact, Report};
use casebridge::intake::receipt::{Hasher, Receipt, SECRET_LEN};
use casebridge::reports::{Limits, Reports};
use casebridge::store::Store;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(i: usize) -> Report {
    Report {
        what: format!("Workers locked in at night, greenhouse {i}"),
        country: casebridge::ids::CountryCode::new("NL").ok(),
        town: "Westland".into(),
        when: "last week".into(),
        people: Vec::new(),
        in_danger: Some(false),
        contact: Contact::ReceiptOnly,
        contact_value: String::new(),
        police_consent: true,
    }
}

fn hash_cost(n: usize) -> Duration {
    let hasher = Hasher::new([7; SECRET_LEN]);
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let r = Receipt::generate();
            let started = Instant::now();
            hasher.hash(&r).unwrap();
            started.elapsed()
        })
        .collect();
    times.sort();
    percentile(&times, 0.5)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let hashes = env_or("BENCH_HASHES", 30);
    let total = env_or("BENCH_REPORTS", 400);
    let clients = env_or("BENCH_CLIENTS", 8);
    println!(
        "receipt hash (Argon2id 19 MiB, 2 passes): median {:?} over {hashes}",
        hash_cost(hashes)
    );

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_audit_only(dir.path(), 64 << 20).unwrap());
    let limits = Limits {
        max_open: u64::MAX,
        wrong_receipts_per_minute: 60,
        reports_per_minute: u32::MAX,
        retention_days: 365,
    };
    let reports = Arc::new(Reports::open(store, limits).await.unwrap());
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let reports = reports.clone();
            tokio::spawn(async move {
                let mut times = Vec::new();
                for i in (c..total).step_by(clients) {
                    let t = Instant::now();
                    reports.submit(report(i), "en").await.unwrap();
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    times.sort();
    println!(
        "reports kept durably: {total} from {clients} clients in {secs:.2} s = {:.1}/s; submit p50 {:?}, p99 {:?}",
        total as f64 / secs,
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
}
