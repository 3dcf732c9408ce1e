//! `casebridge policy ...`: check a sharing policy before it goes live (offline,
//! against the node config: validate, test, explain a draft), and operate
//! the live one through the node's AdminService (get, set, diff against the
//! stored alerts, explain a stored alert, reshare, retract from a peer).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::anyhow;
use clap::Subcommand;

use super::exit::{Exit, Failure, failure, status_failure};
use super::output;
use super::session::connect;
use crate::config::NodeConfig;
use crate::ids::{AgencyId, AlertId};
use crate::policy::shared_view_with;
use crate::policy::{self, Policy};
use crate::proto::v1::{
    Alert, AlertFilter, DiffPolicyRequest, ExplainPolicyRequest, GetPolicyRequest, ReshareRequest,
    RetractFromPeerRequest, SetPolicyRequest, StoredAlert,
};
use crate::pseudo::{KeyRing, Pseudonymizer};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file against the node's configured peers.
    Validate {
        /// The policy file.
        file: PathBuf,
        /// The node config whose peers the policy may name; without it, every
        /// check but whether the peers it names are configured.
        #[arg(long, env = "CASEBRIDGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run a policy's own test cases: expected outcomes per (alert, peer).
    /// Exits non-zero on any mismatch, so it fits an agency's own CI.
    Test {
        /// The policy file.
        file: PathBuf,
        /// TOML file of `[[case]]` tables (see docs/policy.md).
        #[arg(long)]
        cases: PathBuf,
        /// The node config whose peers the policy may name.
        #[arg(long, env = "CASEBRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Show the decision, the deciding rule and the exact envelope. Either for
    /// an alert draft file (`--alert`, offline, with `--policy` and
    /// `--config`), or for an alert stored on the node (`--alert-id`, asks
    /// the node; `--policy` then evaluates a candidate instead of the
    /// policy in force).
    Explain {
        /// A policy file to explain with (default: the node config's policy).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// AlertDraft JSON file, as for `alert submit`.
        #[arg(
            long,
            conflicts_with = "alert_id",
            required_unless_present = "alert_id"
        )]
        alert: Option<PathBuf>,
        /// Id of an alert stored on the node.
        #[arg(long)]
        alert_id: Option<String>,
        /// The peer (required with --alert; all peers by default with --alert-id).
        #[arg(long)]
        peer: Option<String>,
        /// The node config (its peers and key ring), for --alert.
        #[arg(long, env = "CASEBRIDGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Every policy version the node installed, newest first: who set it,
    /// when, from where, with its comment (admin role).
    History {
        /// Print this version's text instead of the list.
        #[arg(long)]
        show: Option<u64>,
    },
    /// The policy in force on the node (admin role).
    Get {
        /// Print the policy text too.
        #[arg(long)]
        text: bool,
    },
    /// Install a new policy on the running node (admin role). Refused, with
    /// every problem listed, unless it validates; the policy in force stays.
    Set {
        /// The policy file to put in force.
        file: PathBuf,
        /// Refuse unless this is the version in force (see `policy get`).
        #[arg(long, default_value_t = 0)]
        expect_version: u64,
        /// Why the change is made, kept with the version.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Per peer, how many stored alerts NEW would newly share, no longer
    /// share, or share with other fields than OLD (`@active`: the policy in force).
    Diff {
        /// The policy now: `@active` (the version in force) or a file.
        old: String,
        /// The policy file you would put in force.
        new: PathBuf,
    },
    /// Send a peer the own alerts the policy in force allows and it has not
    /// been sent (after a policy change).
    Reshare {
        /// The peer to send what the policy now allows it.
        #[arg(long)]
        peer: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Count only.
        #[arg(long)]
        dry_run: bool,
    },
    /// Send a peer a retraction of own alerts it was sent; later versions
    /// skip it until reshared.
    RetractFrom {
        /// The peer to withdraw alerts from.
        #[arg(long)]
        peer: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Reason shown to the peer.
        #[arg(long, default_value = "")]
        reason: String,
        /// Count only: say what would be withdrawn, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which own alerts a reshare or retraction considers.
#[derive(clap::Args)]
pub struct FilterArgs {
    /// Only these alert ids (repeatable).
    #[arg(long = "id")]
    ids: Vec<String>,
    /// Only this category, e.g. labour_exploitation.
    #[arg(long)]
    category: Option<String>,
    /// Only alerts created at or after this time (RFC 3339).
    #[arg(long)]
    created_after: Option<String>,
    /// Only alerts created before this time (RFC 3339).
    #[arg(long)]
    created_before: Option<String>,
}

impl FilterArgs {
    fn to_proto(&self) -> Result<AlertFilter, Failure> {
        let ts = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| super::session::time_flag(flag, s))
                .transpose()
        };
        let category = match &self.category {
            Some(c) => enum_override("category", "CATEGORY_", c, |n| {
                crate::proto::v1::Category::from_str_name(n).map(|v| v as i32)
            })?,
            None => 0,
        };
        Ok(AlertFilter {
            alert_ids: self.ids.clone(),
            category,
            created_after: ts("created-after", &self.created_after)?,
            created_before: ts("created-before", &self.created_before)?,
        })
    }
}

/// Said under an envelope shown offline when the node has a key service.
const STAND_IN_NOTE: &str = "(exact tokens come from the OPRF key service: they are shown \
     without a value here, where no key service is asked and no budget is spent; the node \
     derives them when it stores the alert)";

/// The stored record a submit of `draft` would create here (validated,
/// pseudonymized with the node's key ring), for evaluating the policy.
fn record_from_draft(
    config: &NodeConfig,
    draft: crate::proto::v1::AlertDraft,
    now: SystemTime,
) -> Result<StoredAlert, Failure> {
    let invalid = |v| failure(Exit::DataErr, anyhow!(crate::alert::AlertError::Invalid(v)));
    let draft = crate::validate::validate_draft(draft, &config.limits, &config.alerts, now)
        .map_err(invalid)?;
    let ring = match &config.matching.key_ring {
        Some(path) => Some(KeyRing::load(path.get_ref())?),
        None => None,
    };
    let region = config
        .matching
        .default_phone_region
        .as_ref()
        .map(|r| r.get_ref().clone());
    // The tokens the node itself would make: with a key service, exact
    // tokens come from it (stand-ins below), not from the ring.
    let pseudo = Pseudonymizer::new(ring, region).with_ring_tokens(config.exact_tokens_from_ring());
    let mut pseudonyms = pseudo
        .pseudonymize(&draft.subjects, "draft.subjects", now.into())
        .map_err(invalid)?;
    if config.key_service.is_some() {
        pseudo.add_stand_in_tokens(&draft.subjects, &mut pseudonyms);
    }
    let own = config.agency().clone();
    Ok(StoredAlert {
        tokens_pending: false,
        alert: Some(Alert {
            id: AlertId::generate(&own).to_string(),
            origin: own.to_string(),
            version: 1,
            created_at: Some(crate::time::timestamp(now)),
            updated_at: Some(crate::time::timestamp(now)),
            content: draft.content,
            ..Default::default()
        }),
        shared_with: vec![],
        pseudonyms,
        withdrawn_from: vec![],
    })
}

fn enum_override(
    kind: &str,
    prefix: &str,
    value: &str,
    parse: fn(&str) -> Option<i32>,
) -> Result<i32, Failure> {
    policy::cases::enum_value(kind, prefix, value, parse)
        .map_err(|e| failure(Exit::DataErr, anyhow!(e)))
}

fn run_cases(p: &Policy, config: &NodeConfig, cases_file: &Path) -> Result<(), Failure> {
    let text = std::fs::read_to_string(cases_file).map_err(|e| {
        failure(
            Exit::DataErr,
            anyhow!("{}: cannot read: {e}", cases_file.display()),
        )
    })?;
    let cases = policy::cases::parse(&text)
        .map_err(|e| failure(Exit::DataErr, anyhow!("{}:{e}", cases_file.display())))?;
    let base = cases_file.parent().unwrap_or(Path::new("."));
    let own = config.agency().clone();
    let now = SystemTime::now();
    let mut failed = 0;
    for case in &cases {
        let bad = |e: String| failure(Exit::DataErr, anyhow!("case `{}`: {e}", case.name));
        let mut draft = super::alert::read_draft(&base.join(&case.alert))?;
        case.apply_overrides(&mut draft).map_err(bad)?;
        let record = record_from_draft(config, draft, now)?;
        let outcome = case.run(p, &own, record, now).map_err(bad)?;
        if outcome.passed {
            println!("ok    {}", outcome.name);
        } else {
            failed += 1;
            println!(
                "FAIL  {}: expected {}, got {} ({})",
                outcome.name, outcome.expected, outcome.got, outcome.reason
            );
        }
    }
    println!("{} passed, {failed} failed", cases.len() - failed);
    if failed > 0 {
        return Err(failure(
            Exit::Failure,
            anyhow!("{failed} policy test case(s) failed"),
        ));
    }
    Ok(())
}

/// The policy `file` as the node of `config` would hold it: checked
/// against its peers, with their kinds (handling codes' promises).
fn load(file: &Path, config: &NodeConfig) -> Result<Policy, Failure> {
    let members = crate::federation::starting_members(config)
        .map_err(|e| failure(Exit::DataErr, anyhow!(e)))?;
    let src = std::fs::read_to_string(file)
        .map_err(|e| failure(Exit::Usage, anyhow!("{}: cannot read: {e}", file.display())))?;
    crate::sharing::parse_for(&members, &src, file, true).map_err(|e| problems(&e))
}

/// Reads and checks a policy file (against `peers` when given), every
/// problem as `FILE:line:column: message`.
fn parse_file(file: &Path, peers: Option<&BTreeSet<AgencyId>>) -> Result<Policy, Failure> {
    let src = std::fs::read_to_string(file)
        .map_err(|e| failure(Exit::Usage, anyhow!("{}: cannot read: {e}", file.display())))?;
    let parsed = match peers {
        Some(peers) => policy::parse(file, &src, peers),
        None => policy::parse_any_peer(file, &src),
    };
    parsed.map_err(|e| problems(&e))
}

/// Every problem of a policy, one `FILE:line:column: message` a line.
fn problems(errors: &[policy::PolicyError]) -> Failure {
    let text = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    failure(
        Exit::DataErr,
        anyhow!("{} problem(s):\n{text}", errors.len()),
    )
}

fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        failure(
            Exit::DataErr,
            anyhow!("{}: cannot read: {e}", path.display()),
        )
    })
}

pub async fn run(
    command: PolicyCommand,
    json: bool,
    client_config: Option<&Path>,
) -> Result<(), Failure> {
    match command {
        PolicyCommand::Get { text } => {
            let mut client = connect(client_config).await?;
            let v = client
                .admin
                .get_policy(GetPolicyRequest {})
                .await?
                .into_inner();
            output::policy_version(&v, json, text);
            Ok(())
        }
        PolicyCommand::History { show } => history(show, json, client_config).await,
        PolicyCommand::Set {
            file,
            expect_version,
            comment,
        } => set(&file, expect_version, comment, json, client_config).await,
        PolicyCommand::Diff { old, new } => diff(&old, &new, json, client_config).await,
        PolicyCommand::Reshare {
            peer,
            filter,
            dry_run,
        } => {
            let mut client = connect(client_config).await?;
            let r = client
                .admin
                .reshare(ReshareRequest {
                    peer: peer.clone(),
                    filter: Some(filter.to_proto()?),
                    dry_run,
                })
                .await?
                .into_inner();
            output::backfill("queued for", &peer, &r, dry_run, json);
            Ok(())
        }
        PolicyCommand::RetractFrom {
            peer,
            filter,
            reason,
            dry_run,
        } => {
            let mut client = connect(client_config).await?;
            let r = client
                .admin
                .retract_from_peer(RetractFromPeerRequest {
                    peer: peer.clone(),
                    filter: Some(filter.to_proto()?),
                    reason,
                    dry_run,
                })
                .await?
                .into_inner();
            output::backfill("retracted from", &peer, &r, dry_run, json);
            Ok(())
        }
        PolicyCommand::Explain {
            policy,
            alert: None,
            alert_id: Some(alert_id),
            peer,
            config: _,
        } => explain_stored(policy, alert_id, peer, json, client_config).await,
        PolicyCommand::Validate { file, config } => validate(&file, config.as_deref()),
        PolicyCommand::Test {
            file,
            cases,
            config,
        } => {
            let config = NodeConfig::load(&config)?;
            let p = load(&file, &config)?;
            run_cases(&p, &config, &cases)
        }
        PolicyCommand::Explain {
            policy,
            alert,
            alert_id: _,
            peer,
            config,
        } => explain_local(policy, alert, peer, config, json),
    }
}

/// `policy explain --alert-id`: the node explains a stored alert, under
/// the policy in force or the candidate file given.
async fn explain_stored(
    policy: Option<PathBuf>,
    alert_id: String,
    peer: Option<String>,
    json: bool,
    client_config: Option<&Path>,
) -> Result<(), Failure> {
    let policy_text = match &policy {
        Some(p) => read_text(p)?,
        None => String::new(),
    };
    let mut client = connect(client_config).await?;
    let r = client
        .admin
        .explain_policy(ExplainPolicyRequest {
            alert_id,
            peers: peer.into_iter().collect(),
            policy_text,
        })
        .await?
        .into_inner();
    output::explanation(&r, json);
    Ok(())
}

/// `policy validate`: the file's problems, or what it holds; with the
/// node config, checked against its peers and their kinds too.
fn validate(file: &Path, config: Option<&Path>) -> Result<(), Failure> {
    let kinds_known = config.is_some();
    let mut groups = Default::default();
    let p = match config {
        Some(config) => {
            let config = NodeConfig::load(config)?;
            groups = crate::federation::starting_members(&config)
                .map(|m| m.groups())
                .unwrap_or_default();
            load(file, &config)?
        }
        None => {
            let p = parse_file(file, None)?;
            println!(
                "(without --config: the peers it names are not checked against a node's \
                 [[peers]], nor its rules against their kinds)"
            );
            p
        }
    };
    print_validated(file, &p);
    // What each directory group means for this node (it follows a directory).
    for (group, members) in groups {
        let reached: Vec<String> = members.iter().map(ToString::to_string).collect();
        let reached = if reached.is_empty() {
            "no other member".to_owned()
        } else {
            reached.join(", ")
        };
        println!("  group:{group} reaches {reached}");
    }
    // Warnings do not fail the check: the node keeps the promise anyway,
    // but the rule does not do what it reads as.
    let warnings = if kinds_known {
        p.handling_warnings()
    } else {
        Vec::new()
    };
    for (line, warning) in warnings {
        eprintln!("warning: {}:{line}: {warning}", file.display());
    }
    Ok(())
}

/// `policy validate`: what a valid file holds, rule by rule.
fn print_validated(file: &Path, p: &Policy) {
    println!(
        "{}: valid, {} share rule(s), {} inbound rule(s), {} disclosure rule(s)",
        file.display(),
        p.rules.len(),
        p.inbound.len(),
        p.disclosure.len()
    );
    for r in &p.rules {
        let peers: Vec<String> = r
            .named
            .union(&r.via_group)
            .map(ToString::to_string)
            .collect();
        println!(
            "  line {:>3}  {:<24} {} -> {}",
            r.line,
            r.name,
            r.effect.as_str(),
            peers.join(", ")
        );
    }
    for r in &p.inbound {
        let from = r.from.as_ref().map_or("any peer".to_string(), |f| {
            f.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        });
        println!(
            "  line {:>3}  {:<24} inbound {} <- {from}",
            r.line,
            r.name,
            if r.refuse { "Refuse" } else { "Accept" }
        );
    }
    for r in &p.disclosure {
        let peers: Vec<String> = r
            .named
            .union(&r.via_group)
            .map(ToString::to_string)
            .collect();
        let bases: Vec<String> = r
            .legal_bases
            .iter()
            .map(|b| policy::disclosure::basis_name(*b))
            .collect();
        println!(
            "  line {:>3}  {:<24} disclosure to {} under {}: at most {}",
            r.line,
            r.name,
            peers.join(", "),
            bases.join(", "),
            r.max.describe()
        );
    }
}

/// What the disclosure rules say of requests by a peer, as JSON: the rule,
/// the bases it accepts and its maximum, or why every request is refused.
fn disclosure_json(s: &policy::disclosure::DisclosureSummary) -> serde_json::Value {
    match (&s.rule, &s.maximum) {
        (Some(rule), Some(max)) => serde_json::json!({
            "requestable": true,
            "rule": rule,
            "legal_bases": s.legal_bases.iter().map(|b| policy::disclosure::basis_name(*b)).collect::<Vec<_>>(),
            "maximum": max.describe(),
        }),
        _ => serde_json::json!({
            "requestable": false,
            "reason": s.refusal,
        }),
    }
}

/// `policy explain --alert FILE`: what a policy file would send each peer
/// (or the one given) of a draft, decided here, without a node.
fn explain_local(
    policy: Option<PathBuf>,
    alert: Option<PathBuf>,
    peer: Option<String>,
    config: Option<PathBuf>,
    json: bool,
) -> Result<(), Failure> {
    let need = |what: &str| failure(Exit::Usage, anyhow!("--alert needs {what}"));
    let alert = alert.ok_or_else(|| need("an alert file"))?;
    let config = NodeConfig::load(&config.ok_or_else(|| need("--config"))?)?;
    let p = load(&policy.ok_or_else(|| need("--policy"))?, &config)?;
    // Without --peer: every configured peer, as the node would decide (and
    // the JSON is a list; with --peer, the one decision as before).
    let one = peer.is_some();
    let peers: Vec<AgencyId> = match peer {
        Some(p) => vec![AgencyId::new(p).map_err(|e| failure(Exit::Usage, anyhow!(e)))?],
        None => crate::federation::starting_members(&config)
            .map_err(|e| failure(Exit::DataErr, anyhow!(e)))?
            .peer_ids(),
    };
    let draft = super::alert::read_draft(&alert)?;
    let now = SystemTime::now();
    let record = record_from_draft(&config, draft, now)?;
    let own = config.agency().clone();
    let mut out = Vec::new();
    for peer in &peers {
        let decision = policy::evaluate(&p, &record, &own, peer, now);
        let envelope = decision
            .grant
            .as_ref()
            .map(|g| shared_view_with(&record, g));
        let disclosure = policy::disclosure::summarize(&p, &record, &own, peer, now);
        if json {
            out.push(serde_json::json!({
                "peer": peer.to_string(),
                "shared": envelope.is_some(),
                "rule": decision.rule,
                "reason": decision.reason,
                "envelope": envelope,
                "disclosure": disclosure_json(&disclosure),
            }));
            continue;
        }
        println!(
            "peer {peer}: {}",
            if envelope.is_some() {
                "SHARED"
            } else {
                "NOT SHARED"
            }
        );
        println!("because: {}", decision.reason);
        match (&disclosure.rule, &disclosure.maximum) {
            (Some(rule), Some(max)) => println!(
                "on request: rule `{rule}` accepts {}; an officer may release at most: {}",
                disclosure
                    .legal_bases
                    .iter()
                    .map(|b| policy::disclosure::basis_name(*b))
                    .collect::<Vec<_>>()
                    .join(", "),
                max.describe()
            ),
            _ => println!("on request: refused automatically ({})", disclosure.refusal),
        }
        if let Some(env) = envelope {
            println!("envelope that would be sent:");
            println!("{}", super::output::to_json(&env, true).unwrap_or_default());
            if config.key_service.is_some() {
                println!("{STAND_IN_NOTE}");
            }
        }
    }
    if json {
        let text = if one {
            super::output::to_json(&out[0], true)
        } else {
            super::output::to_json(&out, true)
        };
        println!("{}", text.unwrap_or_default());
    }
    Ok(())
}

/// `policy history`: the versions installed, newest first, or one
/// version's text.
async fn history(
    show: Option<u64>,
    json: bool,
    client_config: Option<&Path>,
) -> Result<(), Failure> {
    let mut client = connect(client_config).await?;
    let mut versions = client
        .admin
        .list_policy_versions(crate::proto::v1::ListPolicyVersionsRequest {})
        .await?
        .into_inner()
        .versions;
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    match show {
        Some(n) => {
            let v = versions.iter().find(|v| v.version == n).ok_or_else(|| {
                failure(
                    Exit::NotFound,
                    anyhow!("no policy version {n} on this node (`policy history` lists them)"),
                )
            })?;
            output::policy_version(v, json, true);
        }
        None if versions.is_empty() => {
            eprintln!("no sharing policy installed: this node shares nothing");
        }
        None => {
            for v in &versions {
                output::policy_version(v, json, false);
            }
        }
    }
    Ok(())
}

/// `policy set`: installs a policy file on the node (admin role); a refusal
/// lists each problem as `FILE:line:column: message`.
async fn set(
    file: &Path,
    expect_version: u64,
    comment: String,
    json: bool,
    client_config: Option<&Path>,
) -> Result<(), Failure> {
    let policy_text = read_text(file)?;
    let mut client = connect(client_config).await?;
    let v = client
        .admin
        .set_policy(SetPolicyRequest {
            policy_text,
            expected_version: expect_version,
            comment,
        })
        .await
        .map_err(|s| status_failure(s, file))?
        .into_inner();
    output::policy_version(&v, json, false);
    Ok(())
}

/// `policy diff`: what would change for each peer (`@active` for the
/// policy in force as the old one).
async fn diff(
    old: &str,
    new: &Path,
    json: bool,
    client_config: Option<&Path>,
) -> Result<(), Failure> {
    let old_policy_text = if old == "@active" {
        String::new()
    } else {
        read_text(Path::new(old))?
    };
    let new_policy_text = read_text(new)?;
    let mut client = connect(client_config).await?;
    let d = client
        .admin
        .diff_policy(DiffPolicyRequest {
            old_policy_text,
            new_policy_text,
        })
        .await?
        .into_inner();
    output::diff(&d, json);
    Ok(())
}
