//! Bad input gets a precise error and changes nothing: invalid alerts over
//! gRPC, broken config files and alert files through the real binary.

mod common;

use std::process::Command;

use casebridge::proto::v1::{
    AlertDraft, GetAlertRequest, Identifier, ListAlertsRequest, Phone, SubmitAlertRequest,
    identifier::Kind,
};
use common::*;
use tonic::Code;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_casebridge"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_alerts_name_the_field_and_store_nothing() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut cms = fed.client("police", "cms").await;
    let with = |f: &dyn Fn(&mut AlertDraft)| {
        let mut d = sample_draft("case");
        f(&mut d);
        d
    };
    let cases: Vec<(&str, AlertDraft)> = vec![
        (
            "draft.content.category",
            with(&|d| d.content.as_mut().unwrap().category = 0),
        ),
        (
            "draft.content.severity",
            with(&|d| d.content.as_mut().unwrap().severity = 42),
        ),
        (
            "draft.content.narrative",
            with(&|d| d.content.as_mut().unwrap().narrative = "x".repeat(20_000)),
        ),
        (
            "draft.content.location.country",
            with(&|d| {
                d.content
                    .as_mut()
                    .unwrap()
                    .location
                    .as_mut()
                    .unwrap()
                    .country = "XY".into()
            }),
        ),
        (
            "draft.subjects[0].identifiers[0].phone.number",
            with(&|d| {
                d.subjects[0].identifiers[0] = Identifier {
                    kind: Some(Kind::Phone(Phone {
                        number: "  ".into(),
                        region: String::new(),
                    })),
                }
            }),
        ),
        (
            "draft.subjects[0].identifiers[1]",
            with(&|d| d.subjects[0].identifiers[1] = Identifier { kind: None }),
        ),
    ];
    for (field, draft) in cases {
        let result = cms
            .alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(draft),
                request_id: String::new(),
                validate_only: false,
            })
            .await;
        assert_invalid(result, field);
    }
    // Missing draft altogether.
    let err = cms
        .alerts
        .submit_alert(SubmitAlertRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Malformed ids and page tokens are invalid arguments too, not internal errors.
    let err = cms
        .alerts
        .get_alert(GetAlertRequest {
            id: "no-such-id".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = cms
        .alerts
        .get_alert(GetAlertRequest {
            id: "police:01a22300-0000-7000-8000-000000000001".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = cms
        .alerts
        .list_alerts(ListAlertsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    assert!(
        fed.alerts("police").await.is_empty(),
        "nothing stored at the origin"
    );
    // Give a (wrongly) queued delivery time to show up before asserting its absence.
    submit(&mut cms, "the one valid alert").await;
    eventually("valid alert delivered", || async {
        (fed.alerts("ngo").await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(fed.alerts("police").await.len(), 1);
    fed.shutdown().await;
}

#[test]
fn config_errors_name_file_and_line_and_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        "agency_id = \"police\"\nfederation = \"demo.cb\"\n\n[listen]\npeer = \"127.0.0.1:7001\"\nclient = \"not an address\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["node", "run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:6:", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("address"), "{stderr}");

    std::fs::write(&file, "agency_id = \"police\"\nbogus_key = 1\n").unwrap();
    let out = bin()
        .args(["node", "run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("bogus_key"), "{stderr}");
}

#[test]
fn certs_init_never_overwrites_and_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fed");
    let run = || {
        bin()
            .args([
                "certs",
                "init",
                "--federation",
                "demo.cb",
                "--agencies",
                "police,ngo",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let key = out.join("police/node.key");
    let before = std::fs::read(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for k in [
            "federation-ca.key",
            "police/node.key",
            "police/client-ca.key",
            "ngo/clients/cms.key",
        ] {
            let mode = std::fs::metadata(out.join(k)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{k}");
        }
    }
    let second = run();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "existing key untouched"
    );
    // The generated config is valid as written.
    casebridge::config::NodeConfig::load(&out.join("police/node.toml")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_submits_json_and_reports_bad_files_precisely() {
    let fed = TestFederation::start(&["police"]).await;
    let client_cfg = fed.layout.agencies[&agency("police")]
        .client_config("cms")
        .to_owned();
    let file = fed.dir.path().join("alert.json");
    std::fs::write(
        &file,
        std::fs::read_to_string("docs/examples/alert.json").unwrap(),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let mut c = bin();
        c.env("CASEBRIDGE_CLIENT_CONFIG", &client_cfg).args(args);
        // The binary is synchronous from the test's point of view; run it off the runtime.
        tokio::task::spawn_blocking(move || c.output().unwrap())
    };
    let out = cli(&[
        "--json",
        "alert",
        "submit",
        "--file",
        file.to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alert: casebridge::proto::v1::Alert = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(alert.version, 1);
    assert_eq!(fed.alerts("police").await.len(), 1);

    // Syntax error: file, line and column.
    std::fs::write(&file, "{\n  \"content\": {\n    \"category\": \n  }\n}\n").unwrap();
    let out = cli(&["alert", "submit", "--file", file.to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:4:", file.display())),
        "{stderr}"
    );

    // Semantically invalid: the node's field violations are shown.
    std::fs::write(&file, r#"{"content": {"category": "CATEGORY_OTHER", "severity": "SEVERITY_LOW", "tlp": "TLP_GREEN", "location": {"country": "Narnia"}}}"#).unwrap();
    let out = cli(&["alert", "submit", "--file", file.to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("draft.content.location.country"),
        "{stderr}"
    );
    assert_eq!(
        fed.alerts("police").await.len(),
        1,
        "nothing stored by the bad submits"
    );
    fed.shutdown().await;
}

#[test]
fn policy_validate_accepts_the_examples_and_points_at_problems() {
    let dir = tempfile::tempdir().unwrap();
    let fed = dir.path().join("fed");
    let init = bin()
        .args([
            "certs",
            "init",
            "--federation",
            "demo.cb",
            "--agencies",
            "police,labour,ngo",
            "--out",
        ])
        .arg(&fed)
        .output()
        .unwrap();
    assert!(init.status.success());
    for agency in ["police", "ngo", "labour"] {
        let out = bin()
            .args([
                "policy",
                "validate",
                &format!("docs/examples/policy-{agency}.toml"),
                "--config",
            ])
            .arg(fed.join(format!("{agency}/node.toml")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{agency}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The example's own test cases pass; a wrong expectation fails the run.
    let run_cases = |cases: &std::path::Path| {
        bin()
            .args([
                "policy",
                "test",
                "docs/examples/policy-police.toml",
                "--cases",
            ])
            .arg(cases)
            .arg("--config")
            .arg(fed.join("police/node.toml"))
            .output()
            .unwrap()
    };
    let out = run_cases(std::path::Path::new(
        "docs/examples/policy-police.cases.toml",
    ));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Next to the example (its `alert = "alert.json"` is relative to the
    // cases file), removed when the test ends however it ends.
    let wrong_file = tempfile::Builder::new()
        .prefix("wrong-")
        .suffix(".cases.toml")
        .tempfile_in("docs/examples")
        .unwrap();
    let wrong = wrong_file.path().to_owned();
    std::fs::write(
        &wrong,
        "[[case]]\nname = \"red goes out (wrong)\"\nalert = \"alert.json\"\npeer = \"labour\"\ntlp = \"red\"\nexpect = \"share\"\n",
    )
    .unwrap();
    let out = run_cases(&wrong);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "FAIL  red goes out (wrong): expected share, got deny (TLP:RED never leaves the node)"
        ),
        "{stdout}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rules]]\nname = \"x\"\neffect = \"share\"\npeers = [\"border\"]\n",
    )
    .unwrap();
    let out = bin()
        .args(["policy", "validate"])
        .arg(&bad)
        .arg("--config")
        .arg(fed.join("police/node.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:4:10: unknown peer `border`", bad.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: configured peers: labour, ngo"),
        "{stderr}"
    );
}

/// Dates of birth follow one rule, in the API and in the CLI: the ISO 8601
/// forms a person writes (basic, one-digit month and day, spaces around)
/// are accepted and give the same tokens; an impossible date is refused
/// with the rule itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_of_birth_follow_one_rule_in_the_api_and_the_cli() {
    let fed = TestFederation::start(&["police"]).await;
    let mut cms = fed.client("police", "cms").await;
    let with_dob = |dob: &str| {
        let mut d = sample_draft("date of birth");
        d.subjects[0].identifiers = vec![person_id("Ana", "Popescu", dob)];
        d
    };
    let mut tokens = Vec::new();
    for dob in ["1956-09-09", "19560909", "1956-9-9", " 1956-09-09 "] {
        let id = submit_draft(&mut cms, with_dob(dob)).await.id;
        let id: casebridge::ids::AlertId = id.parse().unwrap();
        let rec = fed.node("police").core().store.get(&id).unwrap().unwrap();
        tokens.push(rec.pseudonyms[0].tokens.clone());
    }
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "one date, one token"
    );
    for bad in ["1956-02-30", "19560230", "1956/09/09", "1700-01-01"] {
        let err = assert_invalid(
            cms.alerts
                .submit_alert(SubmitAlertRequest {
                    draft: Some(with_dob(bad)),
                    request_id: String::new(),
                    validate_only: false,
                })
                .await,
            "draft.subjects[0].identifiers[0].person.date_of_birth",
        );
        assert!(err.message().contains("YYYYMMDD"), "{bad}: {err:?}");
    }
    // The CLI normalizes with the same rule.
    let (code, out, err) = cli(&[
        "pseudo",
        "normalize",
        "--type",
        "person",
        "--given",
        "Ana",
        "--family",
        "Popescu",
        "--dob",
        "19560909",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1956-09-09"), "{out}");
    let (code, _, err) = cli(&[
        "pseudo",
        "normalize",
        "--type",
        "person",
        "--given",
        "Ana",
        "--family",
        "Popescu",
        "--dob",
        "1956-02-30",
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("YYYYMMDD"), "{err}");
    fed.shutdown().await;
}

/// `node check` checks every file `node run` reads, without binding a port,
/// and reports every problem; `node run` reports the same problems as a
/// configuration error (exit 64) even when its port is also taken.
#[test]
fn node_check_reports_every_problem_and_run_reports_them_before_the_port() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let layout = common::process::two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let node_toml = police.node_config.to_str().unwrap().to_owned();
    let (code, out, err) = cli(&["node", "check", "--config", &node_toml]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ready to run") && out.contains("spiffe://"),
        "{out}"
    );

    // Three problems at once: a key others can read, a broken CRL, a policy
    // naming an agency that is not a peer.
    let pki = &police.dir;
    std::fs::set_permissions(pki.join("node.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(pki.join("client-ca.crl.pem"), "not a CRL\n").unwrap();
    let policy = std::fs::read_to_string(pki.join("policy.toml")).unwrap();
    std::fs::write(
        pki.join("policy.toml"),
        policy.replacen("\"ngo\"", "\"nobody\"", 1),
    )
    .unwrap();
    let (code, out, err) = cli(&["node", "check", "--config", &node_toml]);
    assert_eq!(code, 64, "{out}{err}");
    for expected in ["node.key", "mode 644", "client-ca.crl.pem", "nobody"] {
        assert!(out.contains(expected), "{expected} not reported: {out}");
    }
    assert!(err.contains("3 problem(s)"), "{err}");

    // The same with the client port taken: still the files, still 64.
    let port = police.addrs.client;
    let _taken = std::net::TcpListener::bind(port).unwrap();
    let (code, _, err) = cli(&["node", "run", "--config", &node_toml]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("node.key") && err.contains("nobody"), "{err}");
    assert!(!err.contains("already in use"), "{err}");
    std::fs::set_permissions(pki.join("node.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

    // A certificate that is not the key's: both files named.
    let ngo = &layout.agencies[&agency("ngo")];
    std::fs::copy(ngo.dir.join("node.pem"), pki.join("node.pem")).unwrap();
    let (code, out, _) = cli(&["node", "check", "--config", &node_toml]);
    assert_eq!(code, 64);
    let line = out
        .lines()
        .find(|l| l.contains("node.pem"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("node.key") && line.contains("does not belong"),
        "{line}"
    );
}

/// Every problem of a draft in one answer: a bad country, a bad phone and a
/// bad IBAN are three violations, not the first of them; the CLI shows each
/// once and exits 65; a missing alert is 66, a stale version 75, a missing
/// role 77.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_in_one_answer_and_exit_codes_by_kind() {
    use tonic_types::StatusExt;
    let fed = TestFederation::start(&["police"]).await;
    let mut cms = fed.client("police", "cms").await;
    let mut draft = sample_draft("three mistakes");
    draft
        .content
        .as_mut()
        .unwrap()
        .location
        .as_mut()
        .unwrap()
        .country = "XX".into();
    draft.subjects[0].identifiers = vec![phone_id("+31 6 1234", ""), iban_id("NL00ABNA0417164300")];
    let err = cms
        .alerts
        .submit_alert(SubmitAlertRequest {
            draft: Some(draft.clone()),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "draft.content.location.country",
            "draft.subjects[0].identifiers[0].phone.number",
            "draft.subjects[0].identifiers[1].iban.iban",
        ]
    );

    let agency_dir = &fed.layout.agencies[&agency("police")];
    let cms_toml = agency_dir.client_config("cms").to_str().unwrap().to_owned();
    let file = fed.dir.path().join("three.json");
    std::fs::write(&file, serde_json::to_string(&draft).unwrap()).unwrap();
    let (code, _, err) = cli(&[
        "--client-config",
        &cms_toml,
        "alert",
        "submit",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("3 problem(s)"), "{err}");
    assert_eq!(
        err.matches("location.country").count(),
        1,
        "each problem once: {err}"
    );

    let (code, _, err) = cli(&[
        "--client-config",
        &cms_toml,
        "alert",
        "get",
        "police:01a23514-cdbd-70dc-8bfe-d044755c71a5",
    ]);
    assert_eq!(code, 66, "not found: {err}");
    let id = submit(&mut cms, "versioned").await.id;
    let (code, _, err) = cli(&[
        "--client-config",
        &cms_toml,
        "alert",
        "retract",
        &id,
        "--reason",
        "x",
        "--expected-version",
        "7",
    ]);
    assert_eq!(code, 75, "conflict: {err}");
    let analyst = agency_dir
        .client_config("analyst")
        .to_str()
        .unwrap()
        .to_owned();
    let (code, _, err) = cli(&[
        "--client-config",
        &analyst,
        "alert",
        "submit",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 77, "permission denied: {err}");
    // A script takes the id alone (and --id-only wins over --json).
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples/alert.json");
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["--client-config", &cms_toml];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["alert", "submit", "--file", good, "--id-only"]);
        let (code, out, err) = cli(&args);
        assert_eq!(code, 0, "{err}");
        let id = out.trim_end();
        assert!(
            id.starts_with("police:") && !id.contains('\n') && out.ends_with('\n'),
            "one line, the id: {out:?}"
        );
        let (code, _, err) = cli(&["--client-config", &cms_toml, "alert", "get", id]);
        assert_eq!(code, 0, "the id printed is the alert's: {err}");
    }
    fed.shutdown().await;
}

/// Policy checks a person runs before any node exists, and every problem
/// at once: `validate` without a config checks all but the peer table,
/// four misspellings are four findings, `explain` without `--peer` explains
/// every configured peer, and a dry run speaks in the conditional.
#[test]
fn policy_checks_name_every_problem_and_work_without_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let layout = common::process::two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/examples/policy-police.toml"
    );
    let (code, out, err) = cli(&["policy", "validate", example]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("not checked against"), "{out}");
    let typos = std::fs::read_to_string(example)
        .unwrap()
        .replace("[\"child_trafficking\"]", "[\"child_traficking\"]")
        .replace("min_severity = \"high\"", "min_severity = \"hihg\"")
        .replace("location = \"country\"", "locaton = \"country\"")
        .replacen("time = \"day\"", "time = \"dya\"", 1);
    let file = dir.path().join("typos.toml");
    std::fs::write(&file, typos).unwrap();
    let (code, _, err) = cli(&["policy", "validate", file.to_str().unwrap()]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("4 problem(s)"), "{err}");
    for typo in ["child_traficking", "hihg", "locaton", "dya"] {
        assert!(err.contains(typo), "{typo}: {err}");
    }

    let alert = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples/alert.json");
    let policy = police.dir.join("policy.toml");
    // `policy explain` offline, with `extra` flags (before or after).
    let explain = |before: &[&str], after: &[&str]| {
        let mut args = before.to_vec();
        args.extend_from_slice(&[
            "policy",
            "explain",
            "--policy",
            policy.to_str().unwrap(),
            "--alert",
            alert,
            "--config",
            police.node_config.to_str().unwrap(),
        ]);
        args.extend_from_slice(after);
        let (code, out, err) = cli(&args);
        assert_eq!(code, 0, "{err}");
        out
    };
    let out = explain(&[], &[]);
    assert!(out.contains("peer ngo:"), "every peer explained: {out}");

    // With a key service, an offline explain shows what the node would
    // send: no key-ring token for a phone (the key service makes those),
    // and says so; `pseudo token` says its tokens are the ring's.
    casebridge::certs::add_key_service(
        &casebridge::ids::FederationName::new(common::FEDERATION).unwrap(),
        &layout,
    )
    .unwrap();
    let shown: serde_json::Value =
        serde_json::from_str(&explain(&["--json"], &["--peer", "ngo"])).unwrap();
    let mut phones = Vec::new();
    for subject in shown["envelope"]["subjects"].as_array().unwrap() {
        for t in subject["tokens"].as_array().into_iter().flatten() {
            if t["type"] == "IDENTIFIER_TYPE_PHONE" {
                phones.push(t.clone());
            }
        }
    }
    assert_eq!(phones.len(), 1, "one phone, one token: {shown}");
    assert!(
        phones[0].get("value").is_none(),
        "no ring token: {phones:?}"
    );
    assert!(
        explain(&[], &["--peer", "ngo"]).contains("exact tokens come from the OPRF key service")
    );
    let ring = layout.dir.join("matching-keys.toml");
    let (code, _, err) = cli(&[
        "pseudo",
        "token",
        "--type",
        "phone",
        "--value",
        "+31 6 1234 5678",
        "--key-ring",
        ring.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("note: key-ring tokens"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_checks_a_draft_as_a_submit_would_and_stores_nothing() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut cms = fed.client("police", "cms").await;
    let mut admin = fed.client("police", "admin").await;
    let head = audit_head(&mut admin).await;
    let check = |draft: AlertDraft| SubmitAlertRequest {
        draft: Some(draft),
        request_id: String::new(),
        validate_only: true,
    };
    // A bad country and a bad phone: both named, as a submit names them.
    let mut bad = sample_draft("dry run");
    bad.content
        .as_mut()
        .unwrap()
        .location
        .as_mut()
        .unwrap()
        .country = "XY".into();
    bad.subjects[0].identifiers[0] = phone_id("12", "NL");
    let err = cms
        .alerts
        .submit_alert(check(bad))
        .await
        .expect_err("an invalid draft is refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("draft.content.location.country"),
        "{err:?}"
    );
    assert!(
        err.message()
            .contains("draft.subjects[0].identifiers[0].phone.number"),
        "{err:?}"
    );
    // A good draft: answered with what would be stored, and nothing is.
    let would = cms
        .alerts
        .submit_alert(check(sample_draft("dry run")))
        .await
        .unwrap()
        .into_inner();
    assert!(would.id.is_empty(), "no id: {would:?}");
    assert_eq!(would.version, 0);
    assert_eq!(would.origin, "police");
    assert_eq!(would.content.unwrap().narrative, "dry run");
    assert_eq!(would.subjects.len(), 1);
    // Then a real submit, delivered: the checks before it left nothing
    // behind at either node.
    let real = submit(&mut cms, "real").await;
    fed.held("ngo", &real.id).await;
    assert_eq!(fed.alerts("police").await.len(), 1, "only the real one");
    assert_eq!(fed.alerts("ngo").await.len(), 1, "only the real one");
    let entries = audit_after(&mut admin, head).await;
    let checks: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "alert.submit" && e.body.contains("\"validate_only\":\"true\""))
        .collect();
    assert_eq!(
        checks.len(),
        1,
        "the valid check is audited as one: {entries:?}"
    );
    assert!(checks[0].objects.is_empty(), "it names no alert");
}
