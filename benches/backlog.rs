//! Backlog drain: a peer is down while `BENCH_BACKLOG` alerts (default
//! 100,000) are submitted and queued on disk; then it comes up. Reports the
//! submit rate, the drain rate, this process's resident memory (both
//! nodes) while the backlog builds and drains, and each store's size on
//! disk per alert.
//!
//! Run: `cargo bench --bench backlog`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use casebridge::proto::v1::SubmitAlertRequest;
use common::{TestFederation, agency, sample_draft};

const CLIENTS: usize = 16;

fn main() {
    let total: usize = std::env::var("BENCH_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // One client name for all submitters: lift its rate limit.
        let mut fed = TestFederation::start_with(&["police", "ngo"], &["ngo"], |_, c| {
            c.limits.requests_per_second_per_client = casebridge::config::Bounded::new(1_000_000);
        })
        .await;
        let rss_start = casebridge::metrics::resident_mib();
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let mut c = fed.client("police", "cms").await;
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    c.alerts
                        .submit_alert(SubmitAlertRequest {
                            draft: Some(sample_draft("backlog")),
                            request_id: String::new(),
                         validate_only: false })
                        .await
                        .unwrap();
                }
            }));
        }
        let mut rss_fill_peak = rss_start;
        while tasks.iter().any(|t| !t.is_finished()) {
            rss_fill_peak = rss_fill_peak.max(casebridge::metrics::resident_mib());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let fill = start.elapsed();
        let rss_queued = casebridge::metrics::resident_mib();
        let police_store = fed.config("police").store.dir.clone();
        let police_bytes = measure::disk_bytes(&police_store);

        let start = Instant::now();
        fed.start_node("ngo").await;
        let ngo = fed.node("ngo").core().clone();
        let mut rss_drain_peak = rss_queued;
        loop {
            rss_drain_peak = rss_drain_peak.max(casebridge::metrics::resident_mib());
            let (_, held) = ngo.store.count_alerts(&agency("ngo")).unwrap();
            if held as usize >= total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let drain = start.elapsed();
        let ngo_bytes = measure::disk_bytes(&fed.config("ngo").store.dir);
        println!("casebridge backlog bench: {total} alerts queued for a peer that is down, then delivered");
        println!(
            "submit (peer down): {:.0} alerts/s over {:.1}s with {CLIENTS} clients",
            total as f64 / fill.as_secs_f64(),
            fill.as_secs_f64()
        );
        println!(
            "drain (peer up):    {:.0} alerts/s over {:.1}s ({} stored, {} resends at the receiver)",
            total as f64 / drain.as_secs_f64(),
            drain.as_secs_f64(),
            ngo.inbound.stored_total(),
            ngo.inbound.duplicate_total()
        );
        println!(
            "resident memory (both nodes): {rss_start} MiB at start, peak {rss_fill_peak} MiB while queueing, {rss_queued} MiB queued, peak {rss_drain_peak} MiB while draining"
        );
        println!(
            "disk: sender {:.0} MiB with {total} queued ({:.0} bytes per alert), receiver {:.0} MiB after the drain ({:.0} bytes per alert)",
            police_bytes as f64 / 1048576.0,
            police_bytes as f64 / total as f64,
            ngo_bytes as f64 / 1048576.0,
            ngo_bytes as f64 / total as f64
        );
        fed.shutdown().await;
    });
}
