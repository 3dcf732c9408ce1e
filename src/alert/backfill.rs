//! After a policy change: `Reshare` sends a peer the own alerts the policy in
//! force allows and it has not been sent; `RetractFromPeer` withdraws alerts
//! from one peer. A policy change itself only applies to future versions, so
//! that an administrator decides when history moves.
//!
//! Both walk the own alerts and change each one in its own store transaction
//! (record and outbox entry together), so a crash halfway leaves every alert
//! either done or untouched, and running the same request again finishes it.

use std::time::SystemTime;

use super::{AlertError, Ledger, invalid};
use crate::exchange::{share_item, tombstone_item};
use crate::ids::{AgencyId, AlertId};
use crate::proto::v1::{AlertFilter, BackfillResponse, Category, StoredAlert};
use crate::store::OutboxItem;

/// Most alert ids a filter may list.
const MAX_FILTER_IDS: usize = 1000;
/// Most alert ids returned in a response.
const MAX_LISTED: usize = 1000;

/// A checked `AlertFilter`.
struct Filter {
    ids: Vec<AlertId>,
    category: i32,
    after: Option<i64>,
    before: Option<i64>,
}

impl Filter {
    fn keeps(&self, record: &StoredAlert) -> bool {
        let Some(a) = &record.alert else { return false };
        let created = a.created_at.map_or(0, |t| t.seconds);
        (self.ids.is_empty() || self.ids.iter().any(|id| id.to_string() == a.id))
            && (self.category == Category::Unspecified as i32
                || a.content
                    .as_ref()
                    .is_some_and(|c| c.category == self.category))
            && self.after.is_none_or(|t| created >= t)
            && self.before.is_none_or(|t| created < t)
    }
}

impl Ledger {
    fn backfill_peer(&self, peer: &str) -> Result<AgencyId, AlertError> {
        let id = AgencyId::new(peer.to_owned()).map_err(|e| invalid("peer", e.to_string()))?;
        if let Some(why) = self.peers.now().why_not(&id) {
            return Err(invalid("peer", why));
        }
        Ok(id)
    }

    fn filter(&self, filter: Option<AlertFilter>) -> Result<Filter, AlertError> {
        let f = filter.unwrap_or_default();
        if f.alert_ids.len() > MAX_FILTER_IDS {
            return Err(invalid(
                "filter.alert_ids",
                format!("at most {MAX_FILTER_IDS} ids; run several requests"),
            ));
        }
        let mut ids = Vec::with_capacity(f.alert_ids.len());
        for (i, raw) in f.alert_ids.iter().enumerate() {
            let id: AlertId = raw.parse().map_err(|e: crate::ids::IdError| {
                invalid(&format!("filter.alert_ids[{i}]"), e.to_string())
            })?;
            if id.origin() != &self.agency {
                return Err(invalid(
                    &format!("filter.alert_ids[{i}]"),
                    format!(
                        "{id} was recorded by {}; only own alerts are shared",
                        id.origin()
                    ),
                ));
            }
            ids.push(id);
        }
        if Category::try_from(f.category).is_err() {
            return Err(invalid(
                "filter.category",
                format!("unknown enum value {}", f.category),
            ));
        }
        let (after, before) = (
            f.created_after.map(|t| t.seconds),
            f.created_before.map(|t| t.seconds),
        );
        if let (Some(a), Some(b)) = (after, before)
            && a >= b
        {
            return Err(invalid(
                "filter.created_before",
                "must be later than filter.created_after",
            ));
        }
        Ok(Filter {
            ids,
            category: f.category,
            after,
            before,
        })
    }

    /// Own alerts that pass `filter`, by id (the walk itself holds no lock).
    fn candidates(&self, filter: &Filter) -> Result<Vec<AlertId>, AlertError> {
        let mut out = Vec::new();
        self.store.for_each_own(&self.agency, |record| {
            if filter.keeps(record)
                && let Some(id) = record.alert.as_ref().and_then(|a| a.id.parse().ok())
            {
                out.push(id);
            }
        })?;
        Ok(out)
    }

    /// Applies `build` to each candidate in its own transaction (or, with
    /// `dry_run`, only evaluates it) and reports what it queued.
    async fn each(
        &self,
        candidates: Vec<AlertId>,
        dry_run: bool,
        build: impl Fn(StoredAlert) -> Option<(StoredAlert, Vec<OutboxItem>)>,
    ) -> Result<BackfillResponse, AlertError> {
        let mut out = BackfillResponse {
            matched: candidates.len() as u64,
            ..Default::default()
        };
        for id in candidates {
            let done = if dry_run {
                self.store.get(&id)?.and_then(&build).is_some()
            } else {
                self.store.amend_local(&id, &build).await?
            };
            if done {
                out.queued += 1;
                if out.alert_ids.len() < MAX_LISTED {
                    out.alert_ids.push(id.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Queues for `peer` every filtered own alert that the policy in force
    /// shares with it and that it was not sent (including alerts withdrawn
    /// from it earlier: resharing is the explicit way back).
    pub async fn reshare(
        &self,
        peer: &str,
        filter: Option<AlertFilter>,
        dry_run: bool,
    ) -> Result<BackfillResponse, AlertError> {
        let peer = self.backfill_peer(peer)?;
        let filter = self.filter(filter)?;
        let candidates = self.candidates(&filter)?;
        let build = |mut record: StoredAlert| {
            let alert = record.alert.as_ref()?;
            let has = |list: &[String]| list.iter().any(|p| p == peer.as_str());
            if alert.retracted || has(&record.shared_with) {
                return None;
            }
            let decision = self.sharing.decide(&record, &peer, SystemTime::now());
            let grant = decision.grant.as_ref()?;
            if has(&record.withdrawn_from) {
                // The peer holds our tombstone at this version; a newer
                // version is the only one it will apply.
                bump(&mut record);
            }
            let item = share_item(peer.clone(), &record, decision.rule.as_deref(), grant);
            record.withdrawn_from.retain(|p| p != peer.as_str());
            record.shared_with.push(peer.to_string());
            Some((record, vec![item]))
        };
        let out = self.each(candidates, dry_run, build).await?;
        tracing::info!(%peer, matched = out.matched, queued = out.queued, dry_run, "reshare");
        Ok(out)
    }

    /// Sends `peer` a retraction of every filtered own alert it was sent. The
    /// alert stays live here and at other peers; later versions skip `peer`
    /// until a `Reshare` sends it again.
    pub async fn retract_from_peer(
        &self,
        peer: &str,
        filter: Option<AlertFilter>,
        reason: &str,
        dry_run: bool,
    ) -> Result<BackfillResponse, AlertError> {
        let peer = self.backfill_peer(peer)?;
        if reason.len() > self.limits.max_field_bytes.get() * 4 {
            return Err(invalid("reason", "is too long"));
        }
        let filter = self.filter(filter)?;
        let candidates = self.candidates(&filter)?;
        let build = |mut record: StoredAlert| {
            let alert = record.alert.as_ref()?;
            if alert.retracted || !record.shared_with.iter().any(|p| p == peer.as_str()) {
                return None;
            }
            let mut tombstone = record.clone();
            if let Some(a) = tombstone.alert.as_mut() {
                a.retracted = true;
                a.retraction_reason = if reason.is_empty() {
                    "withdrawn by the originating agency".into()
                } else {
                    reason.to_owned()
                };
            }
            record.shared_with.retain(|p| p != peer.as_str());
            record.withdrawn_from.push(peer.to_string());
            Some((record, vec![tombstone_item(peer.clone(), &tombstone)]))
        };
        let out = self.each(candidates, dry_run, build).await?;
        tracing::info!(%peer, matched = out.matched, queued = out.queued, dry_run, "retract from peer");
        Ok(out)
    }
}

/// A new version with unchanged content (used when a peer must be sent a
/// version newer than the tombstone it holds).
fn bump(record: &mut StoredAlert) {
    if let Some(a) = record.alert.as_mut() {
        a.version += 1;
        a.updated_at = Some(crate::time::now());
    }
}
