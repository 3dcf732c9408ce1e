//! `casebridge requests`: disclosure requests after a hit, sent (role
//! `request`) and received (role `disclose`).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Subcommand, ValueEnum};

use super::exit::{Exit, Failure, failure};
use super::output;
use super::session::{connect, time_flag};
use crate::proto::v1::send_disclosure_request::About;
use crate::proto::v1::{
    AnswerClarificationRequest, DecideRequest, DisclosureState, GetDisclosureRequestRequest,
    GetReleaseRequest, HandlingCode, Identifier, IdentifierType, LegalBasis,
    ListDisclosureRequestsRequest, ListReleasesRequest, LocationDetail, RefusalGround,
    ReleaseSelection, RequestStatsRequest, SendDisclosureRequest, TimeDetail, Urgency,
    WatchDisclosureRequestsRequest, WithdrawReleaseRequest,
};

/// The legal bases a request may invoke.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BasisArg {
    /// Directive (EU) 2023/977 (information exchange between law enforcement).
    #[value(name = "directive_2023_977", alias = "directive-2023-977")]
    Directive2023977,
    /// Follow-up of a Prüm II hit (Regulation (EU) 2024/982).
    #[value(name = "prum_ii", alias = "prum-ii")]
    PrumIi,
    /// Mutual legal assistance in criminal matters.
    #[value(name = "mutual_legal_assistance", alias = "mutual-legal-assistance")]
    MutualLegalAssistance,
    /// Referral of a victim who consented to it.
    #[value(name = "victim_referral_consent", alias = "victim-referral-consent")]
    VictimReferralConsent,
    /// A national law (name it with --citation).
    #[value(name = "national_law", alias = "national-law")]
    NationalLaw,
}

impl BasisArg {
    fn proto(self) -> LegalBasis {
        match self {
            Self::Directive2023977 => LegalBasis::Directive2023977,
            Self::PrumIi => LegalBasis::PrumIi,
            Self::MutualLegalAssistance => LegalBasis::MutualLegalAssistance,
            Self::VictimReferralConsent => LegalBasis::VictimReferralConsent,
            Self::NationalLaw => LegalBasis::NationalLaw,
        }
    }
}

/// How soon the holder must answer (Directive 2023/977).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UrgencyArg {
    /// Urgent, about information the holder can access directly: 8 hours.
    #[value(name = "urgent_direct", alias = "urgent-direct")]
    UrgentDirect,
    /// Urgent: 3 days.
    Urgent,
    /// Not urgent: 7 days.
    Normal,
    /// Your own deadline, given with --due.
    Custom,
}

impl UrgencyArg {
    fn proto(self) -> Urgency {
        match self {
            Self::UrgentDirect => Urgency::UrgentDirect,
            Self::Urgent => Urgency::Urgent,
            Self::Normal => Urgency::Normal,
            Self::Custom => Urgency::Custom,
        }
    }
}

/// Refusal grounds (Directive 2023/977, Art. 6, and the policy).
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum GroundArg {
    /// The information is not available (alert retracted, purged, unknown).
    NotAvailable,
    /// The request lacks what it needs.
    RequestIncomplete,
    /// A judicial authorisation is needed and was not given.
    JudicialAuthorisationRefused,
    /// The information came from a third party that did not consent.
    OriginatorConsentRefused,
    /// Would jeopardise an investigation or the safety of a person.
    HarmToInvestigationOrSafety,
    /// Clearly disproportionate or irrelevant to the purpose.
    Disproportionate,
    /// The data subject's consent is needed and was not given.
    SubjectConsentRequired,
    /// This agency may not request this alert.
    NotAuthorised,
    /// The legal basis is not accepted for it.
    LegalBasisNotAccepted,
    /// Another ground (explain it in --note).
    Other,
}

impl GroundArg {
    fn proto(self) -> RefusalGround {
        match self {
            Self::NotAvailable => RefusalGround::NotAvailable,
            Self::RequestIncomplete => RefusalGround::RequestIncomplete,
            Self::JudicialAuthorisationRefused => RefusalGround::JudicialAuthorisationRefused,
            Self::OriginatorConsentRefused => RefusalGround::OriginatorConsentRefused,
            Self::HarmToInvestigationOrSafety => RefusalGround::HarmToInvestigationOrSafety,
            Self::Disproportionate => RefusalGround::Disproportionate,
            Self::SubjectConsentRequired => RefusalGround::SubjectConsentRequired,
            Self::NotAuthorised => RefusalGround::NotAuthorised,
            Self::LegalBasisNotAccepted => RefusalGround::LegalBasisNotAccepted,
            Self::Other => RefusalGround::Other,
        }
    }
}

/// Location detail in a release.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LocationArg {
    None,
    Country,
    Region,
    City,
}

/// Time detail in a release.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TimeArg {
    None,
    Year,
    Month,
    Day,
}

/// Handling code of a release.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HandlingArg {
    /// May be shared within the federation without further conditions.
    H0,
    /// Law-enforcement recipients only (refused for any other requester).
    H1,
    /// No onward disclosure by the requester without the holder's consent.
    H2,
    /// Special conditions: contact the holder before any action.
    H3,
}

/// An identifier type as policies name it (`phone`, `crypto_wallet`, ...).
fn identifier_type(s: &str) -> Result<IdentifierType, String> {
    IdentifierType::from_str_name(&format!(
        "IDENTIFIER_TYPE_{}",
        s.replace('-', "_").to_ascii_uppercase()
    ))
    .filter(|t| *t != IdentifierType::Unspecified)
    .ok_or_else(|| {
        "expected phone, email, person, document, iban, crypto_wallet, online_handle, \
         vehicle_plate or advert_url"
            .into()
    })
}

#[derive(Subcommand)]
pub enum RequestsCommand {
    /// Ask the agency holding an alert for its data, about a hit you
    /// confirmed (--hit) or a lookup match (--alert). Needs the `request` role.
    #[command(group(clap::ArgGroup::new("about").required(true).args(["hit", "alert"])))]
    Send(SendArgs),
    /// Requests sent and received, newest first (what your roles let you see).
    List {
        /// Only requests you sent.
        #[arg(long, conflicts_with = "received")]
        sent: bool,
        /// Only requests you received.
        #[arg(long)]
        received: bool,
        /// Only requests past their due time without a final decision.
        #[arg(long)]
        overdue: bool,
        /// Only open requests (waiting for a decision or a clarification).
        #[arg(long)]
        open: bool,
    },
    /// One request with its history.
    Show {
        /// The request id (`<agency>:req:<uuid>`).
        id: String,
    },
    /// Approve a request received, releasing what you choose (within the
    /// sharing policy's maximum, shown by `requests show`). Needs the
    /// `disclose` role.
    Approve(ApproveArgs),
    /// Refuse a request received, on a coded ground. Needs the `disclose` role.
    Refuse {
        /// The request id.
        id: String,
        /// The ground (Directive 2023/977, Art. 6).
        #[arg(long, value_enum)]
        ground: GroundArg,
        /// Why, for the requester (at most 1000 bytes).
        #[arg(long)]
        note: String,
    },
    /// Ask the requester a question; the deadline pauses until the answer.
    /// Needs the `disclose` role.
    Clarify {
        /// The request id.
        id: String,
        /// The question (at most 1000 bytes).
        #[arg(long)]
        question: String,
    },
    /// Answer the holder's question on a request you sent. Needs the
    /// `request` role.
    Answer {
        /// The request id.
        id: String,
        /// Your answer (at most 1000 bytes).
        #[arg(long)]
        answer: String,
    },
    /// The figures Directive 2023/977 asks states to report: per peer and
    /// direction, requests by outcome and the median and 90th-percentile
    /// answer times.
    Stats {
        /// Requests made at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Requests made before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
    },
    /// Print every change to a request after a position, then keep
    /// streaming new ones until Ctrl-C.
    Watch {
        /// Resume after this position (`sequence` in --json output).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Print the changes so far and exit.
        #[arg(long)]
        backlog_only: bool,
    },
}

/// A JSON array of identifiers; errors name file, line and column.
fn read_identifiers(path: &Path) -> Result<Vec<Identifier>, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))
        .map_err(|e| failure(Exit::NotFound, e))?;
    serde_json::from_str(&text).map_err(|e| {
        failure(
            Exit::DataErr,
            anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()),
        )
    })
}

/// `requests send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The number of one of your hits (confirmed with `hits review N --confirmed`).
    #[arg(long)]
    hit: Option<u64>,
    /// The holder's alert id (from `alert lookup`).
    #[arg(long)]
    alert: Option<String>,
    /// The legal basis of the request.
    #[arg(long, value_enum)]
    legal_basis: BasisArg,
    /// The article, law or treaty (at most 300 bytes).
    #[arg(long, default_value = "")]
    citation: String,
    /// Why you need the data (at most 500 bytes): the request's purpose,
    /// which the holder reads. (The global --purpose is why you make
    /// this call, for your own audit log.)
    #[arg(long)]
    reason: String,
    /// Your case reference (at most 128 bytes).
    #[arg(long)]
    case_ref: String,
    /// How soon the holder must answer.
    #[arg(long, value_enum)]
    urgency: UrgencyArg,
    /// With --urgency custom: when the answer is due (RFC 3339).
    #[arg(long)]
    due: Option<String>,
    /// Your identifiers for the subject, so the holder can verify the
    /// match: a JSON array of identifiers as in an alert draft. They are
    /// tokenized by your node; only tokens are sent.
    #[arg(long)]
    verify: Option<PathBuf>,
}

/// `requests approve`.
#[derive(clap::Args)]
pub struct ApproveArgs {
    /// The request id.
    id: String,
    /// Location detail released.
    #[arg(long, value_enum, default_value = "none")]
    location: LocationArg,
    /// Time detail released.
    #[arg(long, value_enum, default_value = "none")]
    time: TimeArg,
    /// Release the narrative.
    #[arg(long)]
    narrative: bool,
    /// Release the indicators.
    #[arg(long)]
    indicators: bool,
    /// An identifier type released in clear (repeatable), e.g. phone.
    #[arg(long = "identifier", value_parser = identifier_type)]
    identifiers: Vec<IdentifierType>,
    /// Whom the requester contacts about the release.
    #[arg(long)]
    contact: String,
    /// The release's handling code (default: the alert's own).
    #[arg(long, value_enum)]
    handling: Option<HandlingArg>,
    /// How long the requester may keep it, in days (1-365; default 90).
    #[arg(long)]
    retention_days: Option<u32>,
    /// Record it as approved in part (you release less than was asked).
    #[arg(long)]
    partial: bool,
    /// Remarks for the requester.
    #[arg(long, default_value = "")]
    note: String,
}

pub async fn run(
    command: RequestsCommand,
    client_config: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    if let RequestsCommand::Watch {
        after,
        backlog_only,
    } = command
    {
        return watch(client_config, after, backlog_only, json).await;
    }
    let mut client = connect(client_config).await?;
    let api = &mut client.disclosure;
    match command {
        RequestsCommand::Send(args) => send(api, args, json).await?,
        RequestsCommand::List {
            sent,
            received,
            overdue,
            open,
        } => {
            let filter = ListDisclosureRequestsRequest {
                outgoing: (sent || received).then_some(sent),
                overdue_only: overdue,
                states: if open {
                    vec![
                        DisclosureState::Open as i32,
                        DisclosureState::Clarification as i32,
                    ]
                } else {
                    Vec::new()
                },
                page_size: 1000,
                ..Default::default()
            };
            output::disclosures(&list_all(api, filter).await?, json);
        }
        RequestsCommand::Show { id } => {
            let case = api
                .get_request(GetDisclosureRequestRequest { id })
                .await?
                .into_inner();
            output::disclosure(&case, json);
        }
        RequestsCommand::Approve(args) => approve(api, args, json).await?,
        RequestsCommand::Refuse { id, ground, note } => {
            let case = api
                .decide(DecideRequest {
                    id,
                    outcome: DisclosureState::Refused as i32,
                    ground: ground.proto() as i32,
                    note,
                    ..Default::default()
                })
                .await?
                .into_inner();
            output::disclosure(&case, json);
        }
        RequestsCommand::Clarify { id, question } => {
            let case = api
                .decide(DecideRequest {
                    id,
                    outcome: DisclosureState::Clarification as i32,
                    note: question,
                    ..Default::default()
                })
                .await?
                .into_inner();
            output::disclosure(&case, json);
        }
        RequestsCommand::Answer { id, answer } => {
            let case = api
                .answer_clarification(AnswerClarificationRequest { id, answer })
                .await?
                .into_inner();
            output::disclosure(&case, json);
        }
        RequestsCommand::Stats { from, to } => {
            let stats = api
                .request_stats(RequestStatsRequest {
                    from: from.as_deref().map(|t| time_flag("from", t)).transpose()?,
                    to: to.as_deref().map(|t| time_flag("to", t)).transpose()?,
                })
                .await?
                .into_inner();
            output::request_stats(&stats, json);
        }
        RequestsCommand::Watch { .. } => unreachable!("handled above"),
    }
    Ok(())
}

type Disclosure =
    crate::proto::v1::disclosure_service_client::DisclosureServiceClient<crate::client::Svc>;

/// `requests send`: about a hit or a looked-up alert.
async fn send(api: &mut Disclosure, args: SendArgs, json: bool) -> Result<(), Failure> {
    let about = match (args.hit, args.alert) {
        (Some(n), _) => About::HitNumber(n),
        (None, Some(a)) => About::AlertId(a),
        (None, None) => unreachable!("clap requires --hit or --alert"),
    };
    let due_at = args
        .due
        .as_deref()
        .map(|d| time_flag("due", d))
        .transpose()?;
    let verification = match args.verify {
        Some(p) => read_identifiers(&p)?,
        None => Vec::new(),
    };
    let case = api
        .send_request(SendDisclosureRequest {
            about: Some(about),
            legal_basis: args.legal_basis.proto() as i32,
            citation: args.citation,
            purpose: args.reason,
            case_reference: args.case_ref,
            urgency: args.urgency.proto() as i32,
            due_at,
            verification,
        })
        .await?
        .into_inner();
    output::disclosure(&case, json);
    Ok(())
}

/// Every page of requests `filter` selects.
async fn list_all(
    api: &mut Disclosure,
    mut filter: ListDisclosureRequestsRequest,
) -> Result<Vec<crate::proto::v1::DisclosureCase>, Failure> {
    let mut all = Vec::new();
    loop {
        let page = api
            .list_disclosure_requests(filter.clone())
            .await?
            .into_inner();
        all.extend(page.requests);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        filter.page_token = page.next_page_token;
    }
}

/// `requests approve`: the release chosen, within the rule's maximum
/// (the node checks it).
async fn approve(api: &mut Disclosure, args: ApproveArgs, json: bool) -> Result<(), Failure> {
    let release = ReleaseSelection {
        location: match args.location {
            LocationArg::None => LocationDetail::None,
            LocationArg::Country => LocationDetail::Country,
            LocationArg::Region => LocationDetail::Region,
            LocationArg::City => LocationDetail::City,
        } as i32,
        time: match args.time {
            TimeArg::None => TimeDetail::None,
            TimeArg::Year => TimeDetail::Year,
            TimeArg::Month => TimeDetail::Month,
            TimeArg::Day => TimeDetail::Day,
        } as i32,
        narrative: args.narrative,
        indicators: args.indicators,
        identifiers: args.identifiers.into_iter().map(|t| t as i32).collect(),
    };
    let handling = match args.handling {
        None => HandlingCode::Unspecified,
        Some(HandlingArg::H0) => HandlingCode::H0,
        Some(HandlingArg::H1) => HandlingCode::H1,
        Some(HandlingArg::H2) => HandlingCode::H2,
        Some(HandlingArg::H3) => HandlingCode::H3,
    };
    let outcome = if args.partial {
        DisclosureState::PartiallyApproved
    } else {
        DisclosureState::Approved
    };
    let case = api
        .decide(DecideRequest {
            id: args.id,
            outcome: outcome as i32,
            ground: 0,
            note: args.note,
            release: Some(release),
            contact_point: args.contact,
            handling: handling as i32,
            // 0 asks the node for its default (90 days).
            retention_days: args.retention_days.unwrap_or(0),
        })
        .await?
        .into_inner();
    output::disclosure(&case, json);
    Ok(())
}

async fn watch(
    config: Option<&Path>,
    after: u64,
    backlog_only: bool,
    json: bool,
) -> Result<(), Failure> {
    super::session::follow(
        config,
        after,
        backlog_only,
        "no request changes",
        |mut client, after| async move {
            client
                .disclosure
                .watch_disclosure_requests(WatchDisclosureRequestsRequest {
                    after_sequence: after,
                    backlog_only,
                })
                .await
                .map(tonic::Response::into_inner)
        },
        |c: &crate::proto::v1::DisclosureCase| c.sequence,
        |c| output::disclosure_change(c, json),
    )
    .await
}

#[derive(Subcommand)]
pub enum ReleasesCommand {
    /// Releases received (role `request`) and sent (role `disclose`),
    /// newest first, without their content.
    List {
        /// Only releases you sent.
        #[arg(long, conflicts_with = "received")]
        sent: bool,
        /// Only releases you received.
        #[arg(long)]
        received: bool,
    },
    /// One release with its content and identifiers (reading it is recorded
    /// in the audit log).
    Show {
        /// The release id (`<agency>:rel:<uuid>`).
        id: String,
    },
    /// Withdraw a release you sent: the requester's node purges it. Needs
    /// the `disclose` role.
    Withdraw {
        /// The release id.
        id: String,
        /// Why, for the requester (at most 1000 bytes).
        #[arg(long)]
        reason: String,
    },
}

pub async fn releases(
    command: ReleasesCommand,
    client_config: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    let mut client = connect(client_config).await?;
    let api = &mut client.disclosure;
    match command {
        ReleasesCommand::List { sent, received } => {
            let mut req = ListReleasesRequest {
                outgoing: (sent || received).then_some(sent),
                page_size: 1000,
                ..Default::default()
            };
            let mut all = Vec::new();
            loop {
                let page = api.list_releases(req.clone()).await?.into_inner();
                all.extend(page.releases);
                if page.next_page_token.is_empty() {
                    break;
                }
                req.page_token = page.next_page_token;
            }
            output::releases(&all, json);
        }
        ReleasesCommand::Show { id } => {
            let r = api
                .get_release(GetReleaseRequest { id })
                .await?
                .into_inner();
            output::release(&r, json);
        }
        ReleasesCommand::Withdraw { id, reason } => {
            let r = api
                .withdraw_release(WithdrawReleaseRequest { id, reason })
                .await?
                .into_inner();
            output::release(&r, json);
        }
    }
    Ok(())
}
