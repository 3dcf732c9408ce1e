//! The audit log on real nodes: every client and peer RPC leaves exactly one
//! entry with its actor, outcome and purpose; shares and receipts are logged
//! on both sides; `audit verify` passes on the untouched log and names the
//! first bad entry after an edit, a deletion, a swap and a truncation, of
//! the store and of an export.

mod common;

use std::path::{Path, PathBuf};

use casebridge::client::{NodeClient, Purpose};
use casebridge::proto::v1::{
    AlertFilter, AuditEntry, BackupStoreRequest, DiffPolicyRequest, ExplainPolicyRequest,
    GetAlertRequest, ListAlertsRequest, ListPeersRequest, LookupRequest, PeerLookupRequest,
    QueryAuditRequest, ReshareRequest, RetractAlertRequest, RetractFromPeerRequest,
    SetPolicyRequest, SubmitAlertRequest, UpdateAlertRequest, WatchHitsRequest,
};
use casebridge::store::engine::{Db, EngineError, Options, Reads, Tree, Tx};
use common::*;
use tonic::Code;

/// The one entry `action` by `actor` after `after`; fails on none or several.
async fn only(
    admin: &mut NodeClient,
    after: u64,
    action: &str,
    actor: &str,
    outcome: &str,
) -> AuditEntry {
    let found: Vec<AuditEntry> = audit_after(admin, after)
        .await
        .into_iter()
        .filter(|e| e.action == action && e.actor == actor)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one `{action}` by `{actor}` after entry {after}: {found:#?}"
    );
    let e = found.into_iter().next().unwrap();
    assert_eq!(e.outcome, outcome, "{e:#?}");
    e
}

/// The sequence numbers of every `action` entry, read one a page.
async fn audit_pages(admin: &mut NodeClient, action: &str, newest_first: bool) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let page = admin
            .admin
            .query_audit(QueryAuditRequest {
                action: action.into(),
                page_size: 1,
                page_token: token,
                newest_first,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.entries.iter().map(|e| e.sequence));
        if page.next_page_token.is_empty() {
            return seen;
        }
        token = page.next_page_token;
    }
    panic!("more than 1000 pages")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_leaves_one_entry_and_tampering_is_found() {
    let mut fed = TestFederation::start(&["police", "ngo"]).await;
    // Case references come in every script.
    let purpose = "Zaak 2026/0117 – Rotterdam; справа №17";
    assert!(
        Purpose::new("line one\nline two").is_err(),
        "control characters refused"
    );
    let mut cms = fed
        .client("police", "cms")
        .await
        .purpose(Purpose::new(purpose).unwrap());
    let mut analyst = fed.client("police", "analyst").await;
    let mut admin = fed.client("police", "admin").await;
    let cms_actor = "client:cms";

    // --- client API -------------------------------------------------------
    let t = audit_head(&mut admin).await;
    // The narrative, phone, name, birth date and city of this draft must
    // never appear in either node's log (checked below, over every entry).
    let narrative = "narrative-marker-7Q2";
    let alert = submit(&mut cms, narrative).await;
    let e = only(&mut admin, t, "alert.submit", cms_actor, "OK").await;
    assert_eq!(e.objects, vec![alert.id.clone()]);
    assert_eq!(e.purpose, purpose);
    assert_eq!(e.detail["version"], "1");
    assert!(e.detail.contains_key("remote"), "{e:#?}");

    let t = audit_head(&mut admin).await;
    let err = cms
        .alerts
        .submit_alert(SubmitAlertRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let e = only(&mut admin, t, "alert.submit", cms_actor, "INVALID_ARGUMENT").await;
    assert_eq!(e.detail["fields"], "draft");

    let t = audit_head(&mut admin).await;
    let err = analyst
        .alerts
        .submit_alert(SubmitAlertRequest {
            draft: Some(sample_draft("not allowed")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    only(
        &mut admin,
        t,
        "alert.submit",
        "client:analyst",
        "PERMISSION_DENIED",
    )
    .await;

    let t = audit_head(&mut admin).await;
    cms.alerts
        .update_alert(UpdateAlertRequest {
            id: alert.id.clone(),
            expected_version: 1,
            draft: Some(sample_draft("audited, v2")),
        })
        .await
        .unwrap();
    let e = only(&mut admin, t, "alert.update", cms_actor, "OK").await;
    assert_eq!(
        (e.objects.clone(), e.detail["version"].as_str()),
        (vec![alert.id.clone()], "2")
    );

    let t = audit_head(&mut admin).await;
    cms.alerts
        .get_alert(GetAlertRequest {
            id: alert.id.clone(),
        })
        .await
        .unwrap();
    let e = only(&mut admin, t, "alert.get", cms_actor, "OK").await;
    assert_eq!(e.objects, vec![alert.id.clone()]);

    let t = audit_head(&mut admin).await;
    let missing = "police:01900000-0000-7000-8000-000000000000";
    let err = cms
        .alerts
        .get_alert(GetAlertRequest { id: missing.into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let e = only(&mut admin, t, "alert.get", cms_actor, "NOT_FOUND").await;
    assert_eq!(e.objects, vec![missing.to_string()]);

    let t = audit_head(&mut admin).await;
    cms.alerts
        .list_alerts(ListAlertsRequest::default())
        .await
        .unwrap();
    let e = only(&mut admin, t, "alert.list", cms_actor, "OK").await;
    assert!(e.objects.contains(&alert.id), "a list names what it showed");

    let t = audit_head(&mut admin).await;
    cms.alerts
        .lookup(LookupRequest {
            identifiers: vec![phone_id("+31 6 12345678", "NL")],
            ..Default::default()
        })
        .await
        .unwrap();
    only(&mut admin, t, "lookup.ask", cms_actor, "OK").await;

    let t = audit_head(&mut admin).await;
    let mut hits = cms
        .alerts
        .watch_hits(WatchHitsRequest {
            after_sequence: 0,
            backlog_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    while hits.message().await.unwrap().is_some() {}
    only(&mut admin, t, "hits.watch", cms_actor, "OK").await;

    // A purpose the node cannot take is refused, and the refusal is logged.
    let t = audit_head(&mut admin).await;
    let mut req = tonic::Request::new(GetAlertRequest {
        id: alert.id.clone(),
    });
    req.metadata_mut().insert(
        casebridge::audit::PURPOSE_HEADER,
        "x".repeat(300).parse().unwrap(),
    );
    let err = analyst.alerts.get_alert(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let e = only(
        &mut admin,
        t,
        "alert.get",
        "client:analyst",
        "INVALID_ARGUMENT",
    )
    .await;
    assert_eq!(e.detail["fields"], casebridge::audit::PURPOSE_HEADER);
    // Text in another script in the plain header (as UTF-8 bytes, which
    // HTTP/2 lets through) is refused with the header to use instead; the
    // binary header is named when it is the broken one.
    let mut req = tonic::Request::new(GetAlertRequest {
        id: alert.id.clone(),
    });
    req.metadata_mut().insert(
        casebridge::audit::PURPOSE_HEADER,
        tonic::metadata::AsciiMetadataValue::try_from("Zaak – 17".as_bytes()).unwrap(),
    );
    let err = analyst.alerts.get_alert(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains(casebridge::audit::PURPOSE_HEADER)
            && err.message().contains("x-casebridge-purpose-bin"),
        "{err:?}"
    );
    let mut req = tonic::Request::new(GetAlertRequest {
        id: alert.id.clone(),
    });
    req.metadata_mut().insert_bin(
        casebridge::audit::PURPOSE_BIN_HEADER,
        tonic::metadata::BinaryMetadataValue::from_bytes(&[0xff, 0xfe]),
    );
    let err = analyst.alerts.get_alert(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("x-casebridge-purpose-bin: must be UTF-8"),
        "{err:?}"
    );

    // --- admin API ----------------------------------------------------------
    let a = "client:admin";
    let t = audit_head(&mut admin).await;
    node_status(&mut admin).await;
    only(&mut admin, t, "admin.status", a, "OK").await;
    let t = audit_head(&mut admin).await;
    admin.admin.list_peers(ListPeersRequest {}).await.unwrap();
    only(&mut admin, t, "admin.peers", a, "OK").await;
    let t = audit_head(&mut admin).await;
    let policy = node_policy(&mut admin).await;
    only(&mut admin, t, "policy.get", a, "OK").await;
    let t = audit_head(&mut admin).await;
    let err = admin
        .admin
        .set_policy(SetPolicyRequest {
            policy_text: "[[rules]]\nname = 1\n".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    only(&mut admin, t, "policy.set", a, "INVALID_ARGUMENT").await;
    let t = audit_head(&mut admin).await;
    admin
        .admin
        .explain_policy(ExplainPolicyRequest {
            alert_id: alert.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let e = only(&mut admin, t, "policy.explain", a, "OK").await;
    assert_eq!(e.objects, vec![alert.id.clone()]);
    let t = audit_head(&mut admin).await;
    admin
        .admin
        .diff_policy(DiffPolicyRequest {
            new_policy_text: policy.text.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    only(&mut admin, t, "policy.diff", a, "OK").await;
    let t = audit_head(&mut admin).await;
    admin
        .admin
        .reshare(ReshareRequest {
            peer: "ngo".into(),
            filter: Some(AlertFilter::default()),
            dry_run: true,
        })
        .await
        .unwrap();
    let e = only(&mut admin, t, "policy.reshare", a, "OK").await;
    assert_eq!(
        (e.detail["peer"].as_str(), e.detail["dry_run"].as_str()),
        ("ngo", "true")
    );
    let t = audit_head(&mut admin).await;
    admin
        .admin
        .retract_from_peer(RetractFromPeerRequest {
            peer: "ngo".into(),
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap();
    only(&mut admin, t, "policy.retract_from_peer", a, "OK").await;
    let t = audit_head(&mut admin).await;
    admin
        .admin
        .backup_store(BackupStoreRequest {
            label: "audit-test".into(),
        })
        .await
        .unwrap();
    only(&mut admin, t, "store.backup", a, "OK").await;
    let t = audit_head(&mut admin).await;
    admin
        .admin
        .query_audit(QueryAuditRequest {
            action: "alert.get".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // (This test's own reads are queries too: pick the one with the filter.)
    let queries: Vec<AuditEntry> = audit_after(&mut admin, t)
        .await
        .into_iter()
        .filter(|e| {
            e.action == "audit.query"
                && e.detail.get("action").map(String::as_str) == Some("alert.get")
        })
        .collect();
    assert_eq!(queries.len(), 1, "{queries:#?}");
    assert_eq!(
        (queries[0].actor.as_str(), queries[0].outcome.as_str()),
        (a, "OK")
    );
    // Newest first, page by page, is the same entries backwards.
    let oldest_first: Vec<u64> = audit_pages(&mut admin, "alert.get", false).await;
    let mut newest_first: Vec<u64> = audit_pages(&mut admin, "alert.get", true).await;
    assert!(oldest_first.len() >= 2, "{oldest_first:?}");
    newest_first.reverse();
    assert_eq!(newest_first, oldest_first);
    let err = admin
        .admin
        .query_audit(QueryAuditRequest {
            action: "alert.delete".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "unknown actions are refused"
    );

    // --- peer API, called by ngo's node ---------------------------------------
    let mut peer = fed.peer_client("ngo", "police").await;
    let t = audit_head(&mut admin).await;
    peer.hello(hello_as("ngo")).await.unwrap();
    only(&mut admin, t, "peer.hello", "peer:ngo", "OK").await;
    let t = audit_head(&mut admin).await;
    peer.lookup(PeerLookupRequest::default()).await.unwrap();
    only(&mut admin, t, "peer.lookup", "peer:ngo", "OK").await;
    let t = audit_head(&mut admin).await;
    let mut acks = deliver_stream(&mut peer, vec![]).await.unwrap();
    while acks.message().await.unwrap().is_some() {}
    let e = eventually("the delivery stream's entry", || {
        let mut admin = admin.clone();
        async move {
            audit_after(&mut admin, t)
                .await
                .into_iter()
                .find(|e| e.action == "peer.deliver")
        }
    })
    .await;
    assert_eq!((e.actor.as_str(), e.outcome.as_str()), ("peer:ngo", "OK"));
    assert_eq!(e.detail["envelopes"], "0");

    // --- the exchange, on both sides ------------------------------------------
    let share = eventually("police logs the share to ngo", || {
        let mut admin = admin.clone();
        let id = alert.id.clone();
        async move {
            audit_after(&mut admin, 0).await.into_iter().find(|e| {
                e.action == "alert.share" && e.objects == [id.clone()] && e.detail["version"] == "1"
            })
        }
    })
    .await;
    assert_eq!(share.actor, "node");
    assert_eq!(share.outcome, "stored");
    assert_eq!(share.detail["peer"], "ngo");
    assert!(!share.detail["rule"].is_empty(), "{share:#?}");
    assert!(share.detail["disclosed"].contains("phone="), "{share:#?}");
    let mut ngo_admin = fed.client("ngo", "admin").await;
    let received = eventually("ngo logs the receipt", || {
        let mut admin = ngo_admin.clone();
        let id = alert.id.clone();
        async move {
            audit_after(&mut admin, 0)
                .await
                .into_iter()
                .find(|e| e.action == "alert.receive" && e.objects == [id.clone()])
        }
    })
    .await;
    assert_eq!(
        (received.actor.as_str(), received.outcome.as_str()),
        ("peer:police", "stored")
    );

    // Nothing of the alert's content or subjects is in either log.
    let secrets = [
        narrative,
        "+31655550101",
        "5555 0101",
        "Maria",
        "Ionescu",
        "1991-04-02",
        "Westland",
    ];
    for (node, admin) in [("police", &mut admin), ("ngo", &mut ngo_admin)] {
        let entries = audit_after(admin, 0).await;
        assert!(
            entries.iter().any(|e| e.objects.contains(&alert.id)),
            "{node}'s log names the alert"
        );
        for e in &entries {
            for s in secrets {
                assert!(!e.body.contains(s), "{node} logged `{s}`: {}", e.body);
            }
        }
    }

    // Retracting last, so the tombstone is logged too.
    let t = audit_head(&mut admin).await;
    cms.alerts
        .retract_alert(RetractAlertRequest {
            id: alert.id.clone(),
            expected_version: 2,
            reason: "closed".into(),
        })
        .await
        .unwrap();
    only(&mut admin, t, "alert.retract", cms_actor, "OK").await;

    // --- an export verifies, and an edited export does not ----------------------
    let export = fed.dir.path().join("audit.jsonl");
    let admin_toml = fed.layout.agencies[&agency("police")]
        .client_config("admin")
        .to_owned();
    let public = fed.pki("police").join("audit-signing.key.pub");
    let (code, _, err) = cli(&[
        "--client-config",
        path(&admin_toml),
        "audit",
        "export",
        "--since",
        "2000-01-01T00:00:00Z",
        "--out",
        path(&export),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&[
        "audit",
        "verify",
        "--file",
        path(&export),
        "--public-key",
        path(&public),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact"), "{out}");
    let text = std::fs::read_to_string(&export).unwrap();
    let edited = text.replacen("\"outcome\":\"PERMISSION_DENIED\"", "\"outcome\":\"OK\"", 1);
    assert_ne!(edited, text);
    let denied_seq = text
        .lines()
        .find(|l| l.contains("PERMISSION_DENIED"))
        .and_then(|l| l.split("\"seq\":").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap()
        .to_owned();
    std::fs::write(&export, edited).unwrap();
    let (code, _, err) = cli(&[
        "audit",
        "verify",
        "--file",
        path(&export),
        "--public-key",
        path(&public),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("broken at entry {denied_seq}:")),
        "names the edited entry {denied_seq}: {err}"
    );

    // --- the store: untouched, then edited, deleted, swapped, truncated -----------
    let store_dir = fed.config("police").store.dir;
    fed.stop_node("police").await;
    let node_toml = fed.layout.agencies[&agency("police")].node_config.clone();
    let (code, out, err) = cli(&["audit", "verify", "--config", path(&node_toml)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("0 entries after it unsigned"),
        "a clean stop signs the end: {out}"
    );
    // "… entries (1 to 81) …": the range in words, no Rust syntax.
    assert!(!out.contains("..="), "{out}");
    let last: u64 = out
        .split(" to ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(last > 40, "{out}");

    // Each case edits a copy of the store through the storage interface,
    // as someone with write access to the files could.
    let tamper = |name: &str, change: &dyn Fn(&mut Tx<'_>, Tree)| -> PathBuf {
        let copy = fed.dir.path().join(name);
        casebridge::store::copy_store(&store_dir, &copy).unwrap();
        let db = Db::open(&copy, &Options::default()).unwrap();
        let audit = db.tree("audit").unwrap();
        db.transaction(|tx| {
            change(tx, audit);
            Ok::<_, EngineError>(())
        })
        .unwrap();
        db.sync().unwrap();
        copy
    };
    let key = |seq: u64| seq.to_be_bytes();
    let cases: Vec<(&str, PathBuf, u64)> = vec![
        (
            "edit",
            tamper("edited", &|tx, t| {
                let v = tx.get(t, key(5)).unwrap().unwrap();
                let s =
                    String::from_utf8_lossy(&v[32..]).replace("\"outcome\":\"", "\"outcome\":\"X");
                let mut nv = v[..32].to_vec();
                nv.extend_from_slice(s.as_bytes());
                assert_ne!(nv, v);
                tx.insert(t, key(5), nv).unwrap();
            }),
            5,
        ),
        (
            "delete",
            tamper("deleted", &|tx, t| {
                assert!(tx.get(t, key(12)).unwrap().is_some());
                tx.remove(t, key(12)).unwrap();
            }),
            12,
        ),
        (
            "swap",
            tamper("swapped", &|tx, t| {
                let a = tx.get(t, key(20)).unwrap().unwrap();
                let b = tx.get(t, key(21)).unwrap().unwrap();
                tx.insert(t, key(20), b).unwrap();
                tx.insert(t, key(21), a).unwrap();
            }),
            20,
        ),
        (
            "truncate",
            tamper("truncated", &|tx, t| {
                for seq in last - 2..=last {
                    assert!(tx.get(t, key(seq)).unwrap().is_some());
                    tx.remove(t, key(seq)).unwrap();
                }
            }),
            last - 2,
        ),
    ];
    for (what, dir, bad) in cases {
        let (code, out, err) = cli(&[
            "audit",
            "verify",
            "--data-dir",
            path(&dir),
            "--public-key",
            path(&public),
        ]);
        assert_eq!(code, 1, "{what}: {out}{err}");
        assert!(
            err.contains(&format!("broken at entry {bad}:")),
            "{what} names entry {bad}: {err}"
        );
    }
    // And the untouched original still verifies (the copies changed nothing).
    let (code, _, err) = cli(&[
        "audit",
        "verify",
        "--data-dir",
        path(&store_dir),
        "--public-key",
        path(&public),
    ]);
    assert_eq!(code, 0, "{err}");
    fed.shutdown().await;
}

/// Retention: pruning removes old entries (never the head), records itself
/// in the chain with where it cut, and what is left verifies, also after a
/// reopen; a second prune with nothing due removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_is_recorded_and_the_rest_still_verifies() {
    use casebridge::audit::signing::{SigningKey, sign_checkpoint};
    use casebridge::audit::{Action, Event};
    use casebridge::matching::MatchScope;
    use casebridge::store::Store;
    use casebridge::time::now_ms;

    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::create(&dir.path().join("audit.key")).unwrap();
    let open = || {
        let scope = MatchScope {
            own: agency("police"),
            peers: Default::default(),
            band: Default::default(),
        };
        Store::open(&dir.path().join("store"), 8 << 20, scope).unwrap()
    };
    let store = open();
    for i in 1..=30u64 {
        store
            .audit_append([Event::new("client:cms", Action::AlertGet, "OK").detail("i", i)])
            .unwrap();
        if i % 10 == 0 {
            let (seq, hash) = store.audit_head();
            store
                .audit_put_checkpoint(&sign_checkpoint(&key, seq, hash, now_ms()))
                .unwrap();
        }
    }
    assert_eq!(
        store.audit_prune(now_ms() - 3_600_000).unwrap(),
        0,
        "nothing is an hour old"
    );
    // Everything is older than a second from now; the head stays.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(store.audit_prune(now_ms() + 1_000).unwrap(), 29);
    let summary = store.audit_verify(&key.public(), &[]).unwrap();
    assert_eq!((summary.first, summary.last, summary.entries), (30, 31, 2));
    assert_eq!(summary.checkpoints, 1, "the checkpoint at 30 remains");
    let entries: Vec<_> = store
        .audit_entries(0)
        .map(|r| r.unwrap().entry().unwrap())
        .collect();
    let prune = &entries[1].event;
    assert_eq!(prune.action, Action::AuditPrune);
    assert_eq!(prune.detail["through_seq"], "29");
    assert_eq!(prune.detail["entries"], "29");
    store.close().await.unwrap();
    drop(store);
    let store = open();
    assert_eq!(store.audit_verify(&key.public(), &[]).unwrap().last, 31);
    store
        .audit_append([Event::new("node", Action::NodeStart, "OK")])
        .unwrap();
    assert_eq!(
        store.audit_head().0,
        32,
        "numbering goes on after a prune and a reopen"
    );
    store.close().await.unwrap();
}

/// Someone with the store files cuts the log's tail *and* deletes the
/// checkpoints that would show it: the node's own log then looks whole, but
/// a peer holds the node's checkpoint from its last Hello, and verifying
/// against that peer's export names the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_hidden_by_deleting_checkpoints_is_caught_by_a_peers_copy() {
    let mut fed = TestFederation::start_with(&["police", "ngo"], &[], |a, cfg| {
        if a.as_str() == "police" {
            cfg.audit.checkpoint_interval_secs = casebridge::config::Bounded::new(1);
        }
    })
    .await;
    let mut cms = fed.client("police", "cms").await;
    submit(&mut cms, "first").await;
    let police = fed.node("police").core().clone();
    eventually("police signs a checkpoint", || {
        std::future::ready(police.store.audit_latest_checkpoint().unwrap())
    })
    .await;
    drop(police);
    // A new delivery session (ngo restarted) says Hello with it.
    fed.stop_node("ngo").await;
    fed.start_node("ngo").await;
    submit(&mut cms, "second").await;
    let mut ngo_admin = fed.client("ngo", "admin").await;
    let anchor_seq: u64 = eventually("ngo holds police's checkpoint", || {
        let mut admin = ngo_admin.clone();
        async move {
            audit_after(&mut admin, 0)
                .await
                .into_iter()
                .filter(|e| e.action == "peer.hello" && e.actor == "peer:police")
                .find_map(|e| e.detail.get("anchor_seq").and_then(|s| s.parse().ok()))
        }
    })
    .await;
    let _ = audit_head(&mut ngo_admin).await;
    let ngo_export = fed.dir.path().join("ngo.jsonl");
    let ngo_toml = fed.layout.agencies[&agency("ngo")]
        .client_config("admin")
        .to_owned();
    let (code, _, err) = cli(&[
        "--client-config",
        path(&ngo_toml),
        "audit",
        "export",
        "--since",
        "2000-01-01T00:00:00Z",
        "--out",
        path(&ngo_export),
    ]);
    assert_eq!(code, 0, "{err}");

    let store_dir = fed.config("police").store.dir;
    fed.stop_node("police").await;
    let cut = fed.dir.path().join("cut");
    casebridge::store::copy_store(&store_dir, &cut).unwrap();
    {
        let db = Db::open(&cut, &Options::default()).unwrap();
        let entries = db.tree("audit").unwrap();
        let checkpoints = db.tree("audit_checkpoints").unwrap();
        let doomed: Vec<Vec<u8>> = db
            .range(entries, anchor_seq.to_be_bytes()..)
            .map(|r| r.unwrap().0)
            .collect();
        assert!(!doomed.is_empty());
        let all_checkpoints: Vec<Vec<u8>> = db
            .range::<&[u8]>(checkpoints, ..)
            .map(|r| r.unwrap().0)
            .collect();
        db.transaction(|tx| {
            for k in &doomed {
                tx.remove(entries, k)?;
            }
            for k in &all_checkpoints {
                tx.remove(checkpoints, k)?;
            }
            Ok::<_, EngineError>(())
        })
        .unwrap();
        db.sync().unwrap();
    }
    let public = fed.pki("police").join("audit-signing.key.pub");
    let verify = |dir: &Path, anchors: bool| {
        let mut args = vec![
            "audit",
            "verify",
            "--data-dir",
            path(dir),
            "--public-key",
            path(&public),
        ];
        if anchors {
            args.extend(["--anchors", path(&ngo_export)]);
        }
        cli(&args)
    };
    let (code, out, err) = verify(&cut, false);
    assert_eq!(code, 0, "alone, the cut log looks whole: {out}{err}");
    let (code, out, err) = verify(&cut, true);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("broken at entry {anchor_seq}:")) && err.contains("truncated"),
        "{err}"
    );
    let (code, out, err) = verify(&store_dir, true);
    assert_eq!(
        code, 0,
        "the untouched log agrees with ngo's copy: {out}{err}"
    );
    assert!(out.contains("of this node found in the anchors"), "{out}");
    fed.shutdown().await;
}
