use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::config::Role;
use crate::node::NodeCore;
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::{
    Alert, GetAlertRequest, ListAlertsRequest, ListAlertsResponse, RetractAlertRequest,
    SubmitAlertRequest, UpdateAlertRequest,
};

pub struct AlertApi(pub Arc<NodeCore>);

#[tonic::async_trait]
impl AlertService for AlertApi {
    async fn submit_alert(
        &self,
        req: Request<SubmitAlertRequest>,
    ) -> Result<Response<Alert>, Status> {
        let client = self.0.clients.require(&req, Role::Submit)?;
        let r = req.into_inner();
        let alert = self
            .0
            .ledger
            .submit(&client, r.draft, &r.request_id)
            .await?;
        tracing::info!(alert = %alert.id, client = %client.name, "alert submitted");
        Ok(Response::new(alert))
    }

    async fn update_alert(
        &self,
        req: Request<UpdateAlertRequest>,
    ) -> Result<Response<Alert>, Status> {
        let client = self.0.clients.require(&req, Role::Submit)?;
        let r = req.into_inner();
        let alert = self
            .0
            .ledger
            .update(&r.id, r.expected_version, r.draft)
            .await?;
        tracing::info!(alert = %alert.id, version = alert.version, client = %client.name, "alert updated");
        Ok(Response::new(alert))
    }

    async fn retract_alert(
        &self,
        req: Request<RetractAlertRequest>,
    ) -> Result<Response<Alert>, Status> {
        let client = self.0.clients.require(&req, Role::Submit)?;
        let r = req.into_inner();
        let alert = self
            .0
            .ledger
            .retract(&r.id, r.expected_version, &r.reason)
            .await?;
        tracing::info!(alert = %alert.id, client = %client.name, "alert retracted");
        Ok(Response::new(alert))
    }

    async fn get_alert(&self, req: Request<GetAlertRequest>) -> Result<Response<Alert>, Status> {
        self.0.clients.require(&req, Role::Read)?;
        Ok(Response::new(self.0.ledger.get(&req.get_ref().id)?))
    }

    async fn list_alerts(
        &self,
        req: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        self.0.clients.require(&req, Role::Read)?;
        Ok(Response::new(self.0.ledger.list(req.get_ref())?))
    }
}
