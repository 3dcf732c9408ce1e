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
    Alert, AlertContent, AlertDraft, Category, Confidence, Email, ExplainPolicyRequest,
    HandlingCode, Hit, Identifier, IdentifierType, Indicator, ListAlertsRequest, Location,
    PeerDecision, PersonName, Phone, Severity, Subject, SubjectRole, SubmitAlertRequest, Tlp,
    WatchHitsRequest, identifier::Kind,
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

/// The worked examples of `docs/policy.md`, installed as each demo agency's
/// policy: the demo shows realistic sharing, not share-everything.
const POLICIES: [(&str, &str); 3] = [
    (
        "police",
        include_str!("../../docs/examples/policy-police.toml"),
    ),
    (
        "labour",
        include_str!("../../docs/examples/policy-labour.toml"),
    ),
    ("ngo", include_str!("../../docs/examples/policy-ngo.toml")),
];
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn identifier(kind: Kind) -> Identifier {
    Identifier { kind: Some(kind) }
}

/// Sample alerts per origin agency. Every one carries subjects, so the demo
/// shows they stay home; the first is TLP:RED, so it shows that too.
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
            // H1 (law enforcement only) where it stays home anyway; the
            // others may not go further without the originator's consent.
            handling_code: if tlp == Tlp::Red {
                HandlingCode::H1 as i32
            } else {
                HandlingCode::H2 as i32
            },
            ..Default::default()
        }),
        subjects,
        ..Default::default()
    };
    vec![
        (
            "police",
            draft(
                Category::ChildTrafficking,
                Severity::Critical,
                Tlp::Red,
                "NL",
                "Utrecht",
                "Covert operation in progress; the number below is under interception.",
                &[Indicator::RestrictionOfMovement],
                vec![Subject {
                    profile: None,
                    role: SubjectRole::SuspectedTrafficker as i32,
                    identifiers: vec![identifier(Kind::Phone(Phone {
                        number: "+31 6 1234 5678".into(),
                        region: String::new(),
                    }))],
                }],
            ),
        ),
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
                    profile: None,
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
                    profile: None,
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
                        profile: None,
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
                        profile: None,
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
    /// The federation's OPRF key service: every node's exact tokens.
    key_service: crate::keyservice::RunningKeyService,
    nodes: BTreeMap<AgencyId, RunningNode>,
    /// Each client certificate as a file a browser imports, for the console.
    bundles: Vec<crate::certs::BrowserBundle>,
}

async fn start_federation(dir: &std::path::Path) -> anyhow::Result<Federation> {
    let federation = FederationName::new("demo.casebridge").map_err(|e| anyhow!(e))?;
    let ids: Vec<AgencyId> = AGENCIES
        .iter()
        .map(|a| AgencyId::new(*a).expect("static ids"))
        .collect();
    let addrs = free_loopback_addrs(&ids)?;
    let layout = init_federation(&federation, &addrs, dir)?;
    let ks = crate::certs::add_key_service(&federation, &layout)?;
    let ks_config = crate::config::KeyServiceConfig::load(&ks.config)?;
    let key_service =
        crate::keyservice::start(&ks_config, crate::keyservice::bind(&ks_config).await?).await?;
    let bundles = crate::certs::write_browser_bundles(&layout)?;
    for (agency, policy) in POLICIES {
        if let Some((_, a)) = layout.agencies.iter().find(|(id, _)| id.as_str() == agency) {
            std::fs::write(a.dir.join("policy.toml"), policy)?;
        }
    }
    let mut nodes = BTreeMap::new();
    for (id, agency) in &layout.agencies {
        let mut config = NodeConfig::load(&agency.node_config)?;
        // A throw-away federation: stop at once, no load balancer to drain.
        config.limits.drain_grace_secs = crate::config::Bounded::new(0);
        let listeners = Listeners::bind(&config).await?;
        nodes.insert(id.clone(), start(config, listeners).await?);
    }
    Ok(Federation {
        layout,
        key_service,
        nodes,
        bundles,
    })
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

/// What the receiving agency got, in a few words (the policy's levels at work).
fn received_view(h: &Alert) -> String {
    let Some(c) = &h.content else {
        return "no content".into();
    };
    let location = c.location.as_ref().map_or("no location".to_string(), |l| {
        [l.country.as_str(), &l.region, &l.city]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/")
    });
    format!(
        "{location}, {}, no raw identifiers",
        if c.narrative.is_empty() {
            "narrative withheld"
        } else {
            "narrative"
        }
    )
}

/// The first hit at `agency` with an alert of `other`, waiting a bounded time.
/// Every hit `agency` knows with `other` (one per pair of alerts and
/// identifier type, as its hit log first recorded it), once there are
/// `at_least`; fewer if no more came in time.
async fn wait_for_hits(
    layout: &FederationLayout,
    agency: &str,
    other: &str,
    at_least: usize,
) -> anyhow::Result<Vec<Hit>> {
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
        let mut hits: Vec<Hit> = Vec::new();
        while let Some(h) = stream.message().await? {
            let same = |k: &Hit| {
                (&k.local_alert_id, &k.other_alert_id, k.r#type)
                    == (&h.local_alert_id, &h.other_alert_id, h.r#type)
            };
            if h.other_agency == other && !hits.iter().any(same) {
                hits.push(h);
            }
        }
        if hits.len() >= at_least || Instant::now() > deadline {
            return Ok(hits);
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
    let submitted = submit_samples(&fed).await?;
    let expected = explain_all(&fed, &submitted).await?;
    let held = wait_for_deliveries(&fed, &expected).await?;
    let (mut ok, deliveries) = report_deliveries(&expected, &held);
    let hits = report_hits(&fed).await?;
    ok &= hits.0;
    ok &= after_the_hit(&fed).await?;
    if !args.once {
        print_what_to_try(&fed);
        super::session::shutdown_signal().await;
    }
    for (_, node) in fed.nodes {
        node.shutdown().await?;
    }
    fed.key_service
        .shutdown()
        .await
        .map_err(|e| super::exit::failure(super::exit::Exit::Failure, e))?;
    ok &= verify_audit_logs(&fed.layout).await?;
    if ok {
        println!(
            "\nall {deliveries} deliveries the policies allow, {} hits and the disclosure path happened; nothing else left a node",
            hits.1
        );
        Ok(())
    } else {
        Err(super::exit::failure(
            super::exit::Exit::Failure,
            anyhow!("some expected deliveries, hits or steps after a hit did not happen"),
        ))
    }
}

/// Submits the sample alerts at their origins.
async fn submit_samples(fed: &Federation) -> Result<Vec<Alert>, Failure> {
    let mut submitted = Vec::new();
    for (origin, draft) in samples() {
        let mut c = client(&fed.layout, origin, "cms").await?;
        let alert = c
            .alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(draft),
                request_id: String::new(),
                validate_only: false,
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
    Ok(submitted)
}

/// What each origin's policy says about each of its alerts and peers.
async fn explain_all(
    fed: &Federation,
    submitted: &[Alert],
) -> Result<Vec<(Alert, Vec<PeerDecision>)>, Failure> {
    // What each origin's policy says about each of its alerts and peers.
    let mut expected: Vec<(Alert, Vec<PeerDecision>)> = Vec::new();
    for a in submitted {
        let mut admin = client(&fed.layout, &a.origin, "admin").await?;
        let why = admin
            .admin
            .explain_policy(ExplainPolicyRequest {
                alert_id: a.id.clone(),
                peers: vec![],
                policy_text: String::new(),
            })
            .await?
            .into_inner();
        expected.push((a.clone(), why.decisions));
    }
    Ok(expected)
}

/// Waits until every alert is at every peer its policy shares it with
/// (bounded), and returns what each agency holds then.
async fn wait_for_deliveries(
    fed: &Federation,
    expected: &[(Alert, Vec<PeerDecision>)],
) -> Result<BTreeMap<String, Vec<Alert>>, Failure> {
    // Wait until every alert is at every peer its policy shares it with (bounded).
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut held: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
    loop {
        for agency in AGENCIES {
            held.insert(agency.to_string(), list(&fed.layout, agency).await?);
        }
        let complete = expected.iter().all(|(a, decisions)| {
            decisions.iter().filter(|d| d.shared).all(|d| {
                held[&d.peer]
                    .iter()
                    .any(|h| h.id == a.id && h.version == a.version)
            })
        });
        if complete || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(held)
}

/// Prints each delivery against its policy decision; whether all held,
/// and how many deliveries there were.
fn report_deliveries(
    expected: &[(Alert, Vec<PeerDecision>)],
    held: &BTreeMap<String, Vec<Alert>>,
) -> (bool, usize) {
    println!("\ndeliveries (each origin's sharing policy decides):");
    let mut ok = true;
    let mut deliveries = 0;
    for (a, decisions) in expected {
        println!("  {} from {}", a.id, a.origin);
        for d in decisions {
            let got = held[&d.peer].iter().find(|h| h.id == a.id);
            let line = match (d.shared, got) {
                (true, Some(h)) if h.subjects.is_empty() => {
                    deliveries += 1;
                    format!("delivered by rule `{}`: {}", d.rule, received_view(h))
                }
                (true, Some(_)) => {
                    ok = false;
                    "LEAKED SUBJECTS".to_string()
                }
                (true, None) => {
                    ok = false;
                    format!("MISSING (rule `{}` shares it)", d.rule)
                }
                (false, None) => format!("not shared: {}", d.reason),
                (false, Some(_)) => {
                    ok = false;
                    format!("DELIVERED AGAINST THE POLICY ({})", d.reason)
                }
            };
            println!("    -> {:<7} {line}", d.peer);
        }
    }
    (ok, deliveries)
}

/// Waits for the hits the samples must make and prints them; whether all
/// came, and how many were expected.
async fn report_hits(fed: &Federation) -> Result<(bool, usize), Failure> {
    let mut ok = true;
    // The same phone number, written differently by police and ngo, must
    // give a hit on both sides (without either seeing the other's number).
    println!("\nhits:");
    // (agency, other, hits): police holds two with ngo, one of them with
    // its TLP:RED alert, which only police knows of (RED never leaves).
    let expected_hits = [
        ("police", "ngo", 2),
        ("ngo", "police", 1),
        ("labour", "ngo", 1),
        ("ngo", "labour", 1),
    ];
    for (agency, other, expected) in expected_hits {
        let found = wait_for_hits(&fed.layout, agency, other, expected).await?;
        if found.len() < expected {
            ok = false;
            println!(
                "  {agency:<7} MISSING {} of the {expected} expected hits with {other}",
                expected - found.len()
            );
        }
        for h in found {
            println!(
                "  {agency:<7} your {} relates to {} at {other} (same {}, {}, score {:.2})",
                h.local_alert_id,
                h.other_alert_id,
                IdentifierType::try_from(h.r#type).map_or("identifier".to_string(), |t| t
                    .as_str_name()
                    .trim_start_matches("IDENTIFIER_TYPE_")
                    .to_ascii_lowercase()),
                crate::proto::strength_name(h.strength),
                h.similarity
            );
        }
    }
    Ok((ok, expected_hits.iter().map(|(_, _, n)| n).sum()))
}

/// Waits (bounded) until `check` gives a value.
async fn within<T, F, Fut>(mut check: F) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        if let Some(v) = check().await? {
            return Ok(Some(v));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After a hit, inside CaseBridge: police's analyst confirms its hit with
/// the NGO's alert and asks the NGO for its data (the caller consented to a
/// referral); the NGO's legal officer sees the request, what its policy
/// allows, and approves within it; the release reaches police only. Whether
/// every step happened.
async fn after_the_hit(fed: &Federation) -> Result<bool, Failure> {
    use crate::proto::v1::send_disclosure_request::About;
    use crate::proto::v1::{
        GetReleaseRequest, HitVerdict, LegalBasis, ReviewHitRequest, SendDisclosureRequest, Urgency,
    };
    println!(
        "\nafter a hit (a person confirms it, then asks; the holder decides within its policy):"
    );
    let missing = |step: &str| {
        println!("  MISSING: {step}");
        Ok(false)
    };
    let Some(hit) = wait_for_hits(&fed.layout, "police", "ngo", 1)
        .await?
        .into_iter()
        .next()
    else {
        return missing("police's hit with ngo");
    };
    let mut police = client(&fed.layout, "police", "analyst").await?;
    police
        .alerts
        .review_hit(ReviewHitRequest {
            number: hit.number,
            verdict: HitVerdict::Confirmed as i32,
            note: "same number as in our advert case".into(),
        })
        .await?;
    println!(
        "  police  analyst confirms hit {} (your {} <-> {} at ngo)",
        hit.number, hit.local_alert_id, hit.other_alert_id
    );
    let sent = police
        .disclosure
        .send_request(SendDisclosureRequest {
            about: Some(About::HitNumber(hit.number)),
            legal_basis: LegalBasis::VictimReferralConsent as i32,
            citation: "the caller's written consent to a referral".into(),
            purpose: "offer the caller protection as a possible victim".into(),
            case_reference: "POL-2026-4711".into(),
            urgency: Urgency::Urgent as i32,
            due_at: None,
            verification: Vec::new(),
        })
        .await?
        .into_inner();
    let id = sent.request.map(|r| r.id).unwrap_or_default();
    println!(
        "  police  asks ngo for its data: request {id} (victim referral with consent, urgent: 3 days)"
    );
    let Some(release_id) = ngo_decides(fed, &id).await? else {
        return missing("the request at ngo");
    };
    let Some(release) = within(|| {
        let mut police = police.clone();
        let id = release_id.clone();
        async move {
            Ok(police
                .disclosure
                .get_release(GetReleaseRequest { id })
                .await
                .ok()
                .map(|r| r.into_inner()))
        }
    })
    .await?
    else {
        return missing("the release at police");
    };
    let r = release.release.unwrap_or_default();
    let identifiers: usize = r.subjects.iter().map(|s| s.identifiers.len()).sum();
    println!(
        "  police  holds the release apart from alerts: {}, {identifiers} identifier(s) in clear, handling H2 (no onward disclosure), contact: {}",
        r.released_fields, r.contact_point
    );
    let labour_has_it = client(&fed.layout, "labour", "analyst")
        .await?
        .disclosure
        .list_releases(crate::proto::v1::ListReleasesRequest::default())
        .await?
        .into_inner()
        .releases
        .iter()
        .any(|x| x.release.as_ref().is_some_and(|x| x.id == release_id));
    if labour_has_it || identifiers == 0 {
        return missing("a release to police only, with the phone number");
    }
    Ok(true)
}

/// The NGO's legal officer sees police's request `id` and approves it in
/// part, within the NGO's rule; the release's id, once done.
async fn ngo_decides(fed: &Federation, id: &str) -> Result<Option<String>, Failure> {
    use crate::proto::v1::{
        DecideRequest, DisclosureState, GetDisclosureRequestRequest, HandlingCode, LocationDetail,
        ReleaseSelection, TimeDetail,
    };
    let id = id.to_owned();
    let mut legal = client(&fed.layout, "ngo", "legal").await?;
    let Some(received) = within(|| {
        let mut legal = legal.clone();
        let id = id.clone();
        async move {
            Ok(legal
                .disclosure
                .get_request(GetDisclosureRequestRequest { id })
                .await
                .ok()
                .map(|r| r.into_inner()))
        }
    })
    .await?
    else {
        return Ok(None);
    };
    println!(
        "  ngo     legal officer sees it; policy rule `{}` allows at most: {}",
        received.rule, received.release_maximum
    );
    let decided = legal
        .disclosure
        .decide(DecideRequest {
            id: id.clone(),
            outcome: DisclosureState::PartiallyApproved as i32,
            ground: 0,
            note: "contact details only; the caller's account stays with us".into(),
            release: Some(ReleaseSelection {
                location: LocationDetail::Region as i32,
                time: TimeDetail::Month as i32,
                narrative: false,
                indicators: true,
                identifiers: vec![crate::proto::v1::IdentifierType::Phone as i32],
            }),
            contact_point: "NGO hotline coordinator, +31 20 000 0000".into(),
            handling: HandlingCode::H2 as i32,
            retention_days: 30,
        })
        .await?
        .into_inner();
    let release_id = decided.decision.map(|d| d.release_id).unwrap_or_default();
    println!(
        "  ngo     approves in part: region, month, indicators and the phone number, handling H2 ({release_id})"
    );
    Ok(Some(release_id))
}

fn print_what_to_try(fed: &Federation) {
    println!("\nThe federation keeps running. Try, in another terminal:");
    let police = &fed
        .layout
        .agencies
        .iter()
        .find(|(id, _)| id.as_str() == "police")
        .expect("police")
        .1;
    // The binary that runs now, by its path: `cargo run` does not put it
    // on PATH, so a bare `casebridge` would not be found.
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "casebridge".into());
    println!(
        "  export CASEBRIDGE_CLIENT_CONFIG={}",
        police.client_config("cms").display()
    );
    println!("  {exe} alert list");
    println!(
        "  {exe} --client-config {} peers",
        police.client_config("admin").display()
    );
    println!(
        "  {exe} --client-config {} audit query --limit 20",
        police.client_config("admin").display()
    );
    println!(
        "  {exe} --client-config {} requests list",
        police.client_config("analyst").display()
    );
    println!(
        "  {exe} --client-config {} releases list",
        police.client_config("analyst").display()
    );
    print_consoles(fed);
    print_intakes(fed);
    println!("Press Ctrl-C to stop.");
}

/// Where each node's web console is, and the certificate files to open it
/// with (each password is shown only here).
fn print_consoles(fed: &Federation) {
    println!(
        "\nWeb consoles (docs/console.md). In the browser, trust {} as a certificate \
         authority, then import a client certificate:",
        fed.layout.federation_ca.display()
    );
    for (id, node) in &fed.nodes {
        let Some(addr) = node.console_addr() else {
            continue;
        };
        println!("  {id}: https://{addr}/");
        for b in fed.bundles.iter().filter(|b| &b.agency == id) {
            println!(
                "    {:<8} {}  password {}",
                b.client.as_str(),
                b.path.display(),
                b.password
            );
        }
    }
}

/// Where each public report intake is (the NGO's, in the demo).
fn print_intakes(fed: &Federation) {
    for (id, node) in &fed.nodes {
        if let Some(addr) = node.intake_addr() {
            println!(
                "\nPublic report intake of {id} (docs/intake.md): https://{addr}/ — no \
                 certificate needed; reports are triaged in {id}'s console as `caseworker`."
            );
        }
    }
}

/// Every node's audit log, checked the way an auditor would (nodes
/// stopped, each with its own public key); whether all are intact.
async fn verify_audit_logs(layout: &FederationLayout) -> Result<bool, Failure> {
    let mut ok = true;
    // Every node's audit log, checked the way an auditor would.
    println!("\naudit logs (stopped nodes, verified with each node's public key):");
    for (id, agency) in &layout.agencies {
        let config = NodeConfig::load(&agency.node_config)?;
        let key = super::audit::node_public_key(&config)?;
        let vault = super::store::vault_of(&config)?;
        let store = super::store::open_stopped(&config.store.dir, vault.as_ref())?;
        let checked = store.audit_verify(&key, &[]);
        store.close().await?;
        match checked {
            Ok(s) => println!(
                "  {:<7} {} entries, chain intact, {} signed checkpoints, {} entries after the last",
                id.as_str(),
                s.entries,
                s.checkpoints,
                s.unsigned_tail()
            ),
            Err(broken) => {
                ok = false;
                println!("  {:<7} {broken}", id.as_str());
            }
        }
    }
    // The key service's own log: one entry per evaluation, counts only.
    let ks = crate::config::KeyServiceConfig::load(&layout.dir.join("keyservice/keyservice.toml"))?;
    let key = crate::audit::signing::PublicKey::of_signing_key(&ks.audit_signing_key())
        .map_err(|e| super::exit::failure(super::exit::Exit::Failure, e))?;
    let store = super::store::open_stopped(&ks.data_dir, None)?;
    let checked = store.audit_verify(&key, &[]);
    let evaluated: u64 = store
        .audit_entries(1)
        .filter_map(|r| r.ok()?.entry().ok())
        .filter(|e| {
            e.event.action == crate::audit::Action::KeyServiceEvaluate && e.event.outcome == "OK"
        })
        .filter_map(|e| e.event.detail.get("elements")?.parse::<u64>().ok())
        .sum();
    store.close().await?;
    match checked {
        Ok(s) => println!(
            "  key service: {} entries, chain intact, {} signed checkpoints; {evaluated} blinded identifiers evaluated, none seen",
            s.entries, s.checkpoints
        ),
        Err(broken) => {
            ok = false;
            println!("  key service: {broken}");
        }
    }
    Ok(ok)
}
