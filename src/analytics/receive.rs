//! What arrives by envelope: report shares at an aggregator, checked to
//! the byte before they are kept; and the aggregators' noisy sums at every
//! member, added once both are in, with the cells under the plan's
//! minimum suppressed and the budget spent recorded.

use crate::audit::{Action, Event};
use crate::ids::AgencyId;
use crate::proto::v1::{StatsAggregate, StatsCall, StatsReleaseRecord, StatsReports};
use crate::stats::publish;
use crate::stats::tables::Shape;
use crate::stats::vdaf::{NONCE_LEN, TableVdaf};
use crate::store::{ChunkOutcome, StatsChange};

use super::{
    Analytics, AnalyticsError, MAX_CHUNKS, MAX_REPORTS_PER_CHUNK, MAX_REPORTS_PER_MEMBER, fresh,
    label, resolve, spent,
};

/// What became of an envelope.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Stored,
    Duplicate,
    /// Refused for good, with the reason for the sender's operators.
    Refused(String),
}

impl Analytics {
    /// Keeps a chunk of `from`'s report shares, if this node is one of the
    /// plan's aggregators and every share has the table's exact sizes.
    pub async fn on_reports(
        &self,
        from: &AgencyId,
        chunk: StatsReports,
        actor: &str,
    ) -> Result<Applied, AnalyticsError> {
        let Some(plan) = self.plan() else {
            return Ok(Applied::Refused("no statistics plan in force here".into()));
        };
        let Some(agg) = plan.plan.aggregator_index(self.own()) else {
            return Ok(Applied::Refused(
                "this node is not an aggregator of the plan".into(),
            ));
        };
        if chunk.plan_sha256 != plan.sha256 {
            return Ok(Applied::Refused(
                "plan_sha256: shaped by another plan".into(),
            ));
        }
        let (table, _, r) = match resolve(&plan, chunk.release.as_ref()) {
            Ok(x) => x,
            Err(e) => return Ok(Applied::Refused(e.to_string())),
        };
        if let Some(reason) = check_chunk(&chunk, table, &plan, agg) {
            return Ok(Applied::Refused(reason));
        }
        if self
            .store
            .stats_release(&r)?
            .is_some_and(|rec| rec.own_sum.is_some())
        {
            return Ok(Applied::Refused(format!("{}: already summed", label(&r))));
        }
        let event = Event::new(actor, Action::StatsReportsReceive, "stored")
            .object(label(&r))
            .detail("chunk", chunk.chunk)
            .detail("reports", chunk.reports.len());
        let most = MAX_REPORTS_PER_MEMBER;
        Ok(
            match self
                .store
                .stats_put_chunk(from, &chunk, most, event)
                .await?
            {
                ChunkOutcome::Stored => Applied::Stored,
                ChunkOutcome::Duplicate => Applied::Duplicate,
                ChunkOutcome::ChunksChanged { said } => Applied::Refused(format!(
                    "chunks: {}, this member's earlier chunks of {} said {said}",
                    chunk.chunks,
                    label(&r)
                )),
                ChunkOutcome::OverQuota { held } => Applied::Refused(format!(
                    "reports: {held} held and {} more, at most {most} a member and release",
                    chunk.reports.len()
                )),
            },
        )
    }

    /// The leader's call for a recount's reports: kept, and sent by the
    /// worker (sharding every case is no work for a delivery to wait on).
    pub async fn on_call(
        &self,
        from: &AgencyId,
        call: StatsCall,
        actor: &str,
    ) -> Result<Applied, AnalyticsError> {
        let Some(plan) = self.plan() else {
            return Ok(Applied::Refused("no statistics plan in force here".into()));
        };
        if plan.plan.aggregator_index(from) != Some(0) {
            return Ok(Applied::Refused(format!("{from} is not the plan's leader")));
        }
        if call.plan_sha256 != plan.sha256 {
            return Ok(Applied::Refused("plan_sha256: another plan".into()));
        }
        let r = match resolve(&plan, call.release.as_ref()) {
            Ok((_, _, r)) if r.round >= 2 => r,
            Ok(_) => {
                return Ok(Applied::Refused(
                    "release.round: a call is for a recount, 2 or later".into(),
                ));
            }
            Err(e) => return Ok(Applied::Refused(e.to_string())),
        };
        let event = Event::new(actor, Action::StatsCallReceive, "stored").object(label(&r));
        let called = |rec: StatsReleaseRecord| {
            (!rec.called).then_some(StatsReleaseRecord {
                called: true,
                ..rec
            })
        };
        Ok(if self.amend(&plan, &r, vec![event], called).await? {
            self.arrived.notify_one();
            Applied::Stored
        } else {
            Applied::Duplicate
        })
    }

    /// Keeps aggregator `from`'s noisy sum; once both are in, adds them
    /// into the release's published cells.
    pub async fn on_sum(
        &self,
        from: &AgencyId,
        sum: StatsAggregate,
        actor: &str,
    ) -> Result<Applied, AnalyticsError> {
        let Some(plan) = self.plan() else {
            return Ok(Applied::Refused("no statistics plan in force here".into()));
        };
        if plan.plan.aggregator_index(from) != Some(sum.aggregator as usize) {
            return Ok(Applied::Refused(format!(
                "aggregator: {from} is not aggregator {} of the plan",
                sum.aggregator
            )));
        }
        if sum.plan_sha256 != plan.sha256 {
            return Ok(Applied::Refused(
                "plan_sha256: summed under another plan".into(),
            ));
        }
        let (table, _, r) = match resolve(&plan, sum.release.as_ref()) {
            Ok(x) => x,
            Err(e) => return Ok(Applied::Refused(e.to_string())),
        };
        let combine = Combine::new(&plan, table, &self.store.stats_releases()?, &r)?;
        let mut outcome = Applied::Stored;
        self.store
            .stats_update(&r, |held| {
                let mut rec = held.unwrap_or_else(|| fresh(&plan, &r));
                let received = Event::new(actor, Action::StatsSumReceive, "stored")
                    .object(label(&r))
                    .detail("aggregator", sum.aggregator)
                    .detail("reports", sum.reports);
                let Some(events) = combine.add(&mut rec, sum) else {
                    outcome = Applied::Duplicate;
                    return None;
                };
                let events = std::iter::once(received)
                    .chain(events.into_iter().map(|e| Event {
                        actor: actor.to_owned(),
                        ..e
                    }))
                    .collect();
                Some(StatsChange {
                    record: rec,
                    items: Vec::new(),
                    events,
                    own_chunks: Vec::new(),
                })
            })
            .await?;
        Ok(outcome)
    }
}

/// Why a chunk cannot be kept, if it cannot: counts within bounds, and
/// every nonce and share of exactly the size the table's VDAF makes.
fn check_chunk(
    chunk: &StatsReports,
    table: &crate::stats::plan::Table,
    plan: &crate::stats::plan::PlanInForce,
    agg: usize,
) -> Option<String> {
    if chunk.chunks == 0 || chunk.chunks > MAX_CHUNKS || chunk.chunk >= chunk.chunks {
        return Some(format!(
            "chunk: {} of {}, at most {MAX_CHUNKS}",
            chunk.chunk, chunk.chunks
        ));
    }
    if chunk.reports.is_empty() || chunk.reports.len() > MAX_REPORTS_PER_CHUNK {
        return Some(format!("reports: 1 to {MAX_REPORTS_PER_CHUNK}"));
    }
    let shape = Shape::of(table.kind, &plan.plan.countries);
    let sizes = TableVdaf::new(&shape).ok()?.sizes();
    chunk.reports.iter().enumerate().find_map(|(i, rep)| {
        let wrong = |field: &str, want: usize, got: usize| {
            Some(format!(
                "reports[{i}].{field}: {got} bytes, the table's are {want}"
            ))
        };
        if rep.nonce.len() != NONCE_LEN {
            wrong("nonce", NONCE_LEN, rep.nonce.len())
        } else if rep.public_share.len() != sizes[0] {
            wrong("public_share", sizes[0], rep.public_share.len())
        } else if rep.input_share.len() != sizes[1 + agg] {
            wrong("input_share", sizes[1 + agg], rep.input_share.len())
        } else {
            None
        }
    })
}

/// What adding a sum to a release's record takes: the table's VDAF and
/// shape, the plan's minimum cell, and the budget left.
pub(super) struct Combine {
    vdaf: TableVdaf,
    shape: Shape,
    min_cell: u32,
    /// Epsilon other rounds of the period spent, and the period's budget.
    before: u32,
    budget: u32,
}

impl Combine {
    pub(super) fn new(
        plan: &crate::stats::plan::PlanInForce,
        table: &crate::stats::plan::Table,
        records: &[StatsReleaseRecord],
        r: &crate::proto::v1::StatsReleaseRef,
    ) -> Result<Self, AnalyticsError> {
        let shape = Shape::of(table.kind, &plan.plan.countries);
        Ok(Self {
            vdaf: TableVdaf::new(&shape)?,
            shape,
            min_cell: plan.plan.min_cell,
            before: spent(records, &r.table, &r.period, r.round),
            budget: table.budget_milli,
        })
    }

    /// Adds `sum` to `rec` (`None`: that aggregator's sum is held
    /// already) and, once both are in, the published cells; returns the
    /// audit entries, their actor left for the caller to set.
    pub(super) fn add(
        &self,
        rec: &mut StatsReleaseRecord,
        sum: StatsAggregate,
    ) -> Option<Vec<Event>> {
        if rec.sums.iter().any(|s| s.aggregator == sum.aggregator) {
            return None;
        }
        rec.sums.push(sum);
        rec.sums.sort_by_key(|s| s.aggregator);
        Some(self.combine(rec))
    }

    /// Adds the two sums of `rec` once both are in: they must cover the
    /// same reports and spend the same epsilon, within what the period has
    /// left.
    fn combine(&self, rec: &mut StatsReleaseRecord) -> Vec<Event> {
        let [a, b] = match rec.sums.as_slice() {
            [x, y] => [x.clone(), y.clone()],
            _ => return Vec::new(),
        };
        let what = rec.release.as_ref().map(label).unwrap_or_default();
        let refuse = |rec: &mut StatsReleaseRecord, reason: String| {
            rec.refused = reason.clone();
            vec![
                Event::new("", Action::StatsRefuse, "refused")
                    .object(what.clone())
                    .detail("reason", reason),
            ]
        };
        if a.reports != b.reports
            || a.summed_sha256 != b.summed_sha256
            || a.epsilon_milli != b.epsilon_milli
        {
            return refuse(rec, "the aggregators' sums cover different reports".into());
        }
        if self.before + a.epsilon_milli > self.budget {
            return refuse(
                rec,
                format!(
                    "over budget: {} spent, this release {}, the plan allows {} (thousandths of epsilon)",
                    self.before, a.epsilon_milli, self.budget
                ),
            );
        }
        let noisy = match self
            .vdaf
            .unshard([&a.aggregate_share, &b.aggregate_share], a.reports as usize)
        {
            Ok(n) => n,
            Err(e) => return refuse(rec, format!("the sums do not combine: {e}")),
        };
        rec.cells = publish::cells(&self.shape, &noisy, self.min_cell)
            .into_iter()
            .map(|c| c.map_or(-1, |c| c as i64))
            .collect();
        rec.min_cell = self.min_cell;
        rec.released_at = crate::time::now_ms() / 1000;
        vec![
            Event::new("", Action::StatsRelease, "OK")
                .object(what)
                .detail("reports", a.reports)
                .detail("members", a.members)
                .detail("epsilon_milli", a.epsilon_milli)
                .detail("spent_milli", self.before + a.epsilon_milli)
                .detail("budget_milli", self.budget)
                .detail("suppressed", rec.cells.iter().filter(|c| **c < 0).count()),
        ]
    }
}
