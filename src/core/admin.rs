//! What an agency's administrator does with a node: its status and each
//! peer's delivery state, the sharing policy (install, explain, diff), the
//! audit log read back, and online backups. Each is one operation on
//! [`NodeCore`], so every channel (the admin RPCs, the CLI through them)
//! applies the same rules and limits; the handlers only authorize, call and
//! translate.

use thiserror::Error;

use super::NodeCore;
use crate::audit::query::{Filter, Found, Page};
use crate::audit::{Action, Checkpoint};
use crate::ids::{AgencyId, AlertId};
use crate::paging::PageRequest;
use crate::policy::Policy;
use crate::proto::v1::{
    AuditCheckpoint, AuditEntry, BackupStoreResponse, DiffPolicyRequest, DiffPolicyResponse,
    ExplainPolicyRequest, ExplainPolicyResponse, GetActivityResponse, NodeStatus, PeerStatus,
    PolicyCaseResult, PolicyVersion, QueryAuditRequest, QueryAuditResponse, SetPolicyRequest,
    TestPolicyResponse, VerifyAuditResponse,
};
use crate::sharing::{MAX_POLICY_BYTES, SharingError};
use crate::store::StoreError;
use crate::time::timestamp;
use crate::violation::FieldViolation;

const MAX_AUDIT_PAGE: u32 = 1000;
const DEFAULT_AUDIT_PAGE: u32 = 100;
/// Longest comment kept with a policy version.
const MAX_POLICY_COMMENT: usize = 4096;
/// Retraction ids listed per peer in a peer's status.
const PENDING_RETRACTIONS_LISTED: usize = 100;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error("invalid request: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldViolation>),
    #[error("alert {0} not found")]
    NotFound(String),
    #[error("a backup labelled `{0}` exists")]
    BackupExists(String),
    #[error("backup failed: {0}")]
    Backup(StoreError),
    #[error("{0} failed: {1}")]
    Task(&'static str, String),
    #[error(transparent)]
    Sharing(#[from] SharingError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, description: impl Into<String>) -> AdminError {
    AdminError::Invalid(vec![FieldViolation::new(field, description)])
}

/// Runs a blocking read (a walk over the store) off the async workers.
async fn blocking<R: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, AdminError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AdminError::Task(what, e.to_string()))
}

impl NodeCore {
    /// Where the directory in force stands, for status and the console.
    pub fn directory_health(&self) -> Option<crate::proto::v1::DirectoryHealth> {
        let at = |secs: i64| crate::time::ms_timestamp(secs.saturating_mul(1000));
        let expiry = self.federation.expiry(crate::time::now_ms() / 1000)?;
        let (expires_at, hold_at) = match expiry {
            crate::federation::Expiry::Current { expires_at } => (expires_at, None),
            crate::federation::Expiry::Grace {
                expires_at,
                hold_at,
            }
            | crate::federation::Expiry::Holding {
                expires_at,
                hold_at,
            } => (expires_at, Some(hold_at)),
        };
        // What the node does, not only what the clock says: the hold
        // starts at the next check after `hold_at`, delivery goes on until.
        let holding = self.federation.roster().now().hold.is_some() && self.outbound.all_paused();
        let state = match expiry {
            crate::federation::Expiry::Holding { .. } if !holding => "grace",
            other => other.name(),
        };
        Some(crate::proto::v1::DirectoryHealth {
            version: self.federation.version(),
            expires_at: Some(at(expires_at)),
            state: state.into(),
            hold_at: hold_at.map(at),
        })
    }

    /// Where the epochs of a sealed store stand; `None` in clear.
    pub fn encryption_health(&self) -> Option<crate::proto::v1::EncryptionHealth> {
        let state = self.store.vault_state()?;
        let (epoch, retention) = self.settings.epochs?;
        let at = |secs: i64| crate::time::ms_timestamp(secs.saturating_mul(1000));
        Some(crate::proto::v1::EncryptionHealth {
            kek_id: state.kek_id,
            epoch: state.current.0,
            epoch_started_at: Some(at(state.current_started_at)),
            next_epoch_at: Some(at(state.current_started_at + epoch.as_secs() as i64)),
            kept: state.kept.iter().map(|e| e.0).collect(),
            backup_retention_secs: retention.as_secs(),
            backup_keys: state.backups.len() as u32,
            oldest_backup_at: state.backups.first().map(|(_, made)| at(*made)),
        })
    }

    /// The node's identity, versions and counts (`GetStatus`).
    pub fn status(&self) -> Result<NodeStatus, AdminError> {
        let (local, received) = self.store.count_alerts(&self.settings.agency)?;
        let (open, overdue) = self
            .disclosures
            .open_counts()?
            .values()
            .fold((0, 0), |(o, d), (open, overdue)| (o + open, d + overdue));
        Ok(NodeStatus {
            directory: self.directory_health(),
            encryption: self.encryption_health(),
            exact_tokens: self.ledger.token_source(),
            tokens_pending: self.store.tokens_pending_count()?,
            disclosure_requests_open: open,
            disclosure_requests_overdue: overdue,
            agency_id: self.settings.agency.to_string(),
            federation: self.settings.federation.to_string(),
            software_version: crate::release::RELEASE.into(),
            protocol_version: crate::release::PROTOCOL.newest,
            started_at: Some(timestamp(self.settings.started_at)),
            local_alerts: local,
            received_alerts: received,
            outbox_depth: self.store.outbox_total()?,
            policy_version: self.sharing.version(),
            refused_deliveries: self.store.refusal_count()?,
            purged_alerts: self.store.purge_count()?,
            certificates: self
                .settings
                .certificates
                .iter()
                .map(|(name, file, end)| crate::proto::v1::CertificateExpiry {
                    name: name.to_string(),
                    file: file.display().to_string(),
                    not_after: end.map(timestamp),
                    days_left: end.map_or(0, |t| {
                        crate::time::days_until(t, std::time::SystemTime::now())
                    }),
                })
                .collect(),
        })
    }

    /// Puts a new client-role table in force (SIGHUP re-reads it from
    /// node.toml), and records what changed in the audit log: who may call
    /// this node is as much the auditors' business as the policy.
    pub async fn reload_clients(
        &self,
        roles: std::collections::BTreeMap<crate::ids::ClientName, crate::config::Roles>,
    ) -> Result<crate::identity::access::RolesChange, AdminError> {
        let change = self.clients.replace_roles(roles);
        if !change.is_empty() {
            let names = |l: &[crate::ids::ClientName]| {
                l.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            self.store
                .audit([crate::audit::Event::new(
                    crate::audit::NODE,
                    crate::audit::Action::ClientsReload,
                    "OK",
                )
                .detail("added", names(&change.added))
                .detail("removed", names(&change.removed))
                .detail("changed", names(&change.changed))])
                .await?;
        }
        Ok(change)
    }

    /// Each peer's delivery state: connection, queue, last ack and error
    /// (`ListPeers`).
    pub fn peer_statuses(&self) -> Result<Vec<PeerStatus>, AdminError> {
        let mut peers = Vec::new();
        let now = std::time::SystemTime::now();
        for (id, address, s) in self.outbound.states() {
            let queue = self.store.outbox_summary(&id, PENDING_RETRACTIONS_LISTED)?;
            peers.push(PeerStatus {
                queue_depth: self.store.outbox_depth(&id),
                agency_id: id.to_string(),
                address,
                connected: s.connected,
                // A member a newer directory removed or suspended: nothing
                // goes to it, whatever its link.
                state: match s.left {
                    Some(_) => "left".into(),
                    None => s.link(now, self.outbound.fresh_for()).as_str().into(),
                },
                last_contact_at: s.last_contact_at.map(timestamp),
                last_ack_at: s.last_ack_at.map(timestamp),
                last_error: s
                    .last_error
                    .as_ref()
                    .map(|e| e.0.clone())
                    .unwrap_or_default(),
                last_error_at: s.last_error.map(|e| timestamp(e.1)),
                last_rejection: s
                    .last_rejection
                    .as_ref()
                    .map(|e| e.0.clone())
                    .unwrap_or_default(),
                last_rejection_at: s.last_rejection.map(|e| timestamp(e.1)),
                certificate_not_after: s.certificate_not_after.map(timestamp),
                certificate_days_left: s
                    .certificate_not_after
                    .map_or(0, |t| crate::time::days_until(t, now)),
                delivered_total: s.delivered_total,
                rejected_total: s.rejected_total,
                oldest_undelivered_at: queue.oldest_queued_at,
                retries: s.retries,
                expired_total: s.expired_total,
                pending_retractions: queue.pending_retractions,
                pending_retraction_ids: queue.pending_retraction_ids,
                release: s.release.clone().unwrap_or_default(),
                capabilities: s
                    .capabilities
                    .as_ref()
                    .map(|c| c.names())
                    .unwrap_or_default(),
                held: s.held.clone().into_iter().collect(),
            });
        }
        Ok(peers)
    }

    /// Installs the policy in `r` as the new version in force
    /// (`SetPolicy`), set by `set_by`.
    pub async fn set_policy(
        &self,
        r: SetPolicyRequest,
        set_by: &str,
    ) -> Result<PolicyVersion, AdminError> {
        if r.policy_text.len() > MAX_POLICY_BYTES {
            return Err(invalid(
                "policy_text",
                format!("at most {MAX_POLICY_BYTES} bytes"),
            ));
        }
        if r.comment.len() > MAX_POLICY_COMMENT {
            return Err(invalid(
                "comment",
                format!("at most {MAX_POLICY_COMMENT} bytes"),
            ));
        }
        Ok(self
            .sharing
            .set(r.policy_text, r.expected_version, set_by, &r.comment)
            .await?)
    }

    /// A candidate policy from request field `field`, validated against the
    /// configured peers.
    fn candidate(&self, field: &str, text: &str) -> Result<Policy, AdminError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(invalid(field, format!("at most {MAX_POLICY_BYTES} bytes")));
        }
        self.sharing
            .parse(text, std::path::Path::new(field))
            .map_err(|e| SharingError::Invalid(e).into())
    }

    /// What the policy in force, or a candidate, decides for one stored
    /// alert and each peer asked about (all peers when none is named)
    /// (`ExplainPolicy`).
    pub fn explain_policy(
        &self,
        r: &ExplainPolicyRequest,
    ) -> Result<ExplainPolicyResponse, AdminError> {
        let id: AlertId = r
            .alert_id
            .parse()
            .map_err(|e: crate::ids::IdError| invalid("alert_id", e.to_string()))?;
        let record = self
            .store
            .get(&id)?
            .ok_or_else(|| AdminError::NotFound(id.to_string()))?;
        let mut peers = Vec::with_capacity(r.peers.len());
        for (i, p) in r.peers.iter().enumerate() {
            let peer = AgencyId::new(p.clone())
                .ok()
                .filter(|a| self.sharing.peers().contains(a))
                .ok_or_else(|| {
                    invalid(
                        &format!("peers[{i}]"),
                        format!("`{p}` is not a configured peer"),
                    )
                })?;
            peers.push(peer);
        }
        let candidate = if r.policy_text.is_empty() {
            None
        } else {
            Some(self.candidate("policy_text", &r.policy_text)?)
        };
        Ok(self.sharing.explain(&record, &peers, candidate.as_ref()))
    }

    /// What would change for each peer, over every own live alert, if the
    /// new policy replaced the old one (or the one in force) (`DiffPolicy`).
    pub async fn diff_policy(
        &self,
        r: &DiffPolicyRequest,
    ) -> Result<DiffPolicyResponse, AdminError> {
        let old = if r.old_policy_text.is_empty() {
            None
        } else {
            Some(self.candidate("old_policy_text", &r.old_policy_text)?)
        };
        let new = self.candidate("new_policy_text", &r.new_policy_text)?;
        let sharing = self.sharing.clone();
        Ok(blocking("diff", move || sharing.diff(old.as_ref(), &new)).await??)
    }

    /// Every installed policy version, newest first (`ListPolicyVersions`).
    pub fn policy_versions(&self) -> Result<Vec<PolicyVersion>, AdminError> {
        Ok(self.store.policy_versions()?)
    }

    /// Runs the policy's test cases against a candidate policy, or the one
    /// in force (`TestPolicy`). The cases file and the alert files it names
    /// are read at each run, so an administrator can edit them beside the
    /// policy.
    pub fn test_policy(&self, text: &str) -> Result<TestPolicyResponse, AdminError> {
        let Some(path) = &self.settings.policy_tests else {
            return Ok(TestPolicyResponse {
                configured: false,
                results: Vec::new(),
            });
        };
        let policy = if text.is_empty() {
            let active = self.sharing.current();
            match &active.policy {
                Some(p) => p.clone(),
                None => return Err(invalid("policy_text", "no policy is in force: give one")),
            }
        } else {
            self.candidate("policy_text", text)?
        };
        let at = |what: String| invalid("tests", format!("{}: {what}", path.display()));
        let cases_text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
        let cases = crate::policy::cases::parse(&cases_text).map_err(at)?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        let now = std::time::SystemTime::now();
        let mut results = Vec::with_capacity(cases.len());
        for case in &cases {
            let in_case = |what: String| invalid("tests", format!("case `{}`: {what}", case.name));
            let file = base.join(&case.alert);
            let json = std::fs::read_to_string(&file)
                .map_err(|e| in_case(format!("{}: {e}", file.display())))?;
            let mut draft: crate::proto::v1::AlertDraft =
                serde_json::from_str(&json).map_err(|e| {
                    in_case(format!(
                        "{}:{}:{}: {e}",
                        file.display(),
                        e.line(),
                        e.column()
                    ))
                })?;
            case.apply_overrides(&mut draft).map_err(in_case)?;
            let record = self
                .ledger
                .record_for_test(draft)
                .map_err(|e| in_case(e.to_string()))?;
            let outcome = case
                .run(&policy, &self.settings.agency, record, now)
                .map_err(in_case)?;
            results.push(PolicyCaseResult {
                name: outcome.name,
                passed: outcome.passed,
                expected: outcome.expected,
                got: outcome.got,
                rule: outcome.rule.unwrap_or_default(),
                reason: outcome.reason,
            });
        }
        Ok(TestPolicyResponse {
            configured: true,
            results,
        })
    }

    /// Verifies the whole audit chain and its checkpoints with this node's
    /// own key (`VerifyAudit`). An auditor who distrusts the node verifies
    /// an export, or the stopped store, with the key they were given.
    pub async fn verify_audit(&self) -> Result<VerifyAuditResponse, AdminError> {
        let store = self.store.clone();
        let key = self.signer.public();
        let result = blocking("audit verify", move || store.audit_verify(&key, &[])).await?;
        Ok(match result {
            Ok(s) => VerifyAuditResponse {
                intact: true,
                first: s.first,
                last: s.last,
                entries: s.entries,
                checkpoints: s.checkpoints as u32,
                unsigned_tail: s.unsigned_tail(),
                ..Default::default()
            },
            Err(b) => VerifyAuditResponse {
                intact: false,
                broken_at: b.seq,
                reason: b.reason,
                ..Default::default()
            },
        })
    }

    /// What the node did per day over the last `days` (`GetActivity`).
    pub fn activity(&self, days: u32) -> Result<GetActivityResponse, AdminError> {
        let days = match days {
            0 => 14,
            1..=90 => days,
            _ => return Err(invalid("days", "1 to 90")),
        };
        Ok(GetActivityResponse {
            days: self.store.activity(days, std::time::SystemTime::now())?,
        })
    }

    /// One page of the audit log, filtered, with each entry's previous hash
    /// and (if asked) the checkpoints over it, so the page verifies on its
    /// own (`QueryAudit`).
    pub async fn query_audit(
        &self,
        r: &QueryAuditRequest,
    ) -> Result<QueryAuditResponse, AdminError> {
        let filter = audit_filter(r)?;
        let page = PageRequest::<u64>::parse(
            r.page_size,
            &r.page_token,
            DEFAULT_AUDIT_PAGE,
            MAX_AUDIT_PAGE,
        )
        .map_err(|v| AdminError::Invalid(vec![v]))?;
        let store = self.store.clone();
        let checkpoints = r.include_checkpoints;
        let newest_first = r.newest_first;
        let page: Page = blocking("audit query", move || {
            if newest_first {
                store.audit_page_newest_first(&filter, page.after, page.size, checkpoints)
            } else {
                store.audit_page(&filter, page.after, page.size, checkpoints)
            }
        })
        .await??;
        Ok(QueryAuditResponse {
            head_sequence: self.store.audit_head().0,
            next_page_token: page.next.map(|n| n.to_string()).unwrap_or_default(),
            checkpoints: page.checkpoints.into_iter().map(audit_checkpoint).collect(),
            entries: page.entries.into_iter().map(audit_entry).collect(),
        })
    }

    /// Copies the store, online, into the node's backup directory under
    /// `label` (a timestamp when empty) (`BackupStore`).
    /// Wraps the epoch keys under the KEK in `kek_file` (`RotateKek`).
    pub async fn rotate_kek(
        &self,
        kek_file: &str,
    ) -> Result<crate::proto::v1::RotateKekResponse, AdminError> {
        if kek_file.is_empty() || kek_file.len() > 4096 {
            return Err(invalid(
                "kek_file",
                "the new KEK file's path, 1 to 4096 bytes",
            ));
        }
        let Some(vault) = self.store.vault().cloned() else {
            return Err(invalid(
                "kek_file",
                "this node's store is in clear: there is no KEK to rotate",
            ));
        };
        let path = std::path::PathBuf::from(kek_file);
        let started = std::time::Instant::now();
        let (old, new, epochs) = blocking("rotate-kek", move || vault.rotate_kek(&path))
            .await?
            .map_err(|e| invalid("kek_file", e.to_string()))?;
        tracing::info!(%old, %new, epochs, "KEK rotated");
        Ok(crate::proto::v1::RotateKekResponse {
            old_kek_id: old,
            new_kek_id: new,
            epochs: epochs as u64,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    pub async fn backup(&self, label: &str) -> Result<BackupStoreResponse, AdminError> {
        let label = backup_label(label)?;
        let target = self.settings.backup_dir.join(&label);
        if target.exists() {
            return Err(AdminError::BackupExists(label));
        }
        let store = self.store.clone();
        let stats = blocking("backup", move || store.backup_to(&target))
            .await?
            .map_err(AdminError::Backup)?;
        tracing::info!(path = %stats.path.display(), alerts = stats.alerts, copy_ms = stats.copy_ms, "store backed up");
        Ok(BackupStoreResponse {
            path: stats.path.display().to_string(),
            alerts: stats.alerts,
            audit_entries: stats.audit_entries,
            bytes: stats.bytes,
            paused_ms: 0,
            copy_ms: stats.copy_ms,
        })
    }
}

fn audit_filter(r: &QueryAuditRequest) -> Result<Filter, AdminError> {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let ms = |t: &Option<pbjson_types::Timestamp>| {
        t.as_ref()
            .map(|t| t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000))
    };
    let action = match text(&r.action) {
        None => None,
        Some(a) => Some(
            a.parse::<Action>()
                .map_err(|e| invalid("action", e.to_string()))?,
        ),
    };
    if !r.alert_id.is_empty() {
        r.alert_id
            .parse::<AlertId>()
            .map_err(|e| invalid("alert_id", e.to_string()))?;
    }
    let filter = Filter {
        actor: text(&r.actor),
        action,
        alert: text(&r.alert_id),
        since_ms: ms(&r.since),
        until_ms: ms(&r.until),
    };
    if let (Some(s), Some(u)) = (filter.since_ms, filter.until_ms)
        && s > u
    {
        return Err(invalid("until", "is before since"));
    }
    Ok(filter)
}

fn audit_entry(f: Found) -> AuditEntry {
    let time = crate::time::parse_ms(&f.entry.time).map(crate::time::ms_timestamp);
    AuditEntry {
        sequence: f.raw.seq,
        time,
        actor: f.entry.event.actor,
        action: f.entry.event.action.as_str().to_owned(),
        objects: f.entry.event.objects,
        outcome: f.entry.event.outcome,
        purpose: f.entry.event.purpose,
        detail: f.entry.event.detail.into_iter().collect(),
        hash: f.raw.hash.to_vec(),
        prev_hash: f.prev.to_vec(),
        body: String::from_utf8_lossy(&f.raw.body).into_owned(),
    }
}

fn audit_checkpoint(c: Checkpoint) -> AuditCheckpoint {
    AuditCheckpoint {
        sequence: c.seq,
        hash: c.hash.to_vec(),
        time: c.time,
        signature: c.signature,
    }
}

/// A backup label: a plain directory name, never a path; empty means a
/// timestamp.
fn backup_label(label: &str) -> Result<String, AdminError> {
    if label.is_empty() {
        return Ok(crate::time::format_ms(crate::time::now_ms())
            .replace([':', '-'], "")
            .replace('.', "-"));
    }
    let ok = label.len() <= 64
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(invalid("label", "use 1 to 64 letters, digits, `-` or `_`"));
    }
    Ok(label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_labels_are_plain_names() {
        assert_eq!(backup_label("weekly-1_a").unwrap(), "weekly-1_a");
        for bad in ["../x", "a/b", "a b", &"x".repeat(65)] {
            assert!(
                matches!(backup_label(bad), Err(AdminError::Invalid(v)) if v[0].field == "label"),
                "{bad:?} accepted"
            );
        }
        let stamp = backup_label("").unwrap();
        assert!(
            stamp.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{stamp}"
        );
    }
}
