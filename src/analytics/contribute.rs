//! A member's contribution: each own case of the period becomes one
//! measurement per table (`stats::tables`, the one-victim rule applied
//! with the hits this node knows), padded with measurements that count
//! nothing, sharded, and queued in chunks to both aggregators in one
//! transaction with the record that it was done (so it is done once).

use crate::audit::{Action, Event, NODE};
use crate::proto::v1::envelope::Payload;
use crate::proto::v1::{
    Category, Indicator, StatsReleaseRecord, StatsReleaseRef, StatsReport, StatsReports,
    StoredAlert,
};
use crate::stats::plan::{Period, PlanInForce};
use crate::stats::tables::{Case, Shape, represents};
use crate::stats::vdaf::{Report, TableVdaf};
use crate::stats::victim::Victim;
use crate::store::{OutboxItem, StatsChange};

use super::{
    Analytics, AnalyticsError, CHUNK_BYTES, MAX_REPORTS_PER_CHUNK, MAX_REPORTS_PER_MEMBER, PAD_TO,
    context, cpu_bound, label,
};

impl Analytics {
    /// Contributes round 1 of every table for the last quarter that ended
    /// before `now` (Unix seconds), and every recount called for, where
    /// this node has not yet. Returns the releases contributed to.
    pub async fn contribute_due(&self, now: i64) -> Result<Vec<StatsReleaseRef>, AnalyticsError> {
        let Some(plan) = self.plan() else {
            return Ok(Vec::new());
        };
        let Some(period) = Period::last_ended(now) else {
            return Ok(Vec::new());
        };
        if period < plan.plan.first_period {
            return Ok(Vec::new());
        }
        let mut due: Vec<(StatsReleaseRef, Period)> = plan
            .plan
            .tables
            .iter()
            .map(|t| {
                let r = StatsReleaseRef {
                    table: t.name.clone(),
                    period: period.to_string(),
                    round: 1,
                };
                (r, period)
            })
            .collect();
        // Recounts the leader called for (or, at the leader, was asked for).
        for rec in self.store.stats_releases()? {
            if (rec.called || rec.run_requested)
                && rec.contributed_at == 0
                && rec.refused.is_empty()
                && let Ok((_, p, r)) = super::resolve(&plan, rec.release.as_ref())
                && !due.iter().any(|(d, _)| *d == r)
            {
                due.push((r, p));
            }
        }
        let mut done = Vec::new();
        for (r, p) in due {
            if self.contribute(&plan, &r, p).await? {
                done.push(r);
            }
        }
        Ok(done)
    }

    /// Sends this node's reports for release `r`, unless it did already.
    async fn contribute(
        &self,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        period: Period,
    ) -> Result<bool, AnalyticsError> {
        if self
            .store
            .stats_release(r)?
            .is_some_and(|rec| rec.contributed_at != 0)
        {
            return Ok(false);
        }
        let table = plan.plan.table(&r.table).expect("a table of the plan");
        let shape = Shape::of(table.kind, &plan.plan.countries);
        let vdaf = TableVdaf::new(&shape)?;
        let cases = self.cases(period)?;
        if cases.len() > MAX_REPORTS_PER_MEMBER {
            return self.too_many(plan, r, cases.len()).await;
        }
        let ctx = context(self.federation(), plan, r);
        let reports = cpu_bound(|| {
            let mut reports = Vec::with_capacity(cases.len().next_multiple_of(PAD_TO));
            for case in &cases {
                let m = shape.measure(case, represents(case), &plan.plan.countries);
                reports.push(vdaf.shard(&ctx, &m)?);
            }
            while reports.is_empty() || !reports.len().is_multiple_of(PAD_TO) {
                reports.push(vdaf.shard(&ctx, &shape.none())?);
            }
            Ok::<_, AnalyticsError>(reports)
        })?;
        let (items, own_chunks): (Vec<OutboxItem>, Vec<OutboxItem>) = self
            .chunks(plan, r, &reports, vdaf.sizes()[1])
            .into_iter()
            .partition(|item| item.peer != *self.own());
        let own_chunks: Vec<_> = own_chunks
            .into_iter()
            .filter_map(|item| match item.payload {
                Payload::StatsReports(c) => Some((self.own().clone(), c)),
                _ => None,
            })
            .collect();
        let sent = reports.len() as u64;
        let event = Event::new(NODE, Action::StatsContribute, "OK")
            .object(label(r))
            .detail("reports", sent)
            .detail("chunks", (items.len() + own_chunks.len()) / 2);
        let change = StatsChange {
            items,
            events: vec![event],
            own_chunks,
            ..StatsChange::default()
        };
        self.mark_contributed(plan, r, sent, change).await
    }

    /// Records, once, that this node contributed `sent` reports to `r`,
    /// with `change`'s envelopes, kept chunks and audit entries; whether
    /// it wrote (a contribution made already is left as it is).
    async fn mark_contributed(
        &self,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        sent: u64,
        change: StatsChange,
    ) -> Result<bool, AnalyticsError> {
        let contributed_at = crate::time::now_ms() / 1000;
        let apply = |held: Option<StatsReleaseRecord>| {
            let held = held.unwrap_or_else(|| super::fresh(plan, r));
            (held.contributed_at == 0).then_some(StatsChange {
                record: StatsReleaseRecord {
                    contributed_at,
                    reports_sent: sent,
                    ..held
                },
                ..change
            })
        };
        Ok(self.store.stats_update(r, apply).await?)
    }

    /// Records, once, that this node has more cases for `r` than an
    /// aggregator takes from one member: sending part of them would skew
    /// the table, so it sends none, says so in its audit log, and the
    /// release goes ahead without it at the deadline.
    async fn too_many(
        &self,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        cases: usize,
    ) -> Result<bool, AnalyticsError> {
        let event = Event::new(NODE, Action::StatsContribute, "refused")
            .object(label(r))
            .detail("cases", cases)
            .detail("most", MAX_REPORTS_PER_MEMBER);
        let change = StatsChange {
            events: vec![event],
            ..StatsChange::default()
        };
        self.mark_contributed(plan, r, 0, change).await
    }

    /// This node's own cases of `period`: live alerts whose exploitation
    /// began in it (the time window's start), or, without one, recorded in it.
    fn cases(&self, period: Period) -> Result<Vec<Case>, AnalyticsError> {
        let mut found = Vec::new();
        self.store.for_each_own(self.own(), |rec| {
            if let Some(case) = case_of(rec, period) {
                found.push(case);
            }
        })?;
        for case in &mut found {
            case.linked = self.store.stats_links(&case.alert)?;
        }
        Ok(found)
    }

    /// The envelopes of `reports`: chunks of at most [`CHUNK_BYTES`] of
    /// input shares, each chunk once to each aggregator with its share.
    fn chunks(
        &self,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        reports: &[Report],
        share_bytes: usize,
    ) -> Vec<OutboxItem> {
        let per_chunk = (CHUNK_BYTES / share_bytes.max(1)).clamp(1, MAX_REPORTS_PER_CHUNK);
        let chunks = reports.len().div_ceil(per_chunk) as u32;
        let mut items = Vec::new();
        for (i, part) in reports.chunks(per_chunk).enumerate() {
            for (agg, peer) in plan.plan.aggregators.iter().enumerate() {
                let payload = Payload::StatsReports(StatsReports {
                    release: Some(r.clone()),
                    plan_sha256: plan.sha256.to_vec(),
                    chunk: i as u32,
                    chunks,
                    directory_version: self.directory_version(),
                    reports: part
                        .iter()
                        .map(|rep| StatsReport {
                            nonce: rep.nonce.to_vec(),
                            public_share: rep.public_share.clone(),
                            input_share: rep.input_shares[agg].clone(),
                        })
                        .collect(),
                });
                items.push(OutboxItem {
                    peer: peer.clone(),
                    payload,
                    rule: String::new(),
                    disclosed: "statistics: report shares".into(),
                });
            }
        }
        items
    }
}

/// `rec` as a case of `period`, if it is one: an own, live alert whose
/// exploitation began (or, without a time window, which was recorded) in it.
fn case_of(rec: &StoredAlert, period: Period) -> Option<Case> {
    let a = rec.alert.as_ref()?;
    if a.retracted {
        return None;
    }
    let content = a.content.as_ref()?;
    let began = content
        .time_window
        .as_ref()
        .and_then(|w| w.start)
        .or(a.created_at)?;
    if Period::containing(began.seconds)? != period {
        return None;
    }
    Some(Case {
        alert: a.id.parse().ok()?,
        country: content
            .location
            .as_ref()
            .and_then(|l| crate::ids::CountryCode::new(&l.country).ok()),
        category: Category::try_from(content.category).unwrap_or(Category::Unspecified),
        indicators: content
            .indicators
            .iter()
            .filter_map(|i| Indicator::try_from(*i).ok())
            .collect(),
        linked: Vec::new(),
        victim: Victim::of(&a.subjects, civil_date(began.seconds)),
    })
}

/// The civil (UTC) date of `unix_secs`, as the age of a victim needs it.
fn civil_date(unix_secs: i64) -> Option<(i32, u32, u32)> {
    let d = time::OffsetDateTime::from_unix_timestamp(unix_secs).ok()?;
    Some((d.year(), u32::from(u8::from(d.month())), u32::from(d.day())))
}
