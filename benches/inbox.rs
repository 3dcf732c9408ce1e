//! Server-side time of the console's Reports inbox and the ReportService
//! calls behind it, at a few reports and at `BENCH_REPORTS` (default
//! 10,000), in one run: the ratio of the medians says whether a page's
//! cost grows with the reports kept.
//!
//! Run: `cargo bench --bench inbox` (env `BENCH_REPORTS`, default 10000;
//! `BENCH_ROUNDS`, default 200). One in-process node with a real store;
//! the reports are written straight into it (the receipt hash, measured by
//! `cargo bench --bench intake`, would only slow the loading), six in ten
//! new, two waiting, two closed. Each page is rendered by the console's
//! own router, called in-process as the `caseworker` certificate (what the
//! server spends, without TLS and the network). Reported: p50 / p99 per
//! page and call at both sizes, and the ratio of the medians.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use casebridge::api::ReportApi;
use casebridge::audit::{Action, Event};
use casebridge::console::Console;
use casebridge::proto::v1::report_service_server::ReportService;
use casebridge::proto::v1::{IntakeReportRecord, IntakeState, ListReportsRequest};
use casebridge::store::Store;
use common::TestFederation;
use measure::{Timing, ms, row, time};
use tower::ServiceExt;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

/// Report number `i`: its state by `i` (6 new, 2 waiting, 2 closed in 10),
/// an hour of its own, a synthetic receipt hash.
fn record(i: usize) -> IntakeReportRecord {
    let state = match i % 10 {
        0..=5 => IntakeState::New,
        6 | 7 => IntakeState::Waiting,
        _ => IntakeState::Closed,
    };
    let mut hash = vec![0u8; 24];
    hash.extend_from_slice(&(i as u64).to_be_bytes());
    IntakeReportRecord {
        id: uuid::Uuid::from_u128(i as u128 + 1)
            .hyphenated()
            .to_string(),
        received_hour: 1_700_000_000 - 1_700_000_000 % 3600 + 3600 * i as i64,
        language: "en".into(),
        what: format!(
            "Workers locked in at night at greenhouse {i}; {}",
            "x".repeat(400)
        ),
        country: "NL".into(),
        town: "Westland".into(),
        state: state as i32,
        retain_until: i64::MAX / 2,
        receipt_hash: hash,
        ..Default::default()
    }
}

/// Writes reports `from..to` into `store`, eight writers at once.
async fn load(store: &Arc<Store>, from: usize, to: usize) {
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (from + w..to).step_by(8) {
                    let event = Event::new("reporter", Action::IntakeReport, "stored");
                    store
                        .intake_submit(&record(i), u64::MAX, event)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

struct Sizes {
    pages: Vec<Timing>,
}

async fn measure(core: &Arc<casebridge::core::NodeCore>, rounds: usize) -> Sizes {
    let who = common::client_conn("ngo", "caseworker");
    let router = Console::new(core.clone()).router();
    let api = ReportApi(core.clone());
    let list = |state: IntakeState| {
        let mut r = tonic::Request::new(ListReportsRequest {
            state: state as i32,
            page_size: 50,
            page_token: String::new(),
        });
        r.extensions_mut().insert(who.clone());
        r
    };
    let first = api.list_reports(list(IntakeState::New)).await.unwrap();
    let some_id = first.into_inner().reports[0].id.clone();
    let mut pages = Vec::new();
    for path in [
        "/reports".to_owned(),
        "/reports?state=closed".to_owned(),
        format!("/reports/{some_id}"),
    ] {
        let page = || {
            let router = router.clone();
            let who = who.clone();
            let path = path.clone();
            async move {
                let req = axum::http::Request::get(&path)
                    .extension(who)
                    .body(Body::empty())
                    .unwrap();
                let res = router.oneshot(req).await.unwrap();
                assert!(res.status().is_success(), "{path}: {}", res.status());
                axum::body::to_bytes(res.into_body(), usize::MAX)
                    .await
                    .unwrap();
            }
        };
        pages.push(time(rounds, page).await);
    }
    let call = || async {
        api.list_reports(list(IntakeState::New)).await.unwrap();
    };
    pages.push(time(rounds, call).await);
    Sizes { pages }
}

async fn run() {
    let reports = env("BENCH_REPORTS", 10_000);
    let rounds = env("BENCH_ROUNDS", 200);
    let fed = TestFederation::start_with(&["ngo"], &[], common::with_console).await;
    let core = fed.node("ngo").core().clone();
    let few = 100.min(reports);
    load(&core.store, 0, few).await;
    let small = measure(&core, rounds).await;
    let started = Instant::now();
    load(&core.store, few, reports).await;
    println!(
        "ngo holds {reports} public reports (the last {} loaded in {:.1} s); {rounds} rounds each",
        reports - few,
        started.elapsed().as_secs_f64()
    );
    let large = measure(&core, rounds).await;
    let names = [
        "console GET /reports (new, first page of 50)",
        "console GET /reports?state=closed",
        "console GET /reports/{id} (one report)",
        "ListReports (new, 50), in-process",
    ];
    for ((name, s), l) in names.iter().zip(&small.pages).zip(&large.pages) {
        println!("\n{name}");
        row(&format!("at {few} reports"), s);
        row(&format!("at {reports} reports"), l);
        println!(
            "  {:<58} {:.2}",
            "ratio of the medians (large / small)",
            ms(l.p50) / ms(s.p50)
        );
    }
    fed.shutdown().await;
}
