//! Private federated statistics between four real nodes over mTLS: the
//! plan arrives in a signed directory version, every member sends its
//! report shares to the two aggregators (police leads, ngo helps), they
//! verify and sum them together, and every member adds the two noisy sums.
//! The cases are planted, so the test knows the truth: each published cell
//! is within the noise bound `stats::publish::noise_bound` states for the
//! plan's epsilon (failure probability 1e-9 per cell), cases police and
//! the ngo both hold (linked by an exact hit) count once, and cells whose
//! truth is zero stay under the minimum and are suppressed.

mod common;

use std::path::PathBuf;

use casebridge::config::{Bounded, DirectoryConfig};
use casebridge::proto::v1::{
    AlertContent, AlertDraft, Category, Identifier, ListStatsRequest, Location, Phone,
    QueryAuditRequest, Severity, StatisticsPlan, StatisticsTable, StatisticsTableKind,
    StatsReleaseView, Subject, SubjectRole, TimeWindow, Tlp, identifier::Kind,
};
use casebridge::stats::plan::{Period, TableKind};
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
    StatisticsPlan {
        aggregators: vec!["police".into(), "ngo".into()],
        min_cell: MIN_CELL,
        countries: vec!["DE".into(), "NL".into(), "RO".into()],
        collect_days: 90,
        tables: vec![
            table("exploitation", StatisticsTableKind::Exploitation),
            table("cross-agency", StatisticsTableKind::CrossAgency),
            table("clusters", StatisticsTableKind::Clusters),
        ],
        first_period: period.to_string(),
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
        subjects: vec![Subject {
            role: SubjectRole::PotentialVictim as i32,
            identifiers: vec![Identifier {
                kind: Some(Kind::Phone(Phone {
                    number: phone.into(),
                    region: "NL".into(),
                })),
            }],
        }],
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_agencies_publish_noisy_tables_counting_each_victim_once() {
    let ops = Operators::new();
    let mut fed = start(&ops).await;
    let v1 = ops.sign(directory(&fed, &ops, 1, &AGENCIES), &[1, 2]);
    for a in AGENCIES {
        std::fs::write(ops.anchor(a), v1.to_json()).unwrap();
        fed.start_node(a).await;
    }
    let now = casebridge::time::now_ms() / 1000;
    let last = Period::last_ended(now).unwrap();
    // Police: 30 labour cases in NL, 25 sexual exploitation in RO. The ngo:
    // 25 in NL, 20 of them about people police holds too (same phones).
    // Labour: 20 in DE. Border: none (it still sends padding).
    plant(&fed, "police", 30, |i| {
        case(
            "NL",
            Category::LabourExploitation,
            last,
            &format!("+31 6 1000 {i:04}"),
        )
    })
    .await;
    plant(&fed, "police", 25, |i| {
        case(
            "RO",
            Category::SexualExploitation,
            last,
            &format!("+31 6 2000 {i:04}"),
        )
    })
    .await;
    plant(&fed, "ngo", 25, |i| {
        let phone = if i < 20 {
            format!("+31 6 1000 {i:04}")
        } else {
            format!("+31 6 3000 {i:04}")
        };
        case("NL", Category::LabourExploitation, last, &phone)
    })
    .await;
    plant(&fed, "labour", 20, |i| {
        case(
            "DE",
            Category::LabourExploitation,
            last,
            &format!("+31 6 4000 {i:04}"),
        )
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

    let mut with_plan = directory(&fed, &ops, 2, &AGENCIES);
    with_plan.statistics = Some(plan(last));
    let v2 = ops.sign(with_plan, &[1, 2]);
    fed.publish_directory("police", &v2).await.unwrap();

    let countries = ["DE", "NL", "RO"].map(|c| casebridge::ids::CountryCode::new(c).unwrap());
    let bound = |kind| noise_bound(&Shape::of(kind, &countries), EPSILON_MILLI, 1e-9) as i64;
    let near = |got: Option<i64>, truth: i64, b: i64| {
        let got = got.unwrap_or_else(|| panic!("the cell of truth {truth} is suppressed"));
        assert!(
            (got - truth).abs() <= b,
            "{got} is not within {b} of {truth}"
        );
    };
    for a in AGENCIES {
        let v = released(&fed, a, "exploitation").await;
        let b = bound(TableKind::Exploitation);
        assert!(
            b < 11,
            "the test's counts need a bound under the minimum, got {b}"
        );
        assert_eq!(v.members, 4, "computed from every agency");
        // 30 + 25 - 20: the 20 people both hold count once (55 without).
        near(cell(&v, "NL", "labour"), 35, b);
        near(cell(&v, "RO", "sexual"), 25, b);
        near(cell(&v, "DE", "labour"), 20, b);
        // Nothing true there: under the minimum, so absent.
        assert_eq!(cell(&v, "DE", "sexual"), None);
        assert_eq!(cell(&v, "other", "labour"), None);
        let cross = released(&fed, a, "cross-agency").await;
        near(
            cell(&cross, "NL", "cases"),
            20,
            bound(TableKind::CrossAgency),
        );
        assert_eq!(cell(&cross, "RO", "cases"), None);
        let clusters = released(&fed, a, "clusters").await;
        near(
            cell(&clusters, "2 alerts", "2 agencies"),
            20,
            bound(TableKind::Clusters),
        );
        assert_eq!(cell(&clusters, "3 alerts", "3 agencies"), None);
    }

    // The ledger is in every node's audit log: one release per table, its
    // epsilon and what the period has spent.
    for a in AGENCIES {
        let mut admin = fed.client(a, "admin").await;
        let page = admin
            .admin
            .query_audit(QueryAuditRequest {
                action: "stats.release".into(),
                page_size: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.entries.len(), 3, "{a}: one entry per table");
        for e in &page.entries {
            assert_eq!(e.detail["spent_milli"], EPSILON_MILLI.to_string());
        }
    }
    fed.shutdown().await;
}
