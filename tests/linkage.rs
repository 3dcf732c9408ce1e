//! Person linkage between real nodes: the review band (a possible hit waits
//! for an analyst before the other agency hears of it), ranked candidates,
//! per-field evidence, and the policy's choice of blocks per peer.

mod common;

use casebridge::client::NodeClient;
use casebridge::proto::v1::{
    AlertContent, AlertDraft, BlockKind, Category, DateAgreement, Hit, HitChange, HitVerdict,
    Identifier, MatchStrength, PersonName, ReviewHitRequest, Severity, Subject, SubjectRole, Tlp,
    identifier::Kind,
};
use common::*;

fn person_draft(given: &str, family: &str, dob: &str) -> AlertDraft {
    AlertDraft {
        content: Some(AlertContent {
            category: Category::LabourExploitation as i32,
            severity: Severity::High as i32,
            tlp: Tlp::Amber as i32,
            narrative: "Worker found at a greenhouse.".into(),
            ..Default::default()
        }),
        subjects: vec![Subject {
            role: SubjectRole::PotentialVictim as i32,
            identifiers: vec![Identifier {
                kind: Some(Kind::Person(PersonName {
                    given_names: given.into(),
                    family_name: family.into(),
                    date_of_birth: dob.into(),
                })),
            }],
            profile: None,
        }],
        ..Default::default()
    }
}

/// The hits found of `local` (its latest entries), once there are `n`.
async fn hits_of(client: &NodeClient, local: &str, n: usize) -> Vec<Hit> {
    eventually(&format!("{n} hits of {local}"), || {
        let mut c = client.clone();
        let local = local.to_owned();
        async move {
            let mut latest = std::collections::BTreeMap::new();
            for h in hit_log(&mut c).await {
                if h.local_alert_id == local {
                    latest.insert(h.number, h);
                }
            }
            (latest.len() >= n).then(|| latest.into_values().collect())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_are_ranked_with_evidence_and_a_possible_hit_waits_for_review() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut ngo = fed.client("ngo", "cms").await;
    let mut police = fed.client("police", "cms").await;
    // Three NGO records that may be police's person, none an exact match.
    let n1 = submit_draft(&mut ngo, person_draft("Elena", "Kowalenko", "1990-03-04")).await;
    let n2 = submit_draft(&mut ngo, person_draft("Olena", "Kovalenko", "1990-04-03")).await;
    let n3 = submit_draft(&mut ngo, person_draft("Olena", "Kovalenko", "")).await;
    let unrelated = submit_draft(&mut ngo, person_draft("Olena", "Kovalenko", "1971-11-20")).await;
    eventually("ngo's alerts at police", || {
        let fed = &fed;
        async move { (fed.alerts("police").await.len() == 4).then_some(()) }
    })
    .await;
    let p = submit_draft(
        &mut police,
        person_draft("Олена", "Коваленко", "1990-03-04"),
    )
    .await;

    let hits = hits_of(&police, &p.id, 3).await;
    assert_eq!(
        hits.len(),
        3,
        "the namesake born in 1971 is no hit: {hits:#?}"
    );
    let of = |id: &str| hits.iter().find(|h| h.other_alert_id == id).unwrap();
    let (h1, h2, h3) = (of(&n1.id), of(&n2.id), of(&n3.id));
    assert!(hits.iter().all(|h| h.other_alert_id != unrelated.id));
    for h in [h1, h2, h3] {
        assert!(h.fuzzy);
        let e = h
            .evidence
            .as_ref()
            .expect("a fuzzy hit carries its evidence");
        assert_eq!(e.candidates, 3, "{h:?}");
    }
    let e = |h: &Hit| h.evidence.unwrap();
    assert_eq!(e(h1).date, DateAgreement::Same as i32);
    assert_eq!(e(h2).date, DateAgreement::Misread as i32);
    assert_eq!(e(h3).date, DateAgreement::Missing as i32);
    assert_eq!(
        e(h3).block,
        BlockKind::NameSound as i32,
        "no year: met by name sound"
    );
    assert!(
        e(h2).name_similarity > 0.99,
        "the same name once transliterated"
    );
    assert_eq!(
        [e(h1).rank, e(h2).rank, e(h3).rank],
        [1, 2, 3],
        "ranked by score: {} {} {}",
        h1.similarity,
        h2.similarity,
        h3.similarity
    );
    assert_eq!(h1.strength, MatchStrength::Likely as i32);
    assert_eq!(h2.strength, MatchStrength::Likely as i32);
    assert_eq!(h3.strength, MatchStrength::Possible as i32);
    assert!(h1.known_there && h2.known_there, "likely hits are told");
    assert!(!h3.known_there, "a possible hit waits for a person here");

    // Ngo hears of the two likely hits by notice (with the same evidence),
    // and of the possible one only once police's analyst confirms it.
    let told = |hits: &[Hit], id: &str| {
        hits.iter()
            .any(|h| h.local_alert_id == id && h.other_alert_id == p.id && h.known_there)
    };
    let ngo_hits = eventually("notices at ngo", || {
        let mut c = ngo.clone();
        let (a, b) = (n1.id.clone(), n2.id.clone());
        async move {
            let log = hit_log(&mut c).await;
            (told(&log, &a) && told(&log, &b)).then_some(log)
        }
    })
    .await;
    assert!(!told(&ngo_hits, &n3.id), "nothing told of the possible hit");
    // Ngo's own hit (found when police's alert arrived, or from the
    // notice, whichever came first) carries the same evidence.
    let at_ngo_n2 = ngo_hits
        .iter()
        .rev()
        .find(|h| h.local_alert_id == n2.id && h.other_alert_id == p.id)
        .expect("ngo's hit on its second record");
    assert_eq!(
        at_ngo_n2.evidence.as_ref().unwrap().date,
        DateAgreement::Misread as i32
    );

    let mut analyst = fed.client("police", "analyst").await;
    let reviewed = analyst
        .alerts
        .review_hit(ReviewHitRequest {
            number: h3.number,
            verdict: HitVerdict::Confirmed as i32,
            note: "Same first contact date in both files.".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reviewed.known_there, "confirming tells the other agency");
    let at_ngo = eventually("the confirmed possible hit at ngo", || {
        let mut c = ngo.clone();
        let (n3, p) = (n3.id.clone(), p.id.clone());
        async move {
            hit_log(&mut c).await.into_iter().rev().find(|h| {
                h.local_alert_id == n3
                    && h.other_alert_id == p
                    && h.change == HitChange::ReviewReceived as i32
            })
        }
    })
    .await;
    assert_eq!(
        at_ngo.their_review.as_ref().unwrap().verdict,
        HitVerdict::Confirmed as i32
    );
    assert_eq!(at_ngo.strength, MatchStrength::Possible as i32);
    fed.shutdown().await;
}

/// A birth year written one off is found through the name-sound blocks,
/// which a peer is sent only under `person = "fuzzy_wide"`: labour's
/// policy grants police only `fuzzy`, so labour's record of the same person
/// never meets police's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_sound_blocks_go_only_where_the_policy_says() {
    let fed = TestFederation::start_with(&["police", "ngo", "labour"], &[], |a, c| {
        if a.as_str() == "labour" {
            let path = c.sharing.policy.as_ref().unwrap().get_ref().clone();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("person = \"fuzzy_wide\""), "{text}");
            std::fs::write(&path, text.replace("fuzzy_wide", "fuzzy")).unwrap();
        }
    })
    .await;
    let mut ngo = fed.client("ngo", "cms").await;
    let mut labour = fed.client("labour", "cms").await;
    let mut police = fed.client("police", "cms").await;
    let n = submit_draft(&mut ngo, person_draft("Thi Lan", "Nguyen", "1994-07-12")).await;
    let l = submit_draft(&mut labour, person_draft("Thi Lan", "Nguyen", "1994-07-12")).await;
    eventually("both alerts at police", || {
        let fed = &fed;
        async move { (fed.alerts("police").await.len() == 2).then_some(()) }
    })
    .await;
    let p = submit_draft(&mut police, person_draft("Lan", "Nguyen Thi", "1995-07-12")).await;
    let hits = hits_of(&police, &p.id, 1).await;
    // Labour's alert was compared in the same pass, had it shared a block.
    let again = hit_log(&mut police).await;
    assert!(
        again.iter().all(|h| h.other_alert_id != l.id),
        "labour sent no name-sound encodings: {again:#?}"
    );
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(h.other_alert_id, n.id);
    let e = h.evidence.as_ref().unwrap();
    assert_eq!(e.block, BlockKind::NameSound as i32);
    assert_eq!(e.date, DateAgreement::Misread as i32, "a year off");
    assert_eq!(h.strength, MatchStrength::Likely as i32);
    fed.shutdown().await;
}

/// A wider review band takes effect on the alerts already stored: at its
/// next start police matches its own alerts again and finds the hit the
/// stricter band had left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_band_re_matches_stored_alerts() {
    let strict = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let s = strict.clone();
    let mut fed = TestFederation::start_with(&["police", "ngo"], &[], move |a, c| {
        if s.load(std::sync::atomic::Ordering::SeqCst) {
            c.matching.likely_threshold = 0.99;
            c.matching.possible_threshold = 0.99;
        }
        // Ngo finds nothing either, so the hit can only come from police's
        // re-match.
        if a.as_str() == "ngo" {
            c.matching.likely_threshold = 1.0;
            c.matching.possible_threshold = 1.0;
        }
    })
    .await;
    let mut ngo = fed.client("ngo", "cms").await;
    let mut police = fed.client("police", "cms").await;
    let n = submit_draft(&mut ngo, person_draft("Andreea", "Stanescu", "1988-05-17")).await;
    eventually("ngo's alert at police", || {
        let fed = &fed;
        async move { (fed.alerts("police").await.len() == 1).then_some(()) }
    })
    .await;
    let p = submit_draft(
        &mut police,
        person_draft("Andreia", "Stanescu", "1988-05-17"),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        hit_log(&mut police).await.is_empty(),
        "no hit under the strict band"
    );
    strict.store(false, std::sync::atomic::Ordering::SeqCst);
    fed.stop_node("police").await;
    fed.start_node("police").await;
    let police = fed.client("police", "cms").await;
    let hits = hits_of(&police, &p.id, 1).await;
    assert_eq!(hits[0].other_alert_id, n.id);
    assert_eq!(hits[0].strength, MatchStrength::Likely as i32);
    // The version did not change: nothing needed encoding anew.
    let stored = fed.alerts("police").await;
    assert_eq!(stored.iter().find(|a| a.id == p.id).unwrap().version, 1);
    fed.shutdown().await;
}

/// After a key ring rotation whose overlap has ended, an alert written
/// before it carries only the ended key's tokens and encodings. At the next
/// start its node encodes it anew under the keys valid now and shares the
/// new version, so a person written after the rotation still meets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_key_rotation_stored_alerts_are_encoded_anew() {
    let mut fed = TestFederation::start(&["police", "ngo"]).await;
    let mut ngo = fed.client("ngo", "cms").await;
    let n = submit_draft(&mut ngo, person_draft("Olena", "Kovalenko", "1990-03-04")).await;
    assert_eq!(n.version, 1);
    eventually("ngo's alert at police", || {
        let fed = &fed;
        async move { (fed.alerts("police").await.len() == 1).then_some(()) }
    })
    .await;
    let ring_of = |a: &str| {
        let path = fed.config(a).matching.key_ring.unwrap().get_ref().clone();
        std::fs::canonicalize(path).unwrap()
    };
    let ring = ring_of("ngo");
    assert_eq!(ring_of("police"), ring, "one ring for the federation");
    fed.stop_node("ngo").await;
    fed.stop_node("police").await;
    let v = casebridge::pseudo::keyring::rotate(&ring, time::Duration::ZERO).unwrap();
    assert_eq!(v, 2);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // past the old key's end
    fed.start_node("police").await;
    fed.start_node("ngo").await;
    // Ngo's alert comes to police again, as version 2 with new encodings.
    eventually("ngo's re-encoded alert at police", || {
        let fed = &fed;
        let id = n.id.clone();
        async move {
            fed.alerts("police")
                .await
                .iter()
                .any(|a| a.id == id && a.version == 2)
                .then_some(())
        }
    })
    .await;
    let mut police = fed.client("police", "cms").await;
    let p = submit_draft(
        &mut police,
        person_draft("Elena", "Kowalenko", "1990-03-04"),
    )
    .await;
    let hits = hits_of(&police, &p.id, 1).await;
    assert_eq!(hits[0].other_alert_id, n.id);
    fed.shutdown().await;
}
