//! Federation lookup between real nodes: hit / no-hit per agency, answers
//! only about the answering agency's own alerts, rate limit, bad input.

mod common;

use casebridge::config::Bounded;
use casebridge::proto::v1::{IdentifierType, LookupRequest};
use common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_answers_per_agency_about_own_alerts_only() {
    let fed = TestFederation::start_with(&["police", "ngo", "labour"], &[], |a, cfg| {
        if a.as_str() == "police" {
            cfg.limits.lookups_per_minute_per_client = Bounded::new(4);
        }
    })
    .await;
    let mut ngo = fed.client("ngo", "cms").await;
    let mut draft = sample_draft("hotline call");
    draft.subjects[0].identifiers = vec![
        phone_id("+31 6 5555 0101", ""),
        person_id("Olena", "Kovalenko", "1998-07-14"),
    ];
    let ngo_alert = submit_draft(&mut ngo, draft).await.id;
    // labour and police hold ngo's alert too (received), but must not
    // answer for it.
    for at in ["labour", "police"] {
        fed.held(at, &ngo_alert).await;
    }

    let mut police = fed.client("police", "analyst").await;
    let answer = police
        .alerts
        .lookup(LookupRequest {
            identifiers: vec![
                phone_id("06-55550101", "NL"),
                person_id("Olena", "Kovalenka", "1998-07-14"),
            ],
            peers: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    let by: std::collections::BTreeMap<_, _> = answer
        .answers
        .iter()
        .map(|a| (a.agency.as_str(), a))
        .collect();
    assert_eq!(answer.answers[0].agency, "police", "own holdings first");
    // Police received ngo's alert, but it is ngo's to report: listed once.
    assert!(
        answer.answers[0].matches.is_empty(),
        "police listed an alert it received: {:?}",
        answer.answers[0].matches
    );
    let at_ngo = by["ngo"];
    assert!(at_ngo.answered, "{}", at_ngo.error);
    let mut types: Vec<i32> = at_ngo.matches.iter().map(|m| m.r#type).collect();
    types.sort();
    assert_eq!(
        types,
        [IdentifierType::Phone as i32, IdentifierType::Person as i32]
    );
    assert!(at_ngo.matches.iter().all(|m| m.alert_id == ngo_alert));
    let fuzzy = at_ngo
        .matches
        .iter()
        .find(|m| m.r#type == IdentifierType::Person as i32)
        .unwrap();
    assert!(fuzzy.similarity >= 0.75 && fuzzy.similarity < 1.0);
    // Both sides logged the lookup for the audit log.
    assert_eq!(fed.node("police").core().store.lookup_count().unwrap(), 1);
    assert_eq!(fed.node("ngo").core().store.lookup_count().unwrap(), 1);
    assert_eq!(fed.node("labour").core().store.lookup_count().unwrap(), 1);
    assert!(by["labour"].answered);
    assert!(
        by["labour"].matches.is_empty(),
        "labour answered for an alert it did not originate"
    );

    // No hit anywhere for an unknown number; asking only one peer asks only it.
    let answer = police
        .alerts
        .lookup(LookupRequest {
            identifiers: vec![phone_id("+31 6 1111 2222", "")],
            peers: vec!["labour".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer
            .answers
            .iter()
            .map(|a| a.agency.as_str())
            .collect::<Vec<_>>(),
        ["police", "labour"]
    );
    assert!(answer.answers.iter().all(|a| a.matches.is_empty()));

    // Bad input names the field; an unknown peer is refused.
    let result = police
        .alerts
        .lookup(LookupRequest {
            identifiers: vec![phone_id("12", "NL")],
            peers: vec![],
        })
        .await;
    assert_invalid(result, "identifiers[0].phone.number");
    let result = police
        .alerts
        .lookup(LookupRequest {
            identifiers: vec![phone_id("+31 6 1111 2222", "")],
            peers: vec!["rogue".into()],
        })
        .await;
    let err = assert_invalid(result, "peers[0]");
    assert!(
        err.message().contains("not a configured peer"),
        "{}",
        err.message()
    );
    // Four lookups per minute for this client (refused ones count): the fifth is refused.
    let err = police
        .alerts
        .lookup(LookupRequest {
            identifiers: vec![phone_id("+31 6 1111 2222", "")],
            peers: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    fed.shutdown().await;
}
