use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::alert::validate::timestamp;
use crate::config::Role;
use crate::node::NodeCore;
use crate::proto::PROTOCOL_VERSION;
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::{
    GetStatusRequest, ListPeersRequest, ListPeersResponse, NodeStatus, PeerStatus,
};

use super::status::store_unavailable;

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
        }))
    }

    async fn list_peers(
        &self,
        req: Request<ListPeersRequest>,
    ) -> Result<Response<ListPeersResponse>, Status> {
        self.0.clients.require(&req, Role::Admin)?;
        let peers = self
            .0
            .outbound
            .states()
            .into_iter()
            .map(|(id, address, s)| PeerStatus {
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
            })
            .collect();
        Ok(Response::new(ListPeersResponse { peers }))
    }
}
