//! Exact tokens from the OPRF key service (issue 18), measured side by side
//! in one run:
//! 1. the crate's raw evaluation rate (`ServerKey::evaluate`, batches of
//!    1,024 blinded elements, one thread) and the node side's own work
//!    (blind + verify + finalize, per element);
//! 2. tokens per second through a real key service over mutual TLS on
//!    127.0.0.1 (a node's `Tokenizer`: blind, one `Evaluate` per batch of
//!    1,024, proof checked, unblinded), with 1 and 4 callers; the ratio to
//!    (1);
//! 3. the durable submit rate of a node taking its tokens from the key
//!    service against one deriving them from the key ring (HMAC), each
//!    police → ngo, 32 clients, the exchange bench's draft, three
//!    interleaved rounds, medians and their ratio;
//! 4. what an attacker needs to walk the 10^8 Dutch mobile numbers: with a
//!    stolen key ring (HMAC tokens per second on one core, measured here)
//!    and through the key service under the default daily budget.
//!
//! Run: `cargo bench --bench oprf` (env `OPRF_BENCH_ELEMENTS`, default
//! 102,400; `BENCH_SUBMITS`, default 4,000).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::sync::Arc;
use std::time::{Duration, Instant};

use casebridge::certs::{init_key_service, node_section};
use casebridge::config::{Bounded, KeyServiceConfig};
use casebridge::identity::{TlsIdentity, client_tls_config};
use casebridge::ids::FederationName;
use casebridge::proto::v1::{Identifier, IdentifierType};
use casebridge::pseudo::oprf::{Blinded, FIRST_VERSION, MAX_BATCH, ServerKey, token_input};
use casebridge::pseudo::oprf_keys::PinnedKeys;
use casebridge::pseudo::{KeyRing, Normalized, Pseudonymizer};
use casebridge::tokens::{ServiceSettings, Tokenizer, service_identity};
use common::{FEDERATION, TestFederation, agency, phone_id};

const CLIENTS: usize = 32;
const NL_MOBILE_NUMBERS: f64 = 1e8;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn phone(i: usize) -> Normalized {
    Normalized {
        kind: IdentifierType::Phone,
        value: format!("+3161{i:07}"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

/// A federation of police and ngo; with `oprf`, exact tokens from a key
/// service with budgets no bench reaches.
async fn federation(
    oprf: bool,
) -> (
    TestFederation,
    Option<casebridge::keyservice::RunningKeyService>,
) {
    let open = |_: &casebridge::ids::AgencyId, c: &mut casebridge::config::NodeConfig| {
        c.limits.requests_per_second_per_client = Bounded::new(1_000_000);
    };
    if !oprf {
        return (
            TestFederation::start_with(&["police", "ngo"], &[], open).await,
            None,
        );
    }
    let mut fed = TestFederation::start_with(&["police", "ngo"], &["police", "ngo"], open).await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let ks = init_key_service(
        &FederationName::new(FEDERATION).unwrap(),
        &fed.layout.dir,
        addr,
    )
    .unwrap();
    for a in ["police", "ngo"] {
        let path = &fed.layout.agencies[&agency(a)].node_config;
        let mut text = std::fs::read_to_string(path).unwrap();
        text.push_str(&node_section(&ks, ks.public_keys.to_str().unwrap()));
        std::fs::write(path, text).unwrap();
    }
    let mut config = KeyServiceConfig::load(&ks.config).unwrap();
    config.budget.per_minute = Bounded::new(100_000_000);
    config.budget.per_day = Bounded::new(1_000_000_000);
    let service = casebridge::keyservice::start(
        &config,
        casebridge::keyservice::bind(&config).await.unwrap(),
    )
    .await
    .unwrap();
    for a in ["police", "ngo"] {
        fed.start_node(a).await;
    }
    (fed, Some(service))
}

async fn bench() {
    casebridge::identity::install_crypto_provider();
    let elements = env("OPRF_BENCH_ELEMENTS", 100 * MAX_BATCH).max(MAX_BATCH);
    let submits = env("BENCH_SUBMITS", 4000);
    println!(
        "casebridge OPRF bench: ristretto255-SHA512 VOPRF (voprf 0.5), batches of {MAX_BATCH}"
    );

    // 1. Raw evaluation, one thread; the node's side per element.
    let key = ServerKey::derive(&[7u8; 32], FEDERATION, FIRST_VERSION).unwrap();
    let inputs: Vec<Vec<u8>> = (0..MAX_BATCH)
        .map(|i| token_input(&phone(i)).unwrap())
        .collect();
    let blinded = Blinded::new(inputs.clone()).unwrap();
    let wire: Vec<Vec<u8>> = blinded.elements().iter().map(|e| e.to_vec()).collect();
    let rounds = elements / MAX_BATCH;
    let start = Instant::now();
    let mut last = None;
    for _ in 0..rounds {
        last = Some(key.evaluate(&wire).unwrap());
    }
    let raw = (rounds * MAX_BATCH) as f64 / start.elapsed().as_secs_f64();
    println!("1. raw evaluation (ServerKey::evaluate, 1 thread):      {raw:>9.0} elements/s");
    let (evaluated, proof) = last.unwrap();
    let evaluated: Vec<Vec<u8>> = evaluated.iter().map(|e| e.to_vec()).collect();
    let start = Instant::now();
    let client_rounds = (rounds / 4).max(1);
    for _ in 0..client_rounds {
        let b = Blinded::new(inputs.clone()).unwrap();
        std::hint::black_box(b.elements());
    }
    let blind = (client_rounds * MAX_BATCH) as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..client_rounds {
        std::hint::black_box(
            blinded
                .finish(FIRST_VERSION, &key.public_key(), &evaluated, &proof)
                .unwrap(),
        );
    }
    let finish = (client_rounds * MAX_BATCH) as f64 / start.elapsed().as_secs_f64();
    println!("   node side: blind {blind:>9.0}/s, verify + finalize {finish:>9.0}/s (1 thread)");

    // 2. Through the key service.
    let (fed, service) = federation(true).await;
    let service = service.unwrap();
    let police_dir = &fed.layout.agencies[&agency("police")].dir;
    let own =
        TlsIdentity::load(&police_dir.join("node.pem"), &police_dir.join("node.key")).unwrap();
    let tls = client_tls_config(&own, &fed.layout.federation_ca, &[]).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(tls));
    let pinned = PinnedKeys::load(&fed.layout.dir.join("oprf-keys.toml")).unwrap();
    let tokenizer = Arc::new(Tokenizer::new(
        Arc::new(Pseudonymizer::new(None, Some("NL".into())).with_ring_tokens(false)),
        Some(ServiceSettings {
            pinned,
            addresses: vec![service.addr.to_string()],
            listed: None,
            identity: service_identity(
                &FederationName::new(FEDERATION).unwrap(),
                &casebridge::ids::AgencyId::new("keyservice").unwrap(),
            ),
            tls: rx,
            timeout: Duration::from_secs(60),
        }),
        casebridge::metrics::Metrics::new(),
    ));
    let ids: Arc<Vec<Identifier>> = Arc::new(
        (0..MAX_BATCH)
            .map(|i| phone_id(&format!("+31 6 1{i:07}"), ""))
            .collect(),
    );
    let mut through = Vec::new();
    for callers in [1usize, 4] {
        let per = (rounds / callers).max(1);
        let start = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (t, ids) = (tokenizer.clone(), ids.clone());
                tokio::spawn(async move {
                    for _ in 0..per {
                        let mut tokens = Vec::new();
                        t.complete_identifiers(&ids, &mut tokens).await.unwrap();
                        assert_eq!(tokens.len(), MAX_BATCH);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let rate = (per * callers * MAX_BATCH) as f64 / start.elapsed().as_secs_f64();
        println!(
            "2. through the key service, {callers} caller(s):             {rate:>9.0} tokens/s  (ratio to raw {:.2})",
            rate / raw
        );
        through.push(rate);
    }

    // 3. Durable submits, OPRF against HMAC, interleaved.
    let (plain, _) = federation(false).await;
    let (mut oprf_rates, mut hmac_rates) = (Vec::new(), Vec::new());
    for round in 0..3 {
        oprf_rates.push(measure::submit_rate(&fed, submits, round).await);
        hmac_rates.push(measure::submit_rate(&plain, submits, round).await);
    }
    let (o, h) = (median(oprf_rates), median(hmac_rates));
    println!(
        "3. durable SubmitAlert, {CLIENTS} clients, medians of 3: OPRF {o:>6.0}/s, HMAC {h:>6.0}/s: ratio {:.2}",
        o / h
    );
    plain.shutdown().await;
    fed.shutdown().await;
    service.shutdown().await.unwrap();

    // 4. The attacker.
    let dir = tempfile::tempdir().unwrap();
    let ring_path = dir.path().join("keys.toml");
    casebridge::pseudo::keyring::generate(&ring_path, &FederationName::new(FEDERATION).unwrap())
        .unwrap();
    let ring = Pseudonymizer::new(Some(KeyRing::load(&ring_path).unwrap()), None);
    let now = time::OffsetDateTime::now_utc();
    let n = 1_000_000;
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(ring.tokens(&phone(i), now));
    }
    let hmac = n as f64 / start.elapsed().as_secs_f64();
    let per_day = casebridge::config::BudgetConfig::default().per_day.get() as f64;
    println!(
        "4. walking 10^8 NL mobile numbers: stolen key ring (HMAC, 1 core, {hmac:.0}/s): {:.0} s; \
         through the key service at the default budget ({per_day:.0}/day): {:.0} days for one node, {:.0} for 20 colluding",
        NL_MOBILE_NUMBERS / hmac,
        NL_MOBILE_NUMBERS / per_day,
        NL_MOBILE_NUMBERS / per_day / 20.0
    );
    println!(
        "   (even unthrottled, the key service's own rate above would take {:.1} days on this machine)",
        NL_MOBILE_NUMBERS / through[1] / 86_400.0
    );
}
