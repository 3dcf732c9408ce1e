//! The federation operators' side of a test: their signing keys, and the
//! directory versions they sign for nodes started by [`TestFederation`].

use std::path::PathBuf;

use casebridge::directory::Signed;
use casebridge::ed25519::SigningKey;
use casebridge::proto::v1::{Directory, DirectoryMember, DirectorySigner, SignerSet};

use super::{FEDERATION, TestFederation, agency};

/// The federation operators of a test: three who sign (two must), and a
/// fourth, a stranger.
pub struct Operators {
    pub dir: tempfile::TempDir,
    pub keys: Vec<SigningKey>,
}

impl Operators {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = (1..=4)
            .map(|i| SigningKey::create(&dir.path().join(format!("op{i}.key"))).unwrap())
            .collect();
        Self { dir, keys }
    }

    /// Operators 1 to 3, two of whom must sign (operator 4 is a stranger).
    pub fn set(&self) -> SignerSet {
        let mut signers: Vec<DirectorySigner> = (0..3)
            .map(|i| DirectorySigner {
                name: format!("operator-{}", i + 1),
                public_key: self.keys[i].public().as_bytes().to_vec(),
            })
            .collect();
        // The rules want the keys sorted (one canonical form per set).
        signers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        SignerSet {
            signers,
            threshold: 2,
        }
    }

    pub fn anchor(&self, agency: &str) -> PathBuf {
        self.dir.path().join(format!("anchor-{agency}.json"))
    }

    /// `d` signed by operators `by` (1-based).
    pub fn sign(&self, d: Directory, by: &[usize]) -> Signed {
        let mut s = Signed::new(d).unwrap();
        for i in by {
            s.sign(&self.keys[i - 1]);
        }
        s
    }
}

/// The kind of member each test agency is.
pub fn kind(agency: &str) -> &'static str {
    match agency {
        "police" | "border" => "law_enforcement",
        "labour" => "labour_inspectorate",
        _ => "ngo",
    }
}

/// Version `version` of the test federation's directory, listing
/// `members`, signed by nobody yet.
pub fn directory(
    fed: &TestFederation,
    ops: &Operators,
    version: u64,
    members: &[&str],
) -> Directory {
    let now = casebridge::time::now_ms() / 1000;
    Directory {
        federation: FEDERATION.into(),
        version,
        issued_at: now,
        expires_at: now + 30 * 86_400,
        members: members
            .iter()
            .map(|a| DirectoryMember {
                agency_id: a.to_string(),
                display_name: format!("The {a}"),
                kind: kind(a).into(),
                groups: vec![kind(a).replace('_', "-")],
                endpoints: vec![fed.layout.agencies[&agency(a)].addrs.peer.to_string()],
                ..Default::default()
            })
            .collect(),
        signers: Some(ops.set()),
        ..Default::default()
    }
}
