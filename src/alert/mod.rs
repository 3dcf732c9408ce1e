//! The local alert lifecycle: submit, update, retract, read. Each change is one
//! store transaction that also queues the change for each peer the sharing
//! policy allows, with the view its rule grants (built in the one place that
//! builds outbound envelopes, [`crate::policy::shared_view_with`]).
//!
//! - [`Ledger`]: submit, update, retract, read, list.
//! - `import`: one record of a register by its source id, checked exactly
//!   as a submit, then created, given a new version, or left unchanged; and
//!   the `ListImported` page of a source's records.
//! - `backfill`: `Reshare` and `RetractFromPeer`, after a policy change.
//! - `rematch`: at start, when the matching settings recorded in the
//!   store's `settings` tree differ from those in force (scheme, review
//!   band, the ring's key versions valid now; with a key service, its
//!   pinned versions and whether ring tokens are kept), own alerts are
//!   encoded anew as new versions, or matched again; it waits out key
//!   service outages and budget refusals.
//! - `pending`: own alerts stored during a key service outage get their
//!   tokens as a new version.

mod backfill;
mod changes;
mod import;
mod pending;
mod rematch;

pub use pending::PendingReport;
pub use rematch::RematchReport;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use thiserror::Error;

use crate::audit::CallEntry;
use crate::config::{AlertRules, Limits};
use crate::exchange::{share_item, tombstone_item};
use crate::identity::ClientIdentity;
use crate::ids::{AgencyId, AlertId};
use crate::paging::PageRequest;
use crate::proto::v1::{
    Alert, AlertDraft, Category, ListAlertsRequest, ListAlertsResponse, SharedSubject, StoredAlert,
    Tlp,
};
use crate::pseudo::Pseudonymizer;
use crate::sharing::Sharing;
use crate::store::{LocalWrite, OutboxItem, RequestKey, Store, StoreError, TxError};
use crate::time::timestamp;
use crate::tokens::{TokenError, Tokenizer};
use crate::validate;
pub use crate::validate::FieldViolation;
use prost::Message;

#[derive(Debug, Error, Clone)]
pub enum AlertError {
    #[error("invalid request: {}", crate::violation::summary(.0))]
    Invalid(Vec<FieldViolation>),
    #[error("alert {0} not found")]
    NotFound(String),
    #[error("alert {id} was recorded by {origin}; only the origin can change it")]
    NotOrigin { id: String, origin: String },
    #[error("alert {0} is retracted")]
    Retracted(String),
    #[error("alert {id} is at version {current}, not {expected}")]
    VersionMismatch {
        id: String,
        expected: u64,
        current: u64,
    },
    #[error("storage failure: {0}")]
    Store(String),
    /// A stored record that cannot be read back (named, with why): data
    /// loss the operator must look into, not an outage to retry.
    #[error("{0}")]
    Unreadable(String),
    /// Exact tokens could not be derived and the alert was not stored
    /// (a proof that does not verify, a refused request): never an outage,
    /// which stores the alert with its tokens pending instead.
    #[error("{0}")]
    Tokens(TokenError),
}

impl From<StoreError> for AlertError {
    fn from(e: StoreError) -> Self {
        if e.is_unreadable() {
            AlertError::Unreadable(e.to_string())
        } else {
            AlertError::Store(e.to_string())
        }
    }
}

impl From<TxError<AlertError>> for AlertError {
    fn from(e: TxError<AlertError>) -> Self {
        match e {
            TxError::Store(e) => e.into(),
            TxError::Rejected(e) => e,
        }
    }
}

fn invalid(field: &str, description: impl Into<String>) -> AlertError {
    AlertError::Invalid(vec![FieldViolation {
        field: field.into(),
        description: description.into(),
    }])
}

const MAX_REQUEST_ID: usize = 128;
const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;

/// Records a local write in the call's audit entry, before its flush: the
/// alert, its new version, and the peers it has been queued for so far (each
/// share itself is logged when the peer acknowledges it).
fn audit_write(call: &CallEntry, written: &LocalWrite) -> Vec<crate::audit::Event> {
    let rec = match written {
        LocalWrite::Written(rec) | LocalWrite::Replayed(rec) => rec,
        // Refused: the call's entry is written with the refusal.
        LocalWrite::Conflict(_) => return Vec::new(),
    };
    if let Some(a) = &rec.alert {
        call.object(a.id.clone());
        call.detail("version", a.version);
    }
    call.detail("shared_with", rec.shared_with.join(","));
    if matches!(written, LocalWrite::Replayed(_)) {
        call.detail("replayed", "request_id seen before; nothing changed");
    }
    call.done("OK").into_iter().collect()
}

/// SHA-256 of a draft as the client sent it (before defaults that depend
/// on the time are filled in): what an idempotency key or an imported
/// record stands for, so a retry or an unchanged row is told apart from a
/// different draft.
fn draft_digest(draft: Option<&AlertDraft>) -> aws_lc_rs::digest::Digest {
    aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &draft.map(Message::encode_to_vec).unwrap_or_default(),
    )
}

/// The pseudonymous subjects of a version, and whether the key service's
/// tokens are still missing from them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pseudonyms {
    pub subjects: Vec<SharedSubject>,
    pub tokens_pending: bool,
}

/// The agency's own alert book.
pub struct Ledger {
    store: Arc<Store>,
    agency: AgencyId,
    /// The membership in force: a retraction goes to the members that had
    /// the alert (held for a suspended one), and a backfill (Reshare,
    /// RetractFromPeer) names a peer.
    peers: crate::directory::roster::Roster,
    limits: Limits,
    rules: AlertRules,
    pseudo: Arc<Pseudonymizer>,
    /// Exact tokens from the OPRF key service, when configured.
    tokens: Arc<Tokenizer>,
    /// The sharing policy in force; without one nothing is shared.
    sharing: Arc<Sharing>,
    metrics: crate::metrics::Metrics,
}

impl Ledger {
    #[allow(clippy::too_many_arguments)] // plain wiring, called once by `core::NodeCore::open`
    pub fn new(
        store: Arc<Store>,
        agency: AgencyId,
        peers: crate::directory::roster::Roster,
        limits: Limits,
        rules: AlertRules,
        pseudo: Arc<Pseudonymizer>,
        tokens: Arc<Tokenizer>,
        sharing: Arc<Sharing>,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        Self {
            store,
            agency,
            peers,
            limits,
            rules,
            pseudo,
            tokens,
            sharing,
            metrics,
        }
    }

    /// Structural validation, then normalization and tokens for the subjects:
    /// every problem in one answer, and nothing stored unless all is well.
    /// The stored record a submit of `draft` would create here (validated
    /// and pseudonymized, stored nowhere): what a policy test case
    /// evaluates.
    pub fn record_for_test(&self, draft: AlertDraft) -> Result<StoredAlert, AlertError> {
        let now = SystemTime::now();
        let (draft, mut pseudonyms) = self.prepare(Some(draft), now)?;
        if self.tokens.uses_key_service() {
            self.pseudo
                .add_stand_in_tokens(&draft.subjects, &mut pseudonyms);
        }
        Ok(StoredAlert {
            alert: Some(Alert {
                id: AlertId::generate(&self.agency).to_string(),
                origin: self.agency.to_string(),
                version: 1,
                created_at: Some(timestamp(now)),
                updated_at: Some(timestamp(now)),
                content: draft.content,
                case_reference: draft.case_reference,
                title: draft.title,
                ..Default::default()
            }),
            shared_with: Vec::new(),
            pseudonyms,
            withdrawn_from: Vec::new(),
            tokens_pending: false,
        })
    }

    fn prepare(
        &self,
        draft: Option<AlertDraft>,
        now: SystemTime,
    ) -> Result<(AlertDraft, Vec<SharedSubject>), AlertError> {
        let draft = draft.ok_or_else(|| invalid("draft", "is required"))?;
        let subjects = draft.subjects.clone();
        let draft = match validate::validate_draft(draft, &self.limits, &self.rules, now) {
            Ok(draft) => draft,
            Err(mut violations) => {
                // Every problem in one answer: what normalization would
                // refuse too (a bad phone beside a bad country), each field
                // once, the structural finding first.
                if let Err(more) = self
                    .pseudo
                    .pseudonymize(&subjects, "draft.subjects", now.into())
                {
                    for v in more {
                        if !violations.iter().any(|known| known.field == v.field) {
                            violations.push(v);
                        }
                    }
                }
                return Err(AlertError::Invalid(violations));
            }
        };
        let pseudonyms = self
            .pseudo
            .pseudonymize(&draft.subjects, "draft.subjects", now.into())
            .map_err(AlertError::Invalid)?;
        Ok((draft, pseudonyms))
    }

    /// The key service's tokens added to `subjects` (the pseudonyms of
    /// `draft_subjects`). An outage or an exhausted budget does not refuse
    /// the write: the version is stored with its tokens pending and no
    /// subject shared, and `pending` completes it once the key service
    /// answers (the caller's acknowledgement never waits longer than
    /// `key_service.timeout_ms`).
    async fn tokenize(
        &self,
        draft_subjects: &[crate::proto::v1::Subject],
        mut subjects: Vec<SharedSubject>,
    ) -> Result<Pseudonyms, AlertError> {
        match self
            .tokens
            .complete_subjects(draft_subjects, &mut subjects)
            .await
        {
            Ok(()) => Ok(Pseudonyms {
                subjects,
                tokens_pending: false,
            }),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "exact tokens pending: the alert is stored and its subjects shared once the key service answers");
                Ok(Pseudonyms {
                    subjects,
                    tokens_pending: true,
                })
            }
            Err(e) => Err(AlertError::Tokens(e)),
        }
    }

    /// Who gets this version and what each one gets. A tombstone goes to
    /// every configured peer that had the alert, whatever the policy says now;
    /// any other version goes to the peers the policy in force allows (except
    /// those it was withdrawn from), each with the view its deciding rule
    /// grants. Returns the updated "had it" list too.
    ///
    /// It runs inside the store transaction, so the policy decisions it made
    /// are written to `decided` and counted only once the write commits
    /// ([`Ledger::count_decisions`]): a write that fails counts nothing.
    fn outbound_for(
        &self,
        record: &StoredAlert,
        had: &[AgencyId],
        decided: &Mutex<Vec<(AgencyId, bool)>>,
    ) -> (Vec<AgencyId>, Vec<OutboxItem>) {
        let retracted = record.alert.as_ref().is_some_and(|a| a.retracted);
        let mut shared_with: Vec<AgencyId> = had.to_vec();
        let mut items = Vec::new();
        let mut decisions = Vec::new();
        if retracted {
            let members = self.peers.now();
            for peer in had.iter().filter(|p| members.get(p).is_some()) {
                items.push(tombstone_item(peer.clone(), record));
            }
            *decided.lock().unwrap_or_else(|p| p.into_inner()) = decisions;
            return (shared_with, items);
        }
        let withdrawn = &record.withdrawn_from;
        for (peer, decision) in self.sharing.decide_all(record, SystemTime::now()) {
            decisions.push((peer.clone(), decision.grant.is_some()));
            if withdrawn.iter().any(|w| w == peer.as_str()) {
                continue; // withdrawn by RetractFromPeer: only Reshare sends it again
            }
            if let Some(grant) = &decision.grant {
                items.push(share_item(
                    peer.clone(),
                    record,
                    decision.rule.as_deref(),
                    grant,
                ));
                if !shared_with.contains(&peer) {
                    shared_with.push(peer);
                }
            }
        }
        *decided.lock().unwrap_or_else(|p| p.into_inner()) = decisions;
        (shared_with, items)
    }

    /// Counts the policy decisions of a committed write, once (a replayed
    /// request decided nothing).
    fn count_decisions(&self, written: &LocalWrite, decided: &Mutex<Vec<(AgencyId, bool)>>) {
        if !matches!(written, LocalWrite::Written(_)) {
            return;
        }
        let decided = std::mem::take(&mut *decided.lock().unwrap_or_else(|p| p.into_inner()));
        for (peer, share) in decided {
            self.metrics
                .policy_decisions
                .get_or_create(&crate::metrics::peer_and(
                    &peer,
                    "decision",
                    if share { "share" } else { "deny" },
                ))
                .inc();
        }
    }

    fn parse_id(&self, id: &str) -> Result<AlertId, AlertError> {
        id.parse::<AlertId>()
            .map_err(|e| invalid("id", e.to_string()))
    }

    fn own_id(&self, id: &str) -> Result<AlertId, AlertError> {
        let id = self.parse_id(id)?;
        if id.origin() != &self.agency {
            return Err(AlertError::NotOrigin {
                id: id.to_string(),
                origin: id.origin().to_string(),
            });
        }
        Ok(id)
    }

    pub async fn submit(
        &self,
        client: &ClientIdentity,
        draft: Option<AlertDraft>,
        request_id: &str,
        validate_only: bool,
        call: &CallEntry,
    ) -> Result<Alert, AlertError> {
        let now = SystemTime::now();
        // What a request_id stands for: a retry sends the same draft, a bug
        // sends another one under the same key.
        let digest = draft_digest(draft.as_ref());
        let (draft, pseudonyms) = self.prepare(draft, now)?;
        if request_id.len() > MAX_REQUEST_ID {
            return Err(invalid(
                "request_id",
                format!("at most {MAX_REQUEST_ID} bytes"),
            ));
        }
        if validate_only {
            call.detail("validate_only", true);
            return Ok(self.unstored(draft, now));
        }
        let request_key = (!request_id.is_empty())
            .then(|| format!("{}\0{}", client.name, request_id).into_bytes());
        let pseudonyms = self.tokenize(&draft.subjects, pseudonyms).await?;
        let id = AlertId::generate(&self.agency);
        let decided = Mutex::new(Vec::new());
        let alert = self.new_alert(&id, now, draft);
        let written = self
            .store
            .write_local_then(
                &id,
                request_key.as_deref().map(|key| RequestKey {
                    key,
                    digest: digest.as_ref(),
                }),
                |_| Ok::<_, AlertError>(self.first_version(alert, pseudonyms, &decided)),
                |w| {
                    self.count_decisions(w, &decided);
                    audit_write(call, w)
                },
            )
            .await?;
        match written {
            LocalWrite::Written(rec) | LocalWrite::Replayed(rec) => {
                Ok(rec.alert.unwrap_or_default())
            }
            LocalWrite::Conflict(rec) => Err(invalid(
                "request_id",
                format!(
                    "{request_id:?} was used before for a different draft (it created alert {}); \
                     a retry must send the same draft, a new alert needs a new request_id",
                    rec.alert.map(|a| a.id).unwrap_or_default()
                ),
            )),
        }
    }

    /// The alert a checked `draft` would make, without an id or a version:
    /// what a `validate_only` submit or import answers.
    pub(crate) fn unstored(&self, draft: AlertDraft, now: SystemTime) -> Alert {
        Alert {
            origin: self.agency.to_string(),
            created_at: Some(timestamp(now)),
            updated_at: Some(timestamp(now)),
            content: draft.content,
            subjects: draft.subjects,
            case_reference: draft.case_reference,
            title: draft.title,
            ..Default::default()
        }
    }

    /// Version 1 of a new alert of this agency, holding `draft`.
    fn new_alert(&self, id: &AlertId, now: SystemTime, draft: AlertDraft) -> Alert {
        Alert {
            id: id.to_string(),
            origin: self.agency.to_string(),
            version: 1,
            created_at: Some(timestamp(now)),
            updated_at: Some(timestamp(now)),
            retracted: false,
            retraction_reason: String::new(),
            content: draft.content,
            subjects: draft.subjects,
            case_reference: draft.case_reference,
            title: draft.title,
        }
    }

    /// The first version of a new alert, queued for the peers the policy
    /// allows. Runs inside the store transaction.
    fn first_version(
        &self,
        alert: Alert,
        pseudonyms: Pseudonyms,
        decided: &Mutex<Vec<(AgencyId, bool)>>,
    ) -> (StoredAlert, Vec<OutboxItem>) {
        let mut record = StoredAlert {
            alert: Some(alert),
            shared_with: Vec::new(),
            pseudonyms: pseudonyms.subjects,
            withdrawn_from: Vec::new(),
            tokens_pending: pseudonyms.tokens_pending,
        };
        let (shared_with, items) = self.outbound_for(&record, &[], decided);
        record.shared_with = shared_with.iter().map(ToString::to_string).collect();
        (record, items)
    }

    /// The next version of `record` after `change`, queued for every peer
    /// that has had it (and those the policy now allows). Refused when the
    /// alert is retracted or not at `expected_version` (0: any). Runs
    /// inside the store transaction.
    fn next_version(
        &self,
        mut record: StoredAlert,
        expected_version: u64,
        now: pbjson_types::Timestamp,
        change: impl FnOnce(&mut Alert, &mut Pseudonyms),
        decided: &Mutex<Vec<(AgencyId, bool)>>,
    ) -> Result<(StoredAlert, Vec<OutboxItem>), AlertError> {
        let mut alert = record.alert.clone().unwrap_or_default();
        if alert.retracted {
            return Err(AlertError::Retracted(alert.id));
        }
        if expected_version != 0 && expected_version != alert.version {
            return Err(AlertError::VersionMismatch {
                id: alert.id,
                expected: expected_version,
                current: alert.version,
            });
        }
        let mut pseudonyms = Pseudonyms {
            subjects: record.pseudonyms.clone(),
            tokens_pending: record.tokens_pending,
        };
        change(&mut alert, &mut pseudonyms);
        record.pseudonyms = pseudonyms.subjects;
        record.tokens_pending = pseudonyms.tokens_pending && !alert.retracted;
        alert.version += 1;
        alert.updated_at = Some(now);
        let had: Vec<AgencyId> = record
            .shared_with
            .iter()
            .filter_map(|p| AgencyId::new(p.clone()).ok())
            .collect();
        record.alert = Some(alert);
        let (shared_with, items) = self.outbound_for(&record, &had, decided);
        record.shared_with = shared_with.iter().map(ToString::to_string).collect();
        Ok((record, items))
    }

    /// Shared by update and retract: loads the current record inside the
    /// store transaction, checks origin, state and expected version, applies
    /// `change`, bumps the version and queues it for every peer that has had it.
    async fn change(
        &self,
        id: &str,
        expected_version: u64,
        call: &CallEntry,
        change: impl FnOnce(&mut Alert, &mut Pseudonyms),
    ) -> Result<Alert, AlertError> {
        let id = self.own_id(id)?;
        let now = timestamp(SystemTime::now());
        let decided = Mutex::new(Vec::new());
        let written = self
            .store
            .write_local_then(
                &id,
                None,
                |current| {
                    let record = current.ok_or_else(|| AlertError::NotFound(id.to_string()))?;
                    self.next_version(record, expected_version, now, change, &decided)
                },
                |w| {
                    self.count_decisions(w, &decided);
                    audit_write(call, w)
                },
            )
            .await?;
        let rec = match written {
            LocalWrite::Written(rec) | LocalWrite::Replayed(rec) | LocalWrite::Conflict(rec) => rec,
        };
        Ok(rec.alert.unwrap_or_default())
    }

    pub async fn update(
        &self,
        id: &str,
        expected_version: u64,
        draft: Option<AlertDraft>,
        call: &CallEntry,
    ) -> Result<Alert, AlertError> {
        let (draft, subjects) = self.prepare(draft, SystemTime::now())?;
        let new_pseudonyms = self.tokenize(&draft.subjects, subjects).await?;
        self.change(id, expected_version, call, |alert, pseudonyms| {
            replace_with(alert, draft);
            *pseudonyms = new_pseudonyms;
        })
        .await
    }

    /// A retraction is a tombstone version: content, subjects, case
    /// reference and title are purged here (and the alert's data key
    /// destroyed) and, once delivered, content and subjects at every peer
    /// that had the alert.
    pub async fn retract(
        &self,
        id: &str,
        expected_version: u64,
        reason: &str,
        call: &CallEntry,
    ) -> Result<Alert, AlertError> {
        if reason.len() > self.limits.max_field_bytes.get() * 4 {
            return Err(invalid("reason", "is too long"));
        }
        self.change(id, expected_version, call, |alert, pseudonyms| {
            alert.retracted = true;
            alert.retraction_reason = reason.to_owned();
            alert.content = None;
            alert.subjects.clear();
            // This agency's own reference and title can name the case too.
            alert.case_reference.clear();
            alert.title.clear();
            *pseudonyms = Pseudonyms::default();
        })
        .await
    }

    pub fn get(&self, id: &str) -> Result<Alert, AlertError> {
        let id = self.parse_id(id)?;
        self.store
            .get(&id)?
            .and_then(|r| r.alert)
            .ok_or_else(|| AlertError::NotFound(id.to_string()))
    }

    /// Who got what of one of our own alerts (`GetAlertSharing`): the peers
    /// it went to or was withdrawn from, and every envelope of it that a
    /// peer acknowledged or that was dropped unsent.
    pub fn sharing(&self, id: &str) -> Result<crate::proto::v1::AlertSharing, AlertError> {
        let id = self.own_id(id)?;
        let record = self
            .store
            .get(&id)?
            .ok_or_else(|| AlertError::NotFound(id.to_string()))?;
        Ok(crate::proto::v1::AlertSharing {
            alert_id: id.to_string(),
            shared_with: record.shared_with,
            withdrawn_from: record.withdrawn_from,
            shares: self.store.shares_of(&id.to_string())?,
        })
    }

    pub fn list(&self, req: &ListAlertsRequest) -> Result<ListAlertsResponse, AlertError> {
        let origin = if req.origin.is_empty() {
            None
        } else {
            Some(AgencyId::new(req.origin.clone()).map_err(|e| invalid("origin", e.to_string()))?)
        };
        let category = Category::try_from(req.category)
            .map_err(|_| invalid("category", format!("unknown enum value {}", req.category)))?;
        let page =
            PageRequest::<AlertId>::parse(req.page_size, &req.page_token, DEFAULT_PAGE, MAX_PAGE)
                .map_err(|v| AlertError::Invalid(vec![v]))?;
        let tlp = Tlp::try_from(req.tlp)
            .map_err(|_| invalid("tlp", format!("unknown enum value {}", req.tlp)))?;
        let bound = |field: &str, ts: &Option<pbjson_types::Timestamp>| {
            ts.as_ref()
                .map(|t| {
                    crate::time::system_time(t)
                        .ok_or_else(|| invalid(field, "is not a valid timestamp".to_string()))
                })
                .transpose()
        };
        let after_time = bound("created_after", &req.created_after)?;
        let before_time = bound("created_before", &req.created_before)?;
        let (page_size, after) = (page.size, page.after.map(|id| id.to_string()));
        let prefix = origin.map(|o| format!("{o}:"));
        let own = self.agency.as_str();
        let (alerts, more) =
            self.store
                .list(prefix.as_deref(), after.as_deref(), page_size, |rec| {
                    let Some(a) = &rec.alert else { return false };
                    let created = a.created_at.as_ref().and_then(crate::time::system_time);
                    let content = a.content.as_ref();
                    (req.include_retracted || !a.retracted)
                        && (!req.received_only || a.origin != own)
                        && (category == Category::Unspecified
                            || content.is_some_and(|c| c.category == category as i32))
                        && (tlp == Tlp::Unspecified || content.is_some_and(|c| c.tlp == tlp as i32))
                        && after_time.is_none_or(|t| created.is_some_and(|c| c >= t))
                        && before_time.is_none_or(|t| created.is_some_and(|c| c < t))
                })?;
        let alerts: Vec<Alert> = alerts.into_iter().filter_map(|r| r.alert).collect();
        let next_page_token = if more {
            alerts.last().map(|a| a.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(ListAlertsResponse {
            alerts,
            next_page_token,
        })
    }
}

/// A new version of an own alert takes the whole of the draft: its shared
/// content and subjects, and this agency's own reference and title.
pub(crate) fn replace_with(alert: &mut Alert, draft: AlertDraft) {
    alert.content = draft.content;
    alert.subjects = draft.subjects;
    alert.case_reference = draft.case_reference;
    alert.title = draft.title;
}
