//! The federation directory at scale, in one run:
//!
//! 1. Size and verification time of a directory of `BENCH_MEMBERS`
//!    members (default 500), two of three operators signing: bytes of the
//!    protobuf payload and of the DSSE JSON file, and the median time to
//!    read the file and decide adoption (`Signed::from_json` + `admit`)
//!    and to sign it once, over `BENCH_RUNS` runs (default 50).
//! 2. Propagation: `BENCH_NODES` nodes (default 10, real mTLS on
//!    127.0.0.1, each following its anchor, probe interval
//!    `BENCH_PROBE_SECS`, default 1) and a newcomer. A version adding the
//!    newcomer is published at one node; reported, from the publish: when
//!    the last node adopted it, and when the newcomer held an alert from
//!    every node (each node submits one as soon as it adopted the
//!    version), in seconds and in probe intervals.
//!
//! Run: `cargo bench --bench directory`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/measure.rs"]
mod measure;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use casebridge::config::{Bounded, DirectoryConfig};
use casebridge::directory::{Signed, trust};
use casebridge::ed25519::SigningKey;
use casebridge::proto::v1::{
    Directory, DirectoryMember, DirectorySigner, PublishDirectoryRequest, SignerSet,
};
use common::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys_dir = tempfile::tempdir().unwrap();
    let keys: Vec<SigningKey> = (1..=3)
        .map(|i| SigningKey::create(&keys_dir.path().join(format!("op{i}.key"))).unwrap())
        .collect();
    size_and_verify(&keys);
    runtime.block_on(propagation(&keys, keys_dir.path().to_owned()));
}

fn signer_set(keys: &[SigningKey]) -> SignerSet {
    let mut signers: Vec<DirectorySigner> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| DirectorySigner {
            name: format!("operator-{}", i + 1),
            public_key: k.public().as_bytes().to_vec(),
        })
        .collect();
    signers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    SignerSet {
        signers,
        threshold: 2,
    }
}

fn member(agency: &str, endpoint: String) -> DirectoryMember {
    DirectoryMember {
        agency_id: agency.into(),
        display_name: format!("The {agency} agency"),
        kind: "ngo".into(),
        groups: vec!["member".into()],
        endpoints: vec![endpoint],
        ..Default::default()
    }
}

fn directory(version: u64, members: Vec<DirectoryMember>, keys: &[SigningKey]) -> Directory {
    let now = casebridge::time::now_ms() / 1000;
    let mut members = members;
    members.sort_by(|a, b| a.agency_id.cmp(&b.agency_id));
    Directory {
        federation: FEDERATION.into(),
        version,
        issued_at: now,
        expires_at: now + 30 * 86_400,
        members,
        signers: Some(signer_set(keys)),
        ..Default::default()
    }
}

fn signed(d: Directory, keys: &[SigningKey]) -> Signed {
    let mut s = Signed::new(d).unwrap();
    for k in &keys[..2] {
        s.sign(k);
    }
    s
}

fn size_and_verify(keys: &[SigningKey]) {
    let n = env_or("BENCH_MEMBERS", 500);
    let runs = env_or("BENCH_RUNS", 50);
    let members = |version| {
        let mut m: Vec<DirectoryMember> = (0..n)
            .map(|i| {
                let mut m = member(
                    &format!("agency-{i:04}"),
                    format!("node-{i}.agency-{i}.example.org:7001"),
                );
                m.key_sha256 = format!("{:064x}", i);
                m
            })
            .collect();
        m.truncate(n);
        directory(version, m, keys)
    };
    let before = signed(members(1), keys).directory().clone();
    let next = signed(members(2), keys);
    let json = next.to_json();
    let now = casebridge::time::now_ms() / 1000;
    let mut verify = Vec::with_capacity(runs);
    let mut sign = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let read = Signed::from_json(&json).unwrap();
        trust::admit(&before, &read, now).unwrap();
        verify.push(t.elapsed());
        let mut again = Signed::new(read.directory().clone()).unwrap();
        let t = Instant::now();
        again.sign(&keys[0]);
        sign.push(t.elapsed());
    }
    verify.sort();
    sign.sort();
    println!(
        "directory of {n} members: payload {} bytes, DSSE JSON {} bytes; read + admit (2 of 3 signatures) median {:.2?} (p90 {:.2?}); one signature median {:.2?}; {runs} runs",
        next.envelope().payload.len(),
        json.len(),
        measure::percentile(&verify, 0.5),
        measure::percentile(&verify, 0.9),
        measure::percentile(&sign, 0.5),
    );
}

async fn propagation(keys: &[SigningKey], dir: PathBuf) {
    let n = env_or("BENCH_NODES", 10);
    let probe = env_or("BENCH_PROBE_SECS", 1);
    let names: Vec<String> = (0..=n).map(|i| format!("node-{i:02}")).collect();
    let newcomer = names[n].clone();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[[rules]]\nname = \"members\"\neffect = \"share\"\npeers = [\"group:member\"]\n[rules.share]\nnarrative = \"full\"\n",
    )
    .unwrap();
    let anchor = dir.join("anchor.json");
    let (anchor_c, policy_c) = (anchor.clone(), policy.clone());
    let mut fed = TestFederation::reserve(&refs, move |_, config| {
        config.peers.clear();
        config.directory = Some(DirectoryConfig {
            anchor: toml::Spanned::new(0..0, anchor_c.clone()),
            file: None,
            grace_secs: Bounded::new(259_200),
        });
        config.delivery.probe_interval_secs = Bounded::new(probe);
        config.sharing.policy = Some(toml::Spanned::new(0..0, policy_c.clone()));
    })
    .await;
    let endpoints: Vec<String> = refs
        .iter()
        .map(|a| fed.layout.agencies[&agency(a)].addrs.peer.to_string())
        .collect();
    let first: Vec<DirectoryMember> = (0..n)
        .map(|i| member(refs[i], endpoints[i].clone()))
        .collect();
    let v1 = signed(directory(1, first.clone(), keys), keys);
    std::fs::write(&anchor, v1.to_json()).unwrap();
    for a in &refs[..n] {
        fed.start_node(a).await;
    }
    let mut all = first;
    all.push(member(&newcomer, endpoints[n].clone()));
    let v2 = signed(directory(2, all, keys), keys);
    std::fs::write(&anchor, v2.to_json()).unwrap();
    fed.start_node(&newcomer).await;
    // Let every link come up before timing.
    tokio::time::sleep(Duration::from_secs(2 * probe as u64)).await;

    let start = publish_at(&fed, &names[0], &v2).await;
    let (fed, newcomer) = (&fed, newcomer.as_str());
    let per_node = refs[..n].iter().map(|a| async move {
        until_version(fed, a, 2).await;
        let adopted = start.elapsed();
        let alert = submit(
            &mut fed.client(a, "cms").await,
            &format!("{a} to the newcomer"),
        )
        .await;
        fed.held(newcomer, &alert.id).await;
        (adopted, start.elapsed())
    });
    let times = futures_util::future::join_all(per_node).await;
    let adopted = times.iter().map(|t| t.0).max().unwrap();
    let delivered = times.iter().map(|t| t.1).max().unwrap();
    let p = Duration::from_secs(probe as u64).as_secs_f64();
    println!(
        "propagation over {n} nodes (probe interval {probe} s): last adoption {:.2?} ({:.2} intervals), newcomer holds an alert from every node {:.2?} ({:.2} intervals)",
        adopted,
        adopted.as_secs_f64() / p,
        delivered,
        delivered.as_secs_f64() / p,
    );
    // Renewals, each published at another node: until all n + 1 adopted.
    let rounds = env_or("BENCH_ROUNDS", 7);
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let version = 3 + round as u64;
        let renewed = signed(
            directory(version, v2.directory().members.clone(), keys),
            keys,
        );
        let start = publish_at(fed, &names[round % n], &renewed).await;
        futures_util::future::join_all(names.iter().map(|a| until_version(fed, a, version))).await;
        times.push(start.elapsed());
    }
    times.sort();
    let median = measure::percentile(&times, 0.5);
    println!(
        "renewal published at one node until all {} adopted it: median {median:.2?} ({:.2} intervals), max {:.2?}; {rounds} rounds",
        n + 1,
        median.as_secs_f64() / p,
        times[times.len() - 1],
    );
}

/// Publishes `signed` at `at` (its admin client connected first, so the
/// clock starts at the call); when the call was made.
async fn publish_at(fed: &TestFederation, at: &str, signed: &Signed) -> Instant {
    let mut admin = fed.client(at, "admin").await;
    let start = Instant::now();
    let request = PublishDirectoryRequest {
        directory: Some(signed.envelope().clone()),
    };
    admin.admin.publish_directory(request).await.unwrap();
    start
}

async fn until_version(fed: &TestFederation, a: &str, version: u64) {
    while fed.directory_version(a).await < version {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
