//! The leader's run of a release: choose the verification key, verify the
//! reports of the members both aggregators hold whole together with the
//! helper (`StatsPrepare` in batches, then `StatsCommit`), check the budget,
//! add noise to its sum once, and send it to every member.
//!
//! A run that cannot finish (the helper unreachable, a member's reports
//! still on their way) changes nothing but the record of the key: the
//! worker tries again, and the reports are summed once whenever it ends.

use crate::audit::{Action, Event, NODE};
use crate::ids::AgencyId;
use crate::proto::v1::envelope::Payload;
use crate::proto::v1::peer_exchange_client::PeerExchangeClient;
use crate::proto::v1::{
    StatsAggregate, StatsCall, StatsCommitRequest, StatsPrepareRequest, StatsReleaseRecord,
    StatsReleaseRef, StatsReport, StatsVerifierShare,
};
use crate::stats::plan::{Period, PlanInForce, Table};
use crate::stats::tables::Shape;
use crate::stats::vdaf::{ReportShare, TableVdaf, VERIFY_KEY_LEN};
use crate::store::{OutboxItem, StatsChange};

use super::receive::Combine;
use super::{
    Analytics, AnalyticsError, PREPARE_BATCH, complete, context, cpu_bound, fresh, label, resolve,
    share_of, spent, summed_digest,
};

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// Summed, noised and sent (now or before).
    Done,
    /// Not yet, and why.
    Waiting(String),
}

/// One report as the leader holds it, with whose it is.
type Held = (AgencyId, StatsReport);

/// The members verified, their reports, and the helper's messages.
type Verified = (Vec<AgencyId>, Vec<Held>, Vec<Option<Vec<u8>>>);

fn now_secs() -> i64 {
    crate::time::now_ms() / 1000
}

/// When a release stops waiting for reports the helper lacks: the
/// collection days over, and as many again.
fn hard_deadline(plan: &PlanInForce, r: &StatsReleaseRef) -> i64 {
    r.period.parse::<Period>().map_or(0, |p| {
        plan.plan.aggregate_after(p) + i64::from(plan.plan.collect_days) * 86_400
    })
}

impl Analytics {
    /// Asks for release `r` to be run now (an administrator at the leader:
    /// a recount, or before the collection days are over), and runs it.
    pub async fn request_run(&self, r: StatsReleaseRef) -> Result<Run, AnalyticsError> {
        let plan = self.plan().ok_or(AnalyticsError::NoPlan)?;
        let (table, _, r) = resolve(&plan, Some(&r))?;
        self.leader_of(&plan)?;
        if r.round >= 2 {
            return self.call_recount(&plan, table, &r).await;
        }
        let requested = |rec: StatsReleaseRecord| {
            (!rec.run_requested).then(|| StatsReleaseRecord {
                run_requested: true,
                requested_at: now_secs(),
                ..rec
            })
        };
        self.amend(&plan, &r, Vec::new(), requested).await?;
        self.lead(&plan, &r).await
    }

    /// A recount: refused at once past the budget; otherwise every member
    /// is called (`StatsCall`) to send its reports, and the run waits for
    /// them as round 1 does.
    async fn call_recount(
        &self,
        plan: &PlanInForce,
        table: &Table,
        r: &StatsReleaseRef,
    ) -> Result<Run, AnalyticsError> {
        let before = spent(&self.store.stats_releases()?, &r.table, &r.period, r.round);
        if before + table.epsilon_milli > table.budget_milli {
            let reason = over_budget(before, table);
            self.refuse(plan, r, &reason).await?;
            return Err(AnalyticsError::Refused(reason));
        }
        let call = StatsCall {
            release: Some(r.clone()),
            plan_sha256: plan.sha256.to_vec(),
            directory_version: self.directory_version(),
        };
        let items: Vec<OutboxItem> = self
            .roster
            .now()
            .peer_ids()
            .into_iter()
            .map(|peer| OutboxItem {
                peer,
                payload: Payload::StatsCall(call.clone()),
                rule: String::new(),
                disclosed: "statistics: a call for a recount's reports".into(),
            })
            .collect();
        self.store
            .stats_update(r, |held| {
                let rec = held.unwrap_or_else(|| fresh(plan, r));
                (!rec.run_requested).then(|| StatsChange {
                    record: StatsReleaseRecord {
                        run_requested: true,
                        requested_at: now_secs(),
                        ..rec
                    },
                    items,
                    ..Default::default()
                })
            })
            .await?;
        self.arrived.notify_one();
        Ok(Run::Waiting(
            "every member is called to send its reports".into(),
        ))
    }

    /// Runs every release due at `now` (Unix seconds) that is not done:
    /// round 1 of the last quarter once its collection days are over, and
    /// every run requested. Returns what each came to.
    pub async fn lead_due(&self, now: i64) -> Result<Vec<(String, Run)>, AnalyticsError> {
        let Some(plan) = self.plan() else {
            return Ok(Vec::new());
        };
        if plan.plan.aggregator_index(self.own()) != Some(0) {
            return Ok(Vec::new());
        }
        let mut due: Vec<StatsReleaseRef> = Vec::new();
        let mut waiting = Vec::new();
        for rec in self.store.stats_releases()? {
            let Some(r) = rec.release.clone() else {
                continue;
            };
            if !rec.run_requested || rec.own_sum.is_some() || !rec.refused.is_empty() {
                continue;
            }
            // A recount waits for every member's reports, as round 1 does.
            let wait_until = rec.requested_at + i64::from(plan.plan.collect_days) * 86_400;
            if r.round >= 2 && now < wait_until && !self.everyone_sent(&r)? {
                waiting.push((
                    label(&r),
                    Run::Waiting("members' reports still to come".into()),
                ));
            } else {
                due.push(r);
            }
        }
        if let Some(last) = Period::last_ended(now)
            && last >= plan.plan.first_period
        {
            for t in &plan.plan.tables {
                let r = StatsReleaseRef {
                    table: t.name.clone(),
                    period: last.to_string(),
                    round: 1,
                };
                if due.contains(&r) || waiting.iter().any(|(l, _)| *l == label(&r)) {
                    continue;
                }
                if now >= plan.plan.aggregate_after(last) || self.everyone_sent(&r)? {
                    due.push(r);
                } else if self
                    .store
                    .stats_release(&r)?
                    .is_none_or(|rec| rec.own_sum.is_none())
                {
                    waiting.push((
                        label(&r),
                        Run::Waiting("members' reports still to come".into()),
                    ));
                }
            }
        }
        let mut out = waiting;
        for r in due {
            let run = match self.lead(&plan, &r).await {
                Ok(run) => run,
                // Recorded and audited where it was refused.
                Err(AnalyticsError::Refused(_)) => continue,
                Err(AnalyticsError::Peer(e)) => Run::Waiting(format!("the helper: {e}")),
                Err(e) => return Err(e),
            };
            out.push((label(&r), run));
        }
        Ok(out)
    }

    /// Whether every member in force (this node too) has sent all its
    /// reports of `r`: then round 1 need not wait out the collection days.
    fn everyone_sent(&self, r: &StatsReleaseRef) -> Result<bool, AnalyticsError> {
        let whole = complete(&self.store.stats_chunk_counts(r)?);
        let members = self.roster.now();
        Ok(members
            .peer_ids()
            .iter()
            .chain([self.own()])
            .all(|m| whole.contains(m)))
    }

    fn leader_of(&self, plan: &PlanInForce) -> Result<AgencyId, AnalyticsError> {
        let [leader, helper] = &plan.plan.aggregators;
        if leader != self.own() {
            return Err(AnalyticsError::Refused(format!(
                "only the plan's leader, {leader}, runs releases"
            )));
        }
        Ok(helper.clone())
    }

    async fn lead(&self, plan: &PlanInForce, r: &StatsReleaseRef) -> Result<Run, AnalyticsError> {
        let helper = self.leader_of(plan)?;
        let (table, _, r) = resolve(plan, Some(r))?;
        let records = self.store.stats_releases()?;
        let rec = records
            .iter()
            .find(|rec| rec.release.as_ref() == Some(&r))
            .cloned()
            .unwrap_or_else(|| fresh(plan, &r));
        if rec.own_sum.is_some() {
            return Ok(Run::Done);
        }
        if !rec.refused.is_empty() {
            return Err(AnalyticsError::Refused(rec.refused));
        }
        let before = spent(&records, &r.table, &r.period, r.round);
        if before + table.epsilon_milli > table.budget_milli {
            let reason = over_budget(before, table);
            self.refuse(plan, &r, &reason).await?;
            return Err(AnalyticsError::Refused(reason));
        }
        let key = self.verify_key(plan, &r, &rec).await?;
        let ctx = context(self.federation(), plan, &r);
        let vdaf = TableVdaf::new(&Shape::of(table.kind, &plan.plan.countries))?;
        let patient = !rec.run_requested && now_secs() < hard_deadline(plan, &r);
        let (members, held, messages) = match self
            .verified(&helper, plan, &r, &key, (&vdaf, &ctx), patient)
            .await?
        {
            Ok(v) => v,
            Err(why) => return Ok(Run::Waiting(why)),
        };
        let shares = report_shares(&held);
        let fin = cpu_bound(|| vdaf.finish(0, &key, &ctx, &shares, &messages));
        let accepted: Vec<Vec<u8>> = held
            .iter()
            .zip(&fin.accepted)
            .filter(|(_, ok)| **ok)
            .map(|((_, rep), _)| rep.nonce.clone())
            .collect();
        let digest = summed_digest(accepted.iter().map(Vec::as_slice));
        self.commit(&helper, plan, &r, accepted, members.len(), &digest)
            .await?;
        let sum = StatsAggregate {
            release: Some(r.clone()),
            plan_sha256: plan.sha256.to_vec(),
            aggregator: 0,
            reports: fin.count as u64,
            members: members.len() as u32,
            summed_sha256: digest,
            aggregate_share: vdaf.add_noise(&fin.aggregate, table.epsilon_milli, fin.count)?,
            epsilon_milli: table.epsilon_milli,
            directory_version: self.directory_version(),
        };
        let rejected = held.len() - fin.count;
        self.publish_sum(plan, table, &r, sum, &members, rejected)
            .await?;
        Ok(Run::Done)
    }

    /// The held reports of the members both aggregators hold whole, and
    /// the helper's verifier message for each. The helper lacking some
    /// member's reports makes a `patient` run wait (`Err`: why); otherwise
    /// those members are left out and the rest verified.
    async fn verified(
        &self,
        helper: &AgencyId,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        key: &[u8; VERIFY_KEY_LEN],
        (vdaf, ctx): (&TableVdaf, &[u8]),
        patient: bool,
    ) -> Result<Result<Verified, String>, AnalyticsError> {
        let mut members = complete(&self.store.stats_chunk_counts(r)?);
        loop {
            if members.is_empty() {
                return Ok(Err("no member's reports have all arrived".into()));
            }
            let mut held: Vec<Held> = Vec::new();
            for m in &members {
                let reports = self.store.stats_reports(r, m)?;
                held.extend(reports.into_iter().map(|rep| (m.clone(), rep)));
            }
            match self
                .prepare(helper, plan, r, key, &members, &held, (vdaf, ctx))
                .await?
            {
                Ok(messages) => return Ok(Ok((members, held, messages))),
                Err(missing) if patient => {
                    return Ok(Err(format!(
                        "the helper lacks reports of {}",
                        missing.join(", ")
                    )));
                }
                Err(missing) => members.retain(|m| !missing.iter().any(|x| x == m.as_str())),
            }
        }
    }

    /// The verification key of release `r`: the one recorded, or a new one
    /// from the system's RNG, recorded before any share is verified with it.
    async fn verify_key(
        &self,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        rec: &StatsReleaseRecord,
    ) -> Result<[u8; VERIFY_KEY_LEN], AnalyticsError> {
        if let Ok(key) = <[u8; VERIFY_KEY_LEN]>::try_from(rec.verify_key.as_slice()) {
            return Ok(key);
        }
        let mut key = [0u8; VERIFY_KEY_LEN];
        aws_lc_rs::rand::fill(&mut key).expect("the system RNG is available");
        self.amend(plan, r, Vec::new(), |rec| {
            Some(StatsReleaseRecord {
                verify_key: key.to_vec(),
                ..rec
            })
        })
        .await?;
        Ok(key)
    }

    /// The helper's verifier messages for every held report, batch by
    /// batch; `Err(missing)` when the helper lacks some member's reports.
    #[allow(clippy::too_many_arguments)] // one run's parts, called once
    async fn prepare(
        &self,
        helper: &AgencyId,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        key: &[u8; VERIFY_KEY_LEN],
        members: &[AgencyId],
        held: &[Held],
        (vdaf, ctx): (&TableVdaf, &[u8]),
    ) -> Result<Result<Vec<Option<Vec<u8>>>, Vec<String>>, AnalyticsError> {
        let mut messages = Vec::with_capacity(held.len());
        for (b, batch) in held.chunks(PREPARE_BATCH).enumerate() {
            let shares = cpu_bound(|| vdaf.leader_shares(key, ctx, &report_shares(batch)));
            let req = StatsPrepareRequest {
                release: Some(r.clone()),
                plan_sha256: plan.sha256.to_vec(),
                verify_key: key.to_vec(),
                batch: b as u32,
                members: if b == 0 {
                    members.iter().map(ToString::to_string).collect()
                } else {
                    Vec::new()
                },
                shares: batch
                    .iter()
                    .zip(shares)
                    .map(|((_, rep), share)| StatsVerifierShare {
                        nonce: rep.nonce.clone(),
                        share: share.unwrap_or_default(),
                    })
                    .collect(),
            };
            let resp = self
                .call(
                    helper,
                    |mut c, req| async move { c.stats_prepare(req).await },
                    req,
                )
                .await?;
            if !resp.missing.is_empty() {
                return Ok(Err(resp.missing));
            }
            if resp.messages.len() != batch.len() {
                return Err(AnalyticsError::Peer(format!(
                    "{} verifier messages for {} shares",
                    resp.messages.len(),
                    batch.len()
                )));
            }
            messages.extend(
                resp.messages
                    .into_iter()
                    .map(|m| (!m.is_empty()).then_some(m)),
            );
        }
        Ok(Ok(messages))
    }

    /// Tells the helper which reports both sum; it must answer with the
    /// same count and digest.
    async fn commit(
        &self,
        helper: &AgencyId,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        accepted: Vec<Vec<u8>>,
        members: usize,
        digest: &[u8],
    ) -> Result<(), AnalyticsError> {
        let count = accepted.len() as u64;
        let req = StatsCommitRequest {
            release: Some(r.clone()),
            plan_sha256: plan.sha256.to_vec(),
            accepted,
            members: members as u32,
        };
        let resp = self
            .call(
                helper,
                |mut c, req| async move { c.stats_commit(req).await },
                req,
            )
            .await?;
        if resp.reports != count || resp.summed_sha256 != digest {
            return Err(AnalyticsError::Peer(format!(
                "the helper summed {} reports, the leader {count}, or other ones",
                resp.reports
            )));
        }
        Ok(())
    }

    /// One call to the other aggregator, bounded by the node's timeout.
    async fn call<Req, Resp, F, Fut>(
        &self,
        peer: &AgencyId,
        f: F,
        req: Req,
    ) -> Result<Resp, AnalyticsError>
    where
        F: FnOnce(PeerExchangeClient<tonic::transport::Channel>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let channel = self.channel(peer).await?;
        let client = PeerExchangeClient::new(channel);
        let mut req = tonic::Request::new(req);
        req.set_timeout(self.timeout * 4);
        match tokio::time::timeout(self.timeout * 4, f(client, req)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(s)) => {
                self.drop_channel();
                Err(AnalyticsError::Peer(format!(
                    "{:?}: {}",
                    s.code(),
                    s.message()
                )))
            }
            Err(_) => {
                self.drop_channel();
                Err(AnalyticsError::Peer("no answer in time".into()))
            }
        }
    }

    /// Records this aggregator's noisy sum (once: a sum noised again could
    /// be averaged), adds it to the release, and queues it to every member.
    pub(super) async fn publish_sum(
        &self,
        plan: &PlanInForce,
        table: &Table,
        r: &StatsReleaseRef,
        sum: StatsAggregate,
        members: &[AgencyId],
        rejected: usize,
    ) -> Result<(), AnalyticsError> {
        let combine = Combine::new(plan, table, &self.store.stats_releases()?, r)?;
        let peers: Vec<AgencyId> = self.roster.now().peer_ids();
        let what = label(r);
        self.store
            .stats_update(r, |held| {
                let mut rec = held.unwrap_or_else(|| fresh(plan, r));
                if rec.own_sum.is_some() {
                    return None;
                }
                rec.own_sum = Some(sum.clone());
                rec.members = members.iter().map(ToString::to_string).collect();
                let mut events = vec![
                    Event::new(NODE, Action::StatsSum, "OK")
                        .object(what.clone())
                        .detail("aggregator", sum.aggregator)
                        .detail("reports", sum.reports)
                        .detail("rejected", rejected)
                        .detail("members", sum.members)
                        .detail("epsilon_milli", sum.epsilon_milli),
                ];
                events.extend(
                    combine
                        .add(&mut rec, sum.clone())
                        .unwrap_or_default()
                        .into_iter()
                        .map(|e| Event {
                            actor: NODE.to_owned(),
                            ..e
                        }),
                );
                let items = peers
                    .iter()
                    .map(|p| OutboxItem {
                        peer: p.clone(),
                        payload: Payload::StatsAggregate(sum.clone()),
                        rule: String::new(),
                        disclosed: "statistics: a noisy sum".into(),
                    })
                    .collect();
                Some(StatsChange {
                    record: rec,
                    items,
                    events,
                    own_chunks: Vec::new(),
                })
            })
            .await?;
        Ok(())
    }

    /// Records that release `r` is refused here (over budget), audited.
    pub(super) async fn refuse(
        &self,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        reason: &str,
    ) -> Result<(), AnalyticsError> {
        let event = Event::new(NODE, Action::StatsRefuse, "refused")
            .object(label(r))
            .detail("reason", reason);
        self.amend(plan, r, vec![event], |rec| {
            Some(StatsReleaseRecord {
                refused: reason.to_owned(),
                ..rec
            })
        })
        .await?;
        Ok(())
    }
}

/// The refusal of a release that would spend more than the period allows.
pub(super) fn over_budget(before: u32, table: &Table) -> String {
    format!(
        "over budget: table {} has spent {before} of its {} (thousandths of epsilon) this period; a release costs {}",
        table.name, table.budget_milli, table.epsilon_milli
    )
}

/// The held reports as the VDAF reads one aggregator's side.
pub(super) fn report_shares(held: &[Held]) -> Vec<ReportShare<'_>> {
    held.iter().map(|(_, rep)| share_of(rep)).collect()
}
