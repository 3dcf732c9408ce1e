//! `casebridge alert …` and `casebridge hits watch`: a case system's daily
//! calls through its node.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};

use super::exit::{Exit, Failure, failure};
use super::session::connect;
use super::{output, pseudo};
use crate::client::NodeClient;
use crate::proto::v1::{
    AlertDraft, Category, GetAlertRequest, ListAlertsRequest, RetractAlertRequest,
    SubmitAlertRequest, UpdateAlertRequest,
};
use tonic::Code;

/// The codes an alert carries, in words, for `alert submit` and `update`.
const CODES_HELP: &str = "\
Codes in the draft's content:
  tlp (who may see it, FIRST TLP 2.0): TLP_CLEAR no limit; TLP_GREEN the
    federation's agencies, not the public; TLP_AMBER the recipient
    organisation and those it serves, need-to-know; TLP_AMBER_STRICT the
    recipient organisation only; TLP_RED never leaves this node.
  handlingCode (what recipients may do): HANDLING_CODE_H0 share within the
    federation; H1 law-enforcement recipients only (the node withholds it
    from every other peer, whatever the sharing policy says); H2 no onward
    disclosure without the originator's consent; H3 special conditions,
    contact the originator before any action.
  sourceReliability (Admiralty A-F): A completely reliable ... E unreliable,
    F cannot be judged.
  informationAccuracy (Admiralty 1-6): 1 confirmed by other sources ...
    5 improbable, 6 cannot be judged.";

#[derive(Subcommand)]
pub enum AlertCommand {
    /// Import (and sync) a register: CSV, XLSX, ODS or JSON Lines, each row
    /// one case by its own stable id. Run again after the register
    /// changed: changed rows become new versions, unchanged ones are
    /// skipped, new ones created (and with --retract-missing, removed ones
    /// retracted). See docs/import-export.md.
    Import(super::transfer::ImportArgs),
    /// Write alerts to a CSV, XLSX or JSON Lines file (your own with their
    /// subjects, received ones without; never tokens).
    Export(super::transfer::ExportArgs),
    /// Print every alert as it is created, changes, arrives or is
    /// retracted, after a position in the alert log, then keep streaming
    /// (reconnecting after an interruption) until Ctrl-C.
    Watch {
        /// Resume after this position (`sequence` in --json output: the
        /// last change you processed).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Print the changes so far and exit.
        #[arg(long)]
        backlog_only: bool,
        /// Only your agency's own alerts.
        #[arg(long, conflicts_with = "received")]
        own: bool,
        /// Only alerts received from other agencies.
        #[arg(long)]
        received: bool,
    },
    /// Submit a new alert from a JSON file (canonical protobuf JSON of AlertDraft).
    #[command(after_long_help = CODES_HELP)]
    Submit {
        /// The alert: canonical protobuf JSON of AlertDraft (docs/examples/alert.json).
        #[arg(long)]
        file: PathBuf,
        /// Idempotency key: resubmitting with the same key returns the first alert.
        #[arg(long, default_value = "")]
        request_id: String,
        /// Print only the new alert's id (for scripts: `ID=$(casebridge
        /// alert submit --file F --id-only)`); wins over --json.
        #[arg(long)]
        id_only: bool,
    },
    /// Show one alert; for your own alerts, also who got which version,
    /// under which rule, and when each peer acknowledged it.
    Get {
        /// The alert's id, such as police:01a23514-cdbd-70dc-8bfe-d044755c71a5.
        id: String,
    },
    /// Who got what of one of your own alerts (with --json: AlertSharing).
    Sharing {
        /// The id of one of your own alerts.
        id: String,
    },
    /// List alerts (all pages).
    List(ListArgs),
    /// Replace an alert's content and subjects (new version).
    #[command(after_long_help = CODES_HELP)]
    Update {
        /// The id of one of your own alerts.
        id: String,
        /// The new content and subjects: canonical protobuf JSON of AlertDraft.
        #[arg(long)]
        file: PathBuf,
        /// Fail unless the alert is at this version (0 = any).
        #[arg(long, default_value_t = 0)]
        expected_version: u64,
    },
    /// Ask the federation whether anyone holds an identifier (tokenized
    /// here; raw values never leave your node).
    Lookup {
        #[command(flatten)]
        id: pseudo::IdentifierArgs,
        /// Ask only these agencies (repeatable); default: every peer.
        #[arg(long = "peer")]
        peers: Vec<String>,
    },
    /// Retract an alert: a tombstone version that purges it at every peer.
    Retract {
        /// The id of one of your own alerts.
        id: String,
        /// Why, shown to every peer that had the alert.
        #[arg(long, default_value = "")]
        reason: String,
        /// Fail unless the alert is at this version (0 = any).
        #[arg(long, default_value_t = 0)]
        expected_version: u64,
    },
}

#[derive(Args)]
pub struct ListArgs {
    /// Only alerts from this agency.
    #[arg(long)]
    origin: Option<String>,
    /// Only this category, named as in policies: labour_exploitation,
    /// sexual_exploitation, criminal_exploitation, child_trafficking,
    /// organ_removal or other (upper case works too).
    #[arg(long)]
    category: Option<String>,
    /// Also list retracted alerts (tombstones).
    #[arg(long)]
    include_retracted: bool,
    /// Stop after this many alerts.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Subcommand)]
pub enum HitsCommand {
    /// Print hits after a sequence number, then keep streaming new ones
    /// (reconnecting after an interruption) until Ctrl-C.
    Watch {
        /// Resume after this position in the hit log (`sequence` in --json
        /// output: the last entry you processed).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Print the hit log so far and exit.
        #[arg(long)]
        backlog_only: bool,
    },
    /// Count the hit log entries (hits found, reviews) after a position
    /// without printing them.
    Count {
        /// Count entries after this position (0: all).
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Show one hit as it stands now, with both agencies' reviews.
    Get {
        /// The hit's number (as `hits watch` prints it).
        number: u64,
    },
    /// Record your verdict on a hit (it covers every hit between the same
    /// two alerts, and goes to the other agency when it knows of the hit).
    /// Needs the `review` role.
    #[command(group(clap::ArgGroup::new("verdict").required(true).args(["confirmed", "false_positive", "needs_information"])))]
    Review {
        /// The hit's number (as `hits watch` prints it).
        number: u64,
        /// The two alerts concern the same person or identifier.
        #[arg(long)]
        confirmed: bool,
        /// They do not: the pair is not raised again.
        #[arg(long)]
        false_positive: bool,
        /// You cannot tell yet.
        #[arg(long)]
        needs_information: bool,
        /// A short note for the other analyst (at most 500 bytes, no
        /// identifiers).
        #[arg(long, default_value = "")]
        note: String,
    },
}

pub async fn run(
    command: AlertCommand,
    client_config: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    match command {
        AlertCommand::Import(args) => {
            if let Some(name) = args.print_mapping() {
                return super::transfer::print_mapping(name);
            }
            let mut clients = Vec::new();
            for _ in 0..super::transfer::CONNECTIONS {
                clients.push(connect(client_config).await?);
            }
            super::transfer::import(clients, args, json).await
        }
        AlertCommand::Export(args) => {
            let client = connect(client_config).await?;
            let agency = client_config
                .map(crate::config::ClientConfig::load)
                .transpose()
                .map_err(|e| failure(Exit::Usage, e))?
                .map(|c| c.node_agency.to_string())
                .unwrap_or_default();
            super::transfer::export(client, args, &agency, json).await
        }
        AlertCommand::Watch {
            after,
            backlog_only,
            own,
            received,
        } => watch_alerts(client_config, after, backlog_only, own, received, json).await,
        command => {
            let client = connect(client_config).await?;
            alert(client, command, json).await
        }
    }
}

/// Streams alert changes like `hits watch` streams hits.
async fn watch_alerts(
    config: Option<&Path>,
    after: u64,
    backlog_only: bool,
    own_only: bool,
    received_only: bool,
    json: bool,
) -> Result<(), Failure> {
    use crate::proto::v1::{AlertChange, WatchAlertsRequest};
    super::session::follow(
        config,
        after,
        backlog_only,
        "no alert changes",
        |mut client, after| async move {
            client
                .alerts
                .watch_alerts(WatchAlertsRequest {
                    after_sequence: after,
                    backlog_only,
                    own_only,
                    received_only,
                })
                .await
                .map(tonic::Response::into_inner)
        },
        |c: &AlertChange| c.sequence,
        |c| output::alert_change(c, json),
    )
    .await
}

pub async fn hits(
    command: HitsCommand,
    client_config: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    match command {
        HitsCommand::Watch {
            after,
            backlog_only,
        } => watch_hits(client_config, after, backlog_only, json).await,
        HitsCommand::Count { after } => {
            let mut client = connect(client_config).await?;
            let count = client
                .alerts
                .count_hits(crate::proto::v1::CountHitsRequest {
                    after_sequence: after,
                })
                .await?
                .into_inner();
            output::hit_count(after, &count, json);
            Ok(())
        }
        HitsCommand::Get { number } => {
            let mut client = connect(client_config).await?;
            let hit = client
                .alerts
                .get_hit(crate::proto::v1::GetHitRequest { number })
                .await?
                .into_inner();
            output::hit_state(&hit, json);
            Ok(())
        }
        HitsCommand::Review {
            number,
            confirmed,
            false_positive,
            needs_information: _,
            note,
        } => {
            use crate::proto::v1::HitVerdict;
            let verdict = if confirmed {
                HitVerdict::Confirmed
            } else if false_positive {
                HitVerdict::FalsePositive
            } else {
                HitVerdict::NeedsInformation
            };
            let mut client = connect(client_config).await?;
            let hit = client
                .alerts
                .review_hit(crate::proto::v1::ReviewHitRequest {
                    number,
                    verdict: verdict as i32,
                    note,
                })
                .await?
                .into_inner();
            output::hit_state(&hit, json);
            Ok(())
        }
    }
}

/// Reads an AlertDraft in canonical protobuf JSON; errors name file, line and column.
pub(super) fn read_draft(path: &Path) -> Result<AlertDraft, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))
        .map_err(|e| failure(Exit::DataErr, e))?;
    serde_json::from_str(&text).map_err(|e| {
        failure(
            Exit::DataErr,
            anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()),
        )
    })
}

async fn alert(mut client: NodeClient, command: AlertCommand, json: bool) -> Result<(), Failure> {
    let api = &mut client.alerts;
    match command {
        AlertCommand::Submit {
            file,
            request_id,
            id_only,
        } => {
            let draft = read_draft(&file)?;
            let alert = api
                .submit_alert(SubmitAlertRequest {
                    draft: Some(draft),
                    request_id,
                    validate_only: false,
                })
                .await?
                .into_inner();
            if id_only {
                println!("{}", alert.id);
            } else {
                output::alert(&alert, json);
            }
        }
        AlertCommand::Lookup { id, peers } => {
            id.check_flags()?;
            let answer = api
                .lookup(crate::proto::v1::LookupRequest {
                    identifiers: vec![crate::proto::v1::Identifier {
                        kind: Some(id.kind()),
                    }],
                    peers,
                })
                .await?
                .into_inner();
            output::lookup(&answer, json);
        }
        AlertCommand::Get { id } => {
            let alert = api
                .get_alert(GetAlertRequest { id: id.clone() })
                .await?
                .into_inner();
            output::alert(&alert, json);
            if !json {
                // Only the origin knows who got its alert; a received one
                // is refused (FAILED_PRECONDITION), and has nothing to show.
                match api.get_alert_sharing(GetAlertRequest { id }).await {
                    Ok(s) => output::sharing(&s.into_inner(), false),
                    Err(s) if s.code() == Code::FailedPrecondition => {}
                    Err(s) => return Err(s.into()),
                }
            }
        }
        AlertCommand::Sharing { id } => {
            let sharing = api
                .get_alert_sharing(GetAlertRequest { id })
                .await?
                .into_inner();
            output::sharing(&sharing, json);
        }
        AlertCommand::Update {
            id,
            file,
            expected_version,
        } => {
            let draft = read_draft(&file)?;
            let alert = api
                .update_alert(UpdateAlertRequest {
                    id,
                    expected_version,
                    draft: Some(draft),
                })
                .await?
                .into_inner();
            output::alert(&alert, json);
        }
        AlertCommand::Retract {
            id,
            reason,
            expected_version,
        } => {
            let alert = api
                .retract_alert(RetractAlertRequest {
                    id,
                    expected_version,
                    reason,
                })
                .await?
                .into_inner();
            output::alert(&alert, json);
        }
        AlertCommand::Import(_) | AlertCommand::Export(_) | AlertCommand::Watch { .. } => {
            unreachable!("dispatched by run")
        }
        AlertCommand::List(args) => output::alerts(&list(api, &args).await?, json),
    }
    Ok(())
}

/// `alert list`: every page the filters select, up to `--limit`.
async fn list(
    api: &mut crate::proto::v1::alert_service_client::AlertServiceClient<crate::client::Svc>,
    args: &ListArgs,
) -> Result<Vec<crate::proto::v1::Alert>, Failure> {
    let category = match args.category.as_deref() {
        None => Category::Unspecified,
        Some(c) => {
            let name = c.to_ascii_uppercase();
            let name = if name.starts_with("CATEGORY_") {
                name
            } else {
                format!("CATEGORY_{name}")
            };
            Category::from_str_name(&name)
                .ok_or_else(|| failure(Exit::DataErr, anyhow!("unknown category `{c}`")))?
        }
    };
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = api
            .list_alerts(ListAlertsRequest {
                origin: args.origin.clone().unwrap_or_default(),
                category: category as i32,
                include_retracted: args.include_retracted,
                page_size: 500,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        all.extend(page.alerts);
        if page.next_page_token.is_empty() || args.limit.is_some_and(|l| all.len() >= l) {
            break;
        }
        page_token = page.next_page_token;
    }
    if let Some(l) = args.limit {
        all.truncate(l);
    }
    Ok(all)
}

/// Streams hits, resuming from the last printed sequence after a dropped
/// connection (bounded backoff), until Ctrl-C or, with `backlog_only`, the end
/// of the backlog.
async fn watch_hits(
    config: Option<&Path>,
    after: u64,
    backlog_only: bool,
    json: bool,
) -> Result<(), Failure> {
    use crate::proto::v1::WatchHitsRequest;
    super::session::follow(
        config,
        after,
        backlog_only,
        "no hit log entries",
        |mut client, after| async move {
            client
                .alerts
                .watch_hits(WatchHitsRequest {
                    after_sequence: after,
                    backlog_only,
                })
                .await
                .map(tonic::Response::into_inner)
        },
        |h: &crate::proto::v1::Hit| h.sequence,
        |h| output::hit(h, json),
    )
    .await
}
