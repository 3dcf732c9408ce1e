use proptest::prelude::*;

use super::signing::{PublicKey, SigningKey};
use super::*;
use crate::time::{format_ms, parse_ms};

fn chain(n: u64) -> Vec<RawEntry> {
    let mut prev = GENESIS;
    (1..=n)
        .map(|seq| {
            let ev = Event::new("client:case-system", Action::AlertGet, "OK")
                .object(format!("police:{seq:026}"))
                .detail("n", seq);
            let raw = seal(&prev, seq, 1_700_000_000_000 + seq as i64, ev);
            prev = raw.hash;
            raw
        })
        .collect()
}

fn key() -> (tempfile::TempDir, SigningKey) {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::create(&dir.path().join("audit.key")).unwrap();
    (dir, key)
}

fn check(entries: &[RawEntry], cps: &[Checkpoint], key: &PublicKey) -> Result<Summary, Broken> {
    verify(
        ChainStart::GENESIS,
        entries.iter().cloned().map(Ok),
        cps,
        key,
    )
}

fn signed_at(key: &SigningKey, entries: &[RawEntry], seqs: &[u64]) -> Vec<Checkpoint> {
    seqs.iter()
        .map(|&s| signing::sign_checkpoint(key, s, entries[s as usize - 1].hash, 1_700_000_000_000))
        .collect()
}

#[test]
fn untouched_chain_verifies() {
    let (_d, key) = key();
    let entries = chain(50);
    let cps = signed_at(&key, &entries, &[10, 50]);
    let s = check(&entries, &cps, &key.public()).unwrap();
    assert_eq!((s.first, s.last, s.entries, s.checkpoints), (1, 50, 50, 2));
    assert_eq!(s.last_signed, Some(50));
    assert_eq!(s.unsigned_tail(), 0);
}

#[test]
fn edit_is_found_at_the_edited_entry() {
    let (_d, key) = key();
    let mut entries = chain(20);
    let body = String::from_utf8(entries[6].body.clone()).unwrap();
    entries[6].body = body.replace("\"OK\"", "\"PERMISSION_DENIED\"").into_bytes();
    let err = check(&entries, &[], &key.public()).unwrap_err();
    assert_eq!(err.seq, 7, "{err}");
}

#[test]
fn rewrite_with_recomputed_hashes_is_caught_by_the_checkpoint() {
    let (_d, key) = key();
    let entries = chain(20);
    let cps = signed_at(&key, &entries, &[5, 15]);
    // Rewrite entry 8 and recompute every hash after it, as someone with
    // the code but without the signing key could.
    let mut forged = entries[..7].to_vec();
    let mut prev = entries[6].hash;
    for raw in &entries[7..] {
        let mut e = raw.entry().unwrap();
        if e.seq == 8 {
            e.event.outcome = "NOT_FOUND".into();
        }
        let body = serde_json::to_vec(&e).unwrap();
        let hash = link(&prev, &body);
        forged.push(RawEntry {
            seq: raw.seq,
            hash,
            body,
        });
        prev = hash;
    }
    let err = check(&forged, &cps, &key.public()).unwrap_err();
    assert_eq!(err.seq, 15, "{err}");
    assert!(err.reason.contains("after entry 5"), "{err}");
}

#[test]
fn deletion_is_found_where_the_gap_is() {
    let (_d, key) = key();
    let mut entries = chain(20);
    entries.remove(11);
    let err = check(&entries, &[], &key.public()).unwrap_err();
    assert_eq!(err.seq, 12, "{err}");
    assert!(err.reason.contains("missing"), "{err}");
}

#[test]
fn swapped_entries_are_found_at_the_first_of_them() {
    let (_d, key) = key();
    let mut entries = chain(20);
    // Swap the stored contents of 4 and 5, keeping the keys.
    let (a, b) = (entries[3].clone(), entries[4].clone());
    entries[3] = RawEntry { seq: 4, ..b };
    entries[4] = RawEntry { seq: 5, ..a };
    let err = check(&entries, &[], &key.public()).unwrap_err();
    assert_eq!(err.seq, 4, "{err}");
}

#[test]
fn truncation_is_found_against_the_last_checkpoint() {
    let (_d, key) = key();
    let entries = chain(30);
    let cps = signed_at(&key, &entries, &[10, 30]);
    let err = check(&entries[..24], &cps, &key.public()).unwrap_err();
    assert_eq!(err.seq, 25, "{err}");
    assert!(err.reason.contains("truncated"), "{err}");
}

#[test]
fn a_checkpoint_signed_by_another_key_is_refused() {
    let (_d, key) = key();
    let (_d2, other) = self::key();
    let entries = chain(10);
    let cps = signed_at(&other, &entries, &[10]);
    let err = check(&entries, &cps, &key.public()).unwrap_err();
    assert_eq!(err.seq, 10);
    assert!(err.reason.contains("signature"), "{err}");
}

#[test]
fn a_cut_head_needs_a_recorded_prune() {
    let (_d, key) = key();
    let entries = chain(10);
    let start = ChainStart {
        seq: 4,
        prev: entries[2].hash,
        pruned: true,
    };
    let err = verify(
        start,
        entries[3..].iter().cloned().map(Ok),
        &[],
        &key.public(),
    )
    .unwrap_err();
    assert_eq!(err.seq, 4);
    assert!(err.reason.contains("pruning"), "{err}");
    // Without the mark, the missing head is a missing entry 1.
    let err = check(&entries[3..], &[], &key.public()).unwrap_err();
    assert_eq!(err.seq, 1);
}

#[test]
fn keys_round_trip_through_files() {
    let (dir, key) = key();
    let public = PublicKey::load(&signing::public_key_path(&dir.path().join("audit.key"))).unwrap();
    assert_eq!(public, key.public());
    let again = SigningKey::load(&dir.path().join("audit.key")).unwrap();
    assert_eq!(again.public(), key.public());
    let cp = signing::sign_checkpoint(&key, 3, [7; 32], 1_700_000_000_000);
    assert!(signing::verify_hex(
        &public,
        &Checkpoint::message(cp.seq, &cp.hash, &cp.time),
        &cp.signature
    ));
    assert!(!signing::verify_hex(
        &public,
        &Checkpoint::message(4, &cp.hash, &cp.time),
        &cp.signature
    ));
}

#[test]
fn actions_parse_back_from_their_names() {
    for a in Action::ALL {
        assert_eq!(a.as_str().parse::<Action>().unwrap(), *a);
    }
    assert!("alert.delete".parse::<Action>().is_err());
}

#[test]
fn times_round_trip() {
    let ms = 1_764_000_000_123;
    assert_eq!(parse_ms(&format_ms(ms)), Some(ms));
    assert_eq!(format_ms(ms), "2025-11-24T16:00:00.123Z");
}

proptest! {
    /// Any single change to any stored byte of any entry, or the loss of
    /// any entry, is found, and never later than the entry it hit.
    #[test]
    fn every_single_tampering_is_found(
        n in 2u64..40,
        victim in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        delete in any::<bool>(),
    ) {
        let (_d, key) = key();
        let mut entries = chain(n);
        let cps = signed_at(&key, &entries, &[n]);
        let v = victim.index(n as usize);
        if delete {
            entries.remove(v);
        } else {
            let raw = &mut entries[v];
            let total = 32 + raw.body.len();
            let i = byte.index(total);
            if i < 32 { raw.hash[i] ^= flip } else { raw.body[i - 32] ^= flip }
        }
        let err = check(&entries, &cps, &key.public()).unwrap_err();
        prop_assert!(err.seq <= v as u64 + 2, "{err} (victim {})", v + 1);
    }
}

/// The operator guide's table of actions is the documented vocabulary of
/// the log: every action the code can write is in it.
#[test]
fn every_action_is_in_the_operator_guide() {
    let guide = include_str!("../../docs/operator-guide.md");
    let missing: Vec<&str> = Action::ALL
        .iter()
        .map(|a| a.as_str())
        .filter(|name| !guide.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/operator-guide.md: {missing:?}"
    );
}
