//! What the audit log costs, and how fast it verifies.
//!
//! Run: `cargo bench --bench audit` (env `BENCH_AUDIT_ENTRIES`, default
//! 1_000_000 entries for the verify part).
//!
//! 1. The submit path with and without its audit entry, in the same run:
//!    durable local writes (alert + outbox entry + indexes, group-committed,
//!    16 concurrent writers) where the only difference is the entry that
//!    `Store::write_local_then` appends before the flush (built through
//!    `api::call::Call` as the handler does). Rounds alternate between the two so
//!    machine noise hits both alike; the medians and their ratio are printed.
//! 2. `audit verify` over a store holding N entries with a checkpoint every
//!    10,000: wall time and entries per second (median of 3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use casebridge::api::call::Call;
use casebridge::audit::signing::SigningKey;
use casebridge::audit::{Action, Event};
use casebridge::ids::{AgencyId, AlertId, FederationName};
use casebridge::matching::MatchScope;
use casebridge::proto::v1::envelope::Payload;
use casebridge::proto::v1::{Alert, AlertContent, SharedAlert, StoredAlert};
use casebridge::store::{OutboxItem, Store};

const WRITERS: usize = 16;
const PER_ROUND: usize = 4_000;
const ROUNDS: usize = 5;

fn scope() -> MatchScope {
    MatchScope {
        own: AgencyId::new("police").unwrap(),
        peers: casebridge::directory::roster::Roster::new(
            casebridge::directory::roster::Members::ids([AgencyId::new("ngo").unwrap()]),
        ),
        band: Default::default(),
    }
}

fn record(id: &AlertId) -> StoredAlert {
    StoredAlert {
        tokens_pending: false,
        alert: Some(Alert {
            id: id.to_string(),
            origin: "police".into(),
            version: 1,
            content: Some(AlertContent {
                narrative: "bench narrative of typical length ".repeat(8),
                ..Default::default()
            }),
            ..Default::default()
        }),
        shared_with: vec!["ngo".into()],
        ..Default::default()
    }
}

/// One round of `PER_ROUND` durable writes by `WRITERS` tasks; alerts/s.
async fn round(store: &Arc<Store>, audited: bool) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let police = AgencyId::new("police").unwrap();
            let ngo = AgencyId::new("ngo").unwrap();
            let federation = FederationName::new("bench.cb").unwrap();
            for _ in 0..PER_ROUND / WRITERS {
                let id = AlertId::generate(&police);
                let rec = record(&id);
                let item = OutboxItem {
                    peer: ngo.clone(),
                    payload: Payload::Alert(SharedAlert {
                        id: id.to_string(),
                        version: 1,
                        ..Default::default()
                    }),
                    rule: "bench".into(),
                    disclosed: "location=city".into(),
                };
                let call = audited.then(|| {
                    Call::start(
                        &store,
                        &police,
                        &federation,
                        &tonic::Request::new(()),
                        Action::AlertSubmit,
                    )
                });
                store
                    .write_local_then(
                        &id,
                        None,
                        |_| Ok::<_, ()>((rec.clone(), vec![item.clone()])),
                        |w| match &call {
                            Some(call) => {
                                let (casebridge::store::LocalWrite::Written(r)
                                | casebridge::store::LocalWrite::Replayed(r)
                                | casebridge::store::LocalWrite::Conflict(r)) = w;
                                call.object(r.alert.as_ref().unwrap().id.clone());
                                call.detail("version", 1);
                                call.detail("shared_with", "ngo");
                                call.done("OK").into_iter().collect()
                            }
                            None => Vec::new(),
                        },
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    PER_ROUND as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // 1. Submit path, with and without the entry.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store"), 128 << 20, scope()).unwrap());
    round(&store, true).await; // warm-up
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        without.push(round(&store, false).await);
        with.push(round(&store, true).await);
    }
    let (w, wo) = (median(with), median(without));
    println!(
        "submit path ({WRITERS} writers, {PER_ROUND} durable writes x {ROUNDS} rounds each): \
         without audit {wo:.0}/s, with audit {w:.0}/s (median); with/without = {:.3}",
        w / wo
    );
    store.close().await.unwrap();
    drop(store);

    // 2. Verify N entries.
    let n: u64 = std::env::var("BENCH_AUDIT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::create(&dir.path().join("audit.key")).unwrap();
    let store = Store::open(&dir.path().join("store"), 256 << 20, scope()).unwrap();
    let started = Instant::now();
    let mut written = 0;
    while written < n {
        let batch = (n - written).min(1_000);
        store
            .audit_append((0..batch).map(|i| {
                Event::new("client:cms", Action::AlertGet, "OK")
                    .object(format!(
                        "police:0193aa00-0000-7000-8000-{:012}",
                        written + i
                    ))
                    .detail("version", 3)
                    .detail("remote", "10.0.0.7:51234")
                    .purpose("case 2026-0117")
            }))
            .unwrap();
        written += batch;
        if written % 10_000 == 0 {
            let (seq, hash) = store.audit_head();
            store
                .audit_put_checkpoint(&casebridge::audit::signing::sign_checkpoint(
                    &key,
                    seq,
                    hash,
                    casebridge::time::now_ms(),
                ))
                .unwrap();
        }
    }
    store.durable().await.unwrap();
    let fill = started.elapsed();
    let public = key.public();
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let summary = store.audit_verify(&public, &[]).unwrap();
        times.push(t.elapsed());
        assert_eq!(summary.entries, n);
    }
    times.sort();
    let med: Duration = times[1];
    println!(
        "verify: {n} entries ({} checkpoints) in {:.2} s median of 3 = {:.0} entries/s (filling them took {:.1} s)",
        n / 10_000,
        med.as_secs_f64(),
        n as f64 / med.as_secs_f64(),
        fill.as_secs_f64()
    );
}
