use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::node::NodeCore;
use crate::proto::PROTOCOL_VERSION;
use crate::proto::v1::peer_exchange_server::PeerExchange;
use crate::proto::v1::{
    DeliveryAck, Envelope, HelloRequest, HelloResponse, PeerLookupRequest, PeerLookupResponse,
};

/// Envelopes applied together (one flush) when they arrive back to back.
const APPLY_BATCH: usize = 64;

pub struct PeerApi(pub Arc<NodeCore>);

type AckStream = Pin<Box<dyn Stream<Item = Result<DeliveryAck, Status>> + Send>>;

#[tonic::async_trait]
impl PeerExchange for PeerApi {
    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        let peer = self.0.peers.require(&req)?;
        let r = req.get_ref();
        if r.agency_id != peer.agency.as_str() || r.federation != peer.federation.as_str() {
            return Err(Status::invalid_argument(format!(
                "agency_id/federation `{}/{}` do not match your certificate ({})",
                r.federation,
                r.agency_id,
                peer.spiffe_uri()
            )));
        }
        Ok(Response::new(HelloResponse {
            protocol_version: PROTOCOL_VERSION,
            agency_id: self.0.agency.to_string(),
            federation: self.0.federation.to_string(),
        }))
    }

    async fn lookup(
        &self,
        req: Request<PeerLookupRequest>,
    ) -> Result<Response<PeerLookupResponse>, Status> {
        let peer = self.0.peers.require(&req)?;
        Ok(Response::new(
            self.0.lookups.answer(&peer, req.into_inner()).await?,
        ))
    }

    type DeliverStream = AckStream;

    async fn deliver(
        &self,
        req: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let peer = self.0.peers.require(&req)?;
        let mut envelopes = req.into_inner().ready_chunks(APPLY_BATCH);
        let (tx, rx) = mpsc::channel(APPLY_BATCH * 2);
        let core = self.0.clone();
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    _ = core.shutdown.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("node is shutting down"))).await;
                        return;
                    }
                    batch = envelopes.next() => batch,
                };
                let Some(batch) = batch else { return };
                let mut good = Vec::with_capacity(batch.len());
                let mut broken = None;
                for item in batch {
                    match item {
                        Ok(env) => good.push(env),
                        Err(status) => {
                            broken = Some(status);
                            break;
                        }
                    }
                }
                match core.inbound.apply_batch(&peer, good).await {
                    Ok(acks) => {
                        for ack in acks {
                            if tx.send(Ok(ack)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer.agency, error = %e, "delivery stream ended");
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
                if let Some(status) = broken {
                    // An envelope that did not decode (or a broken stream):
                    // the ones before it are acked above, the sender hears why.
                    tracing::info!(peer = %peer.agency, %status, "delivery stream broke");
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
