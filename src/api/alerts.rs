use std::sync::Arc;

use std::pin::Pin;

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::config::Role;
use crate::node::NodeCore;
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::{
    Alert, GetAlertRequest, Hit, ListAlertsRequest, ListAlertsResponse, RetractAlertRequest,
    SubmitAlertRequest, UpdateAlertRequest, WatchHitsRequest,
};
use crate::proto::v1::{LookupRequest, LookupResponse};

/// Hits read from the store and buffered per watcher at a time.
const HIT_PAGE: usize = 256;

pub struct AlertApi(pub Arc<NodeCore>);

#[tonic::async_trait]
impl AlertService for AlertApi {
    async fn submit_alert(
        &self,
        req: Request<SubmitAlertRequest>,
    ) -> Result<Response<Alert>, Status> {
        let client = self.0.clients.require(&req, Role::Submit)?;
        let r = req.into_inner();
        let result = self.0.ledger.submit(&client, r.draft, &r.request_id).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(crate::alert::AlertError::Invalid(_)) => "invalid",
            Err(_) => "error",
        };
        self.0
            .metrics
            .submits
            .get_or_create(&crate::metrics::label("outcome", outcome))
            .inc();
        let alert = result?;
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

    type WatchHitsStream = Pin<Box<dyn Stream<Item = Result<Hit, Status>> + Send>>;

    async fn watch_hits(
        &self,
        req: Request<WatchHitsRequest>,
    ) -> Result<Response<Self::WatchHitsStream>, Status> {
        self.0.clients.require(&req, Role::Read)?;
        let r = req.into_inner();
        let core = self.0.clone();
        let (tx, rx) = mpsc::channel(HIT_PAGE);
        tokio::spawn(async move {
            let mut changed = core.store.watch_hits();
            let mut after = r.after_sequence;
            loop {
                // Mark the current value seen before reading, so a hit stored
                // while we read wakes us again.
                changed.borrow_and_update();
                let page = match core.store.hits_after(after, HIT_PAGE) {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(super::status::store_unavailable(e))).await;
                        return;
                    }
                };
                let full = page.len() == HIT_PAGE;
                for hit in page {
                    after = hit.sequence;
                    if tx.send(Ok(hit)).await.is_err() {
                        return; // client went away
                    }
                }
                if full {
                    continue;
                }
                if r.backlog_only {
                    return;
                }
                tokio::select! {
                    _ = core.shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    res = changed.changed() => if res.is_err() { return },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lookup(
        &self,
        req: Request<LookupRequest>,
    ) -> Result<Response<LookupResponse>, Status> {
        let client = self.0.clients.require(&req, Role::Read)?;
        Ok(Response::new(
            self.0.lookups.ask(&client, req.into_inner()).await?,
        ))
    }

    async fn list_alerts(
        &self,
        req: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        self.0.clients.require(&req, Role::Read)?;
        Ok(Response::new(self.0.ledger.list(req.get_ref())?))
    }
}
