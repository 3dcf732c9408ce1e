//! Applying what peers deliver: authenticate the origin, validate, apply the
//! inbound policy, store durably, and only then acknowledge. A refused
//! envelope is recorded here and acked REJECTED with the reason, so the
//! sender stops retrying it.

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::broadcast;

use crate::audit::{Action, Event};
use crate::config::Limits;
use crate::identity::NodeIdentity;
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::envelope::Payload;
use crate::proto::v1::{
    AckStatus, DeliveryAck, Envelope, IdentifierType, SharedAlert, SharedSubject, SubjectRole,
};
use crate::validate::check_content;

use crate::disclosure::{Disclosures, Received as RequestReceived};
use crate::proto::v1::{DisclosureRequest, HitNotice, HitReviewNotice, RefusalRecord, StoredAlert};
use crate::sharing::Sharing;
use crate::time::timestamp;

/// Length of a token value (HMAC-SHA256).
const TOKEN_BYTES: usize = 32;
use crate::store::{ApplyOutcome, NoticeOutcome, ReceivedReview, Store, StoreError};

use super::received_record;

#[derive(Debug, Error)]
pub enum InboundError {
    /// The sender tried to deliver an alert it did not originate. This is a
    /// protocol violation, not a bad envelope: the stream is ended.
    #[error("envelope {sequence}: alert origin `{claimed}` is not the authenticated peer `{peer}`")]
    WrongOrigin {
        sequence: u64,
        claimed: String,
        peer: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Notification of a newly stored received alert (for watchers, demo and benchmarks).
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub alert_id: String,
    pub version: u64,
}

pub struct Inbound {
    store: Arc<Store>,
    limits: Limits,
    /// Retention this node keeps received alerts to (`bound_retention`).
    rules: crate::config::AlertRules,
    sharing: Arc<Sharing>,
    disclosures: Arc<Disclosures>,
    /// Statistics report shares and noisy sums go here.
    analytics: Arc<crate::analytics::Analytics>,
    /// Alert versions stored / found already held, since start.
    stored: std::sync::atomic::AtomicU64,
    duplicates: std::sync::atomic::AtomicU64,
    metrics: crate::metrics::Metrics,
    events: broadcast::Sender<Received>,
    /// What each peer may create here per minute (see [`Creations`]).
    creations: Creations,
    /// What this node understands (announced in Hello, less what
    /// `[compat]` withholds).
    ours: crate::release::Capabilities,
    /// Whether each peer said, in its last Hello, that it takes "not
    /// understood" acks; one that did not (the previous release) would
    /// count such an ack as delivered, so its stream ends instead.
    takes_not_understood: std::sync::Mutex<std::collections::HashMap<AgencyId, bool>>,
}

/// Bounds on what one peer may make this node record, per minute: every
/// disclosure request, hit notice and review it sends becomes a record,
/// an audit entry and work for a person here. A peer over its rate gets
/// the envelopes before the one over acked, and the stream ended with
/// RESOURCE_EXHAUSTED: the sender keeps the rest and retries after its
/// backoff, so nothing is lost, and a flood costs this node only the
/// rate. The rates are far above what people produce (a request takes an
/// officer minutes to write) and below what fills a disk.
pub struct Creations {
    requests: crate::ratelimit::RateLimiter,
    notices: crate::ratelimit::RateLimiter,
    reviews: crate::ratelimit::RateLimiter,
}

/// Disclosure requests one peer may send per minute (bursts of twice that).
pub const REQUESTS_PER_MINUTE: u32 = 60;
/// Hit notices one peer may send per minute (a rematch after a key
/// rotation sends one per hit, so bursts are large).
pub const NOTICES_PER_MINUTE: u32 = 6_000;
/// Hit reviews one peer may send per minute.
pub const REVIEWS_PER_MINUTE: u32 = 1_200;

impl Default for Creations {
    fn default() -> Self {
        use crate::ratelimit::RateLimiter;
        Self {
            requests: RateLimiter::new(REQUESTS_PER_MINUTE, 2 * REQUESTS_PER_MINUTE),
            notices: RateLimiter::new(NOTICES_PER_MINUTE, NOTICES_PER_MINUTE),
            reviews: RateLimiter::new(REVIEWS_PER_MINUTE, REVIEWS_PER_MINUTE),
        }
    }
}

impl Creations {
    /// `None` when `payload` from `peer` is within its rate; else what
    /// the peer sends too much of.
    fn over(&self, peer: &str, payload: &Payload) -> Option<&'static str> {
        let (limiter, what) = match payload {
            Payload::DisclosureRequest(_) => (&self.requests, "disclosure requests"),
            Payload::HitNotice(_) => (&self.notices, "hit notices"),
            Payload::HitReview(_) => (&self.reviews, "hit reviews"),
            _ => return None,
        };
        (!limiter.allow(peer)).then_some(what)
    }
}

/// What a batch came to: one ack per envelope taken, and, when the peer
/// went over a rate, what of (the envelopes from there on are not acked).
pub struct Delivered {
    pub acks: Vec<DeliveryAck>,
    pub throttled: Option<&'static str>,
    /// Something the sender sent that this node does not understand, when
    /// the sender does not take "not understood" acks: the stream ends
    /// there, unacknowledged, and the sender keeps it.
    pub not_understood: Option<String>,
}

impl Inbound {
    pub fn new(
        store: Arc<Store>,
        (limits, rules): (Limits, crate::config::AlertRules),
        sharing: Arc<Sharing>,
        (disclosures, analytics): (Arc<Disclosures>, Arc<crate::analytics::Analytics>),
        metrics: crate::metrics::Metrics,
    ) -> Self {
        Self {
            store,
            limits,
            rules,
            sharing,
            disclosures,
            analytics,
            stored: Default::default(),
            duplicates: Default::default(),
            metrics,
            events: broadcast::channel(1024).0,
            creations: Creations::default(),
            ours: crate::release::Capabilities::ours(),
            takes_not_understood: Default::default(),
        }
    }

    /// Understands only `ours` (the node's announced set).
    pub fn understanding(mut self, ours: crate::release::Capabilities) -> Self {
        self.ours = ours;
        self
    }

    /// Records what `peer` announced in its Hello.
    pub fn greeted(&self, peer: &AgencyId, theirs: &crate::release::Capabilities) {
        self.takes_not_understood
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                peer.clone(),
                theirs.has(crate::release::Capability::NotUnderstood),
            );
    }

    fn takes_not_understood(&self, peer: &AgencyId) -> bool {
        self.takes_not_understood
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            .copied()
            .unwrap_or(false)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Received> {
        self.events.subscribe()
    }

    /// Alert versions stored since start (each (alert, version) counts once:
    /// a resend is a duplicate, not a store).
    pub fn stored_total(&self) -> u64 {
        self.stored.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self, from: &NodeIdentity, outcome: &str, n: usize) {
        if n > 0 {
            self.metrics
                .received
                .get_or_create(&crate::metrics::peer_and(&from.agency, "outcome", outcome))
                .inc_by(n as u64);
        }
    }

    /// Deliveries of versions already held, since start (resends).
    pub fn duplicate_total(&self) -> u64 {
        self.duplicates.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks one envelope. `Ok(None)` means acceptable; `Ok(Some(reason))`
    /// means permanently refused (acked as REJECTED so the sender stops).
    fn check(
        &self,
        from: &NodeIdentity,
        sequence: u64,
        alert: &SharedAlert,
    ) -> Result<Option<String>, InboundError> {
        let wrong_origin = |claimed: &str| InboundError::WrongOrigin {
            sequence,
            claimed: crate::text::escape(claimed).into_owned(),
            peer: from.agency.to_string(),
        };
        if alert.origin != from.agency.as_str() {
            return Err(wrong_origin(&alert.origin));
        }
        let id: AlertId = match alert.id.parse() {
            Ok(id) => id,
            Err(e) => return Ok(Some(format!("alert.id: {e}"))),
        };
        if id.origin() != &from.agency {
            return Err(wrong_origin(id.origin().as_str()));
        }
        if alert.version == 0 {
            return Ok(Some("alert.version: must be at least 1".into()));
        }
        if !alert.retracted {
            let Some(content) = &alert.content else {
                return Ok(Some("alert.content: is required".into()));
            };
            let mut violations = Vec::new();
            check_content(content, "alert.content", &self.limits, &mut violations);
            if let Some(v) = violations.first() {
                return Ok(Some(format!("{}: {}", v.field, v.description)));
            }
            if crate::store::expired(Some(content), std::time::SystemTime::now()) {
                return Ok(Some(
                    "alert.content.retention_until: the retention deadline has passed".into(),
                ));
            }
        }
        Ok(self.check_subjects(&alert.subjects))
    }

    /// Pseudonymous subjects: bounded in number, every token well-formed.
    fn check_subjects(&self, subjects: &[SharedSubject]) -> Option<String> {
        let max_subjects = self.limits.max_subjects.get();
        // Up to two key versions are active during a rotation; allow slack.
        let max_tokens = self.limits.max_identifiers_per_subject.get() * 4;
        if subjects.len() > max_subjects {
            return Some(format!("alert.subjects: at most {max_subjects} subjects"));
        }
        for (i, s) in subjects.iter().enumerate() {
            if SubjectRole::try_from(s.role).is_err() {
                return Some(format!(
                    "alert.subjects[{i}].role: unknown enum value {}",
                    s.role
                ));
            }
            if s.tokens.len() > max_tokens {
                return Some(format!(
                    "alert.subjects[{i}].tokens: at most {max_tokens} tokens"
                ));
            }
            if s.encodings.len() > max_tokens {
                return Some(format!(
                    "alert.subjects[{i}].encodings: at most {max_tokens} encodings"
                ));
            }
            for (j, e) in s.encodings.iter().enumerate() {
                if let Some(why) = crate::matching::encoding_problem(e) {
                    return Some(format!("alert.subjects[{i}].encodings[{j}]: {why}"));
                }
            }
            for (j, t) in s.tokens.iter().enumerate() {
                let known = IdentifierType::try_from(t.r#type)
                    .is_ok_and(|k| k != IdentifierType::Unspecified);
                if !known || t.key_version == 0 || t.value.len() != TOKEN_BYTES {
                    return Some(format!(
                        "alert.subjects[{i}].tokens[{j}]: needs a known type, a key version and {TOKEN_BYTES} bytes"
                    ));
                }
            }
        }
        None
    }

    /// Applies a batch of envelopes from one authenticated peer and returns one
    /// ack per envelope taken (all of them, unless the peer went over a
    /// rate). Every stored alert is flushed before this returns.
    pub async fn apply_batch(
        &self,
        from: &NodeIdentity,
        envelopes: Vec<Envelope>,
    ) -> Result<Delivered, InboundError> {
        let now = timestamp(std::time::SystemTime::now());
        let Sorted {
            mut acks,
            records,
            notices,
            reviews,
            requests,
            steps,
            stats,
            refusals,
            throttled,
            not_understood,
        } = self.sort(from, envelopes, now)?;
        let actor = format!("peer:{}", from.agency);
        self.record_refused(from, &actor, &refusals).await?;
        // Logged with the received alerts, in the flush that acknowledges them.
        let mut events = self
            .apply_notices(from, &actor, notices, &mut acks, now)
            .await?;
        events.extend(
            self.apply_reviews(from, &actor, reviews, &mut acks, now)
                .await?,
        );
        events.extend(
            self.apply_requests(from, &actor, requests, &mut acks, now)
                .await?,
        );
        events.extend(
            self.apply_steps(from, &actor, steps, &mut acks, now)
                .await?,
        );
        self.apply_stats(from, &actor, stats, &mut acks, now)
            .await?;
        self.apply_alerts(from, &actor, records, events, &mut acks)
            .await?;
        if let Some(what) = throttled {
            self.count(from, "throttled", 1);
            tracing::warn!(peer = %from.agency, what, "peer over its rate; delivery stream ended");
        }
        Ok(Delivered {
            acks,
            throttled,
            not_understood,
        })
    }

    /// Takes out of a batch what this node cannot apply (see
    /// [`super::needs::not_understood`]): each is answered NOT_UNDERSTOOD
    /// when the sender takes that answer; otherwise the batch stops before
    /// the first one, and the sender keeps it and the rest, unacknowledged.
    fn set_aside_not_understood(
        &self,
        from: &NodeIdentity,
        envelopes: Vec<Envelope>,
        out: &mut Sorted,
    ) -> Vec<Envelope> {
        let takes_the_answer = self.takes_not_understood(&from.agency);
        let mut kept = Vec::with_capacity(envelopes.len());
        for env in envelopes {
            let Some(why) = super::needs::not_understood(&env, &self.ours) else {
                kept.push(env);
                continue;
            };
            if !takes_the_answer {
                out.not_understood = Some(why);
                break;
            }
            tracing::info!(peer = %from.agency, sequence = env.sequence, %why, "envelope not understood; the sender keeps it");
            out.acks.push(DeliveryAck {
                sequence: env.sequence,
                status: AckStatus::NotUnderstood as i32,
                reason: why,
                ..Default::default()
            });
        }
        kept
    }

    /// Checks each envelope: an ack per envelope (STORED unless refused
    /// here), the received alerts the inbound policy accepts and the hit
    /// notices (each with the index of its ack), and the refusals.
    fn sort(
        &self,
        from: &NodeIdentity,
        envelopes: Vec<Envelope>,
        now: pbjson_types::Timestamp,
    ) -> Result<Sorted, InboundError> {
        let mut out = Sorted::default();
        let envelopes = self.set_aside_not_understood(from, envelopes, &mut out);
        for env in envelopes {
            if self.stop_before(from, &env, &mut out) {
                break;
            }
            let mut ack = DeliveryAck {
                sequence: env.sequence,
                status: AckStatus::Stored as i32,
                ..Default::default()
            };
            let mut refusal = RefusalRecord {
                at: Some(now),
                peer: from.agency.to_string(),
                ..Default::default()
            };
            // Every id the peer names, checked before anything is recorded.
            let malformed = env
                .payload
                .as_ref()
                .and_then(|p| super::syntax::check(&from.agency, p).err());
            let reason = match env.payload {
                None => Some("envelope has no payload".to_owned()),
                Some(_) if malformed.is_some() => malformed,
                Some(Payload::Alert(alert)) => {
                    // Only a well-formed id names the refusal (it is printed).
                    if alert.id.parse::<AlertId>().is_ok() {
                        refusal.alert_id = alert.id.clone();
                    }
                    refusal.version = alert.version;
                    match self.check(from, env.sequence, &alert)? {
                        Some(reason) => Some(reason),
                        None => {
                            let mut record = received_record(alert);
                            super::bound_retention(
                                &mut record,
                                &self.rules,
                                std::time::SystemTime::now(),
                            );
                            let decision = self.sharing.inbound(&record, &from.agency);
                            if decision.accepted {
                                out.records.push((out.acks.len(), record));
                                None
                            } else {
                                refusal.rule = decision.rule.unwrap_or_default();
                                Some(format!("refused by policy: {}", decision.reason))
                            }
                        }
                    }
                }
                Some(Payload::HitNotice(notice)) => {
                    out.notices.push((out.acks.len(), notice));
                    None
                }
                Some(Payload::HitReview(review)) => {
                    out.reviews.push((out.acks.len(), review));
                    None
                }
                Some(Payload::DisclosureRequest(request)) => {
                    out.requests.push((out.acks.len(), request));
                    None
                }
                Some(
                    p @ (Payload::DisclosureDecision(_)
                    | Payload::ClarificationAnswer(_)
                    | Payload::Release(_)
                    | Payload::ReleaseWithdrawal(_)),
                ) => {
                    out.steps.push((out.acks.len(), p));
                    None
                }
                Some(
                    p @ (Payload::StatsReports(_)
                    | Payload::StatsAggregate(_)
                    | Payload::StatsCall(_)),
                ) => {
                    out.stats.push((out.acks.len(), p));
                    None
                }
            };
            if let Some(reason) = reason {
                tracing::warn!(peer = %from.agency, sequence = env.sequence, reason = %crate::text::Escaped(&reason), "envelope refused");
                ack.status = AckStatus::Rejected as i32;
                ack.reason = reason.clone();
                refusal.reason = reason;
                out.refusals.push(refusal);
            }
            out.acks.push(ack);
        }
        Ok(out)
    }

    /// Whether the batch stops before `env`, unacknowledged from there on,
    /// and why (in `out`): the peer went over a rate, or sent statistics of
    /// a plan this node does not follow yet (the directory that brings it
    /// is on its way), which the sender then sends again later.
    fn stop_before(&self, from: &NodeIdentity, env: &Envelope, out: &mut Sorted) -> bool {
        let Some(p) = env.payload.as_ref() else {
            return false;
        };
        if let Some(what) = self.creations.over(from.agency.as_str(), p) {
            out.throttled = Some(what);
            return true;
        }
        if let Some(why) = self.analytics.not_yet(p) {
            out.not_understood = Some(why);
            return true;
        }
        false
    }

    /// Logs and records the refusals, flushed before the REJECTED acks go
    /// out: the sender drops the envelope on that ack, so this is the only
    /// trace left.
    async fn record_refused(
        &self,
        from: &NodeIdentity,
        actor: &str,
        refusals: &[RefusalRecord],
    ) -> Result<(), InboundError> {
        self.store.audit_append(refusals.iter().map(|r| {
            let mut e = Event::new(actor, Action::AlertRefuse, "rejected")
                .detail("version", r.version)
                .detail("reason", &r.reason);
            if !r.alert_id.is_empty() {
                e = e.object(r.alert_id.clone());
            }
            if !r.rule.is_empty() {
                e = e.detail("rule", &r.rule);
            }
            e
        }))?;
        self.store.record_refusals(refusals).await?;
        self.count(from, "refused", refusals.len());
        Ok(())
    }

    /// A peer message refused for good: logged, kept in the refusal log
    /// (flushed before the REJECTED ack, after which the sender drops it),
    /// and its ack set.
    async fn refuse(
        &self,
        from: &NodeIdentity,
        what: &str,
        alert_id: &str,
        reason: &str,
        ack: &mut DeliveryAck,
        now: pbjson_types::Timestamp,
    ) -> Result<(), InboundError> {
        tracing::warn!(peer = %from.agency, reason = %crate::text::Escaped(reason), "{what} refused");
        self.store
            .record_refusals(&[RefusalRecord {
                at: Some(now),
                peer: from.agency.to_string(),
                alert_id: alert_id.to_owned(),
                reason: reason.to_owned(),
                ..Default::default()
            }])
            .await?;
        ack.status = AckStatus::Rejected as i32;
        ack.reason = reason.to_owned();
        Ok(())
    }

    /// Records the hit notices, setting their acks; returns their audit
    /// entries.
    async fn apply_notices(
        &self,
        from: &NodeIdentity,
        actor: &str,
        notices: Vec<(usize, HitNotice)>,
        acks: &mut [DeliveryAck],
        now: pbjson_types::Timestamp,
    ) -> Result<Vec<Event>, InboundError> {
        let mut events = Vec::new();
        for (idx, notice) in notices {
            let outcome = self.store.record_notice(&from.agency, &notice).await?;
            events.push(
                Event::new(
                    actor,
                    Action::NoticeReceive,
                    match &outcome {
                        NoticeOutcome::Recorded(_) => "stored",
                        NoticeOutcome::Known => "duplicate",
                        NoticeOutcome::Refused(_) => "rejected",
                    },
                )
                .object(notice.your_alert_id.clone())
                .object(notice.our_alert_id.clone())
                .detail("type", crate::proto::identifier_type_name(notice.r#type)),
            );
            match outcome {
                NoticeOutcome::Recorded(hit) => {
                    tracing::info!(peer = %from.agency, alert = %hit.local_alert_id, "hit notice recorded");
                }
                NoticeOutcome::Known => acks[idx].status = AckStatus::Duplicate as i32,
                NoticeOutcome::Refused(reason) => {
                    let alert = &notice.your_alert_id;
                    self.refuse(from, "hit notice", alert, &reason, &mut acks[idx], now)
                        .await?;
                }
            }
        }
        Ok(events)
    }

    /// Records the other agency's reviews of hits, setting their acks. A
    /// review taken (or known) is logged in its own write; the entries of
    /// refused ones are returned, to go with the received alerts.
    async fn apply_reviews(
        &self,
        from: &NodeIdentity,
        actor: &str,
        reviews: Vec<(usize, HitReviewNotice)>,
        acks: &mut [DeliveryAck],
        now: pbjson_types::Timestamp,
    ) -> Result<Vec<Event>, InboundError> {
        let mut refused = Vec::new();
        for (idx, notice) in reviews {
            let verdict = notice.review.as_ref().map_or(0, |r| r.verdict);
            let event = |outcome: &'static str| {
                Event::new(actor, Action::ReviewReceive, outcome)
                    .object(notice.your_alert_id.clone())
                    .object(notice.our_alert_id.clone())
                    .detail("verdict", crate::proto::verdict_name(verdict))
                    .detail("revision", notice.review.as_ref().map_or(0, |r| r.revision))
            };
            match self
                .store
                .record_review(&from.agency, &notice, event)
                .await?
            {
                ReceivedReview::Recorded(_) => {
                    tracing::info!(peer = %from.agency, alert = %notice.your_alert_id, "hit review received");
                }
                ReceivedReview::Known => acks[idx].status = AckStatus::Duplicate as i32,
                ReceivedReview::Refused(reason) => {
                    let alert = &notice.your_alert_id;
                    self.refuse(from, "hit review", alert, &reason, &mut acks[idx], now)
                        .await?;
                    refused.push(event("rejected").detail("reason", &reason));
                }
            }
        }
        Ok(refused)
    }

    /// Records the disclosure requests a peer sent us, setting their acks;
    /// returns the audit entries of refused ones (the others are logged in
    /// their own write).
    async fn apply_requests(
        &self,
        from: &NodeIdentity,
        actor: &str,
        requests: Vec<(usize, DisclosureRequest)>,
        acks: &mut [DeliveryAck],
        now: pbjson_types::Timestamp,
    ) -> Result<Vec<Event>, InboundError> {
        let mut refused = Vec::new();
        for (idx, request) in requests {
            let (id, alert) = (request.id.clone(), request.holder_alert_id.clone());
            match self
                .disclosures
                .receive(&from.agency, actor, request)
                .await?
            {
                RequestReceived::Stored(case) => {
                    tracing::info!(peer = %from.agency, request = %id, due = ?case.due_at, "disclosure request received");
                    acks[idx].due_at = case.due_at;
                }
                RequestReceived::Duplicate => acks[idx].status = AckStatus::Duplicate as i32,
                RequestReceived::Refused(reason) => {
                    self.refuse(
                        from,
                        "disclosure request",
                        &alert,
                        &reason,
                        &mut acks[idx],
                        now,
                    )
                    .await?;
                    refused.push(
                        Event::new(actor, Action::DisclosureRequestReceive, "rejected")
                            .object(id)
                            .object(alert)
                            .detail("reason", &reason),
                    );
                }
            }
        }
        Ok(refused)
    }

    /// Applies the steps of requests between us and `from` (decisions,
    /// answers, releases, withdrawals), setting their acks; returns the
    /// audit entries of refused ones.
    async fn apply_steps(
        &self,
        from: &NodeIdentity,
        actor: &str,
        steps: Vec<(usize, Payload)>,
        acks: &mut [DeliveryAck],
        now: pbjson_types::Timestamp,
    ) -> Result<Vec<Event>, InboundError> {
        use crate::disclosure::Applied;
        let mut refused = Vec::new();
        for (idx, payload) in steps {
            let (action, objects, detail) = match &payload {
                Payload::DisclosureDecision(d) => (
                    Action::DisclosureDecisionReceive,
                    vec![d.request_id.clone(), d.release_id.clone()],
                    crate::proto::short_name(
                        crate::proto::v1::DisclosureState::try_from(d.outcome)
                            .map(|s| s.as_str_name()),
                        "DISCLOSURE_STATE_",
                    ),
                ),
                Payload::ClarificationAnswer(a) => (
                    Action::DisclosureAnswerReceive,
                    vec![a.request_id.clone()],
                    String::new(),
                ),
                Payload::Release(r) => (
                    Action::ReleaseReceive,
                    vec![r.id.clone(), r.request_id.clone(), r.alert_id.clone()],
                    r.released_fields.clone(),
                ),
                Payload::ReleaseWithdrawal(w) => (
                    Action::ReleaseWithdrawReceive,
                    vec![w.release_id.clone(), w.request_id.clone()],
                    String::new(),
                ),
                _ => continue,
            };
            let event = |outcome: &'static str| {
                let mut e = Event::new(actor, action, outcome);
                e.objects = objects.iter().filter(|o| !o.is_empty()).cloned().collect();
                if detail.is_empty() {
                    e
                } else {
                    e.detail("what", &detail)
                }
            };
            let d = &self.disclosures;
            let agency = &from.agency;
            let applied = match payload {
                Payload::DisclosureDecision(x) => d.on_decision(agency, x, event).await?,
                Payload::ClarificationAnswer(x) => d.on_answer(agency, x, event).await?,
                Payload::Release(x) => d.on_release(agency, x, event).await?,
                Payload::ReleaseWithdrawal(x) => d.on_withdrawal(agency, x, event).await?,
                _ => continue,
            };
            match applied {
                Applied::Stored => {
                    tracing::info!(peer = %from.agency, action = %action, "disclosure step received");
                }
                Applied::Duplicate => acks[idx].status = AckStatus::Duplicate as i32,
                Applied::Refused(reason) => {
                    self.refuse(from, "disclosure step", "", &reason, &mut acks[idx], now)
                        .await?;
                    refused.push(event("rejected").detail("reason", &reason));
                }
            }
        }
        Ok(refused)
    }

    /// Hands statistics shares and sums to `analytics`, which keeps each
    /// durably (with its audit entry) before its ack is set; a refusal is
    /// recorded like any other.
    async fn apply_stats(
        &self,
        from: &NodeIdentity,
        actor: &str,
        stats: Vec<(usize, Payload)>,
        acks: &mut [DeliveryAck],
        now: pbjson_types::Timestamp,
    ) -> Result<(), InboundError> {
        use crate::analytics::{AnalyticsError, Applied};
        for (idx, payload) in stats {
            let applied = match payload {
                Payload::StatsReports(x) => self.analytics.on_reports(&from.agency, x, actor).await,
                Payload::StatsAggregate(x) => self.analytics.on_sum(&from.agency, x, actor).await,
                Payload::StatsCall(x) => self.analytics.on_call(&from.agency, x, actor).await,
                _ => continue,
            };
            let applied = match applied {
                Ok(a) => a,
                Err(AnalyticsError::Store(e)) => return Err(e.into()),
                Err(e) => Applied::Refused(e.to_string()),
            };
            match applied {
                Applied::Stored => {}
                Applied::Duplicate => acks[idx].status = AckStatus::Duplicate as i32,
                Applied::Refused(reason) => {
                    self.refuse(
                        from,
                        "statistics envelope",
                        "",
                        &reason,
                        &mut acks[idx],
                        now,
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Stores the accepted alerts in one write, with `events` and an
    /// `alert.receive` entry per alert in its flush, and sets their acks.
    async fn apply_alerts(
        &self,
        from: &NodeIdentity,
        actor: &str,
        records: Vec<(usize, StoredAlert)>,
        mut events: Vec<Event>,
        acks: &mut [DeliveryAck],
    ) -> Result<(), InboundError> {
        let outcomes = self
            .store
            .apply_received_batch_then(
                records.iter().map(|(_, r)| r.clone()).collect(),
                |outcomes| {
                    for ((_, rec), outcome) in records.iter().zip(outcomes) {
                        let Some(a) = &rec.alert else { continue };
                        let mut e = Event::new(
                            actor,
                            Action::AlertReceive,
                            match outcome {
                                ApplyOutcome::Stored => "stored",
                                ApplyOutcome::Duplicate => "duplicate",
                            },
                        )
                        .object(a.id.clone())
                        .detail("version", a.version);
                        if a.retracted {
                            e = e.detail("retracted", true);
                        }
                        events.push(e);
                    }
                    events
                },
            )
            .await?;
        for ((idx, rec), outcome) in records.into_iter().zip(outcomes) {
            let alert = rec.alert.unwrap_or_default();
            match outcome {
                ApplyOutcome::Duplicate => {
                    self.count(from, "duplicate", 1);
                    self.duplicates
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    acks[idx].status = AckStatus::Duplicate as i32;
                }
                ApplyOutcome::Stored => {
                    self.count(from, "stored", 1);
                    self.stored
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(peer = %from.agency, alert = %alert.id, version = alert.version, "alert received");
                    let _ = self.events.send(Received {
                        from: from.agency.to_string(),
                        alert_id: alert.id,
                        version: alert.version,
                    });
                }
            }
        }
        Ok(())
    }
}

/// One batch of envelopes, sorted by what becomes of each.
#[derive(Default)]
struct Sorted {
    acks: Vec<DeliveryAck>,
    records: Vec<(usize, StoredAlert)>,
    notices: Vec<(usize, HitNotice)>,
    reviews: Vec<(usize, HitReviewNotice)>,
    requests: Vec<(usize, DisclosureRequest)>,
    /// Decisions, answers, releases and withdrawals of disclosure requests.
    steps: Vec<(usize, Payload)>,
    /// Statistics report shares and noisy sums.
    stats: Vec<(usize, Payload)>,
    refusals: Vec<RefusalRecord>,
    /// The peer went over its rate of this; the rest of the batch waits.
    throttled: Option<&'static str>,
    /// Not understood, by a sender that does not take such acks.
    not_understood: Option<String>,
}
