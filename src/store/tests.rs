//! Unit tests of the store's operations across its files.

use super::*;
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::{Alert, SharedAlert};
use crate::proto::v1::{HitNotice, StoredAlert, envelope::Payload};

fn agency(s: &str) -> AgencyId {
    AgencyId::new(s).unwrap()
}

fn record(id: &AlertId, version: u64, narrative: &str) -> StoredAlert {
    StoredAlert {
        tokens_pending: false,
        alert: Some(Alert {
            id: id.to_string(),
            origin: id.origin().to_string(),
            version,
            content: Some(crate::proto::v1::AlertContent {
                narrative: narrative.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        shared_with: vec![],
        withdrawn_from: vec![],
        pseudonyms: vec![],
    }
}

fn shared(id: &AlertId, version: u64) -> Payload {
    Payload::Alert(SharedAlert {
        id: id.to_string(),
        origin: id.origin().to_string(),
        version,
        ..Default::default()
    })
}

fn scope() -> MatchScope {
    MatchScope {
        own: agency("police"),
        peers: crate::directory::roster::Roster::new(crate::directory::roster::Members::ids([
            agency("ngo"),
        ])),
        band: Default::default(),
    }
}

fn version_of(p: &Payload) -> u64 {
    match p {
        Payload::Alert(a) => a.version,
        _ => 0,
    }
}

#[tokio::test]
async fn local_write_and_outbox_are_atomic_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
    let id = AlertId::generate(&agency("police"));
    let (ngo, labour) = (agency("ngo"), agency("labour"));
    for v in 1..=3 {
        store
            .write_local(&id, None, |_| {
                Ok::<_, ()>((
                    record(&id, v, "x"),
                    vec![
                        OutboxItem {
                            peer: ngo.clone(),
                            payload: shared(&id, v),
                            rule: String::new(),
                            disclosed: String::new(),
                        },
                        OutboxItem {
                            peer: labour.clone(),
                            payload: shared(&id, v),
                            rule: String::new(),
                            disclosed: String::new(),
                        },
                    ],
                ))
            })
            .await
            .unwrap();
    }
    let q = store.outbox_after(&ngo, None, 10).unwrap();
    assert_eq!(
        q.iter().map(|q| version_of(&q.payload)).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        q.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequences increase"
    );
    // Paging by cursor and removal on ack.
    let rest = store.outbox_after(&ngo, Some(q[0].seq), 10).unwrap();
    assert_eq!(rest.len(), 2);
    let share = crate::proto::v1::ShareRecord {
        peer: "ngo".into(),
        alert_id: id.to_string(),
        version: 1,
        status: "stored".into(),
        ..Default::default()
    };
    let event = || crate::audit::Event::new("node", crate::audit::Action::AlertShare, "stored");
    store
        .outbox_done(&ngo, q[0].seq, Some(&share), event())
        .unwrap();
    // Done twice (a resend acked again after a crash): still one queue
    // entry less, and the record is the same key.
    store
        .outbox_done(&ngo, q[0].seq, Some(&share), event())
        .unwrap();
    assert_eq!(store.outbox_depth(&ngo), 2);
    assert_eq!(store.shares_of(&id.to_string()).unwrap(), [share]);
    assert_eq!(
        store.outbox_depth(&labour),
        3,
        "other peers' queues untouched"
    );

    // A rejected build writes nothing at all.
    let other = AlertId::generate(&agency("police"));
    let err = store
        .write_local(
            &other,
            None,
            |_| -> Result<(StoredAlert, Vec<OutboxItem>), &str> { Err("no") },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TxError::Rejected("no")));
    assert!(store.get(&other).unwrap().is_none());
    assert_eq!(store.outbox_total().unwrap(), 5);
}

#[tokio::test]
async fn request_key_replays_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
    let first = AlertId::generate(&agency("police"));
    let second = AlertId::generate(&agency("police"));
    let w1 = store
        .write_local(
            &first,
            Some(RequestKey {
                key: b"cms\0r1",
                digest: b"d1",
            }),
            |_| Ok::<_, ()>((record(&first, 1, "a"), vec![])),
        )
        .await
        .unwrap();
    assert!(matches!(w1, LocalWrite::Written(_)));
    let w2 = store
        .write_local(
            &second,
            Some(RequestKey {
                key: b"cms\0r1",
                digest: b"d1",
            }),
            |_| Ok::<_, ()>((record(&second, 1, "b"), vec![])),
        )
        .await
        .unwrap();
    match w2 {
        LocalWrite::Replayed(r) => assert_eq!(r.alert.unwrap().id, first.to_string()),
        other => panic!("expected replay, got {other:?}"),
    }
    assert!(store.get(&second).unwrap().is_none());
    // The same key for another request: refused, nothing written.
    let third = AlertId::generate(&agency("police"));
    let w3 = store
        .write_local(
            &third,
            Some(RequestKey {
                key: b"cms\0r1",
                digest: b"d2",
            }),
            |_| Ok::<_, ()>((record(&third, 1, "c"), vec![])),
        )
        .await
        .unwrap();
    match w3 {
        LocalWrite::Conflict(r) => assert_eq!(r.alert.unwrap().id, first.to_string()),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(store.get(&third).unwrap().is_none());
}

#[tokio::test]
async fn received_versions_never_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
    let id = AlertId::generate(&agency("ngo"));
    let out = store
        .apply_received_batch(vec![
            record(&id, 2, "v2"),
            record(&id, 1, "v1"),
            record(&id, 2, "v2 again"),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            ApplyOutcome::Stored,
            ApplyOutcome::Duplicate,
            ApplyOutcome::Duplicate
        ]
    );
    let held = store.get(&id).unwrap().unwrap().alert.unwrap();
    assert_eq!(
        (held.version, held.content.unwrap().narrative.as_str()),
        (2, "v2")
    );
    let out = store
        .apply_received_batch(vec![record(&id, 3, "v3")])
        .await
        .unwrap();
    assert_eq!(out, [ApplyOutcome::Stored]);
    assert_eq!(store.count_alerts(&agency("police")).unwrap(), (0, 1));

    // A tombstone at the version held (a withdrawal from this peer)
    // applies once; the live version again does not undo it.
    let tomb = |r: StoredAlert| {
        let mut r = r;
        let a = r.alert.as_mut().unwrap();
        a.retracted = true;
        a.content = None;
        r
    };
    let out = store
        .apply_received_batch(vec![
            tomb(record(&id, 3, "")),
            record(&id, 3, "v3"),
            tomb(record(&id, 3, "")),
        ])
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            ApplyOutcome::Stored,
            ApplyOutcome::Duplicate,
            ApplyOutcome::Duplicate
        ]
    );
    let held = store.get(&id).unwrap().unwrap().alert.unwrap();
    assert!(held.retracted && held.content.is_none());
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = AlertId::generate(&agency("police"));
    {
        let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
        store
            .write_local(&id, None, |_| {
                Ok::<_, ()>((
                    record(&id, 1, "kept"),
                    vec![OutboxItem {
                        peer: agency("ngo"),
                        payload: shared(&id, 1),
                        rule: String::new(),
                        disclosed: String::new(),
                    }],
                ))
            })
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
    assert_eq!(store.get(&id).unwrap().unwrap().alert.unwrap().version, 1);
    assert_eq!(store.outbox_depth(&agency("ngo")), 1);
    assert!(
        store
            .commit_stats()
            .flushes
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    );
}

fn with_token(mut rec: StoredAlert, token: u8) -> StoredAlert {
    rec.pseudonyms = vec![crate::proto::v1::SharedSubject {
        role: 0,
        tokens: vec![crate::proto::v1::Token {
            r#type: crate::proto::v1::IdentifierType::Phone as i32,
            key_version: 1,
            value: vec![token; 32],
        }],
        encodings: vec![],
    }];
    rec
}

#[tokio::test]
async fn shared_tokens_make_one_hit_and_one_notice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
    let mine = AlertId::generate(&agency("police"));
    let theirs = AlertId::generate(&agency("ngo"));
    let unrelated = AlertId::generate(&agency("ngo"));
    store
        .write_local(&mine, None, |_| {
            Ok::<_, ()>((with_token(record(&mine, 1, "a"), 7), vec![]))
        })
        .await
        .unwrap();
    store
        .apply_received_batch(vec![
            with_token(record(&theirs, 1, "b"), 7),
            with_token(record(&unrelated, 1, "c"), 8),
        ])
        .await
        .unwrap();
    let hits = store.hits_after(0, 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (
            hits[0].local_alert_id.as_str(),
            hits[0].other_alert_id.as_str()
        ),
        (mine.to_string().as_str(), theirs.to_string().as_str())
    );
    assert_eq!(hits[0].other_agency, "ngo");
    assert_eq!(*store.watch_hits().borrow(), hits[0].sequence);
    // The other side is told, through its outbox.
    let notices: Vec<_> = store
        .outbox_after(&agency("ngo"), None, 10)
        .unwrap()
        .into_iter()
        .filter_map(|q| match q.payload {
            Payload::HitNotice(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].your_alert_id, theirs.to_string());
    assert_eq!(notices[0].our_alert_id, mine.to_string());

    // A newer version with the same token, or a notice about the same pair: no second hit.
    store
        .apply_received_batch(vec![with_token(record(&theirs, 2, "b2"), 7)])
        .await
        .unwrap();
    let notice = HitNotice {
        r#type: crate::proto::v1::IdentifierType::Phone as i32,
        your_alert_id: mine.to_string(),
        our_alert_id: theirs.to_string(),
        similarity: 1.0,
        ..Default::default()
    };
    assert_eq!(
        store.record_notice(&agency("ngo"), &notice).await.unwrap(),
        NoticeOutcome::Known
    );
    assert_eq!(store.hits_after(0, 10).unwrap().len(), 1);

    // A notice naming someone else's alert, or claiming another sender, is refused.
    let bad = HitNotice {
        your_alert_id: theirs.to_string(),
        ..notice.clone()
    };
    assert!(matches!(
        store.record_notice(&agency("ngo"), &bad).await.unwrap(),
        NoticeOutcome::Refused(_)
    ));
    assert!(matches!(
        store
            .record_notice(&agency("labour"), &notice)
            .await
            .unwrap(),
        NoticeOutcome::Refused(_)
    ));

    // After a tombstone the token no longer matches anything new.
    store
        .apply_received_batch(vec![record(&theirs, 3, "retracted")])
        .await
        .unwrap();
    let late = AlertId::generate(&agency("police"));
    store
        .write_local(&late, None, |_| {
            Ok::<_, ()>((with_token(record(&late, 1, "d"), 7), vec![]))
        })
        .await
        .unwrap();
    assert_eq!(store.hits_after(0, 10).unwrap().len(), 1);
}

/// A store records the release that last wrote it; a store a newer release
/// wrote is refused, naming both releases, and left as it was; one written
/// by an older release (or by 0.3.0, which recorded none) is taken and
/// moved forward.
#[tokio::test]
async fn a_store_a_newer_release_wrote_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
    assert_eq!(
        store.setting(RELEASE_SETTING).unwrap().as_deref(),
        Some(crate::release::RELEASE)
    );
    store.set_setting(RELEASE_SETTING, "99.0.0").await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let refused = Store::open(dir.path(), 8 << 20, scope()).err().unwrap();
    let text = refused.to_string();
    assert!(matches!(refused, StoreError::Newer { .. }), "{text}");
    assert!(
        text.contains("99.0.0") && text.contains(crate::release::RELEASE),
        "{text}"
    );
    // Refused twice: the refusal changed nothing.
    assert!(Store::open(dir.path(), 8 << 20, scope()).is_err());

    let older = tempfile::tempdir().unwrap();
    let store = Store::open(older.path(), 8 << 20, scope()).unwrap();
    store.set_setting(RELEASE_SETTING, "0.3.0").await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let store = Store::open(older.path(), 8 << 20, scope()).unwrap();
    assert_eq!(
        store.setting(RELEASE_SETTING).unwrap().as_deref(),
        Some(crate::release::RELEASE),
        "moved forward"
    );
}

/// A member's chunks of one release keep the total the first one named,
/// and its reports stop at the quota it was given: nothing of a refused
/// chunk is kept, and the counts are what was kept.
#[tokio::test]
async fn report_chunks_keep_their_total_and_their_quota() {
    use crate::proto::v1::{StatsReleaseRef, StatsReport, StatsReports};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
    let border = agency("border");
    let r = StatsReleaseRef {
        table: "victims".into(),
        period: "2026-Q3".into(),
        round: 1,
    };
    let chunk = |i: u32, of: u32, reports: usize| StatsReports {
        release: Some(r.clone()),
        chunk: i,
        chunks: of,
        reports: vec![StatsReport::default(); reports],
        ..Default::default()
    };
    let event = || {
        crate::audit::Event::new(
            "border",
            crate::audit::Action::StatsReportsReceive,
            "stored",
        )
    };
    let put = |c: StatsReports| {
        let store = &store;
        let border = &border;
        async move {
            store
                .stats_put_chunk(border, &c, 512, event())
                .await
                .unwrap()
        }
    };
    assert_eq!(put(chunk(0, 3, 256)).await, ChunkOutcome::Stored);
    assert_eq!(put(chunk(0, 3, 256)).await, ChunkOutcome::Duplicate);
    assert_eq!(
        put(chunk(1, 9, 1)).await,
        ChunkOutcome::ChunksChanged { said: 3 }
    );
    assert_eq!(
        put(chunk(1, 3, 257)).await,
        ChunkOutcome::OverQuota { held: 256 }
    );
    assert_eq!(put(chunk(1, 3, 256)).await, ChunkOutcome::Stored);
    assert_eq!(
        put(chunk(2, 3, 1)).await,
        ChunkOutcome::OverQuota { held: 512 }
    );
    let counts = store.stats_chunk_counts(&r).unwrap();
    assert_eq!(counts[&border], (2, 3));
    assert_eq!(store.stats_reports(&r, &border).unwrap().len(), 512);
}

/// A public report past its retention goes with everything that finds it:
/// its record, its receipt's index entry, its place in the inbox and in
/// the open count; one before its time stays.
#[tokio::test]
async fn a_public_report_past_its_retention_is_purged_whole() {
    use crate::proto::v1::{IntakeReportRecord, IntakeState};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
    let report = |id: &str, until: i64, hash: u8| IntakeReportRecord {
        id: id.into(),
        received_hour: 3_600,
        what: "workers locked in".into(),
        state: IntakeState::New as i32,
        retain_until: until,
        receipt_hash: vec![hash; 32],
        ..Default::default()
    };
    let event =
        || crate::audit::Event::new("reporter", crate::audit::Action::IntakeReport, "stored");
    for (id, until, hash) in [("old", 1_000, 1), ("new", 9_000, 2)] {
        let outcome = store
            .intake_submit(&report(id, until, hash), 10, event())
            .await
            .unwrap();
        assert_eq!(outcome, Submitted::Stored);
    }
    assert_eq!(store.intake_open().unwrap(), 2);
    assert_eq!(store.intake_purge_due(5_000).await.unwrap(), 1);
    assert_eq!(store.intake_report("old").unwrap(), None);
    assert_eq!(store.intake_by_receipt(&[1; 32]).unwrap(), None);
    assert_eq!(
        store.intake_by_receipt(&[2; 32]).unwrap().unwrap().id,
        "new"
    );
    assert_eq!(store.intake_open().unwrap(), 1);
    let (listed, more) = store.intake_list(IntakeState::New, None, 10).unwrap();
    assert_eq!(more, None);
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["new"]
    );
    assert_eq!(store.intake_purge_due(5_000).await.unwrap(), 0);
    // The queue's bound holds: one open of a bound of one is full.
    let full = store
        .intake_submit(&report("more", 9_000, 3), 1, event())
        .await
        .unwrap();
    assert_eq!(full, Submitted::Full);
    // A receipt another report holds is never given twice.
    let twin = report("twin", 9_000, 2);
    let taken = store.intake_submit(&twin, 10, event()).await.unwrap();
    assert_eq!(taken, Submitted::ReceiptTaken);
    assert_eq!(
        store.intake_by_receipt(&[2; 32]).unwrap().unwrap().id,
        "new"
    );
}

/// The inbox's tabs: each state's reports newest first, page after page
/// from a cursor, counted as they move; a reindex (after a restore)
/// finds the same.
#[tokio::test]
async fn the_report_inbox_pages_each_state_and_counts_it() {
    use crate::proto::v1::{IntakeReportRecord, IntakeState};
    use crate::store::IntakeCounts;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20, scope()).unwrap();
    let event =
        || crate::audit::Event::new("reporter", crate::audit::Action::IntakeReport, "stored");
    for i in 0..5u8 {
        let rec = IntakeReportRecord {
            id: format!("r{i}"),
            received_hour: 3_600 * i64::from(i + 1),
            state: IntakeState::New as i32,
            retain_until: 1_000_000,
            receipt_hash: vec![i; 32],
            ..Default::default()
        };
        store.intake_submit(&rec, 100, event()).await.unwrap();
    }
    for (id, state) in [("r1", IntakeState::Waiting), ("r3", IntakeState::Closed)] {
        store
            .intake_update(
                id,
                |mut rec| {
                    rec.state = state as i32;
                    Some(rec)
                },
                Vec::new,
            )
            .await
            .unwrap();
    }
    let counts = IntakeCounts {
        new: 3,
        waiting: 1,
        closed: 1,
    };
    assert_eq!(store.intake_counts().unwrap(), counts);
    assert_eq!(store.intake_open().unwrap(), 4);
    let ids = |recs: &[IntakeReportRecord]| recs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let (first, cursor) = store.intake_list(IntakeState::New, None, 2).unwrap();
    assert_eq!(ids(&first), ["r4", "r2"]);
    let (rest, end) = store
        .intake_list(IntakeState::New, cursor.as_ref(), 2)
        .unwrap();
    assert_eq!(ids(&rest), ["r0"]);
    assert_eq!(end, None);
    let token = crate::store::IntakeCursor::of(&first[1]).encode();
    let again = crate::store::IntakeCursor::decode(&token).unwrap();
    assert_eq!(
        ids(&store
            .intake_list(IntakeState::New, Some(&again), 9)
            .unwrap()
            .0),
        ["r0"]
    );
    assert_eq!(crate::store::IntakeCursor::decode("not a cursor!"), None);
    assert_eq!(store.intake_reindex().unwrap(), 5);
    assert!(
        !store.intake_resume_reindex().unwrap(),
        "a rebuild that ended"
    );
    // A rebuild cut short (its mark set, a receipt's entry gone) is run
    // again at the next open.
    let mut receipt_key = vec![b'k', 0];
    receipt_key.extend_from_slice(&[1; 32]);
    store
        .write(|w| {
            w.tx.insert(w.t.intake_meta, b"reindexing", [])?;
            w.tx.remove(w.t.intake_index, &receipt_key)?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(store.intake_by_receipt(&[1; 32]).unwrap(), None);
    assert!(store.intake_resume_reindex().unwrap());
    assert_eq!(store.intake_by_receipt(&[1; 32]).unwrap().unwrap().id, "r1");
    assert_eq!(store.intake_counts().unwrap(), counts);
    assert_eq!(
        ids(&store.intake_list(IntakeState::Closed, None, 9).unwrap().0),
        ["r3"]
    );
    assert_eq!(store.intake_by_receipt(&[1; 32]).unwrap().unwrap().id, "r1");
}
