//! The hit log as a client reads it ([`Hits`]: count, get, follow), and
//! reviewing hits: an analyst's verdict (confirmed, false positive, needs
//! information) on a hit, the step Prüm II requires before core data is
//! requested. The verdict covers every hit between the same two alerts;
//! the store keeps it, writes it into the hit log, and sends it to the
//! other agency when that agency knows of the hit.

use std::sync::Arc;

use thiserror::Error;

use crate::audit::CallEntry;
use crate::identity::ClientIdentity;
use crate::proto::v1::{Hit, HitReview, ReviewHitRequest};
use crate::store::{Store, StoreError, check_note, is_verdict};
use crate::violation::FieldViolation;

#[derive(Debug, Error)]
pub enum ReviewError {
    #[error("invalid request: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldViolation>),
    #[error("hit {0} not found")]
    NotFound(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The node's hits: what a client counts, reads, follows and reviews.
pub struct Hits {
    store: Arc<Store>,
}

impl Hits {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Hit `number` as it stands now.
    pub fn get(&self, number: u64) -> Result<Hit, ReviewError> {
        self.store.hit(number)?.ok_or(ReviewError::NotFound(number))
    }

    /// How many hit log entries follow position `after`, and the log's
    /// latest position.
    pub fn count(&self, after: u64) -> Result<(u64, u64), StoreError> {
        self.store.count_hits(after)
    }

    /// Up to `limit` hit log entries after position `after`, in order.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<Hit>, StoreError> {
        self.store.hits_after(after, limit)
    }

    /// Told the log's latest position each time entries are committed.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.watch_hits()
    }

    /// Records `reviewer`'s verdict on hit `req.number` (see [`review`]).
    pub async fn review(
        &self,
        reviewer: &ClientIdentity,
        req: ReviewHitRequest,
        call: &CallEntry,
    ) -> Result<Hit, ReviewError> {
        review(&self.store, reviewer, req, call).await
    }
}

/// Records `reviewer`'s verdict on hit `req.number`; the call's audit entry
/// (naming both alerts, the verdict and the hit) is written with it.
async fn review(
    store: &Store,
    reviewer: &ClientIdentity,
    req: ReviewHitRequest,
    call: &CallEntry,
) -> Result<Hit, ReviewError> {
    let mut problems = Vec::new();
    if req.number == 0 {
        problems.push(FieldViolation::new(
            "number",
            "is required (the hit's number)",
        ));
    }
    if !is_verdict(req.verdict) {
        problems.push(FieldViolation::new(
            "verdict",
            "must be confirmed, false_positive or needs_information",
        ));
    }
    if let Err(why) = check_note(&req.note) {
        problems.push(FieldViolation::new("note", why));
    }
    if !problems.is_empty() {
        return Err(ReviewError::Invalid(problems));
    }
    call.detail("hit", req.number);
    call.detail("verdict", crate::proto::verdict_name(req.verdict));
    let review = HitReview {
        verdict: req.verdict,
        note: req.note,
        reviewer: reviewer.name.to_string(),
        ..Default::default()
    };
    store
        .review_hit(req.number, review, |entries| {
            if let Some(h) = entries.first() {
                call.object(h.local_alert_id.clone());
                call.object(h.other_alert_id.clone());
            }
            call.detail("hits", entries.len());
            call.done("OK").into_iter().collect()
        })
        .await?
        .ok_or(ReviewError::NotFound(req.number))
}
