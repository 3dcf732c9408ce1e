//! The admin API: each handler authorizes the caller (admin role), names
//! what it touches in the call's audit entry, and calls one operation of
//! [`NodeCore`] (see `core::admin`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::call::Call;
use super::{alert_object, audited, auth};
use crate::audit::Action;
use crate::config::Role;
use crate::core::NodeCore;
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::{
    BackfillResponse, BackupStoreRequest, BackupStoreResponse, DiffPolicyRequest,
    DiffPolicyResponse, ExplainPolicyRequest, ExplainPolicyResponse, GetPolicyRequest,
    GetStatusRequest, ListPeersRequest, ListPeersResponse, NodeStatus, PolicyVersion,
    QueryAuditRequest, QueryAuditResponse, ReshareRequest, RetractFromPeerRequest,
    SetPolicyRequest,
};
use crate::proto::v1::{DirectoryState, GetDirectoryRequest, PublishDirectoryRequest};
use crate::proto::v1::{
    GetActivityRequest, GetActivityResponse, ListPolicyVersionsRequest, ListPolicyVersionsResponse,
    TestPolicyRequest, TestPolicyResponse, VerifyAuditRequest, VerifyAuditResponse,
};
use crate::proto::v1::{ListStatsRequest, ListStatsResponse, RunStatsRequest, RunStatsResponse};

pub struct AdminApi(pub Arc<NodeCore>);

/// What a Reshare or RetractFromPeer did, for its audit entry (each envelope
/// it queued is logged again as `alert.share` when the peer acknowledges it).
fn backfill_detail(call: &Call, peer: &str, dry_run: bool, out: &BackfillResponse) {
    call.detail("peer", peer);
    call.detail("dry_run", dry_run);
    call.detail("matched", out.matched);
    call.detail("queued", out.queued);
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_status(
        &self,
        req: Request<GetStatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        let core = &self.0;
        audited(core, req, Action::StatusGet, async |_, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            Ok(core.status()?)
        })
        .await
    }

    async fn list_peers(
        &self,
        req: Request<ListPeersRequest>,
    ) -> Result<Response<ListPeersResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::PeersList, async |_, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            Ok(ListPeersResponse {
                peers: core.peer_statuses()?,
            })
        })
        .await
    }

    async fn get_policy(
        &self,
        req: Request<GetPolicyRequest>,
    ) -> Result<Response<PolicyVersion>, Status> {
        let core = &self.0;
        audited(core, req, Action::PolicyGet, async |_, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            Ok(core.sharing.current().record.clone())
        })
        .await
    }

    async fn set_policy(
        &self,
        req: Request<SetPolicyRequest>,
    ) -> Result<Response<PolicyVersion>, Status> {
        let core = &self.0;
        audited(core, req, Action::PolicySet, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Admin)?;
            let installed = core
                .set_policy(req.into_inner(), &format!("client:{}", client.name))
                .await?;
            call.detail("version", installed.version);
            call.detail("sha256", &installed.sha256);
            Ok(installed)
        })
        .await
    }

    async fn explain_policy(
        &self,
        req: Request<ExplainPolicyRequest>,
    ) -> Result<Response<ExplainPolicyResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::PolicyExplain, async |call, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            let r = req.into_inner();
            alert_object(call, &r.alert_id);
            call.detail("peers", r.peers.join(","));
            call.detail("candidate", !r.policy_text.is_empty());
            Ok(core.explain_policy(&r)?)
        })
        .await
    }

    async fn diff_policy(
        &self,
        req: Request<DiffPolicyRequest>,
    ) -> Result<Response<DiffPolicyResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::PolicyDiff, async |_, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            Ok(core.diff_policy(req.get_ref()).await?)
        })
        .await
    }

    async fn reshare(
        &self,
        req: Request<ReshareRequest>,
    ) -> Result<Response<BackfillResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::Reshare, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Admin)?;
            let r = req.into_inner();
            let out = core.ledger.reshare(&r.peer, r.filter, r.dry_run).await?;
            tracing::info!(client = %client.name, peer = %r.peer, queued = out.queued, "Reshare");
            backfill_detail(call, &r.peer, r.dry_run, &out);
            Ok(out)
        })
        .await
    }

    async fn retract_from_peer(
        &self,
        req: Request<RetractFromPeerRequest>,
    ) -> Result<Response<BackfillResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::RetractFromPeer, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Admin)?;
            let r = req.into_inner();
            let out = core
                .ledger
                .retract_from_peer(&r.peer, r.filter, &r.reason, r.dry_run)
                .await?;
            tracing::info!(client = %client.name, peer = %r.peer, queued = out.queued, "RetractFromPeer");
            backfill_detail(call, &r.peer, r.dry_run, &out);
            Ok(out)
        })
        .await
    }

    async fn query_audit(
        &self,
        req: Request<QueryAuditRequest>,
    ) -> Result<Response<QueryAuditResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::AuditQuery, async |call, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            let r = req.into_inner();
            let page = core.query_audit(&r).await?;
            // Named once the filter validated: invalid input is not logged.
            for (k, v) in [
                ("actor", &r.actor),
                ("action", &r.action),
                ("alert_id", &r.alert_id),
            ] {
                if !v.is_empty() {
                    call.detail(k, v);
                }
            }
            call.detail("returned", page.entries.len());
            Ok(page)
        })
        .await
    }

    async fn backup_store(
        &self,
        req: Request<BackupStoreRequest>,
    ) -> Result<Response<BackupStoreResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::StoreBackup, async |call, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            let done = core.backup(&req.get_ref().label).await?;
            call.detail("path", &done.path);
            call.detail("alerts", done.alerts);
            call.detail("copy_ms", done.copy_ms);
            Ok(done)
        })
        .await
    }

    async fn rotate_kek(
        &self,
        req: Request<crate::proto::v1::RotateKekRequest>,
    ) -> Result<Response<crate::proto::v1::RotateKekResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::StoreRotateKek, async |call, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            let done = core.rotate_kek(&req.get_ref().kek_file).await?;
            call.detail("old_kek", &done.old_kek_id);
            call.detail("new_kek", &done.new_kek_id);
            call.detail("epochs", done.epochs);
            Ok(done)
        })
        .await
    }

    async fn list_policy_versions(
        &self,
        req: Request<ListPolicyVersionsRequest>,
    ) -> Result<Response<ListPolicyVersionsResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::PolicyHistory, async |call, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            let versions = core.policy_versions()?;
            call.detail("versions", versions.len());
            Ok(ListPolicyVersionsResponse { versions })
        })
        .await
    }

    async fn test_policy(
        &self,
        req: Request<TestPolicyRequest>,
    ) -> Result<Response<TestPolicyResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::PolicyTest, async |call, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            let r = req.into_inner();
            call.detail("candidate", !r.policy_text.is_empty());
            let out = core.test_policy(&r.policy_text)?;
            call.detail("cases", out.results.len());
            call.detail("failed", out.results.iter().filter(|c| !c.passed).count());
            Ok(out)
        })
        .await
    }

    async fn publish_directory(
        &self,
        req: Request<PublishDirectoryRequest>,
    ) -> Result<Response<DirectoryState>, Status> {
        let core = &self.0;
        audited(core, req, Action::DirectoryPublish, async |call, req| {
            let client = auth::client(&core.clients, &req, Role::Admin)?;
            let Some(envelope) = req.into_inner().directory else {
                return Err(crate::violation::invalid_argument(
                    "no directory",
                    &[crate::violation::FieldViolation::new(
                        "directory",
                        "required",
                    )],
                ));
            };
            let source = crate::federation::Source::Publish(client.name.to_string());
            let version = core.federation.offer(vec![envelope], source).await?;
            call.detail("version", version);
            Ok(core.federation.state().await)
        })
        .await
    }

    async fn get_directory(
        &self,
        req: Request<GetDirectoryRequest>,
    ) -> Result<Response<DirectoryState>, Status> {
        let core = &self.0;
        audited(core, req, Action::DirectoryGet, async |_, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            Ok(core.federation.state().await)
        })
        .await
    }

    async fn run_stats(
        &self,
        req: Request<RunStatsRequest>,
    ) -> Result<Response<RunStatsResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::StatsRun, async |call, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            let r = req.into_inner().release.unwrap_or_default();
            call.object(crate::analytics::label(&r));
            Ok(match core.analytics.request_run(r).await? {
                crate::analytics::Run::Done => RunStatsResponse {
                    done: true,
                    waiting: String::new(),
                },
                crate::analytics::Run::Waiting(why) => {
                    call.detail("waiting", &why);
                    RunStatsResponse {
                        done: false,
                        waiting: why,
                    }
                }
            })
        })
        .await
    }

    async fn list_stats(
        &self,
        req: Request<ListStatsRequest>,
    ) -> Result<Response<ListStatsResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::StatsList, async |call, req| {
            auth::client(&core.clients, &req, Role::Read)?;
            let views = core.analytics.views()?;
            call.detail("releases", views.releases.len());
            Ok(views)
        })
        .await
    }

    async fn verify_audit(
        &self,
        req: Request<VerifyAuditRequest>,
    ) -> Result<Response<VerifyAuditResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::AuditVerify, async |call, req| {
            auth::client(&core.clients, &req, Role::Admin)?;
            let out = core.verify_audit().await?;
            call.detail("intact", out.intact);
            if out.intact {
                call.detail("last", out.last);
            } else {
                call.detail("broken_at", out.broken_at);
            }
            Ok(out)
        })
        .await
    }

    async fn get_activity(
        &self,
        req: Request<GetActivityRequest>,
    ) -> Result<Response<GetActivityResponse>, Status> {
        let core = &self.0;
        audited(core, req, Action::ActivityGet, async |_, req| {
            auth::client_any(&core.clients, &req, &[Role::Read, Role::Admin])?;
            Ok(core.activity(req.get_ref().days)?)
        })
        .await
    }
}
