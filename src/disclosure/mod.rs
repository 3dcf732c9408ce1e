//! Disclosure requests: after a confirmed hit (or a lookup match), a
//! requesting agency asks the holder of an alert for its data. This module
//! checks and builds requests on the requester's side, checks and records
//! them on the holder's side (comparing the requester's pseudonymized
//! identifiers with the alert for the holder's officer), and answers the
//! client API's reads. The request travels through the outbox like every
//! peer message: exactly once, whichever node is down meanwhile.
//!
//! - this file: sending (the requester's identifiers go as tokens),
//!   receiving (verified against our alert, refused automatically when the
//!   policy says so), and list and get with what each role may see
//!   ([`Views`]);
//! - [`deadline`]: Directive 2023/977 answer times, custom bounds and
//!   clarification pauses; pure;
//! - [`steps`]: the holder's decision within the `[[disclosure]]` maximum
//!   and the release it makes, the requester's answer, the holder's
//!   withdrawal, applying what the other node sends of these, and the
//!   purge of received releases past their retention deadline;
//! - [`stats`]: counts by outcome and the median and 90th-percentile answer
//!   times; pure.

pub mod deadline;
pub mod stats;
pub mod steps;

pub use deadline::{is_open, is_overdue};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use time::OffsetDateTime;

use crate::audit::{Action, CallEntry, Event};
use crate::identity::ClientIdentity;
use crate::ids::{AgencyId, AlertId, ReleaseId, RequestId};
use crate::policy::Release as ReleaseFields;
use crate::policy::model::{LocationLevel, TimeLevel};
use crate::proto::short_name;
use crate::proto::v1::envelope::Payload;
use crate::proto::v1::send_disclosure_request::About;
use crate::proto::v1::{
    DisclosureCase, DisclosureEvent, DisclosureRequest, DisclosureState, HitVerdict,
    IdentifierType, LegalBasis, ListDisclosureRequestsRequest, ListDisclosureRequestsResponse,
    LocationDetail, ReleaseSelection, SendDisclosureRequest, SharedSubject, SubjectRole,
    TimeDetail, Urgency, VerificationResult,
};
use crate::pseudo::Pseudonymizer;
use crate::store::{OutboxItem, Store, StoreError};
use crate::time::{system_time_lossy, timestamp};
use crate::violation::FieldViolation;

/// Limits on a request's free text, in bytes.
pub const MAX_PURPOSE: usize = 500;
pub const MAX_CITATION: usize = 300;
pub const MAX_CASE_REFERENCE: usize = 128;
/// Identifiers a requester may give for verification, at most.
pub const MAX_VERIFICATION: usize = 16;
/// How far ahead of the holder's clock a request's time may be.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Requests one agency may have open here at once (undecided, or waiting
/// for its answer to a question): more than a desk works through, far
/// fewer than fill a disk.
pub const MAX_OPEN_PER_PEER: usize = 500;

#[derive(Debug, Error)]
pub enum DisclosureError {
    #[error("invalid request: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldViolation>),
    #[error("{0} not found")]
    NotFound(String),
    /// Prüm II: a person confirms a hit before core data is requested.
    #[error(
        "hit {0} is not confirmed: a reviewer must confirm it first (`casebridge hits review {0} --confirmed`)"
    )]
    NotConfirmed(u64),
    /// The request is not in a state that allows this (decided already,
    /// no open question, the policy does not allow a release).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tokens(crate::tokens::TokenError),
}

/// What became of a decision, answer, release or withdrawal a peer sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Stored,
    /// Held already (a resend).
    Duplicate,
    /// Refused with the reason for the sender.
    Refused(String),
}

/// Which requests a client may see: those it sent (role `request`), those
/// its agency received (role `disclose`).
#[derive(Debug, Clone, Copy)]
pub struct Views {
    pub outgoing: bool,
    pub incoming: bool,
}

impl Views {
    pub fn allows(self, case: &DisclosureCase) -> bool {
        if case.outgoing {
            self.outgoing
        } else {
            self.incoming
        }
    }
}

/// What became of a request a peer delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Stored(Box<DisclosureCase>),
    /// Held already (a resend).
    Duplicate,
    /// Malformed: refused with the reason for the sender.
    Refused(String),
}

pub struct Disclosures {
    store: Arc<Store>,
    sharing: Arc<crate::sharing::Sharing>,
    own: AgencyId,
    /// Whom a request may go to: the membership in force.
    peers: crate::directory::roster::Roster,
    pseudo: Arc<Pseudonymizer>,
    tokenizer: Arc<crate::tokens::Tokenizer>,
    min_deadline: Duration,
    metrics: crate::metrics::Metrics,
}

/// The request id a client gave in `field`: a malformed one is named as
/// such, not looked up.
pub fn request_id(field: &str, id: &str) -> Result<RequestId, DisclosureError> {
    id.parse().map_err(|e: crate::ids::IdError| {
        DisclosureError::Invalid(vec![FieldViolation::new(field, e.to_string())])
    })
}

/// The release id a client gave in `field` (see [`request_id`]).
pub fn release_id(field: &str, id: &str) -> Result<ReleaseId, DisclosureError> {
    id.parse().map_err(|e: crate::ids::IdError| {
        DisclosureError::Invalid(vec![FieldViolation::new(field, e.to_string())])
    })
}

fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// Free text of at most `max` bytes, printable; `required` ones not empty.
fn check_text(
    field: &str,
    text: &str,
    max: usize,
    required: bool,
    problems: &mut Vec<FieldViolation>,
) {
    if required && text.trim().is_empty() {
        problems.push(FieldViolation::new(field, "is required"));
    } else if text.len() > max {
        problems.push(FieldViolation::new(
            field,
            format!("at most {max} bytes, got {}", text.len()),
        ));
    } else if !printable(text) {
        problems.push(FieldViolation::new(field, "must be printable text"));
    }
}

fn is_legal_basis(v: i32) -> bool {
    LegalBasis::try_from(v).is_ok_and(|b| b != LegalBasis::Unspecified)
}

fn event(step: &str, by: &str, note: impl Into<String>) -> DisclosureEvent {
    DisclosureEvent {
        step: step.into(),
        at: Some(crate::time::now()),
        by: by.into(),
        note: note.into(),
    }
}

/// `case` with `overdue` as of `now`.
pub fn as_of(mut case: DisclosureCase, now: SystemTime) -> DisclosureCase {
    case.overdue = is_overdue(&case, now);
    case
}

/// A rule's maximum as a selection (`DisclosureCase.release_limit`): the
/// reverse of `steps::selection`, so a form offers exactly what the rule allows.
pub(crate) fn limit_selection(max: &ReleaseFields) -> ReleaseSelection {
    let location = match max.location {
        LocationLevel::None => LocationDetail::None,
        LocationLevel::Country => LocationDetail::Country,
        LocationLevel::Region => LocationDetail::Region,
        LocationLevel::City => LocationDetail::City,
    };
    let time = match max.time {
        TimeLevel::None => TimeDetail::None,
        TimeLevel::Year => TimeDetail::Year,
        TimeLevel::Month => TimeDetail::Month,
        TimeLevel::Day => TimeDetail::Day,
    };
    ReleaseSelection {
        location: location as i32,
        time: time as i32,
        narrative: max.narrative,
        indicators: max.indicators,
        identifiers: max.identifiers.iter().copied().collect(),
    }
}

impl Disclosures {
    #[allow(clippy::too_many_arguments)] // plain wiring, called once by `core::open`
    pub fn new(
        store: Arc<Store>,
        sharing: Arc<crate::sharing::Sharing>,
        own: AgencyId,
        peers: crate::directory::roster::Roster,
        pseudo: Arc<Pseudonymizer>,
        tokenizer: Arc<crate::tokens::Tokenizer>,
        min_deadline: Duration,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        Self {
            store,
            sharing,
            own,
            peers,
            pseudo,
            tokenizer,
            min_deadline,
            metrics,
        }
    }

    /// Checks and records a request from `client`, queued for the holder;
    /// the call's audit entry is written with it.
    pub async fn send(
        &self,
        client: &ClientIdentity,
        req: SendDisclosureRequest,
        call: &CallEntry,
    ) -> Result<DisclosureCase, DisclosureError> {
        let now = SystemTime::now();
        let mut problems = checked_request(&req);
        let urgency = Urgency::try_from(req.urgency).unwrap_or(Urgency::Unspecified);
        let due = deadline::due_at(
            urgency,
            now,
            req.due_at.as_ref().map(system_time_lossy),
            self.min_deadline,
        )
        .map_err(|(field, why)| problems.push(FieldViolation::new(field, why)))
        .ok();
        let verification = self
            .verification_tokens(&req.verification, &mut problems)
            .await?;
        let about = self.about(req.about, &mut problems)?;
        let (Some(due), Some((holder_alert, requester_alert)), true) =
            (due, about, problems.is_empty())
        else {
            return Err(DisclosureError::Invalid(problems));
        };
        let holder = holder_alert.origin().clone();
        let id = RequestId::generate(&self.own);
        let request = DisclosureRequest {
            id: id.to_string(),
            holder_alert_id: holder_alert.to_string(),
            requester_alert_id: requester_alert.map(|a| a.to_string()).unwrap_or_default(),
            legal_basis: req.legal_basis,
            citation: req.citation,
            purpose: req.purpose,
            case_reference: req.case_reference,
            officer: client.name.to_string(),
            urgency: urgency as i32,
            requested_at: Some(timestamp(now)),
            due_at: Some(timestamp(due)),
            verification: Some(verification),
        };
        let case = DisclosureCase {
            request: Some(request.clone()),
            outgoing: true,
            peer: holder.to_string(),
            state: DisclosureState::Open as i32,
            due_at: request.due_at,
            history: vec![event("sent", &format!("client:{}", client.name), "")],
            ..Default::default()
        };
        let item = OutboxItem {
            peer: holder.clone(),
            payload: Payload::DisclosureRequest(request.clone()),
            rule: String::new(),
            disclosed: "disclosure request: ids, legal basis, purpose, case reference, officer, \
                        urgency, verification tokens"
                .into(),
        };
        let case = self
            .store
            .open_request(case, item, |_| {
                audit_sent(call, &request, &holder);
                call.done("OK").into_iter().collect()
            })
            .await?;
        Ok(as_of(case, now))
    }

    /// The requester's own identifiers of the subject as the holder checks
    /// them: tokens (the key service's, when the federation uses it) and
    /// person encodings. Problems are added to `problems`; the key service
    /// is asked only when there are none.
    async fn verification_tokens(
        &self,
        identifiers: &[crate::proto::v1::Identifier],
        problems: &mut Vec<FieldViolation>,
    ) -> Result<SharedSubject, DisclosureError> {
        if identifiers.len() > MAX_VERIFICATION {
            problems.push(FieldViolation::new(
                "verification",
                format!("at most {MAX_VERIFICATION} identifiers"),
            ));
        }
        let (mut tokens, encodings) =
            match self
                .pseudo
                .identifiers(identifiers, "verification", OffsetDateTime::now_utc())
            {
                Ok(found) => found,
                Err(v) => {
                    problems.extend(v);
                    return Ok(SharedSubject::default());
                }
            };
        if problems.is_empty() {
            self.tokenizer
                .complete_identifiers(identifiers, &mut tokens)
                .await
                .map_err(DisclosureError::Tokens)?;
        }
        Ok(SharedSubject {
            role: SubjectRole::Unspecified as i32,
            tokens,
            encodings,
        })
    }

    /// The holder's alert a request is about, and the requester's alert of
    /// the hit (if it follows one). `None` after recording the problem.
    fn about(
        &self,
        about: Option<About>,
        problems: &mut Vec<FieldViolation>,
    ) -> Result<Option<(AlertId, Option<AlertId>)>, DisclosureError> {
        let (holder, ours) = match about {
            None => {
                problems.push(FieldViolation::new(
                    "about",
                    "is required: a hit number or the holder's alert id",
                ));
                return Ok(None);
            }
            Some(About::HitNumber(n)) => {
                let hit = self
                    .store
                    .hit(n)?
                    .ok_or_else(|| DisclosureError::NotFound(format!("hit {n}")))?;
                if hit
                    .our_review
                    .as_ref()
                    .is_none_or(|r| r.verdict != HitVerdict::Confirmed as i32)
                {
                    return Err(DisclosureError::NotConfirmed(n));
                }
                match (
                    hit.other_alert_id.parse::<AlertId>(),
                    hit.local_alert_id.parse(),
                ) {
                    (Ok(theirs), Ok(ours)) => (theirs, Some(ours)),
                    _ => return Err(StoreError::corrupt(format!("hit {n}"), "bad alert id").into()),
                }
            }
            Some(About::AlertId(id)) => match id.parse::<AlertId>() {
                Ok(a) => (a, None),
                Err(e) => {
                    problems.push(FieldViolation::new("alert_id", e.to_string()));
                    return Ok(None);
                }
            },
        };
        let field = if ours.is_some() {
            "hit_number"
        } else {
            "alert_id"
        };
        if holder.origin() == &self.own {
            problems.push(FieldViolation::new(
                field,
                format!("{holder} is this agency's own alert"),
            ));
            return Ok(None);
        }
        if let Some(why) = self.peers.now().why_not(holder.origin()) {
            problems.push(FieldViolation::new(field, why));
            return Ok(None);
        }
        Ok(Some((holder, ours)))
    }

    /// Why a request from `from` cannot be taken, when it cannot: it names
    /// an alert this node never held (a request follows a hit or a lookup
    /// answer about an alert of ours, so nothing real asks for one we do
    /// not know), or `from` has [`MAX_OPEN_PER_PEER`] requests open here
    /// already. Refused without a case being stored: a peer cannot fill
    /// the inbox with requests behind which there is nothing.
    fn unfounded(
        &self,
        from: &AgencyId,
        request: &DisclosureRequest,
    ) -> Result<Option<String>, StoreError> {
        // A resend of a request taken before is a duplicate, whatever now.
        // (Its id's syntax was checked on receipt.)
        if let Ok(id) = request.id.parse::<RequestId>()
            && self.store.disclosure(&id)?.is_some()
        {
            return Ok(None);
        }
        let held = match request.holder_alert_id.parse::<AlertId>() {
            Ok(id) => self.store.get(&id)?.is_some(),
            Err(_) => false,
        };
        if !held {
            return Ok(Some(format!(
                "disclosure_request.holder_alert_id: {} is not an alert held here",
                crate::text::quote(&request.holder_alert_id, 120)
            )));
        }
        let open = self
            .store
            .disclosure_cases()?
            .iter()
            .filter(|c| !c.outgoing && c.peer == from.as_str() && is_open(c))
            .count();
        if open >= MAX_OPEN_PER_PEER {
            return Ok(Some(format!(
                "{from} has {open} requests open here, the most one agency may have; \
                 wait for answers before sending more"
            )));
        }
        Ok(None)
    }

    /// Checks and records a request `from` delivered (one of our alerts),
    /// with its `disclosure.request_receive` audit entry.
    pub async fn receive(
        &self,
        from: &AgencyId,
        actor: &str,
        request: DisclosureRequest,
    ) -> Result<Received, StoreError> {
        let now = SystemTime::now();
        let due = match self.check_received(from, &request, now) {
            Ok(due) => due,
            Err(why) => return Ok(Received::Refused(why)),
        };
        if let Some(why) = self.unfounded(from, &request)? {
            return Ok(Received::Refused(why));
        }
        let verification = match request.holder_alert_id.parse::<AlertId>() {
            Ok(id) => self.verify(&id, request.verification.as_ref())?,
            Err(_) => Vec::new(),
        };
        let mut case = DisclosureCase {
            outgoing: false,
            peer: from.to_string(),
            state: DisclosureState::Open as i32,
            due_at: Some(timestamp(due)),
            history: vec![event("received", actor, "")],
            verification,
            request: Some(request.clone()),
            ..Default::default()
        };
        // The policy first: a peer or a legal basis it does not accept is
        // refused at once, without asking anyone, and the requester told why.
        let items = self.policy_verdict(&mut case, from, &request, now)?;
        let refused_by_policy = !items.is_empty();
        let entry = |outcome: &'static str| {
            Event::new(actor, Action::DisclosureRequestReceive, outcome)
                .object(request.id.clone())
                .object(request.holder_alert_id.clone())
                .detail(
                    "legal_basis",
                    short_name(
                        LegalBasis::try_from(request.legal_basis).map(|b| b.as_str_name()),
                        "LEGAL_BASIS_",
                    ),
                )
                .detail("officer", &request.officer)
                .detail(
                    "due_at",
                    crate::time::format_ms(crate::time::unix_secs(due) as i64 * 1000),
                )
                .detail(
                    "decision",
                    if refused_by_policy {
                        "refused by the policy"
                    } else {
                        "waiting for an officer"
                    },
                )
        };
        Ok(
            match self.store.receive_request(case, items, entry).await? {
                Some(case) => {
                    if !is_open(&case) {
                        self.count_decided(&case);
                    }
                    Received::Stored(Box::new(case))
                }
                None => Received::Duplicate,
            },
        )
    }

    /// Applies the `[[disclosure]]` rules to a received request: an allowed
    /// one keeps the rule and its maximum for the officer; a refused one is
    /// decided at once, with the decision to send back.
    fn policy_verdict(
        &self,
        case: &mut DisclosureCase,
        from: &AgencyId,
        request: &DisclosureRequest,
        now: SystemTime,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let held = match request.holder_alert_id.parse::<AlertId>() {
            Ok(id) => self.store.get(&id)?,
            Err(_) => None,
        };
        let verdict = match &held {
            Some(record) => self.sharing.disclosure(record, from, request.legal_basis),
            None => crate::policy::DisclosureVerdict::Refused {
                ground: crate::proto::v1::RefusalGround::NotAvailable,
                rule: None,
                reason: "the alert is not held here".into(),
            },
        };
        let mut items = Vec::new();
        match verdict {
            crate::policy::DisclosureVerdict::Allowed { rule, max } => {
                case.rule = rule;
                case.release_maximum = max.describe();
                case.release_limit = Some(limit_selection(&max));
            }
            crate::policy::DisclosureVerdict::Refused {
                ground,
                rule,
                reason,
            } => {
                let decision = crate::proto::v1::DisclosureDecision {
                    request_id: request.id.clone(),
                    outcome: DisclosureState::Refused as i32,
                    ground: ground as i32,
                    note: reason.clone(),
                    decided_by: "policy".into(),
                    decided_at: Some(timestamp(now)),
                    release_id: String::new(),
                    automatic: true,
                };
                case.state = DisclosureState::Refused as i32;
                case.rule = rule.unwrap_or_default();
                case.answered_at = decision.decided_at;
                case.decision = Some(decision.clone());
                case.history.push(event("refused", "policy", reason));
                items.push(OutboxItem {
                    peer: from.clone(),
                    payload: Payload::DisclosureDecision(decision),
                    rule: case.rule.clone(),
                    disclosed: "disclosure decision: refused (automatic)".into(),
                });
            }
        }
        Ok(items)
    }

    /// Why a delivered request cannot be taken, or the due time this node
    /// keeps for it.
    fn check_received(
        &self,
        from: &AgencyId,
        r: &DisclosureRequest,
        now: SystemTime,
    ) -> Result<SystemTime, String> {
        match r.id.parse::<RequestId>() {
            Ok(id) if id.origin() == from => {}
            Ok(id) => {
                return Err(format!(
                    "disclosure_request.id: {id} is not a request of {from}"
                ));
            }
            Err(e) => return Err(format!("disclosure_request.id: {e}")),
        }
        match r.holder_alert_id.parse::<AlertId>() {
            Ok(a) if a.origin() == &self.own => {}
            Ok(a) => {
                return Err(format!(
                    "disclosure_request.holder_alert_id: {a} is not an alert of {}",
                    self.own
                ));
            }
            Err(e) => return Err(format!("disclosure_request.holder_alert_id: {e}")),
        }
        if !r.requester_alert_id.is_empty() {
            match r.requester_alert_id.parse::<AlertId>() {
                Ok(a) if a.origin() == from => {}
                _ => {
                    return Err(format!(
                        "disclosure_request.requester_alert_id: not an alert of {from}"
                    ));
                }
            }
        }
        if !is_legal_basis(r.legal_basis) {
            return Err("disclosure_request.legal_basis: unknown or missing".into());
        }
        let mut problems = Vec::new();
        check_text("purpose", &r.purpose, MAX_PURPOSE, true, &mut problems);
        check_text(
            "case_reference",
            &r.case_reference,
            MAX_CASE_REFERENCE,
            true,
            &mut problems,
        );
        check_text("citation", &r.citation, MAX_CITATION, false, &mut problems);
        check_text(
            "officer",
            &r.officer,
            MAX_CASE_REFERENCE,
            true,
            &mut problems,
        );
        if let Some(p) = problems.first() {
            return Err(format!("disclosure_request.{}: {}", p.field, p.description));
        }
        let tokens = r
            .verification
            .as_ref()
            .map_or(0, |v| v.tokens.len() + v.encodings.len());
        if tokens > MAX_VERIFICATION * 8 {
            return Err("disclosure_request.verification: too many tokens".into());
        }
        let (Some(requested), Some(due)) = (r.requested_at.as_ref(), r.due_at.as_ref()) else {
            return Err("disclosure_request: requested_at and due_at are required".into());
        };
        let requested = system_time_lossy(requested);
        if requested > now + CLOCK_SKEW {
            return Err("disclosure_request.requested_at: in the future".into());
        }
        let urgency = Urgency::try_from(r.urgency).unwrap_or(Urgency::Unspecified);
        deadline::holder_due(
            urgency,
            now,
            requested,
            system_time_lossy(due),
            self.min_deadline,
        )
        .ok_or_else(|| {
            "disclosure_request.due_at: does not follow from the urgency and requested_at"
                .to_string()
        })
    }

    /// How the requester's pseudonymized identifiers compare with our alert
    /// `id`, per identifier type (nothing when the alert is gone).
    fn verify(
        &self,
        id: &AlertId,
        given: Option<&SharedSubject>,
    ) -> Result<Vec<VerificationResult>, StoreError> {
        let Some(given) = given else {
            return Ok(Vec::new());
        };
        let Some(record) = self.store.get(id)? else {
            return Ok(Vec::new());
        };
        let held = crate::matching::tokens_of(&record);
        let mut by_type = std::collections::BTreeMap::<i32, VerificationResult>::new();
        for t in &given.tokens {
            let hit = held.contains(&(t.r#type, t.key_version, t.value.clone()));
            let e = by_type.entry(t.r#type).or_insert(VerificationResult {
                r#type: t.r#type,
                ..Default::default()
            });
            if hit {
                (e.matched, e.similarity) = (true, 1.0);
            }
        }
        // Persons: the best comparison over the blocks both sides have,
        // with its evidence, so the officer sees which field agreed.
        let encodings = crate::matching::encodings_of(&record);
        let possible = self.store.band().possible;
        for g in &given.encodings {
            let best = encodings
                .iter()
                .filter(|h| h.key_version == g.key_version && h.block == g.block)
                .filter_map(|h| crate::matching::compare(g, h))
                .max_by(|a, b| a.score.total_cmp(&b.score));
            let e = by_type
                .entry(IdentifierType::Person as i32)
                .or_insert(VerificationResult {
                    r#type: IdentifierType::Person as i32,
                    ..Default::default()
                });
            if let Some(best) = best
                && best.score > e.similarity
            {
                e.similarity = best.score;
                e.evidence = best.evidence;
            }
            e.matched |= e.similarity >= possible;
        }
        Ok(by_type.into_values().collect())
    }

    /// The holder's node acknowledged request `id` (or refused it as
    /// malformed: `rejected` holds its reason).
    ///
    /// `holder_due`: the due time the holder keeps (counted from its
    /// receipt), adopted when it is no earlier than ours and within the
    /// longest deadline there is, so one deadline shows on both sides.
    pub fn delivered(
        &self,
        id: &RequestId,
        rejected: Option<&str>,
        holder_due: Option<&pbjson_types::Timestamp>,
    ) -> Result<(), StoreError> {
        let at = crate::time::now();
        let latest = SystemTime::now() + deadline::MAX_CUSTOM + CLOCK_SKEW;
        self.store.update_request(id, |case| {
            if case.delivered_at.is_some() {
                return false;
            }
            case.delivered_at = Some(at);
            if let (Some(theirs), Some(ours)) = (holder_due, case.due_at.as_ref()) {
                let t = system_time_lossy(theirs);
                if t >= system_time_lossy(ours) && t <= latest {
                    case.due_at = Some(*theirs);
                }
            }
            match rejected {
                None => case.history.push(event("delivered", "node", "")),
                Some(why) => {
                    case.state = DisclosureState::Refused as i32;
                    case.history.push(event(
                        "rejected",
                        &format!("peer:{}", case.peer),
                        format!("the holder's node refused the request: {why}"),
                    ));
                }
            }
            true
        })?;
        Ok(())
    }

    /// Request `id`, if `views` lets the caller see it.
    pub fn get(&self, id: &RequestId, views: Views) -> Result<DisclosureCase, DisclosureError> {
        self.store
            .disclosure(id)?
            .filter(|c| views.allows(c))
            .map(|c| as_of(c, SystemTime::now()))
            .ok_or_else(|| DisclosureError::NotFound(format!("request {id}")))
    }

    /// Requests newest first, filtered as asked and by what `views` allows.
    pub fn list(
        &self,
        views: Views,
        req: &ListDisclosureRequestsRequest,
    ) -> Result<ListDisclosureRequestsResponse, DisclosureError> {
        let page =
            crate::paging::PageRequest::<u64>::parse(req.page_size, &req.page_token, 100, 1000)
                .map_err(|v| DisclosureError::Invalid(vec![v]))?;
        let now = SystemTime::now();
        let (cases, next) = self.store.disclosures_page(page.after, page.size, |c| {
            views.allows(c)
                && req.outgoing.is_none_or(|o| o == c.outgoing)
                && (req.states.is_empty() || req.states.contains(&c.state))
                && (!req.overdue_only || is_overdue(c, now))
        })?;
        Ok(ListDisclosureRequestsResponse {
            requests: cases.into_iter().map(|c| as_of(c, now)).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        })
    }

    /// Up to `limit` request log entries after position `after`, oldest
    /// first (a watcher filters them by what it may see).
    pub fn log_after(&self, after: u64, limit: usize) -> Result<Vec<DisclosureCase>, StoreError> {
        self.store.disclosure_log_after(after, limit)
    }

    /// Told the request log's latest position each time it moves.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.watch_disclosures()
    }
}

impl Disclosures {
    /// Counts a final decision in the metrics (answer time and outcome).
    pub(crate) fn count_decided(&self, case: &DisclosureCase) {
        let direction = if case.outgoing { "sent" } else { "received" };
        let labels = crate::metrics::peer_and(&case.peer, "direction", direction);
        if let Some(t) = stats::answer_time(case) {
            self.metrics
                .disclosure_answer
                .get_or_create(&labels)
                .observe(t.as_secs_f64());
        }
        let outcome = short_name(
            DisclosureState::try_from(case.state).map(|s| s.as_str_name()),
            "DISCLOSURE_STATE_",
        );
        let mut l = labels;
        l.push(("outcome", outcome));
        self.metrics.disclosure_decisions.get_or_create(&l).inc();
    }

    /// Open and overdue requests per (peer, outgoing), now.
    pub fn open_counts(&self) -> Result<stats::OpenCounts, StoreError> {
        Ok(stats::open_counts(
            &self.store.disclosure_cases()?,
            SystemTime::now(),
        ))
    }

    /// Sets the open and overdue gauges (at every scrape).
    pub fn refresh_metrics(&self) {
        let Ok(counts) = self.open_counts() else {
            return;
        };
        // Every primed series back to zero first: a request decided since
        // the last scrape must not stay counted.
        for peer in self.peers.now().all().map(|m| &m.agency) {
            for direction in ["sent", "received"] {
                let labels = crate::metrics::peer_and(peer, "direction", direction);
                self.metrics.disclosure_open.get_or_create(&labels).set(0);
                self.metrics
                    .disclosure_overdue
                    .get_or_create(&labels)
                    .set(0);
            }
        }
        for ((peer, outgoing), (open, overdue)) in counts {
            let direction = if outgoing { "sent" } else { "received" };
            let labels = crate::metrics::peer_and(&peer, "direction", direction);
            self.metrics
                .disclosure_open
                .get_or_create(&labels)
                .set(open as i64);
            self.metrics
                .disclosure_overdue
                .get_or_create(&labels)
                .set(overdue as i64);
        }
    }

    /// The directive's statistics over the requests `views` lets the caller see.
    pub fn stats(
        &self,
        views: Views,
        req: &crate::proto::v1::RequestStatsRequest,
    ) -> Result<crate::proto::v1::RequestStatsResponse, DisclosureError> {
        let from = req.from.as_ref().map(system_time_lossy);
        let to = req.to.as_ref().map(system_time_lossy);
        if let (Some(f), Some(t)) = (from, to)
            && t <= f
        {
            return Err(DisclosureError::Invalid(vec![FieldViolation::new(
                "to",
                "must be after `from`",
            )]));
        }
        Ok(stats::stats(
            &self.store.disclosure_cases()?,
            from,
            to,
            SystemTime::now(),
            |c| views.allows(c),
        ))
    }
}

/// A request's own fields checked: its legal basis, purpose, case
/// reference and citation.
fn checked_request(req: &SendDisclosureRequest) -> Vec<FieldViolation> {
    let mut problems = Vec::new();
    if !is_legal_basis(req.legal_basis) {
        problems.push(FieldViolation::new(
            "legal_basis",
            "is required: directive_2023_977, prum_ii, mutual_legal_assistance, \
             victim_referral_consent or national_law",
        ));
    }
    check_text("purpose", &req.purpose, MAX_PURPOSE, true, &mut problems);
    check_text(
        "case_reference",
        &req.case_reference,
        MAX_CASE_REFERENCE,
        true,
        &mut problems,
    );
    check_text(
        "citation",
        &req.citation,
        MAX_CITATION,
        false,
        &mut problems,
    );
    problems
}

/// What the audit entry of a request sent names.
fn audit_sent(call: &CallEntry, request: &DisclosureRequest, holder: &AgencyId) {
    call.object(request.id.clone());
    call.object(request.holder_alert_id.clone());
    call.detail("peer", holder);
    call.detail(
        "legal_basis",
        short_name(
            LegalBasis::try_from(request.legal_basis).map(|b| b.as_str_name()),
            "LEGAL_BASIS_",
        ),
    );
    call.detail(
        "urgency",
        short_name(
            Urgency::try_from(request.urgency).map(|u| u.as_str_name()),
            "URGENCY_",
        ),
    );
    call.detail("case_reference", &request.case_reference);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_are_bounded_and_printable() {
        let mut p = Vec::new();
        check_text("purpose", "", 10, true, &mut p);
        check_text("purpose", "x".repeat(11).as_str(), 10, true, &mut p);
        check_text("purpose", "a\u{7}b", 10, true, &mut p);
        check_text("citation", "", 10, false, &mut p);
        let why: Vec<&str> = p.iter().map(|v| v.description.as_str()).collect();
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(
            why[0].contains("required")
                && why[1].contains("at most 10")
                && why[2].contains("printable")
        );
    }
}
