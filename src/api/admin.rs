use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::call::Call;
use super::{audited, auth};
use crate::audit::Action;
use crate::audit::query::{Filter, Found};
use crate::config::Role;
use crate::core::NodeCore;
use crate::ids::{AgencyId, AlertId};
use crate::policy::Policy;
use crate::proto::PROTOCOL_VERSION;
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::{
    AuditCheckpoint, AuditEntry, BackfillResponse, BackupStoreRequest, BackupStoreResponse,
    DiffPolicyRequest, DiffPolicyResponse, ExplainPolicyRequest, ExplainPolicyResponse,
    GetPolicyRequest, GetStatusRequest, ListPeersRequest, ListPeersResponse, NodeStatus,
    PeerStatus, PolicyVersion, QueryAuditRequest, QueryAuditResponse, ReshareRequest,
    RetractFromPeerRequest, SetPolicyRequest,
};
use crate::sharing::{MAX_POLICY_BYTES, SharingError};
use crate::time::timestamp;

use super::status::store_unavailable;

use crate::violation::invalid_field as invalid;

/// What a Reshare or RetractFromPeer did, for its audit entry (each envelope
/// it queued is logged again as `alert.share` when the peer acknowledges it).
fn backfill_detail(call: &Call, peer: &str, dry_run: bool, out: &BackfillResponse) {
    call.detail("peer", peer);
    call.detail("dry_run", dry_run);
    call.detail("matched", out.matched);
    call.detail("queued", out.queued);
}

impl AdminApi {
    /// A candidate policy from a request field, validated against the peers.
    fn candidate(&self, field: &str, text: &str) -> Result<Policy, Status> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(invalid(field, format!("at most {MAX_POLICY_BYTES} bytes")));
        }
        self.0
            .sharing
            .parse(text, std::path::Path::new(field))
            .map_err(|e| SharingError::Invalid(e).into())
    }
}

pub struct AdminApi(pub Arc<NodeCore>);

impl AdminApi {
    async fn get_status_call(
        &self,
        _call: &Call,
        req: Request<GetStatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        auth::client(&self.0.clients, &req, Role::Admin)?;
        let core = &self.0;
        let (local, received) = core
            .store
            .count_alerts(&core.agency)
            .map_err(store_unavailable)?;
        Ok(Response::new(NodeStatus {
            agency_id: core.agency.to_string(),
            federation: core.federation.to_string(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            protocol_version: PROTOCOL_VERSION,
            started_at: Some(timestamp(core.started_at)),
            local_alerts: local,
            received_alerts: received,
            outbox_depth: core.store.outbox_total(),
            policy_version: core.sharing.version(),
            refused_deliveries: core.store.refusal_count(),
            purged_alerts: core.store.purge_count(),
        }))
    }

    async fn list_peers_call(
        &self,
        _call: &Call,
        req: Request<ListPeersRequest>,
    ) -> Result<Response<ListPeersResponse>, Status> {
        auth::client(&self.0.clients, &req, Role::Admin)?;
        let mut peers = Vec::new();
        for (id, address, s) in self.0.outbound.states() {
            let queue = self
                .0
                .store
                .outbox_summary(&id, 100)
                .map_err(store_unavailable)?;
            peers.push(PeerStatus {
                queue_depth: self.0.store.outbox_depth(&id),
                agency_id: id.to_string(),
                address,
                connected: s.connected,
                last_ack_at: s.last_ack_at.map(timestamp),
                last_error: s
                    .last_error
                    .as_ref()
                    .map(|e| e.0.clone())
                    .unwrap_or_default(),
                last_error_at: s.last_error.map(|e| timestamp(e.1)),
                delivered_total: s.delivered_total,
                rejected_total: s.rejected_total,
                oldest_undelivered_at: queue.oldest_queued_at,
                retries: s.retries,
                expired_total: s.expired_total,
                pending_retractions: queue.pending_retractions,
                pending_retraction_ids: queue.pending_retraction_ids,
            });
        }
        Ok(Response::new(ListPeersResponse { peers }))
    }

    async fn get_policy_call(
        &self,
        _call: &Call,
        req: Request<GetPolicyRequest>,
    ) -> Result<Response<PolicyVersion>, Status> {
        auth::client(&self.0.clients, &req, Role::Admin)?;
        Ok(Response::new(self.0.sharing.current().record.clone()))
    }

    async fn set_policy_call(
        &self,
        call: &Call,
        req: Request<SetPolicyRequest>,
    ) -> Result<Response<PolicyVersion>, Status> {
        let client = auth::client(&self.0.clients, &req, Role::Admin)?;
        let r = req.into_inner();
        if r.policy_text.len() > MAX_POLICY_BYTES {
            return Err(invalid(
                "policy_text",
                format!("at most {MAX_POLICY_BYTES} bytes"),
            ));
        }
        if r.comment.len() > 4096 {
            return Err(invalid("comment", "at most 4096 bytes".into()));
        }
        let installed = self
            .0
            .sharing
            .set(
                r.policy_text,
                r.expected_version,
                &format!("client:{}", client.name),
                &r.comment,
            )
            .await?;
        call.detail("version", installed.version);
        call.detail("sha256", &installed.sha256);
        Ok(Response::new(installed))
    }

    async fn explain_policy_call(
        &self,
        call: &Call,
        req: Request<ExplainPolicyRequest>,
    ) -> Result<Response<ExplainPolicyResponse>, Status> {
        auth::client(&self.0.clients, &req, Role::Admin)?;
        let r = req.into_inner();
        super::alert_object(call, &r.alert_id);
        call.detail("peers", r.peers.join(","));
        call.detail("candidate", !r.policy_text.is_empty());
        let id: AlertId = r
            .alert_id
            .parse()
            .map_err(|e: crate::ids::IdError| invalid("alert_id", e.to_string()))?;
        let record = self
            .0
            .store
            .get(&id)
            .map_err(store_unavailable)?
            .ok_or_else(|| Status::not_found(format!("alert {id} not found")))?;
        let mut peers = Vec::with_capacity(r.peers.len());
        for (i, p) in r.peers.iter().enumerate() {
            let peer = AgencyId::new(p.clone())
                .ok()
                .filter(|a| self.0.sharing.peers().contains(a))
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
        Ok(Response::new(self.0.sharing.explain(
            &record,
            &peers,
            candidate.as_ref(),
        )))
    }

    async fn diff_policy_call(
        &self,
        _call: &Call,
        req: Request<DiffPolicyRequest>,
    ) -> Result<Response<DiffPolicyResponse>, Status> {
        auth::client(&self.0.clients, &req, Role::Admin)?;
        let r = req.into_inner();
        let old = if r.old_policy_text.is_empty() {
            None
        } else {
            Some(self.candidate("old_policy_text", &r.old_policy_text)?)
        };
        let new = self.candidate("new_policy_text", &r.new_policy_text)?;
        let sharing = self.0.sharing.clone();
        // A walk over every own alert: off the async workers.
        let diff = tokio::task::spawn_blocking(move || sharing.diff(old.as_ref(), &new))
            .await
            .map_err(|e| Status::internal(format!("diff failed: {e}")))?
            .map_err(store_unavailable)?;
        Ok(Response::new(diff))
    }

    async fn reshare_call(
        &self,
        call: &Call,
        req: Request<ReshareRequest>,
    ) -> Result<Response<BackfillResponse>, Status> {
        let client = auth::client(&self.0.clients, &req, Role::Admin)?;
        let r = req.into_inner();
        let out = self.0.ledger.reshare(&r.peer, r.filter, r.dry_run).await?;
        tracing::info!(client = %client.name, peer = %r.peer, queued = out.queued, "Reshare");
        backfill_detail(call, &r.peer, r.dry_run, &out);
        Ok(Response::new(out))
    }

    async fn retract_from_peer_call(
        &self,
        call: &Call,
        req: Request<RetractFromPeerRequest>,
    ) -> Result<Response<BackfillResponse>, Status> {
        let client = auth::client(&self.0.clients, &req, Role::Admin)?;
        let r = req.into_inner();
        let out = self
            .0
            .ledger
            .retract_from_peer(&r.peer, r.filter, &r.reason, r.dry_run)
            .await?;
        tracing::info!(client = %client.name, peer = %r.peer, queued = out.queued, "RetractFromPeer");
        backfill_detail(call, &r.peer, r.dry_run, &out);
        Ok(Response::new(out))
    }
}

const MAX_AUDIT_PAGE: u32 = 1000;
const DEFAULT_AUDIT_PAGE: u32 = 100;

fn audit_filter(r: &QueryAuditRequest) -> Result<Filter, Status> {
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
        return Err(invalid("until", "is before since".into()));
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

/// A backup label: a plain directory name, never a path.
fn backup_label(label: &str) -> Result<String, Status> {
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
        return Err(invalid(
            "label",
            "use 1 to 64 letters, digits, `-` or `_`".into(),
        ));
    }
    Ok(label.to_owned())
}

impl AdminApi {
    async fn query_audit_call(
        &self,
        call: &Call,
        req: Request<QueryAuditRequest>,
    ) -> Result<Response<QueryAuditResponse>, Status> {
        auth::client(&self.0.clients, &req, Role::Admin)?;
        let r = req.into_inner();
        let filter = audit_filter(&r)?;
        if r.page_size > MAX_AUDIT_PAGE {
            return Err(invalid("page_size", format!("at most {MAX_AUDIT_PAGE}")));
        }
        let size = if r.page_size == 0 {
            DEFAULT_AUDIT_PAGE
        } else {
            r.page_size
        } as usize;
        let from =
            if r.page_token.is_empty() {
                None
            } else {
                Some(r.page_token.parse::<u64>().map_err(|_| {
                    invalid("page_token", "is not a token from a previous page".into())
                })?)
            };
        for (k, v) in [
            ("actor", &r.actor),
            ("action", &r.action),
            ("alert_id", &r.alert_id),
        ] {
            if !v.is_empty() {
                call.detail(k, v);
            }
        }
        let store = self.0.store.clone();
        let page = tokio::task::spawn_blocking(move || {
            store.audit_page(&filter, from, size, r.include_checkpoints)
        })
        .await
        .map_err(|e| Status::internal(format!("audit query failed: {e}")))?
        .map_err(store_unavailable)?;
        call.detail("returned", page.entries.len());
        Ok(Response::new(QueryAuditResponse {
            head_sequence: self.0.store.audit_head().0,
            next_page_token: page.next.map(|n| n.to_string()).unwrap_or_default(),
            checkpoints: page
                .checkpoints
                .into_iter()
                .map(|c| AuditCheckpoint {
                    sequence: c.seq,
                    hash: c.hash.to_vec(),
                    time: c.time,
                    signature: c.signature,
                })
                .collect(),
            entries: page.entries.into_iter().map(audit_entry).collect(),
        }))
    }

    async fn backup_store_call(
        &self,
        call: &Call,
        req: Request<BackupStoreRequest>,
    ) -> Result<Response<BackupStoreResponse>, Status> {
        auth::client(&self.0.clients, &req, Role::Admin)?;
        let label = backup_label(&req.get_ref().label)?;
        let target = self.0.backup_dir.join(&label);
        if target.exists() {
            return Err(Status::already_exists(format!(
                "a backup labelled `{label}` exists"
            )));
        }
        let store = self.0.store.clone();
        let stats = tokio::task::spawn_blocking(move || store.backup_to(&target))
            .await
            .map_err(|e| Status::internal(format!("backup failed: {e}")))?
            .map_err(|e| {
                tracing::error!(error = %e, "backup failed");
                Status::unavailable(format!("backup failed: {e}"))
            })?;
        tracing::info!(path = %stats.path.display(), alerts = stats.alerts, paused_ms = stats.paused_ms, "store backed up");
        call.detail("path", stats.path.display());
        call.detail("alerts", stats.alerts);
        call.detail("paused_ms", stats.paused_ms);
        Ok(Response::new(BackupStoreResponse {
            path: stats.path.display().to_string(),
            alerts: stats.alerts,
            audit_entries: stats.audit_entries,
            bytes: stats.bytes,
            paused_ms: stats.paused_ms,
        }))
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_status(
        &self,
        req: Request<GetStatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        audited(&self.0, req, Action::StatusGet, async |call, req| {
            self.get_status_call(call, req)
                .await
                .map(Response::into_inner)
        })
        .await
    }

    async fn list_peers(
        &self,
        req: Request<ListPeersRequest>,
    ) -> Result<Response<ListPeersResponse>, Status> {
        audited(&self.0, req, Action::PeersList, async |call, req| {
            self.list_peers_call(call, req)
                .await
                .map(Response::into_inner)
        })
        .await
    }

    async fn get_policy(
        &self,
        req: Request<GetPolicyRequest>,
    ) -> Result<Response<PolicyVersion>, Status> {
        audited(&self.0, req, Action::PolicyGet, async |call, req| {
            self.get_policy_call(call, req)
                .await
                .map(Response::into_inner)
        })
        .await
    }

    async fn set_policy(
        &self,
        req: Request<SetPolicyRequest>,
    ) -> Result<Response<PolicyVersion>, Status> {
        audited(&self.0, req, Action::PolicySet, async |call, req| {
            self.set_policy_call(call, req)
                .await
                .map(Response::into_inner)
        })
        .await
    }

    async fn explain_policy(
        &self,
        req: Request<ExplainPolicyRequest>,
    ) -> Result<Response<ExplainPolicyResponse>, Status> {
        audited(&self.0, req, Action::PolicyExplain, async |call, req| {
            self.explain_policy_call(call, req)
                .await
                .map(Response::into_inner)
        })
        .await
    }

    async fn diff_policy(
        &self,
        req: Request<DiffPolicyRequest>,
    ) -> Result<Response<DiffPolicyResponse>, Status> {
        audited(&self.0, req, Action::PolicyDiff, async |call, req| {
            self.diff_policy_call(call, req)
                .await
                .map(Response::into_inner)
        })
        .await
    }

    async fn reshare(
        &self,
        req: Request<ReshareRequest>,
    ) -> Result<Response<BackfillResponse>, Status> {
        audited(&self.0, req, Action::Reshare, async |call, req| {
            self.reshare_call(call, req).await.map(Response::into_inner)
        })
        .await
    }

    async fn retract_from_peer(
        &self,
        req: Request<RetractFromPeerRequest>,
    ) -> Result<Response<BackfillResponse>, Status> {
        audited(&self.0, req, Action::RetractFromPeer, async |call, req| {
            self.retract_from_peer_call(call, req)
                .await
                .map(Response::into_inner)
        })
        .await
    }

    async fn query_audit(
        &self,
        req: Request<QueryAuditRequest>,
    ) -> Result<Response<QueryAuditResponse>, Status> {
        audited(&self.0, req, Action::AuditQuery, async |call, req| {
            self.query_audit_call(call, req)
                .await
                .map(Response::into_inner)
        })
        .await
    }

    async fn backup_store(
        &self,
        req: Request<BackupStoreRequest>,
    ) -> Result<Response<BackupStoreResponse>, Status> {
        audited(&self.0, req, Action::StoreBackup, async |call, req| {
            self.backup_store_call(call, req)
                .await
                .map(Response::into_inner)
        })
        .await
    }
}
