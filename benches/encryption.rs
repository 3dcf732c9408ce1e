//! Encryption at rest against none, in one run (docs/encryption.md):
//!
//! 1. Two federations side by side, police → ngo over real mTLS on
//!    127.0.0.1: one in clear, one with both stores sealed. Each round
//!    (`BENCH_RUNS`, default 3; the order alternates) measures durable
//!    submits with 16 clients (`BENCH_SUBMITS`, default 2000) and the A→B
//!    latency of 200 sequential alerts; reported: medians per federation
//!    and the ratio sealed / clear, and bytes per alert on disk.
//! 2. The end of an epoch on the sealed police store: every live data key
//!    and every value under no data key sealed again (`turn_epoch`; the
//!    alerts themselves stay under their data keys), in entries and alerts
//!    per second.
//! 3. A KEK rotation on it: the time, and how many epoch and backup keys
//!    it re-wrapped (it seals no data again, so it does not grow with the
//!    alerts).
//!
//! Run: `cargo bench --bench encryption`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::time::{Duration, Instant};

use casebridge::proto::v1::SubmitAlertRequest;
use common::{TestFederation, sample_draft};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

/// A police → ngo federation, both stores sealed when `sealed`.
async fn federation(sealed: bool) -> TestFederation {
    TestFederation::start_with(&["police", "ngo"], &[], move |_, c| {
        c.limits.requests_per_second_per_client = casebridge::config::Bounded::new(1_000_000);
        if sealed {
            let kek = c.store.dir.with_file_name("kek.toml");
            if !kek.exists() {
                casebridge::vault::FileKek::create(&kek).unwrap();
            }
            c.encryption = Some(casebridge::config::EncryptionConfig {
                kek_file: toml::Spanned::new(0..0, kek),
                epoch_secs: casebridge::config::Bounded::new(2_592_000),
                backup_retention_days: casebridge::config::Bounded::new(30),
            });
        }
    })
    .await
}

struct Round {
    submits_per_sec: f64,
    latency_p50: Duration,
    latency_p99: Duration,
}

async fn round(fed: &TestFederation, total: usize, tag: &str) -> Round {
    let mut conns = Vec::new();
    for _ in 0..16 {
        conns.push(fed.client("police", "cms").await);
    }
    let tag = tag.to_owned();
    let submit = measure::drive(&conns, total, move |mut c, i| {
        let tag = tag.clone();
        async move {
            c.alerts
                .submit_alert(SubmitAlertRequest {
                    draft: Some(sample_draft(&format!("{tag} alert {i}"))),
                    request_id: String::new(),
                    validate_only: false,
                })
                .await
                .unwrap();
        }
    })
    .await;
    drain(fed).await;
    let mut cms = fed.client("police", "cms").await;
    let mut events = fed.node("ngo").subscribe_received();
    let mut lat = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let alert = cms
            .alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(sample_draft(&format!("latency probe {i}"))),
                request_id: String::new(),
                validate_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        while events.recv().await.unwrap().alert_id != alert.id {}
        lat.push(t.elapsed());
    }
    lat.sort();
    Round {
        submits_per_sec: submit.ops_per_sec,
        latency_p50: measure::percentile(&lat, 0.5),
        latency_p99: measure::percentile(&lat, 0.99),
    }
}

/// Waits until police's outbox is empty (at most five minutes).
async fn drain(fed: &TestFederation) {
    let started = Instant::now();
    while fed.status("police").await.outbox_depth > 0
        && started.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn bench() {
    let runs = env_or("BENCH_RUNS", 3);
    let total = env_or("BENCH_SUBMITS", 2000);
    let clear = federation(false).await;
    let sealed = federation(true).await;
    println!("casebridge encryption bench: {runs} rounds, {total} submits (16 clients) each");
    let (mut c, mut s) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let order: [(bool, &TestFederation); 2] = if r % 2 == 0 {
            [(false, &clear), (true, &sealed)]
        } else {
            [(true, &sealed), (false, &clear)]
        };
        for (is_sealed, fed) in order {
            let got = round(fed, total, &format!("round {r}")).await;
            println!(
                "  round {r} {:<6} {:>8.0} submits/s  A->B p50 {:>8.2?} p99 {:>8.2?}",
                if is_sealed { "sealed" } else { "clear" },
                got.submits_per_sec,
                got.latency_p50,
                got.latency_p99
            );
            if is_sealed { &mut s } else { &mut c }.push(got);
        }
    }
    let med = |v: &[Round], f: fn(&Round) -> f64| median(v.iter().map(f).collect());
    let rate = |r: &Round| r.submits_per_sec;
    let p50 = |r: &Round| r.latency_p50.as_secs_f64() * 1000.0;
    let p99 = |r: &Round| r.latency_p99.as_secs_f64() * 1000.0;
    println!(
        "{:<22} {:>12} {:>12} {:>8}",
        "median", "clear", "sealed", "ratio"
    );
    for (name, f) in [
        ("submits/s", rate as fn(&Round) -> f64),
        ("A->B p50 ms", p50),
        ("A->B p99 ms", p99),
    ] {
        let (a, b) = (med(&c, f), med(&s, f));
        println!("{name:<22} {a:>12.2} {b:>12.2} {:>8.2}", b / a);
    }
    let per_alert = |fed: &TestFederation| {
        let (own, _) = fed
            .node("police")
            .core()
            .store
            .count_alerts(&common::agency("police"))
            .unwrap();
        measure::disk_bytes(&fed.config("police").store.dir) as f64 / own.max(1) as f64
    };
    println!(
        "disk per own alert at police: clear {:.0} bytes, sealed {:.0} bytes",
        per_alert(&clear),
        per_alert(&sealed)
    );
    epoch_and_kek(&sealed).await;
    clear.shutdown().await;
    sealed.shutdown().await;
}

/// The end of an epoch and a KEK rotation on the sealed police store.
async fn epoch_and_kek(fed: &TestFederation) {
    let core = fed.node("police").core();
    let (own, received) = core.store.count_alerts(&common::agency("police")).unwrap();
    let started = Instant::now();
    let turn = core
        .store
        .turn_epoch(Duration::ZERO, Duration::from_secs(30 * 86_400))
        .await
        .unwrap();
    let took = started.elapsed();
    println!(
        "epoch turn at police ({} alerts): {} values sealed again in {:.2?} ({:.0} values/s, {:.0} alerts/s)",
        own + received,
        turn.resealed,
        took,
        turn.resealed as f64 / took.as_secs_f64(),
        (own + received) as f64 / took.as_secs_f64()
    );
    let new = fed.config("police").store.dir.with_file_name("kek-2.toml");
    casebridge::vault::FileKek::create(&new).unwrap();
    let done = core.rotate_kek(new.to_str().unwrap()).await.unwrap();
    println!(
        "KEK rotation at police: {} epoch keys re-wrapped in {} ms (independent of the {} alerts)",
        done.epochs,
        done.elapsed_ms,
        own + received
    );
}
