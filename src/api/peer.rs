use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::call::Call;
use super::{audited, auth};
use crate::audit::Action;
use crate::core::NodeCore;
use crate::proto::v1::peer_exchange_server::PeerExchange;
use crate::proto::v1::{
    DeliveryAck, Envelope, FetchDirectoryRequest, FetchDirectoryResponse, HelloRequest,
    HelloResponse, PeerLookupRequest, PeerLookupResponse, StatsCommitRequest, StatsCommitResponse,
    StatsPrepareRequest, StatsPrepareResponse,
};

/// Envelopes applied together (one flush) when they arrive back to back.
const APPLY_BATCH: usize = 64;

pub struct PeerApi(pub Arc<NodeCore>);

type AckStream = Pin<Box<dyn Stream<Item = Result<DeliveryAck, Status>> + Send>>;

#[tonic::async_trait]
impl PeerExchange for PeerApi {
    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::PeerHello, async |call, req| {
            let peer = auth::peer(&core.peers, &req)?;
            if let Some(t) = req
                .extensions()
                .get::<crate::identity::ConnInfo>()
                .and_then(|c| c.not_after)
            {
                core.outbound.note_certificate(&peer.agency, t);
            }
            let r = req.get_ref();
            call.detail("protocol_version", r.protocol_version);
            let (version, release, capabilities) = super::status::announced(r)?;
            call.detail("release", release);
            call.detail("capabilities", capabilities.names().join(" "));
            core.inbound.greeted(&peer.agency, &capabilities);
            // The caller follows a newer directory: our worker fetches it
            // from the caller now rather than at its next probe.
            if r.directory_version > core.federation.version() {
                call.detail("directory_version", r.directory_version);
                core.outbound.probe_soon(&peer.agency);
            }
            // The caller's checkpoint, kept as given: its signature is checked
            // by whoever verifies the caller's log with our log as anchors.
            // Only a checkpoint of the right shape is kept: its fields are
            // printed with the entry, and a peer must not write lines there.
            if let Some(a) = &r.audit_checkpoint
                && a.hash.len() == 32
                && a.signature.len() <= 256
                && a.signature.bytes().all(|b| b.is_ascii_hexdigit())
                && a.time.len() <= 64
                && crate::time::parse_ms(&a.time).is_some()
            {
                call.detail("anchor_seq", a.sequence);
                call.detail("anchor_hash", crate::audit::hex(&a.hash));
                call.detail("anchor_time", &a.time);
                call.detail("anchor_signature", &a.signature);
            }
            if r.agency_id != peer.agency.as_str() || r.federation != peer.federation.as_str() {
                return Err(super::status::hello_mismatch(
                    &r.federation,
                    &r.agency_id,
                    &peer.spiffe_uri(),
                ));
            }
            Ok(HelloResponse {
                protocol_version: version,
                agency_id: core.settings.agency.to_string(),
                federation: core.settings.federation.to_string(),
                release: crate::release::RELEASE.into(),
                capabilities: core.settings.capabilities.names(),
                directory_version: core.federation.version(),
            })
        })
        .await
    }

    /// The directory this node follows, for a peer that follows an older
    /// one (its Hello said so).
    async fn fetch_directory(
        &self,
        req: Request<FetchDirectoryRequest>,
    ) -> Result<Response<FetchDirectoryResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::PeerDirectory, async |call, req| {
            auth::peer(&core.peers, &req)?;
            let have = req.get_ref().have_version;
            let versions = core.federation.since(have).await;
            call.detail("have_version", have);
            call.detail("sent", versions.len());
            Ok(FetchDirectoryResponse { versions })
        })
        .await
    }

    /// The leader's verifier shares of one batch of a statistics release;
    /// only the plan's helper answers, only to its leader.
    async fn stats_prepare(
        &self,
        req: Request<StatsPrepareRequest>,
    ) -> Result<Response<StatsPrepareResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::StatsPrepare, async |call, req| {
            let peer = auth::peer(&core.peers, &req)?;
            let r = req.into_inner();
            call.object(
                r.release
                    .as_ref()
                    .map(crate::analytics::label)
                    .unwrap_or_default(),
            );
            call.detail("batch", r.batch);
            call.detail("shares", r.shares.len());
            let answer = core.analytics.on_prepare(&peer.agency, r).await?;
            call.detail("missing", answer.missing.len());
            Ok(answer)
        })
        .await
    }

    /// The reports the leader finished: the helper sums them, adds its
    /// noise and sends its sum to every member.
    async fn stats_commit(
        &self,
        req: Request<StatsCommitRequest>,
    ) -> Result<Response<StatsCommitResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::StatsCommit, async |call, req| {
            let peer = auth::peer(&core.peers, &req)?;
            let r = req.into_inner();
            call.object(
                r.release
                    .as_ref()
                    .map(crate::analytics::label)
                    .unwrap_or_default(),
            );
            call.detail("accepted", r.accepted.len());
            Ok(core.analytics.on_commit(&peer.agency, r).await?)
        })
        .await
    }

    /// A consultation of this node's holdings by a peer: the alerts named
    /// in the answer are the ones disclosed to it.
    async fn lookup(
        &self,
        req: Request<PeerLookupRequest>,
    ) -> Result<Response<PeerLookupResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::PeerLookup, async |call, req| {
            let peer = auth::peer(&core.peers, &req)?;
            let answer = core.lookups.answer(&peer, req.into_inner()).await?;
            for m in &answer.matches {
                call.object(m.alert_id.clone());
            }
            call.detail("matches", answer.matches.len());
            Ok(answer)
        })
        .await
    }

    type DeliverStream = AckStream;

    /// One `peer.deliver` entry per stream, written when it ends (with the
    /// envelope count); each envelope has its own `alert.receive`,
    /// `alert.refuse` or `hit.notice` entry, flushed before its ack.
    async fn deliver(
        &self,
        req: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let core = &self.0;
        let call = Call::start(
            &core.store,
            &core.settings.agency,
            &core.settings.federation,
            &req,
            Action::PeerDeliver,
        );
        let peer = match call.checked().and_then(|()| auth::peer(&core.peers, &req)) {
            Ok(peer) => peer,
            Err(e) => return Err(call.finish::<()>(Err(e)).await.unwrap_err()),
        };
        let mut envelopes = req.into_inner().ready_chunks(APPLY_BATCH);
        let (tx, rx) = mpsc::channel(APPLY_BATCH * 2);
        let core = self.0.clone();
        tokio::spawn(async move {
            let mut count = 0usize;
            let ended = deliver_loop(&core, &peer, &mut envelopes, &tx, &mut count).await;
            call.detail("envelopes", count);
            let _ = call.finish(ended).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Applies batches until the stream ends; `Err` is how it broke (the sender
/// has been told already).
async fn deliver_loop(
    core: &NodeCore,
    peer: &crate::identity::NodeIdentity,
    envelopes: &mut (impl Stream<Item = Vec<Result<Envelope, Status>>> + Unpin),
    tx: &mpsc::Sender<Result<DeliveryAck, Status>>,
    count: &mut usize,
) -> Result<(), Status> {
    loop {
        let batch = tokio::select! {
            _ = core.shutdown.cancelled() => {
                let status = super::status::shutting_down();
                let _ = tx.send(Err(status.clone())).await;
                return Err(status);
            }
            batch = envelopes.next() => batch,
        };
        let Some(batch) = batch else { return Ok(()) };
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
        *count += good.len();
        match core.inbound.apply_batch(peer, good).await {
            Ok(delivered) => {
                for ack in delivered.acks {
                    if tx.send(Ok(ack)).await.is_err() {
                        return Err(super::status::sender_gone());
                    }
                }
                if let Some(what) = delivered.throttled {
                    // The sender keeps what was not acked and retries later.
                    let status = super::status::throttled(&peer.agency, what);
                    let _ = tx.send(Err(status.clone())).await;
                    return Err(status);
                }
                if let Some(why) = delivered.not_understood {
                    let status = super::status::not_understood(&why);
                    let _ = tx.send(Err(status.clone())).await;
                    return Err(status);
                }
            }
            Err(e) => {
                tracing::warn!(peer = %peer.agency, error = %crate::text::Escaped(&e.to_string()), "delivery stream ended");
                let status: Status = e.into();
                let _ = tx.send(Err(status.clone())).await;
                return Err(status);
            }
        }
        if let Some(status) = broken {
            // An envelope that did not decode (or a broken stream):
            // the ones before it are acked above, the sender hears why.
            tracing::info!(peer = %peer.agency, %status, "delivery stream broke");
            let _ = tx.send(Err(status.clone())).await;
            return Err(status);
        }
    }
}
