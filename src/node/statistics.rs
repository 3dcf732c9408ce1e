//! The statistics worker: contributes this node's reports once a quarter
//! has ended, and, at the plan's leader, runs each release when it is
//! due or requested — again until it is done, so a release waits out a
//! helper that is down or a member's reports still on their way.

use std::sync::Arc;
use std::time::Duration;

use crate::analytics::Run;
use crate::core::NodeCore;

/// How often the worker looks while nothing waits.
const IDLE: Duration = Duration::from_secs(60);
/// How soon it tries again while a release waits (doubling, up to [`IDLE`]).
const RETRY: Duration = Duration::from_secs(3);

pub(super) async fn run_statistics(core: Arc<NodeCore>) {
    let mut roster = core.federation.roster().subscribe();
    let mut retry = RETRY;
    loop {
        let wait = if tick(&core).await {
            retry = (retry * 2).min(IDLE);
            retry / 2
        } else {
            retry = RETRY;
            IDLE
        };
        tokio::select! {
            _ = core.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            // A new directory may bring a plan, or change it.
            _ = roster.changed() => {}
            // Shares or sums came: a release may be complete now.
            _ = core.analytics.arrived() => {}
        }
    }
}

/// One pass; whether something still waits.
async fn tick(core: &NodeCore) -> bool {
    let now = crate::time::now_ms() / 1000;
    let a = &core.analytics;
    match a.contribute_due(now).await {
        Ok(done) => {
            for r in done {
                tracing::info!(release = %crate::analytics::label(&r), "statistics reports sent");
            }
        }
        Err(e) => tracing::warn!(error = %e, "statistics contribution failed; retrying"),
    }
    match a.lead_due(now).await {
        Ok(runs) => runs.iter().fold(false, |waiting, (what, run)| match run {
            Run::Done => waiting,
            Run::Waiting(why) => {
                tracing::debug!(release = %what, %why, "statistics release waiting");
                true
            }
        }),
        Err(e) => {
            tracing::warn!(error = %e, "statistics release failed; retrying");
            true
        }
    }
}
