//! The federated statistics at work (docs/statistics.md): a member's
//! contributions (`contribute`), what the aggregators receive and every
//! member combines (`receive`), the leader's run of a release (`lead`) and
//! the helper's side of it (`help`). The rules — the plan, measurements,
//! Prio3 shares, noise, suppression — are `stats`'; the records are the
//! store's; the envelopes travel through the outbox like every other.
//!
//! The plan is the one in the directory in force (`Members::statistics`):
//! a node without a directory, or a directory without a plan, computes
//! nothing and refuses every statistics message.

mod contribute;
mod help;
mod lead;
mod receive;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::Channel;

use crate::directory::roster::Roster;
use crate::identity::{NodeIdentity, connect_channel};
use crate::ids::{AgencyId, FederationName};
use crate::proto::v1::{StatsReleaseRecord, StatsReleaseRef};
use crate::stats::plan::{Period, PlanInForce, Table};
use crate::store::{Store, StoreError};

pub use lead::Run;
pub use receive::Applied;

/// Report shares one envelope carries at most, whatever their size.
pub const MAX_REPORTS_PER_CHUNK: usize = 4_096;
/// Bytes of report shares one envelope carries at most (under the peer
/// listener's 4 MiB message limit, with room for the public shares).
pub const CHUNK_BYTES: usize = 1 << 20;
/// Chunks one member may send for one release.
pub const MAX_CHUNKS: u32 = 256;
/// Reports one member may send for one release (a multiple of
/// [`PAD_TO`]): far above any agency's cases in a quarter (the whole EU
/// registers some 10,000 victims a year), and what bounds the shares a
/// member can make an aggregator keep to a few hundred megabytes per
/// table and quarter.
pub const MAX_REPORTS_PER_MEMBER: usize = 65_536;
/// A member pads its reports to a multiple of this with measurements that
/// count nothing, so the number it sends says little of its cases.
pub const PAD_TO: usize = 256;
/// Leader's verifier shares per `StatsPrepare` call.
pub const PREPARE_BATCH: usize = 4_096;

/// Runs `work` — Prio3 sharding, preparation or summing, seconds of CPU
/// for a quarter's reports — without holding an async worker: on a
/// multi-threaded runtime the worker's other tasks (accepting connections,
/// answering peers and clients) move to another thread meanwhile, so a
/// statistics run never starves the node's listeners.
fn cpu_bound<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Why a statistics operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("the directory in force has no statistics plan")]
    NoPlan,
    #[error("{0}")]
    Refused(String),
    #[error("the other aggregator: {0}")]
    Peer(String),
    #[error(transparent)]
    Vdaf(#[from] crate::stats::vdaf::VdafError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The federated statistics of one node.
pub struct Analytics {
    store: Arc<Store>,
    own: NodeIdentity,
    roster: Roster,
    tls: tokio::sync::watch::Receiver<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    /// The channel to the other aggregator, reused while young.
    channel: Mutex<Option<(AgencyId, Channel, std::time::Instant)>>,
    max_connection_age: Duration,
    /// Poked when report shares or a sum arrive: the worker looks again.
    arrived: tokio::sync::Notify,
}

impl Analytics {
    pub fn new(
        store: Arc<Store>,
        own: NodeIdentity,
        roster: Roster,
        tls: tokio::sync::watch::Receiver<Arc<rustls::ClientConfig>>,
        (timeout, max_connection_age): (Duration, Duration),
    ) -> Self {
        Self {
            store,
            own,
            roster,
            tls,
            timeout,
            channel: Mutex::new(None),
            max_connection_age,
            arrived: tokio::sync::Notify::new(),
        }
    }

    /// Resolves when report shares or a sum arrive after the call.
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// The plan in force, if any.
    pub fn plan(&self) -> Option<Arc<PlanInForce>> {
        self.roster.now().statistics.clone()
    }

    fn own(&self) -> &AgencyId {
        &self.own.agency
    }

    fn federation(&self) -> &FederationName {
        &self.own.federation
    }

    /// Why this node cannot take `payload` yet, if it is statistics of a
    /// plan it does not follow because the directory that brings it is
    /// newer than the one here (it is on its way: a peer's Hello makes
    /// this node fetch it). Statistics of an older or another plan are not
    /// "not yet": `on_reports` and `on_sum` refuse them for good, so a
    /// stale envelope never holds up a peer's deliveries.
    pub fn not_yet(&self, payload: &crate::proto::v1::envelope::Payload) -> Option<String> {
        use crate::proto::v1::envelope::Payload;
        let (named, version) = match payload {
            Payload::StatsReports(r) => (&r.plan_sha256, r.directory_version),
            Payload::StatsAggregate(a) => (&a.plan_sha256, a.directory_version),
            Payload::StatsCall(c) => (&c.plan_sha256, c.directory_version),
            _ => return None,
        };
        let members = self.roster.now();
        let follows = members
            .statistics
            .as_ref()
            .is_some_and(|p| p.sha256.as_slice() == named.as_slice());
        let ours = members.version.unwrap_or(0);
        (!follows && version > ours).then(|| {
            format!("statistics of directory version {version}; this node follows {ours} yet")
        })
    }

    /// The version of the directory in force (0: none).
    fn directory_version(&self) -> u64 {
        self.roster.now().version.unwrap_or(0)
    }

    /// Every release record this node keeps.
    pub fn releases(&self) -> Result<Vec<StatsReleaseRecord>, AnalyticsError> {
        Ok(self.store.stats_releases()?)
    }

    /// A channel to aggregator `peer`, dialled again past the connection
    /// age limit (so a revoked certificate is cut off there too).
    async fn channel(&self, peer: &AgencyId) -> Result<Channel, AnalyticsError> {
        if let Some((p, c, opened)) = &*self.channel.lock().unwrap_or_else(|e| e.into_inner())
            && p == peer
            && opened.elapsed() < self.max_connection_age
        {
            return Ok(c.clone());
        }
        let members = self.roster.now();
        let member = members
            .get(peer)
            .ok_or_else(|| AnalyticsError::Peer(format!("{peer} is not a peer")))?;
        let address = member
            .address()
            .ok_or_else(|| AnalyticsError::Peer(format!("{peer} has no endpoint")))?;
        let expected = NodeIdentity {
            federation: self.own.federation.clone(),
            agency: peer.clone(),
        };
        let tls = self.tls.borrow().clone();
        let channel = connect_channel(address, (expected, member.key_sha256), tls, self.timeout)
            .await
            .map_err(|e| AnalyticsError::Peer(e.to_string()))?;
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((peer.clone(), channel.clone(), std::time::Instant::now()));
        Ok(channel)
    }

    /// Forgets the channel after a failed call: the next one dials again.
    fn drop_channel(&self) {
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Analytics {
    /// Changes the record of release `r` alone (a fresh one under `plan`
    /// if there is none) as `change` decides (`None`: leave it), with
    /// `events` in the same transaction. Returns whether it wrote.
    async fn amend(
        &self,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        events: Vec<crate::audit::Event>,
        change: impl FnOnce(StatsReleaseRecord) -> Option<StatsReleaseRecord>,
    ) -> Result<bool, AnalyticsError> {
        let change = |held: Option<StatsReleaseRecord>| {
            let record = change(held.unwrap_or_else(|| fresh(plan, r)))?;
            Some(crate::store::StatsChange {
                record,
                events,
                ..Default::default()
            })
        };
        Ok(self.store.stats_update(r, change).await?)
    }
}

/// A new record of release `r` under `plan`.
fn fresh(plan: &PlanInForce, r: &StatsReleaseRef) -> StatsReleaseRecord {
    StatsReleaseRecord {
        release: Some(r.clone()),
        plan_sha256: plan.sha256.to_vec(),
        ..Default::default()
    }
}

/// The VDAF context of a release: shares made for one release verify in
/// no other (another federation, plan, table, period or round).
pub fn context(federation: &FederationName, plan: &PlanInForce, r: &StatsReleaseRef) -> Vec<u8> {
    let mut ctx = b"casebridge/stats/v1\0".to_vec();
    ctx.extend_from_slice(federation.as_str().as_bytes());
    ctx.push(0);
    ctx.extend_from_slice(&plan.sha256);
    ctx.extend_from_slice(format!("{}\0{}\0{}", r.table, r.period, r.round).as_bytes());
    ctx
}

/// A release as the audit log and messages name it: `table/period/round`.
pub fn label(r: &StatsReleaseRef) -> String {
    format!("{}/{}/{}", r.table, r.period, r.round)
}

/// The plan's table and the period a release names, checked.
fn resolve<'p>(
    plan: &'p PlanInForce,
    r: Option<&StatsReleaseRef>,
) -> Result<(&'p Table, Period, StatsReleaseRef), AnalyticsError> {
    let r = r.ok_or_else(|| AnalyticsError::Refused("release: missing".into()))?;
    let table = plan.plan.table(&r.table).ok_or_else(|| {
        AnalyticsError::Refused(format!(
            "release.table: no table {} in the plan",
            crate::text::quote(&r.table, 32)
        ))
    })?;
    let period: Period = r
        .period
        .parse()
        .map_err(|e| AnalyticsError::Refused(format!("release.period: {e}")))?;
    if period < plan.plan.first_period {
        return Err(AnalyticsError::Refused(format!(
            "release.period: {period} is before the plan's first period {}",
            plan.plan.first_period
        )));
    }
    if r.round == 0 || r.round > 64 {
        return Err(AnalyticsError::Refused("release.round: 1 to 64".into()));
    }
    Ok((table, period, r.clone()))
}

/// The epsilon (thousandths) releases of `table` in `period` other than
/// round `except` have spent, as this node's records show.
fn spent(records: &[StatsReleaseRecord], table: &str, period: &str, except: u32) -> u32 {
    records
        .iter()
        .filter_map(|rec| {
            let r = rec.release.as_ref()?;
            (r.table == table && r.period == period && r.round != except).then_some(rec)
        })
        .filter_map(|rec| {
            rec.own_sum
                .as_ref()
                .or(rec.sums.first())
                .map(|s| s.epsilon_milli)
        })
        .sum()
}

/// The members in `counts` whose chunks are all here.
fn complete(counts: &BTreeMap<AgencyId, (u32, u32)>) -> Vec<AgencyId> {
    counts
        .iter()
        .filter(|(_, (held, expected))| *expected > 0 && held == expected)
        .map(|(m, _)| m.clone())
        .collect()
}

/// What an aggregator holds of `rep`, as the VDAF reads it.
fn share_of(rep: &crate::proto::v1::StatsReport) -> crate::stats::vdaf::ReportShare<'_> {
    crate::stats::vdaf::ReportShare {
        nonce: rep
            .nonce
            .as_slice()
            .try_into()
            .expect("nonces were checked on arrival"),
        public_share: &rep.public_share,
        input_share: &rep.input_share,
    }
}

/// SHA-256 over the nonces summed, in order: both sums must cover one set.
fn summed_digest<'a>(nonces: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for n in nonces {
        ctx.update(n);
    }
    ctx.finish().as_ref().to_vec()
}

impl Analytics {
    /// The plan in force and what people may see of every release.
    pub fn views(&self) -> Result<crate::proto::v1::ListStatsResponse, AnalyticsError> {
        let plan = self.plan();
        let records = self.store.stats_releases()?;
        let directory_plan = plan.as_ref().map(|p| p.plan.to_proto());
        let releases = records
            .iter()
            .filter_map(|rec| Some(view(plan.as_deref(), &records, rec, rec.release.as_ref()?)))
            .collect();
        Ok(crate::proto::v1::ListStatsResponse {
            plan: directory_plan,
            releases,
        })
    }
}

/// What people see of `rec`.
fn view(
    plan: Option<&PlanInForce>,
    records: &[StatsReleaseRecord],
    rec: &StatsReleaseRecord,
    r: &StatsReleaseRef,
) -> crate::proto::v1::StatsReleaseView {
    let sum = rec.sums.first().or(rec.own_sum.as_ref());
    let table = plan.and_then(|p| Some((p, p.plan.table(&r.table)?)));
    let shape = table.map(|(p, t)| crate::stats::tables::Shape::of(t.kind, &p.plan.countries));
    let released = rec.released_at != 0;
    crate::proto::v1::StatsReleaseView {
        release: Some(r.clone()),
        contributed_at: rec.contributed_at,
        reports_sent: rec.reports_sent,
        released_at: rec.released_at,
        reports: if released {
            sum.map_or(0, |s| s.reports)
        } else {
            0
        },
        members: if released {
            sum.map_or(0, |s| s.members)
        } else {
            0
        },
        epsilon_milli: sum.map_or(0, |s| s.epsilon_milli),
        cells: rec.cells.clone(),
        min_cell: rec.min_cell,
        rows: shape.as_ref().map(|s| s.rows.clone()).unwrap_or_default(),
        columns: shape.map(|s| s.columns).unwrap_or_default(),
        refused: rec.refused.clone(),
        spent_milli: spent(records, &r.table, &r.period, u32::MAX),
        budget_milli: table.map_or(0, |(_, t)| t.budget_milli),
    }
}
