//! Bulk import rate next to the node's durable submit rate, side by side
//! in one run, and the importing CLI's peak memory.
//!
//! Run: `cargo bench --bench import` (env `IMPORT_BENCH_ROWS`, default
//! 100000; `IMPORT_BENCH_LARGE=1000000` adds the memory of a dry run of
//! that many rows, CSV and XLSX; `BENCH_SUBMITS`, default 4000).
//!
//! Two in-process nodes (police → ngo, real mTLS on 127.0.0.1, stores in a
//! temp dir, every alert also delivered to ngo). In one run:
//! 1. police's durable submit rate as the exchange bench measures it
//!    (`measure::drive`: 32 clients each on its own connection, one
//!    `SubmitAlert` of the exchange bench's sample draft at a time each);
//! 2. the real `casebridge alert import` binary importing a generated CSV
//!    of N rows (two subjects a row, the default 32 rows in flight): rows/s
//!    from start to exit, and its peak resident memory (VmHWM of
//!    /proc/PID/status, read every 20 ms);
//! 3. the ratio on equal terms, in three interleaved rounds at the store
//!    size the import left: `BENCH_SUBMITS` submits of drafts made from
//!    rows of the same shape (by the same mapping), then an import of as
//!    many new rows; the ratio of the medians. (A store of 100,000 more
//!    alerts matches each new one against more, so rates measured before
//!    and after a large import differ for both paths alike.)
//! 4. the memory of a `--dry-run` of the same rows as an XLSX workbook
//!    (calamine's cell stream: the sheet is never held whole), and with
//!    `IMPORT_BENCH_LARGE`, of dry runs of that many rows: a dry run sends
//!    every row through the same reader, converter and bounded pipeline to
//!    the node's validation, so the CLI holds what a real run holds, without
//!    the node's store growing for an hour.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use casebridge::proto::v1::SubmitAlertRequest;
use common::TestFederation;

const CLIENTS: usize = 32;

const MAPPING: &str = r#"
source = "bench"
id_column = "Case"
phone_region = "NL"
[defaults]
severity = "high"
tlp = "amber"
[content]
category = "Kind"
indicators = "Indicators"
country = "Country"
narrative = "Notes"
[[subjects]]
role = "potential_victim"
given_names = "Given"
family_name = "Family"
date_of_birth = "Born"
phones = "Phone"
[[subjects]]
role = "suspected_trafficker"
phones = "Suspect phone"
"#;

const HEADER: [&str; 10] = [
    "Case",
    "Kind",
    "Indicators",
    "Country",
    "Notes",
    "Given",
    "Family",
    "Born",
    "Phone",
    "Suspect phone",
];

fn row(n: usize) -> [String; 10] {
    [
        format!("B-{n:08}"),
        "labour_exploitation".into(),
        "debt_bondage;excessive_overtime".into(),
        "NL".into(),
        format!("Bench case {n}: workers housed at the farm, passports held"),
        format!("Given{n}"),
        format!("Family{}", n % 9973),
        format!("{}-{:02}-{:02}", 1960 + n % 40, 1 + n % 12, 1 + n % 28),
        // Valid Dutch numbers: mobiles 06-1xxxxxxx.., Amsterdam 020-5xxxxxx.
        format!("+31 6 {}", 10_000_000 + n % 80_000_000),
        format!("+31 20 {}", 5_000_000 + n % 1_000_000),
    ]
}

fn write_csv(path: &Path, rows: std::ops::Range<usize>) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(HEADER).unwrap();
    for n in rows {
        w.write_record(row(n)).unwrap();
    }
    w.flush().unwrap();
}

fn write_xlsx(path: &Path, rows: std::ops::Range<usize>) {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let sheet = wb.add_worksheet_with_constant_memory().unwrap();
    for (c, h) in HEADER.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (r, n) in rows.enumerate() {
        for (c, v) in row(n).iter().enumerate() {
            sheet.write_string(r as u32 + 1, c as u16, v).unwrap();
        }
    }
    wb.save(path).unwrap();
}

/// Peak resident memory of `pid` so far, KiB.
fn vm_hwm(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Imported {
    seconds: f64,
    peak_kib: u64,
    summary: String,
}

/// Runs the real CLI; its wall time, peak memory and summary line.
fn run_import(config: &Path, mapping: &Path, file: &Path, extra: &[&str]) -> Imported {
    let start = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .arg("--client-config")
        .arg(config)
        .args(["alert", "import", "--mapping"])
        .arg(mapping)
        .args(extra)
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(vm_hwm(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = start.elapsed().as_secs_f64();
    let out = child.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(out.status.success(), "import failed: {summary}");
    Imported {
        seconds,
        peak_kib: peak,
        summary,
    }
}

/// Durable submits of the drafts rows `first..first + total` make.
async fn same_shape_submit_rate(fed: &TestFederation, first: usize, total: usize) -> f64 {
    let loaded = std::sync::Arc::new(
        casebridge::tabular::Loaded::parse(Path::new("bench.toml"), MAPPING).unwrap(),
    );
    let headers: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    let bound = casebridge::tabular::convert::Bound::new(&loaded, &headers).unwrap();
    let drafts: std::sync::Arc<Vec<_>> = std::sync::Arc::new(
        (first..first + total)
            .map(|n| match bound.convert(&row(n)).unwrap() {
                casebridge::tabular::convert::RowOutcome::Alert(c) => c.draft.clone(),
                _ => unreachable!("every generated row is a case"),
            })
            .collect(),
    );
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(fed.client("police", "cms").await);
    }
    measure::drive(&conns, total, move |mut c, i| {
        let drafts = drafts.clone();
        async move {
            c.alerts
                .submit_alert(SubmitAlertRequest {
                    draft: Some(drafts[i].clone()),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    })
    .await
    .ops_per_sec
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn bench() {
    let rows = env("IMPORT_BENCH_ROWS", 100_000);
    let large = env("IMPORT_BENCH_LARGE", 0);
    let submits = env("BENCH_SUBMITS", 4000);
    let fed = TestFederation::start_with(&["police", "ngo"], &[], |_, c| {
        c.limits.requests_per_second_per_client = casebridge::config::Bounded::new(1_000_000);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("bench.toml");
    std::fs::File::create(&mapping)
        .unwrap()
        .write_all(MAPPING.as_bytes())
        .unwrap();
    let config = fed.layout.agencies[&common::agency("police")]
        .client_config("cms")
        .to_owned();
    let csv = dir.path().join("register.csv");
    write_csv(&csv, 0..rows);
    println!(
        "casebridge import bench: {rows} rows (two subjects each), police -> ngo over mTLS on 127.0.0.1, {CLIENTS} clients / rows in flight"
    );
    let import = |file: PathBuf, extra: Vec<String>| {
        let (config, mapping) = (config.clone(), mapping.clone());
        tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            run_import(&config, &mapping, &file, &extra)
        })
    };

    let reference = measure::submit_rate(&fed, submits, 0).await;
    println!(
        "durable SubmitAlert of the exchange bench's draft, empty store: {reference:>6.0} submits/s"
    );
    let big = import(csv.clone(), Vec::new()).await.unwrap();
    println!(
        "alert import (CSV, {rows} rows):                       {:>6.0} rows/s  ({:.1} s, CLI peak RSS {:.1} MiB)",
        rows as f64 / big.seconds,
        big.seconds,
        big.peak_kib as f64 / 1024.0
    );
    println!("  {}", big.summary.lines().next().unwrap_or(""));

    // Equal terms: same store, same shape of alert, interleaved.
    let (mut submit, mut imported) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let base = 10_000_000 + round * 2 * submits;
        submit.push(same_shape_submit_rate(&fed, base, submits).await);
        let chunk = dir.path().join(format!("round{round}.csv"));
        write_csv(&chunk, base + submits..base + 2 * submits);
        let r = import(chunk, Vec::new()).await.unwrap();
        imported.push(submits as f64 / r.seconds);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, i) = (median(&mut submit), median(&mut imported));
    println!(
        "same store, same shape, 3 interleaved rounds of {submits}: SubmitAlert {s:>6.0} /s, alert import {i:>6.0} rows/s (medians); ratio import / submit {:.2}",
        i / s
    );

    let xlsx = dir.path().join("register.xlsx");
    write_xlsx(&xlsx, 0..rows);
    let dry = import(xlsx, vec!["--dry-run".into()]).await.unwrap();
    println!(
        "alert import --dry-run (XLSX, {rows} rows):             {:>6.0} rows/s  (CLI peak RSS {:.1} MiB)",
        rows as f64 / dry.seconds,
        dry.peak_kib as f64 / 1024.0
    );

    if large > 0 {
        let big_csv = dir.path().join("large.csv");
        write_csv(&big_csv, 0..large);
        let dry = import(
            big_csv,
            vec!["--dry-run".into(), "--source".into(), "bench-large".into()],
        )
        .await
        .unwrap();
        println!(
            "alert import --dry-run (CSV, {large} rows):            {:>6.0} rows/s  (CLI peak RSS {:.1} MiB)",
            large as f64 / dry.seconds,
            dry.peak_kib as f64 / 1024.0
        );
        let big_xlsx = dir.path().join("large.xlsx");
        write_xlsx(&big_xlsx, 0..large);
        let dry = import(
            big_xlsx,
            vec!["--dry-run".into(), "--source".into(), "bench-large".into()],
        )
        .await
        .unwrap();
        println!(
            "alert import --dry-run (XLSX, {large} rows):           {:>6.0} rows/s  (CLI peak RSS {:.1} MiB)",
            large as f64 / dry.seconds,
            dry.peak_kib as f64 / 1024.0
        );
    }
    fed.shutdown().await;
}
