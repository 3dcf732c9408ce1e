//! Hits: the matching pass inside each write (see `index`), hit notices
//! from peers, and the hit log that `WatchHits` follows.

use super::engine::Reads;
use super::engine::{Range, Tree};
use super::index::decode_alert as decode;
use super::{Store, StoreError, Write, index};
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::{Hit, HitNotice, HitSource, StoredAlert};

/// How a matching pass found a hit.
enum Found {
    Token,
    Encoding(
        crate::proto::v1::MatchStrength,
        Option<crate::proto::v1::PersonEvidence>,
    ),
}

/// What became of a hit notice from a peer.
#[derive(Debug, Clone, PartialEq)]
pub enum NoticeOutcome {
    Recorded(Box<Hit>),
    /// Already known (found here, or noticed before).
    Known,
    /// Refused, with the reason for the sender.
    Refused(String),
}

impl Store {
    /// Alerts in `tree` under `prefix` within `ranges`, with their values;
    /// `scan` reads one range (from a snapshot or inside a transaction).
    pub(super) fn candidates(
        scan: impl Fn(Tree, std::ops::Range<Vec<u8>>) -> Range,
        tree: Tree,
        prefix_len: usize,
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<(AlertId, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for (start, end) in ranges {
            for item in scan(tree, start..end) {
                let (k, v) = item?;
                if let Some(id) = index::alert_in_key(&k, prefix_len) {
                    out.push((id, v));
                }
            }
        }
        Ok(out)
    }

    /// The matching pass of a write, in its transaction (after `reindex`):
    /// finds the alerts that share a token with `record` or hold a similar
    /// person, and records the hits with their notices and audit entries.
    /// The range scans see the transaction's own writes, so an alert is
    /// committed together with every hit it makes.
    pub(super) fn match_in(
        &self,
        w: &mut Write<'_, '_>,
        record: &StoredAlert,
    ) -> Result<Vec<Hit>, StoreError> {
        use crate::matching::{
            Comparable, FoundHits, encoding_block, encodings_of, hit_pair, tokens_of,
        };
        use crate::proto::v1::{IdentifierType, MatchStrength};
        let Some(alert) = record.alert.as_ref() else {
            return Ok(Vec::new());
        };
        let tokens = tokens_of(record);
        let encodings = encodings_of(record);
        if tokens.is_empty() && encodings.is_empty() {
            return Ok(Vec::new());
        }
        let this: AlertId = alert
            .id
            .parse()
            .map_err(|e: crate::ids::IdError| StoreError::corrupt(alert.id.clone(), e))?;
        let scope = self.scope()?;
        let own = &scope.own;
        let now = crate::time::now();
        let mut found = FoundHits::default();
        let mut add = |other: AlertId, kind: i32, similarity: f64, found_by: Found| {
            let Some((mine, theirs)) = hit_pair(scope, &this, &other) else {
                return;
            };
            let (fuzzy, strength, evidence) = match found_by {
                Found::Token => (false, MatchStrength::Exact, None),
                Found::Encoding(strength, evidence) => (true, strength, evidence),
            };
            found.add(Hit {
                sequence: 0,
                r#type: kind,
                local_alert_id: mine.to_string(),
                other_alert_id: theirs.to_string(),
                other_agency: theirs.origin().to_string(),
                similarity,
                detected_at: Some(now),
                source: HitSource::LocalMatch as i32,
                fuzzy,
                strength: strength as i32,
                evidence,
                ..Default::default()
            });
        };
        let scan = |tree, range| w.tx.range(tree, range);
        for token in &tokens {
            let prefix = index::token_prefix(token);
            let ranges = index::candidate_ranges(&prefix, this.origin(), own);
            for (other, _) in Self::candidates(scan, w.t.tokens, prefix.len(), ranges)? {
                add(other, token.0, 1.0, Found::Token);
            }
        }
        for e in encodings {
            let Some(probe) = Comparable::of(e) else {
                continue;
            };
            let block = encoding_block(e);
            let ranges = index::candidate_ranges(&block, this.origin(), own);
            for (other, value) in Self::candidates(scan, w.t.fuzzy, block.len(), ranges)? {
                let Some(m) = Comparable::from_index_value(&value).and_then(|o| probe.compare(&o))
                else {
                    continue;
                };
                if let Some(strength) = scope.band.strength(m.score) {
                    add(
                        other,
                        IdentifierType::Person as i32,
                        m.score,
                        Found::Encoding(strength, m.evidence),
                    );
                }
            }
        }
        found.rank();
        let recorded = self.record_hits(w, record, &this, &found)?;
        w.tx.remove(w.t.pending, alert.id.as_bytes())?;
        w.append(recorded.iter().map(|h| {
            crate::audit::Event::new(crate::audit::NODE, crate::audit::Action::HitFound, "OK")
                .object(h.local_alert_id.clone())
                .object(h.other_alert_id.clone())
                .detail("type", crate::proto::identifier_type_name(h.r#type))
                .detail("similarity", format!("{:.3}", h.similarity))
                .detail("strength", crate::proto::strength_name(h.strength))
        }))?;
        Ok(recorded)
    }

    /// Records the hits found that are new, notifying the other agency
    /// where allowed; returns those recorded.
    fn record_hits(
        &self,
        w: &mut Write<'_, '_>,
        record: &StoredAlert,
        this: &AlertId,
        found: &crate::matching::FoundHits,
    ) -> Result<Vec<Hit>, StoreError> {
        use crate::matching::MatchedBy;
        use crate::proto::v1::MatchStrength;
        let mut recorded = Vec::new();
        for hit in found.iter() {
            // A pair judged a false positive (here or there) is not raised
            // again, whatever else the two alerts come to share.
            if index::pair_dismissed(w, &hit.local_alert_id, &hit.other_alert_id)? {
                continue;
            }
            // A possible hit waits for a person here before the other
            // agency hears of it (see `review_hit`).
            let notify = hit.strength != MatchStrength::Possible as i32
                && self.may_notify(w, record, this, hit, MatchedBy::of(hit))?;
            if let Some(h) = index::record_found(w, hit.clone(), notify)? {
                recorded.push(h);
            }
        }
        Ok(recorded)
    }

    /// Whether the other agency of `hit` may be sent a notice: it must be a
    /// configured peer, and the notice gate (the sharing policy) must allow
    /// disclosing our alert to it. `record` is the alert being matched, which
    /// is either our alert of the hit or theirs.
    fn may_notify(
        &self,
        w: &Write<'_, '_>,
        record: &StoredAlert,
        this: &AlertId,
        hit: &Hit,
        by: crate::matching::MatchedBy,
    ) -> Result<bool, StoreError> {
        let other: AlertId = hit
            .other_alert_id
            .parse()
            .map_err(|e: crate::ids::IdError| StoreError::corrupt(hit.other_alert_id.clone(), e))?;
        if !crate::matching::notify(self.scope()?, &other) {
            return Ok(false);
        }
        let Some(gate) = self.notice_gate.get() else {
            return Ok(true);
        };
        let Some(gate) = gate.upgrade() else {
            return Ok(false); // the node is stopping
        };
        let own = if this.to_string() == hit.local_alert_id {
            record.clone()
        } else {
            let id: AlertId = hit
                .local_alert_id
                .parse()
                .map_err(|e: crate::ids::IdError| {
                    StoreError::corrupt(hit.local_alert_id.clone(), e)
                })?;
            match w.tx.get(w.t.alerts, id.to_string())? {
                Some(bytes) => decode(id.to_string().as_bytes(), &bytes)?,
                None => return Ok(false),
            }
        };
        Ok(gate.may_disclose(&own, other.origin(), hit.r#type, by))
    }

    /// An analyst here confirmed a pair: its possible hits that were held
    /// back (see `match_in`) are notified to the other agency now, where
    /// the notice gate allows, and marked as known there, so the review
    /// that follows travels too.
    pub(super) fn release_held_notices(
        &self,
        w: &mut Write<'_, '_>,
        own: &str,
        other: &str,
    ) -> Result<(), StoreError> {
        use crate::proto::v1::MatchStrength;
        let this: AlertId = own
            .parse()
            .map_err(|e: crate::ids::IdError| StoreError::corrupt(own.to_owned(), e))?;
        let Some(bytes) = w.tx.get(w.t.alerts, own)? else {
            return Ok(());
        };
        let record = decode(own.as_bytes(), &bytes)?;
        for number in index::pair_hits(w, own, other)? {
            let Some(hit) = index::latest_entry(&*w.tx, w.t, number)? else {
                continue;
            };
            if hit.known_there || hit.strength != MatchStrength::Possible as i32 {
                continue;
            }
            let by = crate::matching::MatchedBy::of(&hit);
            if self.may_notify(w, &record, &this, &hit, by)? {
                index::notify_found(w, &hit)?;
                index::mark_known_there(w, &hit)?;
            }
        }
        Ok(())
    }

    /// Installs the policy that decides which hit notices may be sent, then
    /// does the matching still pending (see [`Store::recover_pending`]):
    /// that may queue notices, so it waits for the gate. Called once by the
    /// node before it serves; a later gate is ignored.
    pub fn start_matching(
        &self,
        gate: std::sync::Weak<dyn crate::matching::NoticeGate>,
    ) -> Result<(), StoreError> {
        let _ = self.notice_gate.set(gate);
        self.recover_pending()
    }

    /// Matches the alerts marked pending, each in one transaction that also
    /// clears its mark. Only a store migrated from sled holds marks: there
    /// matching ran as a second transaction after the write, and a crash in
    /// between left the mark for the next start. Here matching is part of
    /// every write, so nothing sets a mark any more.
    fn recover_pending(&self) -> Result<(), StoreError> {
        for item in self.db.range::<&[u8]>(self.t.pending, ..) {
            let (id, _) = item?;
            let hits = self.write(|w| {
                w.tx.remove(w.t.pending, &id)?;
                match w.tx.get(w.t.alerts, &id)? {
                    Some(bytes) => self.match_in(w, &decode(&id, &bytes)?),
                    None => Ok(Vec::new()),
                }
            })?;
            self.publish(&hits);
        }
        Ok(())
    }

    /// Runs the matching pass for stored alerts `ids` again (after the
    /// matching settings changed), in one transaction and one sync: hits
    /// they make under the settings in force now are recorded and notified
    /// as any new hit; hits already recorded stay as they are.
    pub async fn rematch(
        &self,
        ids: &[crate::ids::AlertId],
    ) -> Result<Vec<crate::proto::v1::Hit>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.write_matched(|w| {
            let mut hits = Vec::new();
            for id in ids {
                let key = id.to_string();
                if let Some(bytes) = w.tx.get(w.t.alerts, &key)? {
                    hits.extend(self.match_in(w, &index::decode_alert(key.as_bytes(), &bytes)?)?);
                }
            }
            Ok::<_, StoreError>((hits.clone(), hits))
        })
        .await
    }

    /// Runs `body` as one transaction that returns what it wrote and the
    /// hits its matching made; waits until that is on disk, then tells the
    /// hit watchers (never before: nobody hears of a hit a crash could
    /// still undo).
    pub(super) async fn write_matched<T, E>(
        &self,
        body: impl FnOnce(&mut Write<'_, '_>) -> Result<(T, Vec<Hit>), E>,
    ) -> Result<T, E>
    where
        E: From<super::engine::EngineError> + From<StoreError>,
    {
        let (written, hits) = self.write(body)?;
        self.commit.durable().await?;
        self.publish(&hits);
        Ok(written)
    }

    pub(super) fn publish(&self, hits: &[Hit]) {
        if let Some(m) = self.metrics.get() {
            let found = crate::proto::v1::HitChange::Found as i32;
            for h in hits.iter().filter(|h| h.change == found) {
                let kind = crate::proto::identifier_type_name(h.r#type);
                m.hits
                    .get_or_create(&crate::metrics::label("type", &kind))
                    .inc();
            }
        }
        if let Some(max) = hits.iter().map(|h| h.sequence).max() {
            self.hit_seq.send_if_modified(|cur| {
                let changed = max > *cur;
                *cur = (*cur).max(max);
                changed
            });
        }
    }

    /// The latest hit sequence, updated after each durable write that found hits.
    pub fn watch_hits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.hit_seq.subscribe()
    }

    /// How many hits have a sequence greater than `after`, and the newest
    /// sequence (0 when there is none).
    pub fn count_hits(&self, after: u64) -> Result<(u64, u64), StoreError> {
        let snapshot = self.db.snapshot();
        let count = snapshot
            .range(self.t.hits, (after.saturating_add(1)).to_be_bytes()..)
            .count() as u64;
        let latest = snapshot
            .range::<&[u8]>(self.t.hits, ..)
            .next_back()
            .transpose()?
            .map(|(k, _)| u64::from_be_bytes(k.as_slice().try_into().unwrap_or([0; 8])))
            .unwrap_or(0);
        Ok((count, latest))
    }

    /// Hits with sequence greater than `after`, in order, at most `limit`.
    pub fn hits_after(&self, after: u64, limit: usize) -> Result<Vec<Hit>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .range(self.t.hits, (after.saturating_add(1)).to_be_bytes()..)
        {
            if out.len() == limit {
                break;
            }
            let (k, v) = item?;
            out.push(index::decode_hit(&k, &v)?);
        }
        Ok(out)
    }

    /// Why a notice from `from` about our alert `record` cannot be true,
    /// if it cannot: the alert is retracted, holds no identifier of the
    /// type the notice names, or our policy would not have let `from` see
    /// that identifier (so `from` cannot have matched it). A peer cannot
    /// invent hits on our books.
    fn notice_disagrees(
        &self,
        record: &StoredAlert,
        from: &AgencyId,
        notice: &HitNotice,
    ) -> Option<String> {
        let ours = &notice.your_alert_id;
        if record.alert.as_ref().is_none_or(|a| a.retracted) {
            return Some(format!("{ours} is retracted"));
        }
        let kind = notice.r#type;
        let person = crate::proto::v1::IdentifierType::Person as i32;
        let carries = record.pseudonyms.iter().any(|s| {
            s.tokens.iter().any(|t| t.r#type == kind) || (kind == person && !s.encodings.is_empty())
        });
        let name = crate::proto::identifier_type_name(kind);
        if !carries {
            return Some(format!("{ours} holds no identifier of type {name}"));
        }
        let gate = self.notice_gate.get().and_then(std::sync::Weak::upgrade)?;
        let by = crate::matching::MatchedBy::found(notice.fuzzy, notice.evidence.as_ref());
        (!gate.may_disclose(record, from, kind, by))
            .then(|| format!("our policy does not share the {name} of {ours} with {from}"))
    }

    /// Records a hit that `from` found between one of its alerts and one of
    /// ours. Refused when the alerts are not what the notice claims, or
    /// when our alert could not have matched it (see `notice_disagrees`).
    pub async fn record_notice(
        &self,
        from: &AgencyId,
        notice: &HitNotice,
    ) -> Result<NoticeOutcome, StoreError> {
        let refuse = |r: String| Ok(NoticeOutcome::Refused(r));
        let Ok(ours) = notice.your_alert_id.parse::<AlertId>() else {
            return refuse("hit_notice.your_alert_id: not an alert id".into());
        };
        let Ok(theirs) = notice.our_alert_id.parse::<AlertId>() else {
            return refuse("hit_notice.our_alert_id: not an alert id".into());
        };
        let own = &self.scope()?.own;
        if ours.origin() != own {
            return refuse(format!(
                "hit_notice.your_alert_id: {ours} is not an alert of {own}"
            ));
        }
        if theirs.origin() != from {
            return refuse(format!(
                "hit_notice.our_alert_id: {theirs} is not an alert of {from}"
            ));
        }
        let Some(record) = self.get(&ours)? else {
            return refuse(format!("hit_notice.your_alert_id: {ours} is unknown here"));
        };
        if let Some(why) = self.notice_disagrees(&record, from, notice) {
            return refuse(format!("hit_notice: {why}"));
        }
        let hit = Hit {
            sequence: 0,
            r#type: notice.r#type,
            local_alert_id: ours.to_string(),
            other_alert_id: theirs.to_string(),
            other_agency: from.to_string(),
            similarity: notice.similarity,
            detected_at: Some(crate::time::now()),
            source: HitSource::Notice as i32,
            fuzzy: notice.fuzzy,
            known_there: true,
            strength: notice.strength,
            evidence: notice.evidence,
            ..Default::default()
        };
        let recorded = self.write(|w| {
            if index::pair_dismissed(w, &hit.local_alert_id, &hit.other_alert_id)? {
                return Ok::<_, StoreError>(None);
            }
            let recorded = index::record_hit(w, hit.clone())?;
            if recorded.is_none() {
                index::mark_known_there(w, &hit)?;
            }
            Ok(recorded)
        })?;
        self.commit.durable().await?;
        Ok(match recorded {
            Some(hit) => {
                self.publish(std::slice::from_ref(&hit));
                NoticeOutcome::Recorded(Box::new(hit))
            }
            None => NoticeOutcome::Known,
        })
    }
}
