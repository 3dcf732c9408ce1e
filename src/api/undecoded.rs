//! Calls that never reach a handler still leave their one audit entry.
//!
//! tonic decodes a unary request before it calls the handler, so a request
//! whose bytes are not the message is answered (INVALID_ARGUMENT, INTERNAL)
//! without any of our code running, and `api::audited` never sees it. This
//! layer sits around every service: it marks each audited request with a
//! [`Reached`] flag that [`Call::start`](super::call::Call::start) sets, and
//! when the answer comes back with the flag unset it writes the entry the
//! handler would have written, with the code tonic answered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;

use super::call::Reached;
use crate::audit::{Action, Event, code_name};
use crate::identity::ConnInfo;
use crate::ids::{AgencyId, FederationName};
use crate::store::Store;

/// The audited methods, by gRPC path. Health and reflection are not here:
/// probes would flood the log, and neither touches case data.
const METHODS: &[(&str, Action)] = &[
    (
        "/casebridge.v1.AlertService/SubmitAlert",
        Action::AlertSubmit,
    ),
    (
        "/casebridge.v1.AlertService/UpdateAlert",
        Action::AlertUpdate,
    ),
    (
        "/casebridge.v1.AlertService/RetractAlert",
        Action::AlertRetract,
    ),
    ("/casebridge.v1.AlertService/GetAlert", Action::AlertGet),
    ("/casebridge.v1.AlertService/ListAlerts", Action::AlertList),
    (
        "/casebridge.v1.AlertService/ImportAlert",
        Action::AlertImport,
    ),
    (
        "/casebridge.v1.AlertService/ListImported",
        Action::AlertImported,
    ),
    (
        "/casebridge.v1.AlertService/WatchAlerts",
        Action::AlertsWatch,
    ),
    ("/casebridge.v1.AlertService/WatchHits", Action::HitsWatch),
    ("/casebridge.v1.AlertService/Lookup", Action::LookupAsk),
    ("/casebridge.v1.AdminService/GetStatus", Action::StatusGet),
    ("/casebridge.v1.AdminService/ListPeers", Action::PeersList),
    ("/casebridge.v1.AdminService/GetPolicy", Action::PolicyGet),
    ("/casebridge.v1.AdminService/SetPolicy", Action::PolicySet),
    (
        "/casebridge.v1.AdminService/ExplainPolicy",
        Action::PolicyExplain,
    ),
    ("/casebridge.v1.AdminService/DiffPolicy", Action::PolicyDiff),
    ("/casebridge.v1.AdminService/Reshare", Action::Reshare),
    (
        "/casebridge.v1.AdminService/RetractFromPeer",
        Action::RetractFromPeer,
    ),
    ("/casebridge.v1.AdminService/QueryAudit", Action::AuditQuery),
    (
        "/casebridge.v1.AdminService/BackupStore",
        Action::StoreBackup,
    ),
    ("/casebridge.v1.PeerExchange/Hello", Action::PeerHello),
    ("/casebridge.v1.PeerExchange/Deliver", Action::PeerDeliver),
    ("/casebridge.v1.PeerExchange/Lookup", Action::PeerLookup),
];

fn action_for(path: &str) -> Option<Action> {
    METHODS.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

/// Who is calling, as `api::call::actor_of` names it, from the connection.
fn actor(info: Option<&ConnInfo>, agency: &AgencyId, federation: &FederationName) -> String {
    let mut req = tonic::Request::new(());
    if let Some(info) = info {
        req.extensions_mut().insert(info.clone());
    }
    super::call::actor_of(&req, agency, federation)
}

#[derive(Clone)]
pub struct UndecodedLayer {
    pub store: Arc<Store>,
    pub agency: AgencyId,
    pub federation: FederationName,
}

impl<S> tower::Layer<S> for UndecodedLayer {
    type Service = Undecoded<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Undecoded {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Undecoded<S> {
    inner: S,
    layer: UndecodedLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Undecoded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let Some(action) = action_for(req.uri().path()) else {
            return Box::pin(self.inner.call(req));
        };
        let reached = Reached::default();
        req.extensions_mut().insert(reached.clone());
        let info = req.extensions().get::<ConnInfo>().cloned();
        let layer = self.layer.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await?;
            if !reached.is_marked() {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Unknown, tonic::Code::from);
                let mut event = Event::new(
                    actor(info.as_ref(), &layer.agency, &layer.federation),
                    action,
                    code_name(code),
                )
                .detail("error", "the request did not decode; no handler ran");
                if let Some(info) = &info {
                    event = event.detail("remote", info.remote);
                }
                if let Err(e) = layer.store.audit([event]).await {
                    tracing::error!(error = %e, "audit entry for an undecodable call could not be written");
                }
            }
            Ok(response)
        })
    }
}
