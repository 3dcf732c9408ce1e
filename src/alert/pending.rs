//! Completing own alerts stored while the OPRF key service was unreachable
//! (or this node over its budget): their subjects get the key service's
//! tokens as a new version, written through the path every update takes,
//! so it is matched, and queued for peers with its subjects, in one
//! transaction that also unlists it from `tokens_pending`. A crash halfway
//! leaves it listed and it is done again with fresh blinds.

use std::time::SystemTime;

use super::{AlertError, Ledger, Pseudonyms};
use crate::audit::{Action, CallEntry, Event, NODE};

/// Alerts completed per pass (one key service call each).
const PASS: usize = 64;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PendingReport {
    /// Alerts given their tokens (a new version each).
    pub completed: u64,
    /// Entries dropped: the alert was purged, retracted or changed meanwhile.
    pub dropped: u64,
    /// Still waiting after this pass.
    pub left: u64,
}

impl Ledger {
    /// Where exact tokens come from, in words (`GetStatus`).
    ///
    /// With several key service replicas it says that each counts this
    /// node's budget on its own: n replicas can give the node up to n times
    /// the budget `keyservice.toml` sets, so the federation operator sizes
    /// it as the intended limit divided by n (operator guide, Budgets).
    pub fn token_source(&self) -> String {
        let source = match (self.tokens.uses_key_service(), self.pseudo.ring_tokens()) {
            (true, true) => "key service and key ring",
            (true, false) => "key service",
            (false, true) => "key ring",
            (false, false) => "none",
        };
        match self.tokens.replicas() {
            n if n > 1 => format!(
                "{source} ({n} replicas, each counting this node's budget on its own: up to \
                 {n}x the budget of keyservice.toml)"
            ),
            _ => source.to_owned(),
        }
    }

    /// Own alerts whose tokens wait for the key service.
    pub fn tokens_pending(&self) -> Result<u64, AlertError> {
        Ok(self.store.tokens_pending_count()?)
    }

    /// Gives up to [`PASS`] pending alerts their tokens. Stops at the first
    /// outage or budget refusal (returned, for the caller's back-off).
    pub async fn complete_pending(&self) -> Result<PendingReport, AlertError> {
        let mut report = PendingReport::default();
        for id in self.store.tokens_pending(PASS)? {
            let record = self.store.get(&id)?;
            let Some(alert) = record
                .as_ref()
                .filter(|r| r.tokens_pending)
                .and_then(|r| r.alert.as_ref())
                .filter(|a| !a.retracted)
            else {
                self.store.drop_tokens_pending(&id).await?;
                report.dropped += 1;
                continue;
            };
            let mut subjects = self
                .pseudo
                .pseudonymize(&alert.subjects, "subjects", SystemTime::now().into())
                .map_err(AlertError::Invalid)?;
            self.tokens
                .complete_subjects(&alert.subjects, &mut subjects)
                .await
                .map_err(AlertError::Tokens)?;
            let call = CallEntry::new(
                Event::new(NODE, Action::TokensDerive, "OK")
                    .detail("reason", "exact tokens derived after a key service outage"),
            );
            let fresh = Pseudonyms {
                subjects,
                tokens_pending: false,
            };
            match self
                .change(&id.to_string(), alert.version, &call, |_, p| *p = fresh)
                .await
            {
                Ok(_) => report.completed += 1,
                // Changed meanwhile: that change tokenized it (or is pending
                // again and stays listed).
                Err(AlertError::VersionMismatch { .. } | AlertError::Retracted(_)) => {
                    report.dropped += 1
                }
                Err(e) => return Err(e),
            }
        }
        report.left = self.store.tokens_pending_count()?;
        Ok(report)
    }
}
