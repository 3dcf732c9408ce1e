//! What the command groups share beyond exit codes and output: the
//! connection to the node ([`connect`], stating this process's
//! `--purpose`), times given as flags ([`time_flag`]), following a
//! resumable log stream ([`follow`]), and the signal that ends a follow, a
//! running node or the key service ([`shutdown_signal`]).

use std::path::Path;

use anyhow::anyhow;

use super::exit::{Exit, Failure, failure};
use crate::client::NodeClient;

/// An RFC 3339 time given on the command line, for a request field.
pub(super) fn time_flag(flag: &str, s: &str) -> Result<pbjson_types::Timestamp, Failure> {
    crate::time::parse_ms(s)
        .map(crate::time::ms_timestamp)
        .ok_or_else(|| {
            failure(
                Exit::Usage,
                anyhow!("--{flag} `{s}` is not an RFC 3339 time, e.g. 2026-11-01T00:00:00Z"),
            )
        })
}

/// The `--purpose` every client call of this process states.
pub(super) static PURPOSE: std::sync::OnceLock<crate::client::Purpose> = std::sync::OnceLock::new();

pub(super) async fn connect(path: Option<&Path>) -> Result<NodeClient, Failure> {
    let path = path.ok_or_else(|| {
        failure(
            Exit::Usage,
            anyhow!("no client config: pass --client-config FILE or set CASEBRIDGE_CLIENT_CONFIG"),
        )
    })?;
    let client = NodeClient::connect_file(path).await?;
    Ok(match PURPOSE.get() {
        Some(p) => client.purpose(p.clone()),
        None => client,
    })
}

/// Follows a resumable log stream (hits, request changes) until Ctrl-C,
/// reconnecting after an interruption with backoff and resuming after the
/// last entry printed; with `backlog_only`, prints what there is and stops
/// (saying so on stderr when there is nothing after `after`).
pub(super) async fn follow<T, F, Fut>(
    config: Option<&Path>,
    mut after: u64,
    backlog_only: bool,
    nothing: &str,
    open: F,
    position: impl Fn(&T) -> u64,
    print: impl Fn(&T),
) -> Result<(), Failure>
where
    F: Fn(NodeClient, u64) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Streaming<T>, tonic::Status>>,
{
    let mut delay = std::time::Duration::from_millis(500);
    let start = after;
    loop {
        let mut stream = open(connect(config).await?, after).await?;
        loop {
            let next = tokio::select! {
                _ = shutdown_signal() => return Ok(()),
                next = stream.message() => next,
            };
            match next {
                Ok(Some(entry)) => {
                    after = position(&entry);
                    print(&entry);
                    delay = std::time::Duration::from_millis(500);
                }
                Ok(None) if backlog_only => {
                    if after == start {
                        eprintln!("{nothing} after entry {start}");
                    }
                    return Ok(());
                }
                Ok(None) => break,
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    eprintln!(
                        "connection lost ({}); resuming after {after}",
                        status.message()
                    );
                    break;
                }
                Err(status) => return Err(status.into()),
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(30));
    }
}

/// Resolves on SIGINT or SIGTERM (systemd and Kubernetes stop with SIGTERM).
pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
}
