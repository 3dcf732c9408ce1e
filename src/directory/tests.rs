use proptest::prelude::*;

use super::document::{check, valid_endpoint};
use super::signed::{EnvelopeError, Signed, key_id, pae};
use super::trust::{Refusal, SetRole, admit, anchor};
use crate::ed25519::SigningKey;
use crate::proto::v1::{Directory, DirectoryMember, DirectorySigner, SignerSet};

fn keys(n: usize) -> (tempfile::TempDir, Vec<SigningKey>) {
    let dir = tempfile::tempdir().unwrap();
    let keys = (0..n)
        .map(|i| SigningKey::create(&dir.path().join(format!("k{i}.key"))).unwrap())
        .collect();
    (dir, keys)
}

fn set(keys: &[&SigningKey], threshold: u32) -> SignerSet {
    let mut signers: Vec<DirectorySigner> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| DirectorySigner {
            name: format!("operator {i}"),
            public_key: k.public().as_bytes().to_vec(),
        })
        .collect();
    signers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    SignerSet { signers, threshold }
}

fn member(agency: &str, port: u16) -> DirectoryMember {
    DirectoryMember {
        agency_id: agency.into(),
        display_name: format!("The {agency}"),
        kind: "ngo".into(),
        groups: vec!["ngo".into()],
        endpoints: vec![format!("{agency}.example.org:{port}")],
        ..Default::default()
    }
}

fn directory(version: u64, signers: SignerSet) -> Directory {
    Directory {
        federation: "test.casebridge".into(),
        version,
        issued_at: 1_000,
        expires_at: 1_000_000,
        members: vec![member("ngo", 7001), member("police", 7002)],
        signers: Some(signers),
        ..Default::default()
    }
}

fn signed_by(d: Directory, by: &[&SigningKey]) -> Signed {
    let mut s = Signed::new(d).unwrap();
    for k in by {
        s.sign(k);
    }
    s
}

#[test]
fn two_of_three_adopt_one_does_not_and_a_stranger_never_counts() {
    let (_d, k) = keys(4);
    let ops = set(&[&k[0], &k[1], &k[2]], 2);
    let current = directory(1, ops.clone());
    let next = || directory(2, ops.clone());
    assert_eq!(
        admit(&current, &signed_by(next(), &[&k[0], &k[2]]), 10),
        Ok(())
    );
    let short = admit(&current, &signed_by(next(), &[&k[1]]), 10);
    assert_eq!(
        short,
        Err(Refusal::BelowThreshold {
            set: SetRole::Trusted,
            valid: 1,
            threshold: 2
        })
    );
    // The same key twice is one signer; a key outside the set is none.
    let twice = signed_by(next(), &[&k[1], &k[1], &k[3]]);
    assert!(matches!(
        admit(&current, &twice, 10),
        Err(Refusal::BelowThreshold { valid: 1, .. })
    ));
}

#[test]
fn rollback_replay_expiry_and_other_federations_are_refused() {
    let (_d, k) = keys(2);
    let ops = set(&[&k[0], &k[1]], 1);
    let current = directory(5, ops.clone());
    let old = signed_by(directory(4, ops.clone()), &[&k[0]]);
    let same = signed_by(directory(5, ops.clone()), &[&k[0]]);
    assert_eq!(
        admit(&current, &old, 10),
        Err(Refusal::NotNewer {
            current: 5,
            offered: 4
        })
    );
    assert!(matches!(
        admit(&current, &same, 10),
        Err(Refusal::NotNewer { .. })
    ));
    let fresh = signed_by(directory(6, ops.clone()), &[&k[0]]);
    assert!(matches!(
        admit(&current, &fresh, 1_000_000),
        Err(Refusal::Expired { version: 6, .. })
    ));
    let mut other = directory(6, ops);
    other.federation = "other.casebridge".into();
    assert!(matches!(
        admit(&current, &signed_by(other, &[&k[0]]), 10),
        Err(Refusal::WrongFederation { .. })
    ));
}

#[test]
fn a_new_signer_set_needs_the_old_threshold_and_its_own() {
    let (_d, k) = keys(4);
    let old = set(&[&k[0], &k[1], &k[2]], 2);
    let new = set(&[&k[1], &k[2], &k[3]], 2);
    let current = directory(1, old);
    let rotate = || directory(2, new.clone());
    // Signed by the new set only: refused (the old set did not hand over).
    assert!(matches!(
        admit(&current, &signed_by(rotate(), &[&k[3], &k[2]]), 10),
        Err(Refusal::BelowThreshold {
            valid: 1,
            set: SetRole::Trusted,
            ..
        })
    ));
    // The old threshold, but only one of the new set: refused.
    assert!(matches!(
        admit(&current, &signed_by(rotate(), &[&k[0], &k[1]]), 10),
        Err(Refusal::BelowThreshold {
            set: SetRole::New,
            valid: 1,
            ..
        })
    ));
    // Both thresholds: accepted; from then on k0 alone counts for nothing.
    assert_eq!(
        admit(&current, &signed_by(rotate(), &[&k[0], &k[1], &k[3]]), 10),
        Ok(())
    );
    let after = rotate();
    assert!(matches!(
        admit(
            &after,
            &signed_by(directory(3, new.clone()), &[&k[0], &k[1]]),
            10
        ),
        Err(Refusal::BelowThreshold { valid: 1, .. })
    ));
}

#[test]
fn an_anchor_carries_its_own_threshold() {
    let (_d, k) = keys(2);
    let ops = set(&[&k[0], &k[1]], 2);
    assert!(
        anchor(
            &signed_by(directory(1, ops.clone()), &[&k[0], &k[1]]),
            "test.casebridge"
        )
        .is_ok()
    );
    assert!(
        anchor(
            &signed_by(directory(1, ops.clone()), &[&k[0]]),
            "test.casebridge"
        )
        .is_err()
    );
    assert!(
        anchor(
            &signed_by(directory(1, ops), &[&k[0], &k[1]]),
            "other.casebridge"
        )
        .is_err()
    );
}

#[test]
fn mistakes_are_named_by_field() {
    let (_d, k) = keys(1);
    let mut d = directory(0, set(&[&k[0]], 2));
    d.members.push(member("police", 7003));
    d.members.push(member("labour", 7001));
    d.members[0].kind = "army".into();
    d.members[1].groups = vec!["police".into(), "Police".into()];
    d.members[1].key_sha256 = "abc".into();
    d.members[3].endpoints = vec!["ngo.example.org:7001".into()];
    d.expires_at = d.issued_at;
    let fields: Vec<String> = check(&d).into_iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        [
            "version",
            "expires_at",
            "members[0].kind",
            "members[1].groups[1]",
            "members[1].key_sha256",
            "members[2].agency_id",
            "members[3].agency_id",
            "members[3].endpoints[0]",
            "signers.threshold",
        ]
    );
}

#[test]
fn the_json_form_round_trips_and_names_where_it_is_broken() {
    let (_d, k) = keys(1);
    let s = signed_by(directory(1, set(&[&k[0]], 1)), &[&k[0]]);
    let text = s.to_json();
    assert_eq!(Signed::from_json(&text).unwrap(), s);
    assert!(text.contains("\"payloadType\": \"application/vnd.casebridge.directory+protobuf\""));
    assert!(text.contains(&format!("\"keyid\": \"{}\"", key_id(&k[0].public()))));
    let broken = text.replacen("\"signatures\"", "\"signatures\" x", 1);
    match Signed::from_json(&broken) {
        Err(EnvelopeError::Json { line, column, .. }) => assert_eq!((line, column > 0), (4, true)),
        other => panic!("{other:?}"),
    }
    let extra = text.replacen('{', "{\"extra\": 1,", 1);
    assert!(matches!(
        Signed::from_json(&extra),
        Err(EnvelopeError::Json { .. })
    ));
}

#[test]
fn an_envelope_is_bounded_and_checked_before_it_is_trusted() {
    let (_d, k) = keys(1);
    let good = signed_by(directory(1, set(&[&k[0]], 1)), &[&k[0]]);
    let mut wrong_type = good.envelope().clone();
    wrong_type.payload_type = "application/json".into();
    assert!(matches!(
        Signed::open(wrong_type),
        Err(EnvelopeError::PayloadType(_))
    ));
    let mut many = good.envelope().clone();
    many.signatures = vec![many.signatures[0].clone(); super::signed::MAX_SIGNATURES + 1];
    assert_eq!(Signed::open(many), Err(EnvelopeError::TooManySignatures));
    let mut short_sig = good.envelope().clone();
    short_sig.signatures[0].sig.pop();
    assert!(matches!(
        Signed::open(short_sig),
        Err(EnvelopeError::Signature {
            index: 0,
            field: "sig",
            ..
        })
    ));
    let mut garbage = good.envelope().clone();
    garbage.payload = vec![0xff; 10];
    assert!(matches!(
        Signed::open(garbage),
        Err(EnvelopeError::Payload(_))
    ));
}

#[test]
fn endpoints_are_host_and_port() {
    for good in [
        "police.example.org:7001",
        "10.0.0.1:443",
        "[::1]:7001",
        "localhost:1",
    ] {
        assert!(valid_endpoint(good), "{good}");
    }
    for bad in [
        "police.example.org",
        "police:0",
        "-x.org:1",
        "[::1:7001",
        ":7001",
        "a..b:1",
        "x y:1",
    ] {
        assert!(!valid_endpoint(bad), "{bad}");
    }
}

proptest! {
    /// PAE is unambiguous: different (type, payload) pairs never encode
    /// alike, so a signature over one never verifies for another.
    #[test]
    fn pae_is_injective(
        t1 in "[ -~]{0,12}", p1 in prop::collection::vec(any::<u8>(), 0..24),
        t2 in "[ -~]{0,12}", p2 in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        prop_assume!((&t1, &p1) != (&t2, &p2));
        prop_assert_ne!(pae(&t1, &p1), pae(&t2, &p2));
    }

    /// Any change to the signed bytes voids every signature.
    #[test]
    fn a_changed_byte_voids_the_signatures(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (_d, k) = keys(1);
        let ops = set(&[&k[0]], 1);
        let s = signed_by(directory(2, ops.clone()), &[&k[0]]);
        let mut envelope = s.envelope().clone();
        let i = at.index(envelope.payload.len());
        envelope.payload[i] ^= 1 << bit;
        if let Ok(changed) = Signed::open(envelope) {
            prop_assert!(changed.signed_by(&ops).is_empty());
            prop_assert!(admit(&directory(1, ops), &changed, 10).is_err());
        }
    }

    /// Writing a directory is deterministic: the same content gives the
    /// same bytes, so operators signing separately sign the same thing.
    #[test]
    fn encoding_is_deterministic(version in 1u64..1000, n in 0usize..20) {
        let (_d, k) = keys(1);
        let mut d = directory(version, set(&[&k[0]], 1));
        d.members = (0..n).map(|i| member(&format!("agency-{i:02}"), 7000 + i as u16)).collect();
        let a = Signed::new(d.clone()).unwrap();
        let b = Signed::new(d).unwrap();
        prop_assert_eq!(&a.envelope().payload, &b.envelope().payload);
    }
}
