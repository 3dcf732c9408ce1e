//! Delivery between releases: the previous release's node → this build's
//! node, next to this build's node → the same receiver, in one run.
//!
//! Run: `cargo bench --bench versions` (env `BENCH_ALERTS`, default 1000
//! per backlog; `BENCH_RUNS`, default 3). The first run builds the previous
//! release (`tests/common/previous.rs`, release profile) and keeps it.
//!
//! A federation written by the previous release's `certs init` (police,
//! labour, ngo; real certificates, mTLS on 127.0.0.1, the previous
//! release's key service). Police runs the previous release's binary,
//! labour this build's, both as processes; ngo runs this build in process
//! (to see each alert the moment its store has it). The two senders take
//! turns, each run the other first, so both see the same machine:
//!
//! 1. Delivery rate: `BENCH_ALERTS` alerts queued while ngo is down, then
//!    ngo started: alerts per second from ngo's first receipt to its last.
//! 2. A→B latency: 200 alerts one at a time, from the submit call at the
//!    sender until ngo's store has the alert; p50 and p99.
//!
//! Each row is the median over the runs; the last line gives the ratios.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use casebridge::client::NodeClient;
use casebridge::config::NodeConfig;
use casebridge::node::{Listeners, RunningNode, start};
use casebridge::proto::v1::SubmitAlertRequest;
use casebridge::release::{PREVIOUS, RELEASE};
use common::process::{NodeProcess, connect_when_up};
use tokio::sync::broadcast::error::RecvError;

const LATENCY_SAMPLES: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One sender's figures from one run.
struct Row {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

async fn bench() {
    let alerts = env_or("BENCH_ALERTS", 1000);
    let runs = env_or("BENCH_RUNS", 3);
    let old = common::previous::binary().expect("the previous release is needed");
    let ours = Path::new(env!("CARGO_BIN_EXE_casebridge"));
    let tmp = tempfile::tempdir().unwrap();
    let fed = federation(&old, tmp.path());
    let _key_service = NodeProcess(
        Command::new(&old)
            .args(["keyservice", "run", "--config"])
            .arg(fed.join("keyservice/keyservice.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let senders = [
        ("police", PREVIOUS.version, old.clone()),
        ("labour", RELEASE, ours.to_owned()),
    ];
    let mut processes = Vec::new();
    for (agency, _, binary) in &senders {
        let config = fed.join(agency).join("node.toml");
        processes.push(NodeProcess::spawn_binary(
            binary,
            &config,
            "warn",
            Stdio::null(),
        ));
    }
    let mut ngo = start_ngo(&fed).await;
    println!(
        "casebridge versions bench: {alerts} alerts per backlog, {LATENCY_SAMPLES} latency samples, {runs} runs; receiver ngo {RELEASE}"
    );
    let mut rows: Vec<Vec<Row>> = senders.iter().map(|_| Vec::new()).collect();
    for run in 0..runs {
        // Each run, the other sender goes first.
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for s in order {
            let (agency, release, _) = &senders[s];
            let client = connect_when_up(&fed.join(agency).join("client.toml")).await;
            let round = run * 4 + s * 2;
            let (rate, restarted) = drain(ngo, &fed, &client, agency, alerts, round).await;
            ngo = restarted;
            let (p50, p99) = latency(&ngo, &client, round + 1).await;
            println!(
                "run {run}  {agency:<7} {release:<10} delivery {rate:>8.0} alerts/s   A->B p50 {p50:>9.2?}  p99 {p99:>9.2?}"
            );
            rows[s].push(Row { rate, p50, p99 });
        }
    }
    report(&senders.map(|(a, r, _)| (a, r)), &mut rows);
    ngo.shutdown().await.unwrap();
    drop(processes);
}

/// The previous release's `certs init`, with quick retries and no rate
/// limit on the senders (the bench's clients share one name).
fn federation(old: &Path, dir: &Path) -> PathBuf {
    let fed = dir.join("fed");
    let ok = Command::new(old)
        .args(["certs", "init", "--federation", "bench.casebridge"])
        .args(["--agencies", "police,labour,ngo", "--out"])
        .arg(&fed)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "certs init of the previous release failed");
    for agency in ["police", "labour"] {
        let path = fed.join(agency).join("node.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(
            "\n[delivery]\ninitial_backoff_ms = 20\nmax_backoff_ms = 50\n\
             \n[limits]\nrequests_per_second_per_client = 1000000\n",
        );
        std::fs::write(&path, text).unwrap();
    }
    fed
}

async fn start_ngo(fed: &Path) -> RunningNode {
    let config = NodeConfig::load(&fed.join("ngo/node.toml")).unwrap();
    let listeners = Listeners::bind(&config).await.unwrap();
    start(config, listeners).await.unwrap()
}

/// A draft with an e-mail address no other alert has (`round` is unique
/// per run, sender and measure), so alerts do not match each other and the
/// receiver's matching work is the same for both senders.
fn draft(round: usize, i: usize) -> casebridge::proto::v1::AlertDraft {
    let mut d = common::sample_draft(&format!("versions bench round {round} alert {i}"));
    d.subjects[0].identifiers = vec![common::email_id(&format!("bench-{round}-{i}@example.org"))];
    d
}

/// Queues `alerts` at `sender` while ngo is down, restarts ngo, and
/// measures how fast the backlog arrives: the rate, and the new ngo.
async fn drain(
    ngo: RunningNode,
    fed: &Path,
    client: &NodeClient,
    sender: &str,
    alerts: usize,
    round: usize,
) -> (f64, RunningNode) {
    ngo.shutdown().await.unwrap();
    let conns: Vec<NodeClient> = (0..8).map(|_| client.clone()).collect();
    measure::drive(&conns, alerts, move |mut c, i| async move {
        c.alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(draft(round, i)),
                ..Default::default()
            })
            .await
            .unwrap();
    })
    .await;
    let ngo = start_ngo(fed).await;
    let mut events = ngo.subscribe_received();
    let mut received = 0;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while received < alerts {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(e)) if e.from == sender => received += 1,
            Ok(Ok(_)) => continue,
            Ok(Err(RecvError::Lagged(n))) => received += n as usize,
            Ok(Err(RecvError::Closed)) | Err(_) => panic!("{sender}'s backlog did not arrive"),
        }
        first.get_or_insert_with(Instant::now);
    }
    let elapsed = first.unwrap().elapsed().as_secs_f64();
    ((alerts - 1) as f64 / elapsed, ngo)
}

/// A→B latency, one alert at a time: p50 and p99.
async fn latency(ngo: &RunningNode, client: &NodeClient, round: usize) -> (Duration, Duration) {
    let mut events = ngo.subscribe_received();
    let mut cms = client.clone();
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES {
        let t = Instant::now();
        let alert = cms
            .alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(draft(round, i)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        loop {
            match events.recv().await {
                Ok(e) if e.alert_id == alert.id => break,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("ngo stopped"),
            }
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    (
        measure::percentile(&samples, 0.5),
        measure::percentile(&samples, 0.99),
    )
}

fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

/// Medians per sender, and previous ÷ this build.
fn report(senders: &[(&str, &str)], rows: &mut [Vec<Row>]) {
    let mut medians = Vec::new();
    for ((agency, release), rows) in senders.iter().zip(rows.iter_mut()) {
        let rate = median(rows.iter().map(|r| r.rate).collect());
        let p50 = median(rows.iter().map(|r| r.p50).collect());
        let p99 = median(rows.iter().map(|r| r.p99).collect());
        println!(
            "median  {agency:<7} {release:<10} delivery {rate:>8.0} alerts/s   A->B p50 {p50:>9.2?}  p99 {p99:>9.2?}"
        );
        medians.push((rate, p50, p99));
    }
    let ((old_rate, old_p50, old_p99), (new_rate, new_p50, new_p99)) = (medians[0], medians[1]);
    println!(
        "previous / this build: delivery rate {:.2}, p50 latency {:.2}, p99 latency {:.2}",
        old_rate / new_rate,
        old_p50.as_secs_f64() / new_p50.as_secs_f64(),
        old_p99.as_secs_f64() / new_p99.as_secs_f64(),
    );
}
