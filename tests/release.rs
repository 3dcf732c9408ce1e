//! The whole path between real nodes over mTLS: hit → review → request →
//! the holder's question and the requester's answer → approval within the
//! policy's maximum → release stored at the requester only → withdrawal;
//! automatic refusal by the holder's policy; audit entries on both sides
//! and `audit verify` passing; and, in the types, that only a release can
//! carry a raw identifier to another node.

mod common;

use std::time::SystemTime;

use casebridge::client::NodeClient;
use casebridge::proto::v1::send_disclosure_request::About;
use casebridge::proto::v1::{
    AnswerClarificationRequest, DecideRequest, DisclosureCase, DisclosureState,
    GetDisclosureRequestRequest, GetReleaseRequest, HandlingCode, HitVerdict, IdentifierType,
    LegalBasis, ListDisclosureRequestsRequest, ListReleasesRequest, LocationDetail, RefusalGround,
    ReleaseSelection, ReviewHitRequest, SendDisclosureRequest, SetPolicyRequest, TimeDetail,
    Urgency, WithdrawReleaseRequest,
};
use common::*;

/// Police holds an alert with a phone, an e-mail address and a passport;
/// ngo holds the phone; ngo's analyst confirms the hit and asks.
async fn ngo_asks_police(fed: &TestFederation, basis: LegalBasis) -> (String, DisclosureCase) {
    let mut police_cms = fed.client("police", "cms").await;
    let mut ngo_cms = fed.client("ngo", "cms").await;
    let mut d = sample_draft("advert for cleaning jobs, flat in Utrecht");
    d.subjects[0].identifiers = vec![
        phone_id("06-55550105", "NL"),
        email_id("jobs.utrecht@example.org"),
        casebridge::proto::v1::Identifier {
            kind: Some(casebridge::proto::v1::identifier::Kind::Document(
                casebridge::proto::v1::IdentityDocument {
                    number: "NX1234567".into(),
                    issuing_country: "NL".into(),
                    r#type: casebridge::proto::v1::DocumentType::Passport as i32,
                },
            )),
        },
    ];
    let p = submit_draft(&mut police_cms, d).await;
    let mut n = sample_draft("hotline call");
    n.subjects[0].identifiers = vec![phone_id("+31 6 5555 0105", "")];
    submit_draft(&mut ngo_cms, n).await;
    let mut ngo = fed.client("ngo", "analyst").await;
    let hit = first_hit(&ngo).await;
    ngo.alerts
        .review_hit(ReviewHitRequest {
            number: hit,
            verdict: HitVerdict::Confirmed as i32,
            note: String::new(),
        })
        .await
        .unwrap();
    let case = ngo
        .disclosure
        .send_request(SendDisclosureRequest {
            about: Some(About::HitNumber(hit)),
            legal_basis: basis as i32,
            citation: String::new(),
            purpose: "identify the recruiter who called our client".into(),
            case_reference: "NGO-2026-0300".into(),
            urgency: Urgency::Urgent as i32,
            due_at: None,
            verification: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    (p.id, case)
}

async fn case_at(client: &NodeClient, id: &str, state: DisclosureState) -> DisclosureCase {
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

fn selection(identifiers: &[IdentifierType]) -> ReleaseSelection {
    ReleaseSelection {
        location: LocationDetail::City as i32,
        time: TimeDetail::Day as i32,
        narrative: true,
        indicators: false,
        identifiers: identifiers.iter().map(|t| *t as i32).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_review_request_question_approval_release_and_withdrawal() {
    let mut fed = TestFederation::start(&["police", "ngo", "labour"]).await;
    let (alert, sent) = ngo_asks_police(&fed, LegalBasis::VictimReferralConsent).await;
    let id = sent.request.clone().unwrap().id;
    let mut ngo = fed.client("ngo", "analyst").await;
    let mut legal = fed.client("police", "legal").await;
    let received = case_at(&legal, &id, DisclosureState::Open).await;
    assert_eq!(received.rule, "dev-disclose");
    assert!(received.release_maximum.contains("phone"), "{received:?}");

    // Only `disclose` decides; never beyond the policy's maximum.
    let mut police_analyst = fed.client("police", "analyst").await;
    let approve = |ids: &[IdentifierType]| DecideRequest {
        id: id.clone(),
        outcome: DisclosureState::Approved as i32,
        ground: 0,
        note: "released for the referral".into(),
        release: Some(selection(ids)),
        contact_point: "Police liaison desk, +31 30 000 0000".into(),
        handling: HandlingCode::H2 as i32,
        retention_days: 30,
    };
    let denied = police_analyst
        .disclosure
        .decide(approve(&[IdentifierType::Phone]))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let beyond = legal
        .disclosure
        .decide(approve(&[IdentifierType::Phone, IdentifierType::Document]))
        .await
        .unwrap_err();
    assert_eq!(beyond.code(), tonic::Code::InvalidArgument, "{beyond:?}");
    assert_eq!(
        casebridge::violation::fields_of(&beyond),
        ["release.identifiers"]
    );
    assert!(
        beyond.message().contains("`document` may not be released"),
        "{beyond:?}"
    );
    let refuse_without_ground = legal
        .disclosure
        .decide(DecideRequest {
            id: id.clone(),
            outcome: DisclosureState::Refused as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        casebridge::violation::fields_of(&refuse_without_ground),
        ["ground", "note"]
    );

    // A question pauses the deadline until the requester answers.
    let asked = legal
        .disclosure
        .decide(DecideRequest {
            id: id.clone(),
            outcome: DisclosureState::Clarification as i32,
            note: "Did the caller consent to a referral to the police?".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(asked.state, DisclosureState::Clarification as i32);
    case_at(&ngo, &id, DisclosureState::Clarification).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let answered = ngo
        .disclosure
        .answer_clarification(AnswerClarificationRequest {
            id: id.clone(),
            answer: "Yes, in writing, on 2 December.".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let secs = |c: &DisclosureCase| c.due_at.as_ref().unwrap().seconds;
    assert!(
        secs(&answered) > secs(&sent),
        "the pause moved the due time"
    );
    let reopened = case_at(&legal, &id, DisclosureState::Open).await;
    assert_eq!(
        reopened.due_at, answered.due_at,
        "both sides agree on the new due time"
    );

    // Ngo is down when police approves: decision and release wait in
    // police's outbox and arrive once it is back.
    fed.stop_node("ngo").await;
    let decided = legal
        .disclosure
        .decide(approve(&[IdentifierType::Phone, IdentifierType::Email]))
        .await
        .unwrap()
        .into_inner();
    let release_id = decided.decision.clone().unwrap().release_id;
    assert!(release_id.starts_with("police:rel:"), "{decided:?}");
    fed.start_node("ngo").await;
    let mut ngo = fed.client("ngo", "analyst").await;
    // Decision and release are two envelopes: the case may show
    // "approved" a moment before the release lands beside it.
    let approved = eventually("the approval and the release at ngo", || {
        let c = ngo.clone();
        let id = id.clone();
        async move {
            let case = case_at(&c, &id, DisclosureState::Approved).await;
            case.history
                .iter()
                .any(|e| e.step == "release received")
                .then_some(case)
        }
    })
    .await;
    let steps: Vec<&str> = approved.history.iter().map(|e| e.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "sent",
            "delivered",
            "clarification asked",
            "answered",
            "approved",
            "release received"
        ]
    );

    // The release: at the requester only, apart from alerts, in clear.
    let listed = eventually("the release at ngo", || {
        let mut c = ngo.clone();
        async move {
            let l = c
                .disclosure
                .list_releases(ListReleasesRequest::default())
                .await
                .ok()?
                .into_inner()
                .releases;
            (!l.is_empty()).then_some(l)
        }
    })
    .await;
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].release.as_ref().unwrap().subjects.is_empty(),
        "a list shows no content"
    );
    let record = ngo
        .disclosure
        .get_release(GetReleaseRequest {
            id: release_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let release = record.release.clone().unwrap();
    assert!(!record.outgoing && record.peer == "police");
    assert_eq!(release.alert_id, alert);
    assert_eq!(release.handling, HandlingCode::H2 as i32);
    assert_eq!(
        release.contact_point,
        "Police liaison desk, +31 30 000 0000"
    );
    let ids: Vec<_> = release
        .subjects
        .iter()
        .flat_map(|s| s.identifiers.clone())
        .collect();
    assert_eq!(ids.len(), 2, "phone and e-mail, not the passport: {ids:?}");
    assert!(ids.contains(&email_id("jobs.utrecht@example.org")));
    assert!(
        release
            .content
            .as_ref()
            .unwrap()
            .narrative
            .contains("Utrecht")
    );
    let days = casebridge::time::system_time_lossy(release.retention_until.as_ref().unwrap())
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs()
        / 86_400;
    assert_eq!(days, 29, "30 days from the release");
    assert_eq!(
        fed.alerts("ngo")
            .await
            .iter()
            .filter(|a| a.id == alert)
            .count(),
        1,
        "a release is not an alert: ngo's copy of the shared alert is untouched"
    );

    // A third agency got nothing.
    let mut labour = fed.client("labour", "legal").await;
    assert!(
        disclosure_cases(&mut labour, ListDisclosureRequestsRequest::default())
            .await
            .is_empty()
    );
    let mut labour_analyst = fed.client("labour", "analyst").await;
    assert!(
        labour_analyst
            .disclosure
            .list_releases(ListReleasesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .releases
            .is_empty()
    );

    // Nor did anything of it cross labour's wire: its audit log records
    // every envelope it received, and none is a request, decision or release.
    let labour_log = audit_after(&mut fed.client("labour", "admin").await, 0).await;
    assert!(
        !labour_log.iter().any(|e| e.actor.starts_with("peer:")
            && (e.action.starts_with("disclosure.") || e.action.starts_with("release."))),
        "{labour_log:?}"
    );

    // Withdrawn: purged at the requester, the tombstone says when and why.
    legal
        .disclosure
        .withdraw_release(WithdrawReleaseRequest {
            id: release_id.clone(),
            reason: "consent withdrawn by the victim".into(),
        })
        .await
        .unwrap();
    let gone = eventually("the release purged at ngo", || {
        let mut c = ngo.clone();
        let id = release_id.clone();
        async move {
            let r = c
                .disclosure
                .get_release(GetReleaseRequest { id })
                .await
                .ok()?
                .into_inner();
            r.purged.then_some(r)
        }
    })
    .await;
    assert_eq!(gone.withdraw_reason, "consent withdrawn by the victim");
    let tombstone = gone.release.unwrap();
    assert!(tombstone.subjects.is_empty() && tombstone.content.is_none());

    // Both logs hold every step, and verify.
    let mut police_admin = fed.client("police", "admin").await;
    let mut ngo_admin = fed.client("ngo", "admin").await;
    let police_log = audit_after(&mut police_admin, 0).await;
    let ngo_log = audit_after(&mut ngo_admin, 0).await;
    let actions = |log: &[casebridge::proto::v1::AuditEntry]| -> Vec<(String, String)> {
        log.iter()
            .filter(|e| e.objects.contains(&id) || e.objects.contains(&release_id))
            .map(|e| (e.action.clone(), e.outcome.clone()))
            .collect()
    };
    let (p, n) = (actions(&police_log), actions(&ngo_log));
    for step in [
        "disclosure.request_receive",
        "disclosure.decide",
        "disclosure.decision_send",
        "disclosure.answer_receive",
        "release.send",
        "release.withdraw",
        "release.withdraw_send",
    ] {
        assert!(
            p.iter().any(|(a, _)| a == step),
            "police lacks {step}: {p:?}"
        );
    }
    for step in [
        "disclosure.request",
        "disclosure.request_send",
        "disclosure.decision_receive",
        "disclosure.answer",
        "disclosure.answer_send",
        "release.receive",
        "release.view",
        "release.withdraw_receive",
    ] {
        assert!(n.iter().any(|(a, _)| a == step), "ngo lacks {step}: {n:?}");
    }
    let decide = police_log
        .iter()
        .find(|e| {
            e.action == "disclosure.decide" && e.outcome == "OK" && e.objects.contains(&release_id)
        })
        .unwrap();
    let detail = format!("{:?}", decide.detail);
    assert!(
        detail.contains("victim_referral_consent")
            && detail.contains("phone")
            && detail.contains("legal"),
        "the deciding officer, legal basis and what was released: {detail}"
    );
    for a in ["police", "ngo"] {
        fed.stop_node(a).await;
        let toml = fed.layout.agencies[&agency(a)].node_config.clone();
        let (code, out, err) = cli(&["audit", "verify", "--config", toml.to_str().unwrap()]);
        assert_eq!(code, 0, "{a}: {out}{err}");
    }
    fed.shutdown().await;
}

/// A request from a peer or under a legal basis the holder's policy does
/// not accept is refused at once, with the coded ground, and the requester
/// sees why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holders_policy_refuses_automatically_with_the_ground() {
    let fed = TestFederation::start(&["police", "ngo", "labour"]).await;
    let policy = r#"
[[rules]]
name = "share-with-ngo"
effect = "share"
peers = ["ngo"]
[rules.share]
location = "city"
time = "day"
identifiers = { phone = "exact" }

[[disclosure]]
name = "ngo-referrals"
peers = ["ngo"]
legal_bases = ["victim_referral_consent"]
[disclosure.release]
narrative = "full"
"#;
    fed.client("police", "admin")
        .await
        .admin
        .set_policy(SetPolicyRequest {
            policy_text: policy.into(),
            expected_version: 0,
            comment: "disclosure test".into(),
        })
        .await
        .unwrap();
    let (_, sent) = ngo_asks_police(&fed, LegalBasis::MutualLegalAssistance).await;
    let id = sent.request.unwrap().id;
    let ngo = fed.client("ngo", "analyst").await;
    let refused = case_at(&ngo, &id, DisclosureState::Refused).await;
    let decision = refused.decision.unwrap();
    assert!(decision.automatic);
    assert_eq!(decision.decided_by, "policy");
    assert_eq!(decision.ground, RefusalGround::LegalBasisNotAccepted as i32);
    assert!(
        decision.note.contains("victim_referral_consent"),
        "{}",
        decision.note
    );
    let legal = fed.client("police", "legal").await;
    let at_police = case_at(&legal, &id, DisclosureState::Refused).await;
    assert!(at_police.answered_at.is_some());

    // An agency no disclosure rule names: not authorised.
    let alert = at_police.request.unwrap().holder_alert_id;
    let mut labour = fed.client("labour", "analyst").await;
    let asked = labour
        .disclosure
        .send_request(SendDisclosureRequest {
            about: Some(About::AlertId(alert.clone())),
            legal_basis: LegalBasis::Directive2023977 as i32,
            citation: String::new(),
            purpose: "inspection".into(),
            case_reference: "LAB-1".into(),
            urgency: Urgency::Normal as i32,
            due_at: None,
            verification: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let refused = case_at(
        &labour,
        &asked.request.unwrap().id,
        DisclosureState::Refused,
    )
    .await;
    let decision = refused.decision.unwrap();
    assert_eq!(decision.ground, RefusalGround::NotAuthorised as i32);
    assert!(
        decision.note.contains("no disclosure rule lets labour"),
        "{}",
        decision.note
    );

    // The node's `policy explain` says the same, per peer, before anyone asks.
    let why = fed
        .client("police", "admin")
        .await
        .admin
        .explain_policy(casebridge::proto::v1::ExplainPolicyRequest {
            alert_id: alert.clone(),
            peers: vec![],
            policy_text: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let ngo_why = why.decisions.iter().find(|d| d.peer == "ngo").unwrap();
    assert_eq!(ngo_why.disclosure_rule, "ngo-referrals");
    assert_eq!(ngo_why.disclosure_legal_bases, ["victim_referral_consent"]);
    assert_eq!(ngo_why.disclosure_maximum, "narrative");
    let labour_why = why.decisions.iter().find(|d| d.peer == "labour").unwrap();
    assert!(labour_why.disclosure_rule.is_empty());
    assert!(
        labour_why
            .disclosure_refusal
            .contains("no disclosure rule lets labour"),
        "{labour_why:?}"
    );
    fed.shutdown().await;
}

/// In the wire contract, the only peer message that can carry an
/// identifier in clear is `Release`: no other envelope payload reaches the
/// `Identifier` message, however deep.
#[test]
fn only_a_release_can_carry_a_raw_identifier() {
    use prost::Message;
    use std::collections::{BTreeMap, BTreeSet};
    let set =
        prost_types::FileDescriptorSet::decode(casebridge::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut messages = BTreeMap::new();
    for file in &set.file {
        for m in &file.message_type {
            messages.insert(format!(".{}.{}", file.package(), m.name()), m.clone());
        }
    }
    fn reaches(
        name: &str,
        target: &str,
        messages: &BTreeMap<String, prost_types::DescriptorProto>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        if name == target {
            return true;
        }
        if !seen.insert(name.to_owned()) {
            return false;
        }
        messages.get(name).is_some_and(|m| {
            m.field
                .iter()
                .filter(|f| !f.type_name().is_empty())
                .any(|f| reaches(f.type_name(), target, messages, seen))
        })
    }
    let envelope = &messages[".casebridge.v1.Envelope"];
    let mut carriers = Vec::new();
    for f in envelope.field.iter().filter(|f| f.oneof_index.is_some()) {
        if reaches(
            f.type_name(),
            ".casebridge.v1.Identifier",
            &messages,
            &mut BTreeSet::new(),
        ) {
            carriers.push(f.type_name().to_owned());
        }
    }
    assert_eq!(carriers, [".casebridge.v1.Release"]);
    assert!(!reaches(
        ".casebridge.v1.SharedAlert",
        ".casebridge.v1.Identifier",
        &messages,
        &mut BTreeSet::new()
    ));
}

/// The holder's officer and the requester on the command line: approve
/// within the maximum (exit 65 beyond it), the release read with its
/// handling code first, refuse and clarify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_and_releases_on_the_command_line() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let (_, sent) = ngo_asks_police(&fed, LegalBasis::NationalLaw).await;
    let id = sent.request.unwrap().id;
    let legal = fed.client("police", "legal").await;
    case_at(&legal, &id, DisclosureState::Open).await;
    let toml = |a: &str, c: &str| fed.client_toml(a, c).to_str().unwrap().to_owned();
    let (police_legal, ngo_analyst) = (toml("police", "legal"), toml("ngo", "analyst"));
    let (code, out, err) = cli(&["--client-config", &police_legal, "requests", "show", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("policy    rule `dev-disclose` allows releasing at most: location=city time=day narrative indicators phone email person"),
        "{out}"
    );
    let approve = |extra: &[&str]| {
        let mut args = vec![
            "--client-config",
            police_legal.as_str(),
            "requests",
            "approve",
            id.as_str(),
            "--location",
            "city",
            "--narrative",
            "--identifier",
            "phone",
            "--contact",
            "liaison desk",
            "--handling",
            "h3",
            "--retention-days",
            "10",
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let (code, _, err) = approve(&["--identifier", "document"]);
    assert_eq!(code, 65, "{err}");
    assert!(
        err.contains("release.identifiers: `document` may not be released"),
        "{err}"
    );
    let (code, out, err) = approve(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("decision  approved by legal"), "{out}");
    let release = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("release   "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    // Decided already: exit 75.
    let (code, _, err) = approve(&[]);
    assert_eq!(code, 75, "{err}");

    let listed = eventually("the release at ngo", || {
        let ngo_analyst = ngo_analyst.clone();
        async move {
            let (code, out, _) = cli(&["--client-config", &ngo_analyst, "releases", "list"]);
            (code == 0 && !out.is_empty()).then_some(out)
        }
    })
    .await;
    assert!(
        listed.starts_with(&release) && listed.contains("from police") && listed.contains("H3"),
        "{listed}"
    );
    let (code, out, err) = cli(&[
        "--client-config",
        &ngo_analyst,
        "releases",
        "show",
        &release,
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].contains("HANDLING  H3: SPECIAL CONDITIONS: contact the holder before any action"),
        "the handling code comes first: {out}"
    );
    assert!(out.contains("subject 1 phone         06-55550105"), "{out}");
    assert!(out.contains("narrative advert for cleaning jobs"), "{out}");
    // The text shows every part of the content the release holds, as
    // --json does (category, indicators and the time window were missing).
    let (_, json, _) = cli(&[
        "--client-config",
        &ngo_analyst,
        "--json",
        "releases",
        "show",
        &release,
    ]);
    for (key, shown) in [
        ("\"category\"", "category  "),
        ("\"indicators\"", "indicators "),
        ("\"timeWindow\"", "when      "),
    ] {
        assert_eq!(
            json.contains(key),
            out.contains(shown),
            "{key}: {out}\n{json}"
        );
    }
    assert!(out.contains("category  "), "{out}");
    assert!(
        !out.contains("NX1234567"),
        "the passport was not released: {out}"
    );

    // Refuse and clarify on a second request.
    let (_, second) = ngo_asks_police(&fed, LegalBasis::Directive2023977).await;
    let second = second.request.unwrap().id;
    case_at(&legal, &second, DisclosureState::Open).await;
    let (code, out, err) = cli(&[
        "--client-config",
        &police_legal,
        "requests",
        "clarify",
        &second,
        "--question",
        "Which investigation?",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(clarification"), "{out}");
    let ngo = fed.client("ngo", "analyst").await;
    case_at(&ngo, &second, DisclosureState::Clarification).await;
    let (code, _, err) = cli(&[
        "--client-config",
        &ngo_analyst,
        "requests",
        "answer",
        &second,
        "--answer",
        "Case 2026/17 of the regional team.",
    ]);
    assert_eq!(code, 0, "{err}");
    case_at(&legal, &second, DisclosureState::Open).await;
    let (code, out, err) = cli(&[
        "--client-config",
        &police_legal,
        "requests",
        "refuse",
        &second,
        "--ground",
        "harm_to_investigation_or_safety",
        "--note",
        "an operation is running",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("decision  refused (harm to investigation or safety) by legal"),
        "{out}"
    );
    let refused = case_at(&ngo, &second, DisclosureState::Refused).await;
    assert_eq!(refused.decision.unwrap().note, "an operation is running");
    fed.shutdown().await;
}
