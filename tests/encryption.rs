//! Encryption at rest (docs/encryption.md), with real nodes over mTLS and
//! the real store on disk: a node with `[encryption]` keeps no name,
//! phone, IBAN or narrative in clear anywhere under its directory — store,
//! epoch keys, backups — while everything reads back through the API; an
//! epoch turns on time, the live data is sealed again and the old epoch
//! key destroyed, after which a backup taken in it no longer opens; a
//! store in clear is refused once encryption is configured (naming `store
//! encrypt`, which seals a copy), and a sealed store without its KEK.

mod common;

use std::path::{Path, PathBuf};

use casebridge::proto::v1::{BackupStoreRequest, GetAlertRequest, QueryAuditRequest};
use common::*;

/// What must never be found in clear under the node's directory.
const CANARIES: [&str; 7] = [
    "Ioana",
    "Popescu",
    "+40 721 555 013",
    "+40721555013",
    "RO49AAAA1B31007593840000",
    "canary narrative: the recruiter kept the passports",
    "CASE-CANARY-77",
];

fn canary_draft() -> casebridge::proto::v1::AlertDraft {
    let mut d = sample_draft(CANARIES[5]);
    d.case_reference = CANARIES[6].into();
    d.subjects[0].identifiers = vec![
        person_id(CANARIES[0], CANARIES[1], "1994-02-11"),
        phone_id(CANARIES[2], "RO"),
        iban_id(CANARIES[4]),
    ];
    d
}

/// Every file under `dir` with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                found.push((path, bytes));
            }
        }
    }
    found
}

/// Every file under `dir`, with the canaries each holds in clear.
fn canaries_in(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut found = Vec::new();
    for (path, bytes) in files_under(dir) {
        for c in CANARIES {
            if bytes.windows(c.len()).any(|w| w == c.as_bytes()) {
                found.push((path.clone(), c));
            }
        }
    }
    found
}

/// Police and ngo sealed (`[encryption]` in each node.toml, the KEK
/// `certs init` wrote beside each store), with epochs of 5 s and no backup
/// retention. Returns police's KEK.
async fn federation() -> (TestFederation, PathBuf) {
    federation_with(0, &[]).await
}

/// [`federation`] with backups kept `days`, retention purges checked
/// every second, and the agencies in `clear` started without encryption.
async fn federation_with(days: u32, clear: &[&str]) -> (TestFederation, PathBuf) {
    let mut fed = TestFederation::start_with(&["police", "ngo"], &["police", "ngo"], |_, c| {
        c.alerts.purge_interval_secs = casebridge::config::Bounded::new(1);
    })
    .await;
    for a in ["police", "ngo"] {
        if !clear.contains(&a) {
            let config = &fed.layout.agencies[&agency(a)].node_config;
            seal(
                config,
                &format!("epoch_secs = 5\nbackup_retention_days = {days}\n"),
            );
        }
        fed.start_node(a).await;
    }
    let kek = fed
        .config("police")
        .encryption
        .unwrap()
        .kek_file
        .into_inner();
    (fed, kek)
}

/// Police's store backed up (admin API) under `label`.
async fn backup(fed: &TestFederation, label: &str) -> casebridge::proto::v1::BackupStoreResponse {
    let mut admin = fed.client("police", "admin").await;
    let request = BackupStoreRequest {
        label: label.into(),
    };
    admin
        .admin
        .backup_store(request)
        .await
        .unwrap()
        .into_inner()
}

/// `casebridge store restore` of `from` into the node of `config`.
fn restore(config: &Path, from: &str) -> (i32, String, String) {
    let config = config.to_str().unwrap();
    cli(&["store", "restore", "--config", config, "--from", from])
}

/// Why a node started from `config` is refused (it must be: `what`).
async fn refused_start(config: &Path, what: &str) -> String {
    let config = casebridge::config::NodeConfig::load(config).unwrap();
    let listeners = casebridge::node::Listeners::bind(&config).await.unwrap();
    let started = casebridge::node::start(config, listeners).await;
    started.err().expect(what).to_string()
}

async fn narrative(fed: &TestFederation, a: &str, id: &str) -> String {
    let mut c = fed.client(a, "cms").await;
    let alert = c
        .alerts
        .get_alert(GetAlertRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    alert.content.unwrap_or_default().narrative
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_node_keeps_nothing_in_clear_and_its_epochs_turn() {
    let (mut fed, _kek) = federation().await;
    let police_dir = fed.layout.agencies[&agency("police")].dir.clone();
    let mut police = fed.client("police", "cms").await;
    let own = submit_draft(&mut police, canary_draft()).await;
    let mut from_ngo = canary_draft();
    from_ngo.case_reference = String::new();
    let received = submit_draft(&mut fed.client("ngo", "cms").await, from_ngo).await;
    fed.held("police", &received.id).await;
    fed.held("ngo", &own.id).await;
    let backup = backup(&fed, "in-epoch-one").await;

    // While epoch 1 is kept, the backup opens with the node's keys.
    assert_eq!(
        open_backup(&fed, &backup.path, &own.id).await.unwrap(),
        CANARIES[5]
    );

    // Everything reads back through the API; nothing is in clear on disk.
    assert_eq!(narrative(&fed, "police", &own.id).await, CANARIES[5]);
    assert_eq!(narrative(&fed, "police", &received.id).await, CANARIES[5]);
    fed.stop_node("police").await;
    assert_eq!(canaries_in(&police_dir), []);
    // Offline tools open the sealed store with the node's config.
    let config = fed.layout.agencies[&agency("police")].node_config.clone();
    let (code, out, err) = cli(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    fed.start_node("police").await;
    assert_eq!(narrative(&fed, "police", &own.id).await, CANARIES[5]);

    // The epoch turns (5 s): the live data is sealed again, epoch 1 destroyed.
    let turned = eventually("epoch 1 destroyed", || async {
        let mut admin = fed.client("police", "admin").await;
        let entries = admin
            .admin
            .query_audit(QueryAuditRequest {
                action: "store.epoch".into(),
                page_size: 50,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries;
        entries.into_iter().find(|e| {
            e.detail
                .get("destroyed")
                .is_some_and(|d| d.split(',').any(|x| x == "1"))
        })
    })
    .await;
    assert!(
        turned.detail["resealed"].parse::<u64>().unwrap() > 0,
        "{turned:?}"
    );
    // Status says where the epochs stand, for the operator and auditors.
    let status = fed.status("police").await.encryption.unwrap();
    assert!(status.epoch >= 2 && !status.kept.contains(&1), "{status:?}");
    assert_eq!(status.backup_retention_secs, 0);
    let (code, out, err) = fed.cli_as("police", "admin", &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("encryption  epoch {}", status.epoch)),
        "{out}"
    );
    assert_eq!(narrative(&fed, "police", &own.id).await, CANARIES[5]);
    assert_eq!(narrative(&fed, "police", &received.id).await, CANARIES[5]);
    fed.stop_node("police").await;
    assert_eq!(canaries_in(&police_dir), []);
    // The backup taken in epoch 1 no longer opens: kept for no days, its
    // key went at the end of that epoch.
    let err = open_backup(&fed, &backup.path, &own.id)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("backup key") && err.contains("is not kept"),
        "{err}"
    );
    // `store restore` says so too, and moves nothing.
    let (code, out, err) = restore(&config, &backup.path);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("backup key") && err.contains("backup_retention_days"),
        "{err}"
    );
    assert!(!err.contains("is the node running"), "{err}");
    fed.start_node("police").await;
    fed.shutdown().await;
}

/// Police's backup at `path`, opened with police's KEK and epoch keys;
/// the narrative of its alert `id`.
async fn open_backup(
    fed: &TestFederation,
    path: &str,
    id: &str,
) -> Result<String, casebridge::store::StoreError> {
    let config = fed.config("police");
    let e = config.encryption.as_ref().unwrap();
    let vault = casebridge::store::Vault::open(e.kek_file.get_ref(), &config.epoch_keys_dir())?;
    let store = casebridge::store::Store::open_sealed(Path::new(path), 8 << 20, None, vault)?;
    let alert = store.get(&id.parse().unwrap())?.unwrap();
    Ok(alert.alert.unwrap().content.unwrap_or_default().narrative)
}

/// Whether police serves alert `id` as purged: retracted, no content.
async fn served_purged(fed: &TestFederation, id: &str) -> bool {
    let mut c = fed.client("police", "cms").await;
    let alert = c
        .alerts
        .get_alert(GetAlertRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    alert.retracted && alert.content.is_none() && alert.subjects.is_empty()
}

/// Crypto-shredding: a backup is taken; then one alert is retracted and
/// another purged at its retention deadline. After the epoch has turned,
/// the backup restored with the node's keys gives back every other alert
/// whole and those two as purged, and the store still holds nothing in
/// clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_reaches_a_backup_restored_after_it() {
    let (mut fed, _kek) = federation_with(1, &[]).await;
    let police_dir = fed.layout.agencies[&agency("police")].dir.clone();
    let mut police = fed.client("police", "cms").await;
    let kept = submit_draft(&mut police, canary_draft()).await;
    let retracted = submit_draft(&mut police, canary_draft()).await;
    let mut draft = canary_draft();
    let until = std::time::SystemTime::now() + std::time::Duration::from_secs(6);
    draft.content.as_mut().unwrap().retention_until = Some(casebridge::time::timestamp(until));
    let expiring = submit_draft(&mut police, draft).await;
    let backup = backup(&fed, "before-the-purges").await;

    police
        .alerts
        .retract_alert(casebridge::proto::v1::RetractAlertRequest {
            id: retracted.id.clone(),
            expected_version: 1,
            reason: "entered in error".into(),
        })
        .await
        .unwrap();
    eventually("the expiring alert purged", || async {
        served_purged(&fed, &expiring.id).await.then_some(())
    })
    .await;
    let purged_in = fed.status("police").await.encryption.unwrap().epoch;
    eventually("the epoch of the purges destroyed", || async {
        let status = fed.status("police").await.encryption.unwrap();
        (status.epoch > purged_in && !status.kept.contains(&purged_in)).then_some(())
    })
    .await;

    fed.stop_node("police").await;
    let config = fed.layout.agencies[&agency("police")].node_config.clone();
    let (code, out, err) = restore(&config, &backup.path);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("2 alerts, 0 releases and 0 disclosure requests of the backup were purged"),
        "{out}"
    );
    let (code, out, err) = cli(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "the restored log verifies: {out}{err}");
    fed.start_node("police").await;
    assert_eq!(narrative(&fed, "police", &kept.id).await, CANARIES[5]);
    assert!(served_purged(&fed, &retracted.id).await);
    assert!(served_purged(&fed, &expiring.id).await);
    // What the purges removed from the indexes stays removed: a lookup of
    // the phone and the person all three held finds only the alert kept.
    let answers = fed
        .client("police", "cms")
        .await
        .alerts
        .lookup(casebridge::proto::v1::LookupRequest {
            identifiers: vec![
                phone_id(CANARIES[3], ""),
                person_id(CANARIES[0], CANARIES[1], "1994-02-11"),
            ],
            peers: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let found: std::collections::BTreeSet<&str> = answers.answers[0]
        .matches
        .iter()
        .map(|m| m.alert_id.as_str())
        .collect();
    assert_eq!(found, [kept.id.as_str()].into(), "{answers:?}");
    fed.stop_node("police").await;
    assert_eq!(canaries_in(&police_dir), []);
    fed.start_node("police").await;
    fed.shutdown().await;
}

/// A sealed record copied, as it lies on disk, onto another alert's key
/// (an attacker with the disk, or damage) does not open: that alert reads
/// as DATA_LOSS naming the tree and the key, every other alert reads and
/// submits go on, and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_moved_to_another_key_is_refused_by_name_and_the_node_serves_on() {
    let (mut fed, _kek) = federation().await;
    let mut police = fed.client("police", "cms").await;
    let a = submit_draft(&mut police, canary_draft()).await;
    let b = submit_draft(&mut police, sample_draft("the other alert")).await;
    fed.stop_node("police").await;
    {
        let dir = fed.config("police").store.dir;
        let raw = casebridge::store::engine::Db::open(&dir, &Default::default()).unwrap();
        let alerts = raw.tree("alerts").unwrap();
        let sealed = raw.get(alerts, a.id.as_bytes()).unwrap().unwrap();
        raw.transaction(|tx| tx.insert(alerts, b.id.as_bytes(), &sealed))
            .unwrap();
        raw.sync().unwrap();
    }
    fed.start_node("police").await;
    let mut police = fed.client("police", "cms").await;
    let err = police
        .alerts
        .get_alert(GetAlertRequest { id: b.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    let hex_b = casebridge::text::hex(b.id.as_bytes());
    assert!(
        err.message().contains("tree alerts") && err.message().contains(&hex_b[..40]),
        "{}",
        err.message()
    );
    assert!(!err.message().contains(CANARIES[5]), "{}", err.message());
    assert_eq!(narrative(&fed, "police", &a.id).await, CANARIES[5]);
    let c = submit_draft(&mut police, sample_draft("after the damage")).await;
    assert_eq!(narrative(&fed, "police", &c.id).await, "after the damage");
    fed.shutdown().await;
}

const IMPORT_MAPPING: &str = r#"
source = "labour-inspections"
id_column = "Inspection no"
delimiter = ";"
phone_region = "NL"

[defaults]
severity = "high"
tlp = "green"

[content]
category = "Sector finding"
country = "Country"
city = "Town"
narrative = "Finding"

[[subjects]]
role = "potential_victim"
given_names = "Worker first name"
family_name = "Worker surname"
phones = "Worker phone"

[values.category]
"uitbuiting" = "labour_exploitation"
"#;

/// A register's record id and a client's request id may name a case: in
/// a sealed store neither is an index key (a keyed hash stands in), yet
/// re-importing finds the record, the import list names it, and a retry
/// with the same request id is recognized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_ids_and_request_ids_are_keyed_hashes_on_disk() {
    const RECORD: &str = "REG-CANARY-9913";
    const REQUEST: &str = "REQ-CANARY-4471";
    let (mut fed, _kek) = federation().await;
    let police_dir = fed.layout.agencies[&agency("police")].dir.clone();
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("m.toml");
    std::fs::write(&mapping, IMPORT_MAPPING).unwrap();
    let csv = dir.path().join("register.csv");
    std::fs::write(
        &csv,
        format!(
            "Inspection no;Sector finding;Country;Town;Finding;Worker first name;Worker surname;Worker phone\n\
             {RECORD};uitbuiting;NL;Westland;canary import narrative;Ioana;Popescu;06 12345678\n"
        ),
    )
    .unwrap();
    let config = fed.layout.agencies[&agency("police")].client_config("cms");
    let import = || {
        cli(&[
            "--client-config",
            config.to_str().unwrap(),
            "alert",
            "import",
            "--mapping",
            mapping.to_str().unwrap(),
            csv.to_str().unwrap(),
        ])
    };
    let (code, out, err) = import();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created 1"), "{out}");
    let (code, out, err) = import();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("unchanged 1"),
        "found again by its keyed hash: {out}"
    );
    let mut police = fed.client("police", "cms").await;
    let listed = police
        .alerts
        .list_imported(casebridge::proto::v1::ListImportedRequest {
            source: "labour-inspections".into(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].source_id, RECORD);

    let submit = || casebridge::proto::v1::SubmitAlertRequest {
        draft: Some(canary_draft()),
        request_id: REQUEST.into(),
        ..Default::default()
    };
    let first = police
        .alerts
        .submit_alert(submit())
        .await
        .unwrap()
        .into_inner();
    let again = police
        .alerts
        .submit_alert(submit())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, again.id, "a retry, recognized");
    fed.stop_node("police").await;
    let leaks: Vec<_> = [RECORD, REQUEST]
        .iter()
        .flat_map(|needle| {
            files_under(&police_dir)
                .into_iter()
                .filter(move |(_, bytes)| {
                    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
                })
                .map(move |(path, _)| (path, *needle))
        })
        .collect();
    assert!(leaks.is_empty(), "{leaks:?}");
    fed.start_node("police").await;
    fed.shutdown().await;
}

/// A disclosure request (its purpose naming the victim) and the release
/// that answers it (the raw phone) leave no canary on either sealed disk;
/// once decided past its retention the request is purged at both nodes:
/// nothing of what it asked survives in the case or its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_and_its_release_are_sealed_and_the_request_is_purged_in_time() {
    use casebridge::proto::v1::send_disclosure_request::About;
    use casebridge::proto::v1::{
        DecideRequest, DisclosureState, GetDisclosureRequestRequest, HandlingCode, HitVerdict,
        IdentifierType, LegalBasis, LocationDetail, ReleaseSelection, ReviewHitRequest,
        SendDisclosureRequest, TimeDetail, Urgency,
    };
    let (mut fed, _kek) = federation().await;
    let dirs: Vec<PathBuf> = ["police", "ngo"]
        .iter()
        .map(|a| fed.layout.agencies[&agency(a)].dir.clone())
        .collect();
    let own = submit_draft(&mut fed.client("police", "cms").await, canary_draft()).await;
    let mut from_ngo = canary_draft();
    from_ngo.case_reference = String::new();
    submit_draft(&mut fed.client("ngo", "cms").await, from_ngo).await;
    let mut ngo = fed.client("ngo", "analyst").await;
    let hit = first_hit(&ngo).await;
    let review = ReviewHitRequest {
        number: hit,
        verdict: HitVerdict::Confirmed as i32,
        note: String::new(),
    };
    ngo.alerts.review_hit(review).await.unwrap();
    let ask = SendDisclosureRequest {
        about: Some(About::HitNumber(hit)),
        legal_basis: LegalBasis::VictimReferralConsent as i32,
        purpose: format!("refer {} {} to a shelter", CANARIES[0], CANARIES[1]),
        case_reference: CANARIES[6].into(),
        urgency: Urgency::Urgent as i32,
        ..Default::default()
    };
    let sent = ngo.disclosure.send_request(ask).await.unwrap().into_inner();
    let id = sent.request.unwrap().id;
    let legal = fed.client("police", "legal").await;
    let state_at = |client: casebridge::client::NodeClient, state: DisclosureState| {
        let id = id.clone();
        eventually("the request's state", move || {
            let (mut c, id) = (client.clone(), id.clone());
            async move {
                let case = c
                    .disclosure
                    .get_request(GetDisclosureRequestRequest { id })
                    .await
                    .ok()?;
                (case.get_ref().state == state as i32).then_some(())
            }
        })
    };
    state_at(legal.clone(), DisclosureState::Open).await;
    let approve = DecideRequest {
        id: id.clone(),
        outcome: DisclosureState::Approved as i32,
        note: format!("released for {}", CANARIES[0]),
        release: Some(ReleaseSelection {
            location: LocationDetail::City as i32,
            time: TimeDetail::Day as i32,
            narrative: true,
            indicators: false,
            identifiers: vec![IdentifierType::Phone as i32],
        }),
        contact_point: "Police liaison desk".into(),
        handling: HandlingCode::H2 as i32,
        retention_days: 30,
        ..Default::default()
    };
    legal.clone().disclosure.decide(approve).await.unwrap();
    state_at(ngo.clone(), DisclosureState::Approved).await;
    assert_eq!(narrative(&fed, "police", &own.id).await, CANARIES[5]);

    // Past its retention the request is purged at both nodes.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(731 * 86_400);
    for a in ["police", "ngo"] {
        let store = &fed.node(a).core().store;
        let retention = std::time::Duration::from_secs(730 * 86_400);
        let purged = store.purge_requests(later, retention).await.unwrap();
        assert_eq!(purged, std::slice::from_ref(&id));
        let log = store.disclosure_log_after(0, 1000).unwrap();
        assert!(log.iter().all(|c| c.purged), "{a}: every log entry emptied");
        let text = format!("{log:?}");
        assert!(
            !text.contains(CANARIES[0]) && !text.contains(CANARIES[6]),
            "{a}: {text}"
        );
    }
    for a in ["police", "ngo"] {
        fed.stop_node(a).await;
    }
    for dir in &dirs {
        assert_eq!(canaries_in(dir), []);
    }
    for a in ["police", "ngo"] {
        fed.start_node(a).await;
    }
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_in_clear_is_refused_until_sealed_and_a_sealed_one_needs_its_kek() {
    let (mut fed, kek) = federation_with(0, &["ngo"]).await;
    // ngo's store is in clear, with an alert in it.
    let kept = submit(&mut fed.client("ngo", "cms").await, "kept through sealing").await;
    fed.stop_node("ngo").await;
    let ngo_config = fed.layout.agencies[&agency("ngo")].node_config.clone();
    let mut text = std::fs::read_to_string(&ngo_config).unwrap();
    text.push_str(&format!(
        "\n[encryption]\nkek_file = \"{}\"\nepoch_secs = 60\n",
        kek.display()
    ));
    std::fs::write(&ngo_config, &text).unwrap();
    let refused = refused_start(&ngo_config, "a store in clear is refused").await;
    assert!(refused.contains("casebridge store encrypt"), "{refused}");

    // `store encrypt` seals a copy; the node runs on it and reads it back.
    let old = casebridge::config::NodeConfig::load(&ngo_config)
        .unwrap()
        .store
        .dir;
    let sealed = old.with_file_name("data-sealed");
    let (code, out, err) = cli(&[
        "store",
        "encrypt",
        "--from",
        old.to_str().unwrap(),
        "--to",
        sealed.to_str().unwrap(),
        "--config",
        ngo_config.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(
        &ngo_config,
        text.replace("dir = \"data\"", "dir = \"data-sealed\""),
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(&ngo_config)
            .unwrap()
            .contains("data-sealed")
    );
    fed.start_node("ngo").await;
    assert_eq!(
        narrative(&fed, "ngo", &kept.id).await,
        "kept through sealing"
    );
    fed.stop_node("ngo").await;

    // With another KEK it is refused at start, naming both KEKs.
    let sealed_text = std::fs::read_to_string(&ngo_config).unwrap();
    let stranger = kek.with_file_name("stranger-kek.toml");
    let (code, out, err) = cli(&["store", "kek-new", "--out", stranger.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let kek_line = format!("kek_file = \"{}\"", kek.display());
    let other = sealed_text.replace(&kek_line, &format!("kek_file = \"{}\"", stranger.display()));
    assert_ne!(other, sealed_text);
    std::fs::write(&ngo_config, other).unwrap();
    let refused = refused_start(&ngo_config, "another KEK is refused").await;
    assert!(
        refused.contains("but this node has KEK") && refused.contains("start it with the KEK"),
        "{refused}"
    );
    std::fs::write(&ngo_config, &sealed_text).unwrap();

    // Without its KEK the sealed store is refused, naming the KEK.
    let without = std::fs::read_to_string(&ngo_config)
        .unwrap()
        .split("\n[encryption]")
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(&ngo_config, without).unwrap();
    let refused = refused_start(&ngo_config, "a sealed store without its KEK is refused").await;
    assert!(refused.contains("is sealed (under KEK kek-"), "{refused}");
    fed.shutdown().await;
}

/// Two node processes, both sealed, both logging everything of their own
/// (`casebridge=trace`): after submits both ways, deliveries and a lookup,
/// no log line holds a canary, and neither process may dump core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_reaches_a_log_line_and_no_node_dumps_core() {
    use common::process::{NodeProcess, connect_when_up, two_agencies};
    let dir = tempfile::tempdir().unwrap();
    let layout = two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let ngo = &layout.agencies[&agency("ngo")];
    for a in [police, ngo] {
        seal(&a.node_config, "");
    }
    let (police_node, police_log) =
        NodeProcess::spawn_logging(&police.node_config, "casebridge=trace");
    let (ngo_node, ngo_log) = NodeProcess::spawn_logging(&ngo.node_config, "casebridge=trace");
    let mut police_cms = connect_when_up(police.client_config("cms")).await;
    let mut ngo_cms = connect_when_up(ngo.client_config("cms")).await;
    let own = submit_draft(&mut police_cms, canary_draft()).await;
    let mut from_ngo = canary_draft();
    from_ngo.case_reference = String::new();
    let theirs = submit_draft(&mut ngo_cms, from_ngo).await;
    for (client, id) in [(&ngo_cms, &own.id), (&police_cms, &theirs.id)] {
        eventually("the alert delivered", || {
            let mut c = client.clone();
            let id = id.clone();
            async move {
                c.alerts
                    .get_alert(GetAlertRequest { id })
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
    }
    let answers = police_cms
        .alerts
        .lookup(casebridge::proto::v1::LookupRequest {
            identifiers: vec![phone_id(CANARIES[3], "")],
            peers: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!answers.answers.is_empty());

    for node in [&police_node, &ngo_node] {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", node.0.id())).unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        assert_eq!(
            core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
            ["0", "0"],
            "{core}"
        );
    }
    for mut node in [police_node, ngo_node] {
        node.signal("-TERM");
        assert!(node.exit_status("SIGTERM").await.success());
    }
    let lines: Vec<String> = police_log.iter().chain(ngo_log.iter()).collect();
    // Both logged what the test looks through: start, traffic, stop.
    for said in ["node started", "node stopped"] {
        let n = lines.iter().filter(|l| l.contains(said)).count();
        assert_eq!(n, 2, "{said}: {lines:#?}");
    }
    for line in &lines {
        for c in CANARIES {
            assert!(!line.contains(c), "{c} in a log line: {line}");
        }
    }
    assert_eq!(canaries_in(&police.dir), []);
}

/// `store rotate-kek` while four clients submit: nothing acknowledged is
/// lost, every alert reads back after a restart on the new KEK with the
/// old KEK file gone, and the old KEK no longer opens the epoch keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kek_rotates_under_write_load_and_the_old_one_is_no_longer_needed() {
    use common::process::{Load, lost_alerts};
    let (mut fed, old_kek) = federation().await;
    let cms = fed.client("police", "cms").await;
    let load = Load::start(&cms, 4, 60, "during the rotation: ");
    load.wait_for(40, "some load before the rotation").await;
    let new_kek = old_kek.with_file_name("kek-2.toml");
    let (code, out, err) = cli(&["store", "kek-new", "--out", new_kek.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let rotate = || {
        let args = [
            "store",
            "rotate-kek",
            "--kek-file",
            new_kek.to_str().unwrap(),
        ];
        fed.cli_as("police", "admin", &args)
    };
    let (code, out, err) = rotate();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("epoch keys now wrapped under KEK kek-"),
        "{out}"
    );
    // The same KEK twice is refused, naming the field.
    let (code, _, err) = rotate();
    assert_ne!(code, 0);
    assert!(
        err.contains("kek_file") && err.contains("the one in use"),
        "{err}"
    );
    let acked = load.acked().await;
    assert!(acked.len() >= 40, "{} acknowledged", acked.len());

    fed.stop_node("police").await;
    let keys = fed.config("police").epoch_keys_dir();
    let old = casebridge::vault::FileKek::load(&old_kek).unwrap();
    let err = casebridge::vault::Epochs::open(&keys, std::sync::Arc::new(old))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("but this node has KEK"),
        "the old KEK opens nothing: {err}"
    );
    std::fs::remove_file(&old_kek).unwrap();
    let config = fed.layout.agencies[&agency("police")].node_config.clone();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("kek_file = \"kek.toml\"", "kek_file = \"kek-2.toml\""),
    )
    .unwrap();
    fed.start_node("police").await;
    let mut reader = fed.client("police", "cms").await;
    let lost = lost_alerts(&mut reader, &acked).await;
    assert!(lost.is_empty(), "{lost:?}");
    fed.shutdown().await;
}
