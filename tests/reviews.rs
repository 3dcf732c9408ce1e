//! Hit review between real nodes: an analyst's verdict is recorded, travels
//! to the other agency (also when it was down), shows in both hit logs and
//! audit logs, and a pair judged a false positive is not raised again when
//! the alerts come to share more.

mod common;

use casebridge::client::NodeClient;
use casebridge::proto::v1::{
    AlertDraft, GetHitRequest, Hit, HitChange, HitVerdict, ReviewHitRequest, UpdateAlertRequest,
};
use common::*;

fn draft_with(identifiers: Vec<casebridge::proto::v1::Identifier>) -> AlertDraft {
    let mut d = sample_draft("contact number from an advert");
    d.subjects[0].identifiers = identifiers;
    d
}

fn found(log: &[Hit]) -> Vec<&Hit> {
    log.iter()
        .filter(|h| h.change == HitChange::Found as i32)
        .collect()
}

async fn review(
    client: &mut NodeClient,
    number: u64,
    verdict: HitVerdict,
    note: &str,
) -> Result<Hit, tonic::Status> {
    client
        .alerts
        .review_hit(ReviewHitRequest {
            number,
            verdict: verdict as i32,
            note: note.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn their_review_at(client: &NodeClient, number: u64, verdict: HitVerdict) -> Hit {
    eventually("the other agency's review", || {
        let mut c = client.clone();
        async move {
            let hit = c
                .alerts
                .get_hit(GetHitRequest { number })
                .await
                .ok()?
                .into_inner();
            hit.their_review
                .as_ref()
                .is_some_and(|r| r.verdict == verdict as i32)
                .then_some(hit)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_reaches_the_other_agency_and_a_false_positive_is_not_raised_again() {
    let mut fed = TestFederation::start(&["police", "ngo"]).await;
    let mut police_cms = fed.client("police", "cms").await;
    let mut ngo_cms = fed.client("ngo", "cms").await;
    let mut police = fed.client("police", "analyst").await;
    let mut police_admin = fed.client("police", "admin").await;
    let police_head = audit_head(&mut police_admin).await;

    // Police holds a phone and an e-mail address, ngo only the phone.
    let p = submit_draft(
        &mut police_cms,
        draft_with(vec![
            phone_id("+31 6 5555 0101", ""),
            email_id("worker.recruit@example.org"),
        ]),
    )
    .await;
    let n = submit_draft(
        &mut ngo_cms,
        draft_with(vec![phone_id("06-55550101", "NL")]),
    )
    .await;
    let hit = eventually("the hit at police", || {
        let mut c = police.clone();
        async move { found(&hit_log(&mut c).await).first().map(|h| (*h).clone()) }
    })
    .await;
    assert_eq!(
        (hit.local_alert_id.as_str(), hit.other_alert_id.as_str()),
        (p.id.as_str(), n.id.as_str())
    );
    assert_eq!(hit.number, 1);
    let ngo_hit = eventually("the hit at ngo", || {
        let c = fed.client("ngo", "analyst");
        async move {
            let mut c = c.await;
            found(&hit_log(&mut c).await).first().map(|h| (*h).clone())
        }
    })
    .await;

    // Bad input changes nothing and names its field.
    let bad = review(&mut police, hit.number, HitVerdict::Unspecified, "x\u{7}")
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(casebridge::violation::fields_of(&bad), ["verdict", "note"]);
    let missing = review(&mut police, 999, HitVerdict::Confirmed, "").await;
    assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);
    let no_role = review(&mut police_cms, hit.number, HitVerdict::Confirmed, "").await;
    assert_eq!(no_role.unwrap_err().code(), tonic::Code::PermissionDenied);
    assert_eq!(hit_log(&mut police).await.len(), 1, "nothing was recorded");

    // Police confirms while ngo is down: the review waits in the outbox.
    fed.stop_node("ngo").await;
    let reviewed = review(
        &mut police,
        hit.number,
        HitVerdict::Confirmed,
        "same advert, same flat",
    )
    .await
    .unwrap();
    let ours = reviewed.our_review.clone().unwrap();
    assert_eq!(reviewed.change, HitChange::Reviewed as i32);
    assert_eq!(reviewed.number, hit.number);
    assert!(reviewed.sequence > hit.sequence, "a new log entry");
    assert_eq!(
        (ours.agency.as_str(), ours.reviewer.as_str()),
        ("police", "analyst")
    );
    assert_eq!(
        (ours.revision, ours.note.as_str()),
        (1, "same advert, same flat")
    );
    fed.start_node("ngo").await;

    let ngo = fed.client("ngo", "analyst").await;
    let at_ngo = their_review_at(&ngo, ngo_hit.number, HitVerdict::Confirmed).await;
    let theirs = at_ngo.their_review.unwrap();
    assert_eq!(
        (theirs.agency.as_str(), theirs.reviewer.as_str()),
        ("police", "analyst")
    );
    assert_eq!(theirs.note, "same advert, same flat");
    let mut ngo = ngo;
    let entries = hit_log(&mut ngo).await;
    assert!(
        entries
            .iter()
            .any(|h| h.change == HitChange::ReviewReceived as i32 && h.number == ngo_hit.number),
        "the review is in ngo's hit log: {entries:?}"
    );

    // Ngo disagrees: a false positive. Police sees it.
    review(
        &mut ngo,
        ngo_hit.number,
        HitVerdict::FalsePositive,
        "different person",
    )
    .await
    .unwrap();
    their_review_at(&police, hit.number, HitVerdict::FalsePositive).await;

    // Ngo's alert now also holds police's e-mail address: that would be a
    // second hit between the same two alerts, but the pair was dismissed.
    ngo_cms
        .alerts
        .update_alert(UpdateAlertRequest {
            id: n.id.clone(),
            expected_version: 1,
            draft: Some(draft_with(vec![
                phone_id("06-55550101", "NL"),
                email_id("worker.recruit@example.org"),
            ])),
        })
        .await
        .unwrap();
    eventually("the update delivered and queues drained", || async {
        let delivered = fed
            .alerts("police")
            .await
            .iter()
            .any(|a| a.id == n.id && a.version == 2);
        let mut drained = true;
        for a in ["police", "ngo"] {
            drained &= fed.peers(a).await.iter().all(|p| p.queue_depth == 0);
        }
        (delivered && drained).then_some(())
    })
    .await;
    assert_eq!(
        found(&hit_log(&mut police).await).len(),
        1,
        "no new hit at police"
    );
    assert_eq!(
        found(&hit_log(&mut ngo).await).len(),
        1,
        "no new hit at ngo"
    );

    // Both sides logged every step.
    let entries = audit_after(&mut police_admin, police_head).await;
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    for step in [
        ("hit.review", "OK"),
        ("hit.review_send", "stored"),
        ("hit.review_receive", "stored"),
    ] {
        assert!(actions.contains(&step), "{step:?} in {actions:?}");
    }
    let call = entries
        .iter()
        .find(|e| e.action == "hit.review" && e.outcome == "OK")
        .unwrap();
    assert!(
        call.objects.contains(&p.id) && call.objects.contains(&n.id),
        "{call:?}"
    );
    fed.shutdown().await;
}

/// The command line: `hits review` and `hits get`, with the exit codes of
/// the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_review_and_get_on_the_command_line() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut police_cms = fed.client("police", "cms").await;
    let mut ngo_cms = fed.client("ngo", "cms").await;
    submit_draft(
        &mut police_cms,
        draft_with(vec![phone_id("+31 6 5555 0102", "")]),
    )
    .await;
    submit_draft(
        &mut ngo_cms,
        draft_with(vec![phone_id("06-55550102", "NL")]),
    )
    .await;
    let mut analyst = fed.client("police", "analyst").await;
    eventually("the hit at police", || {
        let mut c = analyst.clone();
        async move { (!hit_log(&mut c).await.is_empty()).then_some(()) }
    })
    .await;

    let (code, out, err) = fed.cli_as(
        "police",
        "analyst",
        &[
            "hits",
            "review",
            "1",
            "--needs-information",
            "--note",
            "waiting for the inspection report",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "reviewed here: needs information by analyst: \"waiting for the inspection report\""
        ),
        "{out}"
    );
    let (code, out, err) = fed.cli_as("police", "analyst", &["hits", "get", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("entry     2  hit    1  "), "{out}");
    assert!(out.contains("reviewed here: needs information"), "{out}");

    // No verdict, two verdicts: usage errors from the command line itself.
    let (code, _, err) = fed.cli_as("police", "analyst", &["hits", "review", "1"]);
    assert_eq!(code, 2, "{err}");
    // Without the review role: 77. A note with a control character: 65, naming it.
    let (code, _, err) = fed.cli_as("police", "cms", &["hits", "review", "1", "--confirmed"]);
    assert_eq!(code, 77, "{err}");
    let (code, _, err) = fed.cli_as(
        "police",
        "analyst",
        &["hits", "review", "1", "--confirmed", "--note", "bell\u{7}"],
    );
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("note:"), "{err}");
    let (code, _, err) = fed.cli_as("police", "analyst", &["hits", "get", "7"]);
    assert_eq!(code, 66, "{err}");
    let latest = hit_log(&mut analyst).await;
    assert_eq!(
        latest.len(),
        2,
        "the refused reviews wrote nothing: {latest:?}"
    );
    fed.shutdown().await;
}
