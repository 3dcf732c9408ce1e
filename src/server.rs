//! The skeleton both CaseBridge servers run on — a node's gRPC listeners
//! and the OPRF key service — so a fix to how connections are accepted,
//! refused, served, checkpointed or stopped reaches both at once.
//!
//! - [`spawn`]: accepts TLS connections on a bound listener (through
//!   [`serve_tls`]: concurrent handshakes, the handshake-slot limits, a
//!   connection age limit), audits each refused handshake with its rate
//!   limit and counter ([`Store::refused_handshakes`]), and serves a tonic
//!   router on what verified until shutdown.
//! - [`Listeners`]: the servers spawned, waited on for the first failure
//!   ([`Listeners::first_failure`]) and stopped within a drain bound
//!   ([`Listeners::drain`]).
//! - [`audit_upkeep`]: signed checkpoints of the audit chain every interval,
//!   and pruning past a retention where the server has one; [`close_log`]:
//!   the last entry, a checkpoint over it, the log closed.
//! - [`spawn_metrics`]: the plain-HTTP metrics endpoint, when bound.
//!
//! What differs stays with each server: its services, state and workers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::audit::Event;
use crate::audit::signing::SigningKey;
use crate::identity::{AuthenticatedConn, serve_tls};
use crate::store::{Store, StoreError};

/// The authenticated connections of one listener, as `serve_tls` yields them.
pub type Incoming = tokio_stream::wrappers::ReceiverStream<std::io::Result<AuthenticatedConn>>;

/// A listener that stopped serving, named.
#[derive(Debug, Error)]
#[error("{listener} listener failed: {reason}")]
pub struct ServeError {
    pub listener: &'static str,
    pub reason: String,
}

/// How a listener's TLS connections are accepted.
pub struct Accept {
    /// The server config in force (CRLs reload without a restart).
    pub tls: tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
    pub handshake_timeout: Duration,
    pub max_age: Duration,
}

/// Serves listener `name`: its verified TLS connections go to `serve` (a
/// tonic router's `serve_with_incoming_shutdown`) until `stop` is
/// cancelled; every refused handshake is counted by `count` and audited in
/// `store`, at most a few entries a second (see
/// [`Store::refused_handshakes`]).
pub fn spawn<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    accept: &Accept,
    (store, count): (&Arc<Store>, impl Fn() + Send + Sync + 'static),
    stop: &CancellationToken,
    serve: F,
) -> Served
where
    F: FnOnce(Incoming, WaitForCancellationFutureOwned) -> Fut,
    Fut: Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
{
    let incoming = serve_tls(
        listener,
        accept.tls.clone(),
        accept.handshake_timeout,
        accept.max_age,
        store.refused_handshakes(name, count),
        stop.clone(),
    );
    let serving = serve(incoming, stop.clone().cancelled_owned());
    let task = tokio::spawn(async move {
        serving.await.map_err(|e| ServeError {
            listener: name,
            reason: crate::identity::error_chain(&e),
        })
    });
    Served { name, task }
}

/// One listener being served.
pub struct Served {
    name: &'static str,
    task: JoinHandle<Result<(), ServeError>>,
}

/// How a served listener ended, named: a clean end while serving is a
/// failure too (nothing stops a listener but shutdown).
fn ended(
    name: &'static str,
    result: Result<Result<(), ServeError>, tokio::task::JoinError>,
) -> ServeError {
    match result {
        Ok(Err(e)) => e,
        Ok(Ok(())) => ServeError {
            listener: name,
            reason: "stopped unexpectedly".into(),
        },
        Err(e) => ServeError {
            listener: name,
            reason: e.to_string(),
        },
    }
}

/// The listeners of one server.
#[derive(Default)]
pub struct Listeners(Vec<Served>);

impl Listeners {
    pub fn new(served: impl IntoIterator<Item = Served>) -> Self {
        Self(served.into_iter().collect())
    }

    /// Waits for `signal`; returns early with the error of the first
    /// listener that stops on its own (which is then no longer held).
    pub async fn first_failure(&mut self, signal: impl Future<Output = ()>) -> Option<ServeError> {
        if self.0.is_empty() {
            signal.await;
            return None;
        }
        let failed = {
            let any = futures_util::future::select_all(self.0.iter_mut().map(|s| &mut s.task));
            tokio::select! {
                _ = signal => None,
                (result, idx, _) = any => Some((idx, result)),
            }
        };
        let (idx, result) = failed?;
        let served = self.0.remove(idx);
        Some(ended(served.name, result))
    }

    /// Once their stop token is cancelled, waits up to `bound` for each
    /// listener's in-flight calls to finish, then closes what is left.
    /// Returns the first listener's error, if any failed.
    pub async fn drain(self, bound: Duration) -> Result<(), ServeError> {
        let mut first_error = None;
        for served in self.0 {
            let abort = served.task.abort_handle();
            match tokio::time::timeout(bound, served.task).await {
                Ok(Ok(Err(e))) => first_error = first_error.or(Some(e)),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(
                        listener = served.name,
                        "in-flight requests did not finish in time; closing them"
                    );
                    abort.abort();
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Signs checkpoints of `store`'s audit chain every `every` and, with a
/// `retention`, prunes entries older than that, until `stop`.
pub async fn audit_upkeep(
    store: Arc<Store>,
    signer: Arc<SigningKey>,
    every: Duration,
    retention: Option<Duration>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = store.audit_sign_checkpoint(&signer) {
            tracing::error!(error = %e, "audit checkpoint failed; retrying next round");
        }
        let Some(retention) = retention else {
            continue;
        };
        let cutoff = crate::time::now_ms() - retention.as_millis() as i64;
        let pruning = store.clone();
        match tokio::task::spawn_blocking(move || pruning.audit_prune(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(entries = n, "audit log: entries past retention pruned"),
            Ok(Err(e)) => tracing::error!(error = %e, "audit prune failed; retrying next round"),
            Err(e) => tracing::error!(error = %e, "audit prune task failed"),
        }
    }
}

/// Writes `last`, signs a checkpoint over it and closes the store: a
/// cleanly stopped log is signed to its end, so any cut is detectable.
pub async fn close_log(store: &Store, signer: &SigningKey, last: Event) -> Result<(), StoreError> {
    store.audit_append([last])?;
    store.audit_sign_checkpoint(signer)?;
    store.close().await
}

/// Serves `GET /metrics` (rendered by `render`), `/healthz` and `/readyz`
/// (from `ready`) on `listener`, when one was bound, until `stop`.
pub fn spawn_metrics(
    listener: Option<TcpListener>,
    render: impl Fn() -> String + Send + Sync + 'static,
    ready: impl Fn() -> bool + Send + Sync + 'static,
    stop: &CancellationToken,
) -> Option<JoinHandle<()>> {
    let listener = listener?;
    Some(tokio::spawn(crate::metrics::serve(
        listener,
        Arc::new(render),
        Arc::new(ready),
        stop.clone(),
    )))
}

/// Binds a listener the config may leave out (metrics, console) with `bind`;
/// the error names the address.
pub async fn bind_optional<F, Fut>(
    addr: Option<SocketAddr>,
    bind: F,
) -> Result<Option<TcpListener>, (SocketAddr, std::io::Error)>
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = std::io::Result<TcpListener>>,
{
    let Some(addr) = addr else {
        return Ok(None);
    };
    bind(addr).await.map(Some).map_err(|error| (addr, error))
}

/// The HTTP/1.1 + HTTP/2 server of a listener for people's browsers (the
/// console, the public intake): a connection that never finishes its
/// request headers within `header_timeout` is closed (hyper has no timeout
/// without a timer), and HTTP/2 connections are pinged, so dead ones end.
pub fn browser_http(
    header_timeout: Duration,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
    builder
}
