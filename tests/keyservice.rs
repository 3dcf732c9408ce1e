//! Exact tokens from the OPRF key service (issue 18), with real nodes and a
//! real key service over mutual TLS: hits, lookups and retractions across
//! three nodes; no key a node holds reproduces its tokens; an outage loses
//! nothing and the tokens follow; budgets refuse and are logged; a node
//! pinning the wrong public key refuses the answers.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use casebridge::certs::{KeyServiceLayout, init_key_service, node_section};
use casebridge::config::KeyServiceConfig;
use casebridge::ids::FederationName;
use casebridge::keyservice::RunningKeyService;
use casebridge::proto::v1::{IdentifierType, LookupRequest, RetractAlertRequest};
use casebridge::pseudo::oprf::{FIRST_VERSION, ServerKey};
use casebridge::pseudo::oprf_keys::SecretKeys;
use casebridge::pseudo::{KeyRing, Normalized, Pseudonymizer};
use common::*;
use tonic::Code;

const AGENCIES: [&str; 3] = ["police", "ngo", "border"];

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn start_service(config: &KeyServiceConfig) -> RunningKeyService {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match casebridge::keyservice::start(config).await {
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

/// A federation of three nodes whose exact tokens come from a key service
/// (the key ring keys person encodings only), and the key service.
/// Nodes list two replicas: the one started here, and `replica` (a free
/// address nothing listens on until a test starts a replica there).
async fn federation(
    replica: Option<SocketAddr>,
) -> (
    TestFederation,
    KeyServiceLayout,
    KeyServiceConfig,
    RunningKeyService,
) {
    let mut fed = TestFederation::start_with(&AGENCIES, &AGENCIES, |_, _| {}).await;
    let federation = FederationName::new(FEDERATION).unwrap();
    let ks = init_key_service(&federation, &fed.layout.dir, free_addr()).unwrap();
    for a in AGENCIES {
        let path = &fed.layout.agencies[&agency(a)].node_config;
        let mut text = std::fs::read_to_string(path).unwrap();
        let mut section = node_section(&ks, ks.public_keys.to_str().unwrap());
        if let Some(r) = replica {
            section = section.replace(
                &format!("addresses = [\"{}\"]", ks.addr),
                &format!("addresses = [\"{}\", \"{r}\"]", ks.addr),
            );
            assert!(section.contains(&r.to_string()));
        }
        text.push_str(&section);
        std::fs::write(path, text).unwrap();
    }
    let config = KeyServiceConfig::load(&ks.config).unwrap();
    let service = start_service(&config).await;
    for a in AGENCIES {
        fed.start_node(a).await;
    }
    (fed, ks, config, service)
}

fn phone(value: &str) -> Normalized {
    Normalized {
        kind: IdentifierType::Phone,
        value: value.into(),
    }
}

fn phone_tokens(fed: &TestFederation, a: &str, id: &str) -> Vec<casebridge::proto::v1::Token> {
    let id: casebridge::ids::AlertId = id.parse().unwrap();
    let rec = fed.node(a).core().store.get(&id).unwrap().unwrap();
    rec.pseudonyms
        .iter()
        .flat_map(|s| s.tokens.iter().cloned())
        .filter(|t| t.r#type == IdentifierType::Phone as i32)
        .collect()
}

/// Every file under `dir`, as bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oprf_tokens_make_hits_lookups_and_retractions_and_no_node_key_reproduces_them() {
    let (fed, ks, _config, service) = federation(None).await;
    let mut police = fed.client("police", "cms").await;
    let mut ngo = fed.client("ngo", "cms").await;
    // Same phone, different people: an exact hit on the phone.
    let police_alert = submit(&mut police, "police report").await;
    let mut draft = sample_draft("hotline call");
    draft.subjects[0].identifiers = vec![phone_id("06-55550101", "NL")];
    let ngo_alert = submit_draft(&mut ngo, draft).await;

    let tokens = phone_tokens(&fed, "police", &police_alert.id);
    assert_eq!(
        tokens.len(),
        1,
        "one OPRF token, no key ring token: {tokens:?}"
    );
    assert_eq!(tokens[0].key_version, FIRST_VERSION);
    assert_eq!(phone_tokens(&fed, "ngo", &ngo_alert.id), tokens);

    for (a, own) in [("police", &police_alert.id), ("ngo", &ngo_alert.id)] {
        let mut c = fed.client(a, "analyst").await;
        let hit = eventually("an exact hit on the phone", || {
            let mut c = c.clone();
            async move {
                hit_log(&mut c)
                    .await
                    .into_iter()
                    .find(|h| h.r#type == IdentifierType::Phone as i32)
            }
        })
        .await;
        assert_eq!(&hit.local_alert_id, own);
        let _ = &mut c;
    }

    // A lookup from the third node finds both holders by the phone.
    let mut border = fed.client("border", "analyst").await;
    let answer = border
        .alerts
        .lookup(LookupRequest {
            identifiers: vec![phone_id("+31 6 5555 0101", "")],
            peers: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    for holder in ["police", "ngo"] {
        let a = answer.answers.iter().find(|a| a.agency == holder).unwrap();
        assert!(a.answered, "{}", a.error);
        assert!(
            a.matches
                .iter()
                .any(|m| m.r#type == IdentifierType::Phone as i32),
            "{holder} did not match the phone: {a:?}"
        );
    }

    // No key a node holds reproduces its token of a known phone number: not
    // the key ring (which still keys person encodings), and no 32-byte
    // window of any file under the node's directory used as an HMAC key the
    // way the ring is. Only the key service's secret does.
    let dir = fed.layout.agencies[&agency("police")].dir.clone();
    let ring = KeyRing::load(&fed.layout.dir.join("matching-keys.toml")).unwrap();
    let ring_tokens = Pseudonymizer::new(Some(ring), None)
        .tokens(&phone("+31655550101"), time::OffsetDateTime::now_utc());
    assert!(!ring_tokens.is_empty());
    assert!(ring_tokens.iter().all(|t| t.value != tokens[0].value));
    let secret = SecretKeys::load(&ks.secret_keys).unwrap();
    let (key, _) = secret.get(FIRST_VERSION).unwrap();
    assert_eq!(
        key.token_of(&phone("+31655550101")).unwrap().to_vec(),
        tokens[0].value,
        "the key service's secret reproduces it"
    );
    let seed_line = std::fs::read_to_string(&ks.secret_keys)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("seed = ")
                .map(|s| s.trim_matches('"').to_owned())
        })
        .unwrap();
    let seed = base64_decode(&seed_line);
    for (path, bytes) in files(&dir) {
        assert!(
            !bytes
                .windows(seed_line.len())
                .any(|w| w == seed_line.as_bytes())
                && !bytes.windows(32).any(|w| w == seed.as_slice()),
            "{} holds the key service's seed",
            path.display()
        );
        // Any 32 bytes of any file as an OPRF key seed: none gives the token.
        let is_key_file = path
            .extension()
            .is_some_and(|e| e == "toml" || e == "key" || e == "pem");
        for w in bytes
            .chunks(32)
            .filter(|c| c.len() == 32 && is_key_file)
            .take(16)
        {
            if let Ok(k) = ServerKey::derive(w, FEDERATION, FIRST_VERSION) {
                assert_ne!(
                    k.token_of(&phone("+31655550101")).unwrap().to_vec(),
                    tokens[0].value
                );
            }
        }
    }

    // Retraction reaches the peers as before.
    police
        .alerts
        .retract_alert(RetractAlertRequest {
            id: police_alert.id.clone(),
            expected_version: police_alert.version,
            reason: "entered in error".into(),
        })
        .await
        .unwrap();
    eventually("the retraction at ngo", || async {
        fed.alerts("ngo")
            .await
            .into_iter()
            .find(|a| a.id == police_alert.id && a.retracted)
            .map(|_| ())
    })
    .await;
    fed.shutdown().await;
    service.shutdown().await.unwrap();
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_budgets_refuse_and_a_wrong_pinned_key_is_refused() {
    let replica_addr = free_addr();
    let (mut fed, ks, config, service) = federation(Some(replica_addr)).await;
    // Each start of a key service here is another replica with its own
    // log directory (replicas share keys, not logs).
    let replica = |listen: SocketAddr, dir: &str| {
        let mut c = config.clone();
        c.listen = toml::Spanned::new(0..0, listen);
        c.data_dir = ks.dir.join(dir);
        c
    };
    let mut police = fed.client("police", "cms").await;
    let mut ngo = fed.client("ngo", "cms").await;
    let mut draft = sample_draft("hotline call");
    draft.subjects[0].identifiers = vec![phone_id("06-55550101", "NL")];
    submit_draft(&mut ngo, draft).await;

    // The key service goes down: a submit is still acknowledged, within
    // the timeout, stored with its tokens pending, and shared without
    // subjects.
    service.shutdown().await.unwrap();
    let started = Instant::now();
    let pending = submit(&mut police, "during the outage").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let id: casebridge::ids::AlertId = pending.id.parse().unwrap();
    let rec = fed.node("police").core().store.get(&id).unwrap().unwrap();
    assert!(rec.tokens_pending);
    assert!(phone_tokens(&fed, "police", &pending.id).is_empty());
    assert_eq!(
        fed.node("police").core().ledger.tokens_pending().unwrap(),
        1
    );
    let at_ngo = eventually("the alert at ngo", || async {
        let id = id.clone();
        fed.node("ngo").core().store.get(&id).unwrap()
    })
    .await;
    assert!(
        at_ngo.pseudonyms.is_empty(),
        "no subject shared while pending"
    );
    // A lookup cannot wait: it says why.
    let mut border = fed.client("border", "analyst").await;
    let err = border
        .alerts
        .lookup(LookupRequest {
            identifiers: vec![phone_id("+31 6 5555 0101", "")],
            peers: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("key service"), "{}", err.message());

    // A replica comes up at the second address: the tokens are derived
    // through it, the alert is matched and shared with them.
    let service = start_service(&replica(replica_addr, "data-replica")).await;
    eventually("the pending tokens derived", || async {
        (fed.node("police").core().ledger.tokens_pending().unwrap() == 0).then_some(())
    })
    .await;
    assert_eq!(phone_tokens(&fed, "police", &pending.id).len(), 1);
    let mut analyst = fed.client("police", "analyst").await;
    eventually("the hit after the outage", || {
        let mut c = analyst.clone();
        let own = pending.id.clone();
        async move {
            hit_log(&mut c)
                .await
                .into_iter()
                .find(|h| h.local_alert_id == own)
                .map(|_| ())
        }
    })
    .await;
    let _ = &mut analyst;
    eventually("the subjects at ngo", || async {
        let rec = fed.node("ngo").core().store.get(&id).unwrap()?;
        (!rec.pseudonyms.is_empty()).then_some(())
    })
    .await;
    service.shutdown().await.unwrap();

    // A budget of three elements a day for border: the fourth lookup is
    // refused with the time of the next allowance, and logged.
    let mut tight = replica(ks.addr, "data-tight");
    tight.budget.nodes.insert(
        agency("border"),
        casebridge::config::NodeBudget {
            per_minute: None,
            per_day: Some(casebridge::config::Bounded::new(3)),
        },
    );
    let service = start_service(&tight).await;
    let lookup = LookupRequest {
        identifiers: vec![phone_id("+31 6 5555 0101", "")],
        peers: vec![],
    };
    for _ in 0..3 {
        border.alerts.lookup(lookup.clone()).await.unwrap();
    }
    let refused = border.alerts.lookup(lookup.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("daily budget") && refused.message().contains("next allowance"),
        "{}",
        refused.message()
    );
    service.shutdown().await.unwrap();

    // A node pinning another key refuses the key service's answers.
    let service = start_service(&replica(replica_addr, "data-last")).await;
    let other = ks.dir.join("other-secret.toml");
    casebridge::pseudo::oprf_keys::generate(&other, &FederationName::new(FEDERATION).unwrap())
        .unwrap();
    let wrong = fed.layout.dir.join("wrong-oprf-keys.toml");
    std::fs::write(&wrong, SecretKeys::load(&other).unwrap().public_file()).unwrap();
    fed.stop_node("police").await;
    let path = fed.layout.agencies[&agency("police")].node_config.clone();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(ks.public_keys.to_str().unwrap(), wrong.to_str().unwrap());
    std::fs::write(&path, text).unwrap();
    fed.start_node("police").await;
    let mut police = fed.client("police", "cms").await;
    let before = fed.alerts("police").await.len();
    let err = police
        .alerts
        .submit_alert(casebridge::proto::v1::SubmitAlertRequest {
            draft: Some(sample_draft("pinned to another key")),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("does not verify"),
        "{}",
        err.message()
    );
    assert_eq!(fed.alerts("police").await.len(), before, "nothing stored");
    fed.shutdown().await;
    service.shutdown().await.unwrap();
}
