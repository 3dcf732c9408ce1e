//! Cross-agency hits between real nodes: the same phone number written
//! differently at two agencies is found on both sides, streamed by
//! `WatchHits`, and resumable from a cursor.

mod common;

use casebridge::proto::v1::{
    AlertDraft, CountHitsRequest, HitSource, IdentifierType, WatchHitsRequest,
};
use common::*;

fn draft_with_phone(number: &str, region: &str) -> AlertDraft {
    let mut d = sample_draft("contact number from an advert");
    d.subjects[0].identifiers = vec![phone_id(number, region)];
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_phone_written_differently_is_a_hit_on_both_sides() {
    let fed = TestFederation::start(&["police", "ngo", "labour"]).await;
    let mut police = fed.client("police", "cms").await;
    let mut ngo = fed.client("ngo", "cms").await;
    let mut labour = fed.client("labour", "cms").await;

    // A live watcher at police, started before anything happens.
    let mut watch = police
        .alerts
        .watch_hits(WatchHitsRequest::default())
        .await
        .unwrap()
        .into_inner();

    let p = submit_draft(&mut police, draft_with_phone("06-55550101", "NL"))
        .await
        .id;
    let n = submit_draft(&mut ngo, draft_with_phone("+31 6 5555 0101", ""))
        .await
        .id;
    let _other = submit_draft(&mut labour, draft_with_phone("+31 6 5555 0199", ""))
        .await
        .id;

    let live = tokio::time::timeout(WAIT, watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(live.local_alert_id, p);
    assert_eq!(live.other_alert_id, n);
    assert_eq!(live.other_agency, "ngo");
    assert_eq!(live.r#type, IdentifierType::Phone as i32);
    assert_eq!(live.similarity, 1.0);
    assert!(!live.fuzzy, "equal tokens: an exact hit");
    // A new store's hit log begins at entry 1 with hit 1.
    assert_eq!((live.sequence, live.number), (1, 1));

    let ngo_hits = eventually("hit at ngo", || {
        let mut ngo = ngo.clone();
        async move {
            let h = hit_log(&mut ngo).await;
            (!h.is_empty()).then_some(h)
        }
    })
    .await;
    assert_eq!(
        ngo_hits.len(),
        1,
        "one hit, however it was learned: {ngo_hits:?}"
    );
    assert_eq!(ngo_hits[0].local_alert_id, n);
    assert_eq!(ngo_hits[0].other_alert_id, p);
    assert!([HitSource::LocalMatch as i32, HitSource::Notice as i32].contains(&ngo_hits[0].source));

    // Let notices and deliveries settle, then check nothing was counted twice
    // and the unrelated number matched nothing.
    eventually("queues drained", || async {
        let mut all = Vec::new();
        for a in ["police", "ngo", "labour"] {
            all.extend(fed.peers(a).await);
        }
        all.iter().all(|p| p.queue_depth == 0).then_some(())
    })
    .await;
    assert_eq!(hit_log(&mut police).await.len(), 1);
    assert_eq!(hit_log(&mut ngo).await.len(), 1);
    assert!(hit_log(&mut labour).await.is_empty());
    // Counting without streaming, and saying so when there is nothing.
    let count = police
        .alerts
        .count_hits(CountHitsRequest { after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((count.count, count.latest_sequence), (1, live.sequence));
    let (code, out, err) = fed.cli_as("labour", "cms", &["hits", "watch", "--backlog-only"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("no hit log entries after entry 0"), "{err}");
    let (code, out, err) = fed.cli_as("labour", "cms", &["hits", "count"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("0 hit log entries after entry 0: the hit log is empty"),
        "{out}"
    );
    // The text output names both numbers: the entry (the cursor `--after`
    // takes) and the hit (what `hits get` takes), and the count names the
    // cursor to resume with.
    let (code, out, err) = fed.cli_as("police", "cms", &["hits", "watch", "--backlog-only"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("entry     1  hit    1  "), "{out}");
    assert!(
        out.contains("found here") || out.contains("found by ngo"),
        "{out}"
    );
    let (code, out, err) = fed.cli_as("police", "cms", &["hits", "count"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("1 hit log entry after entry 0 (hits found and reviews); the newest is entry 1: resume with --after 1"),
        "{out}"
    );

    // Resuming after the last seen sequence replays nothing old…
    assert!(hit_log_after(&mut police, live.sequence).await.is_empty());
    // …and a new hit arrives on a resumed stream.
    let mut resumed = police
        .alerts
        .watch_hits(WatchHitsRequest {
            after_sequence: live.sequence,
            backlog_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let l = submit_draft(&mut labour, draft_with_phone("0031655550101", "BE"))
        .await
        .id;
    let next = tokio::time::timeout(WAIT, resumed.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next.sequence > live.sequence);
    assert_eq!(next.other_alert_id, l);
    assert_eq!(next.other_agency, "labour");
    fed.shutdown().await;
}

fn draft_with_person(given: &str, family: &str, dob: &str) -> AlertDraft {
    let mut d = sample_draft("person seen at a recruitment office");
    d.subjects[0].identifiers = vec![person_id(given, family, dob)];
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misspelled_name_with_same_birth_date_is_a_fuzzy_hit() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut police = fed.client("police", "cms").await;
    let mut ngo = fed.client("ngo", "cms").await;
    let p = submit_draft(&mut police, draft_with_person("Jon", "Smyth", "1990-02-01"))
        .await
        .id;
    let _unrelated = submit_draft(
        &mut police,
        draft_with_person("Ana", "Popescu", "1990-02-01"),
    )
    .await;
    let n = submit_draft(&mut ngo, draft_with_person("John", "Smith", "1990-02-01"))
        .await
        .id;

    for (client, own, other) in [(&mut police, &p, &n), (&mut ngo, &n, &p)] {
        let hits = eventually("fuzzy hit", || {
            let mut c = client.clone();
            async move {
                let h = hit_log(&mut c).await;
                (!h.is_empty()).then_some(h)
            }
        })
        .await;
        assert_eq!(hits.len(), 1, "only the similar person: {hits:?}");
        assert_eq!(&hits[0].local_alert_id, own);
        assert_eq!(&hits[0].other_alert_id, other);
        assert_eq!(hits[0].r#type, IdentifierType::Person as i32);
        assert!(
            hits[0].similarity >= 0.8 && hits[0].similarity < 1.0,
            "{}",
            hits[0].similarity
        );
    }
    // Settled: still exactly one hit each, nothing for the unrelated person.
    eventually("queues drained", || async {
        let mut all = fed.peers("police").await;
        all.extend(fed.peers("ngo").await);
        all.iter().all(|p| p.queue_depth == 0).then_some(())
    })
    .await;
    assert_eq!(hit_log(&mut police).await.len(), 1);
    assert_eq!(hit_log(&mut ngo).await.len(), 1);
    fed.shutdown().await;
}

/// Hit notices queued when a peer's alert arrives (the inbound path, not a
/// local write) are delivered at once. Ngo matches persons more loosely
/// than police (fuzzy threshold 0.75 against 1.0), so when police sends a
/// burst of alerts naming a person spelt a little differently from ngo's,
/// only ngo finds the hits, on arrival, with its delivery worker connected
/// and idle. Ngo writes nothing locally after that, so only the store's
/// outbox listener can wake that worker: every notice must be acknowledged
/// and ngo's queue drain to zero by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_queued_by_arriving_alerts_are_delivered_without_a_local_write() {
    const BURST: usize = 20;
    let fed = TestFederation::start_with(&["police", "ngo"], &[], |a, c| {
        if a.as_str() == "police" {
            c.matching.likely_threshold = 1.0;
            c.matching.possible_threshold = 1.0;
        }
    })
    .await;
    let (mut police, mut ngo) = (
        fed.client("police", "cms").await,
        fed.client("ngo", "cms").await,
    );
    let ngo_core = fed.node("ngo").core().clone();
    let police_id = agency("police");
    let drained =
        || std::future::ready((ngo_core.store.outbox_depth(&police_id) == 0).then_some(()));
    submit_draft(
        &mut ngo,
        draft_with_person("Maria", "Ionescu", "1991-04-02"),
    )
    .await;
    eventually("ngo's alert acknowledged by police", drained).await;
    for _ in 0..BURST {
        submit_draft(
            &mut police,
            draft_with_person("Mariana", "Ionescu", "1991-04-02"),
        )
        .await;
    }
    let hits = eventually("ngo's hits on arrival", || {
        let hits = ngo_core.store.hits_after(0, 1000).unwrap();
        std::future::ready((hits.len() == BURST).then_some(hits))
    })
    .await;
    assert!(
        hits.iter()
            .all(|h| h.source == HitSource::LocalMatch as i32 && h.similarity < 1.0 && h.fuzzy),
        "{hits:?}"
    );
    eventually("ngo's queue for police to drain by itself", drained).await;
    let admin = fed.client("ngo", "admin").await;
    eventually("every notice acknowledged as stored", || {
        let mut admin = admin.clone();
        async move {
            let stored = audit_after(&mut admin, 0)
                .await
                .into_iter()
                .filter(|e| e.action == "hit.notify" && e.outcome == "stored")
                .count();
            (stored == BURST).then_some(())
        }
    })
    .await;
    let at_police = fed.node("police").core().store.hits_after(0, 1000).unwrap();
    assert_eq!(
        at_police.len(),
        BURST,
        "police learnt each hit from a notice"
    );
    assert!(
        at_police
            .iter()
            .all(|h| h.source == HitSource::Notice as i32 && h.fuzzy)
    );
    fed.shutdown().await;
}
