//! The disclosure request API (client listener): thin handlers over
//! [`crate::disclosure::Disclosures`].

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::{audited, auth};
use crate::audit::Action;
use crate::config::Role;
use crate::core::NodeCore;
use crate::disclosure::Views;
use crate::proto::v1::disclosure_service_server::DisclosureService;
use crate::proto::v1::{
    AnswerClarificationRequest, DecideRequest, DisclosureCase, GetDisclosureRequestRequest,
    GetReleaseRequest, ListDisclosureRequestsRequest, ListDisclosureRequestsResponse,
    ListReleasesRequest, ListReleasesResponse, ReleaseRecord, RequestStatsRequest,
    RequestStatsResponse, SendDisclosureRequest, WatchDisclosureRequestsRequest,
    WithdrawReleaseRequest,
};

pub struct DisclosureApi(pub Arc<NodeCore>);

/// Who may see what: `request` the requests sent, `disclose` those received.
fn views<T>(core: &NodeCore, req: &Request<T>) -> Result<Views, Status> {
    let (_, held) = auth::client_any(&core.clients, req, &[Role::Request, Role::Disclose])?;
    Ok(Views {
        outgoing: held.contains(&Role::Request),
        incoming: held.contains(&Role::Disclose),
    })
}

#[tonic::async_trait]
impl DisclosureService for DisclosureApi {
    async fn send_request(
        &self,
        req: Request<SendDisclosureRequest>,
    ) -> Result<Response<DisclosureCase>, Status> {
        let core = &self.0;
        audited(core, req, Action::DisclosureRequest, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Request)?;
            let case = core.disclosures.send(&client, req.into_inner(), call).await?;
            tracing::info!(request = %case.request.as_ref().map(|r| r.id.as_str()).unwrap_or(""), peer = %case.peer, client = %client.name, "disclosure request sent");
            Ok(case)
        })
        .await
    }

    async fn list_disclosure_requests(
        &self,
        req: Request<ListDisclosureRequestsRequest>,
    ) -> Result<Response<ListDisclosureRequestsResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::DisclosureList, async |call, req| {
            let views = views(core, &req)?;
            let page = core.disclosures.list(views, req.get_ref())?;
            for c in &page.requests {
                if let Some(r) = &c.request {
                    call.object(r.id.clone());
                }
            }
            call.detail("returned", page.requests.len());
            Ok(page)
        })
        .await
    }

    async fn get_request(
        &self,
        req: Request<GetDisclosureRequestRequest>,
    ) -> Result<Response<DisclosureCase>, Status> {
        let core = &self.0;
        audited(core, req, Action::DisclosureGet, async |call, req| {
            let views = views(core, &req)?;
            let id = crate::disclosure::request_id("id", &req.get_ref().id)?;
            let case = core.disclosures.get(&id, views)?;
            if let Some(r) = &case.request {
                call.object(r.id.clone());
                call.object(r.holder_alert_id.clone());
            }
            Ok(case)
        })
        .await
    }

    async fn decide(
        &self,
        req: Request<DecideRequest>,
    ) -> Result<Response<DisclosureCase>, Status> {
        let core = &self.0;
        audited(core, req, Action::DisclosureDecide, async |call, req| {
            let officer = auth::client(&core.clients, &req, Role::Disclose)?;
            let case = core.disclosures.decide(&officer, req.into_inner(), call).await?;
            tracing::info!(request = %case.request.as_ref().map(|r| r.id.as_str()).unwrap_or(""), state = case.state, officer = %officer.name, "disclosure request decided");
            Ok(case)
        })
        .await
    }

    async fn answer_clarification(
        &self,
        req: Request<AnswerClarificationRequest>,
    ) -> Result<Response<DisclosureCase>, Status> {
        let core = &self.0;
        audited(core, req, Action::DisclosureAnswer, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Request)?;
            let r = req.into_inner();
            let id = crate::disclosure::request_id("id", &r.id)?;
            Ok(core
                .disclosures
                .answer(&client, &id, &r.answer, call)
                .await?)
        })
        .await
    }

    async fn list_releases(
        &self,
        req: Request<ListReleasesRequest>,
    ) -> Result<Response<ListReleasesResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::ReleaseList, async |call, req| {
            let views = views(core, &req)?;
            let page = core.disclosures.releases(views, req.get_ref())?;
            for r in page.releases.iter().filter_map(|r| r.release.as_ref()) {
                call.object(r.id.clone());
            }
            call.detail("returned", page.releases.len());
            Ok(page)
        })
        .await
    }

    /// Reading a release is recorded with what it holds (`release.view`).
    async fn get_release(
        &self,
        req: Request<GetReleaseRequest>,
    ) -> Result<Response<ReleaseRecord>, Status> {
        let core = &self.0;
        audited(core, req, Action::ReleaseView, async |call, req| {
            let views = views(core, &req)?;
            let id = crate::disclosure::release_id("id", &req.get_ref().id)?;
            let record = core.disclosures.release(&id, views)?;
            if let Some(r) = &record.release {
                call.object(r.id.clone());
                call.object(r.request_id.clone());
                call.object(r.alert_id.clone());
                call.detail("released", &r.released_fields);
            }
            call.detail("purged", record.purged);
            Ok(record)
        })
        .await
    }

    async fn withdraw_release(
        &self,
        req: Request<WithdrawReleaseRequest>,
    ) -> Result<Response<ReleaseRecord>, Status> {
        let core = &self.0;
        audited(core, req, Action::ReleaseWithdraw, async |call, req| {
            let officer = auth::client(&core.clients, &req, Role::Disclose)?;
            let r = req.into_inner();
            let id = crate::disclosure::release_id("id", &r.id)?;
            Ok(core
                .disclosures
                .withdraw(&officer, &id, &r.reason, call)
                .await?)
        })
        .await
    }

    async fn request_stats(
        &self,
        req: Request<RequestStatsRequest>,
    ) -> Result<Response<RequestStatsResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::DisclosureStats, async |call, req| {
            let views = views(core, &req)?;
            let stats = core.disclosures.stats(views, req.get_ref())?;
            call.detail("rows", stats.rows.len());
            Ok(stats)
        })
        .await
    }

    type WatchDisclosureRequestsStream =
        Pin<Box<dyn Stream<Item = Result<DisclosureCase, Status>> + Send>>;

    /// Logged when the watch opens; each change it streams is in the log
    /// already.
    async fn watch_disclosure_requests(
        &self,
        req: Request<WatchDisclosureRequestsRequest>,
    ) -> Result<Response<Self::WatchDisclosureRequestsStream>, Status> {
        let core = self.0.clone();
        audited(&self.0, req, Action::DisclosureWatch, async |call, req| {
            let views = views(&core, &req)?;
            let r = req.into_inner();
            call.detail("after_sequence", r.after_sequence);
            Ok(watch(core, views, r))
        })
        .await
    }
}

fn watch(
    core: Arc<NodeCore>,
    views: Views,
    r: WatchDisclosureRequestsRequest,
) -> Pin<Box<dyn Stream<Item = Result<DisclosureCase, Status>> + Send>> {
    let changed = core.disclosures.watch();
    super::follow_log(
        core,
        changed,
        r.after_sequence,
        r.backlog_only,
        |core, after, limit| core.disclosures.log_after(after, limit),
        |c: &DisclosureCase| c.sequence,
        move |c| {
            views
                .allows(&c)
                .then(|| crate::disclosure::as_of(c, std::time::SystemTime::now()))
        },
    )
}
