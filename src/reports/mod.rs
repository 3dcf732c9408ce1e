//! The public reports at work (docs/intake.md): a report kept with the
//! hash of its receipt, a receipt opening its report (guessing bounded by
//! the node's budget and a few slow hashes at a time), the reporter adding
//! to it. The channel that serves people (`intake_web`) and, later, the
//! console's triage call these; nothing here is given anything of who a
//! reporter is.

pub mod triage;

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::audit::{Action, Event};
use crate::intake::form::{Contact, Report};
use crate::intake::receipt::{Hasher, Receipt, ReceiptError};
use crate::proto::v1::{
    IntakeAuthor, IntakeContact, IntakeMessage, IntakePerson, IntakeReportRecord, IntakeState,
};
use crate::ratelimit::RateLimiter;
use crate::store::{Store, StoreError, Submitted};

/// The actor of every reporter's audit entry: one name for everyone.
pub const REPORTER: &str = "reporter";
/// The one key of the intake's budgets: they are the whole node's.
const EVERYONE: &str = "";
/// Receipts hashed at once: the slow hash is the guessing bound, and must
/// not become a way to take every core.
const HASHING_AT_ONCE: usize = 2;
/// Receipts drawn for one report at most when one drawn is taken.
const RECEIPT_DRAWS: usize = 3;
/// Characters of one message in the conversation.
pub const MAX_MESSAGE: usize = 5_000;
/// Messages a report's conversation holds at most (the reporter's and the
/// caseworkers' together).
pub const MAX_MESSAGES: usize = 200;

/// Why a reporter's request was not done.
#[derive(Debug, thiserror::Error)]
pub enum ReportsError {
    /// The node keeps as many open reports as it may, or has spent its
    /// budget of wrong receipts this minute: try again later.
    #[error("busy: try again later")]
    Busy,
    #[error("the conversation is full")]
    Full,
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    #[error("invalid request: {}", crate::violation::summary(.0))]
    Invalid(Vec<crate::violation::FieldViolation>),
    #[error("no report {0}")]
    NotFound(String),
    #[error("the report is closed")]
    Closed,
    #[error("the report is linked already, to alert {0}")]
    Linked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The node's reports: its store, receipt hasher and budgets.
pub struct Reports {
    store: Arc<Store>,
    hasher: Arc<Hasher>,
    /// Wrong receipts and new reports, each one bucket for everyone (the
    /// key is empty: nothing says who).
    guesses: RateLimiter,
    submits: RateLimiter,
    hashing: Semaphore,
    max_open: u64,
    retention_secs: i64,
}

/// Limits a node sets (`[intake]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_open: u64,
    pub wrong_receipts_per_minute: u32,
    pub reports_per_minute: u32,
    pub retention_days: u32,
}

impl Limits {
    /// The limits `[intake]` sets, or its defaults when there is none (a
    /// node whose intake is off still triages the reports it holds).
    pub fn of(config: Option<&crate::config::IntakeConfig>) -> Self {
        match config {
            Some(c) => Self {
                max_open: c.max_open_reports.get() as u64,
                wrong_receipts_per_minute: c.wrong_receipts_per_minute.get() as u32,
                reports_per_minute: c.reports_per_minute.get() as u32,
                retention_days: c.retention_days.get() as u32,
            },
            None => Self {
                max_open: 10_000,
                wrong_receipts_per_minute: 60,
                reports_per_minute: 60,
                retention_days: 365,
            },
        }
    }
}

/// `unix_secs` rounded down to the hour: all a record keeps of a time.
pub fn hour_of(unix_secs: i64) -> i64 {
    unix_secs - unix_secs.rem_euclid(3600)
}

fn now() -> i64 {
    crate::time::now_ms() / 1000
}

impl Reports {
    /// The reports of `store`, whose receipt secret is made the first time.
    pub async fn open(store: Arc<Store>, limits: Limits) -> Result<Self, ReportsError> {
        if store.intake_resume_reindex()? {
            tracing::warn!("the public reports' index was rebuilt: a rebuild had been cut short");
        }
        let secret = store.intake_secret(Hasher::new_secret).await?;
        Ok(Self {
            store,
            hasher: Arc::new(Hasher::new(*secret)),
            guesses: RateLimiter::new(
                limits.wrong_receipts_per_minute,
                limits.wrong_receipts_per_minute,
            ),
            submits: RateLimiter::new(limits.reports_per_minute, limits.reports_per_minute),
            hashing: Semaphore::new(HASHING_AT_ONCE),
            max_open: limits.max_open,
            retention_secs: i64::from(limits.retention_days) * 86_400,
        })
    }

    /// The slow hash of `receipt`, a few at a time, off the async workers.
    async fn hash(&self, receipt: Receipt) -> Result<Vec<u8>, ReportsError> {
        let _turn = self.hashing.acquire().await.expect("never closed");
        let hasher = self.hasher.clone();
        let hash = tokio::task::spawn_blocking(move || hasher.hash(&receipt))
            .await
            .expect("hashing does not panic")?;
        Ok(hash.to_vec())
    }

    /// Keeps `report`, written in `language`: its receipt, shown once.
    pub async fn submit(&self, report: Report, language: &str) -> Result<Receipt, ReportsError> {
        if self.store.intake_open()? >= self.max_open || !self.submits.allow(EVERYONE) {
            return Err(ReportsError::Busy);
        }
        let received = hour_of(now());
        let mut rec = record(report, language, received, received + self.retention_secs);
        // A receipt another report holds already (about once in 20,000
        // nodes of a million reports) is drawn again, never shared.
        for _ in 0..RECEIPT_DRAWS {
            let receipt = Receipt::generate();
            rec.receipt_hash = self.hash(receipt.clone()).await?;
            let event = Event::new(REPORTER, Action::IntakeReport, "stored")
                .object(rec.id.clone())
                .detail("language", language);
            match self.store.intake_submit(&rec, self.max_open, event).await? {
                Submitted::Stored => return Ok(receipt),
                Submitted::Full => return Err(ReportsError::Busy),
                Submitted::ReceiptTaken => continue,
            }
        }
        Err(ReportsError::Busy)
    }

    /// The report `typed` opens, if it opens one that is not closed. A
    /// wrong receipt, a malformed one and one of a closed report are alike
    /// to the caller, and each spends the node's budget; once it is spent,
    /// every try is [`ReportsError::Busy`] until the bucket refills.
    pub async fn open_by_receipt(
        &self,
        typed: &str,
    ) -> Result<Option<IntakeReportRecord>, ReportsError> {
        if !self.guesses.available(EVERYONE) {
            return Err(ReportsError::Busy);
        }
        // A malformed receipt costs a hash too: no answer comes sooner.
        let parsed = Receipt::parse(typed).ok();
        let well_formed = parsed.is_some();
        let hash = self.hash(parsed.unwrap_or_else(Receipt::generate)).await?;
        let found = match well_formed {
            true => self.store.intake_by_receipt(&hash)?,
            false => None,
        }
        .filter(|rec| rec.state != IntakeState::Closed as i32);
        match &found {
            Some(rec) => {
                let event = Event::new(REPORTER, Action::IntakeOpen, "OK").object(rec.id.clone());
                self.store.audit([event]).await?;
            }
            None => {
                self.guesses.allow(EVERYONE);
            }
        }
        Ok(found)
    }

    /// Report `id`, as a session that opened it reads it.
    pub fn report(&self, id: &str) -> Result<Option<IntakeReportRecord>, ReportsError> {
        Ok(self.store.intake_report(id)?)
    }

    /// Adds the reporter's `text` to report `id` (which their receipt
    /// opened): the report is new to the caseworkers again.
    pub async fn answer(&self, id: &str, text: &str) -> Result<IntakeReportRecord, ReportsError> {
        let event = Event::new(REPORTER, Action::IntakeAnswer, "stored").object(id.to_owned());
        let line = IntakeMessage {
            author: IntakeAuthor::Reporter as i32,
            text: text.to_owned(),
            at_hour: hour_of(now()),
            caseworker: String::new(),
        };
        let mut full = false;
        let written = self
            .store
            .intake_update(
                id,
                |mut rec| {
                    if rec.state == IntakeState::Closed as i32 {
                        return None;
                    }
                    if rec.messages.len() >= MAX_MESSAGES {
                        full = true;
                        return None;
                    }
                    rec.messages.push(line);
                    rec.state = IntakeState::New as i32;
                    Some(rec)
                },
                || vec![event],
            )
            .await?;
        match written {
            Some(rec) => Ok(rec),
            None if full => Err(ReportsError::Full),
            None => Err(ReportsError::Busy),
        }
    }
}

/// A new report's id: a random (v4) uuid from the system's RNG — a v7
/// one, like an alert's, would carry the exact time it came in.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG is available");
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The record of a new report.
fn record(
    report: Report,
    language: &str,
    received_hour: i64,
    retain_until: i64,
) -> IntakeReportRecord {
    IntakeReportRecord {
        id: random_id(),
        received_hour,
        language: language.to_owned(),
        what: report.what,
        country: report.country.map(|c| c.to_string()).unwrap_or_default(),
        town: report.town,
        when: report.when,
        people: report
            .people
            .into_iter()
            .map(|p| IntakePerson {
                name: p.name,
                phone: p.phone,
                workplace: p.workplace,
                plate: p.plate,
            })
            .collect(),
        in_danger: match report.in_danger {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        },
        contact: match report.contact {
            Contact::ReceiptOnly => IntakeContact::ReceiptOnly,
            Contact::Phone => IntakeContact::Phone,
            Contact::Email => IntakeContact::Email,
        } as i32,
        contact_value: report.contact_value,
        police_consent: report.police_consent,
        messages: Vec::new(),
        state: IntakeState::New as i32,
        close_reason: String::new(),
        alert_id: String::new(),
        retain_until,
        receipt_hash: Vec::new(),
    }
}
