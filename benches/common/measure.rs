#![allow(dead_code)] // each bench uses what it needs
//! What the benches measure of the process and its files, the same way
//! for every storage engine.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes the files under `dir` occupy on disk (allocated blocks, not
/// apparent sizes: an engine may preallocate sparse files).
pub fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => disk_bytes(&e.path()),
                Ok(m) => m.blocks() * 512,
                Err(_) => 0,
            })
            .sum()
    })
}

/// Bytes this process has caused to be written to storage so far
/// (`write_bytes` of /proc/self/io), 0 where that is not available.
pub fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The `p`-quantile (0..=1) of sorted durations, nearest index (zero when
/// there are none).
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted
        .get((sorted.len().saturating_sub(1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// What [`drive`] measured.
pub struct Run {
    pub ops_per_sec: f64,
    pub p50: std::time::Duration,
    pub p99: std::time::Duration,
}

/// Runs `total` operations spread over `clients` connections.
pub async fn drive<F, Fut>(clients: &[casebridge::client::NodeClient], total: usize, op: F) -> Run
where
    F: Fn(casebridge::client::NodeClient, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per = total / clients.len();
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let client = client.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let t = std::time::Instant::now();
                op(client.clone(), c * per + i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    Run {
        ops_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    }
}

/// The durable submit rate of `fed`'s police node: 32 clients each on its
/// own connection, one `SubmitAlert` of the exchange bench's sample draft at
/// a time each, after a warm-up of four each (round `round` names the
/// drafts so rounds never repeat one).
pub async fn submit_rate(fed: &crate::common::TestFederation, total: usize, round: usize) -> f64 {
    use casebridge::proto::v1::SubmitAlertRequest;
    const CLIENTS: usize = 32;
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(fed.client("police", "cms").await);
    }
    drive(&conns, CLIENTS * 4, move |mut c, i| async move {
        c.alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(crate::common::sample_draft(&format!("warm-up {round} {i}"))),
                ..Default::default()
            })
            .await
            .unwrap();
    })
    .await;
    drive(&conns, total, move |mut c, i| async move {
        c.alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(crate::common::sample_draft(&format!("bench {round} {i}"))),
                ..Default::default()
            })
            .await
            .unwrap();
    })
    .await
    .ops_per_sec
}

/// The median and 99th percentile of one operation's times.
pub struct Timing {
    pub p50: std::time::Duration,
    pub p99: std::time::Duration,
}

/// Times `op` `rounds` times, after a tenth as many to warm up.
pub async fn time<F, Fut>(rounds: usize, mut op: F) -> Timing
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..rounds / 10 {
        op().await;
    }
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        op().await;
        lat.push(t.elapsed());
    }
    lat.sort();
    Timing {
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    }
}

pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One line of a report: what, then its p50 and p99 in milliseconds.
pub fn row(what: &str, t: &Timing) {
    println!(
        "  {what:<58} p50 {:>8.3} ms   p99 {:>8.3} ms",
        ms(t.p50),
        ms(t.p99)
    );
}
