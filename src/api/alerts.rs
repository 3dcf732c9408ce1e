use std::sync::Arc;

use std::pin::Pin;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::{alert_object, audited, auth};
use crate::audit::Action;
use crate::config::Role;
use crate::core::NodeCore;
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::{
    Alert, GetAlertRequest, Hit, ListAlertsRequest, ListAlertsResponse, RetractAlertRequest,
    SubmitAlertRequest, UpdateAlertRequest, WatchHitsRequest,
};
use crate::proto::v1::{
    AlertChange, AlertSharing, CountHitsRequest, CountHitsResponse, GetHitRequest,
    ImportAlertRequest, ImportAlertResponse, ListImportedRequest, ListImportedResponse,
    LookupRequest, LookupResponse, ReviewHitRequest, WatchAlertsRequest,
};
use crate::proto::v1::{AlertNetwork, GetAlertNetworkRequest};

pub struct AlertApi(pub Arc<NodeCore>);

#[tonic::async_trait]
impl AlertService for AlertApi {
    async fn submit_alert(
        &self,
        req: Request<SubmitAlertRequest>,
    ) -> Result<Response<Alert>, Status> {
        let core = &self.0;
        audited(core, req, Action::AlertSubmit, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Submit)?;
            let r = req.into_inner();
            let result = core
                .ledger
                .submit(&client, r.draft, &r.request_id, r.validate_only, call)
                .await;
            if r.validate_only {
                return Ok(result?);
            }
            let outcome = match &result {
                Ok(_) => "ok",
                Err(crate::alert::AlertError::Invalid(_)) => "invalid",
                Err(_) => "error",
            };
            core.metrics
                .submits
                .get_or_create(&crate::metrics::label("outcome", outcome))
                .inc();
            let alert = result?;
            tracing::info!(alert = %alert.id, client = %client.name, "alert submitted");
            Ok(alert)
        })
        .await
    }

    async fn update_alert(
        &self,
        req: Request<UpdateAlertRequest>,
    ) -> Result<Response<Alert>, Status> {
        let core = &self.0;
        audited(core, req, Action::AlertUpdate, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Submit)?;
            let r = req.into_inner();
            alert_object(call, &r.id);
            let alert = core
                .ledger
                .update(&r.id, r.expected_version, r.draft, call)
                .await?;
            tracing::info!(alert = %alert.id, version = alert.version, client = %client.name, "alert updated");
            Ok(alert)
        })
        .await
    }

    async fn retract_alert(
        &self,
        req: Request<RetractAlertRequest>,
    ) -> Result<Response<Alert>, Status> {
        let core = &self.0;
        audited(core, req, Action::AlertRetract, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Submit)?;
            let r = req.into_inner();
            alert_object(call, &r.id);
            let alert = core
                .ledger
                .retract(&r.id, r.expected_version, &r.reason, call)
                .await?;
            tracing::info!(alert = %alert.id, client = %client.name, "alert retracted");
            Ok(alert)
        })
        .await
    }

    async fn get_alert(&self, req: Request<GetAlertRequest>) -> Result<Response<Alert>, Status> {
        let core = &self.0;
        audited(core, req, Action::AlertGet, async |call, req| {
            auth::client(&core.clients, &req, Role::Read)?;
            alert_object(call, &req.get_ref().id);
            let alert = core.ledger.get(&req.get_ref().id)?;
            call.detail("version", alert.version);
            Ok(alert)
        })
        .await
    }

    async fn get_alert_sharing(
        &self,
        req: Request<GetAlertRequest>,
    ) -> Result<Response<AlertSharing>, Status> {
        let core = &self.0;
        audited(core, req, Action::AlertSharing, async |call, req| {
            auth::client(&core.clients, &req, Role::Read)?;
            alert_object(call, &req.get_ref().id);
            let sharing = core.ledger.sharing(&req.get_ref().id)?;
            call.detail("shares", sharing.shares.len());
            Ok(sharing)
        })
        .await
    }

    type WatchHitsStream = Pin<Box<dyn Stream<Item = Result<Hit, Status>> + Send>>;

    /// Logged when the watch opens (with where it resumes); the hits it
    /// streams are each in the log already as `hit.found` / `hit.notice`.
    async fn watch_hits(
        &self,
        req: Request<WatchHitsRequest>,
    ) -> Result<Response<Self::WatchHitsStream>, Status> {
        let core = self.0.clone();
        audited(&self.0, req, Action::HitsWatch, async |call, req| {
            auth::client(&core.clients, &req, Role::Read)?;
            let r = req.into_inner();
            call.detail("after_sequence", r.after_sequence);
            Ok(watch(core, r))
        })
        .await
    }

    async fn count_hits(
        &self,
        req: Request<CountHitsRequest>,
    ) -> Result<Response<CountHitsResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::HitsCount, async |call, req| {
            auth::client(&core.clients, &req, Role::Read)?;
            let after = req.get_ref().after_sequence;
            call.detail("after_sequence", after);
            let (count, latest_sequence) = core
                .hits
                .count(after)
                .map_err(super::status::store_unavailable)?;
            call.detail("count", count);
            Ok(CountHitsResponse {
                count,
                latest_sequence,
            })
        })
        .await
    }

    async fn get_hit(&self, req: Request<GetHitRequest>) -> Result<Response<Hit>, Status> {
        let core = &self.0;
        audited(core, req, Action::HitGet, async |call, req| {
            auth::client(&core.clients, &req, Role::Read)?;
            let hit = core.hits.get(req.get_ref().number)?;
            call.detail("hit", hit.number);
            call.object(hit.local_alert_id.clone());
            call.object(hit.other_alert_id.clone());
            Ok(hit)
        })
        .await
    }

    async fn get_alert_network(
        &self,
        req: Request<GetAlertNetworkRequest>,
    ) -> Result<Response<AlertNetwork>, Status> {
        let core = &self.0;
        audited(core, req, Action::AlertNetwork, async |call, req| {
            auth::client(&core.clients, &req, Role::Read)?;
            let r = req.get_ref();
            call.object(r.alert_id.clone());
            let net = core.network.around(&r.alert_id, &r.to_alert_id)?;
            call.detail("nodes", net.nodes.len());
            call.detail("path", net.path.len());
            Ok(net)
        })
        .await
    }

    async fn review_hit(&self, req: Request<ReviewHitRequest>) -> Result<Response<Hit>, Status> {
        let core = &self.0;
        audited(core, req, Action::HitReview, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Review)?;
            let hit = core.hits.review(&client, req.into_inner(), call).await?;
            tracing::info!(hit = hit.number, client = %client.name, "hit reviewed");
            Ok(hit)
        })
        .await
    }

    async fn lookup(
        &self,
        req: Request<LookupRequest>,
    ) -> Result<Response<LookupResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::LookupAsk, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Read)?;
            let answer = core.lookups.ask(&client, req.into_inner()).await?;
            let mut matches = 0;
            for a in &answer.answers {
                for m in &a.matches {
                    call.object(m.alert_id.clone());
                    matches += 1;
                }
            }
            call.detail("agencies", answer.answers.len());
            call.detail("matches", matches);
            Ok(answer)
        })
        .await
    }

    async fn import_alert(
        &self,
        req: Request<ImportAlertRequest>,
    ) -> Result<Response<ImportAlertResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::AlertImport, async |call, req| {
            auth::client(&core.clients, &req, Role::Submit)?;
            let r = req.into_inner();
            Ok(core
                .ledger
                .import(&r.source, &r.source_id, r.draft, r.validate_only, call)
                .await?)
        })
        .await
    }

    async fn list_imported(
        &self,
        req: Request<ListImportedRequest>,
    ) -> Result<Response<ListImportedResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::AlertImported, async |call, req| {
            auth::client(&core.clients, &req, Role::Read)?;
            call.detail("source", &req.get_ref().source);
            let page = core.ledger.imported(req.get_ref())?;
            call.detail("returned", page.records.len());
            Ok(page)
        })
        .await
    }

    type WatchAlertsStream = Pin<Box<dyn Stream<Item = Result<AlertChange, Status>> + Send>>;

    /// Logged when the watch opens (with where it resumes), like
    /// `WatchHits`: the alerts it streams were each logged when they were
    /// written or received.
    async fn watch_alerts(
        &self,
        req: Request<WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let core = self.0.clone();
        audited(&self.0, req, Action::AlertsWatch, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Read)?;
            let r = req.into_inner();
            if r.own_only && r.received_only {
                return Err(crate::violation::invalid_field(
                    "received_only",
                    "at most one of own_only and received_only".into(),
                ));
            }
            call.detail("after_sequence", r.after_sequence);
            let own = core.settings.agency.to_string();
            let wanted = move |c: &AlertChange| {
                let ours = c.alert.as_ref().is_some_and(|a| a.origin == own);
                (!r.own_only || ours) && (!r.received_only || !ours)
            };
            let admit = wanted.clone();
            let actor = format!("client:{}", client.name);
            let changed = core.ledger.watch_changes();
            Ok(super::follow_log(
                core,
                changed,
                r.after_sequence,
                r.backlog_only,
                move |core, after, limit| core.ledger.changes_sent(&actor, after, limit, &wanted),
                |c: &AlertChange| c.sequence,
                move |c: AlertChange| admit(&c).then_some(c),
            ))
        })
        .await
    }

    async fn list_alerts(
        &self,
        req: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::AlertList, async |call, req| {
            auth::client(&core.clients, &req, Role::Read)?;
            let page = core.ledger.list(req.get_ref())?;
            // Every alert shown is named: a list is a consultation of each.
            for a in &page.alerts {
                call.object(a.id.clone());
            }
            call.detail("returned", page.alerts.len());
            Ok(page)
        })
        .await
    }
}

fn watch(
    core: Arc<NodeCore>,
    r: WatchHitsRequest,
) -> Pin<Box<dyn Stream<Item = Result<Hit, Status>> + Send>> {
    let changed = core.hits.watch();
    super::follow_log(
        core,
        changed,
        r.after_sequence,
        r.backlog_only,
        |core, after, limit| core.hits.after(after, limit),
        |h: &Hit| h.sequence,
        Some,
    )
}
