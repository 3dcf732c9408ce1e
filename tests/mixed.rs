//! A real mixed-version federation: the previous release's binary, built
//! from its pinned commit (`common::previous`), runs police and its key
//! service beside this build's ngo, on a federation the previous release's
//! `certs init` wrote. Police lists ngo in `[[peers]]`, as the previous
//! release does; ngo follows a signed federation directory instead, which
//! police knows nothing of. Every envelope kind goes both ways — alert,
//! update, retraction, hit notice, review, disclosure request, decision,
//! clarification answer, release, withdrawal — and lookups too. What ngo
//! does not take (here: ngo withholding `alert`) stays in police's outbox,
//! held until ngo understands it. Then police is upgraded in place, binary
//! for binary on the same store and config: what waited on either side
//! arrives exactly once, and both audit logs verify.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use casebridge::client::NodeClient;
use casebridge::proto::v1::identifier::Kind;
use casebridge::proto::v1::send_disclosure_request::About;
use casebridge::proto::v1::{
    Alert, AnswerClarificationRequest, DecideRequest, DisclosureCase, DisclosureState,
    GetDisclosureRequestRequest, GetReleaseRequest, HitChange, HitVerdict, IdentifierType,
    LegalBasis, ListAlertsRequest, ListPeersRequest, LocationDetail, LookupRequest,
    ReleaseSelection, RetractAlertRequest, ReviewHitRequest, SendDisclosureRequest, TimeDetail,
    UpdateAlertRequest, Urgency, WithdrawReleaseRequest,
};
use casebridge::release::{Capabilities, Capability, PREVIOUS, RELEASE};
use common::process::{NodeProcess, connect_when_up};
use common::*;

/// The phone both agencies hold: every hit, request and lookup is about it.
const SHARED_PHONE: &str = "+31 6 5555 0201";

/// One agency's node directory and its four clients (`certs init` writes
/// `client.toml` for cms and `client-<name>.toml` for the others).
struct Agency {
    dir: PathBuf,
    cms: NodeClient,
    analyst: NodeClient,
    legal: NodeClient,
    admin: NodeClient,
}

impl Agency {
    async fn connect(dir: &Path) -> Self {
        let cms = connect_when_up(&dir.join("client.toml")).await;
        let client = |name: &str| dir.join(format!("client-{name}.toml"));
        Self {
            dir: dir.to_owned(),
            cms,
            analyst: NodeClient::connect_file(&client("analyst")).await.unwrap(),
            legal: NodeClient::connect_file(&client("legal")).await.unwrap(),
            admin: NodeClient::connect_file(&client("admin")).await.unwrap(),
        }
    }
}

/// `binary node run` in `dir`, its log appended to `dir/../<agency>.log`.
fn run_node(binary: &Path, dir: &Path) -> NodeProcess {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .unwrap();
    NodeProcess::spawn_binary(binary, &dir.join("node.toml"), "info", Stdio::from(log))
}

fn draft(narrative: &str, phone: &str) -> casebridge::proto::v1::AlertDraft {
    let mut d = sample_draft(narrative);
    d.subjects[0].identifiers = vec![phone_id(phone, ""), email_id("recruiter@example.org")];
    d
}

/// Every alert `client`'s node stores, retracted ones included.
async fn all_alerts(client: &NodeClient) -> Vec<Alert> {
    let mut c = client.clone();
    c.alerts
        .list_alerts(ListAlertsRequest {
            include_retracted: true,
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .alerts
}

/// Waits until `client`'s node holds alert `id` as `check` wants it;
/// asserts it holds exactly one copy.
async fn arrives(client: &NodeClient, id: &str, what: &str, check: impl Fn(&Alert) -> bool) {
    let copies = eventually(what, || async {
        let copies: Vec<Alert> = all_alerts(client)
            .await
            .into_iter()
            .filter(|a| a.id == id)
            .collect();
        copies.iter().any(&check).then_some(copies)
    })
    .await;
    assert_eq!(copies.len(), 1, "{what}: exactly one copy");
}

/// The number of the hit at `client`'s node between its alert and the
/// other agency's alert `theirs`.
async fn hit_on(client: &NodeClient, theirs: &str) -> u64 {
    eventually(&format!("a hit on {theirs}"), || {
        let mut c = client.clone();
        async move {
            hit_log(&mut c)
                .await
                .into_iter()
                .find(|h| h.change == HitChange::Found as i32 && h.other_alert_id == theirs)
                .map(|h| h.number)
        }
    })
    .await
}

async fn case_in(client: &NodeClient, id: &str, state: DisclosureState) -> DisclosureCase {
    eventually(&format!("{id} {state:?}"), || {
        let mut c = client.clone();
        let id = id.to_owned();
        async move {
            let case = c
                .disclosure
                .get_request(GetDisclosureRequestRequest { id })
                .await
                .ok()?
                .into_inner();
            (case.state == state as i32).then_some(case)
        }
    })
    .await
}

/// Review → request → question → answer → approval with a release →
/// withdrawal, `requester` asking `holder` about `holder_alert` (its hit
/// `hit`): seven envelopes, each kind once in this direction.
async fn disclosure_round(requester: &Agency, holder: &Agency, hit: u64, holder_alert: &str) {
    requester
        .analyst
        .clone()
        .alerts
        .review_hit(ReviewHitRequest {
            number: hit,
            verdict: HitVerdict::Confirmed as i32,
            note: "the same phone as our case".into(),
        })
        .await
        .unwrap();
    eventually("the review at the holder", || {
        let mut c = holder.analyst.clone();
        async move {
            hit_log(&mut c).await.into_iter().find(|h| {
                h.local_alert_id == holder_alert
                    && h.their_review
                        .as_ref()
                        .is_some_and(|r| r.verdict == HitVerdict::Confirmed as i32)
            })
        }
    })
    .await;
    let sent = requester
        .analyst
        .clone()
        .disclosure
        .send_request(SendDisclosureRequest {
            about: Some(About::HitNumber(hit)),
            legal_basis: LegalBasis::VictimReferralConsent as i32,
            purpose: "refer the caller to the agency that knows the number".into(),
            case_reference: "MIXED-1".into(),
            urgency: Urgency::Normal as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = sent.request.unwrap().id;
    case_in(&holder.legal, &id, DisclosureState::Open).await;
    holder
        .legal
        .clone()
        .disclosure
        .decide(DecideRequest {
            id: id.clone(),
            outcome: DisclosureState::Clarification as i32,
            note: "Did the caller consent to the referral?".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    case_in(&requester.analyst, &id, DisclosureState::Clarification).await;
    requester
        .analyst
        .clone()
        .disclosure
        .answer_clarification(AnswerClarificationRequest {
            id: id.clone(),
            answer: "Yes, in writing.".into(),
        })
        .await
        .unwrap();
    case_in(&holder.legal, &id, DisclosureState::Open).await;
    let release_id = approve(holder, &id).await;
    let received = eventually("the release at the requester", || {
        let mut c = requester.analyst.clone();
        let id = release_id.clone();
        async move {
            c.disclosure
                .get_release(GetReleaseRequest { id })
                .await
                .ok()
        }
    })
    .await;
    let release = received.into_inner().release.unwrap();
    assert_eq!(release.alert_id, holder_alert);
    assert!(
        release
            .subjects
            .iter()
            .flat_map(|s| &s.identifiers)
            .any(|i| matches!(i.kind, Some(Kind::Phone(_)))),
        "the phone released: {release:?}"
    );
    case_in(&requester.analyst, &id, DisclosureState::Approved).await;
    holder
        .legal
        .clone()
        .disclosure
        .withdraw_release(WithdrawReleaseRequest {
            id: release_id.clone(),
            reason: "consent withdrawn".into(),
        })
        .await
        .unwrap();
    eventually("the release purged at the requester", || {
        let mut c = requester.analyst.clone();
        let id = release_id.clone();
        async move {
            let r = c
                .disclosure
                .get_release(GetReleaseRequest { id })
                .await
                .ok()?
                .into_inner();
            r.purged.then_some(())
        }
    })
    .await;
}

/// The holder's officer approves request `id`, releasing the phone: the
/// release's id.
async fn approve(holder: &Agency, id: &str) -> String {
    let decided = holder
        .legal
        .clone()
        .disclosure
        .decide(DecideRequest {
            id: id.to_owned(),
            outcome: DisclosureState::Approved as i32,
            note: "released for the referral".into(),
            release: Some(ReleaseSelection {
                location: LocationDetail::City as i32,
                time: TimeDetail::Day as i32,
                narrative: true,
                indicators: false,
                identifiers: vec![IdentifierType::Phone as i32],
            }),
            contact_point: "Liaison desk, +31 30 000 0000".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    decided.decision.unwrap().release_id
}

/// An update and a retraction from `from`'s node reach `to`'s.
async fn update_and_retract(from: &Agency, to: &Agency, alert: &str) {
    let mut cms = from.cms.clone();
    cms.alerts
        .update_alert(UpdateAlertRequest {
            id: alert.to_owned(),
            draft: Some(draft("updated: the employer moved", SHARED_PHONE)),
            ..Default::default()
        })
        .await
        .unwrap();
    arrives(&to.cms, alert, "the update", |a| a.version == 2).await;
    let gone = submit_draft(&mut cms, draft("entered twice", "+31 6 5555 0299")).await;
    arrives(&to.cms, &gone.id, "the alert to retract", |_| true).await;
    cms.alerts
        .retract_alert(RetractAlertRequest {
            id: gone.id.clone(),
            reason: "entered twice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    arrives(&to.cms, &gone.id, "the retraction", |a| a.retracted).await;
}

/// `from` asks the federation about the shared phone: `to` answers with
/// its alert `theirs`.
async fn lookup_finds(from: &Agency, to: &str, theirs: &str) {
    let answers = from
        .cms
        .clone()
        .alerts
        .lookup(LookupRequest {
            identifiers: vec![phone_id(SHARED_PHONE, "")],
            peers: vec![to.to_owned()],
        })
        .await
        .unwrap()
        .into_inner()
        .answers;
    let answer = answers.iter().find(|a| a.agency == to).unwrap();
    assert!(answer.answered, "{answers:?}");
    assert!(
        answer.matches.iter().any(|m| m.alert_id == theirs),
        "{answers:?}"
    );
}

/// What `agency`'s node reports about its link to `peer`.
async fn peer_status(agency: &Agency, peer: &str) -> casebridge::proto::v1::PeerStatus {
    let mut admin = agency.admin.clone();
    admin
        .admin
        .list_peers(ListPeersRequest {})
        .await
        .unwrap()
        .into_inner()
        .peers
        .into_iter()
        .find(|p| p.agency_id == peer)
        .unwrap()
}

/// `certs init` of the previous release, with short retry delays so the
/// test does not wait out a backoff.
fn previous_federation(old: &Path, dir: &Path) -> PathBuf {
    let fed = dir.join("fed");
    let ok = Command::new(old)
        .args(["certs", "init", "--federation", "mixed.casebridge"])
        .args(["--agencies", "police,ngo", "--out"])
        .arg(&fed)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "the previous release's certs init failed");
    for a in ["police", "ngo"] {
        let config = fed.join(a).join("node.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("\n[delivery]\ninitial_backoff_ms = 100\nmax_backoff_ms = 500\n");
        std::fs::write(&config, text).unwrap();
    }
    fed
}

/// ngo leaves `[[peers]]` for a federation directory (one operator key,
/// police and ngo its members); police keeps its `[[peers]]`.
fn ngo_follows_a_directory(fed: &Path) {
    use casebridge::proto::v1::{Directory, DirectoryMember, DirectorySigner, SignerSet};
    let read = |a: &str| -> toml::Table {
        toml::from_str(&std::fs::read_to_string(fed.join(a).join("node.toml")).unwrap()).unwrap()
    };
    let peer_address = |t: &toml::Table| t["listen"]["peer"].as_str().unwrap().to_owned();
    let police = read("police");
    let mut ngo = read("ngo");
    let member = |agency: &str, kind: &str, endpoint: String| DirectoryMember {
        agency_id: agency.into(),
        display_name: agency.into(),
        kind: kind.into(),
        groups: vec![agency.into()],
        endpoints: vec![endpoint],
        ..Default::default()
    };
    let key = casebridge::ed25519::SigningKey::create(&fed.join("operator.key")).unwrap();
    let now = casebridge::time::now_ms() / 1000;
    let directory = Directory {
        federation: "mixed.casebridge".into(),
        version: 1,
        issued_at: now,
        expires_at: now + 30 * 86_400,
        members: vec![
            member("ngo", "ngo", peer_address(&ngo)),
            member("police", "law_enforcement", peer_address(&police)),
        ],
        signers: Some(SignerSet {
            signers: vec![DirectorySigner {
                name: "operator".into(),
                public_key: key.public().as_bytes().to_vec(),
            }],
            threshold: 1,
        }),
        ..Default::default()
    };
    let mut signed = casebridge::directory::Signed::new(directory).unwrap();
    signed.sign(&key);
    let anchor = fed.join("ngo/directory-anchor.json");
    std::fs::write(&anchor, signed.to_json()).unwrap();
    assert!(ngo.remove("peers").is_some(), "ngo listed police");
    let mut section = toml::Table::new();
    section.insert("anchor".into(), "directory-anchor.json".into());
    ngo.insert("directory".into(), section.into());
    std::fs::write(fed.join("ngo/node.toml"), toml::to_string(&ngo).unwrap()).unwrap();
}

/// What the previous release announces: this build's capabilities but the
/// directory.
fn previous_capabilities() -> Vec<String> {
    // What this release added since: the directory and the statistics.
    let added = [Capability::Directory.name(), Capability::Stats.name()];
    Capabilities::ours()
        .names()
        .into_iter()
        .filter(|n| !added.contains(&n.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_release_and_this_one_exchange_everything_and_upgrade_in_place() {
    let Some(old) = common::previous::binary() else {
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_casebridge"));
    let tmp = tempfile::tempdir().unwrap();
    let fed = previous_federation(&old, tmp.path());
    ngo_follows_a_directory(&fed);
    let ks_dir = fed.join("keyservice");
    let _key_service = NodeProcess(
        Command::new(&old)
            .args(["keyservice", "run", "--config"])
            .arg(ks_dir.join("keyservice.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut police_node = run_node(&old, &fed.join("police"));
    let mut ngo_node = run_node(ours, &fed.join("ngo"));
    let police = Agency::connect(&fed.join("police")).await;
    let ngo = Agency::connect(&fed.join("ngo")).await;

    // Alerts and hit notices, both ways.
    let p1 = submit_draft(&mut police.cms.clone(), draft("advert", SHARED_PHONE)).await;
    let n1 = submit_draft(&mut ngo.cms.clone(), draft("hotline call", SHARED_PHONE)).await;
    arrives(&ngo.cms, &p1.id, "police's alert at ngo", |_| true).await;
    arrives(&police.cms, &n1.id, "ngo's alert at police", |_| true).await;
    let ngo_hit = hit_on(&ngo.analyst, &p1.id).await;
    let police_hit = hit_on(&police.analyst, &n1.id).await;

    // ngo's peers come from its directory (version 1, from its anchor).
    let followed = ngo
        .admin
        .clone()
        .admin
        .get_directory(casebridge::proto::v1::GetDirectoryRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(followed.adopted.len(), 1, "{followed:?}");
    assert_eq!(followed.adopted[0].source, "anchor");

    // ngo knows police runs the previous release and needs nothing held.
    let link = peer_status(&ngo, "police").await;
    assert_eq!(link.release, PREVIOUS.version);
    assert_eq!(link.capabilities, previous_capabilities());
    assert!(link.held.is_empty(), "{link:?}");

    // Updates, retractions, lookups; then the disclosure path each way.
    update_and_retract(&police, &ngo, &p1.id).await;
    update_and_retract(&ngo, &police, &n1.id).await;
    lookup_finds(&police, "ngo", &n1.id).await;
    lookup_finds(&ngo, "police", &p1.id).await;
    disclosure_round(&ngo, &police, ngo_hit, &p1.id).await;
    disclosure_round(&police, &ngo, police_hit, &n1.id).await;

    // What ngo does not take (this build withholding `alert`): police's
    // sender holds it, and it goes once ngo understands.
    stop(ngo_node).await;
    append(
        &fed.join("ngo/node.toml"),
        "[compat]\nwithhold_capabilities = [\"alert\"]\n",
    );
    ngo_node = run_node(ours, &fed.join("ngo"));
    let waiting = submit_draft(
        &mut police.cms.clone(),
        draft("waits for ngo", SHARED_PHONE),
    )
    .await;
    let seen = eventually("police holding for ngo", || async {
        let link = peer_status(&police, "ngo").await;
        link.held
            .contains_key("until ngo understands alerts")
            .then_some(link)
    })
    .await;
    // The alert, and the hit notices police's match of it produced.
    assert!(seen.queue_depth >= 1, "kept in police's outbox: {seen:?}");
    assert_eq!(seen.rejected_total, 0);
    assert!(
        !all_alerts(&ngo.cms)
            .await
            .iter()
            .any(|a| a.id == waiting.id)
    );
    stop(ngo_node).await;
    unappend(&fed.join("ngo/node.toml"));

    // The rolling upgrade. Police, still the previous release, queues an
    // alert while ngo is down; then police is replaced by this build
    // while ngo queues for it. Each side's backlog arrives once.
    stop(police_node).await;
    police_node = run_node(&old, &fed.join("police"));
    let police = Agency::connect(&fed.join("police")).await;
    let queued = submit_draft(
        &mut police.cms.clone(),
        draft("queued by the previous release", SHARED_PHONE),
    )
    .await;
    stop(police_node).await;
    ngo_node = run_node(ours, &fed.join("ngo"));
    let ngo = Agency::connect(&fed.join("ngo")).await;
    let n3 = submit_draft(
        &mut ngo.cms.clone(),
        draft("queued for the upgrade", SHARED_PHONE),
    )
    .await;
    police_node = run_node(ours, &fed.join("police"));
    let police = Agency::connect(&fed.join("police")).await;
    arrives(&ngo.cms, &waiting.id, "the alert that waited", |_| true).await;
    arrives(
        &ngo.cms,
        &queued.id,
        "what the previous release queued",
        |_| true,
    )
    .await;
    arrives(&police.cms, &n3.id, "what ngo queued", |_| true).await;
    let upgraded = eventually("ngo sees police upgraded", || async {
        let link = peer_status(&ngo, "police").await;
        (link.release == RELEASE && link.queue_depth == 0).then_some(link)
    })
    .await;
    assert_eq!(upgraded.capabilities, Capabilities::ours().names());
    let back = eventually("police's outbox empty", || async {
        let link = peer_status(&police, "ngo").await;
        (link.queue_depth == 0).then_some(link)
    })
    .await;
    assert_eq!(back.rejected_total, 0, "nothing refused: {back:?}");
    no_duplicates(&police).await;
    no_duplicates(&ngo).await;

    stop(police_node).await;
    stop(ngo_node).await;
    for a in [&police, &ngo] {
        verify_audit(&a.dir);
    }
}

/// SIGTERM, and the node's clean exit awaited.
async fn stop(mut node: NodeProcess) {
    node.signal("-TERM");
    let status = node.exit_status("SIGTERM").await;
    assert!(status.success(), "{status:?}");
}

/// No alert id twice in a node's list.
async fn no_duplicates(agency: &Agency) {
    let mut ids: Vec<String> = all_alerts(&agency.cms)
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all, "a duplicate at {}", agency.dir.display());
}

/// `casebridge audit verify` (this build) on a stopped node: one chain
/// across both releases, and the store now records this release.
fn verify_audit(dir: &Path) {
    let config = dir.join("node.toml");
    let (code, out, err) = cli(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{}: {out}{err}", dir.display());
    let store = casebridge::store::Store::open_audit_only(&dir.join("data"), 8 << 20).unwrap();
    assert_eq!(store.setting("release").unwrap().as_deref(), Some(RELEASE));
}

const APPENDED: &str = "\n# appended by tests/mixed.rs\n";

fn append(path: &Path, text: &str) {
    let mut config = std::fs::read_to_string(path).unwrap();
    config.push_str(APPENDED);
    config.push_str(text);
    std::fs::write(path, config).unwrap();
}

fn unappend(path: &Path) {
    let config = std::fs::read_to_string(path).unwrap();
    let (kept, _) = config.split_once(APPENDED).unwrap();
    std::fs::write(path, kept).unwrap();
}
