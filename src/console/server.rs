//! The console's listener: the node's TLS accept loop (client certificate
//! required, identity read once per connection) feeding hyper's HTTP/1.1 +
//! HTTP/2 server, with the connection's identity put into every request.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::Connected;
use tower::ServiceExt;

use super::Console;
use crate::core::NodeCore;
use crate::identity::{OnRefused, serve_tls};

/// Time a browser has to send a request's headers (HTTP/1.1), and the
/// HTTP/2 ping interval and answer time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Console {
    /// Every route of the console, under the security headers.
    pub fn router(self) -> axum::Router {
        super::pages::routes()
            .with_state(self)
            .layer(axum::middleware::from_fn(super::guard::guard))
    }
}

/// Serves the console on `listener` until the node shuts down.
pub fn serve(
    core: Arc<NodeCore>,
    listener: TcpListener,
    tls: watch::Receiver<Arc<ServerConfig>>,
    handshake_timeout: Duration,
    max_age: Duration,
    refused: OnRefused,
) -> JoinHandle<()> {
    let shutdown = core.shutdown.clone();
    if let Err(e) = super::pages::clear_uploads(&core.settings.uploads_dir) {
        tracing::error!(error = %e, "the console's uploads directory is not usable; imports will fail");
    }
    let router = Console::new(core).router();
    let mut incoming = serve_tls(
        listener,
        tls,
        handshake_timeout,
        max_age,
        refused,
        shutdown.clone(),
    );
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = incoming.next() => match next {
                    Some(Ok(conn)) => conn,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "console connection failed");
                        continue;
                    }
                    None => return,
                },
            };
            let info = conn.connect_info();
            let router = router.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        router.clone().oneshot(req)
                    },
                );
                let builder = crate::server::browser_http(HEADER_READ_TIMEOUT);
                let serving = builder.serve_connection(TokioIo::new(conn), service);
                tokio::select! {
                    _ = stop.cancelled() => {}
                    result = serving => if let Err(e) = result {
                        tracing::debug!(error = %e, "console connection ended");
                    },
                }
            });
        }
    })
}
