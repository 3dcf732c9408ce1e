//! Durable-submit throughput and A→B delivery latency over real mTLS.
//!
//! Run: `cargo bench --bench exchange` (env `BENCH_SUBMITS`, default 2000 per
//! concurrency level). Two in-process nodes (police → ngo) with real
//! certificates, stores in a temp dir and TLS 1.3 on 127.0.0.1.
//!
//! 1. Durable submits vs. a no-op RPC (gRPC health `Check`) on the same
//!    listener, same TLS setup, same number of concurrent clients (each with
//!    its own connection): the ratio is the cost of validation + one store
//!    transaction + the (group-committed) sync.
//! 2. Group commit: acknowledged submits per sync, and bytes written to
//!    storage per submit (both nodes: police's write, its delivery to ngo).
//! 3. A→B delivery latency: from the submit call at police until ngo's store
//!    has flushed the alert (ngo's "received" event), one alert at a time.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use measure::drive;

use casebridge::proto::v1::SubmitAlertRequest;
use common::{TestFederation, sample_draft};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let total: usize = std::env::var("BENCH_SUBMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    // All bench connections use one client name: lift its rate limit.
    let fed = TestFederation::start_with(&["police", "ngo"], &[], |_, c| {
        c.limits.requests_per_second_per_client = casebridge::config::Bounded::new(1_000_000);
    })
    .await;
    println!(
        "casebridge exchange bench: {total} ops per row, police -> ngo over mTLS on 127.0.0.1"
    );
    println!(
        "{:>7}  {:>12} {:>9} {:>9}  {:>12} {:>9} {:>9}  {:>6}  {:>12}  {:>10}",
        "clients",
        "submit/s",
        "p50",
        "p99",
        "noop/s",
        "p50",
        "p99",
        "ratio",
        "submits/sync",
        "KiB/submit"
    );
    for clients in [1usize, 4, 16, 64] {
        let mut conns = Vec::new();
        for _ in 0..clients {
            conns.push(fed.client("police", "cms").await);
        }
        // Warm-up: connections, TLS sessions, store caches.
        drive(&conns, clients * 5, |mut c, i| async move {
            c.alerts
                .submit_alert(SubmitAlertRequest {
                    draft: Some(sample_draft(&format!("warm-up {i}"))),
                    request_id: String::new(),
                    validate_only: false,
                })
                .await
                .unwrap();
        })
        .await;
        let stats = fed.node("police").core().store.commit_stats();
        let (f0, r0) = (
            stats.flushes.load(Ordering::Relaxed),
            stats.requests.load(Ordering::Relaxed),
        );
        let written = measure::written_bytes();
        let submit = drive(&conns, total, |mut c, i| async move {
            c.alerts
                .submit_alert(SubmitAlertRequest {
                    draft: Some(sample_draft(&format!("bench alert {i}"))),
                    request_id: String::new(),
                    validate_only: false,
                })
                .await
                .unwrap();
        })
        .await;
        let written = measure::written_bytes() - written;
        let flushes = stats.flushes.load(Ordering::Relaxed) - f0;
        let requests = stats.requests.load(Ordering::Relaxed) - r0;
        let noop = drive(&conns, total, |c, _| async move {
            HealthClient::new(c.channel.clone())
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .unwrap();
        })
        .await;
        println!(
            "{:>7}  {:>12.0} {:>9.2?} {:>9.2?}  {:>12.0} {:>9.2?} {:>9.2?}  {:>6.1}  {:>12.2}  {:>10.1}",
            clients,
            submit.ops_per_sec,
            submit.p50,
            submit.p99,
            noop.ops_per_sec,
            noop.p50,
            noop.p99,
            noop.ops_per_sec / submit.ops_per_sec,
            requests as f64 / flushes.max(1) as f64,
            written as f64 / 1024.0 / total as f64,
        );
    }

    // Let the backlog from the throughput rows drain so latency is measured on an idle link.
    let drain = Instant::now();
    let mut admin = fed.client("police", "admin").await;
    loop {
        let status = admin
            .admin
            .get_status(casebridge::proto::v1::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if status.outbox_depth == 0 || drain.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("outbox drained to ngo in {:.1?}", drain.elapsed());

    let mut cms = fed.client("police", "cms").await;
    let mut events = fed.node("ngo").subscribe_received();
    let samples = 300;
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
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
        loop {
            let e = events.recv().await.unwrap();
            if e.alert_id == alert.id {
                break;
            }
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "A->B delivery latency (submit call to durable at receiver), {samples} sequential alerts: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
        measure::percentile(&lat, 0.5),
        measure::percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    let (own, _) = fed
        .node("police")
        .core()
        .store
        .count_alerts(&common::agency("police"))
        .unwrap();
    let on_disk = |a: &str| measure::disk_bytes(&fed.config(a).store.dir) as f64;
    println!(
        "disk: police {:.0} MiB, ngo {:.0} MiB for {own} alerts ({:.0} and {:.0} bytes per alert)",
        on_disk("police") / 1048576.0,
        on_disk("ngo") / 1048576.0,
        on_disk("police") / own as f64,
        on_disk("ngo") / own as f64,
    );
    fed.shutdown().await;
}
