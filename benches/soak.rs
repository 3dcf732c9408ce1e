//! Soak: a million submits through the node's real path (gRPC over mTLS,
//! validation, pseudonymization, one store transaction with matching and
//! audit, group-committed sync, delivery to a peer that stores and matches
//! them too), long enough for the engine's background work (memtable
//! flushes, compaction, journal rotation) to run many times, while the
//! rarely written trees (policies, refusals, lookups, purges, checkpoints)
//! stay idle. Every `BENCH_SOAK_EVERY` submits it prints that window's
//! throughput and latency, both stores' size on disk, the sender's journal
//! files and the process's resident memory: none of them may grow without
//! bound but the stores themselves.
//!
//! Then a real node process (`casebridge node run`) is started alone on the
//! sender's store, which holds every alert, and its resident memory is read
//! idle and after reads and writes: the node's memory with that many alerts.
//!
//! Run: `cargo bench --bench soak` (env `BENCH_SOAK`, default 1,000,000;
//! `BENCH_SOAK_EVERY`, default 50,000).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use casebridge::proto::v1::identifier::Kind;
use casebridge::proto::v1::{
    AlertDraft, GetAlertRequest, ListAlertsRequest, PersonName, Phone, SubmitAlertRequest,
};
use common::process::connect_when_up;
use common::{TestFederation, agency, sample_draft};
use tokio::sync::Mutex;

const CLIENTS: usize = 16;
const GIVEN: [&str; 8] = [
    "Maria", "Olena", "Ana", "Lan", "Amina", "Ioana", "Fatima", "Elena",
];
const FAMILY: [&str; 8] = [
    "Ionescu",
    "Kovalenko",
    "Popescu",
    "Nguyen",
    "Diallo",
    "Rusu",
    "Haddad",
    "Petrova",
];

/// A draft whose phone and person differ from one submit to the next, as
/// an agency's real alerts do (so the indexes grow like real ones).
fn draft(i: usize) -> AlertDraft {
    let mut d = sample_draft(&format!("soak alert {i}"));
    for id in &mut d.subjects[0].identifiers {
        match &mut id.kind {
            Some(Kind::Phone(p)) => {
                *p = Phone {
                    // 06-2… and 06-3… are valid Dutch mobile ranges.
                    number: format!("+31 6 {}{:07}", 2 + i % 2, (i * 7919) % 10_000_000),
                    region: String::new(),
                }
            }
            Some(Kind::Person(p)) => {
                *p = PersonName {
                    given_names: GIVEN[i % 8].into(),
                    family_name: format!("{}{}", FAMILY[(i / 8) % 8], i % 997),
                    date_of_birth: format!("{}-{:02}-{:02}", 1960 + i % 45, 1 + i % 12, 1 + i % 28),
                }
            }
            _ => {}
        }
    }
    d
}

fn journal_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jnl"))
            .count()
    })
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    let total: usize = std::env::var("BENCH_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let every: usize = std::env::var("BENCH_SOAK_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(soak(total, every));
}

async fn soak(total: usize, every: usize) {
    let fed = TestFederation::start_with(&["police", "ngo"], &[], |_, c| {
        c.limits.requests_per_second_per_client = casebridge::config::Bounded::new(1_000_000);
    })
    .await;
    let police_dir = fed.config("police").store.dir.clone();
    let ngo_dir = fed.config("ngo").store.dir.clone();
    println!(
        "casebridge soak: {total} submits at police ({CLIENTS} clients), each delivered to ngo; a row every {every}"
    );
    println!(
        "{:>9} {:>8} {:>9} {:>9} {:>9}  {:>10} {:>10}  {:>8}  {:>7}",
        "submits", "rate/s", "p50", "p99", "max", "police MiB", "ngo MiB", "journals", "RSS MiB"
    );
    let next = Arc::new(AtomicUsize::new(0));
    let window: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = fed.client("police", "cms").await;
        let (next, window) = (next.clone(), window.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                c.alerts
                    .submit_alert(SubmitAlertRequest {
                        draft: Some(draft(i)),
                        request_id: String::new(),
                        validate_only: false,
                    })
                    .await
                    .unwrap();
                window.lock().await.push(t.elapsed());
            }
        }));
    }
    let started = Instant::now();
    let mut done = 0;
    let mut window_start = Instant::now();
    while done < total {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let len = window.lock().await.len();
        if len < every && !tasks.iter().all(|t| t.is_finished()) {
            continue;
        }
        let mut lat = std::mem::take(&mut *window.lock().await);
        done += lat.len();
        lat.sort();
        println!(
            "{:>9} {:>8.0} {:>9.2?} {:>9.2?} {:>9.2?}  {:>10.0} {:>10.0}  {:>8}  {:>7}",
            done,
            lat.len() as f64 / window_start.elapsed().as_secs_f64(),
            measure::percentile(&lat, 0.5),
            measure::percentile(&lat, 0.99),
            lat.last().copied().unwrap_or_default(),
            measure::disk_bytes(&police_dir) as f64 / 1048576.0,
            measure::disk_bytes(&ngo_dir) as f64 / 1048576.0,
            journal_files(&police_dir),
            casebridge::metrics::resident_mib(),
        );
        window_start = Instant::now();
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "{done} submits in {:.0} s ({:.0}/s overall)",
        started.elapsed().as_secs_f64(),
        done as f64 / started.elapsed().as_secs_f64()
    );
    // Let ngo catch up, then stop both.
    let ngo = fed.node("ngo").core().clone();
    let drain = Instant::now();
    while ngo.store.count_alerts(&agency("ngo")).unwrap().1 < total as u64
        && drain.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(ngo);
    let (police_bytes, ngo_bytes) = (
        measure::disk_bytes(&police_dir),
        measure::disk_bytes(&ngo_dir),
    );
    println!(
        "disk: police {:.0} MiB ({:.0} bytes per alert), ngo {:.0} MiB ({:.0} bytes per alert)",
        police_bytes as f64 / 1048576.0,
        police_bytes as f64 / total as f64,
        ngo_bytes as f64 / 1048576.0,
        ngo_bytes as f64 / total as f64
    );
    // Stopped, not dropped: the temp dir lives until `fed` drops, after
    // the node process below.
    let mut fed = fed;
    fed.stop_node("police").await;
    fed.stop_node("ngo").await;
    let layout = fed.layout.clone();

    // One node process alone on the store with every alert.
    let police = &layout.agencies[&agency("police")];
    let node = common::process::NodeProcess::spawn(
        &police.node_config,
        "warn",
        std::process::Stdio::inherit(),
    );
    let opened = Instant::now();
    let mut c = connect_when_up(police.client_config("cms")).await;
    let pid = node.0.id();
    let (idle, _) = memory_of(pid);
    println!(
        "node process on police's store ({total} alerts): serving after {:.1?}, {idle} MiB resident idle",
        opened.elapsed()
    );
    let mut token = String::new();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let page = c
            .alerts
            .list_alerts(ListAlertsRequest {
                page_size: 500,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.alerts.iter().map(|a| a.id.clone()));
        token = page.next_page_token;
    }
    for id in ids.iter().step_by(10) {
        c.alerts
            .get_alert(GetAlertRequest { id: id.clone() })
            .await
            .unwrap();
    }
    for i in 0..1000 {
        c.alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(draft(total + i)),
                request_id: String::new(),
                validate_only: false,
            })
            .await
            .unwrap();
    }
    let (rss, peak) = memory_of(pid);
    println!(
        "after listing 10,000 alerts, reading 1,000 and submitting 1,000: {rss} MiB resident, peak {peak} MiB"
    );
    drop(node);
    drop(fed);
}
