//! Bulk import and sync (`casebridge alert import`), exports, and the
//! `WatchAlerts` feed, against real nodes over mTLS: the real CLI binary
//! reads real XLSX / CSV files and drives the node's `ImportAlert`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use casebridge::client::NodeClient;
use casebridge::proto::v1::identifier::Kind;
use casebridge::proto::v1::{
    Alert, Category, Confidence, GetAlertRequest, HandlingCode, ImportedRecord, Indicator,
    ListImportedRequest, Severity, SubjectRole, Tlp, WatchAlertsRequest,
};
use common::*;

/// The `cms` client's config for `agency`.
fn cms(fed: &TestFederation, agency_id: &str) -> String {
    fed.layout.agencies[&agency(agency_id)]
        .client_config("cms")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Runs `casebridge alert import` as `cms` of police.
fn import(fed: &TestFederation, args: &[&str]) -> (i32, String, String) {
    let config = cms(fed, "police");
    let mut all = vec!["--client-config", config.as_str(), "alert", "import"];
    all.extend_from_slice(args);
    cli(&all)
}

async fn imported(client: &mut NodeClient, source: &str) -> Vec<ImportedRecord> {
    let (mut all, mut page_token) = (Vec::new(), String::new());
    loop {
        let page = client
            .alerts
            .list_imported(ListImportedRequest {
                source: source.into(),
                page_size: 400,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.records);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

async fn get(client: &mut NodeClient, id: &str) -> Alert {
    client
        .alerts
        .get_alert(GetAlertRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// The alert imported for `source_id`.
async fn alert_of(client: &mut NodeClient, source: &str, source_id: &str) -> Alert {
    let records = imported(client, source).await;
    let r = records
        .iter()
        .find(|r| r.source_id == source_id)
        .unwrap_or_else(|| panic!("{source_id} was not imported: {records:?}"));
    get(client, &r.alert_id.clone()).await
}

fn kinds(a: &Alert, subject: usize) -> Vec<Kind> {
    a.subjects[subject]
        .identifiers
        .iter()
        .filter_map(|i| i.kind.clone())
        .collect()
}

/// An HTCDS v2.0 style workbook: field names in row 1, labels in row 2,
/// the template's row numbers in column A, cases from row 3.
fn htcds_workbook(path: &Path, rows: &[Vec<Cell>]) {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let headers = [
        "",
        "prs_FirstName",
        "prs_SecondName",
        "prs_Birthdate",
        "prs_Citizenship",
        "prs_MobilePhone",
        "prs_Email",
        "prs_IdentityNumber",
        "vic_MethodsOfControl",
        "vic_TypeOfExploitation",
        "vic_LocationOfExploitation",
        "vic_TraffickingStatus",
        "hte_City",
        "hte_Description",
        "prs_Gender",
        "vic_MethodOfRecruitment",
    ];
    let mut wb = Workbook::new();
    let sheet = wb.add_worksheet().set_name("Case Sheet").unwrap();
    let date = Format::new().set_num_format("dd/mm/yyyy");
    for (c, h) in headers.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
        sheet
            .write_string(1, c as u16, format!("Label {c}"))
            .unwrap();
    }
    for (r, row) in rows.iter().enumerate() {
        let r = r as u32 + 2;
        sheet.write_number(r, 0, f64::from(r - 1)).unwrap();
        for (c, cell) in row.iter().enumerate() {
            let c = c as u16 + 1;
            match cell {
                Cell::Text("") => {}
                Cell::Text(t) => {
                    sheet.write_string(r, c, *t).unwrap();
                }
                Cell::Number(n) => {
                    sheet.write_number(r, c, *n).unwrap();
                }
                Cell::Date(y, m, d) => {
                    let when = ExcelDateTime::from_ymd(*y, *m, *d).unwrap();
                    sheet
                        .write_datetime_with_format(r, c, &when, &date)
                        .unwrap();
                }
            }
        }
    }
    wb.save(path).unwrap();
}

enum Cell {
    Text(&'static str),
    Number(f64),
    Date(u16, u8, u8),
}
use Cell::{Date, Number, Text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_htcds_workbook_imports_field_by_field() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("register.xlsx");
    htcds_workbook(
        &file,
        &[
            vec![
                Text("Ana Maria"),
                Text("Popescu"),
                Date(1990, 3, 7),
                Text("Romania"),
                Text("+40 721 234 567"),
                Text("ana.popescu@example.ro"),
                Text("1900307123456"),
                Text("Debt bondage;Withholds documents; Other"),
                Text("Sexual exploitation"),
                Text("Netherlands"),
                Text("Actual victim of trafficking"),
                Text("Rotterdam"),
                Text("Recruited online, held in a flat"),
                Text("Female"),
                Text("Online advertisement; Intimate partner;Unknown"),
            ],
            // A partial date of birth typed as a number (a year), and one
            // typed as month/year text.
            vec![
                Text("Ion"),
                Text("Rusu"),
                Number(1985.0),
                Text(""),
                Text("+31 6 1234 5678"),
                Text(""),
                Text(""),
                Text("Excessive working hours"),
                Text("Forced labour"),
                Text("NL"),
                Text("Possible victim of trafficking"),
                Text(""),
                Text(""),
                Text(""),
            ],
            vec![
                Text("Olena"),
                Text("Shevchenko"),
                Text("11/2001"),
                Text(""),
                Text(""),
                Text("olena@example.ua"),
                Text(""),
                Text(""),
                Text(""),
                Text("BE"),
                Text(""),
                Text(""),
                Text(""),
                Text(""),
            ],
            // The template's blank numbered rows: skipped, not rejected.
            vec![],
        ],
    );
    let (code, out, err) = import(&fed, &["--mapping", "htcds", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("created 3"), "{out}");
    assert!(out.contains("empty 1"), "{out}");
    let mut police = fed.client("police", "cms").await;

    let a = alert_of(&mut police, "htcds", "1").await;
    let c = a.content.as_ref().unwrap();
    assert_eq!(c.category, Category::SexualExploitation as i32);
    assert_eq!(
        c.indicators,
        vec![
            Indicator::DebtBondage as i32,
            Indicator::RetentionOfIdentityDocuments as i32
        ],
        "\"Other\" is mapped to ignore"
    );
    assert_eq!(c.confidence, Confidence::Confirmed as i32);
    assert_eq!(c.severity, Severity::Medium as i32, "the mapping's default");
    assert_eq!(c.tlp, Tlp::Amber as i32);
    assert_eq!(c.handling_code, HandlingCode::H2 as i32);
    let loc = c.location.as_ref().unwrap();
    assert_eq!(
        (loc.country.as_str(), loc.city.as_str()),
        ("NL", "Rotterdam")
    );
    assert_eq!(c.narrative, "Recruited online, held in a flat");
    assert_eq!(a.subjects.len(), 1);
    assert_eq!(a.subjects[0].role, SubjectRole::PotentialVictim as i32);
    // The victim's profile, for the statistics: citizenship by name,
    // recruitment several a cell ("Unknown" mapped to ignore).
    let profile = a.subjects[0].profile.clone().unwrap();
    assert_eq!(
        profile,
        casebridge::proto::v1::VictimProfile {
            gender: casebridge::proto::v1::Gender::Female as i32,
            citizenship: "RO".into(),
            age_band: 0,
            recruitment: vec![
                casebridge::proto::v1::RecruitmentMethod::OnlineAdvert as i32,
                casebridge::proto::v1::RecruitmentMethod::IntimatePartner as i32,
            ],
        }
    );
    let ids = kinds(&a, 0);
    let Kind::Person(p) = &ids[0] else {
        panic!("{ids:?}")
    };
    assert_eq!(
        (
            p.given_names.as_str(),
            p.family_name.as_str(),
            p.date_of_birth.as_str()
        ),
        ("Ana Maria", "Popescu", "1990-03-07"),
        "a date cell becomes an ISO date"
    );
    assert!(
        ids.iter()
            .any(|k| matches!(k, Kind::Phone(ph) if ph.number == "+40 721 234 567"))
    );
    assert!(
        ids.iter()
            .any(|k| matches!(k, Kind::Email(e) if e.address == "ana.popescu@example.ro"))
    );
    assert!(
        ids.iter().any(|k| matches!(k, Kind::Document(d)
        if d.number == "1900307123456" && d.issuing_country == "RO")),
        "{ids:?}"
    );

    let b = alert_of(&mut police, "htcds", "2").await;
    assert_eq!(
        b.content.as_ref().unwrap().category,
        Category::LabourExploitation as i32
    );
    let Kind::Person(p) = &kinds(&b, 0)[0] else {
        panic!()
    };
    assert_eq!(p.date_of_birth, "1985", "a year typed as a number");
    assert_eq!(b.subjects[0].profile, None, "no profile cell filled");
    let c3 = alert_of(&mut police, "htcds", "3").await;
    assert_eq!(
        c3.content.as_ref().unwrap().category,
        Category::Other as i32,
        "default"
    );
    let Kind::Person(p) = &kinds(&c3, 0)[0] else {
        panic!()
    };
    assert_eq!(
        p.date_of_birth, "2001-11",
        "month/year text, as partial as written"
    );

    // `--print-mapping htcds` prints the mapping that was used.
    let (code, printed, _) = cli(&["alert", "import", "--print-mapping", "htcds"]);
    assert_eq!(code, 0);
    assert!(
        printed.contains("\"Debt bondage\" = \"debt_bondage\""),
        "{printed}"
    );
    fed.shutdown().await;
}

/// A custom layout: two subjects a row, value maps, partial dates, a
/// semicolon-separated CSV.
const MAPPING: &str = r#"
source = "labour-inspections"
id_column = "Inspection no"
delimiter = ";"
list_separator = ","
date_formats = ["[day].[month].[year]", "[month].[year]"]
phone_region = "NL"

[defaults]
severity = "high"
tlp = "green"

[content]
category = "Sector finding"
indicators = ["Indicators", "Extra indicator"]
country = "Country"
city = "Town"
start = "Inspected on"
narrative = ["Finding", "Follow-up"]

[[subjects]]
role = "potential_victim"
given_names = "Worker first name"
family_name = "Worker surname"
date_of_birth = "Worker born"
phones = "Worker phone"

[[subjects]]
role = "suspected_trafficker"
given_names = "Employer contact"
phones = "Employer phones"
ibans = "Employer IBAN"

[values.category]
"uitbuiting" = "labour_exploitation"
"prostitutie" = "sexual_exploitation"

[values.indicators]
"schuld" = "debt_bondage"
"paspoort ingehouden" = "retention_of_identity_documents"
"overuren" = "excessive_overtime"
"#;

const CSV_HEADER: &str = "Inspection no;Sector finding;Indicators;Extra indicator;Country;Town;Inspected on;Finding;Follow-up;Worker first name;Worker surname;Worker born;Worker phone;Employer contact;Employer phones;Employer IBAN";

fn csv_row(no: u32, finding: &str) -> String {
    format!(
        "LI-{no:05};uitbuiting;schuld, overuren;paspoort ingehouden;NL;Westland;03.02.2025;{finding};revisit;Worker{no};Lastname{no};{};06 {:08};Boss{no};+31 20 {:07}, 020 {:07};NL91ABNA0417164300",
        if no.is_multiple_of(2) {
            "01.1990".to_string()
        } else {
            "14.02.1988".to_string()
        },
        10_000_000 + no,
        1_000_000 + no,
        2_000_000 + no,
    )
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_with_its_own_mapping_imports_several_subjects_a_row() {
    let fed = TestFederation::start(&["police"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mapping = write(&dir.path().join("inspections.toml"), MAPPING);
    let file = write(
        &dir.path().join("inspections.csv"),
        &format!(
            "{CSV_HEADER}\n{}\n{}\n",
            csv_row(1, "Workers \"housed\" in a barn"),
            csv_row(2, "ok")
        ),
    );
    let (code, out, err) = import(
        &fed,
        &[
            "--mapping",
            mapping.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let mut police = fed.client("police", "cms").await;
    let a = alert_of(&mut police, "labour-inspections", "LI-00001").await;
    let c = a.content.as_ref().unwrap();
    assert_eq!(c.category, Category::LabourExploitation as i32);
    assert_eq!(
        c.indicators,
        vec![
            Indicator::DebtBondage as i32,
            Indicator::ExcessiveOvertime as i32,
            Indicator::RetentionOfIdentityDocuments as i32
        ]
    );
    assert_eq!(c.severity, Severity::High as i32);
    assert_eq!(c.tlp, Tlp::Green as i32);
    assert_eq!(
        c.time_window.as_ref().unwrap().start.unwrap().seconds,
        1_738_540_800,
        "03.02.2025 is 3 February 2025, midnight UTC"
    );
    assert_eq!(
        c.narrative,
        "Finding: Workers \"housed\" in a barn\n\nFollow-up: revisit"
    );
    assert_eq!(a.subjects.len(), 2);
    assert_eq!(a.subjects[0].role, SubjectRole::PotentialVictim as i32);
    assert_eq!(a.subjects[1].role, SubjectRole::SuspectedTrafficker as i32);
    let Kind::Person(p) = &kinds(&a, 0)[0] else {
        panic!()
    };
    assert_eq!(
        (
            p.given_names.as_str(),
            p.family_name.as_str(),
            p.date_of_birth.as_str()
        ),
        ("Worker1", "Lastname1", "1988-02-14")
    );
    let Kind::Phone(ph) = &kinds(&a, 0)[1] else {
        panic!()
    };
    assert_eq!(
        (ph.number.as_str(), ph.region.as_str()),
        ("06 10000001", "NL")
    );
    let suspect = kinds(&a, 1);
    assert_eq!(
        suspect.len(),
        4,
        "a name, two phones from one cell, an IBAN: {suspect:?}"
    );
    assert!(matches!(&suspect[3], Kind::Iban(i) if i.iban == "NL91ABNA0417164300"));
    let b = alert_of(&mut police, "labour-inspections", "LI-00002").await;
    let Kind::Person(p) = &kinds(&b, 0)[0] else {
        panic!()
    };
    assert_eq!(
        p.date_of_birth, "1990-01",
        "a partial date as partial as written"
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_again_updates_changed_rows_skips_the_rest_and_retracts_removed_ones() {
    let fed = TestFederation::start(&["police"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mapping = write(&dir.path().join("m.toml"), MAPPING);
    let rows: Vec<String> = (1..=10).map(|n| csv_row(n, "first")).collect();
    let file = dir.path().join("weekly.csv");
    write(&file, &format!("{CSV_HEADER}\n{}\n", rows.join("\n")));
    let args = [
        "--mapping",
        mapping.to_str().unwrap(),
        file.to_str().unwrap(),
    ];
    let (code, out, err) = import(&fed, &args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("created 10"), "{out}");

    // The same file again: nothing changes.
    let (code, out, _) = import(&fed, &args);
    assert_eq!(code, 0);
    assert!(out.contains("created 0, updated 0, unchanged 10"), "{out}");

    // Three rows edited, two deleted.
    let mut next: Vec<String> = Vec::new();
    for n in 1..=10u32 {
        match n {
            4 | 7 => continue,
            2 | 5 | 9 => next.push(csv_row(n, "changed since last week")),
            _ => next.push(csv_row(n, "first")),
        }
    }
    write(&file, &format!("{CSV_HEADER}\n{}\n", next.join("\n")));
    let mut with_retract = args.to_vec();
    with_retract.insert(0, "--retract-missing");
    let (code, out, err) = import(&fed, &with_retract);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("created 0, updated 3, unchanged 5, retracted 2"),
        "{out}"
    );
    let mut police = fed.client("police", "cms").await;
    let records = imported(&mut police, "labour-inspections").await;
    assert_eq!(records.len(), 10);
    for r in &records {
        let n: u32 = r.source_id[3..].parse().unwrap();
        let a = get(&mut police, &r.alert_id).await;
        match n {
            4 | 7 => assert!(a.retracted && r.retracted, "{n}: {a:?}"),
            2 | 5 | 9 => {
                assert_eq!(a.version, 2, "{n}");
                assert!(
                    a.content
                        .unwrap()
                        .narrative
                        .contains("changed since last week")
                );
            }
            _ => assert_eq!(a.version, 1, "{n}"),
        }
    }
    // A row that comes back after its alert was retracted is a new alert.
    write(&file, &format!("{CSV_HEADER}\n{}\n", rows.join("\n")));
    let (code, out, _) = import(&fed, &args);
    assert_eq!(code, 0);
    assert!(out.contains("created 2, updated 3"), "{out}");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_and_run_again_has_every_row_once() {
    let fed = TestFederation::start(&["police"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mapping = write(&dir.path().join("m.toml"), MAPPING);
    let total = 1500u32;
    let rows: Vec<String> = (1..=total).map(|n| csv_row(n, "bulk")).collect();
    let file = write(
        &dir.path().join("big.csv"),
        &format!("{CSV_HEADER}\n{}\n", rows.join("\n")),
    );
    let config = cms(&fed, "police");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .args([
            "--client-config",
            &config,
            "alert",
            "import",
            "--concurrency",
            "8",
            "--mapping",
            mapping.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut police = fed.client("police", "cms").await;
    // Kill -9 once part of the file is in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = imported(&mut police, "labour-inspections").await.len();
        if n >= 100 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {n} rows after a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = imported(&mut police, "labour-inspections").await.len();
    assert!(
        before < total as usize,
        "the import finished before the kill"
    );
    // And the node restarts before the import is run again.
    drop(police);
    let mut fed = fed;
    fed.stop_node("police").await;
    fed.start_node("police").await;
    let mut police = fed.client("police", "cms").await;

    let (code, out, err) = import(
        &fed,
        &[
            "--mapping",
            mapping.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let records = imported(&mut police, "labour-inspections").await;
    assert_eq!(records.len(), total as usize, "every row once");
    let ids: BTreeSet<&str> = records.iter().map(|r| r.alert_id.as_str()).collect();
    assert_eq!(ids.len(), total as usize, "one alert a row");
    assert!(records.iter().all(|r| r.version == 1 && !r.retracted));
    // And the node holds exactly those alerts: no orphan from the kill.
    let own = fed.alerts("police").await;
    assert_eq!(own.len(), total as usize);
    // The re-run found what the killed one had stored (at least what was
    // listed after the kill: rows in flight then may have landed since)
    // and created the rest.
    let count = |what: &str| -> usize {
        out.split(&format!("{what} "))
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {what} count in {out}"))
    };
    assert_eq!(
        count("created") + count("unchanged"),
        total as usize,
        "{out}"
    );
    assert!(
        count("unchanged") >= before,
        "{out} (listed after the kill: {before})"
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_named_by_file_sheet_row_and_column_and_nothing_of_them_is_stored() {
    let fed = TestFederation::start(&["police"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.xlsx");
    {
        use rust_xlsxwriter::Workbook;
        let mut wb = Workbook::new();
        let sheet = wb.add_worksheet().set_name("Cases").unwrap();
        let rows: [[&str; 6]; 7] = [
            ["Case", "Kind", "Given", "Family", "Phone", "Country"],
            [
                "C-1",
                "sexual_exploitation",
                "Ana",
                "Pop",
                "+31 6 1234 5678",
                "NL",
            ],
            [
                "C-2",
                "sexual_exploitation",
                "Bad",
                "Phone",
                "+31 6 1234",
                "NL",
            ],
            [
                "C-3",
                "labour_exploitation",
                "Bad",
                "Country",
                "+31 6 1234 5679",
                "Atlantis",
            ],
            ["C-4", "robbery", "Bad", "Kind", "+31 6 1234 5680", "NL"],
            ["C-5", "", "No", "Kind", "+31 6 1234 5681", "NL"],
            ["C-6", "other", "Eve", "Ok", "+31 6 1234 5682", "BE"],
        ];
        for (r, row) in rows.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                if !v.is_empty() {
                    sheet.write_string(r as u32, c as u16, *v).unwrap();
                }
            }
        }
        wb.save(&file).unwrap();
    }
    let mapping = write(
        &dir.path().join("m.toml"),
        r#"
source = "cases"
id_column = "Case"
sheet = "Cases"
[defaults]
severity = "low"
tlp = "amber"
[content]
category = "Kind"
country = "Country"
[[subjects]]
given_names = "Given"
family_name = "Family"
phones = "Phone"
"#,
    );
    let args = [
        "--mapping",
        mapping.to_str().unwrap(),
        file.to_str().unwrap(),
    ];
    let f = file.display().to_string();

    // A dry run finds every problem and stores nothing.
    let mut dry = args.to_vec();
    dry.insert(0, "--dry-run");
    let (code, out, err) = import(&fed, &dry);
    assert_eq!(code, 65, "{out}\n{err}");
    let mut police = fed.client("police", "cms").await;
    assert!(imported(&mut police, "cases").await.is_empty());
    assert!(out.contains("would be created 2"), "{out}");

    let (code, out, err) = import(&fed, &args);
    assert_eq!(code, 65, "rejected rows make the run fail: {out}\n{err}");
    for expected in [
        format!("{f}:Cases!E3: "), // the node's phone validation, at its column
        format!("{f}:Cases!F4: \"Atlantis\" is not a country"),
        format!("{f}:Cases!B5: \"robbery\" is not a category CaseBridge knows"),
        format!("{f}:Cases!B6: "), // a required value missing
    ] {
        assert!(err.contains(&expected), "{expected} not in:\n{err}");
    }
    assert!(
        err.contains(&format!(
            "{f}:Cases!E3: phone number \"+31 6 1234\": not a valid number"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{f}:Cases!B6: category: is required")),
        "{err}"
    );
    // The rest is stored, nothing of the rejected rows.
    let stored: BTreeSet<String> = imported(&mut police, "cases")
        .await
        .into_iter()
        .map(|r| r.source_id)
        .collect();
    assert_eq!(
        stored,
        BTreeSet::from(["C-1".to_string(), "C-6".to_string()])
    );
    assert_eq!(fed.alerts("police").await.len(), 2);
    // The rejected rows, with their reasons, next to the input.
    let rejected = std::fs::read_to_string(dir.path().join("cases.rejected.csv")).unwrap();
    let lines: Vec<&str> = rejected.lines().collect();
    assert_eq!(
        lines[0],
        "Case,Kind,Given,Family,Phone,Country,casebridge_error"
    );
    assert_eq!(lines.len(), 5, "{rejected}");
    let by_case: BTreeMap<&str, &str> = lines[1..]
        .iter()
        .map(|l| (l.split(',').next().unwrap(), *l))
        .collect();
    assert!(
        by_case["C-3"].contains("F: \"\"Atlantis\"\" is not a country"),
        "{rejected}"
    );

    // A file without a column the mapping names is refused before anything is sent.
    let short = write(
        &dir.path().join("short.csv"),
        "Case,Kind,Given,Family,Phone\nC-9,other,A,B,+31 6 1234 5690\n",
    );
    let (code, _, err) = import(
        &fed,
        &[
            "--mapping",
            mapping.to_str().unwrap(),
            short.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 65);
    assert!(
        err.contains(&format!(
            "{}:row 1: the header row has no column \"Country\"",
            short.display()
        )),
        "{err}"
    );
    assert_eq!(fed.alerts("police").await.len(), 2);
    // And a mistake in the mapping is named at its line and column.
    let typo = write(
        &dir.path().join("typo.toml"),
        "source = \"cases\"\nid_column = \"Case\"\n[defaults]\ntlp = \"ambre\"\n",
    );
    let (code, _, err) = import(
        &fed,
        &["--mapping", typo.to_str().unwrap(), file.to_str().unwrap()],
    );
    assert_eq!(code, 65);
    assert!(
        err.contains(&format!("{}:4:7: unknown tlp `ambre`", typo.display())),
        "{err}"
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_alerts_resumes_from_a_cursor_without_gaps_or_repeats() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut ngo = fed.client("ngo", "cms").await;
    let mut police = fed.client("police", "cms").await;
    // Alerts keep arriving (received from police, recorded at ngo) while
    // the watcher disconnects and comes back.
    let writer = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..40 {
            let a = if i % 2 == 0 {
                submit(&mut police, &format!("police {i}")).await
            } else {
                submit(&mut ngo, &format!("ngo {i}")).await
            };
            ids.push(a.id);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        ids
    });
    let mut watcher = fed.client("ngo", "analyst").await;
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut after = 0;
    for round in 0..6 {
        let mut stream = watcher
            .alerts
            .watch_alerts(WatchAlertsRequest {
                after_sequence: after,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // Read a few, then drop the stream (a reconnect).
        for _ in 0..(3 + round) {
            let Ok(Ok(Some(change))) =
                tokio::time::timeout(std::time::Duration::from_secs(5), stream.message()).await
            else {
                break;
            };
            after = change.sequence;
            seen.push((change.sequence, change.alert.unwrap().id));
        }
    }
    let written = writer.await.unwrap();
    // Whatever is left: the backlog after the last cursor.
    let mut ngo_reader = fed.client("ngo", "analyst").await;
    let expected = 40usize;
    let seen_so_far = &seen;
    let rest = eventually("every alert at ngo", || {
        let mut c = ngo_reader.clone();
        async move {
            let mut stream = c
                .alerts
                .watch_alerts(WatchAlertsRequest {
                    after_sequence: after,
                    backlog_only: true,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let mut rest = Vec::new();
            while let Some(ch) = stream.message().await.unwrap() {
                rest.push((ch.sequence, ch.alert.unwrap().id));
            }
            let total: BTreeSet<&String> = seen_so_far
                .iter()
                .chain(rest.iter())
                .map(|(_, id)| id)
                .collect();
            (total.len() == expected).then_some(rest)
        }
    })
    .await;
    seen.extend(rest);
    let sequences: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "no repeats: {sequences:?}"
    );
    let ids: BTreeSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(
        ids.len(),
        seen.len(),
        "each alert once (none changed twice)"
    );
    let written: BTreeSet<&String> = written.iter().collect();
    assert_eq!(ids, written, "no gaps");
    // A retraction moves the alert to the end, without its content.
    let last = seen.last().unwrap().0;
    let mine = seen
        .iter()
        .find(|(_, id)| id.starts_with("ngo:"))
        .unwrap()
        .1
        .clone();
    let mut ngo_cms = fed.client("ngo", "cms").await;
    ngo_cms
        .alerts
        .retract_alert(casebridge::proto::v1::RetractAlertRequest {
            id: mine.clone(),
            expected_version: 0,
            reason: "test".into(),
        })
        .await
        .unwrap();
    let mut stream = ngo_reader
        .alerts
        .watch_alerts(WatchAlertsRequest {
            after_sequence: last,
            own_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let change = stream.message().await.unwrap().unwrap();
    let a = change.alert.unwrap();
    assert_eq!(a.id, mine);
    assert!(a.retracted && a.content.is_none() && a.subjects.is_empty());
    // Every alert a watcher was sent is named in the audit log, by whom.
    let mut admin = fed.client("ngo", "admin").await;
    let entries = audit_after(&mut admin, 0).await;
    let named: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.action == "alerts.watch" && e.actor == "client:analyst")
        .flat_map(|e| e.objects.iter().map(String::as_str))
        .collect();
    for id in written.iter().chain([&&mine]) {
        assert!(named.contains(id.as_str()), "{id} was sent but not audited");
    }
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imports_into_another_node_with_the_same_content() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut police = fed.client("police", "cms").await;
    let mut originals = Vec::new();
    for i in 0..3 {
        originals.push(submit(&mut police, &format!("export {i}")).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = cms(&fed, "police");
    for (format, ext) in [("csv", "csv"), ("xlsx", "xlsx"), ("jsonl", "jsonl")] {
        let out = dir.path().join(format!("alerts.{ext}"));
        let (code, stdout, err) = cli(&[
            "--client-config",
            &config,
            "alert",
            "export",
            "--own",
            "--format",
            format,
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stdout}\n{err}");
        assert!(stdout.contains("3 alerts written"), "{stdout}");
        // What the file holds, as text (a workbook's cells: its bytes are
        // compressed, so searching them would find nothing either way).
        let text = if format == "xlsx" {
            use calamine::Reader;
            let mut wb = calamine::open_workbook_auto(&out).unwrap();
            let sheet = wb.worksheet_range("Alerts").unwrap();
            sheet
                .rows()
                .flatten()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            String::from_utf8(std::fs::read(&out).unwrap()).unwrap()
        };
        assert!(text.contains(&originals[0].id), "{format}: {text}");
        // Never a token: the export holds no stored token value.
        let rec = fed
            .node("police")
            .core()
            .store
            .get(&originals[0].id.parse().unwrap())
            .unwrap()
            .unwrap();
        for t in rec.pseudonyms.iter().flat_map(|s| &s.tokens) {
            let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &t.value);
            assert!(!text.contains(&b64), "{format} holds a token");
        }
        // Into ngo, under a source of its own.
        let ngo_config = cms(&fed, "ngo");
        let mut args = vec![
            "--client-config",
            ngo_config.as_str(),
            "alert",
            "import",
            "--source",
            "from-police",
        ];
        if format != "jsonl" {
            args.extend(["--mapping", "export"]);
        }
        args.push(out.to_str().unwrap());
        let (code, stdout, err) = cli(&args);
        assert_eq!(code, 0, "{format}: {stdout}\n{err}");
    }
    let mut ngo = fed.client("ngo", "cms").await;
    for original in &originals {
        let copy = alert_of(&mut ngo, "from-police", &original.id).await;
        assert_eq!(copy.content, original.content);
        // The same identifiers (an import lists a subject's person first).
        let mut expected = original.clone();
        let mut draft = casebridge::proto::v1::AlertDraft {
            content: None,
            subjects: std::mem::take(&mut expected.subjects),
            ..Default::default()
        };
        casebridge::tabular::convert::canonical_order(&mut draft);
        assert_eq!(copy.subjects, draft.subjects);
        assert_eq!(
            copy.version, 1,
            "three formats, one alert: the same content each time"
        );
    }
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_slowed_by_the_nodes_rate_limit_still_imports_every_row() {
    // 20 calls a second (bursts of 40) for a file of 120 rows.
    let fed = TestFederation::start_with(&["police"], &[], |_, c| {
        c.limits.requests_per_second_per_client = casebridge::config::Bounded::new(20);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mapping = write(&dir.path().join("m.toml"), MAPPING);
    let rows: Vec<String> = (1..=120).map(|n| csv_row(n, "throttled")).collect();
    let file = write(
        &dir.path().join("t.csv"),
        &format!("{CSV_HEADER}\n{}\n", rows.join("\n")),
    );
    let (code, out, err) = import(
        &fed,
        &[
            "--mapping",
            mapping.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("created 120"), "{out}");
    let mut police = fed.client("police", "cms").await;
    assert_eq!(imported(&mut police, "labour-inspections").await.len(), 120);
    fed.shutdown().await;
}

/// A register's own case number stays with its alert on this node, with
/// a title people tell it by: in `alert get`, `alert list` and the export,
/// never in what a peer receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registers_case_number_stays_with_its_alert_here_and_never_leaves() {
    let fed = TestFederation::start(&["ngo", "police"]).await;
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let config = cms(&fed, "ngo");
    let (code, out, err) = cli(&[
        "--client-config",
        &config,
        "alert",
        "import",
        "--mapping",
        docs.join("register-mapping.toml").to_str().unwrap(),
        docs.join("register.csv").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let mut ngo = fed.client("ngo", "cms").await;
    let a = alert_of(&mut ngo, "ngo-register", "NGO-2024-0017").await;
    assert_eq!(a.case_reference, "NGO-2024-0017");
    assert_eq!(a.title, "Sexual exploitation · Rotterdam");

    let (code, out, err) = cli(&["--client-config", &config, "alert", "get", &a.id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("case NGO-2024-0017  Sexual exploitation · Rotterdam"),
        "{out}"
    );
    let (code, out, err) = cli(&[
        "--client-config",
        &config,
        "alert",
        "list",
        "--origin",
        "ngo",
    ]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with(&a.id)).unwrap();
    assert!(line.contains("NGO-2024-0017"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("out.csv");
    let (code, _, err) = cli(&[
        "--client-config",
        &config,
        "alert",
        "export",
        "--own",
        "--format",
        "csv",
        "--output",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let headers = reader.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let row = rows.iter().find(|r| &r[0] == a.id.as_str()).unwrap();
    assert_eq!(&row[at("cb_CaseReference")], "NGO-2024-0017");
    assert_eq!(&row[at("cb_Title")], "Sexual exploitation · Rotterdam");

    // Police has the alert, without either.
    let police = fed.client("police", "cms").await;
    let received = eventually("ngo's alert at police", || {
        let mut p = police.clone();
        let id = a.id.clone();
        async move {
            p.alerts
                .get_alert(GetAlertRequest { id })
                .await
                .ok()
                .map(tonic::Response::into_inner)
        }
    })
    .await;
    assert!(received.content.is_some(), "{received:?}");
    assert_eq!(
        (received.case_reference.as_str(), received.title.as_str()),
        ("", "")
    );
    fed.shutdown().await;
}
