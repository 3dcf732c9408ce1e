//! The steps after a request: the holder's decision (and the release it
//! makes), the requester's answer to a question, the holder's withdrawal of
//! a release — each one store transaction with its messages and audit
//! entries — and applying what the other node sends of them.

use std::time::{Duration, SystemTime};

use super::{
    Applied, DisclosureError, Disclosures, Views, as_of, check_text, deadline, event, is_open,
};
use crate::audit::{Action, CallEntry, Event};
use crate::identity::ClientIdentity;
use crate::ids::{AgencyId, ReleaseId, RequestId};
use crate::policy::model::{LocationLevel, TimeLevel};
use crate::policy::{DisclosureVerdict, Release as ReleaseFields, released_content};
use crate::proto::short_name;
use crate::proto::v1::envelope::Payload;
use crate::proto::v1::{
    ClarificationAnswer, DecideRequest, DisclosureCase, DisclosureDecision, DisclosureState,
    HandlingCode, LocationDetail, RefusalGround, Release, ReleaseRecord, ReleaseSelection,
    ReleaseWithdrawal, Subject, TimeDetail,
};
use crate::store::{OutboxItem, Step, StoreError};
use crate::time::{system_time_lossy, timestamp};
use crate::violation::FieldViolation;

/// Longest decision note, question, answer or withdrawal reason, in bytes.
pub const MAX_NOTE: usize = 1000;
/// Longest contact point, in bytes.
pub const MAX_CONTACT: usize = 300;
/// A release's retention at the requester, in days: default and most.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
pub const MAX_RETENTION_DAYS: u32 = 365;

fn invalid(field: &str, why: impl Into<String>) -> DisclosureError {
    DisclosureError::Invalid(vec![FieldViolation::new(field, why)])
}

fn conflict(why: impl Into<String>) -> DisclosureError {
    DisclosureError::Conflict(why.into())
}

/// What an officer chose, in the policy's terms; `None` when a field is
/// unset (the caller must choose every level).
fn selection(s: &ReleaseSelection) -> Result<ReleaseFields, Vec<FieldViolation>> {
    let mut problems = Vec::new();
    let location = match LocationDetail::try_from(s.location) {
        Ok(LocationDetail::None) => LocationLevel::None,
        Ok(LocationDetail::Country) => LocationLevel::Country,
        Ok(LocationDetail::Region) => LocationLevel::Region,
        Ok(LocationDetail::City) => LocationLevel::City,
        _ => {
            problems.push(FieldViolation::new(
                "release.location",
                "is required: none, country, region or city",
            ));
            LocationLevel::None
        }
    };
    let time = match TimeDetail::try_from(s.time) {
        Ok(TimeDetail::None) => TimeLevel::None,
        Ok(TimeDetail::Year) => TimeLevel::Year,
        Ok(TimeDetail::Month) => TimeLevel::Month,
        Ok(TimeDetail::Day) => TimeLevel::Day,
        _ => {
            problems.push(FieldViolation::new(
                "release.time",
                "is required: none, year, month or day",
            ));
            TimeLevel::None
        }
    };
    let mut identifiers = std::collections::BTreeSet::new();
    for (i, t) in s.identifiers.iter().enumerate() {
        match crate::proto::v1::IdentifierType::try_from(*t) {
            Ok(k) if k != crate::proto::v1::IdentifierType::Unspecified => {
                identifiers.insert(*t);
            }
            _ => problems.push(FieldViolation::new(
                format!("release.identifiers[{i}]"),
                "unknown identifier type",
            )),
        }
    }
    if problems.is_empty() {
        Ok(ReleaseFields {
            location,
            time,
            narrative: s.narrative,
            indicators: s.indicators,
            identifiers,
        })
    } else {
        Err(problems)
    }
}

fn outcome_word(state: DisclosureState) -> &'static str {
    match state {
        DisclosureState::Approved => "approved",
        DisclosureState::PartiallyApproved => "partially approved",
        DisclosureState::Refused => "refused",
        DisclosureState::Clarification => "clarification asked",
        _ => "changed",
    }
}

impl Disclosures {
    /// The holder's officer decides on request `req.id`.
    pub async fn decide(
        &self,
        officer: &ClientIdentity,
        req: DecideRequest,
        call: &CallEntry,
    ) -> Result<DisclosureCase, DisclosureError> {
        let now = SystemTime::now();
        let outcome =
            DisclosureState::try_from(req.outcome).unwrap_or(DisclosureState::Unspecified);
        let chosen = checked_decision(&req, outcome)?;
        let id = super::request_id("id", &req.id)?;
        let case = self
            .store
            .disclosure(&id)?
            .filter(|c| !c.outgoing)
            .ok_or_else(|| DisclosureError::NotFound(format!("request {id}")))?;
        let request = case.request.clone().unwrap_or_default();
        let peer: AgencyId = case
            .peer
            .parse()
            .map_err(|e: crate::ids::IdError| StoreError::corrupt(&req.id, e))?;
        // Approvals: within the policy in force, for the alert as it is now.
        let (release, rule) = match &chosen {
            Some(chosen) => {
                let (release, rule) =
                    self.release_within_policy(officer, &req, &request, &peer, chosen, now)?;
                (Some(release), rule)
            }
            None => (None, String::new()),
        };
        let decision = DisclosureDecision {
            request_id: request.id.clone(),
            outcome: outcome as i32,
            ground: if outcome == DisclosureState::Refused {
                req.ground
            } else {
                0
            },
            note: req.note.clone(),
            decided_by: officer.name.to_string(),
            decided_at: Some(timestamp(now)),
            release_id: release.as_ref().map(|r| r.id.clone()).unwrap_or_default(),
            automatic: false,
        };
        let decided = Decided {
            id: &id,
            by: format!("client:{}", officer.name),
            request: &request,
            req: &req,
            peer: &peer,
            outcome,
            decision,
            release: release.as_ref(),
            rule: &rule,
            now,
        };
        let case = self.write_decision(&decided, call).await?;
        if outcome != DisclosureState::Clarification {
            self.count_decided(&case);
        }
        Ok(as_of(case, now))
    }

    /// Checks an approval against the `[[disclosure]]` maximum the policy in
    /// force allows this peer for the alert as it is now, and builds the
    /// release it makes (with the rule that allowed it).
    fn release_within_policy(
        &self,
        officer: &ClientIdentity,
        req: &DecideRequest,
        request: &crate::proto::v1::DisclosureRequest,
        peer: &AgencyId,
        chosen: &ReleaseFields,
        now: SystemTime,
    ) -> Result<(Release, String), DisclosureError> {
        let alert_id: crate::ids::AlertId = request
            .holder_alert_id
            .parse()
            .map_err(|e: crate::ids::IdError| StoreError::corrupt(&req.id, e))?;
        let record = self.store.get(&alert_id)?.ok_or_else(|| {
            conflict(format!(
                "alert {alert_id} is no longer held here: refuse (not_available)"
            ))
        })?;
        let (rule, max) = match self.sharing.disclosure(&record, peer, request.legal_basis) {
            DisclosureVerdict::Allowed { rule, max } => (rule, max),
            DisclosureVerdict::Refused { reason, .. } => {
                return Err(conflict(format!(
                    "the sharing policy does not allow a release: {reason}"
                )));
            }
        };
        let excess = max.excess(chosen, &rule);
        if !excess.is_empty() {
            return Err(DisclosureError::Invalid(
                excess
                    .into_iter()
                    .map(|(f, why)| FieldViolation::new(f, why))
                    .collect(),
            ));
        }
        if *chosen == ReleaseFields::nothing() {
            return Err(invalid("release", "choose at least one field to release"));
        }
        let alert = record.alert.clone().unwrap_or_default();
        let handling = if req.handling == HandlingCode::Unspecified as i32 {
            alert.content.as_ref().map_or(0, |c| c.handling_code)
        } else {
            req.handling
        };
        // A release marked H1 can only go to law enforcement.
        if let Some(why) = crate::handling::withheld(handling, peer, self.sharing.kind(peer)) {
            return Err(invalid("handling", why));
        }
        let days = if req.retention_days == 0 {
            DEFAULT_RETENTION_DAYS
        } else {
            req.retention_days
        };
        let release = Release {
            id: ReleaseId::generate(&self.own).to_string(),
            request_id: request.id.clone(),
            alert_id: alert.id.clone(),
            alert_version: alert.version,
            content: released_content(&record, &chosen.content_grant()),
            subjects: released_subjects(&alert, chosen),
            contact_point: req.contact_point.clone(),
            handling,
            retention_until: Some(timestamp(
                now + Duration::from_secs(u64::from(days) * 86_400),
            )),
            released_at: Some(timestamp(now)),
            released_by: officer.name.to_string(),
            released_fields: chosen.describe(),
        };
        Ok((release, rule))
    }

    /// Writes the decision as one step of the request: its state, history,
    /// the decision (and release) queued to the requester, the release
    /// kept, and the call's audit entry, in one transaction.
    async fn write_decision(
        &self,
        d: &Decided<'_>,
        call: &CallEntry,
    ) -> Result<DisclosureCase, DisclosureError> {
        let id = d.id;
        let result = self
            .store
            .step_request(id, |case, _| {
                if DisclosureState::try_from(case.state) != Ok(DisclosureState::Open) {
                    return Err(conflict(format!(
                        "request {id} is {}: only an open request can be decided",
                        short_name(
                            DisclosureState::try_from(case.state).map(|s| s.as_str_name()),
                            "DISCLOSURE_STATE_"
                        )
                    )));
                }
                case.state = d.outcome as i32;
                case.decision = Some(d.decision.clone());
                if d.outcome != DisclosureState::Clarification {
                    case.answered_at = Some(timestamp(d.now));
                }
                let note = match d.release {
                    Some(r) => format!("released {} as {}", r.released_fields, r.id),
                    None => d.req.note.clone(),
                };
                case.history
                    .push(event(outcome_word(d.outcome), &d.by, note));
                let mut step = d.step();
                d.audit(call);
                step.events = call.done("OK").into_iter().collect();
                Ok(step)
            })
            .await?;
        result?.ok_or_else(|| DisclosureError::NotFound(format!("request {id}")))
    }

    /// The requester answers the holder's question on request `id`.
    pub async fn answer(
        &self,
        client: &ClientIdentity,
        id: &RequestId,
        answer: &str,
        call: &CallEntry,
    ) -> Result<DisclosureCase, DisclosureError> {
        let mut problems = Vec::new();
        check_text("answer", answer, MAX_NOTE, true, &mut problems);
        if !problems.is_empty() {
            return Err(DisclosureError::Invalid(problems));
        }
        let now = SystemTime::now();
        let by = format!("client:{}", client.name);
        let result = self
            .store
            .step_request(id, |case, _| {
                if !case.outgoing {
                    return Err(DisclosureError::NotFound(format!("request {id}")));
                }
                if DisclosureState::try_from(case.state) != Ok(DisclosureState::Clarification) {
                    return Err(conflict(format!("request {id} has no open question")));
                }
                let asked = case.decision.as_ref().and_then(|d| d.decided_at);
                let message = ClarificationAnswer {
                    request_id: id.to_string(),
                    answer: answer.to_owned(),
                    answered_by: client.name.to_string(),
                    answered_at: Some(timestamp(now)),
                    asked_at: asked,
                };
                if let (Some(due), Some(asked)) = (case.due_at, asked) {
                    case.due_at = Some(timestamp(deadline::paused(
                        system_time_lossy(&due),
                        system_time_lossy(&asked),
                        now,
                    )));
                }
                case.state = DisclosureState::Open as i32;
                case.history.push(event("answered", &by, answer));
                call.object(id.to_string());
                call.detail("peer", &case.peer);
                let peer: AgencyId = case
                    .peer
                    .parse()
                    .map_err(|e: crate::ids::IdError| StoreError::corrupt(id.to_string(), e))?;
                Ok(Step {
                    items: vec![OutboxItem {
                        peer,
                        payload: Payload::ClarificationAnswer(message),
                        rule: String::new(),
                        disclosed: "answer to the holder's question".into(),
                    }],
                    releases: Vec::new(),
                    events: call.done("OK").into_iter().collect(),
                })
            })
            .await?;
        let case = result?.ok_or_else(|| DisclosureError::NotFound(format!("request {id}")))?;
        Ok(as_of(case, now))
    }

    /// The holder withdraws release `id`: the requester's node purges it.
    pub async fn withdraw(
        &self,
        officer: &ClientIdentity,
        id: &ReleaseId,
        reason: &str,
        call: &CallEntry,
    ) -> Result<ReleaseRecord, DisclosureError> {
        let mut problems = Vec::new();
        check_text("reason", reason, MAX_NOTE, true, &mut problems);
        if !problems.is_empty() {
            return Err(DisclosureError::Invalid(problems));
        }
        let held = self
            .store
            .release(id)?
            .filter(|r| r.outgoing)
            .ok_or_else(|| DisclosureError::NotFound(format!("release {id}")))?;
        if held.withdrawn_at.is_some() {
            return Err(conflict(format!("release {id} was withdrawn already")));
        }
        let rel = held.release.clone().unwrap_or_default();
        let now = timestamp(SystemTime::now());
        let withdrawal = ReleaseWithdrawal {
            release_id: id.to_string(),
            request_id: rel.request_id.clone(),
            reason: reason.to_owned(),
            withdrawn_by: officer.name.to_string(),
            withdrawn_at: Some(now),
        };
        let by = format!("client:{}", officer.name);
        let mut out = None;
        let request: RequestId = rel
            .request_id
            .parse()
            .map_err(|e: crate::ids::IdError| StoreError::corrupt(id.to_string(), e))?;
        let result = self
            .store
            .step_request(&request, |case, _| {
                let peer: AgencyId = case
                    .peer
                    .parse()
                    .map_err(|e: crate::ids::IdError| StoreError::corrupt(id.to_string(), e))?;
                case.history
                    .push(event("release withdrawn", &by, format!("{id}: {reason}")));
                let record = ReleaseRecord {
                    withdrawn_at: Some(now),
                    withdraw_reason: reason.to_owned(),
                    ..held.clone()
                };
                out = Some(record.clone());
                call.object(id.to_string());
                call.object(rel.request_id.clone());
                call.detail("peer", &peer);
                Ok::<_, DisclosureError>(Step {
                    items: vec![OutboxItem {
                        peer,
                        payload: Payload::ReleaseWithdrawal(withdrawal.clone()),
                        rule: String::new(),
                        disclosed: "release withdrawal".into(),
                    }],
                    releases: vec![record],
                    events: call.done("OK").into_iter().collect(),
                })
            })
            .await?;
        result?.ok_or_else(|| DisclosureError::NotFound(format!("request {}", rel.request_id)))?;
        out.ok_or_else(|| DisclosureError::NotFound(format!("release {id}")))
    }

    /// The holder's decision on a request we sent.
    pub async fn on_decision(
        &self,
        from: &AgencyId,
        d: DisclosureDecision,
        event_of: impl Fn(&'static str) -> Event,
    ) -> Result<Applied, StoreError> {
        let outcome = DisclosureState::try_from(d.outcome).unwrap_or(DisclosureState::Unspecified);
        if !matches!(
            outcome,
            DisclosureState::Approved
                | DisclosureState::PartiallyApproved
                | DisclosureState::Refused
                | DisclosureState::Clarification
        ) {
            return Ok(Applied::Refused(
                "disclosure_decision.outcome: unknown".into(),
            ));
        }
        if d.note.len() > MAX_NOTE || d.decided_by.len() > 128 {
            return Ok(Applied::Refused(
                "disclosure_decision: note or decided_by too long".into(),
            ));
        }
        let Some(request) = peer_request_id("disclosure_decision", &d.request_id) else {
            return Ok(not_a_request("disclosure_decision"));
        };
        let by = format!("peer:{from}");
        let result = self
            .store
            .step_request(&request, |case, _| {
                if !case.outgoing || case.peer != from.as_str() {
                    return Err(Applied::Refused(format!(
                        "disclosure_decision.request_id: {} is not a request to {from}",
                        d.request_id
                    )));
                }
                if case
                    .decision
                    .as_ref()
                    .is_some_and(|held| held.decided_at == d.decided_at)
                {
                    return Err(Applied::Duplicate);
                }
                if !is_open(case) {
                    return Err(Applied::Refused(format!(
                        "disclosure_decision: request {} is decided already",
                        d.request_id
                    )));
                }
                case.state = outcome as i32;
                case.decision = Some(d.clone());
                if outcome != DisclosureState::Clarification {
                    case.answered_at = d.decided_at;
                }
                let note = if d.automatic {
                    format!("automatically, by the holder's policy: {}", d.note)
                } else {
                    d.note.clone()
                };
                case.history.push(event(outcome_word(outcome), &by, note));
                Ok(Step {
                    events: vec![event_of("stored")],
                    ..Default::default()
                })
            })
            .await?;
        if let Ok(Some(case)) = &result
            && !is_open(case)
        {
            self.count_decided(case);
        }
        Ok(settled(result, "disclosure_decision", &d.request_id))
    }

    /// The requester's answer to our question.
    pub async fn on_answer(
        &self,
        from: &AgencyId,
        a: ClarificationAnswer,
        event_of: impl Fn(&'static str) -> Event,
    ) -> Result<Applied, StoreError> {
        if a.answer.len() > MAX_NOTE || a.answered_by.len() > 128 {
            return Ok(Applied::Refused("clarification_answer: too long".into()));
        }
        let Some(request) = peer_request_id("clarification_answer", &a.request_id) else {
            return Ok(not_a_request("clarification_answer"));
        };
        let by = format!("peer:{from}");
        let result = self
            .store
            .step_request(&request, |case, _| {
                if case.outgoing || case.peer != from.as_str() {
                    return Err(Applied::Refused(format!(
                        "clarification_answer.request_id: {} is not a request from {from}",
                        a.request_id
                    )));
                }
                if case
                    .history
                    .iter()
                    .any(|e| e.step == "answered" && e.at == a.answered_at)
                {
                    return Err(Applied::Duplicate);
                }
                if DisclosureState::try_from(case.state) != Ok(DisclosureState::Clarification) {
                    return Err(Applied::Refused(format!(
                        "clarification_answer: request {} has no open question",
                        a.request_id
                    )));
                }
                if let (Some(due), Some(asked), Some(answered)) =
                    (case.due_at, a.asked_at, a.answered_at)
                {
                    case.due_at = Some(timestamp(deadline::paused(
                        system_time_lossy(&due),
                        system_time_lossy(&asked),
                        system_time_lossy(&answered),
                    )));
                }
                case.state = DisclosureState::Open as i32;
                case.history.push(crate::proto::v1::DisclosureEvent {
                    step: "answered".into(),
                    at: a.answered_at,
                    by: by.clone(),
                    note: a.answer.clone(),
                });
                Ok(Step {
                    events: vec![event_of("stored")],
                    ..Default::default()
                })
            })
            .await?;
        Ok(settled(result, "clarification_answer", &a.request_id))
    }

    /// A release for a request we sent: stored apart from alerts, with its
    /// own retention deadline.
    pub async fn on_release(
        &self,
        from: &AgencyId,
        r: Release,
        event_of: impl Fn(&'static str) -> Event,
    ) -> Result<Applied, StoreError> {
        let release_id = match r.id.parse::<ReleaseId>() {
            Ok(id) if id.origin() == from => id,
            _ => {
                return Ok(Applied::Refused(format!(
                    "release.id: not a release of {from}"
                )));
            }
        };
        let Some(request) = peer_request_id("release", &r.request_id) else {
            return Ok(not_a_request("release"));
        };
        let now = SystemTime::now();
        let until = r.retention_until.as_ref().map(system_time_lossy);
        if until.is_none_or(|u| {
            u <= now || u > now + Duration::from_secs(u64::from(MAX_RETENTION_DAYS + 1) * 86_400)
        }) {
            return Ok(Applied::Refused(format!(
                "release.retention_until: must be in the future, at most {MAX_RETENTION_DAYS} days"
            )));
        }
        if r.subjects.len() > 64 || r.contact_point.len() > MAX_CONTACT {
            return Ok(Applied::Refused(
                "release: too many subjects or contact point too long".into(),
            ));
        }
        let by = format!("peer:{from}");
        let result = self
            .store
            .step_request(&request, |case, held| {
                if !case.outgoing || case.peer != from.as_str() {
                    return Err(Applied::Refused(format!(
                        "release.request_id: {} is not a request to {from}",
                        r.request_id
                    )));
                }
                if held(&release_id).is_some() {
                    return Err(Applied::Duplicate);
                }
                case.history.push(event(
                    "release received",
                    &by,
                    format!("{}: {}", r.id, r.released_fields),
                ));
                Ok(Step {
                    releases: vec![ReleaseRecord {
                        release: Some(r.clone()),
                        outgoing: false,
                        peer: from.to_string(),
                        received_at: Some(timestamp(now)),
                        ..Default::default()
                    }],
                    events: vec![event_of("stored")],
                    ..Default::default()
                })
            })
            .await?;
        Ok(settled(result, "release", &r.request_id))
    }

    /// The holder withdrew a release it sent us: purge it now.
    pub async fn on_withdrawal(
        &self,
        from: &AgencyId,
        w: ReleaseWithdrawal,
        event_of: impl Fn(&'static str) -> Event,
    ) -> Result<Applied, StoreError> {
        let Some(request) = peer_request_id("release_withdrawal", &w.request_id) else {
            return Ok(not_a_request("release_withdrawal"));
        };
        let release_id = w.release_id.parse::<ReleaseId>().ok();
        let by = format!("peer:{from}");
        let result = self
            .store
            .step_request(&request, |case, held| {
                let Some(record) = release_id
                    .as_ref()
                    .and_then(held)
                    .filter(|r| !r.outgoing && r.peer == from.as_str())
                else {
                    return Err(Applied::Refused(format!(
                        "release_withdrawal.release_id: {} is not a release from {from} here",
                        w.release_id
                    )));
                };
                if record.withdrawn_at.is_some() {
                    return Err(Applied::Duplicate);
                }
                case.history.push(event(
                    "release withdrawn",
                    &by,
                    format!("{}: {}", w.release_id, w.reason),
                ));
                Ok(Step {
                    releases: vec![purged(record, Some((w.withdrawn_at, w.reason.clone())))],
                    events: vec![event_of("stored")],
                    ..Default::default()
                })
            })
            .await?;
        Ok(settled(result, "release_withdrawal", &w.request_id))
    }

    /// Purges the received releases past their retention deadline (a
    /// tombstone stays: ids, dates, who); returns how many.
    pub async fn purge_due(&self, now: SystemTime) -> Result<usize, StoreError> {
        let due = self.store.releases_due(crate::time::unix_secs(now), 256)?;
        let mut purged_count = 0;
        for id in due {
            let Some(record) = self.store.release(&id)? else {
                continue;
            };
            let request = record.release.as_ref().map(|r| r.request_id.clone());
            let Some(request) = request.and_then(|r| r.parse::<RequestId>().ok()) else {
                tracing::error!(release = %id, "a release past its deadline names no request; not purged");
                continue;
            };
            let outcome = self
                .store
                .step_request(&request, |case, _| {
                    case.history.push(event(
                        "release purged",
                        "node",
                        format!("{id}: retention deadline passed"),
                    ));
                    Ok::<_, StoreError>(Step {
                        releases: vec![purged(record.clone(), None)],
                        events: vec![
                            Event::new(crate::audit::NODE, Action::ReleasePurge, "OK")
                                .object(id.to_string())
                                .object(request.to_string())
                                .detail("reason", "retention deadline passed"),
                        ],
                        ..Default::default()
                    })
                })
                .await?;
            if matches!(outcome, Ok(Some(_))) {
                purged_count += 1;
            }
        }
        Ok(purged_count)
    }

    /// Release `id`, if `views` lets the caller see it (received with
    /// `request`, sent with `disclose`).
    pub fn release(&self, id: &ReleaseId, views: Views) -> Result<ReleaseRecord, DisclosureError> {
        self.store
            .release(id)?
            .filter(|r| {
                if r.outgoing {
                    views.incoming
                } else {
                    views.outgoing
                }
            })
            .ok_or_else(|| DisclosureError::NotFound(format!("release {id}")))
    }

    /// Releases newest first, without content and subjects.
    pub fn releases(
        &self,
        views: Views,
        req: &crate::proto::v1::ListReleasesRequest,
    ) -> Result<crate::proto::v1::ListReleasesResponse, DisclosureError> {
        let page =
            crate::paging::PageRequest::<u64>::parse(req.page_size, &req.page_token, 100, 1000)
                .map_err(|v| DisclosureError::Invalid(vec![v]))?;
        let (records, next) = self.store.releases_page(page.after, page.size, |r| {
            (if r.outgoing {
                views.incoming
            } else {
                views.outgoing
            }) && req.outgoing.is_none_or(|o| o == r.outgoing)
        })?;
        Ok(crate::proto::v1::ListReleasesResponse {
            releases: records.into_iter().map(purged_view).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        })
    }
}

/// The request id of a peer's `message`: its syntax was checked when the
/// envelope arrived, so `None` is a message that slipped past that check.
fn peer_request_id(message: &str, id: &str) -> Option<RequestId> {
    let parsed = id.parse().ok();
    if parsed.is_none() {
        tracing::warn!(message, "a peer's message names no request id");
    }
    parsed
}

fn not_a_request(message: &str) -> Applied {
    Applied::Refused(format!("{message}.request_id: not a request id"))
}

/// What became of a step a peer sent: stored, or the refusal (or duplicate)
/// the step itself decided, or refused because the request is unknown here.
fn settled(result: Result<Option<DisclosureCase>, Applied>, message: &str, id: &str) -> Applied {
    match result {
        Ok(Some(_)) => Applied::Stored,
        Ok(None) => Applied::Refused(format!("{message}.request_id: {id} is unknown here")),
        Err(a) => a,
    }
}

/// A record with its content and identifiers removed: after a withdrawal
/// (with when and why) or the retention deadline.
fn purged(
    record: ReleaseRecord,
    withdrawn: Option<(Option<pbjson_types::Timestamp>, String)>,
) -> ReleaseRecord {
    let mut record = purged_view(record);
    record.purged = true;
    if let Some((at, reason)) = withdrawn {
        record.withdrawn_at = at;
        record.withdraw_reason = reason;
    }
    record
}

/// For listing: what a release is, not what it holds.
fn purged_view(mut record: ReleaseRecord) -> ReleaseRecord {
    if let Some(r) = record.release.as_mut() {
        r.content = None;
        r.subjects.clear();
    }
    record
}

/// What a decision's checks and choices came to, for its write.
struct Decided<'a> {
    id: &'a RequestId,
    by: String,
    request: &'a crate::proto::v1::DisclosureRequest,
    req: &'a DecideRequest,
    peer: &'a AgencyId,
    outcome: DisclosureState,
    decision: DisclosureDecision,
    release: Option<&'a Release>,
    rule: &'a str,
    now: SystemTime,
}

impl Decided<'_> {
    /// The outbox entries (the decision, and the release) and the release
    /// kept here.
    fn step(&self) -> Step {
        let mut step = Step::default();
        step.items.push(OutboxItem {
            peer: self.peer.clone(),
            payload: Payload::DisclosureDecision(self.decision.clone()),
            rule: self.rule.to_owned(),
            disclosed: format!("disclosure decision: {}", outcome_word(self.outcome)),
        });
        if let Some(r) = self.release {
            step.items.push(OutboxItem {
                peer: self.peer.clone(),
                payload: Payload::Release(r.clone()),
                rule: self.rule.to_owned(),
                disclosed: format!("release: {}", r.released_fields),
            });
            step.releases.push(ReleaseRecord {
                release: Some(r.clone()),
                outgoing: true,
                peer: self.peer.to_string(),
                ..Default::default()
            });
        }
        step
    }

    /// What the call's audit entry names.
    fn audit(&self, call: &CallEntry) {
        call.object(self.request.id.clone());
        call.object(self.request.holder_alert_id.clone());
        call.detail("outcome", outcome_word(self.outcome));
        call.detail("peer", self.peer);
        call.detail(
            "legal_basis",
            crate::policy::disclosure::basis_name(self.request.legal_basis),
        );
        call.detail("requesting_officer", &self.request.officer);
        if self.outcome == DisclosureState::Refused {
            call.detail(
                "ground",
                short_name(
                    RefusalGround::try_from(self.req.ground).map(|g| g.as_str_name()),
                    "REFUSAL_GROUND_",
                ),
            );
        }
        if let Some(r) = self.release {
            call.object(r.id.clone());
            call.detail("released", &r.released_fields);
            call.detail("rule", self.rule);
        }
    }
}

/// A decision's fields checked for its outcome, and the release chosen
/// with an approval (in the policy's terms).
fn checked_decision(
    req: &DecideRequest,
    outcome: DisclosureState,
) -> Result<Option<ReleaseFields>, DisclosureError> {
    let mut problems = Vec::new();
    match outcome {
        DisclosureState::Approved | DisclosureState::PartiallyApproved => {
            check_text(
                "contact_point",
                &req.contact_point,
                MAX_CONTACT,
                true,
                &mut problems,
            );
            check_text("note", &req.note, MAX_NOTE, false, &mut problems);
            if req.retention_days > MAX_RETENTION_DAYS {
                problems.push(FieldViolation::new(
                    "retention_days",
                    format!("at most {MAX_RETENTION_DAYS}"),
                ));
            }
            if req.release.is_none() {
                problems.push(FieldViolation::new(
                    "release",
                    "is required with an approval",
                ));
            }
        }
        DisclosureState::Refused => {
            if !matches!(RefusalGround::try_from(req.ground), Ok(g) if g != RefusalGround::Unspecified)
            {
                problems.push(FieldViolation::new("ground", "is required with a refusal"));
            }
            check_text("note", &req.note, MAX_NOTE, true, &mut problems);
        }
        DisclosureState::Clarification => {
            check_text("note", &req.note, MAX_NOTE, true, &mut problems);
        }
        _ => problems.push(FieldViolation::new(
            "outcome",
            "must be approved, partially_approved, refused or clarification",
        )),
    }
    let chosen = match req.release.as_ref().map(selection) {
        Some(Ok(s)) => Some(s),
        Some(Err(v)) => {
            problems.extend(v);
            None
        }
        None => None,
    };
    if problems.is_empty() {
        Ok(chosen)
    } else {
        Err(DisclosureError::Invalid(problems))
    }
}

/// The alert's subjects with only the identifier types chosen, in clear.
fn released_subjects(alert: &crate::proto::v1::Alert, chosen: &ReleaseFields) -> Vec<Subject> {
    alert
        .subjects
        .iter()
        .map(|s| Subject {
            profile: None,
            role: s.role,
            identifiers: s
                .identifiers
                .iter()
                .filter(|i| {
                    chosen
                        .identifiers
                        .contains(&(crate::proto::identifier_type(i) as i32))
                })
                .cloned()
                .collect(),
        })
        .filter(|s| !s.identifiers.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disclosure::limit_selection;
    use proptest::prelude::*;

    fn location() -> impl Strategy<Value = LocationLevel> {
        prop_oneof![
            Just(LocationLevel::None),
            Just(LocationLevel::Country),
            Just(LocationLevel::Region),
            Just(LocationLevel::City)
        ]
    }

    fn time() -> impl Strategy<Value = TimeLevel> {
        prop_oneof![
            Just(TimeLevel::None),
            Just(TimeLevel::Year),
            Just(TimeLevel::Month),
            Just(TimeLevel::Day)
        ]
    }

    proptest! {
        /// The limit a form is given reads back as the very maximum the
        /// node checks a decision against: offering it never ends in a
        /// refusal, and offers nothing beyond it.
        #[test]
        fn a_limit_reads_back_as_its_maximum(
            location in location(),
            time in time(),
            narrative: bool,
            indicators: bool,
            identifiers in proptest::collection::btree_set(1i32..=9, 0..9),
        ) {
            let max = ReleaseFields { location, time, narrative, indicators, identifiers };
            let back = selection(&limit_selection(&max)).unwrap();
            prop_assert_eq!(&back, &max);
            prop_assert!(max.excess(&back, "r").is_empty());
        }
    }
}
