//! The helper's side of a run: the leader's calls, checked before any
//! work. `StatsPrepare` answers each batch with the verifier messages (and
//! keeps them); `StatsCommit` sums exactly the reports the leader
//! finished, adds the helper's noise once and sends its sum to every
//! member. Both are idempotent: a leader that retries gets the same answer.

use std::collections::HashMap;

use crate::ids::AgencyId;
use crate::proto::v1::{
    StatsCommitRequest, StatsCommitResponse, StatsPrepareRequest, StatsPrepareResponse,
    StatsPrepared, StatsReleaseRecord, StatsReleaseRef, StatsReport,
};
use crate::stats::plan::{PlanInForce, Table};
use crate::stats::tables::Shape;
use crate::stats::vdaf::{ReportShare, TableVdaf, VERIFY_KEY_LEN};

use super::lead::over_budget;
use super::{
    Analytics, AnalyticsError, PREPARE_BATCH, complete, context, cpu_bound, fresh, resolve,
    share_of, spent, summed_digest,
};

/// Members a prepare call may name (a directory's most).
const MAX_MEMBERS: usize = crate::directory::document::MAX_MEMBERS;
/// Reports a commit may name.
const MAX_ACCEPTED: usize = 200_000;

/// Whether `key` may verify the reports of `rec`'s release: the first
/// batch 0 pins the key, and every later call (a leader that restarts
/// sends batch 0 again) must use it. Prio3's proof hides a measurement
/// from the aggregators only under one query, so the same reports are
/// never verified under two keys: a leader that tried could learn more of
/// each measurement with every key. An honest leader records its key
/// before its first call, so a restart never needs another.
fn pinned_key(rec: &StatsReleaseRecord, key: &[u8]) -> Result<(), AnalyticsError> {
    if rec.verify_key.is_empty() || rec.verify_key == key {
        Ok(())
    } else {
        Err(AnalyticsError::Refused(
            "verify_key: the release's reports are verified under the key of its first batch, \
             and never under another"
                .into(),
        ))
    }
}

impl Analytics {
    /// The leader's batch `req`: this helper's verifier messages for it,
    /// or the members whose reports it does not hold whole (batch 0).
    pub async fn on_prepare(
        &self,
        from: &AgencyId,
        req: StatsPrepareRequest,
    ) -> Result<StatsPrepareResponse, AnalyticsError> {
        let (plan, table, r) = self.as_helper(from, req.release.as_ref(), &req.plan_sha256)?;
        let key = <[u8; VERIFY_KEY_LEN]>::try_from(req.verify_key.as_slice())
            .map_err(|_| AnalyticsError::Refused(format!("verify_key: {VERIFY_KEY_LEN} bytes")))?;
        if req.shares.len() > PREPARE_BATCH || req.members.len() > MAX_MEMBERS {
            return Err(AnalyticsError::Refused(format!(
                "shares: at most {PREPARE_BATCH}; members: at most {MAX_MEMBERS}"
            )));
        }
        let rec = self
            .store
            .stats_release(&r)?
            .unwrap_or_else(|| fresh(&plan, &r));
        if rec.own_sum.is_some() {
            return Err(AnalyticsError::Refused("release: already summed".into()));
        }
        pinned_key(&rec, &req.verify_key)?;
        let members = if req.batch == 0 {
            let complete = complete(&self.store.stats_chunk_counts(&r)?);
            let missing: Vec<String> = req
                .members
                .iter()
                .filter(|m| !complete.iter().any(|c| c.as_str() == m.as_str()))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Ok(StatsPrepareResponse {
                    missing,
                    messages: Vec::new(),
                });
            }
            self.start_run(&plan, &r, &req).await?
        } else {
            rec.members.clone()
        };
        let held = self.held(&r, &members)?;
        let ctx = context(self.federation(), &plan, &r);
        let vdaf = TableVdaf::new(&Shape::of(table.kind, &plan.plan.countries))?;
        let messages = cpu_bound(|| messages(&vdaf, &key, &ctx, &req, &held));
        let prepared = StatsPrepared {
            nonces: req.shares.iter().map(|s| s.nonce.clone()).collect(),
            messages: messages.clone(),
        };
        self.store
            .stats_put_prepared(&r, req.batch, &prepared)
            .await?;
        Ok(StatsPrepareResponse {
            missing: Vec::new(),
            messages,
        })
    }

    /// Sums the reports the leader finished, which must be exactly those
    /// this helper can finish, adds noise and sends the sum to every member.
    pub async fn on_commit(
        &self,
        from: &AgencyId,
        req: StatsCommitRequest,
    ) -> Result<StatsCommitResponse, AnalyticsError> {
        let (plan, table, r) = self.as_helper(from, req.release.as_ref(), &req.plan_sha256)?;
        if req.accepted.len() > MAX_ACCEPTED {
            return Err(AnalyticsError::Refused(format!(
                "accepted: at most {MAX_ACCEPTED}"
            )));
        }
        let records = self.store.stats_releases()?;
        let rec = records
            .iter()
            .find(|rec| rec.release.as_ref() == Some(&r))
            .cloned()
            .unwrap_or_else(|| fresh(&plan, &r));
        if let Some(sum) = &rec.own_sum {
            return Ok(StatsCommitResponse {
                reports: sum.reports,
                summed_sha256: sum.summed_sha256.clone(),
            });
        }
        let key = <[u8; VERIFY_KEY_LEN]>::try_from(rec.verify_key.as_slice())
            .map_err(|_| AnalyticsError::Refused("release: no batch prepared".into()))?;
        let before = spent(&records, &r.table, &r.period, r.round);
        if before + table.epsilon_milli > table.budget_milli {
            let reason = over_budget(before, &table);
            self.refuse(&plan, &r, &reason).await?;
            return Err(AnalyticsError::Refused(reason));
        }
        let held = self.held(&r, &rec.members)?;
        let mut prepared: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for batch in self.store.stats_prepared(&r)? {
            prepared.extend(batch.nonces.into_iter().zip(batch.messages));
        }
        let mut shares = Vec::with_capacity(req.accepted.len());
        let mut msgs = Vec::with_capacity(req.accepted.len());
        for (i, nonce) in req.accepted.iter().enumerate() {
            let (Some(rep), Some(m)) = (
                held.get(nonce),
                prepared.get(nonce).filter(|m| !m.is_empty()),
            ) else {
                return Err(AnalyticsError::Refused(format!(
                    "accepted[{i}]: not a report this helper verified"
                )));
            };
            shares.push(share_of(rep));
            msgs.push(Some(m.clone()));
        }
        let ctx = context(self.federation(), &plan, &r);
        let vdaf = TableVdaf::new(&Shape::of(table.kind, &plan.plan.countries))?;
        let fin = cpu_bound(|| vdaf.finish(1, &key, &ctx, &shares, &msgs));
        if fin.count != req.accepted.len() {
            return Err(AnalyticsError::Refused(format!(
                "accepted: this helper finishes {} of the {} reports",
                fin.count,
                req.accepted.len()
            )));
        }
        let digest = summed_digest(req.accepted.iter().map(Vec::as_slice));
        let rejected = held.len() - fin.count;
        self.sum_as_helper(
            &plan,
            &table,
            &r,
            &vdaf,
            fin,
            (digest.clone(), req.members, rejected),
        )
        .await?;
        Ok(StatsCommitResponse {
            reports: req.accepted.len() as u64,
            summed_sha256: digest,
        })
    }

    /// The plan, table and release of a call from `from`, if this node is
    /// the plan's helper and `from` its leader.
    fn as_helper(
        &self,
        from: &AgencyId,
        r: Option<&StatsReleaseRef>,
        plan_sha256: &[u8],
    ) -> Result<(std::sync::Arc<PlanInForce>, Table, StatsReleaseRef), AnalyticsError> {
        let plan = self.plan().ok_or(AnalyticsError::NoPlan)?;
        let [leader, helper] = &plan.plan.aggregators;
        if helper != self.own() || leader != from {
            return Err(AnalyticsError::Refused(format!(
                "the plan's helper is {helper} and its leader {leader}"
            )));
        }
        if plan_sha256 != plan.sha256 {
            return Err(AnalyticsError::Refused("plan_sha256: another plan".into()));
        }
        let (table, _, r) = resolve(&plan, r)?;
        let table = table.clone();
        Ok((plan, table, r))
    }

    /// Records the key and members of a run the leader starts (or starts
    /// again); returns the members.
    async fn start_run(
        &self,
        plan: &PlanInForce,
        r: &StatsReleaseRef,
        req: &StatsPrepareRequest,
    ) -> Result<Vec<String>, AnalyticsError> {
        self.amend(plan, r, Vec::new(), |rec| {
            Some(StatsReleaseRecord {
                verify_key: req.verify_key.clone(),
                members: req.members.clone(),
                ..rec
            })
        })
        .await?;
        Ok(req.members.clone())
    }

    /// The reports of `members` this helper holds, by nonce.
    fn held(
        &self,
        r: &StatsReleaseRef,
        members: &[String],
    ) -> Result<HashMap<Vec<u8>, StatsReport>, AnalyticsError> {
        let mut out = HashMap::new();
        for m in members {
            let Ok(m) = AgencyId::new(m.as_str()) else {
                continue;
            };
            for rep in self.store.stats_reports(r, &m)? {
                out.insert(rep.nonce.clone(), rep);
            }
        }
        Ok(out)
    }

    async fn sum_as_helper(
        &self,
        plan: &PlanInForce,
        table: &Table,
        r: &StatsReleaseRef,
        vdaf: &TableVdaf,
        fin: crate::stats::vdaf::Finished,
        (digest, members, rejected): (Vec<u8>, u32, usize),
    ) -> Result<(), AnalyticsError> {
        let rec = self
            .store
            .stats_release(r)?
            .unwrap_or_else(|| fresh(plan, r));
        let sum = crate::proto::v1::StatsAggregate {
            release: Some(r.clone()),
            plan_sha256: plan.sha256.to_vec(),
            aggregator: 1,
            reports: fin.count as u64,
            members,
            summed_sha256: digest,
            aggregate_share: vdaf.add_noise(&fin.aggregate, table.epsilon_milli, fin.count)?,
            epsilon_milli: table.epsilon_milli,
            directory_version: self.directory_version(),
        };
        let member_ids: Vec<AgencyId> = rec
            .members
            .iter()
            .filter_map(|m| AgencyId::new(m.as_str()).ok())
            .collect();
        self.publish_sum(plan, table, r, sum, &member_ids, rejected)
            .await
    }
}

/// This helper's verifier message for each share of `req` (empty bytes:
/// rejected, or a report it does not hold).
fn messages(
    vdaf: &TableVdaf,
    key: &[u8; VERIFY_KEY_LEN],
    ctx: &[u8],
    req: &StatsPrepareRequest,
    held: &HashMap<Vec<u8>, StatsReport>,
) -> Vec<Vec<u8>> {
    let present: Vec<(usize, ReportShare<'_>, Option<Vec<u8>>)> = req
        .shares
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let rep = held.get(&s.nonce)?;
            Some((
                i,
                share_of(rep),
                (!s.share.is_empty()).then(|| s.share.clone()),
            ))
        })
        .collect();
    let shares: Vec<ReportShare<'_>> = present.iter().map(|(_, s, _)| *s).collect();
    let leader: Vec<Option<Vec<u8>>> = present.iter().map(|(_, _, l)| l.clone()).collect();
    let mut out = vec![Vec::new(); req.shares.len()];
    for ((i, _, _), m) in present
        .iter()
        .zip(vdaf.helper_messages(key, ctx, &shares, &leader))
    {
        out[*i] = m.unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_is_the_only_key() {
        let mut rec = StatsReleaseRecord::default();
        assert!(pinned_key(&rec, &[1; VERIFY_KEY_LEN]).is_ok());
        rec.verify_key = vec![1; VERIFY_KEY_LEN];
        assert!(pinned_key(&rec, &[1; VERIFY_KEY_LEN]).is_ok());
        let refused = pinned_key(&rec, &[2; VERIFY_KEY_LEN]).unwrap_err();
        assert!(refused.to_string().starts_with("verify_key:"), "{refused}");
    }
}
