//! Private federated statistics between four real nodes over mTLS: the
//! plan arrives in a signed directory version, every member sends its
//! report shares to the two aggregators (police leads, ngo helps), they
//! verify and sum them together, and every member adds the two noisy sums.
//! The cases are planted, so the test knows the truth: each published cell
//! is within the noise bound `stats::publish::noise_bound` states for the
//! plan's epsilon (failure probability 1e-9 per cell), cases police and
//! the ngo both hold (linked by an exact hit) count once, and cells whose
//! truth is zero stay under the minimum and are suppressed.

#[path = "console/browser.rs"]
#[allow(dead_code)] // the console's tests use the rest
mod browser;
mod common;

use std::path::PathBuf;

use casebridge::config::{Bounded, DirectoryConfig};
use casebridge::proto::v1::envelope::Payload;
use casebridge::proto::v1::{
    AckStatus, AlertContent, AlertDraft, Category, Identifier, ListStatsRequest, Location, Phone,
    RunStatsRequest, Severity, StatisticsPlan, StatisticsTable, StatisticsTableKind,
    StatsReleaseRef, StatsReleaseView, StatsReport, StatsReports, Subject, SubjectRole, TimeWindow,
    Tlp, identifier::Kind,
};
use casebridge::stats::plan::{Period, PlanInForce, TableKind};
use casebridge::stats::publish::noise_bound;
use casebridge::stats::tables::Shape;
use common::operators::{Operators, directory};
use common::*;

const AGENCIES: [&str; 4] = ["border", "labour", "ngo", "police"];
/// The largest epsilon a plan allows: the noise bound is then about ±9.
const EPSILON_MILLI: u32 = 10_000;
const MIN_CELL: u32 = 11;

/// Everyone shares phone tokens with everyone, so shared phones make hits.
fn policy() -> &'static str {
    "[[rules]]\nname = \"share\"\neffect = \"share\"\npeers = [\"group:law-enforcement\", \"group:ngo\", \"group:labour-inspectorate\"]\n[rules.share]\nnarrative = \"full\"\nidentifiers = { phone = \"exact\" }\n"
}

async fn start(ops: &Operators) -> TestFederation {
    let anchors: Vec<(String, PathBuf)> = AGENCIES
        .iter()
        .map(|a| (a.to_string(), ops.anchor(a)))
        .collect();
    TestFederation::reserve(&AGENCIES, move |id, config| {
        config.peers.clear();
        let anchor = anchors
            .iter()
            .find(|(a, _)| a == id.as_str())
            .unwrap()
            .1
            .clone();
        let policy = anchor.with_file_name(format!("policy-{id}.toml"));
        std::fs::write(&policy, self::policy()).unwrap();
        config.sharing.policy = Some(toml::Spanned::new(0..0, policy));
        config.directory = Some(DirectoryConfig {
            anchor: toml::Spanned::new(0..0, anchor),
            file: None,
            grace_secs: Bounded::new(259_200),
        });
        config.delivery.probe_interval_secs = Bounded::new(1);
        with_console(id, config);
        config.metrics.listen = Some(toml::Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()));
    })
    .await
}

fn plan(period: Period) -> StatisticsPlan {
    let table = |name: &str, kind: StatisticsTableKind| StatisticsTable {
        name: name.into(),
        kind: kind.into(),
        epsilon_milli: EPSILON_MILLI,
        budget_milli: EPSILON_MILLI,
    };
    // The same counts at half the epsilon, which a quarter can pay twice:
    // the table a recount is tried on.
    let twice = StatisticsTable {
        epsilon_milli: EPSILON_MILLI / 2,
        ..table("recount", StatisticsTableKind::Exploitation)
    };
    StatisticsPlan {
        aggregators: vec!["police".into(), "ngo".into()],
        min_cell: MIN_CELL,
        countries: vec!["DE".into(), "NL".into(), "RO".into()],
        collect_days: 90,
        tables: vec![
            table("exploitation", StatisticsTableKind::Exploitation),
            table("cross-agency", StatisticsTableKind::CrossAgency),
            table("clusters", StatisticsTableKind::Clusters),
            table("victims", StatisticsTableKind::Victims),
            table("recruitment", StatisticsTableKind::Recruitment),
            twice,
        ],
        first_period: period.to_string(),
    }
}

/// Who the victims of the planted cases are, by where and how they were
/// exploited: NL labour — men from RO, 25-34, a job offer; RO sexual —
/// women from RO, 18-24 (from the date of birth), an intimate partner met
/// on social media; DE labour — men from UA (no row of its own), 35-49,
/// a recruitment agency.
fn victim(country: &str, category: Category, phone: &str) -> Subject {
    use casebridge::proto::v1::{
        AgeBand, Gender, PersonName, RecruitmentMethod as M, VictimProfile,
    };
    let (gender, citizenship, age_band, recruitment) = match (country, category) {
        ("NL", Category::LabourExploitation) => {
            (Gender::Male, "RO", AgeBand::AgeBand2534, vec![M::JobOffer])
        }
        ("RO", _) => (
            Gender::Female,
            "RO",
            AgeBand::Unspecified,
            vec![M::IntimatePartner, M::SocialMedia],
        ),
        _ => (
            Gender::Male,
            "UA",
            AgeBand::AgeBand3549,
            vec![M::RecruitmentAgency],
        ),
    };
    let mut identifiers = vec![Identifier {
        kind: Some(Kind::Phone(Phone {
            number: phone.into(),
            region: "NL".into(),
        })),
    }];
    if age_band == AgeBand::Unspecified {
        // Born on 1 January 21 years before the quarter the case began
        // in: 21 on its day, so 18-24 from the date of birth alone.
        let quarter = Period::last_ended(casebridge::time::now_ms() / 1000).unwrap();
        let year: i32 = quarter.to_string()[..4].parse().unwrap();
        identifiers.push(Identifier {
            kind: Some(Kind::Person(PersonName {
                given_names: "Ana".into(),
                family_name: format!("Planted {phone}"),
                date_of_birth: format!("{}-01-01", year - 21),
            })),
        });
    }
    Subject {
        role: SubjectRole::PotentialVictim as i32,
        identifiers,
        profile: Some(VictimProfile {
            gender: gender as i32,
            citizenship: citizenship.into(),
            age_band: age_band as i32,
            recruitment: recruitment.into_iter().map(|m| m as i32).collect(),
        }),
    }
}

/// A case of `category` in `country` whose exploitation began in
/// `period`, about the person with phone number `phone`.
fn case(country: &str, category: Category, period: Period, phone: &str) -> AlertDraft {
    AlertDraft {
        content: Some(AlertContent {
            category: category as i32,
            severity: Severity::High as i32,
            tlp: Tlp::Amber as i32,
            location: Some(Location {
                country: country.into(),
                ..Default::default()
            }),
            time_window: Some(TimeWindow {
                start: Some(casebridge::time::ms_timestamp(
                    (period.start() + 86_400) * 1000,
                )),
                end: None,
            }),
            narrative: "planted for the statistics test".into(),
            ..Default::default()
        }),
        subjects: vec![victim(country, category, phone)],
        ..Default::default()
    }
}

async fn plant(fed: &TestFederation, at: &str, n: usize, draft: impl Fn(usize) -> AlertDraft) {
    let mut cms = fed.client(at, "cms").await;
    for i in 0..n {
        submit_draft(&mut cms, draft(i)).await;
    }
}

async fn released(fed: &TestFederation, at: &str, table: &str) -> StatsReleaseView {
    eventually(&format!("{table} released at {at}"), || async {
        let mut reader = fed.client(at, "admin").await;
        let list = reader
            .admin
            .list_stats(ListStatsRequest {})
            .await
            .ok()?
            .into_inner();
        list.releases
            .into_iter()
            .find(|r| r.release.as_ref().is_some_and(|r| r.table == table) && r.released_at != 0)
    })
    .await
}

/// The published value of the cell at (`row`, `column`), if shown.
fn cell(v: &StatsReleaseView, row: &str, column: &str) -> Option<i64> {
    let r = v.rows.iter().position(|x| x == row).unwrap();
    let c = v.columns.iter().position(|x| x == column).unwrap();
    let value = v.cells[r * v.columns.len() + c];
    (value >= 0).then_some(value)
}

/// A started federation with the planted cases and their hits, before
/// any plan: `running` are the nodes started (border may be played by
/// the test instead).
struct Planted {
    fed: TestFederation,
    ops: Operators,
    last: Period,
}

/// Police: 30 labour cases in NL, 25 sexual exploitation in RO. The ngo:
/// 25 in NL, 20 of them about people police holds too (same phones).
/// Labour: 20 in DE. Border: none of its own.
async fn planted(running: &[&str]) -> Planted {
    let ops = Operators::new();
    let mut fed = start(&ops).await;
    let v1 = ops.sign(directory(&fed, &ops, 1, &AGENCIES), &[1, 2]);
    for a in AGENCIES {
        std::fs::write(ops.anchor(a), v1.to_json()).unwrap();
    }
    for a in running {
        fed.start_node(a).await;
    }
    let last = Period::last_ended(casebridge::time::now_ms() / 1000).unwrap();
    let phone = |prefix: u32, i: usize| format!("+31 6 {prefix} {i:04}");
    let labour = Category::LabourExploitation;
    plant(&fed, "police", 30, |i| {
        case("NL", labour, last, &phone(1000, i))
    })
    .await;
    plant(&fed, "police", 25, |i| {
        case("RO", Category::SexualExploitation, last, &phone(2000, i))
    })
    .await;
    plant(&fed, "ngo", 25, |i| {
        let p = if i < 20 {
            phone(1000, i)
        } else {
            phone(3000, i)
        };
        case("NL", labour, last, &p)
    })
    .await;
    plant(&fed, "labour", 20, |i| {
        case("DE", labour, last, &phone(4000, i))
    })
    .await;
    // Both sides of each of the 20 pairs know the hit before the plan comes.
    for a in ["police", "ngo"] {
        eventually(&format!("20 hits at {a}"), || async {
            let mut c = fed.client(a, "cms").await;
            (hit_log(&mut c).await.len() >= 20).then_some(())
        })
        .await;
    }
    Planted { fed, ops, last }
}

impl Planted {
    /// Directory version 2, with the plan, published at police.
    async fn publish_plan(&self) -> casebridge::stats::plan::PlanInForce {
        let mut with_plan = directory(&self.fed, &self.ops, 2, &AGENCIES);
        let plan = plan(self.last);
        with_plan.statistics = Some(plan.clone());
        let v2 = self.ops.sign(with_plan, &[1, 2]);
        std::fs::write(self.ops.anchor("border"), v2.to_json()).unwrap();
        self.fed.publish_directory("police", &v2).await.unwrap();
        casebridge::stats::plan::PlanInForce::of(&plan).unwrap()
    }
}

fn countries() -> [casebridge::ids::CountryCode; 3] {
    ["DE", "NL", "RO"].map(|c| casebridge::ids::CountryCode::new(c).unwrap())
}

/// The bound the noise of one cell of a `kind` table stays within.
fn bound(kind: TableKind) -> i64 {
    noise_bound(&Shape::of(kind, &countries()), EPSILON_MILLI, 1e-9) as i64
}

#[track_caller]
fn near(got: Option<i64>, truth: i64, b: i64) {
    let got = got.unwrap_or_else(|| panic!("the cell of truth {truth} is suppressed"));
    assert!(
        (got - truth).abs() <= b,
        "{got} is not within {b} of {truth}"
    );
}

/// Every table, as `at` holds it, is the planted truth within the noise
/// bound, with `ro_sexual` cases of sexual exploitation in RO.
async fn check_tables(fed: &TestFederation, at: &str, ro_sexual: i64) {
    let v = released(fed, at, "exploitation").await;
    let b = bound(TableKind::Exploitation);
    assert!(
        b < 11,
        "the test's counts need a bound under the minimum, got {b}"
    );
    assert_eq!(v.members, 4, "computed from every agency");
    // 30 + 25 - 20: the 20 people both hold count once (55 without).
    near(cell(&v, "NL", "labour"), 35, b);
    near(cell(&v, "RO", "sexual"), ro_sexual, b);
    near(cell(&v, "DE", "labour"), 20, b);
    // Nothing true there: under the minimum, so absent.
    assert_eq!(cell(&v, "DE", "sexual"), None);
    assert_eq!(cell(&v, "other", "labour"), None);
    let cross = released(fed, at, "cross-agency").await;
    near(
        cell(&cross, "NL", "cases"),
        20,
        bound(TableKind::CrossAgency),
    );
    assert_eq!(cell(&cross, "RO", "cases"), None);
    let clusters = released(fed, at, "clusters").await;
    near(
        cell(&clusters, "2 alerts", "2 agencies"),
        20,
        bound(TableKind::Clusters),
    );
    assert_eq!(cell(&clusters, "3 alerts", "3 agencies"), None);
    let victims = released(fed, at, "victims").await;
    let b = bound(TableKind::Victims);
    near(cell(&victims, "RO", "male, 25-34"), 35, b);
    near(cell(&victims, "RO", "female, 18-24"), 25, b);
    near(cell(&victims, "other", "male, 35-49"), 20, b);
    assert_eq!(cell(&victims, "NL", "male, 25-34"), None);
    assert_eq!(cell(&victims, "RO", "female, age not stated"), None);
    let recruitment = released(fed, at, "recruitment").await;
    let b = bound(TableKind::Recruitment);
    near(cell(&recruitment, "job offer", "cases"), 35, b);
    near(cell(&recruitment, "intimate partner", "cases"), 25, b);
    near(cell(&recruitment, "social media", "cases"), 25, b);
    near(cell(&recruitment, "recruitment agency", "cases"), 20, b);
    assert_eq!(cell(&recruitment, "abduction", "cases"), None);
}

/// What the aggregators logged of the run holds no member's own counts:
/// every count of reports they saw is a multiple of the 256 each member
/// pads to (its chunks, the batches, the sums), and what they publish is
/// what every other member holds, cell for cell.
async fn aggregators_learn_nothing_more(fed: &TestFederation) {
    for a in ["police", "ngo"] {
        for action in [
            "stats.reports_receive",
            "stats.prepare",
            "stats.commit",
            "stats.sum",
        ] {
            for e in audited(fed, a, action).await {
                for key in ["reports", "shares", "accepted"] {
                    if let Some(n) = e.detail.get(key) {
                        let n: u64 = n.parse().unwrap();
                        assert_eq!(n % 256, 0, "{a} {action} {key}={n}: a member's own count");
                    }
                }
            }
        }
    }
    let list = |a: &'static str| async move {
        let mut reader = fed.client(a, "admin").await;
        reader
            .admin
            .list_stats(ListStatsRequest {})
            .await
            .unwrap()
            .into_inner()
            .releases
    };
    let seen_by_labour = list("labour").await;
    for a in ["police", "ngo"] {
        for v in list(a).await.iter().filter(|v| v.released_at != 0) {
            let same = seen_by_labour
                .iter()
                .find(|l| l.release == v.release)
                .unwrap();
            assert_eq!(
                (&v.cells, v.reports, v.members),
                (&same.cells, same.reports, same.members),
                "{a}"
            );
        }
    }
}

/// The audit entries of `action` at `at`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_agencies_publish_noisy_tables_counting_each_victim_once() {
    let p = planted(&AGENCIES).await;
    p.publish_plan().await;
    for a in AGENCIES {
        check_tables(&p.fed, a, 25).await;
    }
    aggregators_learn_nothing_more(&p.fed).await;
    // The ledger is in every node's audit log: one release per table, its
    // epsilon, what the quarter has spent and may spend.
    let tables = plan(p.last).tables.len();
    for a in AGENCIES {
        let entries = eventually(&format!("{tables} releases at {a}"), || async {
            let entries = audited(&p.fed, a, "stats.release").await;
            (entries.len() == tables).then_some(entries)
        })
        .await;
        for e in &entries {
            // Each spent one release's epsilon, all its quarter had spent.
            assert_eq!(e.detail["spent_milli"], e.detail["epsilon_milli"]);
        }
    }
    // What people see: the console's page, and the Prometheus series.
    let page = console_exchange(&p.fed, "labour", "admin", "GET /statistics HTTP/1.1", b"").await;
    for words in [
        "Federation statistics",
        "Computed from 4 agencies",
        "exploitation",
        "&lt; 11",
    ] {
        assert!(page.contains(words), "{words} in {page}");
    }
    if browser::available() {
        let b = browser::Browser::open(&p.fed, "labour", "admin").await;
        b.goto("/statistics").await;
        assert!(b.text().await.contains("Computed from 4 agencies"));
        b.screenshot("statistics").await;
        b.close().await;
    }
    let (_, body) = http_get(p.fed.node("labour").metrics_addr().unwrap(), "/metrics").await;
    let spent = format!(
        "casebridge_stats_epsilon_spent_milli{{table=\"exploitation\",period=\"{}\"}} {EPSILON_MILLI}",
        p.last
    );
    assert!(body.contains(&spent), "{spent} in {body}");
    // A recount of the half-epsilon table: every member is called, sends
    // its reports again, and the second release spends the rest of the
    // quarter's budget.
    let mut admin = p.fed.client("police", "admin").await;
    let run = |table: &str, round: u32| RunStatsRequest {
        release: Some(StatsReleaseRef {
            table: table.into(),
            period: p.last.to_string(),
            round,
        }),
    };
    let called = admin
        .admin
        .run_stats(run("recount", 2))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !called.done && called.waiting.contains("called"),
        "{called:?}"
    );
    for a in AGENCIES {
        let recount = eventually(&format!("the recount at {a}"), || async {
            let mut reader = p.fed.client(a, "admin").await;
            let list = reader
                .admin
                .list_stats(ListStatsRequest {})
                .await
                .ok()?
                .into_inner();
            list.releases.into_iter().find(|v| {
                v.release
                    .as_ref()
                    .is_some_and(|r| r.table == "recount" && r.round == 2)
                    && v.released_at != 0
            })
        })
        .await;
        let shape = Shape::of(TableKind::Exploitation, &countries());
        let half = noise_bound(&shape, EPSILON_MILLI / 2, 1e-9) as i64;
        near(cell(&recount, "NL", "labour"), 35, half);
        // Two releases of half the epsilon: the quarter's budget, spent.
        assert_eq!(recount.spent_milli, EPSILON_MILLI);
        let releases = audited(&p.fed, a, "stats.release").await.len();
        assert_eq!(
            releases,
            tables + 1,
            "{a}: every table once, the recount again"
        );
    }
    // Past the budget: refused at once with the figures, and audited.
    for (table, round, figures) in [
        ("recount", 3, "spent 10000 of its 10000"),
        ("clusters", 2, "spent 10000 of its 10000"),
    ] {
        let refused = admin.admin.run_stats(run(table, round)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains(figures), "{}", refused.message());
    }
    assert_eq!(audited(&p.fed, "police", "stats.refuse").await.len(), 2);
    // Only the leader runs releases.
    let mut at_ngo = p.fed.client("ngo", "admin").await;
    let not_leader = at_ngo
        .admin
        .run_stats(RunStatsRequest {
            release: Some(StatsReleaseRef {
                table: "clusters".into(),
                period: p.last.to_string(),
                round: 1,
            }),
        })
        .await
        .unwrap_err();
    assert!(
        not_leader
            .message()
            .contains("only the plan's leader, police"),
        "{}",
        not_leader.message()
    );
    what_each_node_keeps(p).await;
}

/// Whether a 16-byte field element (Field128, either byte order) is a
/// small number, as a count is and a share is not but with probability
/// about 2^-96.
fn small(element: &[u8]) -> bool {
    element[4..].iter().all(|b| *b == 0) || element[..12].iter().all(|b| *b == 0)
}

/// Every node stopped and its store opened: what it keeps of the
/// statistics. An aggregator holds report shares and its own noisy sum,
/// and no count: the measurement part of every share the leader keeps,
/// and every element of the sums either aggregator keeps, is a random
/// field element, never a small number; the helper's shares are seeds, of
/// one size for tables of 9 to 121 cells. A
/// member that is not an aggregator holds no one's shares, only the two
/// noisy sums every member gets. (What crosses the wire is what is kept:
/// an aggregator keeps each chunk as it arrived.)
async fn what_each_node_keeps(mut p: Planted) {
    let plan = PlanInForce::of(&plan(p.last)).unwrap();
    for a in AGENCIES {
        p.fed.stop_node(a).await;
    }
    // The helper's shares are seeds: one size whatever the table's length.
    let mut helper_sizes = std::collections::BTreeSet::new();
    for a in AGENCIES {
        let dir = p.fed.config(a).store.dir;
        let store = casebridge::store::Store::open_audit_only(&dir, 8 << 20).unwrap();
        let records = store.stats_releases().unwrap();
        assert!(records.len() > plan.plan.tables.len(), "{a}: {records:?}");
        for rec in records {
            let r = rec.release.clone().unwrap();
            let table = plan.plan.table(&r.table).unwrap();
            let len = Shape::of(table.kind, &plan.plan.countries).measurement_len();
            for sum in rec.own_sum.iter().chain(&rec.sums) {
                let elements = sum.aggregate_share.chunks(16);
                assert_eq!(elements.len(), len, "{a} {r:?}");
                assert!(!elements.clone().any(small), "{a} keeps a count in {r:?}");
            }
            let aggregator = a == "police" || a == "ngo";
            if !aggregator || rec.released_at != 0 {
                assert_eq!(rec.own_sum.is_some(), aggregator, "{a} {r:?}");
            }
            for m in AGENCIES {
                let reports = store.stats_reports(&r, &m.parse().unwrap()).unwrap();
                match a {
                    "police" => {
                        let counts = reports
                            .iter()
                            .flat_map(|rep| rep.input_share[..len * 16].chunks(16))
                            .filter(|e| small(e))
                            .count();
                        assert_eq!(counts, 0, "police keeps {m}'s {r:?} in clear");
                    }
                    "ngo" => helper_sizes.extend(reports.iter().map(|rep| rep.input_share.len())),
                    _ => assert!(reports.is_empty(), "{a} holds {m}'s shares of {r:?}"),
                }
            }
        }
    }
    assert_eq!(helper_sizes.len(), 1, "{helper_sizes:?}");
    p.fed.shutdown().await;
}

/// The helper is down when the plan arrives: the release waits for it,
/// and completes once it is back, every report counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_waits_for_an_aggregator_that_is_down() {
    let mut p = planted(&AGENCIES).await;
    p.fed.stop_node("ngo").await;
    p.publish_plan().await;
    // Police, labour and border send their reports; ngo's wait in their
    // outboxes, and police cannot verify without it.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let mut admin = p.fed.client("police", "admin").await;
    let list = admin
        .admin
        .list_stats(ListStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        list.releases.iter().all(|r| r.released_at == 0),
        "released without the helper"
    );
    p.fed.start_node("ngo").await;
    for a in AGENCIES {
        check_tables(&p.fed, a, 25).await;
    }
    // Each aggregator summed each member's 256 reports once.
    for a in ["police", "ngo"] {
        for e in audited(&p.fed, a, "stats.sum").await {
            assert_eq!(e.detail["reports"], (4 * 256).to_string(), "{a}");
        }
    }
    p.fed.shutdown().await;
}

/// Border is played by the test: it sends its reports by hand, six of
/// them shares of a measurement no honest member can make (two buckets at
/// once, from another VDAF of the same length). The aggregators' joint
/// preparation rejects those six without learning them, and they change
/// no count; a share of the wrong size is refused on arrival, by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_out_of_range_is_rejected_in_preparation_and_counts_nothing() {
    use casebridge::stats::tables::Measurement;
    use casebridge::stats::vdaf::{Report, TableVdaf};
    use prio::codec::Encode;
    use prio::vdaf::Client;

    let p = planted(&["labour", "ngo", "police"]).await;
    let plan = p.publish_plan().await;
    for a in ["police", "ngo"] {
        eventually(&format!("{a} follows the plan"), || async {
            (p.fed.directory_version(a).await == 2).then_some(())
        })
        .await;
    }
    let federation = casebridge::ids::FederationName::new(FEDERATION).unwrap();
    let mut seq = 0;
    for table in &plan.plan.tables {
        let r = StatsReleaseRef {
            table: table.name.clone(),
            period: p.last.to_string(),
            round: 1,
        };
        let shape = Shape::of(table.kind, &plan.plan.countries);
        let vdaf = TableVdaf::new(&shape).unwrap();
        let ctx = casebridge::analytics::context(&federation, &plan, &r);
        let mut reports: Vec<Report> = Vec::new();
        if table.kind == TableKind::Exploitation {
            // Row RO (2) of 7 columns, column sexual (1): bucket 15.
            for _ in 0..20 {
                reports.push(vdaf.shard(&ctx, &Measurement::Bucket(15)).unwrap());
            }
            let len = shape.measurement_len();
            let cheat = prio::vdaf::prio3::Prio3::new_sum_vec(2, 1, len, len.isqrt()).unwrap();
            let two_hot: Vec<u128> = (0..len).map(|i| u128::from(i == 14 || i == 15)).collect();
            for n in 0..6u8 {
                let nonce = [n; 16];
                let (public, inputs) = cheat.shard(&ctx, &two_hot, &nonce).unwrap();
                reports.push(Report {
                    nonce,
                    public_share: public.get_encoded().unwrap(),
                    input_shares: [
                        inputs[0].get_encoded().unwrap(),
                        inputs[1].get_encoded().unwrap(),
                    ],
                });
            }
        }
        while reports.len() < 256 {
            reports.push(vdaf.shard(&ctx, &shape.none()).unwrap());
        }
        for (agg, target) in [(0, "police"), (1, "ngo")] {
            let chunk = |reports: Vec<StatsReport>| StatsReports {
                release: Some(r.clone()),
                plan_sha256: plan.sha256.to_vec(),
                chunk: 0,
                chunks: 1,
                reports,
                directory_version: 2,
            };
            let share = |rep: &Report| StatsReport {
                nonce: rep.nonce.to_vec(),
                public_share: rep.public_share.clone(),
                input_share: rep.input_shares[agg].clone(),
            };
            // Shares of another plan from a directory not newer than the
            // one in force: refused for good, holding nothing up.
            seq += 1;
            let mut stale = chunk(vec![share(&reports[0])]);
            stale.plan_sha256 = vec![0; 32];
            let ack = p
                .fed
                .deliver_one(
                    "border",
                    target,
                    envelope(seq, Payload::StatsReports(stale)),
                )
                .await
                .unwrap();
            assert_eq!(ack.status, AckStatus::Rejected as i32);
            assert!(ack.reason.contains("plan_sha256"), "{}", ack.reason);
            seq += 1;
            let mut short = share(&reports[0]);
            short.input_share.pop();
            let env = envelope(seq, Payload::StatsReports(chunk(vec![short])));
            let ack = p.fed.deliver_one("border", target, env).await.unwrap();
            assert_eq!(ack.status, AckStatus::Rejected as i32);
            assert!(
                ack.reason.contains("reports[0].input_share"),
                "{}",
                ack.reason
            );
            seq += 1;
            let env = envelope(
                seq,
                Payload::StatsReports(chunk(reports.iter().map(share).collect())),
            );
            let ack = p.fed.deliver_one("border", target, env).await.unwrap();
            assert_eq!(ack.status, AckStatus::Stored as i32, "{}", ack.reason);
            // A chunk that changes the count its first one gave: refused,
            // so a member cannot stretch what an aggregator keeps of it.
            seq += 1;
            let mut more = chunk(vec![share(&reports[0])]);
            (more.chunk, more.chunks) = (1, 2);
            let env = envelope(seq, Payload::StatsReports(more));
            let ack = p.fed.deliver_one("border", target, env).await.unwrap();
            assert_eq!(ack.status, AckStatus::Rejected as i32);
            assert!(ack.reason.starts_with("chunks: 2"), "{}", ack.reason);
        }
    }
    // 25 at police and border's 20 honest ones; the six cheats count nowhere.
    for a in ["police", "ngo", "labour"] {
        check_tables(&p.fed, a, 45).await;
        let v = released(&p.fed, a, "exploitation").await;
        assert_eq!(cell(&v, "RO", "labour"), None, "a cheat counted");
    }
    for a in ["police", "ngo"] {
        let sums = audited(&p.fed, a, "stats.sum").await;
        let exploitation = sums
            .iter()
            .find(|e| e.objects[0].starts_with("exploitation/"))
            .unwrap();
        assert_eq!(exploitation.detail["rejected"], "6", "{a}");
        assert_eq!(
            exploitation.detail["reports"],
            (4 * 256 - 6).to_string(),
            "{a}"
        );
    }
    p.fed.shutdown().await;
}
