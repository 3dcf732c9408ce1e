//! `casebridge policy validate|explain`: check a sharing policy before it
//! goes live, and see exactly what it would send for one alert and peer.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::anyhow;
use clap::Subcommand;

use super::{EXIT_DATAERR, Failure, failure};
use crate::config::{EXIT_CONFIG, NodeConfig};
use crate::exchange::shared_view_with;
use crate::ids::{AgencyId, AlertId};
use crate::policy::{self, Policy};
use crate::proto::v1::{Alert, StoredAlert};
use crate::pseudo::{KeyRing, Pseudonymizer};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file against the node's configured peers.
    Validate {
        file: PathBuf,
        /// The node config whose peers the policy may name.
        #[arg(long, env = "CASEBRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Show the decision, the deciding rule and the exact envelope for one
    /// alert (an AlertDraft JSON file, as for `alert submit`) and one peer.
    Explain {
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        alert: PathBuf,
        #[arg(long)]
        peer: String,
        #[arg(long, env = "CASEBRIDGE_CONFIG")]
        config: PathBuf,
    },
}

fn load(file: &Path, config: &NodeConfig) -> Result<Policy, Failure> {
    let src = std::fs::read_to_string(file).map_err(|e| {
        failure(
            EXIT_CONFIG as u8,
            anyhow!("{}: cannot read: {e}", file.display()),
        )
    })?;
    let peers: BTreeSet<AgencyId> = config
        .peers
        .iter()
        .map(|p| p.agency_id.get_ref().clone())
        .collect();
    policy::parse(file, &src, &peers).map_err(|errors| {
        let text = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        failure(
            EXIT_DATAERR,
            anyhow!("{} problem(s):\n{text}", errors.len()),
        )
    })
}

pub fn run(command: PolicyCommand, json: bool) -> Result<(), Failure> {
    match command {
        PolicyCommand::Validate { file, config } => {
            let config = NodeConfig::load(&config)?;
            let p = load(&file, &config)?;
            println!("{}: valid, {} rule(s)", file.display(), p.rules.len());
            for r in &p.rules {
                let peers: Vec<String> = r
                    .named
                    .union(&r.via_group)
                    .map(ToString::to_string)
                    .collect();
                println!(
                    "  line {:>3}  {:<24} {:?} -> {}",
                    r.line,
                    r.name,
                    r.effect,
                    peers.join(", ")
                );
            }
            Ok(())
        }
        PolicyCommand::Explain {
            policy,
            alert,
            peer,
            config,
        } => {
            let config = NodeConfig::load(&config)?;
            let p = load(&policy, &config)?;
            let peer = AgencyId::new(peer).map_err(|e| failure(EXIT_CONFIG as u8, anyhow!(e)))?;
            let draft = super::read_draft(&alert)?;
            let now = SystemTime::now();
            let draft =
                crate::alert::validate::validate_draft(draft, &config.limits, &config.alerts, now)
                    .map_err(|v| {
                        failure(EXIT_DATAERR, anyhow!(crate::alert::AlertError::Invalid(v)))
                    })?;
            let ring = match &config.matching.key_ring {
                Some(path) => Some(KeyRing::load(path.get_ref())?),
                None => None,
            };
            let region = config
                .matching
                .default_phone_region
                .as_ref()
                .map(|r| r.get_ref().clone());
            let pseudonyms = Pseudonymizer::new(ring, region)
                .pseudonymize(&draft.subjects, "draft.subjects", now.into())
                .map_err(|v| {
                    failure(EXIT_DATAERR, anyhow!(crate::alert::AlertError::Invalid(v)))
                })?;
            let own = config.agency().clone();
            let record = StoredAlert {
                alert: Some(Alert {
                    id: AlertId::generate(&own).to_string(),
                    origin: own.to_string(),
                    version: 1,
                    created_at: Some(crate::alert::validate::timestamp(now)),
                    updated_at: Some(crate::alert::validate::timestamp(now)),
                    content: draft.content,
                    ..Default::default()
                }),
                shared_with: vec![],
                pseudonyms,
            };
            let decision = policy::evaluate(&p, &record, &own, &peer, now);
            let envelope = decision
                .grant
                .as_ref()
                .map(|g| shared_view_with(&record, g));
            if json {
                let out = serde_json::json!({
                    "shared": envelope.is_some(),
                    "rule": decision.rule,
                    "reason": decision.reason,
                    "envelope": envelope,
                });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                println!(
                    "peer {peer}: {}",
                    if envelope.is_some() {
                        "SHARED"
                    } else {
                        "NOT SHARED"
                    }
                );
                println!("because: {}", decision.reason);
                if let Some(env) = envelope {
                    println!("envelope that would be sent:");
                    println!("{}", serde_json::to_string_pretty(&env).unwrap_or_default());
                }
            }
            Ok(())
        }
    }
}
