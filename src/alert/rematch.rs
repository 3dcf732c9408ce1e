//! Keeping stored alerts under the matching settings in force. Tokens and
//! person encodings are made when an alert is written, and hits when it
//! is matched; when the encoding scheme, the review band or the set of
//! matching keys valid now changes (a new version of the node, a changed
//! `[matching]` section, a key ring rotation), alerts written before would
//! otherwise stay encoded and matched the old way: a person encoded only
//! under scheme 1 or a key that has ended would meet nobody again.
//!
//! So at start the node compares the settings its store was last brought
//! under (the `matching` setting) with those in force and, when they
//! differ, walks its own alerts: each whose tokens or encodings would now
//! come out differently gets them anew as a new version (matched, and
//! shared with its peers as any update, so that they re-match it too);
//! each other one is matched again under the new band. Only then is the
//! new setting recorded, so a crash halfway resumes at the next start;
//! alerts already re-encoded compare equal and are only matched again.
//! Other agencies' alerts are theirs to re-encode: their nodes do the same.

use std::time::SystemTime;

use super::{AlertError, Ledger};
use crate::audit::{Action, CallEntry, Event, NODE};
use crate::ids::AlertId;
use crate::proto::v1::StoredAlert;

/// The name under which the store keeps the matching settings.
const SETTING: &str = "matching";

/// Alerts matched again per transaction (and per sync).
const REMATCH_BATCH: usize = 256;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RematchReport {
    /// Nothing to do: the store was already under these settings.
    pub up_to_date: bool,
    /// Own alerts given new tokens and encodings (a new version each).
    pub re_encoded: u64,
    /// Own alerts matched again with the encodings they had.
    pub re_matched: u64,
    /// Hits the pass found.
    pub hits: u64,
}

impl Ledger {
    /// The matching settings in force, as the store records them: the
    /// encoding scheme, the review band and the key versions valid now.
    pub fn matching_settings(&self) -> String {
        let band = self.store.band();
        let keys: Vec<String> = self
            .pseudo
            .ring()
            .map(|r| {
                r.active(time::OffsetDateTime::now_utc())
                    .map(|k| k.version.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut settings = format!(
            "scheme={} likely={} possible={} keys={}",
            String::from_utf8_lossy(crate::pseudo::person::SCHEME),
            band.likely,
            band.possible,
            keys.join(",")
        );
        // Exact tokens from the key service (only then, so stores of nodes
        // without one keep the settings they were brought under).
        if self.tokens.uses_key_service() {
            let oprf: Vec<String> = self.tokens.versions().iter().map(u32::to_string).collect();
            settings.push_str(&format!(
                " oprf={} ring_tokens={}",
                oprf.join(","),
                self.pseudo.ring_tokens()
            ));
        }
        settings
    }

    /// Brings every own alert under the matching settings in force, if the
    /// store was last brought under others (see the module documentation).
    pub async fn rematch(&self) -> Result<RematchReport, AlertError> {
        let settings = self.matching_settings();
        if self.store.setting(SETTING)?.as_deref() == Some(settings.as_str()) {
            return Ok(RematchReport {
                up_to_date: true,
                ..Default::default()
            });
        }
        // Ids only: the records are read one at a time below, so a store of
        // millions of alerts is not held in memory.
        let mut own = Vec::new();
        self.store.for_each_own(&self.agency, |record| {
            if let Some(a) = &record.alert
                && !a.retracted
            {
                own.push(a.id.clone());
            }
        })?;
        let mut report = RematchReport::default();
        let mut unchanged = Vec::new();
        for id in own {
            let id: AlertId = self.parse_id(&id)?;
            let Some(record) = self.store.get(&id)? else {
                continue; // purged meanwhile
            };
            let Some(alert) = &record.alert else { continue };
            match self.fresh_pseudonyms_waiting(&record).await? {
                Some(fresh) => {
                    let call = CallEntry::new(
                        Event::new(NODE, Action::AlertUpdate, "OK")
                            .detail("reason", "re-encoded under the matching settings in force"),
                    );
                    match self
                        .re_encode(&id.to_string(), alert.version, fresh, &call)
                        .await
                    {
                        Ok(()) => report.re_encoded += 1,
                        // Updated meanwhile: that update encoded it anew.
                        Err(AlertError::VersionMismatch { .. } | AlertError::Retracted(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    unchanged.push(id);
                    if unchanged.len() == REMATCH_BATCH {
                        report.re_matched += unchanged.len() as u64;
                        report.hits += self.store.rematch(&unchanged).await?.len() as u64;
                        unchanged.clear();
                    }
                }
            }
        }
        report.re_matched += unchanged.len() as u64;
        report.hits += self.store.rematch(&unchanged).await?.len() as u64;
        self.store.set_setting(SETTING, &settings).await?;
        Ok(report)
    }

    /// [`Ledger::fresh_pseudonyms`], waiting out key service outages and
    /// budget refusals: a migration re-derives every own alert, more than
    /// one day's budget for a large store, and must resume where it is
    /// rather than start over (each restart would spend the budget again).
    async fn fresh_pseudonyms_waiting(
        &self,
        record: &StoredAlert,
    ) -> Result<Option<super::Pseudonyms>, AlertError> {
        let mut backoff = std::time::Duration::from_secs(1);
        loop {
            match self.fresh_pseudonyms(record).await {
                Err(AlertError::Tokens(e)) if e.is_transient() => {
                    let wait = match &e {
                        crate::tokens::TokenError::OverBudget {
                            retry_after: Some(after),
                            ..
                        } => *after,
                        _ => {
                            backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
                            backoff
                        }
                    };
                    tracing::warn!(error = %e, wait_secs = wait.as_secs(), "re-deriving own alerts waits for the key service");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// The pseudonyms `record`'s subjects get now (with the key service's
    /// tokens, when configured), when they differ from those it holds.
    async fn fresh_pseudonyms(
        &self,
        record: &StoredAlert,
    ) -> Result<Option<super::Pseudonyms>, AlertError> {
        let Some(alert) = record.alert.as_ref() else {
            return Ok(None);
        };
        let Ok(subjects) =
            self.pseudo
                .pseudonymize(&alert.subjects, "subjects", SystemTime::now().into())
        else {
            return Ok(None);
        };
        let mut subjects = subjects;
        // An outage stops the pass (retried at the next start) instead of
        // storing every alert anew with its tokens pending.
        self.tokens
            .complete_subjects(&alert.subjects, &mut subjects)
            .await
            .map_err(AlertError::Tokens)?;
        Ok(
            (subjects != record.pseudonyms || record.tokens_pending).then_some(super::Pseudonyms {
                subjects,
                tokens_pending: false,
            }),
        )
    }

    /// Writes `fresh` pseudonyms as a new version of own alert `id` (the
    /// content unchanged), through the path every update takes.
    async fn re_encode(
        &self,
        id: &str,
        version: u64,
        fresh: super::Pseudonyms,
        call: &CallEntry,
    ) -> Result<(), AlertError> {
        self.change(id, version, call, |_, pseudonyms| {
            *pseudonyms = fresh;
        })
        .await
        .map(|_| ())
    }
}
