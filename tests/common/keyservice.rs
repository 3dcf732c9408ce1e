//! A key service for tests: a port to run it on, and a start that waits
//! for the port of one just stopped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use casebridge::config::KeyServiceConfig;
use casebridge::keyservice::RunningKeyService;
use casebridge::proto::v1::IdentifierType;

use super::{TestFederation, eventually, hit_log, phone_id, sample_draft};

/// A free loopback address below the ephemeral port range: a key service
/// is stopped and started again on it, and a port from that range may be
/// taken meanwhile as the local end of one of the nodes' own connections
/// (which then holds it for as long as the connection lives).
/// Each call gives another port (one test asks for several before binding).
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % 10_000;
    loop {
        let port = 20_000 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
            return l.local_addr().unwrap();
        }
    }
}

pub async fn start_service(config: &KeyServiceConfig) -> RunningKeyService {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = match casebridge::keyservice::bind(config).await {
            Ok(listener) => casebridge::keyservice::start(config, listener).await,
            Err(e) => Err(e),
        };
        match started {
            Ok(s) => return s,
            // The port of a service just stopped may still be closing.
            Err(e) if Instant::now() < deadline => {
                eprintln!("key service not started yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("key service: {e}"),
        }
    }
}

/// Stops `service`, rotates its keys (a new one valid from a minute ago,
/// an hour of overlap), starts it again with both, and writes the public
/// file of both keys: the new version and the running service.
pub async fn rotate_and_restart(
    service: RunningKeyService,
    ks: &casebridge::certs::KeyServiceLayout,
    config: &KeyServiceConfig,
) -> (u32, RunningKeyService) {
    service.shutdown().await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let new = casebridge::pseudo::oprf_keys::rotate(
        &ks.secret_keys,
        now - time::Duration::minutes(1),
        time::Duration::hours(1),
    )
    .unwrap();
    let service = start_service(config).await;
    let keys = casebridge::pseudo::oprf_keys::SecretKeys::load(&ks.secret_keys).unwrap();
    std::fs::write(&ks.public_keys, keys.public_file()).unwrap();
    (new, service)
}

/// The phone tokens of `a`'s stored alert `id`.
pub fn phone_tokens(fed: &TestFederation, a: &str, id: &str) -> Vec<casebridge::proto::v1::Token> {
    let id: casebridge::ids::AlertId = id.parse().unwrap();
    let rec = fed.node(a).core().store.get(&id).unwrap().unwrap();
    rec.pseudonyms
        .iter()
        .flat_map(|s| s.tokens.iter().cloned())
        .filter(|t| t.r#type == IdentifierType::Phone as i32)
        .collect()
}

/// The hits `a`'s node knows between its alert `own` and `other`.
pub async fn hit_between(fed: &TestFederation, a: &str, own: &str, other: &str) {
    let c = fed.client(a, "analyst").await;
    eventually(&format!("a hit at {a}: {own} ~ {other}"), || {
        let mut c = c.clone();
        let (own, other) = (own.to_owned(), other.to_owned());
        async move {
            hit_log(&mut c)
                .await
                .into_iter()
                .find(|h| {
                    h.local_alert_id == own
                        && h.other_alert_id == other
                        && h.r#type == IdentifierType::Phone as i32
                })
                .map(|_| ())
        }
    })
    .await;
}

pub fn phone_draft(narrative: &str) -> casebridge::proto::v1::AlertDraft {
    let mut draft = sample_draft(narrative);
    draft.subjects[0].identifiers = vec![phone_id("06-55550101", "NL")];
    draft
}

pub fn versions(tokens: &[casebridge::proto::v1::Token]) -> Vec<u32> {
    let mut v: Vec<u32> = tokens.iter().map(|t| t.key_version).collect();
    v.sort();
    v
}
