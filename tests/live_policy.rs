//! Operating the sharing policy on running nodes: SetPolicy without restart,
//! precise refusal of a broken policy, Reshare and RetractFromPeer, inbound
//! refusal, and hit notices / lookup answers that follow the policy.

mod common;

use casebridge::ids::AlertId;
use casebridge::proto::v1::{
    AlertDraft, AlertFilter, Category, DiffPolicyRequest, ExplainPolicyRequest, LookupRequest,
    ReshareRequest, RetractFromPeerRequest, SetPolicyRequest, UpdateAlertRequest,
};
use common::*;
use tonic::Code;
use tonic_types::StatusExt;

/// Shares only labour exploitation with `ngo`, phones and persons included.
const LABOUR_ONLY: &str = r#"
[[rules]]
name = "ngo-labour"
effect = "share"
peers = ["ngo"]
[rules.when]
categories = ["labour_exploitation"]
[rules.share]
location = "country"
narrative = "full"
identifiers = { phone = "exact", person = "fuzzy" }
"#;

/// Shares everything with `ngo`, narrative included.
const ALL_TO_NGO: &str = r#"
[[rules]]
name = "ngo-all"
effect = "share"
peers = ["ngo"]
[rules.share]
location = "country"
narrative = "full"
identifiers = { phone = "exact", person = "fuzzy" }
"#;

fn draft(category: Category, narrative: &str) -> AlertDraft {
    let mut d = sample_draft(narrative);
    d.content.as_mut().unwrap().category = category as i32;
    d
}

async fn submit_as(fed: &TestFederation, agency: &str, d: AlertDraft) -> String {
    submit_draft(&mut fed.client(agency, "cms").await, d)
        .await
        .id
}

/// Police submits a sexual-exploitation alert narrated `other`, then a
/// labour-exploitation one narrated `labour`; once the labour one is at
/// ngo, the other is not (per-peer delivery is in order: it would be
/// there by now). Their ids, the other first.
async fn only_labour_reaches_ngo(
    fed: &TestFederation,
    other: &str,
    labour: &str,
) -> (String, String) {
    let other = submit_as(fed, "police", draft(Category::SexualExploitation, other)).await;
    let labour = submit_as(fed, "police", draft(Category::LabourExploitation, labour)).await;
    fed.held("ngo", &labour).await;
    assert!(!fed.alerts("ngo").await.iter().any(|a| a.id == other));
    (other, labour)
}

async fn set_policy(fed: &TestFederation, agency: &str, text: &str) -> u64 {
    fed.client(agency, "admin")
        .await
        .admin
        .set_policy(SetPolicyRequest {
            policy_text: text.into(),
            expected_version: 0,
            comment: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .version
}

/// Waits until `agency` holds alert `id` (in any version) and returns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_policy_takes_effect_without_restart_and_a_broken_one_changes_nothing() {
    let mut fed = TestFederation::start(&["police", "ngo"]).await;
    let mut admin = fed.client("police", "admin").await;
    let v1 = node_policy(&mut admin).await;
    assert_eq!(v1.version, 1);
    assert!(v1.source.starts_with("file:"), "{}", v1.source);
    assert_eq!(v1.share_rules, 1);

    // Broken: an unknown peer on line 5, column 10; and a stale version.
    let broken = "\n[[rules]]\nname = \"x\"\neffect = \"share\"\npeers = [\"border\"]\n";
    let err = admin
        .admin
        .set_policy(SetPolicyRequest {
            policy_text: broken.into(),
            expected_version: 1,
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let v = &err.get_details_bad_request().unwrap().field_violations[0];
    assert_eq!(v.field, "policy_text");
    assert!(
        v.description.starts_with("5:10: unknown peer `border`")
            && v.description.contains("hint: configured peers: ngo"),
        "{}",
        v.description
    );
    let err = admin
        .admin
        .set_policy(SetPolicyRequest {
            policy_text: LABOUR_ONLY.into(),
            expected_version: 7,
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    let still = node_policy(&mut admin).await;
    assert_eq!((still.version, &still.sha256), (1, &v1.sha256));

    // Valid: in force for the next submit, no restart.
    let v2 = admin
        .admin
        .set_policy(SetPolicyRequest {
            policy_text: LABOUR_ONLY.into(),
            expected_version: 1,
            comment: "labour cases only".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (v2.version, v2.set_by.as_str(), v2.source.as_str()),
        (2, "client:admin", "api")
    );
    let (other, _) = only_labour_reaches_ngo(&fed, "not for ngo", "for ngo").await;

    // Explain says why, per peer, with the envelope.
    let why = admin
        .admin
        .explain_policy(ExplainPolicyRequest {
            alert_id: other.clone(),
            peers: vec![],
            policy_text: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(why.policy_version, 2);
    assert!(!why.decisions[0].shared);
    assert!(
        why.decisions[0].reason.contains("default deny"),
        "{}",
        why.decisions[0].reason
    );
    let why = admin
        .admin
        .explain_policy(ExplainPolicyRequest {
            alert_id: other.clone(),
            peers: vec!["ngo".into()],
            policy_text: ALL_TO_NGO.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(why.decisions[0].rule, "ngo-all");
    let envelope = why.decisions[0].envelope.as_ref().unwrap();
    assert_eq!(
        envelope
            .content
            .as_ref()
            .unwrap()
            .location
            .as_ref()
            .unwrap()
            .city,
        ""
    );

    // A restart keeps the version in force: the file did not change.
    fed.stop_node("police").await;
    fed.start_node("police").await;
    let mut admin = fed.client("police", "admin").await;
    let after = node_policy(&mut admin).await;
    assert_eq!((after.version, &after.sha256), (2, &v2.sha256));
    assert_eq!(node_status(&mut admin).await.policy_version, 2);

    // An edited file does not replace a version set through the API at
    // the next start either (the node warns and names the command).
    fed.stop_node("police").await;
    std::fs::write(fed.pki("police").join("policy.toml"), ALL_TO_NGO).unwrap();
    fed.start_node("police").await;
    let mut admin = fed.client("police", "admin").await;
    let kept = node_policy(&mut admin).await;
    assert_eq!(kept.version, 2);
    // Once the file's version is in force, an edit is the next version.
    set_policy(&fed, "police", ALL_TO_NGO).await;
    fed.stop_node("police").await;
    std::fs::write(fed.pki("police").join("policy.toml"), LABOUR_ONLY).unwrap();
    fed.start_node("police").await;
    let mut admin = fed.client("police", "admin").await;
    let v4 = node_policy(&mut admin).await;
    assert_eq!((v4.version, v4.text.as_str()), (4, LABOUR_ONLY));
    assert!(v4.source.starts_with("file:"));
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshare_delivers_exactly_the_missing_alerts_and_retract_from_peer_purges_there() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    set_policy(&fed, "police", LABOUR_ONLY).await;
    let mut others = Vec::new();
    for i in 0..3 {
        others.push(
            submit_as(
                &fed,
                "police",
                draft(Category::Other, &format!("other {i}")),
            )
            .await,
        );
    }
    let mut labour = Vec::new();
    for i in 0..2 {
        labour.push(
            submit_as(
                &fed,
                "police",
                draft(Category::LabourExploitation, &format!("labour {i}")),
            )
            .await,
        );
    }
    fed.held("ngo", &labour[1]).await;
    assert_eq!(fed.alerts("ngo").await.len(), 2);

    let mut admin = fed.client("police", "admin").await;
    // The diff against the stored alerts names what a wider policy changes.
    let diff = admin
        .admin
        .diff_policy(DiffPolicyRequest {
            old_policy_text: String::new(),
            new_policy_text: ALL_TO_NGO.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(diff.alerts, 5);
    let d = &diff.peers[0];
    assert_eq!(
        (
            d.newly_shared,
            d.no_longer_shared,
            d.changed_fields,
            d.unchanged
        ),
        (3, 0, 0, 2)
    );
    set_policy(&fed, "police", ALL_TO_NGO).await;

    let reshare_client = admin.clone();
    let reshare = |dry_run: bool| {
        let mut admin = reshare_client.clone();
        async move {
            admin
                .admin
                .reshare(ReshareRequest {
                    peer: "ngo".into(),
                    filter: None,
                    dry_run,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let dry = reshare(true).await;
    assert_eq!((dry.matched, dry.queued), (5, 3));
    let done = reshare(false).await;
    let mut queued = done.alert_ids.clone();
    queued.sort();
    let mut expected = others.clone();
    expected.sort();
    assert_eq!(queued, expected, "exactly the alerts ngo was missing");
    for id in &others {
        fed.held("ngo", id).await;
    }
    assert_eq!(reshare(false).await.queued, 0, "nothing left to backfill");
    let at_ngo = fed.alerts("ngo").await;
    assert_eq!(at_ngo.len(), 5);
    assert!(
        at_ngo.iter().all(|a| a.version == 1),
        "each delivered once, as version 1"
    );

    // Withdraw one alert from ngo only: purged there, live here.
    let target = others[0].clone();
    let r = admin
        .admin
        .retract_from_peer(RetractFromPeerRequest {
            peer: "ngo".into(),
            filter: Some(AlertFilter {
                alert_ids: vec![target.clone()],
                ..Default::default()
            }),
            reason: "shared in error".into(),
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.queued, 1);
    eventually("the withdrawal at ngo", || async {
        fed.alerts("ngo")
            .await
            .into_iter()
            .find(|a| a.id == target && a.retracted)
    })
    .await;
    let there = fed
        .alerts("ngo")
        .await
        .into_iter()
        .find(|a| a.id == target)
        .unwrap();
    assert!(there.content.is_none() && there.retraction_reason == "shared in error");
    let id: AlertId = target.parse().unwrap();
    let rec = fed.node("ngo").core().store.get(&id).unwrap().unwrap();
    assert!(rec.pseudonyms.is_empty(), "tokens purged at ngo");
    let here = fed
        .alerts("police")
        .await
        .into_iter()
        .find(|a| a.id == target)
        .unwrap();
    assert!(!here.retracted);

    // A later version does not go back to ngo...
    let mut cms = fed.client("police", "cms").await;
    cms.alerts
        .update_alert(UpdateAlertRequest {
            id: target.clone(),
            expected_version: 0,
            draft: Some(draft(Category::Other, "other 0, updated")),
        })
        .await
        .unwrap();
    let marker = submit_as(&fed, "police", draft(Category::Other, "marker")).await;
    fed.held("ngo", &marker).await;
    let there = fed
        .alerts("ngo")
        .await
        .into_iter()
        .find(|a| a.id == target)
        .unwrap();
    assert!(
        there.retracted,
        "an update after a withdrawal reached the peer"
    );
    // ...until an explicit reshare, which sends a newer live version.
    let back = reshare(false).await;
    assert_eq!(back.alert_ids, vec![target.clone()]);
    let again = eventually("the reshared alert", || async {
        fed.alerts("ngo")
            .await
            .into_iter()
            .find(|a| a.id == target && !a.retracted)
    })
    .await;
    assert_eq!(again.content.unwrap().narrative, "other 0, updated");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_refusal_is_acked_with_a_reason_recorded_and_not_retried() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let ngo_policy = format!(
        "{}\n[[inbound]]\nname = \"no-sexual-exploitation-from-police\"\neffect = \"refuse\"\npeers = [\"police\"]\n[inbound.when]\ncategories = [\"sexual_exploitation\"]\n",
        "[[rules]]\nname = \"back\"\neffect = \"share\"\npeers = [\"police\"]\n[rules.share]\nidentifiers = { phone = \"exact\" }\n"
    );
    set_policy(&fed, "ngo", &ngo_policy).await;
    let (refused, _) = only_labour_reaches_ngo(&fed, "refused", "accepted").await;

    let peer = fed
        .peer_when("police", "police's view of the refusal", |p| {
            p.rejected_total == 1 && p.queue_depth == 0
        })
        .await;
    assert!(
        peer.last_rejection.contains("refused by policy")
            && peer
                .last_rejection
                .contains("no-sexual-exploitation-from-police")
            && peer.last_rejection_at.is_some(),
        "{peer:?}"
    );
    // A refusal is about content: the link itself is fine.
    assert!(peer.last_error.is_empty(), "{peer:?}");
    let refusals = fed.node("ngo").core().store.refusals(10).unwrap();
    assert_eq!(refusals.len(), 1);
    assert_eq!(
        (
            refusals[0].peer.as_str(),
            refusals[0].alert_id.as_str(),
            refusals[0].rule.as_str()
        ),
        (
            "police",
            refused.as_str(),
            "no-sexual-exploitation-from-police"
        )
    );
    // Not retried: more traffic flows, the refusal stays single.
    let later = submit_as(&fed, "police", draft(Category::LabourExploitation, "later")).await;
    fed.held("ngo", &later).await;
    assert_eq!(fed.status("ngo").await.refused_deliveries, 1);
    assert_eq!(fed.peers("police").await[0].rejected_total, 1);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_notices_and_lookup_answers_disclose_only_what_the_policy_shares() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    // ngo shares its alerts with police, but not phone numbers.
    set_policy(
        &fed,
        "ngo",
        "[[rules]]\nname = \"no-phones\"\neffect = \"share\"\npeers = [\"police\"]\n[rules.share]\nnarrative = \"full\"\n",
    )
    .await;
    let mut ngo_draft = sample_draft("ngo case");
    ngo_draft.subjects[0].identifiers.truncate(1); // the phone only
    let ngo_alert = submit_as(&fed, "ngo", ngo_draft.clone()).await;
    fed.held("police", &ngo_alert).await;

    // police shares the same phone with ngo: ngo finds the hit, but may not
    // tell police (that would disclose the phone its policy keeps back).
    let mut police_draft = sample_draft("police case");
    police_draft.subjects[0].identifiers.truncate(1);
    let police_alert = submit_as(&fed, "police", police_draft).await;
    let ngo_core = fed.node("ngo").core().clone();
    eventually("ngo's hit", || async {
        (!ngo_core.store.hits_after(0, 10).unwrap().is_empty()).then_some(())
    })
    .await;
    let marker = submit_as(&fed, "ngo", sample_draft("marker")).await;
    fed.held("police", &marker).await;
    let police_core = fed.node("police").core().clone();
    assert!(
        police_core.store.hits_after(0, 10).unwrap().is_empty(),
        "a notice disclosed a phone ngo's policy keeps back"
    );

    // A lookup from police for that phone: ngo does not confirm it either.
    let mut analyst = fed.client("police", "analyst").await;
    let lookup = |mut c: casebridge::client::NodeClient| async move {
        c.alerts
            .lookup(LookupRequest {
                identifiers: vec![phone_id("+31 6 5555 0101", "")],
                peers: vec!["ngo".into()],
            })
            .await
            .unwrap()
            .into_inner()
    };
    let answer = lookup(analyst.clone()).await;
    let ngo_answer = answer.answers.iter().find(|a| a.agency == "ngo").unwrap();
    assert!(
        ngo_answer.answered && ngo_answer.matches.is_empty(),
        "{ngo_answer:?}"
    );

    // Once ngo's policy shares phones with police, lookups see it.
    set_policy(
        &fed,
        "ngo",
        "[[rules]]\nname = \"phones\"\neffect = \"share\"\npeers = [\"police\"]\n[rules.share]\nidentifiers = { phone = \"exact\" }\n",
    )
    .await;
    let answer = lookup(analyst.clone()).await;
    let ngo_answer = answer.answers.iter().find(|a| a.agency == "ngo").unwrap();
    let ids: Vec<&str> = ngo_answer
        .matches
        .iter()
        .map(|m| m.alert_id.as_str())
        .collect();
    assert!(ids.contains(&ngo_alert.as_str()), "{ids:?}");
    let _ = (&mut analyst, police_alert);
    fed.shutdown().await;
}

/// The real binary: SIGHUP reloads the policy file; a broken file is reported
/// and the version in force stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_and_never_installs_a_broken_one() {
    use common::process::{NodeProcess, connect_when_up, two_agencies};
    use std::process::Command;

    let dir = tempfile::tempdir().unwrap();
    let layout = two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let (node, rx) = NodeProcess::spawn_logging(&police.node_config, "warn");
    let mut admin = connect_when_up(police.client_config("admin")).await;
    let get = |mut c: casebridge::client::NodeClient| async move { node_policy(&mut c).await };
    assert_eq!(get(admin.clone()).await.version, 1);
    let policy_file = police.dir.join("policy.toml");

    std::fs::write(
        &policy_file,
        "[[rules]]\nname = \"x\"\neffect = \"sharee\"\n",
    )
    .unwrap();
    node.signal("-HUP");
    let deadline = std::time::Instant::now() + WAIT;
    let line = loop {
        let line = rx.recv_timeout(WAIT).expect("a log line about the reload");
        if line.contains("NOT reloaded") {
            break line;
        }
        assert!(std::time::Instant::now() < deadline, "no reload report");
    };
    assert!(line.contains("policy.toml:3:10"), "{line}");
    assert_eq!(
        get(admin.clone()).await.version,
        1,
        "a broken file was installed"
    );

    // The CLI reports a refused `policy set` as FILE:line:column, exit 65.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[[rules]]\nname = \"x\"\neffect = \"share\"\npeers = [\"border\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .args(["policy", "set"])
        .arg(&broken)
        .arg("--client-config")
        .arg(police.client_config("admin"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:4:10: unknown peer `border`", broken.display())),
        "{stderr}"
    );
    assert_eq!(get(admin.clone()).await.version, 1);

    std::fs::write(&policy_file, LABOUR_ONLY).unwrap();
    node.signal("-HUP");
    let v = eventually("the reloaded policy", || {
        let admin = admin.clone();
        async move { Some(get(admin).await).filter(|v| v.version == 2) }
    })
    .await;
    assert_eq!(v.set_by, "node (SIGHUP)");
    assert_eq!(v.text, LABOUR_ONLY);
    let _ = &mut admin;
}

/// The real binary, as the operator guide has it: `policy set` installs a
/// version, then a SIGHUP sent to reload `[clients]` (the file untouched)
/// keeps that version; an edited file does not replace it either, and the
/// log and the audit log name the command that installs the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_never_replaces_a_version_set_through_the_api() {
    use casebridge::proto::v1::QueryAuditRequest;
    use common::process::{NodeProcess, connect_when_up, two_agencies};
    use std::process::Command;

    let dir = tempfile::tempdir().unwrap();
    let layout = two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let (node, rx) = NodeProcess::spawn_logging(&police.node_config, "info");
    let admin = connect_when_up(police.client_config("admin")).await;
    let version = || {
        let mut c = admin.clone();
        async move { node_policy(&mut c).await }
    };
    let policy_file = police.dir.join("policy.toml");
    std::fs::write(dir.path().join("labour.toml"), LABOUR_ONLY).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .args(["policy", "set"])
        .arg(dir.path().join("labour.toml"))
        .arg("--client-config")
        .arg(police.client_config("admin"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(version().await.version, 2);

    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let line = rx.recv_timeout(WAIT).expect("a log line about the reload");
            if line.contains(needle) {
                return line;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in the log"
            );
        }
    };
    // The file is untouched: the API's version stays. (The SIGHUP is sent,
    // as the operator guide has it, to reload an edited [clients]; the log
    // names the clients as node.toml does.)
    let toml = std::fs::read_to_string(&police.node_config).unwrap();
    std::fs::write(
        &police.node_config,
        toml.replacen("[clients]\n", "[clients]\nintake = [\"read\"]\n", 1),
    )
    .unwrap();
    node.signal("-HUP");
    let reloaded = wait_for("SIGHUP: client roles reloaded");
    assert!(reloaded.contains("added=intake"), "{reloaded}");
    assert!(!reloaded.contains("ClientName("), "{reloaded}");
    wait_for("policy file unchanged");
    let v = version().await;
    assert_eq!((v.version, v.text.as_str()), (2, LABOUR_ONLY));

    // The file is edited: still kept, and said, with the command.
    std::fs::write(&policy_file, ALL_TO_NGO).unwrap();
    node.signal("-HUP");
    let warning = wait_for("set through the API and stays");
    assert!(
        warning.contains(&format!(
            "casebridge policy set {} --expect-version 2",
            policy_file.display()
        )),
        "{warning}"
    );
    wait_for("SIGHUP: policy file NOT installed");
    assert_eq!(version().await.version, 2);
    let entries = admin
        .clone()
        .admin
        .query_audit(QueryAuditRequest {
            action: "policy.install".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(entries.iter().any(|e| e.outcome == "KEPT"), "{entries:?}");
    // The administrator decides: the command installs the file.
    let out = Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .args(["policy", "set"])
        .arg(&policy_file)
        .args(["--expect-version", "2", "--client-config"])
        .arg(police.client_config("admin"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v = version().await;
    assert_eq!((v.version, v.text.as_str()), (3, ALL_TO_NGO));

    // `policy history`: every version, newest first, and one version's text.
    let history = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_casebridge"))
            .args(["policy", "history"])
            .args(extra)
            .arg("--client-config")
            .arg(police.client_config("admin"))
            .output()
            .unwrap()
    };
    let out = history(&[]);
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&out.stdout);
    let firsts: Vec<&str> = listed
        .lines()
        .filter(|l| l.starts_with("policy version"))
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(firsts, ["3", "2", "1"], "{listed}");
    assert!(listed.contains("from api  set by client:admin"), "{listed}");
    let out = history(&["--show", "2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(LABOUR_ONLY));
    let out = history(&["--show", "9"]);
    assert_eq!(out.status.code(), Some(66), "{out:?}");
}
