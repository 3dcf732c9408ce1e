//! Disclosure requests between real nodes over mTLS: a request about a
//! confirmed hit reaches the holder exactly once (also when the holder was
//! down), only the holder, with the same due time on both sides; what each
//! client sees depends on its roles; every step is in both audit logs.

mod common;

use std::time::Duration;

use casebridge::proto::v1::send_disclosure_request::About;
use casebridge::proto::v1::{
    DisclosureState, GetDisclosureRequestRequest, HitVerdict, IdentifierType, LegalBasis,
    ListDisclosureRequestsRequest, ReviewHitRequest, SendDisclosureRequest, Urgency,
    WatchDisclosureRequestsRequest,
};
use common::*;

fn request_about(hit: u64) -> SendDisclosureRequest {
    SendDisclosureRequest {
        about: Some(About::HitNumber(hit)),
        legal_basis: LegalBasis::VictimReferralConsent as i32,
        citation: "Art. 8 Victims' Rights Directive".into(),
        purpose: "the caller agreed to be referred; we need the case contact".into(),
        case_reference: "NGO-2026-0117".into(),
        urgency: Urgency::Normal as i32,
        due_at: None,
        verification: vec![phone_id("+31 6 5555 0103", "")],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_about_a_confirmed_hit_reaches_the_holder_only_and_exactly_once() {
    let mut fed = TestFederation::start(&["police", "ngo", "labour"]).await;
    let mut police_cms = fed.client("police", "cms").await;
    let mut ngo_cms = fed.client("ngo", "cms").await;
    let mut ngo = fed.client("ngo", "analyst").await;
    let mut ngo_admin = fed.client("ngo", "admin").await;
    let ngo_head = audit_head(&mut ngo_admin).await;
    let mut police_admin = fed.client("police", "admin").await;
    let police_head = audit_head(&mut police_admin).await;

    let p = submit_draft(&mut police_cms, {
        let mut d = sample_draft("advert");
        d.subjects[0].identifiers = vec![phone_id("06-55550103", "NL")];
        d
    })
    .await;
    submit_draft(&mut ngo_cms, {
        let mut d = sample_draft("hotline call");
        d.subjects[0].identifiers = vec![phone_id("+31 6 5555 0103", "")];
        d
    })
    .await;
    let hit = first_hit(&ngo).await;

    // Not before a person confirmed the hit (Prüm II).
    let early = ngo
        .disclosure
        .send_request(request_about(hit))
        .await
        .unwrap_err();
    assert_eq!(early.code(), tonic::Code::FailedPrecondition, "{early:?}");
    assert!(early.message().contains("hits review"), "{early:?}");
    ngo.alerts
        .review_hit(ReviewHitRequest {
            number: hit,
            verdict: HitVerdict::Confirmed as i32,
            note: "same number as the caller's".into(),
        })
        .await
        .unwrap();

    // Every missing field at once; the wrong role; nothing recorded.
    let empty = ngo
        .disclosure
        .send_request(SendDisclosureRequest {
            about: Some(About::HitNumber(hit)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        casebridge::violation::fields_of(&empty),
        ["legal_basis", "purpose", "case_reference", "urgency"]
    );
    let custom_early = ngo
        .disclosure
        .send_request(SendDisclosureRequest {
            urgency: Urgency::Custom as i32,
            due_at: Some(casebridge::time::timestamp(
                std::time::SystemTime::now() + Duration::from_secs(60),
            )),
            ..request_about(hit)
        })
        .await
        .unwrap_err();
    assert_eq!(casebridge::violation::fields_of(&custom_early), ["due_at"]);
    let no_role = ngo_cms
        .disclosure
        .send_request(request_about(hit))
        .await
        .unwrap_err();
    assert_eq!(no_role.code(), tonic::Code::PermissionDenied);
    assert!(
        disclosure_cases(&mut ngo, Default::default())
            .await
            .is_empty()
    );

    // Police is down when ngo asks: the request waits, then arrives once.
    fed.stop_node("police").await;
    let sent = ngo
        .disclosure
        .send_request(request_about(hit))
        .await
        .unwrap()
        .into_inner();
    let request = sent.request.clone().unwrap();
    assert!(sent.outgoing);
    assert_eq!(sent.peer, "police");
    assert_eq!(request.holder_alert_id, p.id);
    assert_eq!(request.officer, "analyst");
    assert_eq!(sent.state, DisclosureState::Open as i32);
    let requested = casebridge::time::system_time_lossy(request.requested_at.as_ref().unwrap());
    let due = casebridge::time::system_time_lossy(sent.due_at.as_ref().unwrap());
    assert_eq!(
        due.duration_since(requested).unwrap(),
        Duration::from_secs(7 * 86_400)
    );
    fed.start_node("police").await;

    let mut legal = fed.client("police", "legal").await;
    let received = eventually("the request at police", || {
        let mut c = legal.clone();
        async move {
            disclosure_cases(&mut c, Default::default())
                .await
                .into_iter()
                .next()
        }
    })
    .await;
    assert!(!received.outgoing);
    assert_eq!(received.peer, "ngo");
    assert_eq!(received.request, sent.request, "the request as sent");
    // The holder counts the answer time from its own receipt (the request
    // waited while police was down), and the requester adopts it from the
    // delivery ack: one deadline on both sides.
    let received_due = casebridge::time::system_time_lossy(received.due_at.as_ref().unwrap());
    assert!(
        received_due >= due,
        "the holder's deadline is never earlier"
    );
    let adopted = eventually("the holder's due time at ngo", || {
        let mut c = ngo.clone();
        let want = received.due_at;
        async move {
            disclosure_cases(&mut c, Default::default())
                .await
                .into_iter()
                .find(|c| c.outgoing && c.due_at == want)
        }
    })
    .await;
    assert_eq!(
        adopted.due_at, received.due_at,
        "the same due time on both sides"
    );
    assert!(!received.overdue);
    // The holder's officer sees that the requester's number matches.
    assert_eq!(
        received.verification.len(),
        1,
        "{:?}",
        received.verification
    );
    assert_eq!(
        received.verification[0].r#type,
        IdentifierType::Phone as i32
    );
    assert!(received.verification[0].matched);

    // The requester's node learns that it was delivered.
    let delivered = eventually("delivered at ngo", || {
        let mut c = ngo.clone();
        let id = request.id.clone();
        async move {
            let case = c
                .disclosure
                .get_request(GetDisclosureRequestRequest { id })
                .await
                .ok()?
                .into_inner();
            case.delivered_at.is_some().then_some(case)
        }
    })
    .await;
    let steps: Vec<&str> = delivered.history.iter().map(|e| e.step.as_str()).collect();
    assert_eq!(steps, ["sent", "delivered"]);

    // Only the holder got it; roles decide who sees which direction.
    eventually("queues drained", || async {
        let mut drained = true;
        for a in ["police", "ngo", "labour"] {
            drained &= fed.peers(a).await.iter().all(|p| p.queue_depth == 0);
        }
        drained.then_some(())
    })
    .await;
    let mut labour = fed.client("labour", "legal").await;
    assert!(
        disclosure_cases(&mut labour, Default::default())
            .await
            .is_empty()
    );
    let mut police_analyst = fed.client("police", "analyst").await;
    assert!(
        disclosure_cases(&mut police_analyst, Default::default())
            .await
            .is_empty()
    );
    let hidden = police_analyst
        .disclosure
        .get_request(GetDisclosureRequestRequest {
            id: request.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    // A malformed id is named as such, not looked up.
    let mut legal_police = fed.client("police", "legal").await;
    assert_invalid(
        legal_police
            .disclosure
            .get_request(GetDisclosureRequestRequest {
                id: "police:rel:not-a-request".into(),
            })
            .await,
        "id",
    );
    assert_eq!(
        disclosure_cases(&mut legal, Default::default()).await.len(),
        1,
        "exactly once"
    );
    let mut watch = legal
        .disclosure
        .watch_disclosure_requests(WatchDisclosureRequestsRequest {
            after_sequence: 0,
            backlog_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.request.unwrap().id, request.id);

    // Both audit logs tell the story.
    let ngo_log = audit_after(&mut ngo_admin, ngo_head).await;
    let police_log = audit_after(&mut police_admin, police_head).await;
    let has = |log: &[casebridge::proto::v1::AuditEntry], action: &str, outcome: &str| {
        log.iter()
            .any(|e| e.action == action && e.outcome == outcome && e.objects.contains(&request.id))
    };
    assert!(has(&ngo_log, "disclosure.request", "OK"));
    assert!(has(&ngo_log, "disclosure.request_send", "stored"));
    assert!(has(&police_log, "disclosure.request_receive", "stored"));
    fed.shutdown().await;
}

/// A request past its due time is overdue on both sides (a custom
/// deadline of two seconds, allowed by `min_deadline_secs = 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_due_time_is_overdue_on_both_sides() {
    let fed = TestFederation::start_with(&["police", "ngo"], &[], |_, c| {
        c.disclosure.min_deadline_secs = casebridge::config::Bounded::new(1);
        c.metrics.listen = Some(toml::Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()));
    })
    .await;
    let mut police_cms = fed.client("police", "cms").await;
    let p = submit(&mut police_cms, "advert").await;
    let mut ngo = fed.client("ngo", "analyst").await;
    let sent = ngo
        .disclosure
        .send_request(SendDisclosureRequest {
            about: Some(About::AlertId(p.id.clone())),
            urgency: Urgency::Custom as i32,
            due_at: Some(casebridge::time::timestamp(
                std::time::SystemTime::now() + Duration::from_secs(2),
            )),
            verification: vec![],
            ..request_about(0)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!sent.overdue);
    let id = sent.request.unwrap().id;
    let mut legal = fed.client("police", "legal").await;
    let overdue = ListDisclosureRequestsRequest {
        overdue_only: true,
        ..Default::default()
    };
    let at_police = eventually("overdue at police", || {
        let mut c = legal.clone();
        let overdue = overdue.clone();
        async move { disclosure_cases(&mut c, overdue).await.into_iter().next() }
    })
    .await;
    assert!(at_police.overdue);
    assert_eq!(at_police.request.unwrap().id, id);
    let at_ngo = disclosure_cases(&mut ngo, overdue).await;
    assert_eq!(at_ngo.len(), 1);
    assert!(at_ngo[0].overdue && at_ngo[0].outgoing);
    // Not overdue in the other filter's sense: it is still open.
    let open = disclosure_cases(
        &mut legal,
        ListDisclosureRequestsRequest {
            states: vec![DisclosureState::Open as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(open.len(), 1);

    // Status and Prometheus show it on both sides, per peer and direction.
    for (a, peer, direction) in [("police", "ngo", "received"), ("ngo", "police", "sent")] {
        let status = fed.status(a).await;
        assert_eq!(
            (
                status.disclosure_requests_open,
                status.disclosure_requests_overdue
            ),
            (1, 1),
            "{a}"
        );
        let (_, body) = http_get(fed.node(a).metrics_addr().unwrap(), "/metrics").await;
        let series = format!(
            "casebridge_disclosure_requests_overdue{{peer=\"{peer}\",direction=\"{direction}\"}} 1"
        );
        assert!(body.contains(&series), "{a}: {series} in\n{body}");
    }

    // Once refused, it is neither open nor overdue; the statistics count it.
    legal
        .disclosure
        .decide(casebridge::proto::v1::DecideRequest {
            id: id.clone(),
            outcome: DisclosureState::Refused as i32,
            ground: casebridge::proto::v1::RefusalGround::Disproportionate as i32,
            note: "too broad".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, body) = http_get(fed.node("police").metrics_addr().unwrap(), "/metrics").await;
    assert!(
        body.contains(
            "casebridge_disclosure_requests_overdue{peer=\"ngo\",direction=\"received\"} 0"
        ),
        "{body}"
    );
    assert!(
        body.contains("casebridge_disclosure_decisions_total{peer=\"ngo\",direction=\"received\",outcome=\"refused\"} 1"),
        "{body}"
    );
    let stats = legal
        .disclosure
        .request_stats(casebridge::proto::v1::RequestStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.rows.len(), 1, "{stats:?}");
    let row = &stats.rows[0];
    assert_eq!((row.peer.as_str(), row.outgoing), ("ngo", false));
    assert_eq!(
        (row.requests, row.refused, row.open, row.answered_late),
        (1, 1, 0, 1)
    );
    assert!(row.median_answer_seconds >= 2.0, "{row:?}");
    let (code, out, err) = fed.cli_as("police", "legal", &["requests", "stats"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("ngo") && l.contains("received")),
        "{out}"
    );
    fed.shutdown().await;
}

/// `casebridge requests send | list | show` as a caseworker runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_the_command_line() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut police_cms = fed.client("police", "cms").await;
    let mut ngo_cms = fed.client("ngo", "cms").await;
    submit_draft(&mut police_cms, {
        let mut d = sample_draft("advert");
        d.subjects[0].identifiers = vec![phone_id("06-55550104", "NL")];
        d
    })
    .await;
    submit_draft(&mut ngo_cms, {
        let mut d = sample_draft("hotline call");
        d.subjects[0].identifiers = vec![phone_id("+31 6 5555 0104", "")];
        d
    })
    .await;
    let ngo = fed.client("ngo", "analyst").await;
    let hit = first_hit(&ngo).await.to_string();
    let send = |extra: &[&str]| {
        let mut args = vec![
            "requests",
            "send",
            "--hit",
            hit.as_str(),
            "--legal-basis",
            "victim_referral_consent",
            "--reason",
            "referral of the caller",
            "--purpose",
            "case NGO-2026-0200 referral",
            "--case-ref",
            "NGO-2026-0200",
            "--urgency",
            "urgent",
        ];
        args.extend_from_slice(extra);
        fed.cli_as("ngo", "analyst", &args)
    };
    // Not confirmed yet: exit 75, and the message says what to do.
    let (code, _, err) = send(&[]);
    assert_eq!(code, 75, "{err}");
    assert!(
        err.contains(&format!("hits review {hit} --confirmed")),
        "{err}"
    );
    let (code, _, err) = fed.cli_as("ngo", "analyst", &["hits", "review", &hit, "--confirmed"]);
    assert_eq!(code, 0, "{err}");
    // A verification file with a syntax error: file, line and column.
    let bad = fed.dir.path().join("verify.json");
    std::fs::write(&bad, "[\n  {\"phone\": {\"number\": \"+31655550104\"}\n").unwrap();
    let (code, _, err) = send(&["--verify", bad.to_str().unwrap()]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");
    std::fs::write(&bad, r#"[{"phone": {"number": "+31655550104"}}]"#).unwrap();
    let (code, out, err) = send(&["--verify", bad.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("request ngo:req:"), "{out}");
    assert!(out.contains("sent to police  (open, due "), "{out}");
    assert!(
        out.contains("2 days 23 h left") || out.contains("2 days 22 h left"),
        "{out}"
    );
    assert!(out.contains("basis     victim referral consent"), "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_owned();

    let shown = eventually("the request at police", || {
        let (code, out, _) = fed.cli_as("police", "legal", &["requests", "show", &id]);
        std::future::ready((code == 0).then_some(out))
    })
    .await;
    assert!(shown.contains("from ngo  (open"), "{shown}");
    assert!(
        shown.contains("verified  phone: matches our alert"),
        "{shown}"
    );
    assert!(shown.contains("received by peer:ngo"), "{shown}");
    // --reason is the request's purpose, which the holder reads; the
    // global --purpose (after the subcommand too) is the call's own.
    assert!(shown.contains("referral of the caller"), "{shown}");
    assert!(!shown.contains("case NGO-2026-0200 referral"), "{shown}");
    let (code, out, err) = fed.cli_as("police", "legal", &["requests", "list", "--received"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(&id) && out.contains("NGO-2026-0200"),
        "{out}"
    );
    // Nothing answered yet: no answer time, rather than "0 s".
    let (code, out, err) = fed.cli_as("ngo", "analyst", &["requests", "stats"]);
    assert_eq!(code, 0, "{err}");
    let sent = out.lines().find(|l| l.contains("sent")).unwrap_or_default();
    assert!(
        sent.contains("none answered") && !sent.contains(" 0 s"),
        "{out}"
    );
    // The cms client has neither role: 77.
    let (code, _, err) = fed.cli_as("police", "cms", &["requests", "list"]);
    assert_eq!(code, 77, "{err}");
    fed.shutdown().await;
}
