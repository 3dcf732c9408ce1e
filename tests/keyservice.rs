//! Exact tokens from the OPRF key service (issue 18), with real nodes and a
//! real key service over mutual TLS: hits, lookups and retractions across
//! three nodes; no key a node holds reproduces its tokens; an outage loses
//! nothing and the tokens follow; budgets refuse and are logged; a node
//! pinning the wrong public key refuses the answers.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use casebridge::audit::Action;
use casebridge::certs::{KeyServiceLayout, init_key_service, node_section};
use casebridge::config::KeyServiceConfig;
use casebridge::ids::FederationName;
use casebridge::keyservice::RunningKeyService;
use casebridge::proto::v1::{IdentifierType, LookupRequest, RetractAlertRequest};
use casebridge::pseudo::oprf::{FIRST_VERSION, ServerKey};
use casebridge::pseudo::oprf_keys::SecretKeys;
use casebridge::pseudo::{KeyRing, Normalized, Pseudonymizer};
use common::keyservice::{
    free_addr, hit_between, phone_draft, phone_tokens, rotate_and_restart, start_service, versions,
};
use common::*;
use tonic::Code;

const AGENCIES: [&str; 3] = ["police", "ngo", "border"];

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
    let mut section = node_section(&ks, ks.public_keys.to_str().unwrap());
    if let Some(r) = replica {
        section = section.replace(
            &format!("addresses = [\"{}\"]", ks.addr),
            &format!("addresses = [\"{}\", \"{r}\"]", ks.addr),
        );
        assert!(section.contains(&r.to_string()));
    }
    for a in AGENCIES {
        edit_config(&fed, a, |text| text + &section);
    }
    let config = KeyServiceConfig::load(&ks.config).unwrap();
    let service = start_service(&config).await;
    for a in AGENCIES {
        fed.start_node(a).await;
    }
    (fed, ks, config, service)
}

/// Opens a stopped key service's store (its audit log), waiting for the
/// service's last connections to let go of it.
async fn open_log(dir: &std::path::Path) -> casebridge::store::Store {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match casebridge::store::Store::open_audit_only(dir, 8 << 20) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("key service log not free yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("key service log: {e}"),
        }
    }
}

/// Rewrites `a`'s node.toml with `edit` (the node is stopped or not started).
fn edit_config(fed: &TestFederation, a: &str, edit: impl FnOnce(String) -> String) {
    let path = &fed.layout.agencies[&agency(a)].node_config;
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, edit(text)).unwrap();
}

/// Restarts `a` with its node.toml rewritten by `edit`.
async fn restart_with(fed: &mut TestFederation, a: &str, edit: impl FnOnce(String) -> String) {
    fed.stop_node(a).await;
    edit_config(fed, a, edit);
    fed.start_node(a).await;
}

fn phone(value: &str) -> Normalized {
    Normalized {
        kind: IdentifierType::Phone,
        value: value.into(),
    }
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

/// The first seed of the key service's secret file: sealed under the KEK
/// the file names (as `certs init` writes it), so the file itself holds
/// none in clear; opened here with that KEK.
fn first_seed(secret_keys: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(secret_keys).unwrap();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|s| s.trim_matches('"').to_owned()))
            .unwrap()
    };
    assert!(!text.contains("\nseed ="), "no seed in clear: {text}");
    let kek_file = secret_keys.parent().unwrap().join(value("kek_file = "));
    let kek = casebridge::vault::load_kek(&kek_file).unwrap();
    let key = format!("{FEDERATION}/{FIRST_VERSION}");
    let place = casebridge::vault::Place::Record {
        tree: "oprf_seed",
        key: key.as_bytes(),
    };
    let sealed = base64_decode(&value("sealed_seed = "));
    kek.unwrap(place, &sealed).unwrap().expose().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oprf_tokens_make_hits_lookups_and_retractions_and_no_node_key_reproduces_them() {
    let (fed, ks, config, service) = federation(None).await;
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

    // The key service's public keys, as an operator cross-checks them with
    // the pinned file (a node never takes them from there).
    let police_dir = &fed.layout.agencies[&agency("police")].dir;
    let own = casebridge::identity::TlsIdentity::load(
        &police_dir.join("node.pem"),
        &police_dir.join("node.key"),
    )
    .unwrap();
    let tls =
        casebridge::identity::client_tls_config(&own, &fed.layout.federation_ca, &[]).unwrap();
    let channel = casebridge::identity::connect_channel(
        &ks.addr.to_string(),
        (
            casebridge::identity::NodeIdentity {
                federation: FederationName::new(FEDERATION).unwrap(),
                agency: agency("keyservice"),
            },
            None,
        ),
        std::sync::Arc::new(tls),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let mut key_service = casebridge::proto::v1::key_service_client::KeyServiceClient::new(channel);
    let published = key_service
        .get_public_keys(casebridge::proto::v1::GetPublicKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    // Calls that spend no budget cannot grow the key service's log without
    // bound: 1,000 refused evaluations (a key it does not hold) leave at
    // most a minute's allowance of entries, the last counting the rest.
    for _ in 0..1_000 {
        let refused = key_service
            .evaluate(casebridge::proto::v1::EvaluateRequest {
                key_version: 7,
                blinded_elements: vec![vec![0; 32]],
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
    }
    let pinned = casebridge::pseudo::oprf_keys::PinnedKeys::load(&ks.public_keys).unwrap();
    assert_eq!(published.federation, FEDERATION);
    assert_eq!(published.keys.len(), 1);
    assert_eq!(published.keys[0].version, FIRST_VERSION);
    assert_eq!(
        published.keys[0].public_key,
        pinned.get(FIRST_VERSION).unwrap().key.to_bytes().to_vec()
    );

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
    let seed = first_seed(&ks.secret_keys);
    let seed_line = base64_encode(&seed);
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
    service.shutdown().await.unwrap();
    let store = open_log(&config.data_dir).await;
    let entries: Vec<casebridge::audit::Entry> = store
        .audit_entries(1)
        .map(|r| r.unwrap().entry().unwrap())
        .collect();
    let refused = entries
        .iter()
        .filter(|e| e.event.outcome == "FAILED_PRECONDITION")
        .count();
    assert!(
        refused > 0 && refused <= casebridge::keyservice::REFUSAL_ENTRIES_PER_MINUTE as usize + 2,
        "{refused} entries for 1,000 refused calls, in {:?}",
        entries.iter().map(|e| &e.event.outcome).collect::<Vec<_>>()
    );
    fed.shutdown().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
    tight.metrics.listen = Some(toml::Spanned::new(0..0, free_addr()));
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
    // Its metrics name the node that ran out, never a value.
    let (_, metrics) = http_get(service.metrics_addr.unwrap(), "/metrics").await;
    for line in [
        "casebridge_keyservice_refusals_total{node=\"border\",reason=\"per_day\"} 1",
        "casebridge_keyservice_elements_total{node=\"border\"} 3",
        "casebridge_keyservice_day_remaining{node=\"border\"} 0",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
    // A flood of connections that are not TLS: each counted, and logged
    // only up to the rate a node's listeners log them at.
    const FLOOD: usize = 60;
    for _ in 0..FLOOD {
        use tokio::io::AsyncWriteExt;
        let mut c = tokio::net::TcpStream::connect(service.addr).await.unwrap();
        let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
    }
    let counted = format!("casebridge_keyservice_refused_handshakes_total {FLOOD}");
    eventually("every refused handshake counted", || async {
        let (_, m) = http_get(service.metrics_addr.unwrap(), "/metrics").await;
        m.contains(&counted).then_some(())
    })
    .await;
    service.shutdown().await.unwrap();
    // The key service's own log: counts per node, the refusal, never values;
    // its chain and checkpoints verify.
    let store = open_log(&tight.data_dir).await;
    let entries: Vec<casebridge::audit::Entry> = store
        .audit_entries(1)
        .map(|r| r.unwrap().entry().unwrap())
        .collect();
    let handshakes = entries
        .iter()
        .filter(|e| e.event.action == Action::Handshake)
        .count();
    assert!(
        (1..FLOOD).contains(&handshakes),
        "{handshakes} handshake entries for {FLOOD} refusals"
    );
    let evaluations = |outcome: &str| {
        entries
            .iter()
            .filter(|e| {
                e.event.action == Action::KeyServiceEvaluate
                    && e.event.outcome == outcome
                    && e.event.actor == "node:border"
            })
            .collect::<Vec<_>>()
    };
    let refused = evaluations("RESOURCE_EXHAUSTED");
    assert_eq!(refused.len(), 1, "the refusal is in the key service's log");
    assert_eq!(refused[0].event.detail["refused"], "per_day");
    let elements: u64 = evaluations("OK")
        .iter()
        .map(|e| e.event.detail["elements"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(elements, 3, "three elements evaluated for border");
    let body: String = entries
        .iter()
        .map(|e| serde_json::to_string(&e.event).unwrap())
        .collect();
    assert!(
        // Every written form of the phone; not bare digit runs, which a
        // millisecond timestamp holds by chance now and then.
        !["55550101", "5555 0101", "06-5555", "+31 6 5555"]
            .iter()
            .any(|v| body.contains(v)),
        "a value in the key service's log"
    );
    let key =
        casebridge::audit::signing::PublicKey::of_signing_key(&tight.audit_signing_key()).unwrap();
    store
        .audit_verify(&key, &[])
        .expect("the key service's log verifies");
    store.close().await.unwrap();
    drop(store);
    // The operator's summary of that log: per node and day.
    let (code, out, err) = cli(&[
        "keyservice",
        "usage",
        "--data-dir",
        tight.data_dir.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let border: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["node"] == "border")
        .unwrap_or_else(|| panic!("no line for border in {out}"));
    assert_eq!(border["elements"], 3);
    assert_eq!(border["calls"], 3);
    assert_eq!(border["refused"]["per_day"], 1);
    // And `audit verify` reads the key service's log as it reads a node's.
    let public = casebridge::audit::signing::public_key_path(&tight.audit_signing_key());
    let (code, out, err) = cli(&[
        "audit",
        "verify",
        "--data-dir",
        tight.data_dir.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit log intact"), "{out}");

    // A node pinning another key refuses the key service's answers.
    let service = start_service(&replica(replica_addr, "data-last")).await;
    let other = ks.dir.join("other-secret.toml");
    casebridge::pseudo::oprf_keys::generate(
        &other,
        &FederationName::new(FEDERATION).unwrap(),
        None,
    )
    .unwrap();
    let wrong = fed.layout.dir.join("wrong-oprf-keys.toml");
    std::fs::write(&wrong, SecretKeys::load(&other).unwrap().public_file()).unwrap();
    restart_with(&mut fed, "police", |text| {
        text.replace(ks.public_keys.to_str().unwrap(), wrong.to_str().unwrap())
    })
    .await;
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

/// A running federation moves from the key ring's HMAC tokens to the key
/// service's: first both kinds (`also_key_ring_tokens`), then the OPRF
/// alone; alerts from before, during and after keep making hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_from_the_key_ring_keeps_hits_between_old_and_new_alerts() {
    let mut fed = TestFederation::start(&AGENCIES).await;
    let mut police = fed.client("police", "cms").await;
    let old = submit_draft(&mut police, phone_draft("before the migration")).await;
    assert_eq!(versions(&phone_tokens(&fed, "police", &old.id)), [1]);

    // Step 1: a key service; police and ngo derive both kinds, border not yet.
    let federation = FederationName::new(FEDERATION).unwrap();
    let ks = init_key_service(&federation, &fed.layout.dir, free_addr()).unwrap();
    let config = KeyServiceConfig::load(&ks.config).unwrap();
    let service = start_service(&config).await;
    let section = node_section(&ks, ks.public_keys.to_str().unwrap());
    for a in ["police", "ngo"] {
        restart_with(&mut fed, a, |text| {
            text + &section + "also_key_ring_tokens = true\n"
        })
        .await;
    }
    // police re-derived its own alert at start: both kinds now.
    eventually("the old alert re-derived with both token kinds", || async {
        (versions(&phone_tokens(&fed, "police", &old.id)) == [1, FIRST_VERSION]).then_some(())
    })
    .await;
    let mut ngo = fed.client("ngo", "cms").await;
    let during = submit_draft(&mut ngo, phone_draft("during the migration")).await;
    assert_eq!(
        versions(&phone_tokens(&fed, "ngo", &during.id)),
        [1, FIRST_VERSION]
    );
    hit_between(&fed, "ngo", &during.id, &old.id).await;
    // border has not moved: it still matches both on the ring's tokens.
    let mut border = fed.client("border", "cms").await;
    let unmoved = submit_draft(&mut border, phone_draft("a node not moved yet")).await;
    assert_eq!(versions(&phone_tokens(&fed, "border", &unmoved.id)), [1]);
    hit_between(&fed, "border", &unmoved.id, &old.id).await;
    hit_between(&fed, "border", &unmoved.id, &during.id).await;

    // Step 2: every node on the key service alone.
    for a in AGENCIES {
        restart_with(&mut fed, a, |text| {
            let text = text.replace("also_key_ring_tokens = true\n", "");
            if text.contains("[key_service]") {
                text
            } else {
                text + &section
            }
        })
        .await;
    }
    for (a, id) in [
        ("police", &old.id),
        ("ngo", &during.id),
        ("border", &unmoved.id),
    ] {
        eventually("own alerts re-derived with OPRF tokens only", || async {
            (versions(&phone_tokens(&fed, a, id)) == [FIRST_VERSION]).then_some(())
        })
        .await;
    }
    let mut border = fed.client("border", "cms").await;
    let after = submit_draft(&mut border, phone_draft("after the migration")).await;
    assert_eq!(
        versions(&phone_tokens(&fed, "border", &after.id)),
        [FIRST_VERSION]
    );
    hit_between(&fed, "border", &after.id, &old.id).await;
    hit_between(&fed, "border", &after.id, &during.id).await;
    fed.shutdown().await;
    service.shutdown().await.unwrap();
}

/// The pinned public file of the key service's keys, without `drop_version`.
fn public_file_without(secret: &std::path::Path, drop_version: u32, out: &std::path::Path) {
    let text = std::fs::read_to_string(secret).unwrap();
    let mut value: toml::Value = toml::from_str(&text).unwrap();
    value["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["version"].as_integer() != Some(i64::from(drop_version)));
    // The copy lives elsewhere: its KEK is named from where the original is.
    if let Some(kek) = value.get("kek_file").and_then(|k| k.as_str()) {
        let kek = secret.parent().unwrap().join(kek);
        value["kek_file"] = toml::Value::String(kek.display().to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("partial.toml");
    casebridge::secrets::create_new(&partial, toml::to_string(&value).unwrap().as_bytes(), true)
        .unwrap();
    std::fs::write(out, SecretKeys::load(&partial).unwrap().public_file()).unwrap();
}

/// A key rotation with an overlap: a node that pinned only the old key, one
/// that pinned both, and one that pinned only the new key all keep making
/// hits through the node that derives under both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_overlap_keeps_hits_across_key_versions() {
    let (mut fed, ks, config, service) = federation(None).await;
    let (new, service) = rotate_and_restart(service, &ks, &config).await;
    assert_eq!(new, FIRST_VERSION + 1);
    // ngo pins both; police still only the old one; border only the new one.
    let old_only = fed.layout.dir.join("oprf-keys-old.toml");
    public_file_without(&ks.secret_keys, new, &old_only);
    let new_only = fed.layout.dir.join("oprf-keys-new.toml");
    public_file_without(&ks.secret_keys, FIRST_VERSION, &new_only);
    for (a, file) in [
        ("police", &old_only),
        ("border", &new_only),
        ("ngo", &ks.public_keys),
    ] {
        restart_with(&mut fed, a, |text| {
            text.replace(ks.public_keys.to_str().unwrap(), file.to_str().unwrap())
        })
        .await;
    }
    let mut police = fed.client("police", "cms").await;
    let a = submit_draft(&mut police, phone_draft("old key")).await;
    assert_eq!(
        versions(&phone_tokens(&fed, "police", &a.id)),
        [FIRST_VERSION]
    );
    let mut ngo = fed.client("ngo", "cms").await;
    let b = submit_draft(&mut ngo, phone_draft("both keys")).await;
    assert_eq!(
        versions(&phone_tokens(&fed, "ngo", &b.id)),
        [FIRST_VERSION, new]
    );
    let mut border = fed.client("border", "cms").await;
    let c = submit_draft(&mut border, phone_draft("new key")).await;
    assert_eq!(versions(&phone_tokens(&fed, "border", &c.id)), [new]);
    hit_between(&fed, "ngo", &b.id, &a.id).await;
    hit_between(&fed, "ngo", &b.id, &c.id).await;
    // Old and new key alone never meet: the overlap node is the bridge,
    // which is why every node must have the new file before the old key ends.
    fed.shutdown().await;
    service.shutdown().await.unwrap();
}

/// Each call's request and answer, as encoded on the wire.
type Recorded = std::sync::Arc<std::sync::Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

/// A key service that records what crosses its wire: every request and
/// answer as encoded protobuf, evaluated with the real secret key.
#[derive(Clone)]
struct RecordingKeyService {
    key: std::sync::Arc<ServerKey>,
    wire: Recorded,
}

#[tonic::async_trait]
impl casebridge::proto::v1::key_service_server::KeyService for RecordingKeyService {
    async fn evaluate(
        &self,
        req: tonic::Request<casebridge::proto::v1::EvaluateRequest>,
    ) -> Result<tonic::Response<casebridge::proto::v1::EvaluateResponse>, tonic::Status> {
        use prost::Message as _;
        let req = req.into_inner();
        let (evaluated, proof) = self.key.evaluate(&req.blinded_elements).unwrap();
        let resp = casebridge::proto::v1::EvaluateResponse {
            key_version: req.key_version,
            evaluated_elements: evaluated.iter().map(|e| e.to_vec()).collect(),
            proof: proof.to_vec(),
            budget: None,
        };
        self.wire
            .lock()
            .unwrap()
            .push((req.encode_to_vec(), resp.encode_to_vec()));
        Ok(tonic::Response::new(resp))
    }

    async fn get_public_keys(
        &self,
        _: tonic::Request<casebridge::proto::v1::GetPublicKeysRequest>,
    ) -> Result<tonic::Response<casebridge::proto::v1::GetPublicKeysResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not recorded"))
    }
}

/// What crosses the key service's wire: only blinded elements one way,
/// evaluated elements and a proof the other — no identifier in any form, no
/// token, and the same identifier blinded differently each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_service_sees_only_blinded_elements_and_proofs() {
    use prost::Message as _;
    let mut fed = TestFederation::start_with(&AGENCIES, &AGENCIES, |_, _| {}).await;
    let federation = FederationName::new(FEDERATION).unwrap();
    let ks = init_key_service(&federation, &fed.layout.dir, free_addr()).unwrap();
    let section = node_section(&ks, ks.public_keys.to_str().unwrap());
    for a in AGENCIES {
        edit_config(&fed, a, |text| text + &section);
    }
    let secret = SecretKeys::load(&ks.secret_keys).unwrap();
    let seed = first_seed(&ks.secret_keys);
    let key = ServerKey::derive(&seed, FEDERATION, FIRST_VERSION).unwrap();
    assert_eq!(
        key.public_key(),
        secret.get(FIRST_VERSION).unwrap().0.public_key()
    );
    let recorder = RecordingKeyService {
        key: std::sync::Arc::new(key),
        wire: Default::default(),
    };
    let own =
        casebridge::identity::TlsIdentity::load(&ks.dir.join("node.pem"), &ks.dir.join("node.key"))
            .unwrap();
    let tls = tokio::sync::watch::channel(std::sync::Arc::new(
        casebridge::identity::server_tls_config(&own, &fed.layout.federation_ca, &[]).unwrap(),
    ))
    .1;
    let listener = tokio::net::TcpListener::bind(ks.addr).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                casebridge::proto::v1::key_service_server::KeyServiceServer::new(recorder.clone()),
            )
            .serve_with_incoming_shutdown(
                casebridge::identity::serve_tls(
                    listener,
                    tls,
                    Duration::from_secs(5),
                    Duration::from_secs(3600),
                    std::sync::Arc::new(|_, _| {}),
                    stop.clone(),
                ),
                stop.clone().cancelled_owned(),
            ),
    );
    for a in AGENCIES {
        fed.start_node(a).await;
    }
    let mut police = fed.client("police", "cms").await;
    let mut draft = sample_draft("recruiter's numbers");
    draft.subjects[0].identifiers.extend([
        email_id("Recruit.Jobs+eu@Example.org"),
        iban_id("NL91 ABNA 0417 1643 00"),
    ]);
    let sent = submit_draft(&mut police, draft).await;
    let mut border = fed.client("border", "analyst").await;
    border
        .alerts
        .lookup(LookupRequest {
            identifiers: vec![phone_id("+31 6 5555 0101", "")],
            peers: vec![],
        })
        .await
        .unwrap();

    let id: casebridge::ids::AlertId = sent.id.parse().unwrap();
    let rec = fed.node("police").core().store.get(&id).unwrap().unwrap();
    let tokens: Vec<Vec<u8>> = rec
        .pseudonyms
        .iter()
        .flat_map(|s| s.tokens.iter().map(|t| t.value.clone()))
        .collect();
    assert_eq!(
        tokens.len(),
        4,
        "phone, person, e-mail and IBAN tokens from the key service"
    );
    let wire = recorder.wire.lock().unwrap().clone();
    assert_eq!(
        wire.len(),
        2,
        "one evaluation for the submit, one for the lookup"
    );
    let forbidden: Vec<Vec<u8>> = [
        "+31 6 5555 0101",
        "+31655550101",
        "31655550101",
        "655550101",
        "Recruit.Jobs",
        "recruit.jobs",
        "example.org",
        "NL91",
        "ABNA",
        "0417164300",
        "casebridge/token",
        "PHONE",
        "Maria",
        "Ionescu",
        "IONESCU",
        "1991",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain(tokens.iter().cloned())
    .collect();
    let mut blinded_phone = Vec::new();
    for (request, answer) in &wire {
        for bytes in [request, answer] {
            for f in &forbidden {
                assert!(
                    !bytes.windows(f.len()).any(|w| w == f.as_slice()),
                    "{:?} crossed the key service's wire",
                    String::from_utf8_lossy(f)
                );
            }
        }
        let req = casebridge::proto::v1::EvaluateRequest::decode(request.as_slice()).unwrap();
        let resp = casebridge::proto::v1::EvaluateResponse::decode(answer.as_slice()).unwrap();
        assert!(req.blinded_elements.iter().all(|e| e.len() == 32));
        assert!(resp.evaluated_elements.iter().all(|e| e.len() == 32));
        assert_eq!(resp.proof.len(), 64);
        assert_eq!(req.key_version, FIRST_VERSION);
        blinded_phone.push(req.blinded_elements.clone());
    }
    // The phone is in both calls, blinded afresh: the two requests share
    // no element, so the key service cannot tell it was the same number.
    assert_eq!(blinded_phone[1].len(), 1);
    assert!(
        !blinded_phone[0].contains(&blinded_phone[1][0]),
        "the same identifier blinded the same way twice"
    );
    fed.shutdown().await;
    stop.cancel();
    let _ = server.await;
}

/// The key service starts on a listener it is handed — port 0 here, as a
/// test or a supervisor hands a node its sockets — through the server
/// skeleton it shares with nodes: a connection that is not TLS is refused,
/// counted, and kept in its audit-only log between the start and the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_service_serves_on_a_listener_it_is_handed() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let federation = FederationName::new(FEDERATION).unwrap();
    casebridge::certs::init_federation(&federation, &Default::default(), dir.path()).unwrap();
    // The address in its config is never bound: the listener handed over is.
    let ks = init_key_service(&federation, dir.path(), free_addr()).unwrap();
    let mut config = KeyServiceConfig::load(&ks.config).unwrap();
    config.metrics.listen = Some(toml::Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let service = casebridge::keyservice::start(&config, listener)
        .await
        .unwrap();
    assert_eq!(service.addr, at);
    let mut c = tokio::net::TcpStream::connect(at).await.unwrap();
    let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
    eventually("the refused handshake counted", || async {
        let (_, m) = http_get(service.metrics_addr.unwrap(), "/metrics").await;
        m.contains("casebridge_keyservice_refused_handshakes_total 1")
            .then_some(())
    })
    .await;
    service.shutdown().await.unwrap();
    let store = open_log(&config.data_dir).await;
    let actions: Vec<(Action, String)> = store
        .audit_entries(1)
        .map(|r| {
            let e = r.unwrap().entry().unwrap().event;
            (
                e.action,
                e.detail.get("listener").cloned().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            (Action::KeyServiceStart, at.to_string()),
            (Action::Handshake, "keyservice".to_owned()),
            (Action::KeyServiceStop, String::new()),
        ]
    );
    assert!(
        matches!(
            store.bound_received_retention(std::time::SystemTime::now()),
            Err(casebridge::store::StoreError::AuditOnly)
        ),
        "the key service's store matches nothing"
    );
}
