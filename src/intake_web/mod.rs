//! The public intake's listener (docs/intake.md): HTTPS with the
//! operator's certificate and no client certificate, serving the report
//! form, the receipt page and the reporter's conversation, and the same
//! as JSON for hotline apps (`api`) — nothing of the
//! client, admin or peer APIs, nothing of the console (any other path is a
//! 404). It never sees who a reporter is: the accept loop drops the
//! peer's address before anything else, no request is logged, and the one
//! cookie is a short session after a receipt opened a report.

mod api;
mod pages;
mod session;
mod site;
mod words;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use session::Sessions;
pub use site::{MAX_BODY, Site};

/// Time a browser has for the TLS handshake, and for a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept (no descriptor left, say).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Longest life of one connection: a slow client frees its place.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// Serves the intake on `listener` with `tls`, at most `max_connections`
/// at once (the rest wait in the kernel's queue), until `shutdown`.
pub fn serve(
    site: Arc<Site>,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    max_connections: usize,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let router = pages::routes(site);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let places = Arc::new(Semaphore::new(max_connections));
    tokio::spawn(async move {
        loop {
            let place = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = places.clone().acquire_owned() => p.expect("never closed"),
            };
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                // The peer's address is dropped here, unread.
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors, say: wait rather than spin.
                    Err(_) => {
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                        continue;
                    }
                },
            };
            let (acceptor, router, stop) = (acceptor.clone(), router.clone(), shutdown.clone());
            tokio::spawn(async move {
                let _place = place;
                let Ok(Ok(conn)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| router.clone().oneshot(req));
                let builder = crate::server::browser_http(HEADER_READ_TIMEOUT);
                let serving = builder.serve_connection(TokioIo::new(conn), service);
                // Nothing is logged of a connection's end: it says who came.
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::timeout(CONNECTION_LIFETIME, serving) => {}
                }
            });
        }
    })
}
