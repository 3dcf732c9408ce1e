//! The JSON Lines export: one line per entry, carrying the exact stored body,
//! its hash and the hash before it, and one line per signed checkpoint, so
//! an export can be verified away from the node (`audit verify --file`).
//!
//! ```text
//! {"seq":41,"prev":"9f…","hash":"03…","entry":{"seq":41,"time":"…","actor":"client:cms",…}}
//! {"checkpoint":{"seq":41,"hash":"03…","time":"…","signature":"…"}}
//! ```

use std::io::BufRead;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::verify::{Broken, ChainStart, Summary, verify};
use super::{Checkpoint, Hash, RawEntry, hex, signing::PublicKey, unhex_hash};

/// One entry as an export line (without the newline).
pub fn entry_line(seq: u64, prev: &Hash, hash: &Hash, body: &str) -> String {
    format!(
        "{{\"seq\":{seq},\"prev\":\"{}\",\"hash\":\"{}\",\"entry\":{body}}}",
        hex(prev),
        hex(hash)
    )
}

/// One checkpoint as an export line (without the newline).
pub fn checkpoint_line(cp: &Checkpoint) -> String {
    format!(
        "{{\"checkpoint\":{}}}",
        serde_json::to_string(cp).expect("checkpoints serialize")
    )
}

/// The export lines of one `QueryAudit` page: its entries, then its
/// checkpoints.
pub fn page_lines(page: &crate::proto::v1::QueryAuditResponse) -> Vec<String> {
    let mut lines = Vec::with_capacity(page.entries.len() + page.checkpoints.len());
    for e in &page.entries {
        let prev: Hash = e.prev_hash.as_slice().try_into().unwrap_or([0; 32]);
        let hash: Hash = e.hash.as_slice().try_into().unwrap_or([0; 32]);
        lines.push(entry_line(e.sequence, &prev, &hash, &e.body));
    }
    for c in &page.checkpoints {
        lines.push(checkpoint_line(&Checkpoint {
            seq: c.sequence,
            hash: c.hash.as_slice().try_into().unwrap_or([0; 32]),
            time: c.time.clone(),
            signature: c.signature.clone(),
        }));
    }
    lines
}

#[derive(Deserialize)]
struct Line<'a> {
    seq: Option<u64>,
    prev: Option<String>,
    hash: Option<String>,
    #[serde(borrow)]
    entry: Option<&'a RawValue>,
    checkpoint: Option<Checkpoint>,
}

/// Reads an export and verifies it from its first entry on (that entry's
/// `prev` is taken as given: an export that starts mid-log proves the
/// chain from there, and the checkpoints anchor it).
pub fn verify_export(
    input: impl BufRead,
    key: &PublicKey,
    anchors: &[Checkpoint],
) -> Result<Summary, Broken> {
    let mut entries = Vec::new();
    let mut checkpoints = Vec::new();
    let mut start = None;
    for (n, line) in input.lines().enumerate() {
        let at = |reason: String| Broken {
            seq: 0,
            reason: format!("line {}: {reason}", n + 1),
        };
        let line = line.map_err(|e| at(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line<'_> = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        if let Some(cp) = parsed.checkpoint {
            checkpoints.push(cp);
            continue;
        }
        let (Some(seq), Some(hash), Some(entry)) = (parsed.seq, parsed.hash, parsed.entry) else {
            return Err(at("neither an entry nor a checkpoint".into()));
        };
        let hash = unhex_hash(&hash).ok_or_else(|| at("hash is not 32 hex bytes".into()))?;
        if start.is_none() {
            let prev = parsed
                .prev
                .as_deref()
                .and_then(unhex_hash)
                .ok_or_else(|| at("prev is not 32 hex bytes".into()))?;
            start = Some(ChainStart {
                seq,
                prev,
                pruned: false,
            });
        }
        entries.push(RawEntry {
            seq,
            hash,
            body: entry.get().as_bytes().to_vec(),
        });
    }
    let start = start.unwrap_or(ChainStart::GENESIS);
    checkpoints.extend_from_slice(anchors);
    verify(start, entries.into_iter().map(Ok), &checkpoints, key)
}

/// This node's checkpoints as its peers hold them: the `anchor_*` details of
/// the `peer.hello` entries in a peer's export. Only those whose signature
/// verifies with `key` are kept (the others are other agencies', or
/// forged), so they can be checked against this node's log like its own
/// checkpoints, which catches a cut even when the local checkpoints were
/// deleted with it.
pub fn anchors_from_export(
    input: impl BufRead,
    key: &PublicKey,
) -> Result<Vec<Checkpoint>, String> {
    let mut out = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line<'_> =
            serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let Some(raw) = parsed.entry else { continue };
        let Ok(entry) = serde_json::from_str::<super::Entry>(raw.get()) else {
            continue;
        };
        if entry.event.action != super::Action::PeerHello {
            continue;
        }
        let d = &entry.event.detail;
        let (Some(seq), Some(hash), Some(time), Some(signature)) = (
            d.get("anchor_seq").and_then(|s| s.parse().ok()),
            d.get("anchor_hash").and_then(|h| unhex_hash(h)),
            d.get("anchor_time"),
            d.get("anchor_signature"),
        ) else {
            continue;
        };
        if super::signing::verify_hex(key, &Checkpoint::message(seq, &hash, time), signature) {
            out.push(Checkpoint {
                seq,
                hash,
                time: time.clone(),
                signature: signature.clone(),
            });
        }
    }
    Ok(out)
}
