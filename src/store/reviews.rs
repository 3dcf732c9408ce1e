//! Reviews of hits: a person's verdict on a pair of alerts (ours and the
//! other agency's). Both agencies' latest verdicts are kept per pair in
//! `hit_reviews`; each review writes a new hit log entry for every hit of
//! the pair (so `WatchHits` shows it), and a review made here is queued to
//! the other agency when it knows of the hit — all in one transaction with
//! its audit entry.

use prost::Message;

use super::engine::Reads;
use super::{OutboxItem, Store, StoreError, Write, index};
use crate::audit::Event;
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::envelope::Payload;
use crate::proto::v1::{Hit, HitChange, HitReview, HitReviewNotice, HitVerdict, PairReviews};

/// The longest review note, in bytes: a line for the other analyst, not a
/// case file (and never a place for identifiers).
pub const MAX_NOTE_BYTES: usize = 500;

/// The longest reviewer name a peer may send (a client name).
const MAX_REVIEWER_BYTES: usize = 128;

/// What became of a review from a peer.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceivedReview {
    /// Stored: the hit log entries it wrote.
    Recorded(Vec<Hit>),
    /// This revision (or a newer one) is held already.
    Known,
    /// Refused, with the reason for the sender.
    Refused(String),
}

fn reviews_of(w: &mut Write<'_, '_>, pair: &[u8]) -> Result<PairReviews, StoreError> {
    match w.tx.get(w.t.hit_reviews, pair)? {
        Some(v) => {
            PairReviews::decode(v.as_slice()).map_err(|e| StoreError::corrupt("hit_reviews", e))
        }
        None => Ok(PairReviews::default()),
    }
}

/// Writes `reviews` for the pair and a new log entry, with `change`, for
/// each of its hits; returns the entries.
fn rewrite_pair(
    w: &mut Write<'_, '_>,
    own: &str,
    other: &str,
    reviews: &PairReviews,
    change: HitChange,
) -> Result<Vec<Hit>, StoreError> {
    w.tx.insert(
        w.t.hit_reviews,
        index::pair_key(own, other),
        reviews.encode_to_vec(),
    )?;
    let mut entries = Vec::new();
    for number in index::pair_hits(w, own, other)? {
        let Some(latest) = index::latest_entry(&*w.tx, w.t, number)? else {
            continue;
        };
        let known_there = latest.known_there || change == HitChange::ReviewReceived;
        entries.push(index::append_entry(
            w,
            Hit {
                change: change as i32,
                our_review: reviews.ours.clone(),
                their_review: reviews.theirs.clone(),
                known_there,
                ..latest
            },
        )?);
    }
    Ok(entries)
}

/// Why a review from a peer cannot be taken, if it cannot.
fn check_received(review: &HitReview) -> Option<String> {
    if !is_verdict(review.verdict) {
        return Some(
            "hit_review.review.verdict: must be confirmed, false_positive or needs_information"
                .into(),
        );
    }
    if review.revision == 0 {
        return Some("hit_review.review.revision: must be at least 1".into());
    }
    if let Err(why) = check_note(&review.note) {
        return Some(format!("hit_review.review.note: {why}"));
    }
    if review.reviewer.len() > MAX_REVIEWER_BYTES || review.reviewer.chars().any(char::is_control) {
        return Some(format!(
            "hit_review.review.reviewer: at most {MAX_REVIEWER_BYTES} bytes, printable"
        ));
    }
    None
}

/// Whether `v` is one of the three verdicts (not unspecified, not unknown).
pub fn is_verdict(v: i32) -> bool {
    matches!(
        HitVerdict::try_from(v),
        Ok(HitVerdict::Confirmed | HitVerdict::FalsePositive | HitVerdict::NeedsInformation)
    )
}

/// A review note: at most [`MAX_NOTE_BYTES`], no control characters but
/// line breaks.
pub fn check_note(note: &str) -> Result<(), String> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(format!(
            "at most {MAX_NOTE_BYTES} bytes, got {}",
            note.len()
        ));
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err("must be printable text (line breaks allowed)".into());
    }
    Ok(())
}

impl Store {
    /// Hit `number` as it stands now, if there is one.
    pub fn hit(&self, number: u64) -> Result<Option<Hit>, StoreError> {
        index::latest_entry(&self.db.snapshot(), &self.t, number)
    }

    /// Records this agency's review of hit `number` (it covers every hit
    /// of the same pair of alerts), queues it to the other agency when that
    /// agency knows of the hit, and appends `events(entries)` to the audit
    /// log in the same transaction; durable when this returns. `None` when
    /// there is no such hit. `review` needs its verdict, note and reviewer;
    /// its agency, time and revision are set here.
    pub async fn review_hit(
        &self,
        number: u64,
        review: HitReview,
        events: impl FnOnce(&[Hit]) -> Vec<Event>,
    ) -> Result<Option<Hit>, StoreError> {
        let own = self.scope()?.own.clone();
        let entries = self.write(|w| {
            let Some(hit) = index::latest_entry(&*w.tx, w.t, number)? else {
                return Ok::<_, StoreError>(None);
            };
            let pair = index::pair_key(&hit.local_alert_id, &hit.other_alert_id);
            let mut reviews = reviews_of(w, &pair)?;
            let review = HitReview {
                agency: own.to_string(),
                reviewed_at: Some(crate::time::now()),
                revision: reviews.ours.as_ref().map_or(0, |r| r.revision) + 1,
                ..review
            };
            reviews.ours = Some(review.clone());
            if review.verdict == HitVerdict::Confirmed as i32 {
                self.release_held_notices(w, &hit.local_alert_id, &hit.other_alert_id)?;
            }
            let entries = rewrite_pair(
                w,
                &hit.local_alert_id,
                &hit.other_alert_id,
                &reviews,
                HitChange::Reviewed,
            )?;
            if entries.iter().any(|h| h.known_there) {
                let other: AlertId = hit
                    .other_alert_id
                    .parse()
                    .map_err(|e: crate::ids::IdError| StoreError::corrupt("hit", e))?;
                index::queue(
                    w,
                    &OutboxItem {
                        peer: other.origin().clone(),
                        payload: Payload::HitReview(HitReviewNotice {
                            your_alert_id: hit.other_alert_id.clone(),
                            our_alert_id: hit.local_alert_id.clone(),
                            review: Some(review),
                        }),
                        rule: String::new(),
                        disclosed: "hit review: alert ids, verdict, note, reviewer".into(),
                    },
                )?;
            }
            w.append(events(&entries))?;
            Ok(Some(entries))
        })?;
        let Some(entries) = entries else {
            return Ok(None);
        };
        self.commit.durable().await?;
        self.publish(&entries);
        Ok(entries.into_iter().find(|h| h.number == number))
    }

    /// Records the other agency's review of a hit between one of its alerts
    /// and one of ours, with `event(outcome)` in the audit log, durably.
    /// Refused when the alerts are not what the review claims or there is
    /// no hit between them here.
    pub async fn record_review(
        &self,
        from: &AgencyId,
        notice: &HitReviewNotice,
        event: impl Fn(&'static str) -> Event,
    ) -> Result<ReceivedReview, StoreError> {
        let refused = |why: String| Ok(ReceivedReview::Refused(why));
        let Ok(ours) = notice.your_alert_id.parse::<AlertId>() else {
            return refused("hit_review.your_alert_id: not an alert id".into());
        };
        let Ok(theirs) = notice.our_alert_id.parse::<AlertId>() else {
            return refused("hit_review.our_alert_id: not an alert id".into());
        };
        let own = &self.scope()?.own;
        if ours.origin() != own {
            return refused(format!(
                "hit_review.your_alert_id: {ours} is not an alert of {own}"
            ));
        }
        if theirs.origin() != from {
            return refused(format!(
                "hit_review.our_alert_id: {theirs} is not an alert of {from}"
            ));
        }
        let Some(review) = notice.review.clone() else {
            return refused("hit_review.review: is required".into());
        };
        if let Some(why) = check_received(&review) {
            return refused(why);
        }
        let (own, other) = (ours.to_string(), theirs.to_string());
        let outcome = self.write(|w| {
            if index::pair_hits(w, &own, &other)?.is_empty() {
                return Ok::<_, StoreError>(ReceivedReview::Refused(format!(
                    "hit_review: no hit between {own} and {other} here"
                )));
            }
            let pair = index::pair_key(&own, &other);
            let mut reviews = reviews_of(w, &pair)?;
            if reviews
                .theirs
                .as_ref()
                .is_some_and(|held| held.revision >= review.revision)
            {
                w.append([event("duplicate")])?;
                return Ok(ReceivedReview::Known);
            }
            // Whose review it is comes from the certificate, not the message.
            reviews.theirs = Some(HitReview {
                agency: from.to_string(),
                ..review.clone()
            });
            let entries = rewrite_pair(w, &own, &other, &reviews, HitChange::ReviewReceived)?;
            w.append([event("stored")])?;
            Ok(ReceivedReview::Recorded(entries))
        })?;
        if !matches!(outcome, ReceivedReview::Refused(_)) {
            self.commit.durable().await?;
        }
        if let ReceivedReview::Recorded(entries) = &outcome {
            self.publish(entries);
        }
        Ok(outcome)
    }
}
