//! What hostile inputs cost after the hardening: a draft of 40,000 bad
//! identifiers against an ordinary one (validation stops at the limits),
//! and the time and peak memory to refuse each spreadsheet bomb the probes
//! found (a cell four billion columns out, a 16 MiB inline string, a string
//! table declaring four billion entries, 30 MB of commas), each read with
//! the `htcds` mapping as `alert import` and the console do. Medians of
//! several runs, side by side.
//!
//! Run: `cargo bench --bench hostile`.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use casebridge::config::{AlertRules, Limits};
use casebridge::proto::v1::identifier::Kind;
use casebridge::proto::v1::{
    AlertContent, AlertDraft, Category, Identifier, Phone, Severity, Subject, SubjectRole, Tlp,
};
use casebridge::tabular::{Loaded, read};

fn draft(phones: usize, number: &str) -> AlertDraft {
    AlertDraft {
        content: Some(AlertContent {
            category: Category::LabourExploitation as i32,
            severity: Severity::High as i32,
            tlp: Tlp::Amber as i32,
            ..Default::default()
        }),
        subjects: vec![Subject {
            role: SubjectRole::PotentialVictim as i32,
            identifiers: vec![
                Identifier {
                    kind: Some(Kind::Phone(Phone {
                        number: number.into(),
                        region: "NL".into(),
                    })),
                };
                phones
            ],
            profile: None,
        }],
        ..Default::default()
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn peak_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        >> 10
}

fn xlsx(sheet: &str, strings: Option<&str>) -> Vec<u8> {
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let parts = [
        ("[Content_Types].xml", r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>"#.to_owned()),
        ("_rels/.rels", r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_owned()),
        ("xl/workbook.xml", r#"<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_owned()),
        ("xl/_rels/workbook.xml.rels", r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_owned()),
        ("xl/worksheets/sheet1.xml", format!(r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1">{sheet}</row></sheetData></worksheet>"#)),
    ];
    for (name, text) in parts.iter() {
        zip.start_file(*name, opts).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    if let Some(s) = strings {
        zip.start_file("xl/sharedStrings.xml", opts).unwrap();
        zip.write_all(s.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn main() {
    let (limits, rules) = (Limits::default(), AlertRules::default());
    // The draft is cloned outside the timed part (validation takes it by value).
    let validate = |d: &AlertDraft, runs: usize| {
        median(
            (0..runs)
                .map(|_| {
                    let d = d.clone();
                    let t = Instant::now();
                    let _ = black_box(casebridge::validate::validate_draft(
                        d,
                        &limits,
                        &rules,
                        SystemTime::now(),
                    ));
                    t.elapsed()
                })
                .collect(),
        )
    };
    let ordinary = draft(1, "+31 6 1234 5678");
    let hostile = draft(40_000, "not a phone number at all");
    let t_ordinary = validate(&ordinary, 201);
    let t_hostile = validate(&hostile, 21);
    println!("validation, median:");
    println!(
        "  ordinary draft (1 phone)            {:>10.1?}",
        t_ordinary
    );
    println!(
        "  40,000 bad phones (640 KB)          {:>10.1?}   ({:.1}x the ordinary one)",
        t_hostile,
        t_hostile.as_secs_f64() / t_ordinary.as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let loaded = Arc::new(Loaded::load("htcds").unwrap());
    let mut inline = String::from(r#"<c r="A1" t="inlineStr"><is><t>"#);
    inline.push_str(&"a".repeat(16 << 20));
    inline.push_str("</t></is></c>");
    let bombs: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "cell at column LXQEASV",
            "cell.xlsx",
            xlsx(r#"<c r="LXQEASV1"><v>1</v></c>"#, None),
        ),
        ("16 MiB inline string", "inline.xlsx", xlsx(&inline, None)),
        (
            "string table of 4e9 entries",
            "sst.xlsx",
            xlsx(
                r#"<c r="A1" t="s"><v>0</v></c>"#,
                Some(r#"<sst uniqueCount="4000000000"><si><t>a</t></si></sst>"#),
            ),
        ),
        ("30 MB of commas", "commas.csv", vec![b','; 30 << 20]),
    ];
    println!("spreadsheet bombs, refused (median of 5; peak RSS of this process after):");
    for (what, name, bytes) in bombs {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let t = time(5, || {
            let refused = read::open(&path, loaded.clone()).is_err();
            assert!(refused, "{what} was read");
        });
        println!(
            "  {what:<30} {:>6} KB file   {:>10.1?}   peak {} MiB",
            bytes.len() >> 10,
            t,
            peak_mib()
        );
    }
}
