use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::alert::AlertError;
use crate::alert::validate::timestamp;
use crate::config::Role;
use crate::ids::{AgencyId, AlertId};
use crate::node::NodeCore;
use crate::policy::Policy;
use crate::proto::PROTOCOL_VERSION;
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::{
    BackfillResponse, DiffPolicyRequest, DiffPolicyResponse, ExplainPolicyRequest,
    ExplainPolicyResponse, GetPolicyRequest, GetStatusRequest, ListPeersRequest, ListPeersResponse,
    NodeStatus, PeerStatus, PolicyVersion, ReshareRequest, RetractFromPeerRequest,
    SetPolicyRequest,
};
use crate::sharing::{MAX_POLICY_BYTES, SharingError};

use super::status::store_unavailable;

fn invalid(field: &str, description: String) -> Status {
    AlertError::Invalid(vec![crate::alert::FieldViolation {
        field: field.into(),
        description,
    }])
    .into()
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

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_status(
        &self,
        req: Request<GetStatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        self.0.clients.require(&req, Role::Admin)?;
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

    async fn list_peers(
        &self,
        req: Request<ListPeersRequest>,
    ) -> Result<Response<ListPeersResponse>, Status> {
        self.0.clients.require(&req, Role::Admin)?;
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

    async fn get_policy(
        &self,
        req: Request<GetPolicyRequest>,
    ) -> Result<Response<PolicyVersion>, Status> {
        self.0.clients.require(&req, Role::Admin)?;
        Ok(Response::new(self.0.sharing.current().record.clone()))
    }

    async fn set_policy(
        &self,
        req: Request<SetPolicyRequest>,
    ) -> Result<Response<PolicyVersion>, Status> {
        let client = self.0.clients.require(&req, Role::Admin)?;
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
        Ok(Response::new(installed))
    }

    async fn explain_policy(
        &self,
        req: Request<ExplainPolicyRequest>,
    ) -> Result<Response<ExplainPolicyResponse>, Status> {
        self.0.clients.require(&req, Role::Admin)?;
        let r = req.into_inner();
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

    async fn diff_policy(
        &self,
        req: Request<DiffPolicyRequest>,
    ) -> Result<Response<DiffPolicyResponse>, Status> {
        self.0.clients.require(&req, Role::Admin)?;
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

    async fn reshare(
        &self,
        req: Request<ReshareRequest>,
    ) -> Result<Response<BackfillResponse>, Status> {
        let client = self.0.clients.require(&req, Role::Admin)?;
        let r = req.into_inner();
        let out = self.0.ledger.reshare(&r.peer, r.filter, r.dry_run).await?;
        tracing::info!(client = %client.name, peer = %r.peer, queued = out.queued, "Reshare");
        Ok(Response::new(out))
    }

    async fn retract_from_peer(
        &self,
        req: Request<RetractFromPeerRequest>,
    ) -> Result<Response<BackfillResponse>, Status> {
        let client = self.0.clients.require(&req, Role::Admin)?;
        let r = req.into_inner();
        let out = self
            .0
            .ledger
            .retract_from_peer(&r.peer, r.filter, &r.reason, r.dry_run)
            .await?;
        tracing::info!(client = %client.name, peer = %r.peer, queued = out.queued, "RetractFromPeer");
        Ok(Response::new(out))
    }
}
