//! The public intake's triage (client listener, role `intake`): thin
//! handlers over [`crate::reports::Reports`]' caseworker side.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{audited, auth};
use crate::audit::Action;
use crate::config::Role;
use crate::core::NodeCore;
use crate::proto::v1::report_service_server::ReportService;
use crate::proto::v1::{
    CloseReportsRequest, CloseReportsResponse, GetReportRequest, IntakeReportRecord,
    LinkReportRequest, ListReportsRequest, ListReportsResponse, ReplyToReportRequest, ReportCounts,
    ReportSummary,
};
use crate::reports::triage::excerpt;

/// Characters of what happened an inbox line shows.
const SUMMARY_CHARS: usize = 200;

pub struct ReportApi(pub Arc<NodeCore>);

/// A report as an answer carries it: never its receipt's hash.
fn answer(mut rec: IntakeReportRecord) -> IntakeReportRecord {
    rec.receipt_hash.clear();
    rec
}

fn summary(rec: &IntakeReportRecord) -> ReportSummary {
    ReportSummary {
        id: rec.id.clone(),
        received_hour: rec.received_hour,
        language: rec.language.clone(),
        country: rec.country.clone(),
        town: rec.town.clone(),
        what: excerpt(&rec.what, SUMMARY_CHARS),
        in_danger: rec.in_danger,
        state: rec.state,
        alert_id: rec.alert_id.clone(),
        messages: rec.messages.len() as u32,
        reporter_spoke_last: rec
            .messages
            .last()
            .is_some_and(|m| m.author == crate::proto::v1::IntakeAuthor::Reporter as i32),
        close_reason: rec.close_reason.clone(),
    }
}

#[tonic::async_trait]
impl ReportService for ReportApi {
    async fn list_reports(
        &self,
        req: Request<ListReportsRequest>,
    ) -> Result<Response<ListReportsResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::IntakeList, async |call, req| {
            auth::client(&core.clients, &req, Role::Intake)?;
            let r = req.into_inner();
            let page = core
                .reports
                .inbox(r.state(), &r.page_token, r.page_size as usize)?;
            call.detail("returned", page.reports.len());
            Ok(ListReportsResponse {
                reports: page.reports.iter().map(summary).collect(),
                next_page_token: page.next.map(|c| c.encode()).unwrap_or_default(),
                counts: Some(ReportCounts {
                    new: page.counts.new,
                    waiting: page.counts.waiting,
                    closed: page.counts.closed,
                }),
            })
        })
        .await
    }

    async fn get_report(
        &self,
        req: Request<GetReportRequest>,
    ) -> Result<Response<IntakeReportRecord>, Status> {
        let core = &self.0;
        audited(core, req, Action::IntakeGet, async |call, req| {
            auth::client(&core.clients, &req, Role::Intake)?;
            let rec = core.reports.get(&req.get_ref().id)?;
            call.object(rec.id.clone());
            Ok(answer(rec))
        })
        .await
    }

    async fn reply_to_report(
        &self,
        req: Request<ReplyToReportRequest>,
    ) -> Result<Response<IntakeReportRecord>, Status> {
        let core = &self.0;
        audited(core, req, Action::IntakeReply, async |call, req| {
            let caseworker = auth::client(&core.clients, &req, Role::Intake)?;
            let r = req.into_inner();
            let rec = core
                .reports
                .reply(&r.id, caseworker.name.as_str(), &r.text, call)
                .await?;
            Ok(answer(rec))
        })
        .await
    }

    async fn close_reports(
        &self,
        req: Request<CloseReportsRequest>,
    ) -> Result<Response<CloseReportsResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::IntakeClose, async |call, req| {
            auth::client(&core.clients, &req, Role::Intake)?;
            let r = req.into_inner();
            let closed = core.reports.close(&r.ids, &r.reason, r.spam, call).await?;
            Ok(CloseReportsResponse { closed })
        })
        .await
    }

    async fn link_report(
        &self,
        req: Request<LinkReportRequest>,
    ) -> Result<Response<IntakeReportRecord>, Status> {
        let core = &self.0;
        audited(core, req, Action::IntakeLink, async |call, req| {
            auth::client(&core.clients, &req, Role::Intake)?;
            let r = req.into_inner();
            let rec = core
                .reports
                .link(&r.id, &r.alert_id, &core.settings.agency, call)
                .await?;
            Ok(answer(rec))
        })
        .await
    }
}
