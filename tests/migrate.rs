//! `casebridge store migrate`: stores written by the previous code (sled
//! 0.34, commit 2fe42d1; the fixture and how it was made are in
//! `tests/fixtures/sled-store/`) become stores of the current engine with
//! everything in them, and the federation carries on from there.
//!
//! - Every tree of both stores is carried over byte for byte, the old
//!   directories are left as they were, and both audit chains verify.
//! - A node refuses to start on a sled directory and names the command; the
//!   command refuses a target that exists and a source that is not sled.
//! - Started on the migrated stores, the nodes deliver what was still
//!   queued, redo the matching a crash had interrupted (a `match_pending`
//!   mark of the old two-phase matching, made here on the old store), and
//!   give new sequence numbers after the old ones.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};

use casebridge::client::NodeClient;
use casebridge::proto::v1::{GetAlertRequest, Hit, ListAlertsRequest, SubmitAlertRequest};
use casebridge::store::engine::{Db, Options};
use common::fixture::unpack_fixture;
use common::process::{NodeProcess, connect_when_up};
use common::*;
use prost::Message;

type Trees = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sled-store/fed.tar.gz"
);

/// Every tree of a sled database, entry by entry.
fn sled_trees(dir: &Path) -> (Trees, u64) {
    let db = sled::Config::new().path(dir).open().unwrap();
    let mut trees = Trees::new();
    for name in db.tree_names() {
        let name = String::from_utf8(name.to_vec()).unwrap();
        if name == "__sled__default" {
            continue;
        }
        let tree = db.open_tree(&name).unwrap();
        let entries = tree
            .iter()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect();
        trees.insert(name, entries);
    }
    // Reading the id does not consume one that matters: the migration
    // continues after whatever sled hands out next.
    let next_id = db.generate_id().unwrap();
    (trees, next_id)
}

/// Every tree of a migrated store, entry by entry.
fn new_trees(dir: &Path) -> Trees {
    let db = Db::open(dir, &Options::default()).unwrap();
    db.tree_names()
        .into_iter()
        .map(|name| {
            let tree = db.tree(&name).unwrap();
            let entries = db.range::<&[u8]>(tree, ..).map(Result::unwrap).collect();
            (name, entries)
        })
        .collect()
}

/// Makes the old store look as if the node crashed between writing `alert`
/// and its matching pass (the sled store's two phases): its hits are gone
/// and its pending mark is set. Returns the alerts its hits named.
fn interrupt_matching(dir: &Path) -> (String, BTreeSet<String>) {
    let db = sled::Config::new().path(dir).open().unwrap();
    let (hits, hit_keys, pending) = (
        db.open_tree("hits").unwrap(),
        db.open_tree("hit_keys").unwrap(),
        db.open_tree("match_pending").unwrap(),
    );
    let all: Vec<(Vec<u8>, Hit)> = hits
        .iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), Hit::decode(v.as_ref()).unwrap())
        })
        .collect();
    let first = &all.first().expect("the fixture holds hits").1;
    let alert = first.local_alert_id.clone();
    let mut others = BTreeSet::new();
    for (k, hit) in &all {
        if hit.local_alert_id == alert {
            hits.remove(k).unwrap();
            let key = format!(
                "{}\0{}\0{}",
                hit.local_alert_id, hit.other_alert_id, hit.r#type
            );
            assert!(hit_keys.remove(key.as_bytes()).unwrap().is_some());
            others.insert(hit.other_alert_id.clone());
        }
    }
    pending.insert(alert.as_bytes(), &[]).unwrap();
    db.flush().unwrap();
    (alert, others)
}

fn migrate(from: &Path, to: &Path) -> (i32, String, String) {
    cli(&["store", "migrate", "--from", path(from), "--to", path(to)])
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn submit(c: &mut NodeClient, narrative: &str) -> String {
    c.alerts
        .submit_alert(SubmitAlertRequest {
            draft: Some(sample_draft(narrative)),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner()
        .id
}

/// Waits until the node of `client` holds alert `id`.
async fn arrives(client: &NodeClient, id: &str, what: &str) {
    eventually(&format!("{what} to arrive"), || {
        let (mut c, id) = (client.clone(), id.to_owned());
        async move {
            c.alerts
                .get_alert(GetAlertRequest { id })
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_store_migrates_with_everything_and_the_federation_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let fed = unpack_fixture(FIXTURE, tmp.path());
    let (police, ngo) = (fed.join("police"), fed.join("ngo"));
    let (interrupted, its_hits) = interrupt_matching(&police.join("data"));

    // A node on the old directory refuses to start and says what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .args(["node", "run", "--config"])
        .arg(police.join("node.toml"))
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("store migrate --from") && err.contains("sled"),
        "{err}"
    );

    let mut before = BTreeMap::new();
    for node in [&police, &ngo] {
        let (old, new) = (node.join("data.sled"), node.join("data"));
        std::fs::rename(&new, &old).unwrap();
        let (trees, next_id) = sled_trees(&old);
        let (code, out, err) = migrate(&old, &new);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("sequence numbers continue at"), "{out}");

        // Every tree, byte for byte; the counters continue after sled's ids.
        let mut migrated = new_trees(&new);
        let counters = migrated.remove("counters").unwrap();
        assert_eq!(counters.len(), 8, "{counters:?}"); // every store::Counter
        for (_, v) in &counters {
            let last = u64::from_be_bytes(v.as_slice().try_into().unwrap());
            assert!(
                last > next_id,
                "counter {last} not after sled's id {next_id}"
            );
        }
        let non_empty = |t: &Trees| -> Trees {
            t.iter()
                .filter(|(_, e)| !e.is_empty())
                .map(|(n, e)| (n.clone(), e.clone()))
                .collect()
        };
        assert_eq!(non_empty(&migrated), non_empty(&trees));
        for tree in [
            "alerts", "outbox", "tokens", "fuzzy", "hits", "audit", "policies",
        ] {
            if node == &police || tree != "outbox" {
                assert!(
                    !trees.get(tree).is_none_or(Vec::is_empty),
                    "the fixture's {} store has no {tree}",
                    node.display()
                );
            }
        }
        // The old store is kept as it was.
        assert_eq!(sled_trees(&old).0, trees);
        before.insert(node.clone(), trees);

        // The audit chain verifies with the node's own key.
        let (code, out, err) = cli(&["audit", "verify", "--config", path(&node.join("node.toml"))]);
        assert_eq!(code, 0, "{out}{err}");
    }

    // Refusals: an existing target, a source that is not sled.
    let (code, _, err) = migrate(&police.join("data.sled"), &police.join("data"));
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = migrate(&police.join("data"), &tmp.path().join("x"));
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("already in the current format"), "{err}");
    assert!(!tmp.path().join("x").exists());

    // The federation carries on from the migrated stores.
    let police_old = &before[&police];
    let queued: Vec<casebridge::proto::v1::Envelope> = police_old["outbox"]
        .iter()
        .map(|(_, v)| casebridge::proto::v1::Envelope::decode(v.as_slice()).unwrap())
        .collect();
    assert!(!queued.is_empty(), "the fixture queued something for ngo");
    let old_max_hit = police_old["hits"]
        .iter()
        .map(|(k, _)| u64::from_be_bytes(k.as_slice().try_into().unwrap()))
        .max()
        .unwrap_or(0);
    let ngo_node = NodeProcess::spawn(&ngo.join("node.toml"), "warn", Stdio::inherit());
    let police_node = NodeProcess::spawn(&police.join("node.toml"), "warn", Stdio::inherit());
    let mut police_cms = connect_when_up(&police.join("client.toml")).await;
    let ngo_cms = connect_when_up(&ngo.join("client.toml")).await;
    for env in &queued {
        let Some(casebridge::proto::v1::envelope::Payload::Alert(a)) = &env.payload else {
            continue;
        };
        arrives(&ngo_cms, &a.id, "the alert queued before the migration").await;
    }
    let fresh = submit(&mut police_cms, "after the migration").await;
    arrives(&ngo_cms, &fresh, "a new alert").await;
    let listed = police_cms
        .alerts
        .list_alerts(ListAlertsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.alerts.iter().any(|a| a.id == interrupted));
    drop(ngo_cms);
    drop(police_cms);
    police_node.signal("-TERM");
    ngo_node.signal("-TERM");
    drop((police_node, ngo_node));

    // The interrupted matching was redone at start: the same hits, with
    // new sequence numbers after every old one.
    let after = new_trees(&police.join("data"));
    let hits: Vec<(u64, Hit)> = after["hits"]
        .iter()
        .map(|(k, v)| {
            (
                u64::from_be_bytes(k.as_slice().try_into().unwrap()),
                Hit::decode(v.as_slice()).unwrap(),
            )
        })
        .collect();
    let redone: BTreeSet<String> = hits
        .iter()
        .filter(|(_, h)| h.local_alert_id == interrupted)
        .map(|(seq, h)| {
            assert!(*seq > old_max_hit, "hit {seq} reuses an old sequence");
            h.other_alert_id.clone()
        })
        .collect();
    assert_eq!(redone, its_hits);
    assert!(after["match_pending"].is_empty());
    // New outbox entries were numbered after the old ones (they are acked
    // and gone; the audit log's share entries name their sequences).
    for node in [&police, &ngo] {
        let (code, out, err) = cli(&["audit", "verify", "--config", path(&node.join("node.toml"))]);
        assert_eq!(
            code, 0,
            "the chain goes on across the migration: {out}{err}"
        );
    }
}
