//! A caseworker's side of the reports: the inbox's tabs, a report, a
//! reply its reporter reads at their next receipt login, closing (as spam
//! too, many at once) and the link to the alert made of a report. Each
//! change is written with the audit entry of the call that asked for it.

use crate::audit::CallEntry;
use crate::ids::AlertId;
use crate::proto::v1::{IntakeAuthor, IntakeMessage, IntakeReportRecord, IntakeState};
use crate::store::{IntakeCounts, IntakeCursor};
use crate::violation::FieldViolation;

use super::{MAX_MESSAGE, MAX_MESSAGES, Reports, ReportsError, hour_of, now};

/// Reports one close call may name.
pub const MAX_CLOSE: usize = 100;
/// Characters of a reason to close.
pub const MAX_REASON: usize = 500;
/// How long a report closed as spam is kept after it is closed: long
/// enough to undo a mistake by asking the operator, short enough that a
/// flood does not sit on the disk for the full retention.
pub const SPAM_RETENTION_DAYS: i64 = 7;
/// Reports one inbox page holds at most, and when none is asked.
pub const MAX_PAGE: usize = 200;
pub const DEFAULT_PAGE: usize = 50;

/// One page of a tab, the cursor after it, and every tab's count.
pub struct Inbox {
    pub reports: Vec<IntakeReportRecord>,
    pub next: Option<IntakeCursor>,
    pub counts: IntakeCounts,
}

fn invalid(field: &str, problem: impl Into<String>) -> ReportsError {
    ReportsError::Invalid(vec![FieldViolation::new(field, problem)])
}

/// `text` as a line of the conversation or a reason: not blank, within
/// `max` characters.
fn checked_text<'a>(field: &str, text: &'a str, max: usize) -> Result<&'a str, ReportsError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if text.chars().count() > max {
        return Err(invalid(field, format!("at most {max} characters")));
    }
    Ok(text)
}

/// A report id as the store keys it: a uuid (anything else names nothing).
fn report_id(field: &str, id: &str) -> Result<String, ReportsError> {
    uuid::Uuid::try_parse(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| invalid(field, "not a report id"))
}

impl Reports {
    /// A page of the tab `state` (`Unspecified`: new) after `token`.
    pub fn inbox(
        &self,
        state: IntakeState,
        token: &str,
        page_size: usize,
    ) -> Result<Inbox, ReportsError> {
        let state = match state {
            IntakeState::Unspecified => IntakeState::New,
            s => s,
        };
        let after = match token {
            "" => None,
            t => Some(
                IntakeCursor::decode(t)
                    .ok_or_else(|| invalid("page_token", "not a token this node gave"))?,
            ),
        };
        if page_size > MAX_PAGE {
            return Err(invalid("page_size", format!("at most {MAX_PAGE}")));
        }
        let limit = if page_size == 0 {
            DEFAULT_PAGE
        } else {
            page_size
        };
        let (reports, next) = self.store.intake_list(state, after.as_ref(), limit)?;
        Ok(Inbox {
            reports,
            next,
            counts: self.store.intake_counts()?,
        })
    }

    /// Report `id` as a caseworker reads it.
    pub fn get(&self, id: &str) -> Result<IntakeReportRecord, ReportsError> {
        let id = report_id("id", id)?;
        self.store
            .intake_report(&id)?
            .ok_or(ReportsError::NotFound(id))
    }

    /// Adds `caseworker`'s `text` to report `id`: it waits for its
    /// reporter. A closed or full conversation is refused.
    pub async fn reply(
        &self,
        id: &str,
        caseworker: &str,
        text: &str,
        call: &CallEntry,
    ) -> Result<IntakeReportRecord, ReportsError> {
        let id = report_id("id", id)?;
        let text = checked_text("text", text, MAX_MESSAGE)?;
        call.object(id.clone());
        let line = IntakeMessage {
            author: IntakeAuthor::Caseworker as i32,
            text: text.to_owned(),
            at_hour: hour_of(now()),
            caseworker: caseworker.to_owned(),
        };
        let mut refused = None;
        let written = self
            .store
            .intake_update(
                &id,
                |mut rec| {
                    refused = refusal(&rec);
                    if refused.is_some() {
                        return None;
                    }
                    rec.messages.push(line);
                    rec.state = IntakeState::Waiting as i32;
                    Some(rec)
                },
                || call.done("OK").into_iter().collect(),
            )
            .await?;
        written.ok_or_else(|| refused.unwrap_or(ReportsError::NotFound(id)))
    }

    /// Closes the reports `ids` not closed already, with `reason`; as
    /// `spam` they are kept [`SPAM_RETENTION_DAYS`] more at most. All in
    /// one write; returns the ids closed.
    pub async fn close(
        &self,
        ids: &[String],
        reason: &str,
        spam: bool,
        call: &CallEntry,
    ) -> Result<Vec<String>, ReportsError> {
        if ids.is_empty() || ids.len() > MAX_CLOSE {
            return Err(invalid("ids", format!("1 to {MAX_CLOSE} report ids")));
        }
        let ids = ids
            .iter()
            .enumerate()
            .map(|(i, id)| report_id(&format!("ids[{i}]"), id))
            .collect::<Result<Vec<_>, _>>()?;
        let reason = checked_text("reason", reason, MAX_REASON)?;
        let spam_until = now() + SPAM_RETENTION_DAYS * 86_400;
        for id in &ids {
            call.object(id.clone());
        }
        call.detail("spam", spam);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let closed = std::sync::atomic::AtomicUsize::new(0);
        let written = self
            .store
            .intake_update_many(
                &refs,
                |mut rec| {
                    if rec.state() == IntakeState::Closed {
                        return None;
                    }
                    rec.state = IntakeState::Closed as i32;
                    rec.close_reason = reason.to_owned();
                    if spam {
                        rec.retain_until = rec.retain_until.min(spam_until);
                    }
                    closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Some(rec)
                },
                || {
                    // The entry goes with the write: it says how many first.
                    call.detail("closed", closed.load(std::sync::atomic::Ordering::Relaxed));
                    call.done("OK").into_iter().collect()
                },
            )
            .await?;
        call.detail("closed", written.len()); // none closed: the entry is still open
        Ok(written.into_iter().map(|r| r.id).collect())
    }

    /// Records that `alert` (one of this node's) was made of report `id`;
    /// once only.
    pub async fn link(
        &self,
        id: &str,
        alert: &str,
        own: &crate::ids::AgencyId,
        call: &CallEntry,
    ) -> Result<IntakeReportRecord, ReportsError> {
        let id = report_id("id", id)?;
        let alert: AlertId = alert
            .parse()
            .map_err(|_| invalid("alert_id", "not an alert id"))?;
        if alert.origin() != own || self.store.get(&alert)?.is_none() {
            return Err(invalid("alert_id", "not an alert of this node"));
        }
        call.object(id.clone());
        call.object(alert.to_string());
        let mut linked = None;
        let written = self
            .store
            .intake_update(
                &id,
                |mut rec| {
                    if !rec.alert_id.is_empty() {
                        linked = Some(rec.alert_id);
                        return None;
                    }
                    rec.alert_id = alert.to_string();
                    Some(rec)
                },
                || call.done("OK").into_iter().collect(),
            )
            .await?;
        match (written, linked) {
            (Some(rec), _) => Ok(rec),
            (None, Some(other)) => Err(ReportsError::Linked(other)),
            (None, None) => Err(ReportsError::NotFound(id)),
        }
    }
}

/// Why a caseworker cannot add to `rec`'s conversation, if they cannot.
fn refusal(rec: &IntakeReportRecord) -> Option<ReportsError> {
    if rec.state() == IntakeState::Closed {
        return Some(ReportsError::Closed);
    }
    (rec.messages.len() >= MAX_MESSAGES).then_some(ReportsError::Full)
}

/// `what` cut to at most `max` characters (an inbox line).
pub fn excerpt(what: &str, max: usize) -> String {
    match what.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &what[..end]),
        None => what.to_owned(),
    }
}
