//! Server-side time of the web console's pages next to the gRPC calls they
//! make, in one run.
//!
//! Run: `cargo bench --bench console` (env `BENCH_ALERTS`, default 10000;
//! `BENCH_ROUNDS`, default 200). Two in-process nodes (police → ngo) with
//! real certificates and stores; ngo holds `BENCH_ALERTS` own alerts (and
//! the hits police's alerts make with them). Each page is rendered by the
//! console's own router, called in-process with the admin certificate's
//! identity (what the server spends on a request, without TLS and the
//! network); the same gRPC operations the page calls are timed the same
//! way, through the same services, and over the wire with a real client.
//! Reported: p50 / p99 per page and per call, and the ratios of the
//! medians.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::time::{Duration, Instant};

use axum::body::Body;
use casebridge::api::{AdminApi, AlertApi};
use casebridge::client::NodeClient;
use casebridge::console::Console;
use casebridge::identity::ConnInfo;
use casebridge::ids::AgencyId;
use casebridge::proto::v1::admin_service_server::AdminService;
use casebridge::proto::v1::alert_service_server::AlertService;
use casebridge::proto::v1::{
    CountHitsRequest, GetActivityRequest, GetStatusRequest, ListAlertsRequest, ListPeersRequest,
    SubmitAlertRequest, WatchHitsRequest,
};
use common::{TestFederation, sample_draft};
use futures_util::StreamExt;
use measure::{Timing, row, time};
use tower::ServiceExt;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A request to one of the node's services as the admin certificate.
fn req<T>(admin: &ConnInfo, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.extensions_mut().insert(admin.clone());
    r
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let alerts = env("BENCH_ALERTS", 10_000);
    let rounds = env("BENCH_ROUNDS", 200);
    let fed = TestFederation::start_with(&["police", "ngo"], &[], |_, c| {
        c.console.listen = Some(toml::Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()));
        c.limits.requests_per_second_per_client = casebridge::config::Bounded::new(1_000_000);
    })
    .await;
    // ngo's register: `alerts` own alerts, submitted by 8 concurrent clients.
    let started = Instant::now();
    let mut tasks = Vec::new();
    let per = alerts / 8;
    for w in 0..8 {
        let mut c = fed.client("ngo", "cms").await;
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let mut draft = sample_draft(&format!("alert {w}/{i}"));
                if let Some(s) = draft.subjects.first_mut() {
                    s.identifiers.truncate(1);
                    if let Some(casebridge::proto::v1::identifier::Kind::Phone(p)) =
                        s.identifiers[0].kind.as_mut()
                    {
                        p.number = format!("+31 6 5{w}{:02} {:04}", i / 10_000, i % 10_000);
                    }
                }
                c.alerts
                    .submit_alert(SubmitAlertRequest {
                        draft: Some(draft),
                        request_id: String::new(),
                        validate_only: false,
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut police = fed.client("police", "cms").await;
    for i in 0..20 {
        let mut draft = sample_draft("police alert");
        if let Some(casebridge::proto::v1::identifier::Kind::Phone(p)) =
            draft.subjects[0].identifiers[0].kind.as_mut()
        {
            p.number = format!("+31 6 5{}00 {i:04}", i % 8);
        }
        common::submit_draft(&mut police, draft).await;
    }
    // Measure on a quiet node: every delivery to police done.
    let mut ngo_admin = fed.client("ngo", "admin").await;
    let drained = Instant::now();
    loop {
        let status = ngo_admin
            .admin
            .get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if status.outbox_depth == 0 || drained.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "ngo holds {} own alerts (loaded in {:.1} s); {rounds} rounds each, after {} warm-up",
        per * 8,
        started.elapsed().as_secs_f64(),
        rounds / 10
    );

    let core = fed.node("ngo").core().clone();
    let admin = common::client_conn("ngo", "admin");
    let router = Console::new(core.clone()).router();
    let page = |path: &'static str| {
        let router = router.clone();
        let admin = admin.clone();
        move || {
            let router = router.clone();
            let admin = admin.clone();
            async move {
                let req = axum::http::Request::get(path)
                    .extension(admin)
                    .body(Body::empty())
                    .unwrap();
                let res = router.oneshot(req).await.unwrap();
                assert!(res.status().is_success(), "{path}: {}", res.status());
                let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                    .await
                    .unwrap();
                assert!(body.len() > 1000);
            }
        }
    };
    let alerts_api = AlertApi(core.clone());
    let admin_api = AdminApi(core.clone());

    println!("\nOverview (admin: health, peers, recent hits, 14 days of activity)");
    let overview = time(rounds, page("/")).await;
    row("console GET / (rendered page)", &overview);
    let overview_calls = time(rounds, || async {
        admin_api
            .get_status(req(&admin, GetStatusRequest {}))
            .await
            .unwrap();
        admin_api
            .list_peers(req(&admin, ListPeersRequest {}))
            .await
            .unwrap();
        let latest = alerts_api
            .count_hits(req(&admin, CountHitsRequest { after_sequence: 0 }))
            .await
            .unwrap()
            .into_inner()
            .latest_sequence;
        let mut s = alerts_api
            .watch_hits(req(
                &admin,
                WatchHitsRequest {
                    after_sequence: latest.saturating_sub(10),
                    backlog_only: true,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        while s.next().await.is_some() {}
        admin_api
            .get_activity(req(&admin, GetActivityRequest { days: 14 }))
            .await
            .unwrap();
    })
    .await;
    row("the same five gRPC operations, in-process", &overview_calls);
    let status_only = time(rounds, || async {
        admin_api
            .get_status(req(&admin, GetStatusRequest {}))
            .await
            .unwrap();
    })
    .await;
    row(
        "  of which GetStatus (counts every stored alert)",
        &status_only,
    );

    println!("\nAlert list (first page of 50 of {} alerts)", per * 8);
    let list = time(rounds, page("/alerts")).await;
    row("console GET /alerts (rendered page)", &list);
    let list_call = time(rounds, || async {
        alerts_api
            .list_alerts(req(
                &admin,
                ListAlertsRequest {
                    page_size: 50,
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
    })
    .await;
    row("ListAlerts(page_size 50), in-process", &list_call);
    let client = NodeClient::connect_file(
        fed.layout.agencies[&AgencyId::new("ngo").unwrap()].client_config("admin"),
    )
    .await
    .unwrap();
    let wire = time(rounds, || {
        let mut c = client.clone();
        async move {
            c.alerts
                .list_alerts(ListAlertsRequest {
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    })
    .await;
    row("ListAlerts(page_size 50), gRPC client over mTLS", &wire);
    let received = time(rounds, page("/alerts?scope=received")).await;
    row(
        "console GET /alerts?scope=received (scans all 10k)",
        &received,
    );

    let ratio = |a: &Timing, b: &Timing| a.p50.as_secs_f64() / b.p50.as_secs_f64().max(1e-9);
    println!("\nRatios of the medians:");
    println!(
        "  overview page / its gRPC operations   {:.2}",
        ratio(&overview, &overview_calls)
    );
    println!(
        "  alert list page / ListAlerts          {:.2}",
        ratio(&list, &list_call)
    );
    println!(
        "  ListAlerts over the wire / in-process {:.2}",
        ratio(&wire, &list_call)
    );
    fed.shutdown().await;
}
