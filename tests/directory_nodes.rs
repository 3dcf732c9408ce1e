//! Nodes following the signed federation directory, over real mTLS: no
//! `[[peers]]` anywhere, only each node's anchor, and sharing rules that
//! name directory groups. A fourth agency joins by a version two of three
//! operators sign, published at one node only; the others fetch it from
//! that node and deliver to the newcomer what their group rules allow
//! (nothing where no rule covers it), and it to them. Rollbacks, short signatures, strangers' keys, another
//! federation's directory and an expired one are refused, audited, and
//! change nothing. A removed member is refused and what was queued for it
//! is held, not dropped.

#[path = "console/browser.rs"]
#[allow(dead_code)] // the console's tests use the rest
mod browser;
mod common;

use std::path::{Path, PathBuf};

use casebridge::config::{Bounded, DirectoryConfig};
use casebridge::directory::Signed;
use casebridge::proto::v1::{DirectorySigner, GetDirectoryRequest, QueryAuditRequest};
use common::operators::{Operators, directory};
use common::*;
use tonic::Code;

const AGENCIES: [&str; 4] = ["border", "labour", "ngo", "police"];

async fn wait_for_version(fed: &TestFederation, agencies: &[&str], version: u64) {
    for a in agencies {
        eventually(&format!("{a} at directory version {version}"), || async {
            (fed.directory_version(a).await == version).then_some(())
        })
        .await;
    }
}

async fn publish(fed: &TestFederation, at: &str, signed: &Signed) -> Result<(), tonic::Status> {
    fed.publish_directory(at, signed).await
}

async fn refusals(fed: &TestFederation, a: &str) -> Vec<String> {
    let mut admin = fed.client(a, "admin").await;
    let page = admin
        .admin
        .query_audit(QueryAuditRequest {
            action: "directory.refuse".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    page.entries
        .iter()
        .map(|e| format!("{:?}", e.detail))
        .collect()
}

async fn start() -> (TestFederation, Operators) {
    start_with_grace(259_200).await
}

async fn start_with_grace(grace_secs: usize) -> (TestFederation, Operators) {
    start_configured(grace_secs, |_| {}).await
}

/// Every node follows its anchor, greets its peers every second, shares
/// by [`policy`], keeps delivering `grace_secs` past expiry, and has
/// `more` done to its config.
async fn start_configured(
    grace_secs: usize,
    more: fn(&mut casebridge::config::NodeConfig),
) -> (TestFederation, Operators) {
    let ops = Operators::new();
    let anchors: Vec<(String, PathBuf)> = AGENCIES
        .iter()
        .map(|a| (a.to_string(), ops.anchor(a)))
        .collect();
    let fed = TestFederation::reserve(&AGENCIES, move |id, config| {
        config.peers.clear();
        let anchor = anchors
            .iter()
            .find(|(a, _)| a == id.as_str())
            .unwrap()
            .1
            .clone();
        config.directory = Some(DirectoryConfig {
            anchor: toml::Spanned::new(0..0, anchor.clone()),
            file: None,
            grace_secs: Bounded::new(grace_secs),
        });
        config.delivery.probe_interval_secs = Bounded::new(1);
        // A member listed but never started holds a reserved port that
        // takes connections and never answers: give up on it quickly.
        config.delivery.connect_timeout_secs = Bounded::new(1);
        with_console(id, config);
        // A newcomer that made its own key and had it signed (see
        // `certified_by_request`) presents that certificate.
        let requested = anchor.with_file_name(format!("{id}-node"));
        if requested.join("node.pem").exists() {
            config.tls.node_cert = toml::Spanned::new(0..0, requested.join("node.pem"));
            config.tls.node_key = toml::Spanned::new(0..0, requested.join("node.key"));
        }
        let policy = anchor.with_file_name(format!("policy-{id}.toml"));
        std::fs::write(&policy, self::policy(id.as_str())).unwrap();
        config.sharing.policy = Some(toml::Spanned::new(0..0, policy));
        more(config);
    })
    .await;
    (fed, ops)
}

/// Who shares with whom: police and border with every group, labour with
/// law enforcement only, ngo with police and labour by name (so a new
/// member of any group gets nothing from ngo: no rule covers it).
fn policy(agency: &str) -> String {
    let peers = match agency {
        "labour" => r#""group:law-enforcement""#,
        "ngo" => r#""police", "labour""#,
        _ => r#""group:law-enforcement", "group:ngo", "group:labour-inspectorate""#,
    };
    format!(
        "[[rules]]\nname = \"share\"\neffect = \"share\"\npeers = [{peers}]\n[rules.share]\nnarrative = \"full\"\nidentifiers = {{ phone = \"exact\" }}\n"
    )
}

fn write(path: &Path, signed: &Signed) {
    std::fs::write(path, signed.to_json()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joins_by_one_publish_and_a_removed_one_is_refused_and_held() {
    let (mut fed, ops) = start().await;
    let v1 = ops.sign(
        directory(&fed, &ops, 1, &["labour", "ngo", "police"]),
        &[1, 2],
    );
    for a in ["labour", "ngo", "police"] {
        write(&ops.anchor(a), &v1);
        fed.start_node(a).await;
    }
    let first = submit(
        &mut fed.client("police", "cms").await,
        "before anyone joins",
    )
    .await;
    for a in ["ngo", "labour"] {
        fed.held(a, &first.id).await;
    }
    let from_ngo = submit(&mut fed.client("ngo", "cms").await, "ngo to police, labour").await;
    for a in ["police", "labour"] {
        fed.held(a, &from_ngo.id).await;
    }

    // Border joins: version 2, signed by operators 1 and 3, published at
    // police alone through the CLI. Border is handed version 2 as its anchor.
    let members = ["border", "labour", "ngo", "police"];
    // Its own key, pinned in version 2: police, ngo and labour accept
    // border only with a certificate for that key.
    let border_cert = certified_by_request(&fed, &ops, "border");
    let mut joined = directory(&fed, &ops, 2, &members);
    joined.members[0].key_sha256 = casebridge::text::hex(&pin_of(&border_cert));
    let v2 = ops.sign(joined, &[1, 3]);
    let file = ops.dir.path().join("v2.json");
    write(&file, &v2);
    let (code, out, err) = fed.cli_as(
        "police",
        "admin",
        &["directory", "publish", file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("version 2 adopted"), "{out}");
    write(&ops.anchor("border"), &v2);
    fed.start_node("border").await;
    // No file of ngo or labour changed, no restart: they fetch it from police.
    wait_for_version(&fed, &members, 2).await;
    // Police's and labour's rules name border's group: it gets theirs.
    for from in ["police", "labour"] {
        let text = format!("{from} to border");
        let alert = submit(&mut fed.client(from, "cms").await, &text).await;
        fed.held("border", &alert.id).await;
    }
    let back = submit(&mut fed.client("border", "cms").await, "border to all").await;
    for a in ["police", "ngo", "labour"] {
        fed.held(a, &back.id).await;
    }
    // Police's console shows the version, the newcomer with its groups
    // and link, and where each version came from.
    let page = console_exchange(&fed, "police", "admin", "GET /directory HTTP/1.1", b"").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    for shown in [
        "<dd>2</dd>",
        "2 of 3 must sign",
        "<th scope=\"row\">border</th><td>The border</td><td>law enforcement</td><td>law-enforcement</td>",
        "publish:admin",
        "anchor",
    ] {
        assert!(page.contains(shown), "{shown} not in {page}");
    }
    // Its policy page says what each group it may name reaches now.
    let page = console_exchange(&fed, "police", "admin", "GET /policy HTTP/1.1", b"").await;
    assert!(
        page.contains("<th scope=\"row\"><code>group:law-enforcement</code></th><td>border</td>"),
        "{page}"
    );
    if browser::available() {
        let b = browser::Browser::open(&fed, "police", "admin").await;
        b.goto("/directory").await;
        let text = b.text().await;
        assert!(
            text.contains("Federation directory") && text.contains("The border"),
            "{text}"
        );
        b.screenshot("federation-directory").await;
        b.close().await;
    }
    // No rule of ngo's covers border: default deny, nothing queued for it.
    let unshared = submit(&mut fed.client("ngo", "cms").await, "ngo after border").await;
    fed.held("labour", &unshared.id).await;
    let ngo_peers = fed.peers("ngo").await;
    let border = ngo_peers.iter().find(|p| p.agency_id == "border").unwrap();
    assert_eq!(
        (border.queue_depth, border.delivered_total),
        (0, 0),
        "{border:?}"
    );
    assert!(!fed.alert_ids("border").await.contains(&unshared.id));

    refusals_change_nothing(&fed, &ops, &v2).await;
    removal(&mut fed, &ops).await;
    fed.shutdown().await;
}

/// The newcomer's own key and request (`certs request`, on its machine),
/// signed by the federation CA (`certs sign`, at the operator's): the
/// certificate its node presents from its first start.
fn certified_by_request(fed: &TestFederation, ops: &Operators, agency: &str) -> PathBuf {
    let out = ops.anchor(agency).with_file_name(format!("{agency}-node"));
    let out_s = out.to_str().unwrap();
    let (code, stdout, err) = cli(&[
        "certs",
        "request",
        "--federation",
        FEDERATION,
        "--agency",
        agency,
        "--ip",
        "127.0.0.1",
        "--out",
        out_s,
    ]);
    assert_eq!(code, 0, "{stdout}{err}");
    let ca = fed.layout.federation_ca.clone();
    let ca_key = ca.with_file_name("federation-ca.key");
    let (code, stdout, err) = cli(&[
        "certs",
        "sign",
        "--ca",
        ca.to_str().unwrap(),
        "--ca-key",
        ca_key.to_str().unwrap(),
        "--csr",
        out.join("node.csr").to_str().unwrap(),
        "--role",
        "node",
        "--federation",
        FEDERATION,
        "--out",
        out.join("node.pem").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        stdout.contains(&format!("spiffe://{FEDERATION}/agency/{agency}")),
        "{stdout}"
    );
    out.join("node.pem")
}

/// What a directory pins for the certificate at `pem`.
fn pin_of(pem: &Path) -> [u8; 32] {
    let der = casebridge::identity::load_certs(pem).unwrap();
    casebridge::identity::key_sha256(&der[0]).unwrap()
}

/// Each bad offer at police: refused with its reason, audited, version 2
/// stays in force.
async fn refusals_change_nothing(fed: &TestFederation, ops: &Operators, v2: &Signed) {
    let members = ["border", "labour", "ngo", "police"];
    let v1_again = ops.sign(directory(fed, ops, 1, &members), &[1, 2]);
    let short = ops.sign(directory(fed, ops, 3, &members), &[1]);
    let stranger = ops.sign(directory(fed, ops, 3, &members), &[1, 4]);
    let mut other = directory(fed, ops, 3, &members);
    other.federation = "other.example".into();
    let other = ops.sign(other, &[1, 2]);
    let mut expired = directory(fed, ops, 3, &members);
    expired.issued_at -= 40 * 86_400;
    expired.expires_at = expired.issued_at + 86_400;
    let expired = ops.sign(expired, &[1, 2]);
    let cases = [
        (&v1_again, "version 1 is not above version 2"),
        (v2, "version 2 is not above version 2"),
        (
            &short,
            "1 valid signature(s) of the trusted signer set; 2 needed",
        ),
        (
            &stranger,
            "1 valid signature(s) of the trusted signer set; 2 needed",
        ),
        (
            &other,
            "the directory is federation `other.example`'s, not test.casebridge's",
        ),
        (&expired, "version 3 expired at"),
    ];
    for (offer, reason) in cases {
        let err = publish(fed, "police", offer).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        assert!(
            err.message().contains(reason),
            "{reason}: {}",
            err.message()
        );
    }
    assert_eq!(fed.directory_version("police").await, 2);
    let logged = refusals(fed, "police").await;
    assert_eq!(logged.len(), cases.len(), "{logged:#?}");
    assert!(
        logged.iter().all(|b| b.contains("publish:admin")),
        "{logged:#?}"
    );
}

/// Labour is removed by version 3 (published at ngo): its calls are
/// refused naming the version, and what police queued for it while it was
/// down is held, not dropped.
async fn removal(fed: &mut TestFederation, ops: &Operators) {
    fed.stop_node("labour").await;
    // Connections opened before the adoption end within their age (3 s).
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let queued = submit(&mut fed.client("police", "cms").await, "queued for labour").await;
    eventually("police queues the alert for labour", || async {
        let peers = fed.peers("police").await;
        let labour = peers.iter().find(|p| p.agency_id == "labour")?;
        (labour.queue_depth >= 1).then_some(())
    })
    .await;
    let v3 = ops.sign(
        directory(fed, ops, 3, &["border", "ngo", "police"]),
        &[2, 3],
    );
    publish(fed, "ngo", &v3).await.unwrap();
    wait_for_version(fed, &["border", "ngo", "police"], 3).await;
    let labour = fed
        .peer_when("police", "labour held", |p| {
            p.agency_id == "labour" && p.state == "left" && p.held.values().sum::<u64>() >= 1
        })
        .await;
    assert!(labour.queue_depth >= 1, "nothing dropped: {labour:?}");
    let why = labour.held.keys().next().unwrap();
    assert_eq!(
        why,
        "agency `labour` is not a member in directory version 3: held until a directory lists it again"
    );
    // The audit log names the version that ended the link (and the one
    // that began border's).
    let mut admin = fed.client("police", "admin").await;
    let adoptions: Vec<_> = audit_after(&mut admin, 0)
        .await
        .into_iter()
        .filter(|e| e.action == "directory.adopt")
        .map(|e| e.detail)
        .collect();
    let says = |version: &str, key: &str, who: &str| {
        adoptions.iter().any(|d| {
            d.get("version").map(String::as_str) == Some(version)
                && d.get(key).map(String::as_str) == Some(who)
        })
    };
    assert!(
        says("2", "joined", "border") && says("3", "removed", "labour"),
        "{adoptions:#?}"
    );
    let mut as_labour = fed.peer_client("labour", "police").await;
    let err = as_labour.hello(hello_as("labour")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(
        err.message().contains("directory version 3"),
        "{}",
        err.message()
    );
    assert!(
        fed.alerts("police").await.iter().any(|a| a.id == queued.id),
        "the held alert is police's own, still there"
    );
}

/// `policy validate --config` of a node that follows a directory: groups
/// the anchor defines are taken and shown by their members, an unknown one
/// is named with the groups there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_validate_reads_the_directory_groups() {
    let (fed, ops) = start().await;
    let v1 = ops.sign(
        directory(&fed, &ops, 1, &["labour", "ngo", "police"]),
        &[1, 2],
    );
    write(&ops.anchor("police"), &v1);
    let node_toml = &fed.layout.agencies[&agency("police")].node_config;
    let mut table: toml::Table = std::fs::read_to_string(node_toml).unwrap().parse().unwrap();
    table.remove("peers");
    let mut dir = toml::Table::new();
    let anchor = ops.anchor("police").to_str().unwrap().to_owned();
    dir.insert("anchor".into(), toml::Value::String(anchor));
    table.insert("directory".into(), toml::Value::Table(dir));
    let config = node_toml.with_file_name("node-directory.toml");
    std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();
    let config = config.to_str().unwrap();

    let validate = |name: &str, text: String| {
        let file = ops.dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        cli(&[
            "policy",
            "validate",
            file.to_str().unwrap(),
            "--config",
            config,
        ])
    };
    let (code, out, err) = validate("good.toml", policy("labour"));
    assert_eq!(code, 0, "{out}{err}");
    // Police is the only law-enforcement member: the group is known, and
    // reaches no other agency.
    assert!(
        out.lines().any(|l| l.trim_end().ends_with("share ->")),
        "{out}"
    );
    for meaning in [
        "group:law-enforcement reaches no other member",
        "group:ngo reaches ngo",
        "group:labour-inspectorate reaches labour",
    ] {
        assert!(out.contains(meaning), "{meaning}: {out}");
    }
    let (code, out, err) = validate("everyone.toml", policy("police"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("share -> labour, ngo"), "{out}");
    let typo = policy("labour").replace("law-enforcement", "border-guard");
    let (code, out, err) = validate("bad.toml", typo);
    assert_eq!(code, 65, "{out}{err}");
    assert!(
        err.contains("unknown directory group `border-guard`")
            && err.contains(
                "groups in the directory in force: labour-inspectorate, law-enforcement, ngo"
            ),
        "{err}"
    );
    fed.shutdown().await;
}

async fn directory_state(fed: &TestFederation, a: &str) -> String {
    let status = fed.status(a).await;
    status
        .directory
        .map(|d| format!("{} {}", d.version, d.state))
        .unwrap_or_default()
}

/// A directory that expires: delivery goes on through the grace period
/// (status says so), then everything outgoing is held, audited, nothing
/// lost; a fresh version published at one node lifts the hold everywhere
/// by itself, and the held alert arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_directory_holds_after_its_grace_and_a_fresh_one_resumes() {
    let (mut fed, ops) = start_with_grace(3).await;
    // All four listed (the policies name every group); two run.
    let mut short = directory(&fed, &ops, 1, &AGENCIES);
    short.expires_at = short.issued_at + 5;
    let v1 = ops.sign(short, &[1, 2]);
    for a in ["ngo", "police"] {
        write(&ops.anchor(a), &v1);
        fed.start_node(a).await;
    }
    let mut police = fed.client("police", "cms").await;
    let first = submit(&mut police, "while current").await;
    fed.held("ngo", &first.id).await;
    assert_eq!(directory_state(&fed, "police").await, "1 current");

    eventually("police in its grace period", || async {
        (directory_state(&fed, "police").await == "1 grace").then_some(())
    })
    .await;
    let during_grace = submit(&mut police, "during the grace period").await;
    fed.held("ngo", &during_grace.id).await;

    eventually("police holding", || async {
        (directory_state(&fed, "police").await == "1 holding").then_some(())
    })
    .await;
    let held = submit(&mut police, "while holding").await;
    let ngo = fed
        .peer_when("police", "the alert held for ngo", |p| {
            p.agency_id == "ngo" && p.held.values().sum::<u64>() >= 1
        })
        .await;
    let why = ngo.held.keys().next().unwrap();
    assert!(
        why.starts_with("directory version 1 expired at ")
            && why.ends_with(": held until a fresh version arrives")
            && why.matches("held until").count() == 1,
        "{why}"
    );
    assert!(
        !fed.alert_ids("ngo").await.contains(&held.id),
        "nothing goes out while holding"
    );
    let page = console_exchange(&fed, "police", "admin", "GET /directory HTTP/1.1", b"").await;
    assert!(page.contains("Nothing is being sent"), "{page}");
    let mut admin = fed.client("police", "admin").await;
    let expired = audit_after(&mut admin, 0).await;
    assert!(
        expired
            .iter()
            .any(|e| e.action == "directory.expire" && e.outcome == "HOLD"),
        "the hold is audited"
    );

    // A fresh version, published at ngo: police fetches it and resumes.
    let v2 = ops.sign(directory(&fed, &ops, 2, &AGENCIES), &[2, 3]);
    publish(&fed, "ngo", &v2).await.unwrap();
    wait_for_version(&fed, &["ngo", "police"], 2).await;
    fed.held("ngo", &held.id).await;
    assert_eq!(directory_state(&fed, "police").await, "2 current");
    let at_ngo = fed.alert_ids("ngo").await;
    assert_eq!(at_ngo.iter().filter(|id| **id == held.id).count(), 1);
    fed.shutdown().await;
}

/// Spread hop by hop, through a signer rotation: versions 2 (new signers,
/// signed by the old set's threshold and the new one's) and 3 (signed by
/// the new signers alone) are published at police while ngo is down;
/// labour takes both from police; police stops; ngo, started on version
/// 1, can reach only labour and takes both from it, each checked against
/// the set before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_spread_hop_by_hop_through_a_signer_rotation() {
    let (mut fed, ops) = start().await;
    let members = ["labour", "ngo", "police"];
    let v1 = ops.sign(directory(&fed, &ops, 1, &members), &[1, 2]);
    for a in members {
        write(&ops.anchor(a), &v1);
    }
    for a in ["labour", "police"] {
        fed.start_node(a).await;
    }
    // Operators 2, 3 and 4 from version 2 on; operator 1 retires.
    let mut rotated = directory(&fed, &ops, 2, &members);
    let mut set = ops.set();
    set.signers
        .retain(|s| s.public_key != ops.keys[0].public().as_bytes().to_vec());
    set.signers.push(DirectorySigner {
        name: "operator-4".into(),
        public_key: ops.keys[3].public().as_bytes().to_vec(),
    });
    set.signers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    rotated.signers = Some(set.clone());
    let v2 = ops.sign(rotated, &[1, 2, 4]);
    let mut after = directory(&fed, &ops, 3, &members);
    after.signers = Some(set);
    let v3 = ops.sign(after, &[3, 4]);
    // Version 3 alone is refused where version 1 is in force: the old set
    // did not sign it.
    let err = publish(&fed, "police", &v3).await.unwrap_err();
    assert!(
        err.message().contains("of the trusted signer set"),
        "{}",
        err.message()
    );
    publish(&fed, "police", &v2).await.unwrap();
    publish(&fed, "police", &v3).await.unwrap();
    wait_for_version(&fed, &["labour"], 3).await;

    fed.stop_node("police").await;
    fed.start_node("ngo").await;
    wait_for_version(&fed, &["ngo"], 3).await;
    let mut admin = fed.client("ngo", "admin").await;
    let state = admin
        .admin
        .get_directory(GetDirectoryRequest {})
        .await
        .unwrap()
        .into_inner();
    let adopted: Vec<(u64, &str)> = state
        .adopted
        .iter()
        .map(|a| (a.version, a.source.as_str()))
        .collect();
    assert_eq!(
        adopted,
        [(3, "peer:labour"), (2, "peer:labour"), (1, "anchor")],
        "newest first"
    );
    // A restart keeps what was adopted: version 3, not the anchor's 1.
    fed.stop_node("ngo").await;
    fed.start_node("ngo").await;
    assert_eq!(fed.directory_version("ngo").await, 3);
    fed.shutdown().await;
}

/// A pinned key is required on both sides: while the directory pins a
/// key ngo's certificate does not carry, police refuses ngo's calls and
/// does not deliver to it (nothing lost: the alert waits); the version
/// that pins the right key, published at police, ends both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_key_is_required_of_a_member_both_ways() {
    let (mut fed, ops) = start().await;
    let mut wrong = directory(&fed, &ops, 1, &AGENCIES);
    let ngo_at = wrong
        .members
        .iter()
        .position(|m| m.agency_id == "ngo")
        .unwrap();
    wrong.members[ngo_at].key_sha256 = "ab".repeat(32);
    let v1 = ops.sign(wrong, &[1, 2]);
    for a in ["ngo", "police"] {
        write(&ops.anchor(a), &v1);
        fed.start_node(a).await;
    }
    let waiting = submit(&mut fed.client("police", "cms").await, "for ngo, pinned").await;
    let ngo = fed
        .peer_when("police", "police failing to reach ngo", |p| {
            p.agency_id == "ngo" && p.last_error.contains("pins")
        })
        .await;
    assert!(ngo.queue_depth >= 1, "{ngo:?}");
    let mut as_ngo = fed.peer_client("ngo", "police").await;
    let err = as_ngo.hello(hello_as("ngo")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(
        err.message()
            .contains("other than the one directory version 1 pins"),
        "{}",
        err.message()
    );

    let ngo_pem = fed.pki("ngo").join("node.pem");
    let mut right = directory(&fed, &ops, 2, &AGENCIES);
    right.members[ngo_at].key_sha256 = casebridge::text::hex(&pin_of(&ngo_pem));
    publish(&fed, "police", &ops.sign(right, &[2, 3]))
        .await
        .unwrap();
    fed.held("ngo", &waiting.id).await;
    wait_for_version(&fed, &["ngo"], 2).await;
    fed.shutdown().await;
}

/// `[key_service]` with neither addresses nor keys: the directory names
/// them. Connections live 3 s at most, so a revocation reaches open ones
/// (as a CRL file's does: `tests/revocation.rs`).
fn key_service_from_directory(config: &mut casebridge::config::NodeConfig) {
    config.tls.max_connection_age_secs = Bounded::new(3);
    config.key_service = Some(casebridge::config::KeyServiceClientConfig {
        addresses: Vec::new(),
        identity: agency("keyservice"),
        public_keys: None,
        timeout_ms: Bounded::new(1_000),
        also_key_ring_tokens: false,
    });
}

fn tokens_pending(fed: &TestFederation, a: &str) -> u64 {
    fed.node(a).core().ledger.tokens_pending().unwrap()
}

/// Runs `casebridge directory ARGS`, then has operators 1 and 2 sign `out`
/// with the CLI, and returns it.
fn next_version(ops: &Operators, args: &[&str], out: &Path) -> Signed {
    let mut all = vec!["directory"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let (code, stdout, err) = cli(&all);
    assert_eq!(code, 0, "{stdout}{err}");
    for i in 1..=2 {
        let key = ops.dir.path().join(format!("op{i}.key"));
        let (code, stdout, err) = cli(&[
            "directory",
            "sign",
            out.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stdout}{err}");
    }
    Signed::from_json(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// The key service and the federation CA's revocations are published
/// once, in the directory: nodes whose `[key_service]` lists neither
/// addresses nor keys call the replica the version in force names, pin
/// its keys, follow a key rotation published as a new version, and refuse
/// a certificate the directory's CRL lists, on both listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_service_and_the_crl_come_from_the_directory() {
    use casebridge::proto::v1::DirectoryKeyService;
    use casebridge::pseudo::oprf::FIRST_VERSION;
    use casebridge::pseudo::oprf_keys::PinnedKeys;
    use common::keyservice::{
        free_addr, hit_between, phone_draft, phone_tokens, rotate_and_restart, start_service,
        versions,
    };
    let (mut fed, ops) = start_configured(259_200, key_service_from_directory).await;
    let name = casebridge::ids::FederationName::new(FEDERATION).unwrap();
    let ks = casebridge::certs::init_key_service(&name, &fed.layout.dir, free_addr()).unwrap();
    let ks_config = casebridge::config::KeyServiceConfig::load(&ks.config).unwrap();
    let service = start_service(&ks_config).await;
    let keys = PinnedKeys::load(&ks.public_keys).unwrap().to_directory();
    let members = ["labour", "ngo", "police"];
    let listing = |endpoint: String| DirectoryKeyService {
        endpoints: vec![endpoint],
        keys: keys.clone(),
    };

    // Version 1 names a replica nobody runs: a submit is acknowledged with
    // its tokens pending.
    let mut v1 = directory(&fed, &ops, 1, &members);
    v1.key_service = Some(listing(free_addr().to_string()));
    let v1 = ops.sign(v1, &[1, 2]);
    for a in members {
        write(&ops.anchor(a), &v1);
        fed.start_node(a).await;
    }
    let early = submit_draft(&mut fed.client("ngo", "cms").await, phone_draft("early")).await;
    assert_eq!(tokens_pending(&fed, "ngo"), 1);

    // Version 2 names the running one, published at police alone: ngo
    // derives the pending tokens through it, police's new alert meets it.
    let mut v2 = directory(&fed, &ops, 2, &members);
    v2.key_service = Some(listing(ks.addr.to_string()));
    let v2 = ops.sign(v2, &[1, 2]);
    publish(&fed, "police", &v2).await.unwrap();
    wait_for_version(&fed, &members, 2).await;
    eventually("ngo's pending tokens derived", || async {
        (tokens_pending(&fed, "ngo") == 0).then_some(())
    })
    .await;
    let later = submit_draft(&mut fed.client("police", "cms").await, phone_draft("later")).await;
    assert_eq!(
        versions(&phone_tokens(&fed, "police", &later.id)),
        [FIRST_VERSION]
    );
    hit_between(&fed, "police", &later.id, &early.id).await;

    // A key rotation, published once (`directory set-keyservice`, at ngo):
    // every node derives under both keys during the overlap.
    let (new, service) = rotate_and_restart(service, &ks, &ks_config).await;
    let v2_file = ops.dir.path().join("v2.json");
    write(&v2_file, &v2);
    let v3_file = ops.dir.path().join("v3.json");
    let addr = ks.addr.to_string();
    let v3 = next_version(
        &ops,
        &[
            "set-keyservice",
            v2_file.to_str().unwrap(),
            "--endpoint",
            &addr,
            "--public-keys",
            ks.public_keys.to_str().unwrap(),
        ],
        &v3_file,
    );
    publish(&fed, "ngo", &v3).await.unwrap();
    wait_for_version(&fed, &members, 3).await;
    let mut labour = fed.client("labour", "cms").await;
    let rotated = submit_draft(&mut labour, phone_draft("rotated")).await;
    assert_eq!(
        versions(&phone_tokens(&fed, "labour", &rotated.id)),
        [FIRST_VERSION, new]
    );
    hit_between(&fed, "labour", &rotated.id, &later.id).await;

    revoked_by_the_directory(&fed, &ops, &v3_file).await;
    fed.shutdown().await;
    service.shutdown().await.unwrap();
}

/// Version 4 carries a CRL revoking labour's certificate (`directory
/// set-crl`; the nodes' own CRL files stay empty): police refuses labour's
/// handshakes, and labour's alert for police waits in its outbox.
async fn revoked_by_the_directory(fed: &TestFederation, ops: &Operators, v3_file: &Path) {
    // The federation CA's files, copied, so the nodes' CRL file is untouched.
    let ca = tempfile::tempdir().unwrap();
    std::fs::create_dir(ca.path().join("labour")).unwrap();
    for file in ["federation-ca.pem", "federation-ca.key", "labour/node.pem"] {
        std::fs::copy(fed.layout.dir.join(file), ca.path().join(file)).unwrap();
    }
    let (crl, _) = casebridge::certs::revoke(
        ca.path(),
        &casebridge::certs::RevokeTarget::Node(agency("labour")),
    )
    .unwrap();
    let v4_file = ops.dir.path().join("v4.json");
    let v4 = next_version(
        ops,
        &[
            "set-crl",
            v3_file.to_str().unwrap(),
            "--crl",
            crl.to_str().unwrap(),
        ],
        &v4_file,
    );
    publish(fed, "police", &v4).await.unwrap();
    wait_for_version(fed, &["ngo", "police"], 4).await;
    eventually("police refuses labour's certificate", || async {
        let refused = match fed
            .peer_client_from(fed.pki("labour"), &fed.layout.federation_ca, "police")
            .await
        {
            Err(_) => true,
            Ok(mut c) => c.hello(hello_as("labour")).await.is_err(),
        };
        refused.then_some(())
    })
    .await;
    // Connections opened before the adoption end within their age (3 s).
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let queued = submit(
        &mut fed.client("labour", "cms").await,
        "from a revoked node",
    )
    .await;
    fed.peer_when("labour", "a refused delivery to police", |p| {
        p.agency_id == "police" && p.queue_depth >= 1 && p.retries > 0
    })
    .await;
    assert!(!fed.alert_ids("police").await.contains(&queued.id));
}
