//! `casebridge demo`: a three-agency federation on this machine, with sample
//! alerts, so a newcomer sees the exchange work in one command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::Args;

use super::Failure;
use crate::certs::{FederationLayout, free_loopback_addrs, init_federation};
use crate::client::NodeClient;
use crate::config::NodeConfig;
use crate::ids::{AgencyId, FederationName};
use crate::node::{Listeners, RunningNode, start};
use crate::proto::v1::{
    Alert, AlertContent, AlertDraft, Category, Confidence, Email, HandlingCode, Hit, Identifier,
    IdentifierType, Indicator, ListAlertsRequest, Location, PersonName, Phone, Severity, Subject,
    SubjectRole, SubmitAlertRequest, Tlp, WatchHitsRequest, identifier::Kind,
};

#[derive(Args)]
pub struct DemoArgs {
    /// Run once: exit 0 if every expected delivery happened, 1 otherwise.
    #[arg(long)]
    once: bool,
    /// Directory for the federation (default: a new temporary directory,
    /// removed on exit). Must not already contain a federation.
    #[arg(long)]
    dir: Option<PathBuf>,
}

const AGENCIES: [&str; 3] = ["police", "labour", "ngo"];
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn identifier(kind: Kind) -> Identifier {
    Identifier { kind: Some(kind) }
}

/// Sample alerts per origin agency. Every one carries subjects, so the demo
/// shows they stay home.
fn samples() -> Vec<(&'static str, AlertDraft)> {
    let draft = |category: Category,
                 severity: Severity,
                 tlp: Tlp,
                 country: &str,
                 city: &str,
                 narrative: &str,
                 indicators: &[Indicator],
                 subjects: Vec<Subject>| AlertDraft {
        content: Some(AlertContent {
            category: category as i32,
            indicators: indicators.iter().map(|i| *i as i32).collect(),
            severity: severity as i32,
            confidence: Confidence::Moderate as i32,
            location: Some(Location {
                country: country.into(),
                region: String::new(),
                city: city.into(),
            }),
            narrative: narrative.into(),
            tlp: tlp as i32,
            handling_code: HandlingCode::H1 as i32,
            ..Default::default()
        }),
        subjects,
    };
    vec![
        (
            "police",
            draft(
                Category::SexualExploitation,
                Severity::High,
                Tlp::Amber,
                "NL",
                "Rotterdam",
                "Online adverts for escort services list the same contact number across three cities.",
                &[
                    Indicator::OnlineAdvertising,
                    Indicator::RestrictionOfMovement,
                ],
                vec![Subject {
                    role: SubjectRole::SuspectedTrafficker as i32,
                    identifiers: vec![identifier(Kind::Phone(Phone {
                        number: "+31 6 1234 5678".into(),
                        region: String::new(),
                    }))],
                }],
            ),
        ),
        (
            "labour",
            draft(
                Category::LabourExploitation,
                Severity::Medium,
                Tlp::Green,
                "NL",
                "Westland",
                "Greenhouse workers report passports held by the recruiter and wage deductions for housing.",
                &[
                    Indicator::RetentionOfIdentityDocuments,
                    Indicator::DebtBondage,
                    Indicator::WithholdingOfWages,
                ],
                vec![Subject {
                    role: SubjectRole::PotentialVictim as i32,
                    identifiers: vec![identifier(Kind::Person(PersonName {
                        given_names: "Ana".into(),
                        family_name: "Popescu".into(),
                        date_of_birth: "1994-03-12".into(),
                    }))],
                }],
            ),
        ),
        (
            "ngo",
            draft(
                Category::LabourExploitation,
                Severity::High,
                Tlp::Amber,
                "BE",
                "Antwerp",
                "Hotline caller describes debt for travel costs and threats against family at home.",
                &[Indicator::DebtBondage, Indicator::IntimidationThreats],
                vec![
                    Subject {
                        role: SubjectRole::SuspectedTrafficker as i32,
                        identifiers: vec![
                            identifier(Kind::Email(Email {
                                address: "jobs.abroad@example.org".into(),
                            })),
                            // The number police recorded as "+31 6 1234 5678": an exact hit.
                            identifier(Kind::Phone(Phone {
                                number: "0612345678".into(),
                                region: "NL".into(),
                            })),
                        ],
                    },
                    Subject {
                        role: SubjectRole::PotentialVictim as i32,
                        // labour's "Ana Popescu", misspelled: a fuzzy hit.
                        identifiers: vec![identifier(Kind::Person(PersonName {
                            given_names: "Anna".into(),
                            family_name: "Popesku".into(),
                            date_of_birth: "1994-03-12".into(),
                        }))],
                    },
                ],
            ),
        ),
    ]
}

struct Federation {
    layout: FederationLayout,
    nodes: BTreeMap<AgencyId, RunningNode>,
}

async fn start_federation(dir: &std::path::Path) -> anyhow::Result<Federation> {
    let federation = FederationName::new("demo.casebridge").map_err(|e| anyhow!(e))?;
    let ids: Vec<AgencyId> = AGENCIES
        .iter()
        .map(|a| AgencyId::new(*a).expect("static ids"))
        .collect();
    let addrs = free_loopback_addrs(&ids)?;
    let layout = init_federation(&federation, &addrs, dir)?;
    let mut nodes = BTreeMap::new();
    for (id, agency) in &layout.agencies {
        let config = NodeConfig::load(&agency.node_config)?;
        let listeners = Listeners::bind(&config).await?;
        nodes.insert(id.clone(), start(config, listeners).await?);
    }
    Ok(Federation { layout, nodes })
}

async fn client(layout: &FederationLayout, agency: &str, name: &str) -> anyhow::Result<NodeClient> {
    let a = layout
        .agencies
        .iter()
        .find(|(id, _)| id.as_str() == agency)
        .map(|(_, a)| a)
        .ok_or_else(|| anyhow!("no agency {agency}"))?;
    Ok(NodeClient::connect_file(a.client_config(name)).await?)
}

async fn list(layout: &FederationLayout, agency: &str) -> anyhow::Result<Vec<Alert>> {
    let mut c = client(layout, agency, "analyst").await?;
    Ok(c.alerts
        .list_alerts(ListAlertsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .alerts)
}

/// The first hit at `agency` with an alert of `other`, waiting a bounded time.
async fn wait_for_hit(
    layout: &FederationLayout,
    agency: &str,
    other: &str,
) -> anyhow::Result<Option<Hit>> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut c = client(layout, agency, "analyst").await?;
    loop {
        let mut stream = c
            .alerts
            .watch_hits(WatchHitsRequest {
                after_sequence: 0,
                backlog_only: true,
            })
            .await?
            .into_inner();
        while let Some(h) = stream.message().await? {
            if h.other_agency == other {
                return Ok(Some(h));
            }
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    let temp;
    let dir = match args.dir {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new()
                .prefix("casebridge-demo-")
                .tempdir()?;
            temp.path().to_owned()
        }
    };
    println!(
        "CaseBridge demo: three agencies ({}) on 127.0.0.1, federation in {}",
        AGENCIES.join(", "),
        dir.display()
    );
    let fed = start_federation(&dir)
        .await
        .context("starting the demo federation")?;

    let mut submitted = Vec::new();
    for (origin, draft) in samples() {
        let mut c = client(&fed.layout, origin, "cms").await?;
        let alert = c
            .alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(draft),
                request_id: String::new(),
            })
            .await?
            .into_inner();
        println!(
            "  {origin:<7} submitted {} ({} subject(s) kept at origin)",
            alert.id,
            alert.subjects.len()
        );
        submitted.push(alert);
    }

    // Wait until every alert is at both other agencies (bounded).
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut held: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
    loop {
        for agency in AGENCIES {
            held.insert(agency.to_string(), list(&fed.layout, agency).await?);
        }
        let complete = submitted.iter().all(|a| {
            AGENCIES.iter().all(|ag| {
                held[*ag]
                    .iter()
                    .any(|h| h.id == a.id && h.version == a.version)
            })
        });
        if complete || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("\ndeliveries:");
    let mut ok = true;
    for a in &submitted {
        let mut line = format!("  {}", a.id);
        for agency in AGENCIES.iter().filter(|ag| **ag != a.origin) {
            let got = held[*agency].iter().find(|h| h.id == a.id);
            match got {
                Some(h) if h.subjects.is_empty() => {
                    line.push_str(&format!("  -> {agency}: delivered, no raw identifiers"))
                }
                Some(_) => {
                    ok = false;
                    line.push_str(&format!("  -> {agency}: LEAKED SUBJECTS"));
                }
                None => {
                    ok = false;
                    line.push_str(&format!("  -> {agency}: MISSING"));
                }
            }
        }
        println!("{line}");
    }

    // The same phone number, written differently by police and ngo, must
    // give a hit on both sides (without either seeing the other's number).
    println!("\nhits:");
    let expected_hits = [
        ("police", "ngo"),
        ("ngo", "police"),
        ("labour", "ngo"),
        ("ngo", "labour"),
    ];
    for (agency, other) in expected_hits {
        let found = wait_for_hit(&fed.layout, agency, other).await?;
        match found {
            Some(h) => println!(
                "  {agency:<7} your {} relates to {} at {other} (same {}, similarity {:.2})",
                h.local_alert_id,
                h.other_alert_id,
                IdentifierType::try_from(h.r#type).map_or("identifier".to_string(), |t| t
                    .as_str_name()
                    .trim_start_matches("IDENTIFIER_TYPE_")
                    .to_ascii_lowercase()),
                h.similarity
            ),
            None => {
                ok = false;
                println!("  {agency:<7} MISSING the expected hit with {other}");
            }
        }
    }

    if !args.once {
        println!("\nThe federation keeps running. Try, in another terminal:");
        let police = &fed
            .layout
            .agencies
            .iter()
            .find(|(id, _)| id.as_str() == "police")
            .expect("police")
            .1;
        println!(
            "  export CASEBRIDGE_CLIENT_CONFIG={}",
            police.client_config("cms").display()
        );
        println!("  casebridge alert list");
        println!(
            "  casebridge --client-config {} peers",
            police.client_config("admin").display()
        );
        println!("Press Ctrl-C to stop.");
        super::shutdown_signal().await;
    }
    for (_, node) in fed.nodes {
        node.shutdown().await?;
    }
    if ok {
        println!(
            "\nall {} deliveries and {} hits happened",
            submitted.len() * (AGENCIES.len() - 1),
            expected_hits.len()
        );
        Ok(())
    } else {
        Err(super::failure(
            1,
            anyhow!("some expected deliveries or hits did not happen"),
        ))
    }
}
